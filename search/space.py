"""The conditional search space: the ONLY place that calls `trial.suggest_*`.

`scheduler` (categorical) picks a family; only that family's parameters are then
suggested, named `<Family>.<arg>`. Shared knobs are plain (`lr`, `momentum`,
`weight_decay`, `warmup`, `warmup_epochs`); a fixed knob (low == high) is not suggested.

Warmup. Where the study's `warmup_epochs` range starts at 0, whether to warm up at all is a
categorical choice `warmup` in {False, True} of its own, so "no warmup" is drawn as often as
"some warmup" (a float range from 0 would almost never draw exactly 0). With `warmup` True,
`warmup_epochs` is drawn from [WARMUP_MIN_SHARE x high, high]: shorter warmups round to
nothing on short runs. A range that starts above 0 always warms up.
"""

from __future__ import annotations

from typing import Any

import optuna

from search import schedules
from search.config import ParamSpec, SpaceConfig

__all__ = ["ADAMW_BETAS", "WARMUP_MIN_SHARE", "defaults", "param_name", "standard_betas",
           "suggest"]

WARMUP_MIN_SHARE = 0.05  # shortest warmup drawn, as a share of the range's high end
ADAMW_BETAS = (0.9, 0.999)  # torch's; the enqueued defaults' betas where betas are searched


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


def _int_range(spec: ParamSpec, p: schedules.Param, epochs: int) -> tuple[int, int]:
    if p.kind == "epochs":  # fractions of the budget, searched in whole epochs
        return _epoch_range(spec, epochs)
    low, high = int(spec.low), int(spec.high)
    if p.kind == "cuts":  # places inside the run: at most epochs - 1
        high = max(low, min(high, epochs - 1))
        low = min(low, high)
    return low, high


def _warmup_epochs(trial: optuna.trial.BaseTrial, spec: ParamSpec) -> float:
    if spec.high <= 0:
        return 0.0
    if spec.low <= 0 and not trial.suggest_categorical("warmup", [False, True]):
        return 0.0
    low = spec.low if spec.low > 0 else WARMUP_MIN_SHARE * spec.high
    return low if low == spec.high else trial.suggest_float("warmup_epochs", low, spec.high)


def suggest(
    trial: optuna.trial.BaseTrial, space: SpaceConfig, epochs: int,
    lr_scale: float | None = None, lr_factor: ParamSpec | None = None,
) -> schedules.ScheduleConfig:
    """Ask `trial` for one schedule: family first, then that family's parameters only.

    The result is budget-free (schedules.ScheduleConfig): epoch counts become fractions of
    the `epochs` searched, so the schedule can be resolved for any other budget. With
    `lr_scale` (a contest's tuned LR scale), the LR is not searched over the study's whole
    range: `lr_factor` is, and the LR is lr_scale x lr_factor (inside the study's range).
    """
    fam_name = trial.suggest_categorical("scheduler", list(space.families))
    fam = schedules.family(fam_name)
    params: dict[str, Any] = {}
    for p in fam.params:
        if p.requires and params[p.requires] < p.index:
            continue
        spec, name = _range(space, fam_name, p), param_name(fam_name, p.name)
        if p.kind in ("epochs", "int", "cuts"):
            low, high = _int_range(spec, p, epochs)
            value = low if low == high else trial.suggest_int(name, low, high)
            params[p.name] = value / epochs if p.kind == "epochs" else value
        elif spec.fixed:
            params[p.name] = spec.low
        else:
            params[p.name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    warmup = _warmup_epochs(trial, space.warmup_epochs) if fam.warmup_ok else 0.0
    betas: dict[str, Any] = {b: _shared(trial, b, spec) for b in ("beta1", "beta2")
             if (spec := getattr(space, b)) is not None}
    if lr_scale is not None and lr_factor is not None:
        lr = space.lr.clip(lr_scale * _shared(trial, "lr_factor", lr_factor))
    else:
        lr = _shared(trial, "lr", space.lr)
    return schedules.ScheduleConfig(
        family=fam_name,
        params=params,
        lr=lr,
        momentum=_shared(trial, "momentum", space.momentum),
        weight_decay=_shared(trial, "weight_decay", space.weight_decay),
        warmup=warmup / epochs,
        per_step=schedules.stepped_per_step(fam_name, space.per_epoch),
        **betas,
    )


def standard_betas(space: SpaceConfig) -> dict[str, float]:
    """AdamW's standard betas inside the study's `beta1` / `beta2` specs, where it has them:
    what its enqueued defaults and validate's baselines train with."""
    specs = (getattr(space, "beta1", None), getattr(space, "beta2", None))
    return {name: spec.clip(standard) for name, spec, standard
            in zip(("beta1", "beta2"), specs, ADAMW_BETAS, strict=True) if spec is not None}


def _reference_params(space: SpaceConfig, ref: schedules.Reference, epochs: int
                      ) -> dict[str, Any]:
    """A reference's parameters as Optuna params of this study: each inside the study's range
    (epoch-kind ones in whole epochs of the searched budget), fixed ones not suggested."""
    out: dict[str, Any] = {}
    for prm in schedules.family(ref.family).params:
        if prm.name not in ref.params:
            continue
        spec, value = _range(space, ref.family, prm), ref.params[prm.name]
        if prm.kind in ("epochs", "int", "cuts"):
            low, high = _int_range(spec, prm, epochs)
            whole = value * epochs if prm.kind == "epochs" else value
            if low != high:
                out[param_name(ref.family, prm.name)] = min(max(round(whole), low), high)
        elif not spec.fixed:
            out[param_name(ref.family, prm.name)] = spec.clip(value)
    return out


def defaults(space: SpaceConfig, epochs: int) -> list[dict[str, Any]]:
    """Known-good schedules to enqueue first, as Optuna params (only enabled families): the
    reference shapes marked `enqueued` (schedules.REFERENCES: cosine over the whole run and
    one-cycle at torch's standard settings), at the study's `default_lr`, without an added
    warmup where warmup is optional, each parameter inside the study's range.
    """
    shared: dict[str, Any] = {}
    if not space.lr.fixed:
        shared["lr"] = space.lr.clip(space.default_lr)
    shared |= {k: v for k, v in standard_betas(space).items() if not getattr(space, k).fixed}
    out = []
    for ref in schedules.REFERENCES:
        if not ref.enqueued or ref.family not in space.families:
            continue
        p = {"scheduler": ref.family, **shared}
        w = space.warmup_epochs
        if schedules.family(ref.family).warmup_ok:
            if w.high > 0 and w.low <= 0:
                p["warmup"] = False
            elif w.low > 0 and not w.fixed:
                p["warmup_epochs"] = w.low
        out.append(p | _reference_params(space, ref, epochs))
    return out
