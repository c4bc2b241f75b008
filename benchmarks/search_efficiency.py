"""What the search costs and what it misses, replayed on the recorded learning-curve table.

    .venv/bin/python benchmarks/search_efficiency.py [--table benchmarks/data/curves.json.gz]

Prints, from the table alone (no training):
1. the table and its noise (schedules trained twice, on two seeds);
2. short-horizon bias: Spearman's rank correlation between the validation accuracy after
   epoch k and the final one, over all schedules and within each family;
3. Optuna's real pruners fed the recorded curves, the table's schedules in random orders
   (the same orders for every pruner): epochs trained, pruning regret (the share of the
   table's top 5% that is pruned), the best surviving schedule;
4. the surrogate's error on held-out recorded schedules;
5. samplers on that surrogate: the expected best final accuracy against epochs spent.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.replay import (  # noqa: E402
    CurveTable,
    SameFamily,
    Surrogate,
    halving,
    replay_pruner,
    replay_search,
    spearman,
)
from search import config, runner  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "curves.json.gz"
TOP = 0.05  # "the winner": the table's top 5% by final validation accuracy


_CLOCK = [time.perf_counter()]


def section(title: str) -> None:
    now = time.perf_counter()
    if now - _CLOCK[0] > 1:
        print(f"({now - _CLOCK[0]:.0f} s)")
    _CLOCK[0] = now
    print(f"\n## {title}\n")


def table_summary(t: CurveTable) -> None:
    p = t.provenance
    print(f"table: {len(t.rows)} schedules x {t.epochs} epochs ({len(t.repeats)} again on a "
          f"second seed); {t.setting['dataset']}, {t.setting['train_subset']} training images")
    print(f"recorded {p.get('recorded')} on {p.get('device')}; torch {p.get('torch')}, "
          f"optuna {p.get('optuna')}")
    finals = t.finals
    order = np.argsort(-finals)
    top = max(1, round(TOP * len(finals)))
    print(f"final validation accuracy: best {finals.max():.4f}, top-{top} cut "
          f"{finals[order[top - 1]]:.4f}, median {np.median(finals):.4f}")
    fams = sorted({r.family for r in t.rows})
    print(f"families ({len(fams)}): " + ", ".join(
        f"{f} {sum(r.family == f for r in t.rows)}" for f in fams))
    by_trial = {r.trial: r for r in t.rows}
    pairs = [(by_trial[r.repeat_of].final, r.final) for r in t.repeats if r.repeat_of in by_trial]
    if pairs:
        a, b = np.array(pairs).T
        ok = (a > 0.5) & (b > 0.5)  # noise of schedules that train at all
        d = (a - b)[ok]
        print(f"seed noise ({len(pairs)} schedules twice; {int(ok.sum())} above 0.5): final "
              f"accuracy differs by {np.mean(np.abs(d)):.4f} on average (sd of one run "
              f"{np.std(d, ddof=1) / math.sqrt(2):.4f}); rank correlation between seeds "
              f"{spearman(a, b):.3f}")
        good = (a > np.quantile(finals, 0.75)) & (b > np.quantile(finals, 0.75))
        if good.sum() > 2:
            d = (a - b)[good]
            print(f"  of the {int(good.sum())} in the table's top quarter on both seeds: "
                  f"{np.mean(np.abs(d)):.4f} on average (sd of one run "
                  f"{np.std(d, ddof=1) / math.sqrt(2):.4f})")


def horizon_bias(t: CurveTable) -> None:
    curves, finals = t.curves(), t.finals
    top = set(np.argsort(-finals)[: max(1, round(TOP * len(finals)))])
    print("epoch k | Spearman(acc@k, final) all | top-5% schedules in the top half at k"
          " | families with rho < 0.5")
    fams = sorted({r.family for r in t.rows})
    for k in range(t.epochs):
        rho = spearman(curves[:, k], finals)
        half = set(np.argsort(-curves[:, k])[: len(finals) // 2])
        low = []
        for f in fams:
            idx = [i for i, r in enumerate(t.rows) if r.family == f]
            if len(idx) >= 5:
                r = spearman(curves[idx, k], finals[idx])
                if not r >= 0.5:
                    low.append(f"{f} {r:.2f}")
        print(f"{k + 1:7d} | {rho:26.3f} | {len(top & half):2d} of {len(top):<2d}"
              f"{'':34s} | {', '.join(low) or '-'}")
    print("\nwithin each family (Spearman after epoch 1, 2, 4 and 6 with the final):")
    for f in fams:
        idx = [i for i, r in enumerate(t.rows) if r.family == f]
        if len(idx) >= 5:
            ks = [k for k in (0, 1, 3, 5) if k < t.epochs]
            cells = "  ".join(f"{spearman(curves[idx, k], finals[idx]):+.2f}" for k in ks)
            print(f"  {f:28s} n={len(idx):3d}  {cells}")


def _pruners(cfg: config.StudyConfig) -> dict[str, Callable[[], optuna.pruners.BasePruner]]:
    def study_pruner(**kw) -> Callable[[], optuna.pruners.BasePruner]:
        c = dataclasses.replace(cfg, pruner=dataclasses.replace(cfg.pruner, **kw))
        return lambda: runner.make_pruner(c)

    out = {"none": study_pruner(name="none")}
    for w in (1, 2, 4, 6):
        out[f"median, warmup {w}"] = study_pruner(name="median", n_startup_trials=5,
                                                  n_warmup_steps=w)
    for n, w in ((5, 2), (2, 2), (2, 1)):
        out[f"median per family, startup {n}, warmup {w}"] = (
            lambda n=n, w=w: SameFamily(optuna.pruners.MedianPruner(n, w)))
    for m, rf in ((1, 3), (2, 3), (2, 2), (4, 2)):
        out[f"hyperband min {m} rf {rf}"] = study_pruner(name="hyperband", min_resource=m,
                                                         reduction_factor=rf)
    for m, rf in ((1, 3), (2, 2), (2, 3), (4, 2)):
        out[f"successive halving min {m} rf {rf}"] = (
            lambda m=m, rf=rf: optuna.pruners.SuccessiveHalvingPruner(m, rf, 0))
    return out


def pruner_replay(t: CurveTable, cfg: config.StudyConfig, orders: int) -> None:
    finals = t.finals
    n = len(finals)
    top = np.argsort(-finals)[: max(1, round(TOP * n))]
    rng = np.random.default_rng(0)
    perms = [rng.permutation(n) for _ in range(orders)]
    full = n * t.epochs
    print(f"{n} schedules per replay, {orders} orders; unpruned cost {full} epochs; table "
          f"best {finals.max():.4f}")
    print(f"{'pruner':36s} {'epochs':>7s} {'% of full':>9s} {'regret':>7s} "
          f"{'best left':>9s} {'= table best':>12s} {'test acc':>8s}")
    test = np.array([r.test_acc if r.test_acc is not None else math.nan for r in t.rows])
    names = list(_pruners(cfg))
    for name, runs in zip(names, _pmap(_pruner_runs, [(t, cfg, nm, perms) for nm in names]),
                          strict=True):
        epochs = statistics.mean(r.epochs for r in runs)
        regret = statistics.mean(float(r.pruned[top].mean()) for r in runs)
        best = [finals[r.best] for r in runs]
        hit = statistics.mean(float(r.best == int(np.argmax(finals))) for r in runs)
        print(f"{name:36s} {epochs:7.0f} {100 * epochs / full:8.1f}% {100 * regret:6.1f}% "
              f"{statistics.mean(best):9.4f} {100 * hit:11.0f}% "
              f"{np.nanmean([test[r.best] for r in runs]):8.4f}")


def _pmap(fn: Callable, jobs: list) -> list:
    """fn over jobs on every core (fork: the workers inherit the loaded modules)."""
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        return pool.map(fn, jobs, chunksize=1)


def _pruner_runs(job: tuple) -> list:
    t, cfg, name, perms = job
    make = _pruners(cfg)[name]
    return [replay_pruner(t, make(), p) for p in perms]


def _search_runs(job: tuple) -> list:
    """`repeats` replayed searches: the study's sampler or a named one, a pruner by name."""
    t, cfg, k, sampler, pruner, repeats = job
    sur = Surrogate(t.rows, k)
    make_sampler = _samplers(cfg)[sampler]
    make_pruner = _pruners(cfg)[pruner] if pruner != "study" else (
        lambda: runner.make_pruner(cfg))
    return [replay_search(cfg, sur, cfg.trials, lambda s=s: make_sampler(s), make_pruner)
            for s in range(repeats)]


def length_halving(t: CurveTable) -> None:
    rows = [r for r in t.rows if r.short]
    if not rows:
        print("(the table has no shorter runs: `record_curves.py short`)")
        return
    E = t.epochs
    lengths = sorted(set.intersection(*(set(r.short) for r in rows)))
    rungs = [*lengths, E]
    finals = np.array([r.final for r in rows])
    curves = np.stack([r.val_acc for r in rows])
    top = np.argsort(-finals)[: max(1, round(TOP * len(rows)))]
    print(f"{len(rows)} schedules also trained as whole runs of {', '.join(map(str, lengths))} "
          f"epochs (the same schedule resolved for the shorter run)")
    for k in lengths:
        whole = np.array([r.short[k][-1] for r in rows])
        print(f"  Spearman with the {E}-epoch final: after {k} epochs of the {E}-epoch run "
              f"{spearman(curves[:, k - 1], finals):.3f}; a whole {k}-epoch run "
              f"{spearman(whole, finals):.3f}")
    full = len(rows) * E
    print(f"\nsynchronous successive halving, rungs {rungs} epochs; unpruned {full} epochs")
    print(f"{'rungs are':44s} {'rf':>3s} {'epochs':>7s} {'% of full':>9s} {'top 5% kept':>11s} "
          f"{'best left':>9s}")
    for rf in (2, 3):
        trunc = {r: curves[:, r - 1] for r in rungs}
        prev = [0, *rungs[:-1]]
        cases = {
            f"the {E}-epoch run so far (truncated)": (
                trunc, {r: r - p for r, p in zip(rungs, prev, strict=True)}),
            "whole runs of the rung's length": (
                {**{k: np.array([r.short[k][-1] for r in rows]) for k in lengths}, E: finals},
                {r: r for r in rungs}),
        }
        for name, (scores, costs) in cases.items():
            left, spent = halving(scores, costs, rf)
            kept = len(set(top) & set(left.tolist()))
            print(f"{name:44s} {rf:3d} {spent:7.0f} {100 * spent / full:8.1f}% "
                  f"{kept:5d} of {len(top):<3d} {finals[left].max():9.4f}")


def surrogate_error(t: CurveTable) -> int:
    print("nearest-neighbour surrogate, leave-one-out on the table's schedules:")
    best_k, best_err = 1, math.inf
    for k in (1, 3, 5):
        mae, rho = Surrogate(t.rows, k).loo_error()
        print(f"  k={k}: final accuracy off by {mae:.4f} on average; rank correlation {rho:.3f}")
        if mae < best_err:
            best_k, best_err = k, mae
    print(f"  used: k={best_k}")
    return best_k


def _samplers(cfg: config.StudyConfig) -> dict[str, Callable[[int], optuna.samplers.BaseSampler]]:
    def study_sampler(**kw) -> Callable[[int], optuna.samplers.BaseSampler]:
        return lambda seed: runner.make_sampler(dataclasses.replace(
            cfg, seed=seed, sampler=dataclasses.replace(cfg.sampler, **kw)))

    return {
        "the study's": lambda seed: runner.make_sampler(dataclasses.replace(cfg, seed=seed)),
        "random": study_sampler(name="random"),
        "tpe (the studies: multivariate, group)": study_sampler(name="tpe"),
        "tpe multivariate, no group": study_sampler(name="tpe", group=False),
        # a genetic algorithm; parameters outside its fixed space are drawn at random
        "nsga-ii (population 10)": lambda seed: optuna.samplers.NSGAIISampler(
            population_size=10, seed=seed),
    }


def sampler_efficiency(t: CurveTable, cfg: config.StudyConfig, k: int, repeats: int) -> None:
    trials = cfg.trials
    E = cfg.epochs
    budgets = [b for b in (30, 60, 120, trials * E) if b <= trials * E]
    best = t.finals.max()
    print(f"{trials} trials of lr-fashion's space, {repeats} repeats; table best {best:.4f}; "
          f"expected best final accuracy after E epochs spent (mean over repeats)")
    head = " ".join(f"{f'E<={b}':>8s}" for b in budgets)
    print(f"{'sampler':40s} {'pruner':7s} {head} {'epochs':>7s} {'within 0.3':>10s}")
    jobs = [(t, cfg, k, name, pname, repeats) for name in _samplers(cfg) if name != "the study's"
            for pname in ("study", "none") if pname == "study" or "nsga" not in name]
    for (_, _, _, name, pname, _), runs in zip(jobs, _pmap(_search_runs, jobs), strict=True):
        cells = []
        for b in budgets:
            vals = [np.nanmax(np.where(r.epochs <= b, r.best, np.nan), initial=-1)
                    for r in runs]
            cells.append(f"{np.mean(vals):8.4f}")
        spent = statistics.mean(float(r.epochs[-1]) for r in runs)
        near = statistics.mean(float(r.best[-1] >= best - 0.003) for r in runs)
        print(f"{name:40s} {pname:7s} {' '.join(cells)} {spent:7.0f} {100 * near:9.0f}%")


def pruners_in_a_search(t: CurveTable, cfg: config.StudyConfig, k: int, repeats: int) -> None:
    trials, best = cfg.trials, t.finals.max()
    full = trials * cfg.epochs
    print(f"the study's sampler, {trials} trials (its enqueued defaults first), {repeats} "
          f"repeats; table best {best:.4f}")
    print(f"{'pruner':40s} {'best final':>10s} {'epochs':>7s} {'% of full':>9s} "
          f"{'within 0.3':>10s}")
    names = [n for n in _pruners(cfg) if n in (
        "none", "median, warmup 1", "median, warmup 2", "median per family, startup 2, warmup 1",
        "hyperband min 1 rf 3", "hyperband min 2 rf 3", "successive halving min 1 rf 3")]
    jobs = [(t, cfg, k, "the study's", name, repeats) for name in names]
    for name, runs in zip(names, _pmap(_search_runs, jobs), strict=True):
        spent = statistics.mean(float(r.epochs[-1]) for r in runs)
        near = statistics.mean(float(r.best[-1] >= best - 0.003) for r in runs)
        print(f"{name:40s} {np.mean([r.best[-1] for r in runs]):10.4f} {spent:7.0f} "
              f"{100 * spent / full:8.1f}% {100 * near:9.0f}%")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=DATA)
    p.add_argument("--study", default="lr-fashion", help="the study whose settings replay")
    p.add_argument("--orders", type=int, default=50)
    p.add_argument("--repeats", type=int, default=30)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t0 = time.perf_counter()
    t = CurveTable.load(a.table)
    # the study's sampler and pruner as a plain search of the 30 trials these replays were
    # recorded at (a [contest]'s shape stage samples and prunes with the same)
    cfg = dataclasses.replace(config.load_study(a.study), contest=None, trials=30)
    section("The table")
    table_summary(t)
    section("Short-horizon bias")
    horizon_bias(t)
    section(f"Pruners on the recorded curves (study {cfg.name}: {cfg.pruner})")
    pruner_replay(t, cfg, a.orders)
    section("Successive halving over training length")
    length_halving(t)
    section("Surrogate")
    k = surrogate_error(t)
    section("Samplers on the surrogate")
    sampler_efficiency(t, cfg, k, a.repeats)
    section("Pruners in a search of the study's size, on the surrogate")
    pruners_in_a_search(t, cfg, k, a.repeats)
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
