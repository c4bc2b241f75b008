"""What each objective setting must be, and the limits past which a value is refused.

Shared by the study-file reader (search.config.tables) and the command-line overrides of a
loaded study (`StudyConfig.with_overrides`): "`<key>` must be <constraint> but got <value>".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from objectives.optimizers import study_optimizers

__all__ = ["CHECKED", "LIMITS", "LR_FLOOR", "MAX_SEED", "MIN_SUBSET", "NUM", "SETTINGS", "Setting",
           "finite", "number_text", "raise_hint", "train_problem", "train_value"]

NUM = (int, float)

# Upper bounds past which a value hangs a machine, exhausts its memory or overflows a float.
# A study file raises one knowingly: `[limits]` with e.g. `epochs = 50000`.
LIMITS: dict[str, int | float] = {
    "trials": 100_000,  # finished trials of one study
    "epochs": 10_000,  # epochs of one trial
    "batch_size": 65_536,  # images per optimizer step
    "width": 4_096,  # channels of one block of the default net
    "train_subset": 10_000_000,  # training images (CIFAR has 50,000)
    "lr": 100.0,  # the highest learning rate searched (SGD diverges long before)
}
LR_FLOOR = 1e-10  # a lower learning rate trains nothing; lower still underflows in float32
MIN_SUBSET = 10  # training images: fewer than one per class of CIFAR-10 trains nothing
MAX_SEED = 2**31 - 1  # numpy's and torch's generators take seeds up to here on every platform
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")


def number_text(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def finite(v: Any) -> bool:
    return isinstance(v, NUM) and not isinstance(v, bool) and math.isfinite(v)


def raise_hint(k: str, path: Path | Traversable | None, v: Any) -> str:
    """For a value above its LIMITS bound: how to raise the bound knowingly."""
    values = v if isinstance(v, list | tuple) else [v]
    if k not in LIMITS or not any(finite(x) and x > LIMITS[k] for x in values):
        return ""
    return f"to go higher knowingly, set `[limits] {k} = ...` in {path.name if path else 'it'}"


def _count(low: int, high: int | float | str) -> Callable[[Any, Mapping[str, Any]], str | None]:
    """An integer in [low, high]; `high` a number, or the LIMITS key that bounds it."""
    def check(v: Any, limits: Mapping[str, Any]) -> str | None:
        top = limits[high] if isinstance(high, str) else high
        ok = isinstance(v, int) and not isinstance(v, bool) and low <= v <= top
        return None if ok else f"an integer in [{low}, {number_text(top)}]"
    return check


def _width(v: Any, limits: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, list | tuple) and len(v) == 3 and all(
        isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= limits["width"] for c in v)
    return None if ok else f"a list of 3 channel counts in [1, {number_text(limits['width'])}]"


def _device(v: Any, limits: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, str) and DEVICE.fullmatch(v)
    return None if ok else '"auto", "cpu", "cuda", "cuda:N" or "mps"'


def _optimizer(v: Any, limits: Mapping[str, Any]) -> str | None:
    names = study_optimizers()  # the schedule-free ones are the contest's baselines only
    return None if v in names else " or ".join(f'"{n}"' for n in names)


def _betas(v: Any, limits: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, list | tuple) and len(v) == 2 and all(finite(b) and 0 <= b < 1 for b in v)
    return None if ok else "two numbers in [0, 1), e.g. [0.9, 0.999]"


def _between(ok: Callable[[float], bool], what: str) -> Callable[[Any, Mapping[str, Any]],
                                                                  str | None]:
    return lambda v, limits: None if finite(v) and ok(v) else what


@dataclass(frozen=True)
class Setting:
    """How one objective setting (a TrainConfig field) is checked, and stored once checked."""

    check: Callable[[Any, Mapping[str, Any]], str | None]  # what it must be; None: fine
    store: Callable[[Any], Any] = lambda v: v  # TOML's list or int -> the field's type


# Every TrainConfig field with its own rule, by field name (a field not here is checked
# against its default's type: search.config.tables.train_of).
SETTINGS: dict[str, Setting] = {
    "epochs": Setting(_count(1, "epochs")),
    "batch_size": Setting(_count(1, "batch_size")),
    "train_subset": Setting(_count(MIN_SUBSET, "train_subset")),
    "seed": Setting(_count(0, MAX_SEED)),
    "width": Setting(_width, tuple),
    "val_fraction": Setting(_between(lambda v: 0 < v < 1,
                                     "a number between 0 and 1 (exclusive)")),
    "label_smoothing": Setting(_between(lambda v: 0 <= v < 1, "a number in [0, 1)")),
    "device": Setting(_device),
    "data_dir": Setting(lambda v, limits: None if isinstance(v, str) and v and "\0" not in v
                        else "a directory path"),
    "augment": Setting(lambda v, limits: None if isinstance(v, bool) else "true or false"),
    "dataset": Setting(lambda v, limits: None),  # which names: the objective's (train_of)
    "optimizer": Setting(_optimizer),
    "betas": Setting(_betas, lambda v: tuple(float(b) for b in v)),
    "eps": Setting(_between(lambda v: 0 < v < 1, "a number in (0, 1)"), float),
    "metric": Setting(lambda v, limits: None if isinstance(v, str) and v.strip() == v and v
                      and v.isprintable() else 'a metric name, e.g. "val_loss"'),
    "direction": Setting(lambda v, limits: None if v in ("maximize", "minimize")
                         else '"maximize" or "minimize"'),
}
CHECKED = tuple(SETTINGS)


def train_problem(k: str, v: Any, limits: Mapping[str, Any]) -> str | None:
    """What objective setting `k` must be where `v` is wrong for it (None: `v` is fine)."""
    setting = SETTINGS.get(k)
    return None if setting is None else setting.check(v, limits)


def train_value(k: str, v: Any) -> Any:
    """A checked value of setting `k` as its TrainConfig field holds it."""
    setting = SETTINGS.get(k)
    return v if setting is None else setting.store(v)
