"""A small Lightning project to search a schedule for: an MLP on Fashion-MNIST.

Plain Lightning, nothing from schedsearch: `FashionMLP` logs `val_loss` and `val_acc` in
validation_step and has its own configure_optimizers, which the search replaces on each
trial's instance with the trial's optimizer and scheduler. `FashionData` reads the gzip'd idx
files of the Debian package dataset-fashion-mnist (or the same four files in `data_dir`) with
numpy; the validation split is carved from the training file with a fixed seed, so every
trial is scored on the same images, and test_dataloader serves the test file.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

DATA_DIR = "/usr/share/datasets/fashion-mnist"
SPLIT_SEED = 20240611  # fixed: the validation split must not depend on a trial's seed
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip'd): a big-endian header of dimension sizes, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.lru_cache(maxsize=4)
def load(data_dir: str, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images as float in [0, 1], (N, 784); labels, (N,)); read once per process, so the
    search's trials do not decompress the files again."""
    images, labels = (read_idx(Path(data_dir) / name) for name in FILES[part])
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


class FashionData(L.LightningDataModule):
    """Fashion-MNIST: `train_subset` images of the training part (all: None), `val_size`
    carved from the training file for validation, the test file for testing."""

    def __init__(self, data_dir: str = DATA_DIR, batch_size: int = 128,
                 train_subset: int | None = None, val_size: int = 5000) -> None:
        super().__init__()
        self.data_dir, self.batch_size = data_dir, batch_size
        self.train_subset, self.val_size = train_subset, val_size

    def setup(self, stage: str | None = None) -> None:
        x, y = load(self.data_dir, "train")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
        val, train = order[: self.val_size], order[self.val_size :]
        if self.train_subset is not None:
            train = train[: self.train_subset]
        self.train_set = TensorDataset(x[train], y[train])
        self.val_set = TensorDataset(x[val], y[val])
        if stage in ("test", None):
            self.test_set = TensorDataset(*load(self.data_dir, "test"))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1024)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=1024)


class FashionMLP(L.LightningModule):
    """784 -> hidden -> hidden -> 10, ReLU, cross entropy."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(784, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        # Yours when you train it yourself; the search replaces it on each trial's instance.
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
