"""Whole-run shapes step per optimizer step, so short horizons mean what they say: at every
length the references are distinct schedules, and a study keeps per-epoch stepping only for
the families its file names."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import step_through

from search import schedules
from search.config import load_study
from search.contest import contenders as cn
from search.errors import UserError
from search.schedules import REFERENCES, ScheduleConfig

SPE = 7  # optimizer steps per epoch


def applied(schedule: ScheduleConfig, epochs: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule.lr)
    return step_through(opt, schedule, epochs, SPE).trace


@pytest.mark.parametrize("epochs", [1, 2, 4, 8])
def test_the_references_apply_pairwise_different_lrs_at_every_horizon(epochs):
    """At 1 epoch every per-epoch schedule is a constant LR, and at 2 epochs whole-run cosine
    and linear to zero were the same two-step staircase; stepped per optimizer step, no two
    references (and no two points of the study's reference grids) apply the same LRs."""
    cfg = load_study("lr-fashion")
    kn = cn.knobs(cfg)
    runs = {}
    for ref in cn.references(cfg):
        for lr in cn.grid_lrs(0.3 * ref.lr_factor, cfg.contest.SCALE_STEPS, cn.lr_clip(cfg, ref)):
            s = ref.schedule(lr, kn)
            runs[(ref.slot, lr)] = (ref.optimizer, tuple(applied(s, epochs)))
    for (a, ra), (b, rb) in itertools.combinations(runs.items(), 2):
        assert ra != rb, f"{a} and {b} apply the same LRs over {epochs} epochs"
    # whole-run cosine falls at every optimizer step, towards zero at the end of the run
    cos = applied(REFERENCES[0].schedule(0.1, kn), epochs)
    assert all(a > b for a, b in itertools.pairwise(cos)) and cos[-1] < 0.1 * 0.06


def test_a_per_step_schedule_is_the_same_function_of_the_fraction_at_any_length():
    s = ScheduleConfig("CosineAnnealingLR", {"T_max": 1.0, "eta_min_factor": 0.0}, lr=0.1,
                       per_step=True)
    short, long = applied(s, 2), applied(s, 8)
    assert short == pytest.approx(long[::4], rel=0.1, abs=1e-3)
    built = schedules.resolve(s, 8, SPE)
    assert built.interval == schedules.ITERATION and built.kwargs["T_max"] == 8 * SPE
    # recorded and read back as it trained; a record from before per-step stepping reads as
    # stepped per epoch, as it trained
    assert ScheduleConfig.from_dict(s.to_dict()) == s
    old = {k: v for k, v in s.to_dict().items() if k != "per_step"}
    assert schedules.resolve(ScheduleConfig.from_dict(old), 8, SPE).interval == schedules.EPOCH
    # the families torch steps per step (and the plateau rule) are untouched by the flag
    for name in ("OneCycleLR", "ReduceLROnPlateau"):
        assert not schedules.stepped_per_step(name)


def _study(tmp_path, space: str) -> object:
    f = tmp_path / "s.toml"
    f.write_text('trials = 5\n[objective]\ndataset = "fashion_mnist"\nepochs = 4\n'
                 f"[space]\nfamilies = \"all\"\n{space}")
    return load_study(str(f))


def test_a_study_keeps_per_epoch_stepping_for_the_families_it_names(tmp_path):
    import optuna

    from search import space

    cfg = _study(tmp_path, 'per_epoch = ["StepLR", "MultiStepLR"]\n')
    seen = {}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(80):
        t = study.ask()
        s = space.suggest(t, cfg.space, cfg.epochs)
        seen[s.family] = s.per_step
        study.tell(t, 0.0)
    assert seen["StepLR"] is False and seen["MultiStepLR"] is False
    assert seen["CosineAnnealingLR"] is True and seen["ExponentialLR"] is True
    assert seen["OneCycleLR"] is False and seen["ReduceLROnPlateau"] is False
    assert _study(tmp_path, 'per_epoch = "all"\n').space.per_epoch == tuple(
        n for n, f in schedules.SCHEDULES.items() if f.interval == schedules.EPOCH)


@pytest.mark.parametrize("value", ['["OneCycleLR"]', '"some"', '["Cosine"]'])
def test_a_bad_per_epoch_is_one_line_naming_the_valid_families(tmp_path, value):
    with pytest.raises(UserError) as e:
        _study(tmp_path, f"per_epoch = {value}\n")
    msg = str(e.value)
    assert "per_epoch" in msg and "CosineAnnealingLR" in msg and "\n" not in msg
