"""Issue 13's figures on studies built in memory with known values: the winner against the
tuned baselines (validate absent and present), every family with thin evidence marked, the LR
curves at per-step resolution with rank colours robust to an outlier, and the tile layout of
the figures saved for optuna-dashboard."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from dashboards import _families, _lr_curves, _winner
from dashboards._common import BEST_COLOR, lr_points
from dashboards.figures import FIGURES, for_tile, make_figures
from search import compat
from tests.test_dashboards_figures import ALL_FAMILIES, make_trial, study_of

STEPS = 10  # steps per epoch in make_trial's attrs; 6 epochs: 60 steps


def traced(trial, lrs, every=3):
    """Give a trial an `lr_trace` as the runner records it (every k optimizer steps)."""
    trial.user_attrs["lr_trace"] = {"every": every, "lr": lrs}
    return trial


def run(study_name, storage, attrs, value, accs, lr_trace=None, state=TrialState.COMPLETE):
    """One companion trial (validate's test run or LR-sweep run)."""
    user = {"val_acc_curve": accs, "epochs": 6, "steps_per_epoch": STEPS, **attrs}
    if lr_trace is not None:
        user["lr_trace"] = {"every": 6, "lr": lr_trace}
    return optuna.trial.create_trial(
        state=state, value=value, params={"scheduler": attrs.get("family", "Constant")},
        distributions={"scheduler": CategoricalDistribution(ALL_FAMILIES)}, user_attrs=user)


def with_companion(study, tests=True):
    """`<name>.validate` as `validate` writes it: the winner (trial 0) as candidate, a cosine
    baseline whose LR came from an LR sweep, a Constant whose LR came from search trial 1."""
    comp = optuna.create_study(direction="maximize", storage=compat.storage_of(study),
                               study_name=study.study_name + ".validate")
    comp.set_user_attr("schedule.win", {"label": "trial 0 StepLR", "family": "StepLR",
                                        "roles": ["candidate"], "source_trial": 0})
    comp.set_user_attr("schedule.cos", {
        "label": "CosineAnnealingLR (whole run)", "family": "CosineAnnealingLR",
        "roles": ["baseline"], "source_trial": None, "lr": 0.2,
        "lr_source": "sweep of 2 LRs on the validation split: 0.2, +0.0500 over the default 0.1"})
    comp.set_user_attr("schedule.const", {
        "label": "Constant (LR of trial 1)", "family": "Constant", "roles": ["baseline"],
        "source_trial": None, "lr": 0.05,
        "lr_source": "LR of the best of the study's Constant trials (trial 1)", "lr_trial": 1})
    sweep = {"sweep_for": "cosine", "holdout": "val", "label": "CosineAnnealingLR (whole run)",
             "roles": ["sweep"]}
    trials = [
        run("", None, sweep | {"validate_key": "s1", "optimizer": {"lr": 0.1}, "seed": 0},
            0.70, [0.5, 0.7], [0.1] * 10),
        run("", None, sweep | {"validate_key": "s2", "optimizer": {"lr": 0.2}, "seed": 0},
            0.75, [0.6, 0.75], [0.2, 0.1, 0.0]),
    ]
    if tests:
        for seed, (w, c) in enumerate([(0.90, 0.80), (0.92, 0.84)]):
            trials += [
                run("", None, {"validate_key": "win", "seed": seed, "source_trial": 0,
                               "roles": ["candidate"], "holdout": "test"}, w, [w - 0.1, w],
                    [0.1, 0.05]),
                run("", None, {"validate_key": "cos", "seed": seed, "roles": ["baseline"],
                               "holdout": "test"}, c, [c - 0.2, c], [0.2, 0.15, 0.05, 0.0]),
            ]
    comp.add_trials(trials)
    return comp


def searched():
    win = traced(make_trial("StepLR", 0.88, accs=[0.5, 0.88]), [0.01, 0.1, 0.1, 0.05] * 5)
    const = make_trial("Constant", 0.80, lr=0.05, accs=[0.6, 0.8])
    return study_of(win, const, name="lr")


def test_winner_without_validate_shows_the_winner_and_says_how_to_get_baselines():
    info = _winner._info(searched())
    assert [s.label for s in info.schedules] == ["recommended: trial 0 StepLR"]
    win = info.schedules[0]
    assert win.lr.per_step and win.lr.fractions[:3] == [0, 3 / 60, 6 / 60]
    assert win.val == [0.5, 0.88] and win.val_x == [1 / 6, 2 / 6] and win.test == []
    assert "python -m search validate --study lr" in info.note
    fig = _winner._plot(info)
    assert "validate --study lr" in fig.layout.title.text


def test_winner_against_tuned_baselines_before_and_after_the_test_runs():
    study = searched()
    with_companion(study, tests=False)
    info = _winner._info(study)
    by = {s.label: s for s in info.schedules}
    assert list(by) == ["recommended: trial 0 StepLR", "CosineAnnealingLR (whole run)",
                        "Constant (LR of trial 1)"]
    cos = by["CosineAnnealingLR (whole run)"]
    # The sweep run at the chosen LR (0.2), not the other: its LR and validation curve.
    assert cos.lr.lrs == [0.2, 0.1, None] and cos.val == [0.6, 0.75]
    assert cos.val_source == "LR sweep run 1"
    const = by["Constant (LR of trial 1)"]
    assert const.val_source == "trial 1" and const.val == [0.6, 0.8] and const.test == []
    assert "test curves appear" in info.note
    assert _winner.headline(info) == ("val 0.8800 vs 0.8000 (Constant (LR of trial 1)): "
                                      "8.00 points better")


def test_winner_test_curves_are_the_mean_over_seeds():
    study = searched()
    with_companion(study)
    info = _winner._info(study)
    win, cos = info.schedules[0], info.schedules[1]
    assert win.test == pytest.approx([0.81, 0.91]) and win.seeds == 2
    assert cos.test == pytest.approx([0.62, 0.82]) and cos.test_x == [1 / 6, 2 / 6]
    assert cos.lr.lrs == [0.2, 0.15, 0.05, None]  # from the test run: per step
    assert info.note == ""
    assert "test 0.9100 vs 0.8200 (CosineAnnealingLR (whole run)): 9.00 points better" in (
        _winner.headline(info))
    fig = _winner._plot(info)
    recommended = [t.line.color for t in fig.data if t.name == "recommended: trial 0 StepLR"]
    assert recommended == [BEST_COLOR]
    assert sum(t.line.dash == "dash" for t in fig.data) == 2  # the two test means


def test_lr_points_fall_back_to_the_epoch_curve():
    t = make_trial("StepLR", 0.8)
    pts = lr_points(t)
    assert not pts.per_step and pts.fractions == [e / 6 for e in range(6)]
    traced(t, [0.1, 0.0, 0.2], every=30)
    assert lr_points(t) == ([0.0, 0.5, 1.0], [0.1, None, 0.2], True)


def test_lr_curves_rank_colours_ignore_an_outlier_and_the_legend_is_in_rank_order():
    trials = [traced(make_trial("StepLR", v), [0.1] * 20) for v in (0.90, 0.89, 0.88, 0.1)]
    trials[1] = make_trial("Constant", 0.89)  # no lr_trace: per epoch
    info = _lr_curves._info(study_of(*trials))
    assert [c.rank for c in info.curves] == [1, 2, 3, 4]
    assert info.resolution == "per step (per epoch for trials 1)"
    fig = _lr_curves._plot(info)
    ranks = {t.legendrank: t for t in fig.data}
    assert ranks[1].line.color == BEST_COLOR and ranks[1].line.width > ranks[2].line.width
    # 0.89 and 0.88 are 0.01 apart, the outlier 0.78 below: still well apart in colour
    assert len({ranks[r].line.color for r in (2, 3, 4)}) == 3
    assert ranks[2].line.color == _lr_curves.rank_color(2, 4)
    assert fig.data[-1].legendrank == 1  # the winner is drawn last, on top


def test_families_every_family_tried_appears_with_thin_evidence_marked():
    study = study_of(
        *(make_trial("StepLR", 0.8 + 0.01 * i) for i in range(3)),
        make_trial("Constant", 0.7),
        make_trial("CosineAnnealingLR", None, state=TrialState.PRUNED, accs=[0.3, 0.5]),
        make_trial("CosineAnnealingLR", None, state=TrialState.PRUNED, accs=[0.4]),
        make_trial("Constant", None, state=TrialState.PRUNED, end_reason="non_finite_loss",
                   accs=[None]),
    )
    info = _families._info(study)
    assert [(s.family, s.n_complete, s.thin) for s in info.families] == [
        ("StepLR", 3, False), ("Constant", 1, True), ("CosineAnnealingLR", 0, True)]
    cos = info.families[2]
    assert cos.pruned_values == [0.5, 0.4] and cos.epochs == (1, 2) and cos.budget == 6
    fig = _families._plot(info)
    ys = {y for t in fig.data for y in (t.y or ())}
    assert {_families.label(s) for s in info.families} <= ys  # every family has a row
    assert "2 of 3 families thin" in fig.layout.title.text


def test_only_failed_family_still_gets_a_row():
    study = study_of(make_trial("StepLR", 0.8),
                     make_trial("Constant", None, state=TrialState.FAIL, accs=[]))
    fig = _families._plot(_families._info(study))
    texts = [t for t in fig.data if getattr(t, "mode", None) == "text"]
    assert texts and texts[0].y[0].startswith("Constant: 0 complete, 1 failed")


def test_tile_layout_wraps_titles_and_moves_legends_below():
    study = searched()
    with_companion(study)
    figs = make_figures(study)
    assert list(figs) == list(FIGURES) and "winner" in figs
    for name, fig in figs.items():
        tile = for_tile(fig)
        assert tile.layout.height is None and fig.layout.height is not None, name
        for line in tile.layout.title.text.replace("<sup>", "").replace("</sup>", "").split(
                "<br>"):
            assert len(line) <= 90, (name, line)
        for note in tile.layout.annotations:
            assert all(len(line) <= 70 for line in note.text.split("<br>")), (name, note.text)
        lines = tile.layout.title.text.count("<br>") + 1
        assert tile.layout.margin.t >= 24 + 13 * lines, name  # the title fits above the plot
        legend = tile.layout.legend  # at the foot of the tile, below the x-axis title
        assert (legend.orientation, legend.yref, legend.y) == ("h", "container", 0), name


def test_report_header_counts_in_the_cli_vocabulary(tmp_path):
    from dashboards.report import write_report

    study = study_of(make_trial(value=0.5), make_trial(value=0.6),
                     make_trial(state=TrialState.PRUNED, value=None),
                     make_trial(state=TrialState.FAIL, value=None))
    page = write_report(study, tmp_path / "r.html", save=False).read_text(encoding="utf-8")
    assert "trials: 3 finished = 2 complete + 1 pruned; 1 failed" in page
