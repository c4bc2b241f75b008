"""Each family's LR sequence against torch's documented closed forms, at the right granularity."""

from __future__ import annotations

import math
from bisect import bisect_right

import pytest
import torch

from search import schedules
from search.schedules import ScheduleConfig

E, S, LR = 12, 5, 0.2  # epochs, optimizer steps per epoch, base LR


def simulate(cfg: ScheduleConfig, losses=None, epochs=E, steps=S):
    """LR applied at every optimizer step, stepping the scheduler as `Built` says."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=cfg.lr, momentum=0.9)
    built = schedules.build(opt, cfg, steps, epochs)
    applied = []
    for e in range(epochs):
        for _ in range(steps):
            applied.append(opt.param_groups[0]["lr"])
            opt.step()
            built.after_batch()
        built.after_epoch(losses[e] if losses else 1.0)
    return built, applied


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
        {"step_size": 3, "gamma": 0.5},
        # the formula of the source notes: base_lr * gamma ** (epoch // step_size)
        lambda kw: per_epoch(lambda e: LR * kw["gamma"] ** (e // kw["step_size"])),
    ),
    "MultiStepLR": (
        {"n_milestones": 2, "milestone_0": 0.3, "milestone_1": 0.7, "gamma": 0.3},
        lambda kw: per_epoch(lambda e: LR * kw["gamma"] ** bisect_right(kw["milestones"], e)),
    ),
    "ExponentialLR": (
        {"final_factor": 0.01},
        lambda kw: per_epoch(lambda e: LR * kw["gamma"] ** e),
    ),
    "CosineAnnealingLR": (
        {"T_max": 8, "eta_min_factor": 0.01},
        lambda kw: per_epoch(lambda e: cosine(LR, kw["eta_min"], e, kw["T_max"])),
    ),
    "OneCycleLR": (
        {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
        lambda kw: [one_cycle(kw, it) for it in range(E * S)],
    ),
    "CosineAnnealingWarmRestarts": (
        {"T_0": 3, "T_mult": 2, "eta_min_factor": 0.01},
        lambda kw: per_epoch(lambda e: warm_restarts(kw, e)),
    ),
    "PolynomialLR": (
        {"power": 2.0},
        lambda kw: per_epoch(lambda e: LR * (1 - min(e, kw["total_iters"]) / kw["total_iters"])
                             ** kw["power"]),
    ),
    "InverseTimeDecay": (
        {"decay": 0.05},
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
    _, applied = simulate(ScheduleConfig("StepLR", {"step_size": 1, "gamma": 0.5}, lr=LR))
    for e in range(E):
        assert len(set(applied[e * S:(e + 1) * S])) == 1


def test_reduce_on_plateau_steps_with_the_validation_loss():
    # the loss improves for 3 epochs, then stalls: after `patience` bad epochs the LR drops
    losses = [3.0, 2.0, 1.0] + [1.0] * (E - 3)
    built, applied = simulate(
        ScheduleConfig("ReduceLROnPlateau", {"factor": 0.5, "patience": 2}, lr=LR), losses
    )
    assert built.interval == schedules.PLATEAU
    epoch_lrs = applied[::S]
    # epochs 3, 4, 5 are bad; after epoch 5 (3 > patience) the LR halves; again after 8, 11
    assert epoch_lrs == pytest.approx([LR] * 6 + [LR / 2] * 3 + [LR / 4] * 3)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "ExponentialLR", "Constant"])
def test_added_warmup_then_the_family_per_iteration(name):
    params = CASES[name][0]
    built, applied = simulate(ScheduleConfig(name, params, lr=LR, warmup_epochs=1))
    w = built.warmup["total_iters"]
    assert (built.interval, w) == (schedules.ITERATION, S)
    assert applied[:w] == pytest.approx([warm(it, w) for it in range(w)])
    # after the warmup the family runs from its start, its epoch counts now in iterations
    _, plain = simulate(ScheduleConfig(name, params, lr=LR))
    assert applied[w::S] == pytest.approx(plain[: E * S - w : S], rel=1e-6)


def test_plateau_and_own_warmup_families_get_no_added_warmup():
    for name in ("ReduceLROnPlateau", "OneCycleLR", "WarmupCosine"):
        assert not schedules.family(name).warmup_ok
    built = schedules.resolve(ScheduleConfig("OneCycleLR", CASES["OneCycleLR"][0],
                                             warmup_epochs=2), E, S)
    assert built.warmup is None


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(ValueError, match="StepLR.*but got 'Steplr'"):
        schedules.family("Steplr")


def test_listener_receives_the_built_schedule():
    seen = []
    cfg = ScheduleConfig("StepLR", {"step_size": 2, "gamma": 0.1}, listener=seen.append)
    simulate(cfg)
    assert seen[0].kwargs == {"step_size": 2, "gamma": 0.1}
    assert (seen[0].epochs, seen[0].steps_per_epoch) == (E, S)


def test_rescale_keeps_the_shape_over_the_run():
    old, new = (10, 100), (20, 50)
    units = schedules.units_of("StepLR", False)
    assert schedules.rescale({"step_size": 3, "gamma": 0.5}, units, old, new) == {
        "step_size": 6, "gamma": 0.5}
    ms = schedules.rescale({"milestones": [3, 7], "gamma": 0.1},
                           schedules.units_of("MultiStepLR", False), old, new)
    assert ms["milestones"] == [6, 14]
    g = schedules.rescale({"gamma": 0.5}, schedules.units_of("ExponentialLR", False), old, new)
    assert g["gamma"] ** 20 == pytest.approx(0.5**10)  # same factor at the end of the run
    d = schedules.rescale({"decay": 1e-3}, schedules.units_of("InverseTimeDecay", False), old,
                          (10, 200))
    assert d["decay"] * 2000 == pytest.approx(1e-3 * 1000)  # same LR at the same fraction
    oc = schedules.rescale({"total_steps": 1000, "max_lr": 0.1},
                           schedules.units_of("OneCycleLR", False), old, new)
    assert oc == {"total_steps": 1000, "max_lr": 0.1}
    warmed = schedules.units_of("StepLR", True)
    assert schedules.rescale({"step_size": 300}, warmed, old, new) == {"step_size": 300}
