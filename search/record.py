"""What a trial records, read the same way everywhere (the start of the one trial record).

- `FIXED`: the user attribute a fixed run is enqueued with (its budget-free schedule; a
  contest's reference and race runs, validation runs): nothing of it is sampled.
- `family_of`: a trial's schedule family, from its `scheduler` parameter where it was sampled,
  else from its schedule record (what the Recorder wrote, or what a fixed run was given).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FIXED", "UNKNOWN", "family_of"]

FIXED = "fixed_schedule"
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
