"""Stopping rules of the contest: which contenders are clearly behind. Pure math on plain
numbers (no optuna, no torch), so it is tested as a property (tests/test_stopping.py).

`behind`: a reference (or shape) whose best score at the stopping horizon (`stop_at`: the
longest horizon shorter than the search's, else the search's own) is below the leader's
by more than `z` noise sds of a paired difference of two runs (z x sigma x sqrt(2)) is clearly
behind: it need take no more grid points, horizons or seeds. For two runs of the same true
score the chance that noise alone puts one that far behind is 1 - Phi(z): 0.00135 at z = 3,
so a contender at least as good as each rival is stopped by noise with a chance of at most
0.00135 per rival run it is compared with (a union bound over the rivals' runs). That is the
noise alone; whether a shorter horizon's ranking holds at the last is a property of the
problem, measured on the recorded learning-curve table by benchmarks/stopping_rules.py
(benchmarks/RESULTS.md, "Stopping rules: clearly behind, and equivalent").

The race's own stop, a challenger shown equivalent to the incumbent within a practical
margin, lives with the race (search.contest.race, rule 6: `race(..., equivalence=delta)`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["Z_BEHIND", "Z_SHORTER", "behind", "behind_by", "stop_at"]

Z_BEHIND = 3.0  # clearly behind: more than 3 sds of a two-run difference below the leader
# At a horizon shorter than the search's the ranking itself misleads, noise or not: on the
# recorded table, z = 3 at 4 of 8 epochs stops the 8-epoch best reference in 12% of drawn
# contests, z = 6 in 1.2% (benchmarks/stopping_rules.py --first 4; at 2 epochs 13.5% and 6%).
Z_SHORTER = 6.0


def stop_at(lengths: tuple[int, ...]) -> tuple[int, float]:
    """(horizon, z) at which a contest stops its clearly-behind references: the longest
    horizon shorter than the search's (`lengths[-1]`), with Z_SHORTER, where the study has
    one; else the search's own length, with Z_BEHIND (then a stopped reference takes no race
    seat)."""
    if len(lengths) > 1:
        return lengths[-2], Z_SHORTER
    return lengths[0], Z_BEHIND


def behind_by(sigma: float, z: float = Z_BEHIND) -> float:
    """The gap below the leader past which a contender is clearly behind: z x sigma x sqrt(2),
    `sigma` one run's seed noise (sd), sqrt(2) for the difference of two runs."""
    return z * sigma * math.sqrt(2.0)


def behind(bests: Mapping[str, float], sigma: float, z: float = Z_BEHIND) -> dict[str, float]:
    """{slot: its gap below the leader} for every slot clearly behind the leader.

    `bests`: each slot's best score at the stopping horizon (higher is better; -inf where all of
    its runs diverged); `sigma`: one run's seed noise. The leader has the highest best (ties:
    the first in `bests`) and is never behind; a slot is behind where its gap exceeds
    `behind_by(sigma, z)` (a diverged one always, unless every slot diverged: then none is).
    A NaN best is no information: never the leader, never behind. The false-stop rate:
    the module docstring (noise alone) and benchmarks/stopping_rules.py (the recorded table).
    """
    if sigma < 0 or math.isnan(sigma) or math.isnan(z):
        raise ValueError(f"sigma must be >= 0 and z a number (got sigma {sigma}, z {z})")
    known = {k: v for k, v in bests.items() if not math.isnan(v)}
    if not known:
        return {}
    leader = max(known, key=lambda k: known[k])  # max keeps the first of equal values
    top = known[leader]
    if top == -math.inf:
        return {}
    cut = behind_by(sigma, z)
    return {k: top - v for k, v in known.items() if k != leader and top - v > cut}
