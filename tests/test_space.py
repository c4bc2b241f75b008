"""The conditional space: a trial only ever carries its chosen family's parameters."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from search import schedules, space
from search.config import ParamSpec, SpaceConfig

SHARED = {"scheduler", "lr", "momentum", "weight_decay", "warmup", "warmup_epochs"}
EPOCHS = 20


def full_space() -> SpaceConfig:
    return SpaceConfig(
        families=tuple(schedules.SCHEDULES),
        momentum=ParamSpec(0.8, 0.95),
        weight_decay=ParamSpec(1e-5, 1e-3, log=True),
        warmup_epochs=ParamSpec(0.0, 2.0),
    )


def sample(sampler: optuna.samplers.BaseSampler, n: int) -> list[optuna.trial.FrozenTrial]:
    sp = full_space()
    seen = []

    def objective(trial):
        cfg = space.suggest(trial, sp, EPOCHS)
        seen.append(cfg)
        schedules.resolve(cfg, EPOCHS, 10)  # every suggestion resolves to valid kwargs
        return cfg.lr * (1 + hash(cfg.family) % 7)

    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=n)
    return study.trials


@pytest.mark.parametrize(
    "sampler, n",
    [
        (optuna.samplers.RandomSampler(seed=1), 300),
        (optuna.samplers.TPESampler(seed=1, multivariate=True, group=True,
                                    n_startup_trials=20), 120),
    ],
    ids=["random", "tpe"],
)
def test_trials_carry_only_their_familys_parameters(sampler, n):
    trials = sample(sampler, n)
    families = {t.params["scheduler"] for t in trials}
    assert len(families) >= 8  # the space is really explored
    for t in trials:
        fam = t.params["scheduler"]
        own = {k for k in t.params if k not in SHARED}
        assert all(k.startswith(fam + ".") for k in own), (fam, own)
        if not schedules.family(fam).warmup_ok:
            assert "warmup_epochs" not in t.params and "warmup" not in t.params
        else:  # an on/off choice, and a length only when on
            assert ("warmup_epochs" in t.params) == t.params["warmup"]
        if fam == "MultiStepLR":
            n_ms = t.params["MultiStepLR.n_milestones"]
            assert {k for k in own if ".gap_" in k} == {
                f"MultiStepLR.gap_{i}" for i in range(n_ms + 1)}


def test_no_warmup_is_drawn_as_often_as_some_warmup():
    trials = sample(optuna.samplers.RandomSampler(seed=2), 400)
    on = [t.params["warmup"] for t in trials if "warmup" in t.params]
    assert len(on) > 200 and 0.4 < sum(on) / len(on) < 0.6


def test_thousands_of_multistep_trials_carry_n_distinct_milestones():
    sp = SpaceConfig(families=("MultiStepLR",), warmup_epochs=ParamSpec(0.0, 2.0),
                     ranges={"MultiStepLR": {"n_milestones": ParamSpec(1, 8)}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for i in range(3000):
        epochs = (4, 8, 10, 90)[i % 4]
        trial = study.ask()
        cfg = space.suggest(trial, sp, epochs)
        n = trial.params["MultiStepLR.n_milestones"]
        assert n <= epochs - 1  # the range is cut to what fits in the run
        built = schedules.resolve(cfg, epochs, 7)
        ms = built.kwargs["milestones"]
        assert len(ms) == n and ms == sorted(set(ms))
        warm = built.warmup["total_iters"] if built.warmup else 0
        horizon = epochs if built.interval == schedules.EPOCH else epochs * 7 - warm
        assert all(0 < m < horizon for m in ms)


def test_epoch_ranges_scale_with_the_budget():
    sp = SpaceConfig(families=("CosineAnnealingLR",))
    for epochs in (4, 40):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(30):
            cfg = space.suggest(study.ask(), sp, epochs)
            assert 0.5 <= cfg.params["T_max"] <= 1.0  # a fraction of the run
            assert epochs // 2 <= trial_t_max(study) <= epochs


def trial_t_max(study: optuna.Study) -> int:
    return study.trials[-1].params["CosineAnnealingLR.T_max"]


def test_fixed_knobs_are_not_suggested():
    sp = SpaceConfig(families=("Constant",), lr=ParamSpec(0.1, 0.1))
    trial = optuna.create_study().ask()
    cfg = space.suggest(trial, sp, EPOCHS)
    assert trial.params == {"scheduler": "Constant"}
    assert (cfg.lr, cfg.momentum) == (0.1, 0.9)


def test_defaults_are_valid_points_of_the_space():
    sp = full_space()
    params = space.defaults(sp, EPOCHS)
    assert [p["scheduler"] for p in params] == ["CosineAnnealingLR", "OneCycleLR"]
    assert params[0]["CosineAnnealingLR.T_max"] == EPOCHS  # cosine over the whole run
    assert params[0]["warmup"] is False  # and no added warmup
    assert params[1]["OneCycleLR.pct_start"] == 0.3  # torch's standard one-cycle
    study = optuna.create_study()
    for p in params:
        study.enqueue_trial(p)
    for p in params:
        trial = study.ask()
        cfg = space.suggest(trial, sp, EPOCHS)
        assert cfg.family == p["scheduler"]
        assert all(trial.params[k] == v for k, v in p.items())
    assert space.defaults(SpaceConfig(families=("StepLR",)), EPOCHS) == []


def test_defaults_are_the_enqueued_reference_shapes_inside_the_studys_ranges(monkeypatch):
    """A plain search's defaults are read from schedules.REFERENCES (the contest's reference
    shapes): each parameter the reference's value, put inside the study's range."""
    cosine = next(r for r in schedules.REFERENCES if r.slot == "cosine")
    assert cosine.params["eta_min_factor"] == 0.0
    ranged = SpaceConfig(families=("CosineAnnealingLR",), ranges={"CosineAnnealingLR": {
        "eta_min_factor": ParamSpec(0.0, 0.05)}})
    assert space.defaults(ranged, EPOCHS)[0]["CosineAnnealingLR.eta_min_factor"] == 0.0
    logged = SpaceConfig(families=("CosineAnnealingLR",))  # the catalog's 1e-4..0.1, log
    assert space.defaults(logged, EPOCHS)[0]["CosineAnnealingLR.eta_min_factor"] == 1e-4

    marked = tuple(dataclasses.replace(r, enqueued=r.slot == "linear0")
                   for r in schedules.REFERENCES)
    monkeypatch.setattr(schedules, "REFERENCES", marked)
    out = space.defaults(SpaceConfig(families=tuple(schedules.SCHEDULES)), EPOCHS)
    assert out == [{"scheduler": "PolynomialLR", "lr": 0.1, "PolynomialLR.power": 1.0}]
