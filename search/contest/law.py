"""The LR law: how a reference's best LR moves with the training length, and what it says for
another length (`best --epochs N`, `validate --epochs N`).

With `horizons` a contest tunes each reference's LR on a grid at every horizon (whole runs of
that length, search.contest.policy). A grid's best LR is read as the peak of a parabola in
log LR through its best point and the two beside it (`peak`: the x3 grid would otherwise
quantise LR* to factors of 3); across horizons the peaks are fitted as

    log LR*(T) = a - beta * log T            (T in epochs)

the power law Bjorck et al. (ICLR 2025) measured for the optimal LR against the training
horizon. The interval of beta is a parametric bootstrap: every score of every grid drawn again
with the race's seed noise, the peaks and the fit redone (DRAWS times, a fixed seed, so every
reader computes the same law). Pure: no optuna, no torch, no words (how a law reads in
`best` is search.answer.text's; `Law.fields` is what the contest stores with the study).

`transfer` says what a contender's LR becomes at N epochs. A reference: its own law's LR at N,
exp(a - beta log N) (not its searched grid point times a factor: the grid is x3 coarse, the
fit reads between its points). A searched shape (its LR a factor of the LR scale, tuned
continuously at the search's length T): its LR times (N / T) ** -beta of the scale's law
(whole-run cosine). Where beta's interval holds 0 the law is flat and the LR stays as
searched; at N = T every LR is the one that raced.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.stats import CONFIDENCE, json_number

__all__ = ["DRAWS", "EXTRAPOLATION", "Law", "Transfer", "fit", "laws", "moved", "peak",
           "transfer"]

DRAWS = 1000  # bootstrap draws of the fit
SEED = 0  # of the bootstrap: every reader computes the same interval
EXTRAPOLATION = 16  # beyond this many times the longest horizon, the LR is an extrapolation


def _vertices(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log LR*, on_edge) of each row of scores `y` over the ascending log LRs `x`: the vertex
    of the parabola through the row's best point and its two neighbours (it lies between
    them); the best point itself where it is an edge of the grid (the lowest LR of a tie)."""
    n = len(x)
    i = y.argmax(axis=1)  # the first of equal scores: the lowest LR
    edge = (i == 0) | (i == n - 1) if n > 1 else np.zeros(len(y), dtype=bool)
    if n < 3:
        return x[i], edge
    j = np.clip(i, 1, n - 2)
    x0, x1, x2 = x[j - 1], x[j], x[j + 1]
    y0, y1, y2 = (np.take_along_axis(y, (j + k)[:, None], axis=1)[:, 0] for k in (-1, 0, 1))
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    flat = den == 0.0  # three equal scores: no curvature, the best point itself
    v = np.clip(x1 - 0.5 * num / np.where(flat, 1.0, den), x0, x2)
    return np.where(edge, x[i], np.where(flat, x1, v)), edge


def peak(scored: Mapping[float, float]) -> tuple[float, bool] | None:
    """(LR*, on_edge) of one grid (`_vertices`). None where no point is finite."""
    pts = sorted((lr, v) for lr, v in scored.items() if math.isfinite(v))
    if not pts:
        return None
    x, edge = _vertices(np.log([lr for lr, _ in pts]), np.array([[v for _, v in pts]]))
    return math.exp(x[0]), bool(edge[0])


def _slope(log_t: np.ndarray, log_lr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares (a, beta) of log LR = a - beta log T, along the last axis."""
    tm = log_t.mean()
    dt = log_t - tm
    b = (dt * (log_lr - log_lr.mean(axis=-1, keepdims=True))).sum(axis=-1) / (dt * dt).sum()
    return log_lr.mean(axis=-1) - b * tm, -b


@dataclass(frozen=True)
class Law:
    """One reference's LR law, fitted on its tuned LRs at each horizon."""

    slot: str
    label: str
    horizons: tuple[int, ...]
    lrs: tuple[float, ...]  # LR* at each horizon (`peak`)
    edges: tuple[bool, ...]  # LR* at a grid's edge: the grid did not bracket the best
    a: float
    beta: float
    beta_low: float
    beta_high: float
    lrs_low: tuple[float, ...] = ()  # LR*'s bootstrap interval at each horizon
    lrs_high: tuple[float, ...] = ()
    fitted_on: tuple[int, ...] = ()  # the horizons in the fit: those whose LR* is bracketed
    draws: Any = dataclasses.field(default=None, repr=False, compare=False)  # (a, beta) each

    def lr_interval(self, epochs: float) -> tuple[float, float]:
        """The bootstrap interval of the law's LR at `epochs`."""
        a, b = self.draws
        q = [(1 - CONFIDENCE) / 2 * 100, (1 + CONFIDENCE) / 2 * 100]
        lo, hi = np.exp(np.percentile(a - b * math.log(epochs), q))
        return float(lo), float(hi)

    @property
    def flat(self) -> bool:
        """beta's interval holds 0: the data do not say that the best LR moves with length."""
        return self.beta_low <= 0.0 <= self.beta_high

    def lr_at(self, epochs: float) -> float:
        return math.exp(self.a - self.beta * math.log(epochs))

    def fields(self) -> dict[str, Any]:
        return {"reference": self.label, "slot": self.slot, "horizons": list(self.horizons),
                "lr_star": [json_number(x) for x in self.lrs],
                "lr_star_low": [json_number(x) for x in self.lrs_low],
                "lr_star_high": [json_number(x) for x in self.lrs_high],
                "lr_star_at_grid_edge": list(self.edges), "fitted_on": list(self.fitted_on),
                "a": json_number(self.a),
                "beta": json_number(self.beta), "beta_low": json_number(self.beta_low),
                "beta_high": json_number(self.beta_high), "flat": self.flat,
                "confidence": CONFIDENCE, "bootstrap_draws": DRAWS}


def fit(slot: str, label: str, grids: Mapping[int, Mapping[float, float]], noise_sd: float,
        ) -> Law | None:
    """The law of one reference from its grid at each horizon (horizon -> LR -> score), or None
    with fewer than two horizons that have a finite score. A best LR on its grid's edge (the
    study's LR range stopped the grid there) only bounds LR*: it is left out of the fit where
    two bracketed horizons remain."""
    peaks = {h: p for h, g in sorted(grids.items()) if (p := peak(g)) is not None}
    if len(peaks) < 2:
        return None
    inside = tuple(h for h in peaks if not peaks[h][1])
    hs = inside if len(inside) >= 2 else tuple(peaks)
    log_t = np.log(np.array(hs, dtype=float))
    a, beta = _slope(log_t, np.log(np.array([peaks[h][0] for h in hs])))
    rng = np.random.default_rng(SEED)
    draws = np.empty((DRAWS, len(hs)))
    for j, h in enumerate(hs):
        lrs = sorted(lr for lr, v in grids[h].items() if math.isfinite(v))
        base = np.array([grids[h][lr] for lr in lrs])
        noisy = base + rng.normal(0.0, noise_sd, size=(DRAWS, len(lrs)))
        draws[:, j] = _vertices(np.log(lrs), noisy)[0]
    a_draws, betas = _slope(log_t, draws)
    q = [(1 - CONFIDENCE) / 2 * 100, (1 + CONFIDENCE) / 2 * 100]
    lo, hi = np.percentile(betas, q)
    lr_lo, lr_hi = np.exp(np.percentile(draws, q, axis=0))
    band = dict(zip(hs, zip(lr_lo, lr_hi, strict=True), strict=True))
    every = tuple(peaks)
    return Law(slot, label, every, tuple(peaks[h][0] for h in every),
               tuple(peaks[h][1] for h in every), float(a), float(beta), float(lo), float(hi),
               tuple(float(band.get(h, (peaks[h][0],) * 2)[0]) for h in every),
               tuple(float(band.get(h, (peaks[h][0],) * 2)[1]) for h in every), hs,
               (a_draws, betas))


def laws(ladder: Mapping[str, Mapping[int, Any]], noise_sd: float) -> dict[str, Law]:
    """slot -> the law of every reference tuned at two horizons or more (`ladder`: slot ->
    horizon -> search.contest.state.Grid)."""
    out = {}
    for slot, by_h in ladder.items():
        g = next(iter(by_h.values()))
        law = fit(slot, g.label, {h: dict(x.scored) for h, x in by_h.items()}, noise_sd)
        if law is not None:
            out[slot] = law
    return out


@dataclass(frozen=True)
class Transfer:
    """A contender's LR at `epochs` (`lr`; its searched LR x `factor`), and why."""

    searched_lr: float
    searched_epochs: int
    epochs: int
    lr: float
    lr_low: float
    lr_high: float
    law: Law | None = None  # whose law moved it (None: not measured across lengths)
    whose: str = ""  # "its own" or "the LR scale's (...)"
    kept: bool = False  # `--keep-lr`: the searched LR whatever the law says
    law_lr: float = math.nan  # what the law gives at `epochs` (shown beside a kept LR)

    @property
    def factor(self) -> float:
        return self.lr / self.searched_lr

    @property
    def moved(self) -> bool:
        return self.lr != self.searched_lr

    @property
    def beyond(self) -> float:
        """`epochs` over the longest horizon measured."""
        return self.epochs / max(self.law.horizons) if self.law else math.nan

    @property
    def extrapolated(self) -> bool:
        return self.law is not None and not (
            min(self.law.horizons) / EXTRAPOLATION <= self.epochs
            <= EXTRAPOLATION * max(self.law.horizons))


def transfer(all_laws: Mapping[str, Law], slot: str, scale_slot: str, searched_lr: float,
             searched_epochs: int, epochs: int | None, keep_lr: bool = False) -> Transfer:
    """The LR of a contender (a reference's `slot`, or "" for a searched shape, which follows
    the law of `scale_slot`) at `epochs` (None: as searched). See the module docstring."""
    n = epochs or searched_epochs
    law = all_laws.get(slot) if slot else all_laws.get(scale_slot)
    whose = "its own" if slot else "the LR scale's, whose factor its LR is"
    same = Transfer(searched_lr, searched_epochs, n, searched_lr, searched_lr, searched_lr,
                    law, whose if law else "", keep_lr)
    if law is None or n == searched_epochs:
        return same
    if slot:  # the law's own LR at n
        lr, (lo, hi) = law.lr_at(n), law.lr_interval(n)
    else:  # the searched LR moved by the scale's law
        r = n / searched_epochs
        lr = searched_lr * r ** -law.beta
        lo, hi = sorted(searched_lr * r ** -b for b in (law.beta_low, law.beta_high))
    if law.flat or keep_lr:
        return dataclasses.replace(same, law_lr=lr)
    return Transfer(searched_lr, searched_epochs, n, lr, lo, hi, law, whose, False, lr)


def moved(schedule: Any, t: Transfer) -> Any:
    """A budget-free schedule (search.schedules.ScheduleConfig) at the LR of `t` (its other
    knobs are relative to the LR): what `best --epochs N` prints and `validate --epochs N`
    trains."""
    return dataclasses.replace(schedule, lr=t.lr) if t.moved else schedule
