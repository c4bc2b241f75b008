"""The winner against the tuned baselines: what its LR does differently, and what that buys.

Top panel: the LR applied by the recommendation (search.answer.recommended_trial: the contest's
leader, or a plain search's best trial) and by each baseline (a contest's tuned references, or
those `validate` tuned (Constant, cosine over the whole run, OneCycle, linear to zero,
schedule-free), against the fraction of training, at the recorded per-step resolution. Bottom
panel, same x axis: the study's metric (search.goal) on the validation split (the winner's
search trial; a baseline's LR source: the searched trial whose LR it took, or its best
LR-sweep run) and, once `validate` has run, on the test split averaged over seeds (dashed).
Baselines come from the companion study `<study>.validate`: its study attrs `schedule.<key>`
(label, roles, lr_source, lr) and its trials (`validate_key` + `seed`: test runs; holdout
"val" + `sweep_for`, labelled as their baseline: LR-sweep runs).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.trial import FrozenTrial, TrialState
from plotly.subplots import make_subplots

from dashboards._common import (
    BEST_COLOR,
    BOTTOM_LEGEND,
    TEMPLATE,
    LRPoints,
    Snapshot,
    better_note,
    empty_figure,
    epoch_fractions,
    floats,
    lr_points,
    metric_curve,
    metric_word,
    no_complete_reason,
    snapshot,
)
from search import compat, record
from search.contest.standing import standing
from search.goal import DEFAULT, Goal
from search.storage import hint_command
from search.validation.companion import companion_name, is_companion

__all__ = ["WinnerInfo", "WinnerRow"]



def title(goal: Goal) -> str:
    return (f"The recommendation against the tuned baselines: LR and {metric_word(goal)} over "
            "training")


TITLE = title(DEFAULT)
BASELINE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]


class WinnerRow(NamedTuple):
    label: str
    role: str  # "winner" or "baseline"
    lr: LRPoints
    val_x: list[float]  # fraction of training at the end of each epoch
    val: list[float | None]  # the metric per epoch, validation split ([] where none recorded)
    val_source: str  # "trial 7", "LR sweep trial 3 (companion)", ""
    test_x: list[float]
    test: list[float | None]  # the metric per epoch on the test split, mean over seeds ([]
    # before validate)
    seeds: int

    @property
    def final_val(self) -> float | None:
        return next((v for v in reversed(self.val) if v is not None), None)

    @property
    def final_test(self) -> float | None:
        return next((v for v in reversed(self.test) if v is not None), None)


class WinnerInfo(NamedTuple):
    schedules: list[WinnerRow]  # the winner first, then the baselines
    note: str  # what is missing and how to get it ("" when everything is there)
    reason: str
    verdict: str = ""  # a contest's verdict over seeds (the headline where there is one)
    goal: Goal = DEFAULT


def _mean_curve(trials: list[FrozenTrial], goal: Goal
                ) -> tuple[list[float], list[float | None]]:
    """Per-epoch mean of the trials' curve of the goal's metric (in the companion: on the test
    split)."""
    curves = [metric_curve(t, goal) for t in trials]
    n = max((len(c) for c in curves), default=0)
    mean: list[float | None] = []
    for e in range(n):
        vals = [v for c in curves if e < len(c) and (v := c[e]) is not None]
        mean.append(sum(vals) / len(vals) if vals else None)
    return (epoch_fractions(trials[0], n) if trials else []), mean


def _companion(snap: Snapshot) -> optuna.Study | None:
    name = snap.study.study_name
    if is_companion(name):
        return None
    try:
        return optuna.load_study(study_name=companion_name(name),
                                 storage=compat.storage_of(snap.study))
    except KeyError:
        return None


def _at_length(trials: list[FrozenTrial], epochs: int | None) -> list[FrozenTrial]:
    """Runs at the searched length where there are any (validate may run other lengths)."""
    same = [t for t in trials if record.of(t).epochs == epochs]
    return same or trials


def _sweep_pick(sweeps: list[FrozenTrial], lr: float | None, goal: Goal
                ) -> FrozenTrial | None:
    """The sweep run at the chosen LR, else the best one by the study's goal."""
    done = [t for t in sweeps if t.state == TrialState.COMPLETE and t.value is not None]
    if lr is not None:
        for t in done:
            got = record.of(t).lr
            got = got if got is not None else t.params.get("lr")
            if isinstance(got, (int, float)) and math.isclose(got, lr, rel_tol=1e-6):
                return t
    return max(done, key=lambda t: goal.score(record.value_of(t)), default=None)


def _baseline(key: str, meta: record.Validated, runs: list[FrozenTrial], sweeps: list[FrozenTrial],
              snap: Snapshot, epochs: int | None) -> WinnerRow | None:
    tests = _at_length([t for t in runs if record.of(t).validate_key == key], epochs)
    tests = [t for t in tests if t.state == TrialState.COMPLETE]
    label = meta.label or key
    # Where its LR came from: a searched trial (`lr_trial`) or a sweep.
    number = meta.lr_trial
    if number is not None:
        val_trial = next((t for t in snap.trials if t.number == number), None)
        val_source = f"trial {number}"
    else:
        val_trial = _sweep_pick([t for t in sweeps if record.of(t).label == label], meta.lr,
                                snap.goal)
        val_source = f"LR sweep run {val_trial.number}" if val_trial is not None else ""
    lr_from = tests[0] if tests else val_trial
    if lr_from is None:
        return None
    val = metric_curve(val_trial, snap.goal) if val_trial is not None else []
    test_x, test = _mean_curve(tests, snap.goal)
    return WinnerRow(label, "baseline", lr_points(lr_from),
                     epoch_fractions(val_trial, len(val)) if val_trial is not None else [], val,
                     val_source, test_x, test, len({record.of(t).seed for t in tests}))


def _info(study: optuna.Study | Snapshot) -> WinnerInfo:
    snap = snapshot(study)
    if snap.reason:
        return WinnerInfo([], "", snap.reason, goal=snap.goal)
    done = snap.best_first(snap.complete)
    if not done:
        return WinnerInfo([], "", no_complete_reason(snap), goal=snap.goal)
    win = done[0]  # the recommended trial (Snapshot.best_first names it first)
    epochs = record.of(win).epochs
    companion = _companion(snap)
    ctrials = companion.get_trials(deepcopy=False) if companion is not None else []
    # test runs (holdout "test") and LR-sweep runs (holdout "val", `sweep_for` a baseline)
    sweeps = [t for t in ctrials if record.of(t).holdout == "val"]
    runs = [t for t in ctrials if record.of(t).validate_key is not None and t not in sweeps]
    meta = record.validated(companion) if companion is not None else {}
    st = standing(snap.study)
    lead = st.leader if st is not None else None
    mine = [t for t in runs if t.state == TrialState.COMPLETE and (
        record.of(t).validate_key == lead.key if lead is not None
        else record.of(t).source_trial == win.number)]
    tested = _at_length(mine, epochs)
    test_x, test = _mean_curve(tested, snap.goal)
    val = metric_curve(win, snap.goal)
    label = snap.label or f"trial {win.number} {record.family_of(win)}"
    out = [WinnerRow(f"recommended: {label}", "winner", lr_points(win),
                     epoch_fractions(win, len(val)), val, f"trial {win.number}", test_x, test,
                     len({record.of(t).seed for t in tested}))]
    if st is not None:  # a contest: its tuned references, from the study itself
        for c in st.state.contenders:
            if c.role == "reference" and (lead is None or c.key != lead.key):
                out.append(_reference(c, snap, runs, epochs))
    else:
        for key, m in meta.items():
            if "baseline" in m.roles and m.source_trial != win.number:
                b = _baseline(key, m, runs, sweeps, snap, epochs)
                if b is not None:
                    out.append(b)
    name = snap.study.study_name
    lengths = sorted({e for t in runs if (e := record.of(t).epochs) is not None})
    if len(out) == 1:
        note = f"baselines appear after `{hint_command(f'validate --study {name}')}`"
    elif not any(s.test for s in out):
        note = (f"test curves appear after `{hint_command(f'validate --study {name}')}`"
                if st is not None else "test curves appear once `validate` has finished its runs")
    elif lengths and lengths != [epochs]:
        note = (f"validation curves at the searched {epochs} epochs; test curves at "
                f"{', '.join(map(str, lengths))} epochs (the validated length), each drawn "
                "over its own run")
    else:
        note = ""
    from search.answer.text import contest_verdict  # torch: only once a figure is drawn

    verdict = contest_verdict(st) if st is not None and lead else ""
    return WinnerInfo(out, note, "", verdict, snap.goal)


def _reference(c: Any, snap: Snapshot, runs: list[FrozenTrial], epochs: int | None) -> WinnerRow:
    """A contest's tuned reference: its run at the tuned LR (validation split) and, once
    `validate` has run, its test runs."""
    src = next(t for t in snap.trials if t.number == c.source_trial)
    tests = _at_length([t for t in runs if record.of(t).validate_key == c.key
                        and t.state == TrialState.COMPLETE], epochs)
    val = metric_curve(src, snap.goal)
    test_x, test = _mean_curve(tests, snap.goal)
    return WinnerRow(c.label, "baseline", lr_points(src), epoch_fractions(src, len(val)), val,
                     f"trial {src.number}", test_x, test,
                     len({record.of(t).seed for t in tests}))


def headline(info: WinnerInfo) -> str:
    """By how much the recommendation beats the best tuned baseline, on validation and on
    test (its first run's validation score; the contest compares means over seeds), in the
    metric's own terms: "val 0.8800 vs 0.8000 (Constant): 8.00 points better"."""
    goal = info.goal
    win, rest = info.schedules[0], info.schedules[1:]
    parts = []
    for what, get in (("val", lambda s: s.final_val), ("test", lambda s: s.final_test)):
        w = get(win)
        scored = [(get(s), s.label) for s in rest if get(s) is not None]
        if w is None or not scored:
            continue
        best, lab = max(scored, key=lambda vl: goal.score(vl[0]))
        diff = goal.score(w) - goal.score(best)  # positive: the recommendation is better
        parts.append(f"{what} {w:.4f} vs {best:.4f} ({lab}): {goal.gap(abs(diff))} "
                     f"{'better' if diff >= 0 else 'worse'}")
    return "; ".join(parts) or info.note


def _plot(info: WinnerInfo) -> go.Figure:
    if info.reason:
        return empty_figure(title(info.goal), info.reason)
    word = metric_word(info.goal)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        row_heights=[0.45, 0.55])
    palette = iter(BASELINE_COLORS * 3)
    for s in info.schedules:
        win = s.role == "winner"
        color = BEST_COLOR if win else next(palette)
        width = 3.5 if win else 1.8
        common: dict[str, Any] = {"legendgroup": s.label, "line": {"color": color, "width": width}}
        fig.add_trace(go.Scatter(
            x=floats(s.lr.fractions), y=floats(s.lr.lrs), mode="lines", name=s.label,
            hovertemplate=f"{s.label}<br>%{{x:.1%}} of training<br>lr %{{y:.3g}}<extra></extra>",
            **common | {"line": {**common["line"], "shape": "linear" if s.lr.per_step else "hv"}},
        ), row=1, col=1)
        if s.val:
            fig.add_trace(go.Scatter(
                x=floats(s.val_x), y=floats(s.val), mode="lines+markers", showlegend=False,
                marker={"size": 4, "color": color}, hovertemplate=f"{s.label}: validation "
                f"({s.val_source})<br>%{{x:.0%}}: %{{y:.4f}}<extra></extra>", **common,
            ), row=2, col=1)
        if s.test:
            fig.add_trace(go.Scatter(
                x=floats(s.test_x), y=floats(s.test), mode="lines", showlegend=False,
                hovertemplate=f"{s.label}: test, mean of {s.seeds} seeds<br>%{{x:.0%}}: "
                "%{y:.4f}<extra></extra>",
                **common | {"line": {**common["line"], "dash": "dash"}},
            ), row=2, col=1)
    coarse = [s.label for s in info.schedules if not s.lr.per_step]
    res = "LR per step" if not coarse else "LR per epoch for " + ", ".join(coarse)
    sub = info.verdict or headline(info)
    fig.update_yaxes(title_text="learning rate", type="log", row=1, col=1)
    fig.update_yaxes(title_text=word + better_note(info.goal), row=2, col=1)
    fig.update_xaxes(title_text=f"fraction of training ({word}: solid validation, dashed "
                     "test mean over seeds)", tickformat=".0%", range=[0, 1.02], row=2, col=1)
    fig.update_layout(
        title={"text": f"{title(info.goal)}<br><sup>{sub}<br>{res}"
               + (f"; {info.note}" if info.note and info.note != sub else "") + "</sup>"},
        template=TEMPLATE, height=640, legend=BOTTOM_LEGEND,
        margin={"l": 10, "r": 10, "t": 110},
    )
    return fig
