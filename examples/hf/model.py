"""A small Fashion-MNIST classifier for the Hugging Face Trainer, read offline.

`make()` returns the Trainer's keyword arguments, as `objectives.hf` expects: a new model on
every call, the training part, a validation part carved from it with a fixed seed (the same
for every trial), and the test split as `test_dataset` (read by `validate` only). The images
come from the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or
from $FASHION_MNIST_DIR, in the idx format: no download.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
SPLIT_SEED = 0  # fixed: every trial is scored on the same validation images
N_TRAIN, N_VAL, N_TEST = 8000, 2000, 2000  # a subset: a trial takes seconds on a CPU


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format), gzipped: magic 0 0 8 ndim, big-endian dims, uint8 data."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.cache
def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float vectors scaled to [0, 1], and labels; read once per process."""
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(DATA / f"{prefix}-images-idx3-ubyte.gz")
    y = read_idx(DATA / f"{prefix}-labels-idx1-ubyte.gz")
    return (torch.from_numpy(x.reshape(len(x), -1).astype(np.float32) / 255.0),
            torch.from_numpy(y.astype(np.int64)))


class Images(torch.utils.data.Dataset):
    """Examples as the Trainer's default collator wants them: dicts of tensors."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class MLP(torch.nn.Module):
    """784 -> 128 -> 10; returns {"loss", "logits"} given labels, as the Trainer expects."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, 10))

    def forward(self, pixel_values, labels=None):
        logits = self.net(pixel_values)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def accuracy(pred) -> dict[str, float]:
    """compute_metrics: the share of images classified right (reported as eval_accuracy)."""
    return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}


def make(holdout: str = "val") -> dict:
    """The Trainer's keyword arguments for one trial (objectives.hf calls it per trial)."""
    x, y = load("train")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, val = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + N_VAL]
    test_x, test_y = load("test")
    return {
        "model": MLP(),
        "train_dataset": Images(x[train], y[train]),
        "eval_dataset": Images(x[val], y[val]),
        "test_dataset": Images(test_x[:N_TEST], test_y[:N_TEST]),
        "compute_metrics": accuracy,
    }
