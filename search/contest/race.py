"""Racing contenders over seeds: which contender leads, which runs are due next, and what is
settled. Pure math on plain numbers (no optuna, no torch), so it is tested as a property.

The rule (SMAC's intensification, stateless so that every worker derives the same race from
the scores in the store):

1. The incumbent is the contender with the best mean over the seeds it shares with the others
   among those that have run the most seeds: it changes only when a challenger has caught up
   on the incumbent's seeds and is better on them. The luckiest single run never leads.
2. A challenger is out when, on the seeds it shares with the incumbent, its mean is below the
   incumbent's by more than the noise allows (`margin`: a one-sided bound on the difference of
   two means of n seeds, from the pooled seed noise `sigma`).
3. A challenger still in, with fewer seeds than the incumbent, runs the incumbent's next seeds
   (at most doubling its own count at a time, so that a bad one leaves early).
4. When no challenger is due, the incumbent gets one more seed, while any challenger is still
   in and the incumbent has fewer than `max_seeds`; then the challengers catch up again.
5. The race is decided when nothing is due: every challenger is out, or those still in have
   run `max_seeds` seeds with the incumbent and are within noise of it (tied).
6. Equivalence (`equivalence` = delta > 0, in score units; 0 leaves rules 1-5 exactly as
   they are): when every challenger still in has shared seeds with the incumbent and is
   shown within (-delta, delta) of it by two one-sided tests at 95% each (TOST: gap -
   Z_OUT x se > -delta and gap + Z_OUT x se < delta, se = sigma x sqrt(2 / n), what `margin`
   bounds), nothing more is due: the race is decided and `Race.equivalent` names them. With
   sigma 0.0037 a delta of 0.001 needs n > 2 (Z_OUT x sigma / delta)^2 = 74 shared seeds
   even at a gap of exactly 0, so it fires only where delta is several sds wide
   (benchmarks/stopping_rules.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from search.stats import mean_std

__all__ = ["Z_OUT", "Entry", "Race", "equivalent", "margin", "noise", "race"]

Z_OUT = 1.645  # a challenger is out below incumbent - Z_OUT x sd(difference): one-sided 95%


@dataclass(frozen=True)
class Entry:
    """One entry of the race: a contender's key and its score on each seed run so far (higher
    is better)."""

    key: str
    scores: Mapping[int, float]

    @property
    def n(self) -> int:
        return len(self.scores)

    def mean_on(self, seeds: Iterable[int]) -> float:
        vals = [self.scores[s] for s in seeds]
        return math.fsum(vals) / len(vals) if vals else math.nan


def noise(contenders: Iterable[Entry], prior_sd: float, prior_df: float) -> float:
    """The seed noise (sd of one run's score): every contender's spread over its seeds, pooled,
    shrunk towards `prior_sd` as if it had been measured with `prior_df` degrees of freedom."""
    ss, df = prior_df * prior_sd**2, prior_df
    for c in contenders:
        if c.n >= 2:
            _, sd = mean_std(list(c.scores.values()))
            ss += (c.n - 1) * sd**2
            df += c.n - 1
    return math.sqrt(ss / df) if df > 0 else prior_sd


def margin(sigma: float, n: int) -> float:
    """How far below the incumbent a challenger may be on n shared seeds and still be in."""
    return Z_OUT * sigma * math.sqrt(2.0 / n) if n > 0 else math.inf


def equivalent(gap: float, n: int, sigma: float, delta: float) -> bool:
    """Whether a difference `gap` of two means over n shared seeds is shown inside (-delta,
    delta) by two one-sided tests at 95% each (TOST): gap - m > -delta and gap + m < delta,
    m = `margin(sigma, n)`. Never with delta <= 0, no shared seed or a NaN gap."""
    if not delta > 0 or n <= 0 or math.isnan(gap):
        return False
    m = margin(sigma, n)
    return gap - m > -delta and gap + m < delta


@dataclass(frozen=True)
class Race:
    """The state of a race, derived from the scores (`race`)."""

    incumbent: str | None
    sigma: float
    gaps: Mapping[str, tuple[float, int]]  # challenger -> (mean - incumbent's, shared seeds)
    out: frozenset[str]  # challengers below the incumbent by more than the noise allows
    due: tuple[tuple[str, int], ...]  # (contender, seed) runs to train next, in order
    max_seeds: int
    equivalent: frozenset[str] = frozenset()  # challengers shown within the equivalence
    # margin of the incumbent (rule 6), which decided the race; empty otherwise

    @property
    def decided(self) -> bool:
        return not self.due

    @property
    def tied(self) -> tuple[str, ...]:
        """Challengers still in: within noise of the incumbent (best gap first)."""
        inside = [k for k in self.gaps if k not in self.out]
        return tuple(sorted(inside, key=lambda k: -self.gaps[k][0]))


def _incumbent(cs: Sequence[Entry]) -> Entry | None:
    ran = [c for c in cs if c.n]
    if not ran:
        return None
    most = max(c.n for c in ran)
    top = [c for c in ran if c.n == most]
    shared = set.intersection(*(set(c.scores) for c in top))
    # ties on the mean: the earlier contender (the caller lists references first)
    return max(top, key=lambda c: (c.mean_on(shared if shared else c.scores), -cs.index(c)))


def race(contenders: Sequence[Entry], max_seeds: int, prior_sd: float,
         prior_df: float = 4.0, running: Iterable[tuple[str, int]] = (),
         seeds: Sequence[int] | None = None, equivalence: float = 0.0) -> Race:
    """The race over `contenders` (in a fixed order: ties go to the earlier one).

    `running`: (contender, seed) runs in flight, never due twice. `seeds`: the seed of each
    race position, in order (default 0, 1, 2, ...): a contender's k-th run uses seeds[k].
    `equivalence`: the practical margin delta of rule 6, in score units (0: no such stop).
    """
    order = list(seeds) if seeds is not None else list(range(max_seeds))
    busy = set(running)
    inc = _incumbent(contenders)
    sigma = noise(contenders, prior_sd, prior_df)
    if inc is None:
        first = tuple((c.key, order[0]) for c in contenders if (c.key, order[0]) not in busy)
        return Race(None, sigma, {}, frozenset(), first, max_seeds)
    gaps: dict[str, tuple[float, int]] = {}
    out: set[str] = set()
    for c in contenders:
        if c.key == inc.key:
            continue
        shared = sorted(set(c.scores) & set(inc.scores))
        if not shared:
            gaps[c.key] = (math.nan, 0)
            continue
        gap = c.mean_on(shared) - inc.mean_on(shared)
        gaps[c.key] = (gap, len(shared))
        if gap < -margin(sigma, len(shared)):
            out.add(c.key)
    alive = [c for c in contenders if c.key != inc.key and c.key not in out]
    if alive and all(equivalent(*gaps[c.key], sigma, equivalence) for c in alive):
        # 6. every challenger still in is shown within delta of the incumbent: decided
        return Race(inc.key, sigma, gaps, frozenset(out), (), max_seeds,
                    frozenset(c.key for c in alive))
    due: list[tuple[str, int]] = []
    alive.sort(key=lambda c: -(gaps[c.key][0] if not math.isnan(gaps[c.key][0]) else math.inf))
    for c in alive:  # 3. challengers catch up on the incumbent's seeds, doubling at most
        pending = [s for s in order if s in inc.scores and s not in c.scores]
        flying = sum(1 for s in order if (c.key, s) in busy)
        allowed = max(1, c.n) - flying  # at most as many new seeds as it has run
        due += [(c.key, s) for s in pending if (c.key, s) not in busy][:max(0, allowed)]
    if not due and alive and inc.n < max_seeds:  # 4. the incumbent runs one more seed
        nxt = next((s for s in order[:max_seeds] if s not in inc.scores), None)
        if nxt is not None and (inc.key, nxt) not in busy:
            due.append((inc.key, nxt))
    return Race(inc.key, sigma, gaps, frozenset(out), tuple(due), max_seeds)
