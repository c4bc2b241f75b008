"""Training objectives: `train(cfg, schedule, report) -> validation accuracy`. No optuna here."""

from __future__ import annotations

__all__ = ["Diverged"]


class Diverged(RuntimeError):
    """The training loss became non-finite; the run cannot recover and stops at once."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss
