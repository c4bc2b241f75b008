"""The conditional search space: the ONLY place that calls `trial.suggest_*`.

`scheduler` (categorical) picks a family; only that family's parameters are then
suggested, named `<Family>.<arg>`. Shared knobs are plain (`lr`, `momentum`,
`weight_decay`, `warmup_epochs`); a fixed knob (low == high) is not suggested at all.
"""

from __future__ import annotations

from typing import Any

import optuna

from search import schedules
from search.config import ParamSpec, SpaceConfig

__all__ = ["defaults", "param_name", "suggest"]


def param_name(family: str, arg: str) -> str:
    return f"{family}.{arg}"


def _shared(trial: optuna.trial.BaseTrial, name: str, spec: ParamSpec) -> float:
    if spec.fixed:
        return spec.low
    return trial.suggest_float(name, spec.low, spec.high, log=spec.log)


def _range(space: SpaceConfig, fam: str, p: schedules.Param) -> ParamSpec:
    return space.ranges.get(fam, {}).get(p.name, ParamSpec(p.low, p.high, p.log))


def _epoch_range(spec: ParamSpec, epochs: int) -> tuple[int, int]:
    return schedules.Param("", "epochs", spec.low, spec.high).epoch_range(epochs)


def suggest(
    trial: optuna.trial.BaseTrial, space: SpaceConfig, epochs: int
) -> schedules.ScheduleConfig:
    """Ask `trial` for one schedule: family first, then that family's parameters only."""
    fam_name = trial.suggest_categorical("scheduler", list(space.families))
    fam = schedules.family(fam_name)
    params: dict[str, Any] = {}
    for p in fam.params:
        if p.requires and not params[p.requires] > p.index:
            continue
        spec, name = _range(space, fam_name, p), param_name(fam_name, p.name)
        if p.kind == "epochs":
            # ranges are fractions of the epoch budget; the parameter itself is in epochs
            low, high = _epoch_range(spec, epochs)
            params[p.name] = low if low == high else trial.suggest_int(name, low, high)
        elif p.kind == "int":
            low, high = int(spec.low), int(spec.high)
            params[p.name] = low if low == high else trial.suggest_int(name, low, high)
        elif spec.fixed:
            params[p.name] = spec.low
        else:
            params[p.name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return schedules.ScheduleConfig(
        family=fam_name,
        params=params,
        lr=_shared(trial, "lr", space.lr),
        momentum=_shared(trial, "momentum", space.momentum),
        weight_decay=_shared(trial, "weight_decay", space.weight_decay),
        warmup_epochs=(
            _shared(trial, "warmup_epochs", space.warmup_epochs) if fam.warmup_ok else 0.0
        ),
    )


def defaults(space: SpaceConfig, epochs: int) -> list[dict[str, Any]]:
    """Known-good schedules to enqueue first, as Optuna params (only enabled families).

    Cosine annealing over the whole run, and one-cycle at torch's standard settings, both at
    the study's `default_lr`: the search then never reports worse than what it tried first.
    """
    shared: dict[str, Any] = {}
    if not space.lr.fixed:
        shared["lr"] = min(max(space.default_lr, space.lr.low), space.lr.high)
    if not space.warmup_epochs.fixed:
        shared["warmup_epochs"] = space.warmup_epochs.low
    out = []
    if "CosineAnnealingLR" in space.families:
        p = {"scheduler": "CosineAnnealingLR", **shared}
        t_max, eta_min = schedules.family("CosineAnnealingLR").params
        low, high = _epoch_range(_range(space, "CosineAnnealingLR", t_max), epochs)
        if low != high:
            p["CosineAnnealingLR.T_max"] = high  # the whole run, or as close as the range allows
        eta = _range(space, "CosineAnnealingLR", eta_min)
        if not eta.fixed:
            p["CosineAnnealingLR.eta_min_factor"] = eta.low
        out.append(p)
    if "OneCycleLR" in space.families:
        p = {"scheduler": "OneCycleLR", **{k: v for k, v in shared.items() if k == "lr"}}
        standard = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}
        for prm in schedules.family("OneCycleLR").params:
            spec = _range(space, "OneCycleLR", prm)
            if not spec.fixed:
                p[param_name("OneCycleLR", prm.name)] = min(max(standard[prm.name], spec.low),
                                                            spec.high)
        out.append(p)
    return out
