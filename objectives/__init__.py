"""Training objectives: `train(cfg, schedule, report) -> its metric`.

No optuna here, and nothing from `search`: an objective receives the trial's schedule as an
object (`Schedule`) that builds its own torch scheduler, and raises `UserError` for bad input
(a data set, a device, a setting), which `python -m search` shows as one line (exit 2).

The contract an objective function declares, as attributes on the function itself (as the
built-in `objectives.classify.train` and the adapters `objectives.lightning.train` and
`objectives.hf.train` do; per function, so one module can hold several objectives):

- `train.prepare = check`: `check(cfg)` runs once before anything is stored and raises
  `UserError` for what would fail in the first trial (the data, the user's classes).
- `train.holdout = True`: it scores the split `cfg.holdout` names: "val", the validation carve
  of the training data (the search); "test", the test split, trained on all the training data
  (`validate`). Without it `validate` refuses the objective in one line, before training:
  its scores would be validation scores labelled as test.
- `train.options = ("hidden", "dropout")`: the names of the [objective] keys it reads from
  `cfg.options` (a tuple of names; the defaults stay in its code). A study file's other keys,
  beyond the `TrainConfig` settings, are then refused when it is loaded, with a did-you-mean.
  Without it, `cfg.options` takes any key.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType
from typing import Any, Protocol

__all__ = ["Diverged", "Schedule", "Stepper", "UserError", "hide_secrets", "import_module"]

# user:password@ in any URL; password=... in key-value connection strings (libpq DSNs)
_URL_SECRET = re.compile(r"(\b[A-Za-z][\w+.-]*://[^\s:/@'\"]*:)[^\s@'\"]*@")
_KV_SECRET = re.compile(r"(\bpassword\s*=\s*)[^\s'\"&;]+", re.IGNORECASE)


def hide_secrets(text: str) -> str:
    """`text` with URL passwords and `password=...` values replaced by ***."""
    return _KV_SECRET.sub(r"\1***", _URL_SECRET.sub(r"\1***@", text))


class UserError(ValueError):
    """Bad input from the user. The CLI prints `error: <message>` and exits with code 2.

    The message is one line, and a password in it is replaced by *** before anyone sees it
    (whatever built it, a repr of a wrong-typed value included). `search.errors.UserError`
    is this class: objectives and the search raise the same error.
    """

    def __init__(self, message: str = "") -> None:
        one_line = " ".join(hide_secrets(str(message)).split())
        super().__init__(one_line)


def import_module(name: str, what: str) -> ModuleType:
    """Import a module a study file names (an objective, a user's classes or functions): a
    module that is missing or fails on import is one UserError line, `what` naming it
    ("objective module", "`objective.trainer` = ...: module")."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise UserError(f"{what} {name!r} cannot be imported: {e}") from None
    except Exception as e:  # SyntaxError, or the module's own code failing on import
        raise UserError(f"{what} {name!r} fails on import: {type(e).__name__}: {e}") from None


class Diverged(RuntimeError):
    """The training loss became non-finite; the run cannot recover and stops at once."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


class Stepper(Protocol):
    """A built schedule: the training loop tells it when an optimizer step and an epoch end.

    A loop that steps the scheduler itself (Lightning, the HF Trainer) reads `scheduler` and
    `interval` ("iteration": after every optimizer step; "epoch": after every epoch;
    "plateau": after every epoch, with the validation loss) and calls `note_step()` where
    `after_batch()` would go, so the applied LRs are recorded all the same.
    """

    scheduler: Any
    interval: str

    def after_batch(self) -> None:
        """After every optimizer.step(), before anything else changes the LR."""

    def note_step(self) -> None:
        """After every optimizer.step() whose loop steps the scheduler itself: record the LR
        the step applied, without stepping."""

    def after_epoch(self, val_loss: float) -> None:
        """Once after every epoch's validation."""


class Schedule(Protocol):
    """The trial's schedule as an objective receives it (search.schedules.ScheduleConfig):
    the optimizer's shared knobs, and the scheduler built on an optimizer for a budget."""

    lr: float
    momentum: float
    weight_decay: float

    def build(self, optimizer: Any, steps_per_epoch: int, epochs: int) -> Stepper:
        """torch's scheduler on `optimizer` for `epochs` x `steps_per_epoch` optimizer steps."""
        ...
