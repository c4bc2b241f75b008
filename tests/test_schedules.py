"""Each family's LR sequence against torch's documented closed forms, at the right granularity."""

from __future__ import annotations

import math
from bisect import bisect_right

import pytest
import torch
from conftest import step_through

from search import schedules
from search.schedules import ScheduleConfig

E, S, LR = 12, 5, 0.2  # epochs, optimizer steps per epoch, base LR


def simulate(cfg: ScheduleConfig, losses=None, epochs=E, steps=S):
    """LR applied at every optimizer step, stepping the scheduler as `Built` says."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr, momentum=0.9)
    built = step_through(opt, cfg, epochs, steps, losses)
    assert built.every == 1
    return built, built.trace


def per_epoch(fn):
    """A closed form in epochs, seen at every optimizer step."""
    return [fn(it // S) for it in range(E * S)]


def cosine(base, eta, t, T):
    return eta + (base - eta) * (1 + math.cos(math.pi * t / T)) / 2


def warm(it, w, sf=schedules.WARMUP_START_FACTOR):
    return LR * (sf + (1 - sf) * it / w)


def one_cycle(kw, it):
    # torch's OneCycleLR (two phases, cos annealing), as its docstring describes
    top, total = kw["max_lr"], kw["total_steps"]
    start, end = top / kw["div_factor"], top / kw["div_factor"] / kw["final_div_factor"]
    up = float(kw["pct_start"] * total) - 1
    if it <= up:
        return end_cos(start, top, it / up)
    return end_cos(top, end, (it - up) / (total - 1 - up))


def end_cos(a, b, pct):
    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)


def warm_restarts(kw, e):
    t0, mult, eta = kw["T_0"], kw["T_mult"], kw["eta_min"]
    t_i, t_cur = t0, e
    while t_cur >= t_i:
        t_cur -= t_i
        t_i *= mult
    return cosine(LR, eta, t_cur, t_i)


CASES = {
    "Constant": ({}, lambda kw: per_epoch(lambda e: LR)),
    "StepLR": (
        {"step_size": 3 / E, "gamma": 0.5},  # budget-free: a fraction of the run
        # the formula of the source notes: base_lr * gamma ** (epoch // step_size)
        lambda kw: per_epoch(lambda e: LR * kw["gamma"] ** (e // kw["step_size"])),
    ),
    "MultiStepLR": (
        {"n_milestones": 2, "gap_0": 0.3, "gap_1": 0.4, "gap_2": 0.3, "gamma": 0.3},
        lambda kw: per_epoch(lambda e: LR * kw["gamma"] ** bisect_right(kw["milestones"], e)),
    ),
    "ExponentialLR": (
        {"final_factor": 0.01},
        lambda kw: per_epoch(lambda e: LR * kw["gamma"] ** e),
    ),
    "CosineAnnealingLR": (
        {"T_max": 8 / E, "eta_min_factor": 0.01},
        lambda kw: per_epoch(lambda e: cosine(LR, kw["eta_min"], e, kw["T_max"])),
    ),
    "OneCycleLR": (
        {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        lambda kw: [one_cycle(kw, it) for it in range(E * S)],
    ),
    "CosineAnnealingWarmRestarts": (
        {"T_0": 3 / E, "T_mult": 2, "eta_min_factor": 0.01},
        lambda kw: per_epoch(lambda e: warm_restarts(kw, e)),
    ),
    "PolynomialLR": (
        {"power": 2.0},
        lambda kw: per_epoch(lambda e: LR * (1 - min(e, kw["total_iters"]) / kw["total_iters"])
                             ** kw["power"]),
    ),
    "InverseTimeDecay": (
        {"final_factor": 1 / (1 + 0.05 * E * S)},  # decay 0.05 per iteration
        # the formula of the source notes: lr / (1 + decay * iteration), per iteration
        lambda kw: [LR / (1 + kw["decay"] * it) for it in range(E * S)],
    ),
    "WarmupCosine": (
        {"warmup_frac": 0.1, "eta_min_factor": 0.01},
        lambda kw: [
            warm(it, kw["warmup_iters"]) if it < kw["warmup_iters"]
            else cosine(LR, kw["eta_min"], it - kw["warmup_iters"],
                        kw["total_iters"] - kw["warmup_iters"])
            for it in range(E * S)
        ],
    ),
    "WarmupStableDecay": (
        {"warmup_frac": 0.1, "decay_frac": 0.3, "end_factor": 0.01},
        lambda kw: [wsd(kw, it) for it in range(E * S)],
    ),
}


def wsd(kw, it):
    w, s, d = kw["warmup_iters"], kw["stable_iters"], kw["decay_iters"]
    if it < w:
        return warm(it, w)
    if it < w + s:
        return LR
    return LR * (1 + (kw["end_factor"] - 1) * min(it - w - s, d) / d)


def test_every_family_has_a_case():
    assert set(CASES) | {"ReduceLROnPlateau"} == set(schedules.SCHEDULES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_lr_sequence_matches_closed_form(name):
    params, expected = CASES[name]
    built, applied = simulate(ScheduleConfig(name, params, lr=LR))
    assert built.interval == schedules.family(name).interval
    assert applied == pytest.approx(expected(built.kwargs), rel=1e-6, abs=1e-12)


def test_epoch_families_hold_the_lr_within_an_epoch():
    _, applied = simulate(ScheduleConfig("StepLR", {"step_size": 1 / E, "gamma": 0.5}, lr=LR))
    for e in range(E):
        assert len(set(applied[e * S:(e + 1) * S])) == 1


def test_reduce_on_plateau_steps_with_the_validation_loss():
    # the loss improves for 3 epochs, then stalls: after `patience` bad epochs the LR drops
    losses = [3.0, 2.0, 1.0] + [1.0] * (E - 3)
    built, applied = simulate(
        ScheduleConfig("ReduceLROnPlateau", {"factor": 0.5, "patience": 2 / E}, lr=LR), losses
    )
    assert built.interval == schedules.PLATEAU
    epoch_lrs = applied[::S]
    # epochs 3, 4, 5 are bad; after epoch 5 (3 > patience) the LR halves; again after 8, 11
    assert epoch_lrs == pytest.approx([LR] * 6 + [LR / 2] * 3 + [LR / 4] * 3)


def test_inverse_time_decay_is_the_formula_of_the_notes():
    built, _ = simulate(ScheduleConfig("InverseTimeDecay", CASES["InverseTimeDecay"][0], lr=LR))
    assert built.kwargs["decay"] == pytest.approx(0.05)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "ExponentialLR", "Constant",
                                  "MultiStepLR", "PolynomialLR", "CosineAnnealingWarmRestarts",
                                  "InverseTimeDecay"])
def test_added_warmup_then_the_family_fits_in_the_rest_of_the_run(name):
    params = CASES[name][0]
    built, applied = simulate(ScheduleConfig(name, params, lr=LR, warmup=1 / E))
    w = built.warmup["total_iters"]
    assert (built.interval, w) == (schedules.ITERATION, S)
    assert applied[:w] == pytest.approx([warm(it, w) for it in range(w)])
    # after the warmup the family runs from its start over the E * S - w steps left: the
    # same schedule as without warmup on a run of that length, stepped per iteration
    plain = schedules.resolve(ScheduleConfig(name, params, lr=LR), (E * S - w), 1)
    assert built.kwargs == plain.kwargs


def test_warmed_up_cosine_and_polynomial_end_where_the_family_ends():
    eta = 0.01
    for name, params, end in (
        ("CosineAnnealingLR", {"T_max": 1.0, "eta_min_factor": eta}, LR * eta),
        ("PolynomialLR", {"power": 1.0}, 0.0),
    ):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=LR)
        built = schedules.build(opt, ScheduleConfig(name, params, lr=LR, warmup=2 / E), S, E)
        for _ in range(E * S):
            opt.step()
            built.after_batch()
        # after the run's last step the schedule has reached its end value exactly ...
        assert opt.param_groups[0]["lr"] == pytest.approx(end, abs=1e-12)
        # ... and the last step trained within one scheduler step of it (linear: (LR - end)/H)
        h = E * S - built.warmup["total_iters"]
        assert 0 <= built.trace[-1] - end <= (LR - end) / h * (1 + 1e-9)


def test_the_trace_records_the_applied_lr_at_every_kth_step():
    cfg = ScheduleConfig("OneCycleLR", CASES["OneCycleLR"][0], lr=LR)
    built, applied = simulate(cfg)
    assert built.every == 1 and built.trace == applied
    long = schedules.resolve(cfg, 100, 30)
    assert long.every == 12  # ceil(3000 / 256)


@pytest.mark.parametrize("n", range(1, schedules.MAX_MILESTONES + 1))
@pytest.mark.parametrize("horizon", [2, 3, 5, 8, 10, 90, 1000])
def test_milestones_are_n_distinct_steps_inside_the_run(n, horizon):
    import random

    rng = random.Random(n * 1000 + horizon)
    for _ in range(200):
        p = {"n_milestones": n, **{f"gap_{i}": rng.uniform(0.01, 100) for i in range(n + 1)}}
        ms = schedules.milestones(p, horizon)
        assert ms == sorted(set(ms)) and all(0 < m < horizon for m in ms)
        assert len(ms) == min(n, horizon - 1)


def test_plateau_and_own_warmup_families_get_no_added_warmup():
    for name in ("ReduceLROnPlateau", "OneCycleLR", "WarmupCosine"):
        assert not schedules.family(name).warmup_ok
    built = schedules.resolve(ScheduleConfig("OneCycleLR", CASES["OneCycleLR"][0],
                                             warmup=0.2), E, S)
    assert built.warmup is None


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(ValueError, match="StepLR.*but got 'Steplr'"):
        schedules.family("Steplr")


def test_listener_receives_the_built_schedule():
    seen = []
    cfg = ScheduleConfig("StepLR", {"step_size": 2 / E, "gamma": 0.1}, listener=seen.append)
    simulate(cfg)
    assert seen[0].kwargs == {"step_size": 2, "gamma": 0.1}
    assert (seen[0].epochs, seen[0].steps_per_epoch) == (E, S)


def test_resolving_for_another_budget_keeps_the_shape_over_the_run():
    def at(name, params, budget, **kw):
        return schedules.resolve(ScheduleConfig(name, params, lr=LR, **kw), *budget).kwargs

    old, new = (10, 100), (20, 50)
    assert at("StepLR", {"step_size": 0.3, "gamma": 0.5}, old) == {"step_size": 3, "gamma": 0.5}
    assert at("StepLR", {"step_size": 0.3, "gamma": 0.5}, new) == {"step_size": 6, "gamma": 0.5}
    ms = {"n_milestones": 2, "gap_0": 0.3, "gap_1": 0.4, "gap_2": 0.3, "gamma": 0.1}
    assert at("MultiStepLR", ms, old)["milestones"] == [3, 7]
    assert at("MultiStepLR", ms, new)["milestones"] == [6, 14]
    g0 = at("ExponentialLR", {"final_factor": 0.5}, old)["gamma"]
    g1 = at("ExponentialLR", {"final_factor": 0.5}, new)["gamma"]
    assert g1**20 == pytest.approx(g0**10) == pytest.approx(0.5)  # same factor at the end
    d0 = at("InverseTimeDecay", {"final_factor": 0.5}, old)["decay"]
    d1 = at("InverseTimeDecay", {"final_factor": 0.5}, (10, 200))["decay"]
    assert d1 * 2000 == pytest.approx(d0 * 1000)  # same LR at the same fraction
    oc = at("OneCycleLR", CASES["OneCycleLR"][0], new)
    assert oc["total_steps"] == 1000 and oc["max_lr"] == LR
    # a warmup is a fraction of the run: 10% of 1000 steps, then of 2000 steps
    w0 = schedules.resolve(ScheduleConfig("StepLR", {"step_size": 0.3, "gamma": 0.5},
                                          warmup=0.1), *old)
    w1 = schedules.resolve(ScheduleConfig("StepLR", {"step_size": 0.3, "gamma": 0.5},
                                          warmup=0.1), 20, 100)
    assert (w0.warmup["total_iters"], w1.warmup["total_iters"]) == (100, 200)
    assert (w0.kwargs["step_size"], w1.kwargs["step_size"]) == (270, 540)
