"""Tiny Lightning classes for tests/test_lightning_adapter.py, and for study files run in a
subprocess (`module = "lightning_support:TinyModule"` with tests/ on PYTHONPATH).

A linear model on a few random tensors: an epoch is a handful of optimizer steps. The module
records the LR of every optimizer step itself (on_before_optimizer_step), independently of the
adapter, and logs `val_loss`, `val_acc` and, with `losses`, a scripted `val_loss` per epoch
(so that ReduceLROnPlateau cuts the LR on cue).
"""

from __future__ import annotations

import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

N_TRAIN, N_VAL, N_TEST, DIM = 24, 8, 6, 4
BATCH = 4  # TinyData's default batch size: N_TRAIN // BATCH batches an epoch
INSTANCES: list[TinyModule] = []  # every TinyModule made, for tests to look inside the last


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    return TensorDataset(x, (x.sum(1) > 0).long())


class TinyData(L.LightningDataModule):
    """N_TRAIN training samples in batches of `batch_size`; N_VAL to validate, N_TEST to test."""

    def __init__(self, batch_size: int = BATCH) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.batch_size = batch_size
        self.stages: list[str | None] = []

    def setup(self, stage: str | None = None) -> None:
        self.stages.append(stage)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_data(N_TRAIN, 0), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_data(N_VAL, 1), batch_size=N_VAL)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_data(N_TEST, 2), batch_size=N_TEST)


class NoTestData(TinyData):
    """Without a test split."""

    test_dataloader = L.LightningDataModule.test_dataloader  # not overridden


class TinyModule(L.LightningModule):
    """Linear classifier. `losses`: the val_loss logged at each epoch instead of the real one;
    `nan_at`: the training loss becomes NaN from this global step on; `exit_at`: sys.exit in
    training_step at this epoch (a user's own SystemExit); `sleep`: seconds per training
    step (a run long enough to be signalled)."""

    def __init__(self, losses: list[float] | None = None, nan_at: int | None = None,
                 exit_at: int | None = None, sleep: float = 0.0) -> None:
        super().__init__()
        self.net = torch.nn.Linear(DIM, 2)
        self.losses, self.nan_at, self.exit_at = losses, nan_at, exit_at
        self.sleep = sleep
        self.lrs: list[float] = []  # the LR of every optimizer step, read by the module itself
        self.val_sizes: list[int] = []  # samples seen by each validation
        self.epochs_started = 0
        self.train_means: list[float] = []  # each epoch's mean training loss
        self._losses: list[float] = []
        self.modes: dict[str, list[bool]] = {"train": [], "val": []}  # schedule-free modes
        INSTANCES.append(self)

    def training_step(self, batch, batch_idx):
        if self.exit_at is not None and self.current_epoch == self.exit_at:
            raise SystemExit(3)
        time.sleep(self.sleep)
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        if self.nan_at is not None and self.global_step >= self.nan_at:
            loss = loss * float("nan")
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        self._losses.append(float(loss.detach()))
        self._mode("train")
        return loss

    def _mode(self, part: str) -> None:
        group = self.trainer.optimizers[0].param_groups[0] if self.trainer.optimizers else {}
        if "train_mode" in group:
            self.modes[part].append(group["train_mode"])

    def on_train_epoch_start(self) -> None:
        self.epochs_started += 1
        self._losses = []

    def on_train_epoch_end(self) -> None:
        self.train_means.append(sum(self._losses) / len(self._losses))

    def on_before_optimizer_step(self, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_sizes.append(len(x))
        self._mode("val")
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        if self.losses is not None:
            loss = torch.tensor(self.losses[self.current_epoch])
        self.log("val_loss", loss, on_epoch=True)
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.123)


ORIGINAL_CONFIGURE = TinyModule.configure_optimizers


class EpochEndModule(TinyModule):
    """Logs one metric in on_validation_epoch_end, after the callbacks' hook of that name."""

    def on_validation_epoch_end(self) -> None:
        self.log("val_score", 1.0 - float(self.trainer.callback_metrics["val_loss"]))


class ManualModule(TinyModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


class NotAModule(torch.nn.Module):
    pass
