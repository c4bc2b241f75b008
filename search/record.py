"""What a trial records, read the same way everywhere (the start of the one trial record).

- `FIXED`: the user attribute a fixed run is enqueued with (its budget-free schedule; a
  contest's reference and race runs, validation runs): nothing of it is sampled.
- `family_of`: a trial's schedule family, from its `scheduler` parameter where it was sampled,
  else from its schedule record (what the Recorder wrote, or what a fixed run was given).
- `epochs_trained`: the epochs a trial reported (its validation-accuracy curve's length).
- `holdout_of`: the split a validation run is scored on ("test", or "val" for an LR sweep).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FIXED", "HOLDOUT", "UNKNOWN", "VAL_ACC_CURVE", "epochs_trained", "family_of",
           "holdout_of"]

FIXED = "fixed_schedule"
VAL_ACC_CURVE = "val_acc_curve"  # validation accuracy after each epoch, as reported
HOLDOUT = "holdout"  # a validation run's split
UNKNOWN = "?"


def family_of(trial: Any, unknown: str = UNKNOWN) -> str:
    """The family of an optuna Trial or FrozenTrial (`unknown` before anything says it)."""
    if trial is None:
        return unknown
    params = getattr(trial, "params", {}) or {}
    if "scheduler" in params:
        return str(params["scheduler"])
    attrs = getattr(trial, "user_attrs", {}) or {}
    for key in ("schedule", FIXED):
        record = attrs.get(key)
        if isinstance(record, dict) and "family" in record:
            return str(record["family"])
    return unknown


def epochs_trained(attrs: Any) -> int:
    """Epochs a trial trained and reported, from its user attributes."""
    curve = attrs.get(VAL_ACC_CURVE) or ()
    return len(curve)


def holdout_of(attrs: Any) -> str:
    """The split a validation run was scored on, from its user attributes: "test" unless it
    says "val" (an LR sweep of `validate`)."""
    return "val" if attrs.get(HOLDOUT) == "val" else "test"
