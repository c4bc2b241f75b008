"""Trainer functions for objectives.hf in tests (`trainer = "hf_support:make"`): a tiny
classifier on random tensors, seconds a run.

`SETTINGS` shapes what `make` returns (tests change it with monkeypatch.setitem); `LAST` holds
the spy and the data sets of the latest call, so a test can read what the Trainer really did.
The spy records the LR the optimizer holds just before every optimizer step (what the step
applies), independently of objectives.hf. In eval mode the model's loss is
SETTINGS["eval_losses"][evaluations so far] when set (so ReduceLROnPlateau has a known
sequence to cut on), else the real cross entropy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import transformers

FEATURES, CLASSES = 4, 3

SETTINGS: dict[str, Any] = {
    "n_train": 21,  # 3 batches of 8 an epoch, the last one partial
    "n_val": 8,
    "n_test": 5,
    "eval_losses": None,  # scripted eval losses, one per evaluation
    "nan_at": None,  # the training forward (0-based) whose loss is NaN
    "interrupt_at": None,  # the training forward (0-based) that raises KeyboardInterrupt
}
LAST: dict[str, Any] = {}


def rows(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """`n` examples {"x", "labels"}: the label is the argmax of a fixed linear map of x."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, FEATURES, generator=g)
    w = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    y = (x @ w).argmax(dim=1)
    return [{"x": a, "labels": b} for a, b in zip(x, y, strict=True)]


class Toy(torch.nn.Module):
    """A linear classifier; forward returns {"loss", "logits"} as the Trainer expects."""

    def __init__(self, spy: Spy | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(FEATURES, CLASSES)
        self.spy = spy
        self.forwards = 0  # training forwards
        self.eval_loss: float | None = None  # a constant eval loss, where set

    def forward(self, x, labels=None):
        logits = self.net(x)
        loss = F.cross_entropy(logits, labels)
        if self.training:
            i, self.forwards = self.forwards, self.forwards + 1
            if SETTINGS["interrupt_at"] == i:
                raise KeyboardInterrupt
            if SETTINGS["nan_at"] == i:
                loss = loss * math.nan
        elif self.eval_loss is not None:
            loss = torch.tensor(self.eval_loss)
        elif SETTINGS["eval_losses"] is not None and self.spy is not None:
            loss = torch.tensor(SETTINGS["eval_losses"][self.spy.evaluations])
        return {"loss": loss, "logits": logits}


class Spy(transformers.TrainerCallback):
    """What the Trainer did: the LR before every optimizer step, the evaluations."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.evaluations = 0
        self.metrics: list[dict[str, float]] = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kw):
        self.lrs.append(float(optimizer.param_groups[0]["lr"]))

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self.evaluations += 1
        self.metrics.append(dict(metrics or {}))


def accuracy(pred: transformers.EvalPrediction) -> dict[str, float]:
    """Accuracy, and how many examples were evaluated (`n`: which data set it was)."""
    labels = np.asarray(pred.label_ids)
    return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == labels).mean()),
            "n": float(len(labels))}


def make(holdout: str = "val") -> dict[str, Any]:
    spy = Spy()
    out = {"model": Toy(spy), "train_dataset": rows(SETTINGS["n_train"], 0),
           "eval_dataset": rows(SETTINGS["n_val"], 1),
           "test_dataset": rows(SETTINGS["n_test"], 2),
           "compute_metrics": accuracy, "callbacks": [spy]}
    LAST.clear()
    LAST.update(out, spy=spy, holdout=holdout)
    return out


def make_plain() -> dict[str, Any]:
    """No holdout keyword: called with no arguments."""
    out = make()
    LAST["plain"] = True
    return out


def make_wrong_shape(data_dir):
    return make()


def make_no_eval() -> dict[str, Any]:
    out = make()
    del out["eval_dataset"]
    return out


def make_with_optimizers() -> dict[str, Any]:
    out = make()
    opt = torch.optim.SGD(out["model"].parameters(), lr=0.1)
    return {**out, "optimizers": (opt, None)}


def make_typo() -> dict[str, Any]:
    out = make()
    out["compute_metric"] = out.pop("compute_metrics")
    return out


def make_not_a_mapping():
    return [make()]


def make_fails() -> dict[str, Any]:
    raise FileNotFoundError("data/train.csv")


_CACHED = Toy()


def make_same_model() -> dict[str, Any]:
    """Returns the same model object every call: the second trial must be refused."""
    return {**make(), "model": _CACHED}


_CALLS = [0]


def make_worse_each_call() -> dict[str, Any]:
    """Eval loss 1, 2, 3, ... on the 1st, 2nd, 3rd call in this process: every trial is worse
    than the one before (prepare makes the first call), so a median pruner prunes each after
    the first at its first evaluation."""
    out = make()
    _CALLS[0] += 1
    out["model"].eval_loss = float(_CALLS[0])
    return out


not_callable = 3
