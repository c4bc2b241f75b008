"""The LR law (search.contest.law): a grid's peak, the fit across horizons and its interval,
and what it says for another length. Generated data with a known law: LR*(T) = B * T ** -beta,
scores a parabola in log LR around it (as tests/contest_objectives.py) plus seed noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.answer.text import left_out, transfer_lines
from search.contest import law

CURVE = 0.03  # accuracy lost per squared decade away from the best LR
HORIZONS = (2, 4, 8)


def grid_scores(best_lr: float, centre: float, rng: np.random.Generator, noise: float,
                steps=(-2, -1, 0, 1, 2)) -> dict[float, float]:
    """A x3 grid around `centre`, scored by the parabola around `best_lr` plus noise."""
    lrs = [centre * 3.0**k for k in steps]
    return {lr: 0.9 - CURVE * math.log10(lr / best_lr) ** 2 + rng.normal(0.0, noise)
            for lr in lrs}


def generated(b: float, beta: float, rng: np.random.Generator, noise: float,
              horizons=HORIZONS) -> dict[int, dict[float, float]]:
    """Each horizon's grid, centred on a grid point within a factor sqrt(3) of the truth (as
    the contest centres a grid on the best one horizon shorter)."""
    out = {}
    for h in horizons:
        truth = b * h**-beta
        centre = truth * 3.0 ** rng.uniform(-0.5, 0.5)
        out[h] = grid_scores(truth, centre, rng, noise)
    return out


@given(vertex=st.floats(-0.49, 0.49))
@settings(derandomize=True, max_examples=50, deadline=None)
def test_the_peak_of_a_noiseless_grid_is_the_parabola_vertex(vertex):
    truth = 0.3 * 3.0**vertex
    got, edge = law.peak(grid_scores(truth, 0.3, np.random.default_rng(0), 0.0))
    assert got == pytest.approx(truth, rel=1e-9) and not edge


def test_a_peak_on_the_grid_edge_is_that_edge_and_is_flagged():
    scored = grid_scores(0.01, 0.3, np.random.default_rng(0), 0.0)
    assert law.peak(scored) == (min(scored), True)
    assert law.peak({0.1: -math.inf, 0.3: 0.8}) == (0.3, False)  # a lone finite point
    assert law.peak({0.1: -math.inf}) is None


@given(b=st.floats(0.05, 5.0), beta=st.floats(-0.3, 1.0), seed=st.integers(0, 2**16))
@settings(derandomize=True, max_examples=25, deadline=None)
def test_the_fit_recovers_a_known_law(b, beta, seed):
    grids = generated(b, beta, np.random.default_rng(seed), noise=0.0003)
    fit = law.fit("cosine", "cosine", grids, noise_sd=0.0003)
    assert fit.beta == pytest.approx(beta, abs=0.06)
    assert fit.a == pytest.approx(math.log(b), abs=0.15)
    assert fit.beta_low <= fit.beta <= fit.beta_high
    assert fit.lr_at(8) == pytest.approx(b * 8**-beta, rel=0.1)


def test_its_interval_covers_the_true_beta_at_about_its_nominal_rate():
    """200 generated studies at the seed noise of lr-fashion's table (0.0037): the 95%
    bootstrap interval holds the true beta in about 95% of them."""
    rng = np.random.default_rng(12345)
    hits = []
    for _ in range(200):
        beta = rng.uniform(0.0, 0.8)
        fit = law.fit("cosine", "cosine", generated(0.9, beta, rng, 0.0037), 0.0037)
        hits.append(fit.beta_low <= beta <= fit.beta_high)
    assert 0.88 <= np.mean(hits) <= 0.995, np.mean(hits)


def test_one_horizon_is_no_law():
    grids = {8: grid_scores(0.3, 0.3, np.random.default_rng(0), 0.0)}
    assert law.fit("cosine", "cosine", grids, 0.003) is None


def _law(beta=0.5, low=0.3, high=0.7) -> law.Law:
    draws = (np.full(11, math.log(2.0)), np.linspace(low, high, 11))
    return law.Law("cosine", "cosine", HORIZONS, tuple(2.0 * h**-beta for h in HORIZONS),
                   (False,) * 3, math.log(2.0), beta, low, high, draws=draws)


def test_what_the_law_says_for_another_length():
    laws = {"cosine": _law()}
    same = law.transfer(laws, "cosine", "cosine", 0.9, 8, None)
    assert same.lr == 0.9 and not same.moved  # as searched: the LR that raced
    ref = law.transfer(laws, "cosine", "cosine", 0.9, 8, 32)
    assert ref.lr == laws["cosine"].lr_at(32) == pytest.approx(2.0 * 32**-0.5)
    assert ref.lr_low < ref.lr < ref.lr_high and not ref.extrapolated
    shape = law.transfer(laws, "", "cosine", 0.4, 8, 32)  # a searched shape: the scale's law
    assert shape.lr == pytest.approx(0.4 * 4**-0.5) and "LR scale" in shape.whose
    kept = law.transfer(laws, "cosine", "cosine", 0.9, 8, 32, keep_lr=True)
    assert kept.lr == 0.9 and kept.law_lr == ref.lr
    far = law.transfer(laws, "cosine", "cosine", 0.9, 8, 8 * law.EXTRAPOLATION + 1)
    assert far.extrapolated and any("extrapolation" in line for line in transfer_lines(far))
    flat = law.transfer({"cosine": _law(0.1, -0.1, 0.3)}, "cosine", "cosine", 0.9, 8, 32)
    assert flat.lr == 0.9 and any("flat" in line for line in transfer_lines(flat))
    none = law.transfer({}, "cosine", "cosine", 0.9, 8, 32)
    assert none.lr == 0.9 and "not measured across lengths" in transfer_lines(none)[0]


def test_a_best_lr_on_the_edge_of_the_range_is_left_out_of_the_fit():
    """The LR range stopped the first horizon's grid below its best: that LR* only bounds the
    truth, and fitting it would flatten the law."""
    rng = np.random.default_rng(3)
    grids = generated(2.0, 0.5, rng, 0.0003)
    grids[1] = grid_scores(2.0, 0.3, rng, 0.0003, steps=(-2, -1, 0, 1))  # stops at 0.3 * 3
    fit = law.fit("cosine", "cosine", grids, 0.0003)
    assert fit.horizons == (1, *HORIZONS) and fit.fitted_on == HORIZONS
    assert fit.edges[0] and fit.beta == pytest.approx(0.5, abs=0.06)
    assert "left out of the fit" in left_out(fit)
