"""What the built-in objective trains (`TrainConfig`), without torch: the study files' settings
are read and checked (search.config) before anything is trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_WIDTH", "TrainConfig"]

DEFAULT_WIDTH = (64, 256, 256)  # the default net's channels per block (objectives.models)


@dataclass(frozen=True)
class TrainConfig:
    """What to train. Validated by search.config; `options` is free-form for user objectives."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 512
    width: tuple[int, int, int] = DEFAULT_WIDTH
    val_fraction: float = 0.1
    train_subset: int | None = None  # the first n of the shuffled training part, for quick runs
    label_smoothing: float = 0.2
    seed: int = 0
    device: str = "auto"  # cuda if available, else cpu
    augment: bool = True
    # "val": score on the validation split carved from the training split (the search);
    # "test": train on the whole training part incl. that carve, score on the test split
    # (validation of finished searches only; the search never reads the test split).
    holdout: str = "val"
    # A key of objectives.optimizers.OPTIMIZERS: "sgd" (Nesterov when momentum > 0), "adamw";
    # "schedulefree" and "schedulefree_adamw" (optional `schedulefree` package) are the
    # contest's and `validate`'s no-schedule baselines. betas and eps reach Adam types only.
    optimizer: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # Also score the test split after the last epoch, handed to `report.test(loss, acc)`
    # where the report callable has it. For recording learning-curve tables (benchmarks/);
    # the search itself never reads the test split.
    final_test: bool = False
    # What the study optimises: a key of the metrics an objective reports (e.g. "val_loss" or
    # a framework's logged "eval_loss"; the built-in objective and the positional `report`
    # form report "val_loss" and "val_acc"), and whether higher or lower is better.
    metric: str = "val_acc"
    direction: str = "maximize"  # or "minimize"
    options: Mapping[str, Any] = field(default_factory=dict)
