"""The figures' pure `_info` steps on studies built in memory with known values, and every
`_plot` on the awkward studies of issue 4 part 5 (empty, in progress, only pruned, one family).

`make_trial` and `populated_study` are imported by the other dashboard tests too.
"""

from __future__ import annotations

import math

import optuna
import plotly.graph_objects as go
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from dashboards import (
    _common,
    _families,
    _history,
    _importance,
    _leaderboard,
    _learning_curves,
    _lr_curves,
    _params,
)
from dashboards.figures import FIGURES, make_figures
from search import record
from search.goal import DEFAULT

ALL_FAMILIES = [
    "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau",
    "OneCycleLR", "CosineAnnealingWarmRestarts", "PolynomialLR", "Constant",
    "InverseTimeDecay", "WarmupCosine", "WarmupStableDecay",
]
SPACE = {  # family -> its conditional parameters, as the core names them
    "StepLR": {"StepLR.step_size": IntDistribution(1, 10),
               "StepLR.gamma": FloatDistribution(0.05, 0.7, log=True)},
    "CosineAnnealingLR": {
        "CosineAnnealingLR.T_max": IntDistribution(5, 20),
        "CosineAnnealingLR.eta_min_factor": FloatDistribution(1e-4, 0.1, log=True),
    },
    "Constant": {},
}
EPOCHS = 6


def _kwargs(family: str, p: dict, lr: float) -> dict:
    if family == "StepLR":
        return {"step_size": p["step_size"], "gamma": p["gamma"]}
    if family == "CosineAnnealingLR":
        return {"T_max": p["T_max"], "eta_min": lr * p["eta_min_factor"]}
    return {}


def make_trial(
    family: str = "StepLR",
    value: float | None = 0.8,
    *,
    state: TrialState = TrialState.COMPLETE,
    accs: list[float | None] | None = None,
    lr: float = 0.1,
    params: dict | None = None,
    end_reason: str | None = None,
) -> FrozenTrial:
    """A trial as the runner writes it: params, curves, exact kwargs, budget, end reason."""
    own = params if params is not None else {
        "StepLR": {"step_size": 2, "gamma": 0.5},
        "CosineAnnealingLR": {"T_max": 6, "eta_min_factor": 0.01},
        "Constant": {},
    }[family]
    if accs is None:
        n = EPOCHS if state == TrialState.COMPLETE else 2
        final = value if value is not None else 0.3
        accs = [round(final * (e + 1) / n, 6) for e in range(n)]
    lrs = [lr * 0.5 ** (e // 2) if family == "StepLR" else lr for e in range(len(accs))]
    attrs = {
        "scheduler_kwargs": _kwargs(family, own, lr), "interval": "epoch",
        "epochs": EPOCHS, "steps_per_epoch": 10, "lr_curve": lrs, "val_acc_curve": accs,
        "val_loss_curve": [None if a is None else 1 - a for a in accs],
        "optimizer": {"name": "SGD", "lr": lr, "momentum": 0.9, "nesterov": True,
                      "weight_decay": 5e-4},
        "schedule": {"family": family, "lr": lr, "momentum": 0.9, "weight_decay": 5e-4,
                     "warmup": 0.0, "params": {k: v / EPOCHS if k in ("step_size", "T_max")
                                               else v for k, v in own.items()}},
    }
    if end_reason or state in (TrialState.PRUNED, TrialState.FAIL):
        attrs["end_reason"] = end_reason or ("pruned" if state == TrialState.PRUNED else "oom")
    params_all = {"scheduler": family, "lr": lr} | {f"{family}.{k}": v for k, v in own.items()}
    dists = {"scheduler": CategoricalDistribution(ALL_FAMILIES),
             "lr": FloatDistribution(1e-3, 1.0, log=True)}
    dists |= {k: SPACE[family][k] for k in params_all if k.startswith(family + ".")}
    return optuna.trial.create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params=params_all, distributions=dists, user_attrs=attrs,
        intermediate_values={e: a for e, a in enumerate(accs) if a is not None},
    )


def study_of(*trials: FrozenTrial, storage: str | None = None, name: str | None = None):
    study = optuna.create_study(direction="maximize", storage=storage, study_name=name)
    study.add_trials(list(trials))
    return study


def populated_study(storage: str | None = None, name: str = "lr", n: int = 24) -> optuna.Study:
    """A small realistic study: three families, finished, pruned and failed trials."""
    trials = []
    for i in range(n):
        family = ["StepLR", "CosineAnnealingLR", "Constant"][i % 3]
        lr = 10 ** (-2.5 + 2 * ((i * 7) % n) / n)
        value = round(0.95 - 0.1 * abs(math.log10(lr / 0.1)) - 0.01 * (i % 3), 4)
        params = {"StepLR": {"step_size": 1 + i % 5, "gamma": 0.1 + 0.02 * i},
                  "CosineAnnealingLR": {"T_max": 5 + i % 10, "eta_min_factor": 1e-3 * (1 + i)},
                  "Constant": {}}[family]
        if i % 5 == 4:
            trials.append(make_trial(family, None, state=TrialState.PRUNED, lr=lr,
                                     params=params, accs=[0.2, 0.3 + 0.01 * i]))
        elif i == n - 1:
            trials.append(make_trial(family, None, state=TrialState.FAIL, lr=lr,
                                     params=params, accs=[0.1]))
        else:
            trials.append(make_trial(family, value, lr=lr, params=params))
    return study_of(*trials, storage=storage, name=name)


# ----------------------------------------------------------------------------------------
# _info steps, known values


def test_snapshot_reads_once_and_groups():
    study = study_of(make_trial(value=0.5), make_trial(state=TrialState.PRUNED, value=None))
    snap = _common.snapshot(study)
    assert _common.snapshot(snap) is snap
    assert [t.number for t in snap.complete] == [0]
    assert snap.counts() == {"complete": 1, "pruned": 1}
    assert snap.goal == DEFAULT and snap.reason == ""  # a study from before goals: accuracy


def test_leaderboard_ranks_finished_first_then_by_last_accuracy():
    study = study_of(
        make_trial("StepLR", 0.70),
        make_trial("Constant", 0.90, lr=0.05),
        make_trial("CosineAnnealingLR", None, state=TrialState.PRUNED, accs=[0.4, 0.95]),
        make_trial("StepLR", 0.80, params={"step_size": 3, "gamma": 0.25}),
    )
    info = _leaderboard._info(study, top=3)
    assert [(r.rank, r.number) for r in info.rows] == [(1, 1), (2, 3), (3, 0)]
    assert info.rows[0].family == "Constant" and info.rows[0].value == 0.90
    assert info.rows[1].params == "gamma=0.25, step_size=3, lr=0.1"
    assert (info.rows[1].epochs_run, info.rows[1].epochs, info.rows[1].end) == (6, 6, "complete")
    full = _leaderboard._info(study, top=10)
    pruned = full.rows[-1]
    assert (pruned.number, pruned.value, pruned.epochs_run) == (2, 0.95, 2)
    assert pruned.end == "pruned"


def test_leaderboard_respects_minimize_direction():
    study = optuna.create_study(direction="minimize")
    record.set_study(study, record.Study.IDENTITY, {"metric": "val_loss",
                                                    "direction": "minimize"})
    study.add_trials([make_trial(value=0.3), make_trial(value=0.1)])
    assert [r.number for r in _leaderboard._info(study).rows] == [1, 0]


def test_families_best_median_and_counts():
    study = study_of(
        make_trial("StepLR", 0.6), make_trial("StepLR", 0.8), make_trial("StepLR", 0.7),
        make_trial("Constant", 0.75),
        make_trial("StepLR", None, state=TrialState.PRUNED),
        make_trial("Constant", None, state=TrialState.FAIL),
        make_trial("CosineAnnealingLR", None, state=TrialState.PRUNED),
        make_trial("StepLR", None, state=TrialState.PRUNED, end_reason="non_finite_loss"),
    )
    info = _families._info(study)
    by = {s.family: s for s in info.families}
    assert [s.family for s in info.families] == ["StepLR", "Constant", "CosineAnnealingLR"]
    assert by["StepLR"].pruned_values == [0.3] and by["StepLR"].epochs == (2, 6)
    assert by["StepLR"].values == [0.8, 0.7, 0.6] and by["StepLR"].numbers == [1, 2, 0]
    assert (by["StepLR"].best, by["StepLR"].median, by["StepLR"].n_pruned) == (0.8, 0.7, 1)
    assert by["StepLR"].n_diverged == 1 and by["Constant"].n_diverged == 0
    assert (by["Constant"].best, by["Constant"].n_failed) == (0.75, 1)
    # A family that never finished still gets its row, saying it was only pruned.
    assert by["CosineAnnealingLR"].values == [] and by["CosineAnnealingLR"].n_pruned == 1
    fig = _families._plot(info)
    assert "StepLR best: 0.8000" in fig.layout.title.text
    assert "2 of 3 families thin" in fig.layout.title.text  # 3, 1 and 0 complete
    assert fig.data[0].name == "StepLR: 3 complete, 1 pruned, 1 diverged; epochs 2-6/6"
    assert _families.label(by["CosineAnnealingLR"]) == (
        "CosineAnnealingLR: 0 complete, 1 pruned; epochs 2/6 (thin)")


def test_lr_curves_top_trials_best_first_skipping_missing_and_non_positive():
    no_curve = make_trial("Constant", 0.99)
    del no_curve.user_attrs["lr_curve"]
    study = study_of(
        make_trial("StepLR", 0.6, lr=0.4), make_trial("StepLR", 0.9, lr=0.2), no_curve,
        make_trial("Constant", 0.7, lr=0.1),
    )
    info = _lr_curves._info(study, top=2)
    assert [(c.number, c.value) for c in info.curves] == [(1, 0.9), (3, 0.7)]
    assert info.curves[0].fractions == [0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]
    assert info.curves[0].rank == 1 and not info.curves[0].per_step
    assert info.resolution.startswith("per epoch")
    assert info.curves[0].lrs == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]
    zero = make_trial("Constant", 0.5)
    zero.user_attrs["lr_curve"] = [0.1, 0.0, float("nan")] + [0.1] * 3
    assert _lr_curves._info(study_of(zero)).curves[0].lrs[:3] == [0.1, None, None]


def test_learning_curves_groups_and_best():
    study = study_of(
        make_trial("StepLR", 0.8, accs=[0.5, 0.8]),
        make_trial("StepLR", 0.9, accs=[0.6, float("nan"), 0.9]),
        make_trial("Constant", None, state=TrialState.PRUNED, accs=[0.2]),
        make_trial("Constant", None, state=TrialState.FAIL, accs=[0.1, None]),
    )
    info = _learning_curves._info(study)
    assert [c.number for c in info.groups["complete"]] == [0, 1]
    assert info.groups["complete"][1].values == [0.6, None, 0.9]
    assert [c.number for c in info.groups["pruned"]] == [2]
    assert [c.number for c in info.groups["failed"]] == [3]
    assert info.best is not None and info.best.number == 1
    assert _learning_curves._last(info.groups["failed"][0]) == (1, 0.1)


def test_learning_curves_fall_back_to_intermediate_values():
    t = make_trial("StepLR", 0.9, accs=[0.3, 0.6, 0.9])
    del t.user_attrs["val_acc_curve"]
    info = _learning_curves._info(study_of(t))
    assert info.groups["complete"][0].values == [0.3, 0.6, 0.9]


def test_history_best_so_far_and_pruned_last_values():
    study = study_of(
        make_trial(value=0.5), make_trial(state=TrialState.PRUNED, value=None, accs=[0.1, 0.2]),
        make_trial(value=0.4), make_trial(value=0.7),
    )
    info = _history._info(study)
    assert info.numbers == [0, 2, 3] and info.values == [0.5, 0.4, 0.7]
    assert info.best_so_far == [0.5, 0.5, 0.7]
    assert (info.pruned_numbers, info.pruned_values) == ([1], [0.2])


def test_importance_uses_conditional_ped_anova_over_all_params():
    study = populated_study()
    info = _importance._info(study)
    names = {k for k, _ in info.importances}
    # Conditional params of every family are scored (Optuna 5's conditional PED-ANOVA).
    assert {"scheduler", "lr", "StepLR.gamma", "CosineAnnealingLR.T_max"} <= names
    assert math.isclose(sum(v for _, v in info.importances), 1.0)
    values = [v for _, v in info.importances]
    assert values == sorted(values, reverse=True)
    assert info.kinds["StepLR.gamma"] == "conditional" and info.kinds["lr"] == "shared"
    assert info.kinds["scheduler"] == "family"
    assert info.n_trials == len(_common.snapshot(study).complete)


def test_importance_needs_enough_trials():
    info = _importance._info(study_of(make_trial(value=0.5), make_trial(value=0.6)))
    assert info.importances == [] and "at least" in info.reason


def test_params_per_family_own_params_then_lr():
    study = study_of(
        make_trial("StepLR", 0.6, params={"step_size": 2, "gamma": 0.1}, lr=0.01),
        make_trial("StepLR", 0.8, params={"step_size": 4, "gamma": 0.3}, lr=0.02),
        make_trial("Constant", 0.9, lr=0.03),
    )
    info = _params._info(study)
    assert [f.family for f in info.families] == ["Constant", "StepLR"]
    step = info.families[1]
    assert [p.name for p in step.params] == ["StepLR.gamma", "StepLR.step_size", "lr"]
    gamma = step.params[0]
    assert (gamma.xs, gamma.ys, gamma.numbers, gamma.scale) == ([0.3, 0.1], [0.8, 0.6], [1, 0],
                                                               "log")
    assert step.params[1].scale == "linear"
    assert [p.name for p in info.families[0].params] == ["lr"]
    fig = _params._plot(info)
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["Constant (best 0.9000)", "StepLR (best 0.8000)"]
    # The dropdown shows one family's panels at a time; the first is visible.
    assert [bool(tr.visible) for tr in fig.data] == [True, False, False, False]


# ----------------------------------------------------------------------------------------
# Part 5: a figure with nothing to show says why instead of failing


def _empty_study():
    return optuna.create_study(direction="maximize")


def _only_pruned():
    return study_of(*(make_trial(state=TrialState.PRUNED, value=None) for _ in range(3)))


def _in_progress():
    study = study_of(make_trial(value=0.6))
    trial = study.ask({"scheduler": CategoricalDistribution(ALL_FAMILIES)})
    trial.set_user_attr("val_acc_curve", [0.2, 0.4])
    return study


def _one_family():
    return study_of(*(make_trial("StepLR", 0.5 + 0.02 * i) for i in range(12)))


def _only_failed():
    return study_of(make_trial(state=TrialState.FAIL, value=None, accs=[]))


AWKWARD = {
    "empty": _empty_study, "only-pruned": _only_pruned, "in-progress": _in_progress,
    "one-family": _one_family, "only-failed": _only_failed,
}


@pytest.mark.parametrize("kind", AWKWARD)
@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_draws_or_says_why(kind, name):
    study = AWKWARD[kind]()
    spec = FIGURES[name]
    info = spec.info(study, 10) if spec.uses_top else spec.info(study)
    fig = spec.plot(info)
    assert isinstance(fig, go.Figure)
    fig.to_json()  # serializable, as optuna-dashboard stores it
    if info.reason:
        text = " ".join(a.text for a in fig.layout.annotations)
        assert info.reason in text and len(info.reason) > 10
    else:
        assert len(fig.data) > 0


def test_empty_study_reasons_are_specific():
    figs = {name: spec.info(_empty_study()) for name, spec in FIGURES.items()}
    assert figs["leaderboard"].reason.startswith("no trials yet")
    assert "no trials yet" in figs["learning-curves"].reason
    assert "needs at least" in figs["importance"].reason


def test_only_pruned_study_still_shows_curves_history_and_leaderboard():
    study = _only_pruned()
    assert _learning_curves._info(study).reason == ""
    assert _history._info(study).reason == ""
    assert len(_leaderboard._info(study).rows) == 3
    fams = _families._info(study)  # every family tried is shown, even with pruned trials only
    assert fams.reason == "" and fams.families[0].n_pruned == 3


def test_in_progress_study_draws_the_running_trial():
    info = _learning_curves._info(_in_progress())
    assert [c.values for c in info.groups["running"]] == [[0.2, 0.4]]


def test_multi_objective_study_is_explained():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for name, fig in make_figures(study).items():
        assert "multi-objective" in fig.layout.annotations[0].text, name


def test_make_figures_rejects_unknown_names():
    with pytest.raises(ValueError, match="figure must be one of"):
        make_figures(_empty_study(), names=["nope"])
