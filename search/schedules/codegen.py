"""Code generation: a family's exact torch kwargs (and an added warmup) -> the Python expression
that builds the same scheduler, from the family's construction (search.schedules.construction:
the value training builds, printed). Floats are printed in their shortest exact form, so
pasted code applies exactly the LRs the trial applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.schedules import construction
from search.schedules.catalog import family
from search.schedules.construction import lit

__all__ = ["lit", "scheduler_code"]


def scheduler_code(name: str, kwargs: Mapping[str, Any],
                   warmup: Mapping[str, Any] | None = None) -> str:
    """The Python expression building family `name` with `kwargs` (after `warmup`, LinearLR's
    kwargs, where one is added) on `optimizer`."""
    return construction.source(
        construction.with_warmup(family(name).construction(kwargs), warmup))
