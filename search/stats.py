"""How much better is the winner, really: per-schedule mean ± std over seeds, ranking, and a
paired comparison with the best baseline over the same seeds (`Validation`, read by `best`).

Pure math on plain numbers (no optuna, no torch, no words: how a validation reads is
search.answer's), so it is unit-tested on known values.
Student's t distribution is computed here from the regularized incomplete beta function
(Numerical Recipes' continued fraction), because the project does not depend on scipy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from search.goal import Goal

__all__ = [
    "CONFIDENCE",
    "Paired",
    "Result",
    "SeedScores",
    "Validation",
    "json_number",
    "mean_std",
    "paired",
    "rank",
    "t_cdf",
    "t_quantile",
]

CONFIDENCE = 0.95  # of the interval around the margin; "told apart" when it excludes 0


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the std of one value is 0, of none NaN."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


# 1. Student's t distribution.


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # the continued fraction converges fast only on this side of the mean; else use symmetry
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on `t_cdf`; accurate to ~1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1) but got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


# 2. Paired comparison over the seeds two schedules share.


@dataclass(frozen=True)
class Paired:
    """a - b per shared seed: the mean margin, its spread, an interval and a two-sided p."""

    n: int  # seeds both have
    margin: float  # mean of the per-seed differences
    std: float  # sample std of the differences (NaN with fewer than 2)
    low: float  # CONFIDENCE interval of the mean difference (NaN with fewer than 2)
    high: float
    p_value: float  # paired t-test, two-sided (NaN with fewer than 2)

    @property
    def distinguishable(self) -> bool:
        """True when the interval excludes 0: the two can be told apart on these seeds."""
        return self.n >= 2 and (self.low > 0.0 or self.high < 0.0)


def paired(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE
) -> Paired:
    """Compare two schedules' scores seed by seed (only seeds both have count)."""
    common = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in common]
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    margin, std = mean_std(diffs)
    if n < 2:
        return Paired(1, margin, math.nan, math.nan, math.nan, math.nan)
    se = std / math.sqrt(n)
    if se == 0.0:  # every seed gave the same difference: no spread to test against
        p = 1.0 if margin == 0.0 else 0.0
        return Paired(n, margin, std, margin, margin, p)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    t = margin / se
    p = _betai((n - 1) / 2.0, 0.5, (n - 1) / (n - 1 + t * t))  # 2 * P(T > |t|)
    return Paired(n, margin, std, margin - half, margin + half, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (the family-wise error rate
    held at the level each adjusted p is compared with), in the order given; a NaN stays NaN
    and counts as no test."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


# 3. Results per schedule, and their ranking.


class SeedScores:
    """The count, mean and standard deviation of `scores` (seed -> accuracy)."""

    scores: Mapping[int, float]

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        return mean_std(list(self.scores.values()))[0]

    @property
    def std(self) -> float:
        return mean_std(list(self.scores.values()))[1]


@dataclass(frozen=True)
class Result(SeedScores):
    """One validated schedule at one training length: its score on each seed."""

    key: str  # identity of the trained schedule
    label: str  # for people: "trial 17 OneCycleLR", "CosineAnnealingLR (whole run)"
    roles: tuple[str, ...]  # "candidate" and/or "baseline"
    scores: Mapping[int, float]  # seed -> test accuracy, finished runs only
    source_trial: int | None = None  # the searched trial a candidate comes from
    diverged: tuple[int, ...] = ()  # seeds whose run stopped on a non-finite loss
    family: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def role(self) -> str:
        """One word for a table: recommended, both (candidate and baseline), or its role."""
        if "recommended" in self.roles:
            return "recommended"
        return "both" if len(self.roles) > 1 else self.roles[0] if self.roles else "?"

    @property
    def is_candidate(self) -> bool:
        return "candidate" in self.roles

    @property
    def is_baseline(self) -> bool:
        return "baseline" in self.roles


def rank(results: Iterable[Result]) -> list[Result]:
    """Best first: by mean score; a schedule that diverged on any seed, or has no score,
    ranks after every one that finished all its seeds (a mean over survivors flatters it)."""

    def key(r: Result) -> tuple:
        mean = r.mean
        unusable = bool(r.diverged) or math.isnan(mean)
        src = r.source_trial if r.source_trial is not None else math.inf
        return (unusable, -mean if not math.isnan(mean) else 0.0, src, r.label)

    return sorted(results, key=key)


# 4. One validation: the ranked schedules at one training length.


def json_number(x: float) -> float | None:
    return None if x is None or math.isnan(x) else x  # JSON has no NaN


@dataclass(frozen=True)
class Validation:
    """The validated schedules at one training length, best first."""

    study: str  # the companion study holding the runs
    epochs: int
    ranked: tuple[Result, ...]
    other_epochs: tuple[int, ...] = ()  # lengths also validated
    notes: tuple[str, ...] = ()
    steps_per_epoch: int = 0  # of the validation runs (0: unknown or mixed)
    recommended_trial: int | None = None  # the searched trial the study recommends
    searched_epochs: int | None = None  # the length the search ran (validation may differ)
    goal: Goal = Goal()  # the searched study's: scores are its values with its sign

    @property
    def winner(self) -> Result | None:
        """The study's recommendation as validated: chosen on the validation split by the
        search (`recommended_trial`), never here: the test split only scores it."""
        return next((r for r in self.ranked if r.n and (
            "recommended" in r.roles or (self.recommended_trial is not None
                                         and r.source_trial == self.recommended_trial))), None)

    @property
    def baseline(self) -> Result | None:
        """The best baseline other than the winner itself."""
        w = self.winner
        return next((r for r in self.ranked if r.is_baseline and r.n
                     and (w is None or r.key != w.key)), None)

    @property
    def comparison(self) -> Paired | None:
        w, b = self.winner, self.baseline
        return paired(w.scores, b.scores) if w is not None and b is not None else None

    @property
    def comparisons(self) -> list[tuple[Result, Paired, float]]:
        """The recommendation against every validated baseline, best first: (baseline, the
        paired comparison, its p-value Holm-corrected over the baselines)."""
        w = self.winner
        if w is None:
            return []
        rivals = [r for r in self.ranked if r.is_baseline and r.n and r.key != w.key]
        pairs = [paired(w.scores, r.scores) for r in rivals]
        adjusted = holm([p.p_value for p in pairs])
        return list(zip(rivals, pairs, adjusted, strict=True))
