"""The ranking and the margin on known numbers: Student's t, paired comparison, verdicts."""

from __future__ import annotations

import json
import math

import pytest

from search import stats
from search.answer.fields import validation_fields
from search.answer.text import validation_lines, validation_verdict, verdict
from search.stats import Result, Validation


def _pdf(x: float, df: float) -> float:
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    return c * (1 + x * x / df) ** (-(df + 1) / 2)


def _cdf_by_simpson(t: float, df: float, n: int = 20_000) -> float:
    """0.5 + the integral of the density from 0 to t: an independent check of t_cdf."""
    h = t / n
    s = _pdf(0, df) + _pdf(t, df)
    s += sum((4 if i % 2 else 2) * _pdf(i * h, df) for i in range(1, n))
    return 0.5 + s * h / 3


# Two-sided critical values from printed t tables.
@pytest.mark.parametrize("p, df, t", [
    (0.975, 1, 12.7062047), (0.975, 2, 4.30265273), (0.975, 10, 2.22813885),
    (0.995, 5, 4.03214298), (0.95, 30, 1.69726089), (0.975, 1000, 1.96233908),
])
def test_t_quantile_matches_the_tables(p, df, t):
    assert stats.t_quantile(p, df) == pytest.approx(t, abs=1e-7)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-t, abs=1e-7)
    assert stats.t_cdf(t, df) == pytest.approx(p, abs=1e-9)


@pytest.mark.parametrize("t, df", [(0.3, 1), (1.0, 2), (2.0, 3), (2.5, 7), (0.8, 29)])
def test_t_cdf_matches_numerical_integration(t, df):
    assert stats.t_cdf(t, df) == pytest.approx(_cdf_by_simpson(t, df), abs=1e-9)
    assert stats.t_cdf(-t, df) == pytest.approx(1 - _cdf_by_simpson(t, df), abs=1e-9)


def test_mean_and_sample_std():
    assert stats.mean_std([0.80, 0.82, 0.84]) == pytest.approx((0.82, 0.02))
    assert stats.mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in stats.mean_std([]))


def test_paired_margin_interval_and_p_on_known_numbers():
    # differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641
    a = {1: 0.80, 2: 0.82, 3: 0.84, 4: 0.99}  # seed 4 has no partner: it must not count
    b = {1: 0.79, 2: 0.80, 3: 0.81, 5: 0.10}
    c = stats.paired(a, b)
    half = 4.30265273 * 0.01 / math.sqrt(3)
    assert c.n == 3
    assert c.margin == pytest.approx(0.02) and c.std == pytest.approx(0.01)
    assert (c.low, c.high) == pytest.approx((0.02 - half, 0.02 + half))
    assert c.p_value == pytest.approx(0.074180, abs=1e-6)  # two-sided, df = 2
    assert not c.distinguishable  # the interval [-0.0048, 0.0448] holds 0


def test_paired_tells_apart_in_both_directions():
    a = {s: 0.90 + 0.001 * (s % 2) for s in range(6)}
    b = {s: 0.88 for s in range(6)}
    up, down = stats.paired(a, b), stats.paired(b, a)
    assert up.distinguishable and up.low > 0 and up.p_value < 1e-6
    assert down.distinguishable and down.high < 0
    assert down.margin == pytest.approx(-up.margin)


def test_paired_edge_cases():
    one = stats.paired({1: 0.9}, {1: 0.8})
    assert one.n == 1 and one.margin == pytest.approx(0.1)
    assert math.isnan(one.low) and not one.distinguishable
    none = stats.paired({1: 0.9}, {2: 0.8})
    assert none.n == 0 and not none.distinguishable
    same = stats.paired({1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.6})
    assert (same.margin, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not same.distinguishable


def _r(label, roles, scores, source=None, diverged=()):
    return Result(label, label, roles, dict(enumerate(scores)), source, diverged)


def test_rank_by_mean_diverged_and_empty_last_ties_by_trial():
    ranked = stats.rank([
        _r("a", ("candidate",), [0.7, 0.7], source=5),
        _r("b", ("candidate",), [0.9, 0.9], source=9, diverged=(3,)),  # high, but diverged once
        _r("c", ("baseline",), [0.8, 0.5]),
        _r("d", ("candidate",), [0.7, 0.7], source=2),
        _r("e", ("candidate",), [], source=1),
        _r("f", ("baseline",), [0.75, 0.75]),
    ])
    assert [r.label for r in ranked] == ["f", "d", "a", "c", "b", "e"]


def test_validation_shows_the_recommendation_and_the_best_other_baseline_and_says_so():
    ranked = tuple(stats.rank([
        _r("trial 3 X", ("candidate", "baseline"), [0.91, 0.92, 0.93], source=3),
        _r("cosine", ("baseline",), [0.90, 0.90, 0.90]),
        _r("const", ("baseline",), [0.80, 0.81, 0.79]),
        _r("trial 1 Y", ("candidate",), [0.95, 0.96, 0.94], source=1),  # better on test
    ]))
    v = Validation("s.validate", 10, ranked, notes=("schedule-free SGD baseline not run",),
                   recommended_trial=3)
    # the search recommended trial 3: a higher test mean elsewhere changes nothing
    assert v.winner.label == "trial 3 X"
    assert Validation("s.validate", 10, ranked).winner is None  # no recommendation: none
    assert v.baseline.label == "cosine"  # the winner is a baseline too, but not its own rival
    assert v.comparison.margin == pytest.approx(0.02)
    assert "cannot be told apart from cosine on 3 test seeds" in validation_verdict(v)
    f = validation_fields(v)
    json.dumps(f, allow_nan=False)  # no NaN reaches JSON
    assert f["validated"] and f["mean"] == pytest.approx(0.92) and f["std"] == pytest.approx(0.01)
    assert f["margin"] == pytest.approx(0.02) and f["baseline"] == "cosine"
    assert f["distinguishable"] is False and f["paired_seeds"] == 3
    text = "\n".join(validation_lines(v))
    assert "0.9200 ± 0.0100" in text and "cannot be told apart" in text
    assert "schedule-free SGD baseline not run" in text
    # against every tuned baseline, paired, the p-values Holm-corrected over the two
    cmp = {r.label: (p, h) for r, p, h in v.comparisons}
    assert set(cmp) == {"cosine", "const"}
    raw = [cmp["cosine"][0].p_value, cmp["const"][0].p_value]
    assert [cmp["cosine"][1], cmp["const"][1]] == stats.holm(raw)
    assert cmp["const"][0].margin == pytest.approx(0.12) and cmp["const"][1] < 0.05
    assert f"Holm p = {cmp['const'][1]:.2g}" in text
    assert "no tuned baseline beats the recommendation on the test split" in text
    assert [c["baseline"] for c in f["comparisons"]] == ["cosine", "const"]
    assert f["comparisons"][1]["p_holm"] == pytest.approx(cmp["const"][1])


def test_verdicts_in_plain_words():
    w = _r("w", ("candidate",), [0.9, 0.91, 0.92])
    b = _r("b", ("baseline",), [0.8, 0.8, 0.81])
    assert "beats b" in verdict(w, b, stats.paired(w.scores, b.scores))
    assert "did not hold up on the test split" in verdict(
        b, w, stats.paired(b.scores, w.scores))
    assert "no baseline" in verdict(w, None, None)
    one = _r("o", ("baseline",), [0.85])
    assert "only 1 seed" in verdict(w, one, stats.paired(w.scores, one.scores))
    empty = Validation("s.validate", 4, (b,))
    assert empty.winner is None and "has no finished validation run" in validation_verdict(empty)
    assert validation_fields(empty)["validated"] is False


def test_holm_adjusts_step_down_and_keeps_the_order_given():
    from search.stats import holm

    # three tests: the smallest p times 3, the next times 2 (never below the one before), the
    # last times 1; a NaN is no test and stays NaN
    got = holm([0.04, 0.01, math.nan, 0.03])
    assert got[1] == pytest.approx(0.03) and got[3] == pytest.approx(0.06)
    assert got[0] == pytest.approx(0.06) and math.isnan(got[2])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
