"""Lightning classes for tests/test_adapters_contest.py (a contest, `validate`, kill -9 and
SIGTERM through objectives.lightning), run in a subprocess with tests/ on PYTHONPATH.

The tiny module and data of tests/lightning_support.py, with the test split told apart: its
inputs carry a constant offset (TEST_OFFSET), and the module logs the mean input its
validation saw (`val_x_mean`), so a trial's reported curves say which split scored it (about
0 on the validation split, TEST_OFFSET on the test split).
"""

from __future__ import annotations

from lightning_support import N_TEST, TinyData, TinyModule, _data
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["TEST_OFFSET", "OffsetTestData", "SplitModule"]

TEST_OFFSET = 10.0


class OffsetTestData(TinyData):
    """TinyData whose test inputs are shifted by TEST_OFFSET (labels as TinyData's)."""

    def test_dataloader(self) -> DataLoader:
        x, y = _data(N_TEST, 2).tensors
        return DataLoader(TensorDataset(x + TEST_OFFSET, y), batch_size=N_TEST)


class SplitModule(TinyModule):
    """TinyModule that also logs the mean input of the split it validates on."""

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("val_x_mean", batch[0].mean(), on_epoch=True)


