"""The answer is right: what was searched = what was recorded = what `best` prints = what
`validate` trains, for every family, with and without warmup, at the searched budget and at
any other one (property-based, hypothesis); and the study settings that make it so (identity,
pruning steps, defaults never pruned)."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
import torch
from conftest import applied_lrs, step_through
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search import answer, cli, config, runner, schedules, space
from search.config import ParamSpec, SpaceConfig
from search.validation import validate

FAMILIES = sorted(schedules.SCHEDULES)
WARMED = sorted(f for f in FAMILIES if schedules.family(f).warmup_ok)
MIN_TICKS = 20


def _space(family: str, warmup: bool) -> SpaceConfig:
    ranges = {"MultiStepLR": {"n_milestones": ParamSpec(1, 4)}}
    return SpaceConfig(families=(family,), lr=ParamSpec(0.01, 1.0, log=True),
                       warmup_epochs=ParamSpec(0.5, 2.0) if warmup else ParamSpec(0.0, 0.0),
                       ranges=ranges)


def _searched_trial(study, family, warmup, epochs, steps, losses, seed) -> optuna.FrozenTrial:
    """One trial as the runner records it: suggested, trained, recorded, told."""
    trial = study.ask()
    s = space.suggest(trial, _space(family, warmup), epochs)
    rec = runner.Recorder(trial)
    runner.record_optimizer(trial, s)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=s.lr, momentum=0.9)
    step_through(opt, dataclasses.replace(s, listener=rec.built), epochs, steps, losses, rec)
    return study.tell(trial, 0.5)


def _window_ok(
    src: list[float], n0: int, dst: list[float], delta: float, slack: float = 0.0
) -> list[int]:
    """Target steps whose LR lies outside the source's range within +-delta of its fraction
    (widened by `slack`, absolute).

    The source ran n0 steps; `src` may go on past its end (fractions above 1).
    """
    bad = []
    n1 = len(dst)
    for j, lr in enumerate(dst):
        f = j / n1
        lo = max(0, math.floor((f - delta) * n0))
        hi = min(len(src), math.ceil((f + delta) * n0) + 1)
        window = src[lo:hi]
        low, high = min(window) - slack, max(window) + slack
        if not low * (1 - 1e-9) - 1e-12 <= lr <= high * (1 + 1e-9) + 1e-12:
            bad.append(j)
    return bad


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(FAMILIES), warmup=st.booleans(), seed=st.integers(0, 2**16),
    epochs=st.integers(2, 10), steps=st.integers(1, 12), mult=st.integers(1, 3),
    steps1=st.integers(1, 12),
    losses=st.lists(st.floats(0.1, 3.0), min_size=30, max_size=30),  # >= 3 x 10 epochs
)
def test_printed_code_reproduces_the_trial_and_keeps_its_shape_at_any_budget(
    family, warmup, seed, epochs, steps, mult, steps1, losses
):
    warmup = warmup and family in WARMED
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    t = _searched_trial(study, family, warmup, epochs, steps, losses, seed)
    trace = t.user_attrs["lr_trace"]
    assert trace["every"] == 1 and len(trace["lr"]) == epochs * steps

    # 1. At the searched budget, `best --trial N --format python` replays what was applied.
    rec = answer.recommend(study, trial_number=t.number)
    assert applied_lrs(answer.render(rec, "python"), losses) == pytest.approx(trace["lr"],
                                                                          rel=1e-9)
    assert (rec.warmup is not None) == (warmup and round(
        t.user_attrs["schedule"]["warmup"] * epochs * steps) > 0)

    # 2. At another budget, the LR at matching fractions of training keeps the shape:
    #    every target step's LR lies within what the source applied within delta of the
    #    same fraction (delta: rounding of counts to whole scheduler steps, stated here).
    #    Per-step schedules are compared where the source has >= MIN_TICKS steps: below that
    #    torch's own discretisation changes the shape (a 2-step one-cycle never reaches its
    #    peak). Epoch counts are searched in whole epochs, so targets are whole multiples.
    e1 = epochs * mult
    moved = answer.recommend(study, e1, steps1, trial_number=t.number)
    assert (moved.epochs, moved.steps_per_epoch) == (e1, steps1)
    per_epoch0 = rec.interval == schedules.EPOCH
    ticks0 = epochs if per_epoch0 else epochs * steps
    dst = applied_lrs(moved.code(), losses * mult)
    if family == "ReduceLROnPlateau":
        pass  # its LR follows the validation loss, not the fraction of training
    elif per_epoch0 and moved.interval == schedules.EPOCH and family != "MultiStepLR":
        # epoch counts scale exactly: at each source epoch the target applies the same LR
        at_source = [dst[e * mult * steps1] for e in range(epochs)]
        assert at_source == pytest.approx(trace["lr"][::steps], rel=1e-9)
    elif per_epoch0 or ticks0 >= MIN_TICKS:
        src = applied_lrs(rec.code(), losses, more=epochs)
        ticks1 = e1 if moved.interval == schedules.EPOCH else e1 * steps1
        # each count is rounded to whole steps at both budgets (half a step each); periodic
        # boundaries (StepLR, warm restarts) add up that error once per period, and crowded
        # milestones may be moved apart by a step each
        kw = rec.kwargs
        periods = {"StepLR": ticks0 / kw.get("step_size", 1),
                   "CosineAnnealingWarmRestarts": ticks0 / kw.get("T_0", 1),
                   "MultiStepLR": 2 * len(kw.get("milestones", ()))}.get(family, 0)
        delta = (2 + periods / 2) * (1 / ticks0 + 1 / ticks1)
        # a cosine segment sampled every step misses its extreme by up to (1 - cos(pi / L)) / 2
        # of its range (L: the segment's steps); a finer target may come that much closer
        pct = kw.get("pct_start", 0.5)
        seg = {"CosineAnnealingWarmRestarts": kw.get("T_0"), "CosineAnnealingLR": kw.get("T_max"),
               "OneCycleLR": min(pct, 1 - pct) * kw.get("total_steps", 0),
               "WarmupCosine": kw.get("total_iters", 0) - kw.get("warmup_iters", 0)}.get(family)
        peak = float(rec.optimizer["lr"])
        slack = peak * (1 - math.cos(math.pi / max(1.0, seg))) / 2 if seg else 0.0
        assert _window_ok(src, epochs * steps, dst, delta, slack) == []

    # 3. `validate` trains the trial's recorded schedule, resolved as `best` prints it.
    cfg = config.StudyConfig(name="p", path=config.STUDIES_DIR / "p.toml",
                             objective="tests.fake_objectives:train",
                             train=_train_cfg(epochs), space=_space(family, warmup))
    (job,) = [j for j in validate.plan(cfg, study, top=1).jobs if "candidate" in j.roles]
    assert job.schedule == schedules.recorded(t)
    assert schedules.resolve(job.schedule, e1, steps1).kwargs == moved.kwargs


def _train_cfg(epochs: int):
    from objectives.classify import TrainConfig

    return TrainConfig(epochs=epochs)


# Through the CLI, on a store written by a real run.

EVERY = """
trials = {n}
seed = 0
[objective]
function = "tests.fake_objectives:train"
epochs = 4
sleep = 0
[space]
families = "all"
lr = {{ low = 0.01, high = 0.5, log = true }}
warmup_epochs = {{ low = 0.0, high = 1.0 }}
enqueue_defaults = false
[sampler]
name = "random"
[pruner]
name = "none"
"""


@pytest.fixture(scope="module")
def every_family(tmp_path_factory):
    """A study with one trial of every family, with and without an added warmup."""
    root = tmp_path_factory.mktemp("every")
    plan = [(f, False) for f in FAMILIES] + [(f, True) for f in WARMED]
    (root / "every.toml").write_text(EVERY.format(n=len(plan)))
    cfg = config.load_study(str(root / "every.toml"))
    url = f"sqlite:///{root / 'search.db'}"
    study = runner.create_or_load(cfg, url)
    for fam, warm in plan:
        params = {"scheduler": fam}
        if schedules.family(fam).warmup_ok:
            params["warmup"] = warm
        study.enqueue_trial(params)
    assert cli.main(["run", "--study", str(root / "every.toml"), "--storage", url]) == 0
    return root, url, plan


def test_best_exports_every_family_with_and_without_warmup(every_family, capsys):
    root, url, plan = every_family
    study = optuna.load_study(study_name="every", storage=url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted((t.params["scheduler"], t.params.get("warmup", False)) for t in trials) == \
        sorted(plan)
    for t in trials:
        for fmt in ("text", "json", "python"):
            capsys.readouterr()
            code = cli.main(["best", "--study", str(root / "every.toml"), "--storage", url,
                             "--trial", str(t.number), "--format", fmt])
            out = capsys.readouterr()
            assert code == 0 and "Traceback" not in out.err, (t.params, out.err)
        losses = t.user_attrs["val_loss_curve"]
        assert applied_lrs(out.out, losses) == pytest.approx(t.user_attrs["lr_trace"]["lr"],
                                                          rel=1e-9), t.params
        assert (t.user_attrs.get("warmup") is not None) == t.params.get("warmup", False)
    # and rescaled, as a user asks for their own run
    capsys.readouterr()
    for t in trials:
        assert cli.main(["best", "--study", str(root / "every.toml"), "--storage", url,
                         "--trial", str(t.number), "--epochs", "90", "--steps-per-epoch",
                         "390"]) == 0


def test_best_trial_refuses_what_cannot_be_exported(every_family, capsys):
    root, url, _ = every_family
    for n, words in (("999", "has no trial 999"),):
        assert cli.main(["best", "--study", str(root / "every.toml"), "--storage", url,
                         "--trial", n]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1


# Identity: a study's values keep their meaning.

IDENTITY = """
name = "ident"
trials = 2
[objective]
function = "tests.fake_objectives:train"
epochs = 3
sleep = 0
[space]
families = ["Constant"]
[pruner]
name = "none"
"""


@pytest.mark.parametrize("key, value", [
    ("epochs", 2), ("train_subset", 100), ("batch_size", 64), ("width", (8, 8, 8)),
    ("val_fraction", 0.2), ("label_smoothing", 0.0), ("dataset", "fashion_mnist"),
    ("augment", False),
])
def test_resuming_with_a_changed_setting_is_refused_and_the_same_settings_resume(
    tmp_path, key, value
):
    (tmp_path / "ident.toml").write_text(IDENTITY)
    cfg = config.load_study(str(tmp_path / "ident.toml"))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    runner.create_or_load(cfg, url)
    runner.create_or_load(cfg, url)  # the same settings: resumes
    changed = cfg.with_overrides(**{key: value})
    with pytest.raises(runner.UserError, match=f"with {key} = .*--study-name"):
        runner.create_or_load(changed, url)


def test_run_with_fewer_epochs_is_refused_and_study_name_starts_a_separate_study(
    tmp_path, capsys
):
    (tmp_path / "ident.toml").write_text(IDENTITY)
    url = f"sqlite:///{tmp_path / 'search.db'}"
    base = ["run", "--study", str(tmp_path / "ident.toml"), "--storage", url]
    assert cli.main(base) == 0
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "epochs = 3" in err and "--study-name" in err and len(err.strip().splitlines()) == 1
    assert cli.main([*base, "--epochs", "2", "--study-name", "ident-2ep"]) == 0
    assert "--study-name ident-2ep" in capsys.readouterr().out  # the hint keeps the name
    short = optuna.load_study(study_name="ident-2ep", storage=url)
    assert {t.user_attrs["epochs"] for t in short.trials} == {2}
    assert {t.user_attrs["epochs"] for t in optuna.load_study(
        study_name="ident", storage=url).trials} == {3}
    assert cli.main(["best", "--study", str(tmp_path / "ident.toml"), "--storage", url,
                     "--study-name", "ident-2ep"]) == 0


# Pruning steps count epochs; the enqueued defaults are never pruned.

PRUNED = """
name = "pruned"
trials = 40
seed = 3
[objective]
function = "tests.fake_objectives:train"
epochs = 8
sleep = 0
[space]
families = ["Constant", "StepLR", "CosineAnnealingLR", "OneCycleLR"]
lr = {{ low = 1e-4, high = 10.0, log = true }}
default_lr = {default_lr}
[sampler]
name = "random"
[pruner]
{pruner}
"""


def test_hyperband_min_resource_2_first_prunes_after_exactly_2_epochs(tmp_path):
    pruner = 'name = "hyperband"\nmin_resource = 2\nreduction_factor = 3'
    (tmp_path / "p.toml").write_text(PRUNED.format(default_lr=0.1, pruner=pruner))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    assert cli.main(["run", "--study", str(tmp_path / "p.toml"), "--storage", url]) == 0
    trials = optuna.load_study(study_name="pruned", storage=url).trials
    for t in trials:  # steps are epochs trained: 1 .. 8
        assert sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the pruner never pruned: the test proves nothing"
    assert min(max(t.intermediate_values) for t in pruned) == 2
    # every pruning decision fell on a rung: 2, 6 epochs (and never before 2)
    assert {max(t.intermediate_values) for t in pruned} <= {2, 6}
    assert max(max(t.intermediate_values) for t in trials) == 8  # max_resource is reached
    # a pruned trial exports too, saying how far it got
    first = min(pruned, key=lambda t: max(t.intermediate_values))
    rec = answer.recommend(optuna.load_study(study_name="pruned", storage=url),
                           trial_number=first.number)
    assert rec.state == "PRUNED" and "pruned after 2 of 8 epochs" in answer.render(rec, "text")
    assert rec.value == first.intermediate_values[2]


def test_enqueued_defaults_are_never_pruned(tmp_path):
    # default_lr 1e-4 makes the defaults the worst schedules of the study
    pruner = 'name = "median"\nn_startup_trials = 0\nn_warmup_steps = 1'
    (tmp_path / "p.toml").write_text(PRUNED.format(default_lr=1e-4, pruner=pruner))
    url = f"sqlite:///{tmp_path / 'search.db'}"
    assert cli.main(["run", "--study", str(tmp_path / "p.toml"), "--storage", url,
                     "--trials", "20"]) == 0
    trials = optuna.load_study(study_name="pruned", storage=url).trials
    defaults = [t for t in trials if t.user_attrs.get("default")]
    assert len(defaults) == 2 and all(t.state.name == "COMPLETE" for t in defaults)
    low = [t for t in trials if not t.user_attrs.get("default")
           and t.params["lr"] < 1e-3]
    worse = [t for t in low if t.state.name == "PRUNED"]
    assert worse, "no comparable schedule was pruned: the test proves nothing"
