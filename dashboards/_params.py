"""Per schedule family, each of its parameters (and the shared LR) against the study's metric
(search.goal: validation accuracy, val_loss, ...).

One row of panels with a dropdown that picks the family: it fits optuna-dashboard's fixed
450-pixel plot slot as well as the report, however many families the study has.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import optuna
import plotly.graph_objects as go
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from plotly.subplots import make_subplots

from dashboards._common import (
    COMPLETE_COLOR,
    TEMPLATE,
    Snapshot,
    axis_title,
    empty_figure,
    floats,
    ints,
    metric_word,
    short_name,
    snapshot,
    value,
)
from search import record
from search.goal import DEFAULT, Goal

__all__ = ["ParamSeries", "FamilyParams", "ParamsInfo"]



def title(goal: Goal) -> str:
    return f"Parameters against {goal.name()}, per family"


TITLE = title(DEFAULT)
# Shared knobs that shape the schedule, shown after the family's own (momentum and weight
# decay are in the importance figure; here they would only add noise and size).
SHARED = ("lr", "warmup_epochs")


class ParamSeries(NamedTuple):
    name: str  # full Optuna name: "StepLR.gamma", "lr"
    xs: list[Any]
    ys: list[float]
    numbers: list[int]
    scale: str  # plotly axis type: "log" | "linear" | "category"


class FamilyParams(NamedTuple):
    family: str
    best: float
    params: list[ParamSeries]


class ParamsInfo(NamedTuple):
    families: list[FamilyParams]  # best family first (the dropdown's default)
    reason: str
    goal: Goal = DEFAULT


def _scale(dist: Any) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "category"
    if isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
        return "log"
    return "linear"


def _info(study: optuna.Study | Snapshot) -> ParamsInfo:
    snap = snapshot(study)
    if snap.reason:
        return ParamsInfo([], snap.reason, snap.goal)
    done = snap.best_first(snap.complete)
    if not done:
        return ParamsInfo([], "no complete trial yet: parameters are plotted against "
                          f"{metric_word(snap.goal)}", snap.goal)
    by_family: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in done:
        by_family.setdefault(record.family_of(t), []).append(t)
    families = []
    for fam, trials in by_family.items():
        own = sorted({k for t in trials for k in t.params if k.startswith(fam + ".")})
        shared = [k for k in SHARED if any(k in t.params for t in trials)]
        series = []
        for name in own + shared:
            have = [t for t in trials if name in t.params]
            series.append(
                ParamSeries(
                    name, [t.params[name] for t in have], [value(t) for t in have],
                    [t.number for t in have], _scale(have[0].distributions[name]),
                )
            )
        families.append(FamilyParams(fam, value(trials[0]), series))
    if not any(f.params for f in families):
        return ParamsInfo([], "no parameters were searched", snap.goal)
    return ParamsInfo(families, "", snap.goal)


def _axes_layout(fam: FamilyParams, n_cols: int) -> dict[str, Any]:
    """Axis titles/types for one family; panels it does not use are hidden."""
    layout: dict[str, Any] = {}
    for j in range(n_cols):
        x, y = ("xaxis", "yaxis") if j == 0 else (f"xaxis{j + 1}", f"yaxis{j + 1}")
        if j < len(fam.params):
            p = fam.params[j]
            short = p.name.removeprefix(fam.family + ".")  # the dropdown names the family
            layout[x] = {"title": {"text": short}, "type": p.scale, "visible": True,
                         "autorange": True}
            layout[y] = {"visible": True}
        else:
            layout[x] = {"visible": False}
            layout[y] = {"visible": False}
    return layout


def _dotted(layout: dict[str, Any]) -> dict[str, Any]:
    """Nested layout -> plotly.js relayout keys ("xaxis2.type") for a dropdown button."""
    out: dict[str, Any] = {}
    for ax, props in layout.items():
        for key, val in props.items():
            if isinstance(val, dict):
                out.update({f"{ax}.{key}.{k}": v for k, v in val.items()})
            else:
                out[f"{ax}.{key}"] = val
    return out


def _plot(info: ParamsInfo) -> go.Figure:
    if info.reason:
        return empty_figure(title(info.goal), info.reason)
    metric = short_name(info.goal)
    n_cols = max(1, max(len(f.params) for f in info.families))
    fig = make_subplots(rows=1, cols=n_cols, shared_yaxes=True, horizontal_spacing=0.03)
    owner: list[int] = []  # family index of each trace, for the dropdown's visibility masks
    for i, fam in enumerate(info.families):
        for j, p in enumerate(fam.params):
            fig.add_trace(
                go.Scatter(
                    x=p.xs if p.scale == "category" else floats(p.xs), y=floats(p.ys),
                    customdata=ints(p.numbers), mode="markers", visible=i == 0,
                    showlegend=False, marker={"color": COMPLETE_COLOR, "size": 6},
                    hovertemplate=f"trial %{{customdata}}<br>{p.name} %{{x}}"
                    f"<br>{metric} %{{y:.4f}}<extra></extra>",
                ),
                row=1, col=j + 1,
            )
            owner.append(i)
    buttons = [
        {
            "label": f"{fam.family} (best {fam.best:.4f})",
            "method": "update",
            "args": [
                {"visible": [o == i for o in owner]},
                _dotted(_axes_layout(fam, n_cols)),
            ],
        }
        for i, fam in enumerate(info.families)
    ]
    fig.update_layout(
        _axes_layout(info.families[0], n_cols),
        title={"text": title(info.goal)}, template=TEMPLATE, height=420,
        yaxis={"title": {"text": axis_title(info.goal)}},
        updatemenus=[{"buttons": buttons, "x": 0, "xanchor": "left", "y": 1.18,
                      "yanchor": "top", "showactive": True}],
        margin={"t": 110},
    )
    return fig
