"""The figures and the report follow the study's goal (search.goal): a minimised loss is ranked
lowest first, named by its metric on every title, axis and hover, and shown as the loss it is
(never negated); the same table of values, maximised with the sign flipped, picks the same
trials in the same order.

The studies are written as the runner writes them: the goal in the study's identity, each
trial's curves through `record.Writer` (every reported metric), its values reported to Optuna.
"""

from __future__ import annotations

import math
import re

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from dashboards import (
    _common,
    _families,
    _history,
    _importance,
    _leaderboard,
    _learning_curves,
    _lr_curves,
    _lr_scores,
    _params,
    _winner,
    validation,
)
from dashboards.figures import FIGURES, make_figures
from dashboards.report import write_report
from search import compat, record
from search.goal import Goal
from tests.test_dashboards_figures import ALL_FAMILIES, SPACE

EPOCHS, STEPS = 6, 10
LOSS = Goal("val_loss", "minimize")
MIRROR = Goal("neg_val_loss", "maximize")  # the same numbers, negated and maximised
# (family, final val_loss, state): a pruned trial's loss is its last report
TABLE = [
    ("StepLR", 0.62, TrialState.COMPLETE),
    ("CosineAnnealingLR", 0.41, TrialState.COMPLETE),
    ("Constant", 0.95, TrialState.COMPLETE),
    ("StepLR", 0.38, TrialState.COMPLETE),
    ("CosineAnnealingLR", 1.40, TrialState.PRUNED),
    ("Constant", 0.71, TrialState.COMPLETE),
    ("StepLR", 0.55, TrialState.COMPLETE),
    ("CosineAnnealingLR", 0.47, TrialState.COMPLETE),
    ("StepLR", 2.10, TrialState.PRUNED),
    ("Constant", 0.80, TrialState.COMPLETE),
    ("CosineAnnealingLR", 0.44, TrialState.COMPLETE),
    ("StepLR", 0.90, TrialState.COMPLETE),
    ("Constant", 1.30, TrialState.COMPLETE),
]
COMPLETE = {i: v for i, (_, v, s) in enumerate(TABLE) if s == TrialState.COMPLETE}
BEST = min(COMPLETE, key=COMPLETE.get)  # trial 3, val_loss 0.38


def _params_of(family: str, i: int) -> dict[str, float]:
    return {"StepLR": {"step_size": 1 + i % 4, "gamma": 0.1 + 0.05 * (i % 5)},
            "CosineAnnealingLR": {"T_max": 5 + i % 6, "eta_min_factor": 1e-3 * (1 + i)},
            "Constant": {}}[family]


def goal_study(goal: Goal = LOSS, sign: float = 1.0, storage: str | None = None,
               name: str = "loss", table=TABLE) -> optuna.Study:
    """A study of `goal` whose trial i reports `sign * table[i]` as `goal.metric` every epoch
    (a curve falling, or rising for sign -1, to that value), beside a val_acc it does not
    optimise."""
    study = optuna.create_study(direction=goal.direction, storage=storage, study_name=name)
    record.set_study(study, record.Study.IDENTITY, {"metric": goal.metric,
                                                    "direction": goal.direction})
    for i, (family, final, state) in enumerate(table):
        own = _params_of(family, i)
        lr = 10 ** (-2 + 1.5 * ((i * 5) % len(table)) / len(table))
        dists = {"scheduler": CategoricalDistribution(ALL_FAMILIES),
                 "lr": FloatDistribution(1e-3, 1.0, log=True)}
        dists |= {f"{family}.{k}": SPACE[family][f"{family}.{k}"] for k in own}
        study.enqueue_trial({"scheduler": family, "lr": lr}
                            | {f"{family}.{k}": v for k, v in own.items()})
        trial = study.ask(dists)
        write = record.Writer(trial)
        schedule = {"family": family, "lr": lr, "momentum": 0.9, "weight_decay": 5e-4,
                    "warmup": 0.0, "params": {k: v / EPOCHS if k in ("step_size", "T_max")
                                              else v for k, v in own.items()}}
        kwargs = ({"step_size": own["step_size"], "gamma": own["gamma"]} if family == "StepLR"
                  else {"T_max": own["T_max"], "eta_min": lr * own["eta_min_factor"]}
                  if family == "CosineAnnealingLR" else {})
        write.built(schedule, kwargs, "epoch", STEPS, EPOCHS, None)
        write.optimizer({"name": "SGD", "lr": lr, "momentum": 0.9, "nesterov": True,
                         "weight_decay": 5e-4})
        n = EPOCHS if state == TrialState.COMPLETE else 3
        losses = [round(final + 0.5 * (n - 1 - e) / n, 6) for e in range(n)]
        curve = [sign * v for v in losses]
        write.epoch([lr] * n, {goal.metric: curve, "val_acc": [1 - v / 3 for v in losses]},
                    None)
        for e, v in enumerate(curve):
            trial.report(v, e + 1)
        if state == TrialState.COMPLETE:
            study.tell(trial, sign * final)
        else:
            write.end(record.End.PRUNED)
            study.tell(trial, state=TrialState.PRUNED)
    return study


def mirrored() -> tuple[optuna.Study, optuna.Study]:
    return goal_study(), goal_study(MIRROR, -1.0, name="mirror")


def with_loss_companion(study: optuna.Study) -> optuna.Study:
    """`<name>.validate` with the recommendation and a cosine baseline, 3 seeds each, scored
    on the test split in val_loss (the searched study's metric)."""
    comp = optuna.create_study(direction="minimize", storage=compat.storage_of(study),
                               study_name=study.study_name + ".validate")
    comp.set_user_attr("schedule.win", {"label": f"trial {BEST} StepLR", "family": "StepLR",
                                        "roles": ["candidate"], "source_trial": BEST})
    comp.set_user_attr("schedule.cos", {"label": "CosineAnnealingLR (whole run)",
                                        "family": "CosineAnnealingLR", "roles": ["baseline"],
                                        "lr": 0.1, "lr_source": "default"})
    runs = []
    for seed, (w, c) in enumerate([(0.40, 0.52), (0.42, 0.50), (0.41, 0.51)]):
        for key, v, extra in (("win", w, {"source_trial": BEST, "roles": ["candidate"]}),
                              ("cos", c, {"roles": ["baseline"]})):
            runs.append(optuna.trial.create_trial(
                value=v, params={"scheduler": "Constant"},
                distributions={"scheduler": CategoricalDistribution(ALL_FAMILIES)},
                user_attrs={"validate_key": key, "seed": seed, "holdout": "test",
                            "epochs": EPOCHS, "steps_per_epoch": STEPS,
                            "lr_curve": [0.1, 0.05], "metric_curves": {"val_loss": [v + 0.3, v]},
                            **extra}))
    comp.add_trials(runs)
    return comp


# ----------------------------------------------------------------------------------------
# A minimised val_loss: every data step names the lowest value best


def test_every_info_step_ranks_the_lowest_loss_first():
    study = goal_study()
    snap = _common.snapshot(study)
    assert snap.goal == LOSS and snap.recommended == BEST
    assert [t.number for t in snap.best_first(snap.complete)] == sorted(COMPLETE,
                                                                        key=COMPLETE.get)

    rows = _leaderboard._info(snap, top=20).rows
    done = [r for r in rows if r.end == "complete"]
    assert rows[0].number == BEST and rows[0].value == min(COMPLETE.values())
    assert [r.value for r in done] == sorted(COMPLETE.values())
    pruned = [r.value for r in rows if r.end != "complete"]
    assert pruned == [1.40, 2.10]  # their last reports, lowest first, after the complete

    fams = _families._info(snap).families
    assert [s.family for s in fams] == ["StepLR", "CosineAnnealingLR", "Constant"]
    for s in fams:
        assert s.values == sorted(s.values) and s.best == min(s.values)
    assert fams[0].best == 0.38 and fams[1].pruned_values == [1.40]

    hist = _history._info(snap)
    assert hist.best_so_far == [min(hist.values[: k + 1]) for k in range(len(hist.values))]
    assert hist.pruned_values == [1.40, 2.10]

    curves = _lr_curves._info(snap, top=5).curves
    assert curves[0].number == BEST and [c.value for c in curves] == sorted(
        COMPLETE.values())[:5]

    lc = _learning_curves._info(snap)
    assert lc.best.number == BEST and lc.best.values[-1] == 0.38
    assert lc.best.values == sorted(lc.best.values, reverse=True)  # a loss falling

    params = _params._info(snap)
    assert [(f.family, f.best) for f in params.families] == [
        ("StepLR", 0.38), ("CosineAnnealingLR", 0.41), ("Constant", 0.71)]

    scores = _lr_scores._info(snap)
    assert scores.recommended[1] == 0.38 and scores.recommended[2].startswith(f"trial {BEST}")

    win = _winner._info(snap)
    assert win.schedules[0].val_source == f"trial {BEST}" and win.schedules[0].final_val == 0.38


def test_validation_and_winner_show_test_losses_as_losses():
    study = goal_study()
    with_loss_companion(study)
    info = validation._info(study)
    (panel,) = info.panels
    assert [(r.label, r.mean) for r in panel.rows] == [
        (f"trial {BEST} StepLR", pytest.approx(0.41)),
        ("CosineAnnealingLR (whole run)", pytest.approx(0.51))]
    assert panel.rows[0].scores == [0.40, 0.42, 0.41]  # per seed, positive losses
    fig = validation._plot(info)
    assert fig.layout.xaxis.title.text == "val_loss on the test split (lower is better)"
    assert "val_loss on the test split over seeds" in fig.layout.title.text
    win = _winner._info(study)
    assert win.schedules[0].test == pytest.approx([0.71, 0.41])
    # lower is better: the recommendation's 0.41 beats the baseline's 0.51
    assert "test 0.4100 vs 0.5100 (CosineAnnealingLR (whole run)): 0.1000 val_loss better" in (
        _winner.headline(win))


# ----------------------------------------------------------------------------------------
# Names and numbers on the figures


def _numbers(fig) -> list[float]:
    """Every number a figure plots (x, y, error bars, custom data)."""
    out: list[float] = []
    for trace in fig.data:
        for key in ("x", "y", "customdata"):
            vals = getattr(trace, key, None)
            if vals is None:
                continue
            arr = np.asarray(vals, dtype=object).ravel()
            out += [float(v) for v in arr if isinstance(v, (int, float, np.number))
                    and not isinstance(v, bool)]
        for err in ("error_x", "error_y"):
            e = getattr(trace, err, None)
            if e is not None and e.array is not None:
                out += [float(v) for v in e.array]
    return [v for v in out if not math.isnan(v)]


def _strings(x) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        return [s for k, v in x.items() if k != "template" for s in _strings(v)]
    if isinstance(x, (list, tuple)):
        return [s for v in x for s in _strings(v)]
    return []


def _texts(fig) -> str:
    """Every text a person reads on a figure (titles, axes, hovers, legends, notes, table
    cells): the strings of its layout and traces, not their numbers."""
    return " | ".join(_strings(fig.to_plotly_json()))


def test_loss_figures_name_val_loss_and_never_show_a_negated_value():
    study = goal_study()
    with_loss_companion(study)
    figs = make_figures(study, top=20)
    for name, fig in figs.items():
        text = _texts(fig)
        assert "accuracy" not in text and "val acc" not in text, name
        assert not re.search(r"\bpoints\b", text), name
        assert not re.search(r"(?<![\w.=])-\d", text), (name, re.findall(r".{30}-\d.{10}",
                                                                        text))
        assert all(v >= 0 for v in _numbers(fig)), name
    assert figs["history"].layout.yaxis.title.text == "val_loss (lower is better)"
    assert figs["learning-curves"].layout.yaxis.title.text == "val_loss (lower is better)"
    assert figs["params"].layout.yaxis.title.text == "val_loss (lower is better)"
    assert figs["lr-scores"].layout.yaxis.title.text == "val_loss (lower is better)"
    assert figs["families"].layout.xaxis.title.text == (
        "val_loss (pruned: last report; lower is better)")
    assert figs["families"].layout.title.text.startswith("Schedule families: val_loss ")
    assert figs["params"].layout.title.text == "Parameters against val_loss, per family"
    assert "LR and val_loss over training" in figs["winner"].layout.title.text
    assert figs["winner"].layout.yaxis2.title.text == "val_loss (lower is better)"
    assert figs["leaderboard"].data[0].header.values[4] == "val_loss"
    assert "by final val_loss (lower is better)" in figs["leaderboard"].layout.title.text
    assert "val_loss %{y:.4f}" in figs["history"].data[1].hovertemplate
    # Value axes are never reversed: the best loss is at the bottom of the LR-score window.
    yaxis = figs["lr-scores"].layout.yaxis
    assert yaxis.autorange in (None, True)
    low, high = yaxis.range
    assert low < 0.38 < low + (high - low) / 5 and high < 2.10  # the hopeless run falls off


def test_accuracy_studies_keep_their_wording():
    from tests.test_dashboards_figures import populated_study

    figs = make_figures(populated_study())
    assert figs["history"].layout.yaxis.title.text == "validation accuracy"
    assert figs["families"].layout.xaxis.title.text == "validation accuracy (pruned: last report)"
    assert figs["families"].layout.title.text.startswith(
        "Schedule families: validation accuracy and how often each was tried")
    assert figs["leaderboard"].data[0].header.values[4] == "val acc"
    assert "val acc %{y:.4f}" in figs["history"].data[1].hovertemplate
    low, high = figs["lr-scores"].layout.yaxis.range  # the 10 points below the best
    assert high - low == pytest.approx(0.11)
    assert FIGURES["validation"].heading(Goal()) == FIGURES["validation"].title == (
        "Validation: test accuracy over seeds (mean ± std), baselines marked")
    assert FIGURES["validation"].heading(LOSS) == (
        "Validation: val_loss on the test split over seeds (mean ± std), baselines marked")


def test_value_range_mirrors_between_directions():
    values = [0.38, 0.41, 0.44, 0.55, 0.9, 2.1]
    low, high = _lr_scores.value_range(LOSS, values)
    neg_low, neg_high = _lr_scores.value_range(MIRROR, [-v for v in values])
    assert (low, high) == pytest.approx((-neg_high, -neg_low))
    assert low < 0.38 and high < 2.1
    assert _lr_scores.value_range(LOSS, []) is None
    assert _lr_scores.value_range(LOSS, [0.5]) == pytest.approx([0.495, 0.55])


# ----------------------------------------------------------------------------------------
# The mirror image: minimising v and maximising -v choose the same trials


def test_minimised_values_and_maximised_negations_choose_the_same_trials():
    low, high = mirrored()
    for study in (low, high):
        assert _common.snapshot(study).recommended == BEST
    a, b = _common.snapshot(low), _common.snapshot(high)
    assert ([t.number for t in a.best_first(a.trials)]
            == [t.number for t in b.best_first(b.trials)])
    assert ([r.number for r in _leaderboard._info(a, top=20).rows]
            == [r.number for r in _leaderboard._info(b, top=20).rows])
    assert ([r.value for r in _leaderboard._info(a, top=20).rows]
            == [-r.value for r in _leaderboard._info(b, top=20).rows])
    fa, fb = _families._info(a).families, _families._info(b).families
    assert [(s.family, s.numbers) for s in fa] == [(s.family, s.numbers) for s in fb]
    assert [s.best for s in fa] == [-s.best for s in fb]
    ha, hb = _history._info(a), _history._info(b)
    assert ha.best_so_far == [-v for v in hb.best_so_far]
    assert ([c.number for c in _lr_curves._info(a, top=20).curves]
            == [c.number for c in _lr_curves._info(b, top=20).curves])
    assert _learning_curves._info(a).best.number == _learning_curves._info(b).best.number
    assert ([f.family for f in _params._info(a).families]
            == [f.family for f in _params._info(b).families])
    assert (_winner._info(a).schedules[0].val_source
            == _winner._info(b).schedules[0].val_source == f"trial {BEST}")
    # PED-ANOVA scores the top 10% by the goal: the same trials, so the same importances
    ia, ib = _importance._info(a), _importance._info(b)
    assert [k for k, _ in ia.importances] == [k for k, _ in ib.importances] != []
    assert [v for _, v in ia.importances] == pytest.approx([v for _, v in ib.importances])
    # the maximised mirror names its own metric, higher is better
    assert _common.axis_title(b.goal) == "neg_val_loss (higher is better)"


# ----------------------------------------------------------------------------------------
# The report page


def test_loss_report_names_the_objective_and_the_metric(tmp_path):
    study = goal_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    with_loss_companion(study)
    page = write_report(study, tmp_path / "r.html", save=False).read_text(encoding="utf-8")
    assert "objective: val_loss, lower is better" in page
    nav = page[page.index("<nav>"):page.index("</nav>")]
    assert "Schedule families: val_loss and how often each was tried" in nav
    assert "Validation: val_loss on the test split over seeds" in nav
    assert "accuracy" not in nav
