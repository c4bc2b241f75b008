"""The contest's stopping rules measured on the recorded learning-curve table (issue "no
hopeless runs"; benchmarks/RESULTS.md, "Stopping rules: clearly behind, and equivalent").

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/stopping_rules.py

No training. The table (benchmarks/data/curves.json.gz, benchmarks.replay.CurveTable) holds
200 schedules trained 8 epochs, 60 of them also as whole 2- and 4-epoch runs, and 50 trained
again on a second seed (8 epochs only).

1. Seed noise by epoch: the 50 repeated schedules' paired differences at epochs 2, 4 and 8 of
   their 8-epoch runs (a truncated run: the table has no repeated whole 2-epoch run), as one
   run's sd, sd(a - b) / sqrt(2).
2. `stopping.behind` at the first horizon (2 epochs). A contest draws 4 of the 12 families
   that have short runs as its references, each with a "grid" of 3 of its schedules with short
   runs (drawn at random: the table's LRs are not the contest's 3x grid). A reference's best
   at 2 epochs is the best of its grid's whole 2-epoch runs, each + N(0, sd2); the rule runs
   with sigma = 0.0037 (what the contest knows: the final accuracy's seed noise, the default
   noise_sd's measure). Its final standing: the best recorded 8-epoch score of the same grid
   (the table's truth, as benchmarks/contest_replay.py takes it). A stop is false where the
   stopped reference is the best of the four at 8 epochs, and "within noise" where it is less
   than Z_OUT x 0.0037 x sqrt(2) = 0.0086 below that best (one race seed would not put it out).
   sd2 = 0.0037 (the final's noise) and sd2 = the measured epoch-2 noise (step 1).
3. The race's equivalence stop (search.contest.race rule 6) at the table's noise: 8
   contenders, the best schedule of each reference family (whole-run cosine, Constant,
   one-cycle, linear decay as PolynomialLR) and 4 schedules drawn from the table's top 10% (a
   search's finalists), scores = recorded final + N(0, 0.0037), the same draws with and
   without delta (noise hashed from race, contender and seed); the race driven one run at a
   time (the sequential engine's order) to its decision, max_seeds 4.
4. Equivalence at the boundary: every rival exactly delta below the true best (the worst case
   of a TOST), delta 1.5-3 noise sds, 2-8 contenders, max_seeds 2-6: how often a rival delta
   away is declared equivalent, and how often the race stops on an incumbent delta below the
   best (the measured shares tests/test_stopping.py holds the rule to).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.replay import CurveRow, CurveTable  # noqa: E402
from benchmarks.shell import sh as _sh  # noqa: E402
from search.contest import race as racing  # noqa: E402
from search.contest.stopping import Z_BEHIND, behind, behind_by  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "curves.json.gz"
SIGMA = 0.0037  # one run's final seed noise above 0.88 on the table (benchmarks/RESULTS.md)
FIRST = 2  # the first horizon (epochs)
REFERENCE_FAMILIES = ("CosineAnnealingLR", "Constant", "OneCycleLR", "PolynomialLR")


def epoch_noise(table: CurveTable, above: float) -> dict[int, tuple[float, int]]:
    """epoch -> (one run's sd from the repeated schedules' paired differences, pairs), over
    the schedules whose final accuracy (mean of the two seeds) is above `above`: the same
    schedules at every epoch."""
    by = {r.trial: r for r in table.rows}
    pairs = [(by[x.repeat_of], x) for x in table.repeats
             if (by[x.repeat_of].final + x.final) / 2 > above]
    out = {}
    for e in (FIRST, 4, table.epochs):
        d = np.array([a.val_acc[e - 1] - b.val_acc[e - 1] for a, b in pairs])
        out[e] = (float(np.sqrt(np.mean(d**2) / 2)), len(d))
    return out


def behind_at_first(table: CurveTable, sd2: float, contests: int, z: float = Z_BEHIND,
                    seed: int = 0) -> dict[str, float]:
    """Step 2 of the module docstring, over `contests` fixed-seed draws."""
    fams: dict[str, list[CurveRow]] = {}
    for r in table.rows:
        if FIRST in r.short:
            fams.setdefault(r.family, []).append(r)
    names = sorted(f for f, rs in fams.items() if len(rs) >= 3)
    rng = np.random.default_rng(seed)
    noise_cut = racing.Z_OUT * SIGMA * math.sqrt(2)
    stops = best_stopped = near_stopped = contests_best_stopped = 0
    gaps_at_final = []
    for _ in range(contests):
        refs = rng.choice(names, 4, replace=False)
        grids = {f: [fams[f][i] for i in rng.choice(len(fams[f]), 3, replace=False)]
                 for f in refs}
        first = {f: max(float(r.short[FIRST][-1]) + rng.normal(0.0, sd2) for r in g)
                 for f, g in grids.items()}
        final = {f: max(r.final for r in g) for f, g in grids.items()}
        top = max(final.values())
        out = behind(first, SIGMA, z)
        stops += len(out)
        for f in out:
            gaps_at_final.append(top - final[f])
            best_stopped += final[f] == top
            near_stopped += top - final[f] < noise_cut
        contests_best_stopped += any(final[f] == top for f in out)
    return {"stops": stops / contests, "stopped": stops, "best": best_stopped,
            "near": near_stopped, "contests_best": contests_best_stopped / contests,
            "median_gap": float(np.median(gaps_at_final)) if gaps_at_final else math.nan}


def reference_families(table: CurveTable) -> list[str]:
    """The four reference families, every schedule with short runs as the grid: their best at
    2, 4 and 8 epochs (recorded, one seed) and whether `behind` stops them at 2 epochs."""
    lines = []
    first, final = {}, {}
    for f in REFERENCE_FAMILIES:
        g = [r for r in table.rows if r.family == f and FIRST in r.short]
        first[f] = max(float(r.short[FIRST][-1]) for r in g)
        final[f] = max(r.final for r in g)
        lines.append(f"| {f} | {len(g)} | {max(float(r.short[2][-1]) for r in g):.4f} | "
                     f"{max(float(r.short[4][-1]) for r in g):.4f} | {final[f]:.4f} |")
    out = behind(first, SIGMA)
    top = max(final.values())
    return lines + ["", f"stopped at {FIRST} epochs (sigma 0.0037, cut "
                    f"{behind_by(SIGMA):.4f}): " + (", ".join(
                        f"{f} ({g:.4f} behind; {top - final[f]:.4f} below the best at 8 epochs)"
                        for f, g in out.items()) or "none")]


def _noise(race: int, key: str, seed: int, sd: float) -> float:
    h = int(hashlib.sha256(f"{race}|{key}|{seed}".encode()).hexdigest()[:16], 16)
    return float(np.random.default_rng(h).normal(0.0, sd))


def drive(means: dict[str, float], sd: float, max_seeds: int, delta: float, race: int,
          one_at_a_time: bool = True) -> tuple[racing.Race, int]:
    """A race from one seed each to its decision: (the final race, runs after seed 0)."""
    seeds = list(range(max_seeds))
    scores = {k: {0: m + _noise(race, k, 0, sd)} for k, m in means.items()}
    runs = 0
    for _ in range(len(means) * max_seeds + 2):
        r = racing.race([racing.Entry(k, v) for k, v in scores.items()], max_seeds,
                        prior_sd=sd, seeds=seeds, equivalence=delta)
        if r.decided:
            return r, runs
        for key, s in r.due[:1] if one_at_a_time else r.due:
            scores[key][s] = means[key] + _noise(race, key, s, sd)
            runs += 1
    raise RuntimeError("the race never decided")


def table_races(table: CurveTable, deltas: list[float], races: int) -> list[str]:
    """Step 3: per delta, the share of races the equivalence stop decides, the runs after
    seed 0 (against delta 0 on the same draws), the share whose answer is the true best of
    its field, and the answer's mean true loss to that best."""
    finals = table.finals
    cut = float(np.quantile(finals, 0.9))
    top = [r for r in table.rows if r.final >= cut]
    refs = {f: max(r.final for r in table.rows if r.family == f) for f in REFERENCE_FAMILIES}
    lines = []
    base_runs: list[int] = []
    base_right: list[bool] = []
    for delta in [0.0, *deltas]:
        fired = right = 0
        loss = 0.0
        runs: list[int] = []
        for i in range(races):
            rng = random.Random(i)
            means = {f"ref {f}": m for f, m in refs.items()}
            for j, r in enumerate(rng.sample(top, 4)):
                means[f"shape {j}"] = r.final
            r, n = drive(means, SIGMA, 4, delta, i)
            best = max(means.values())
            runs.append(n)
            fired += bool(r.equivalent)
            right += means[r.incumbent] == best
            loss += best - means[r.incumbent]
        if delta == 0.0:
            base_runs = runs
            base_right = right
        saved = np.mean(base_runs) - np.mean(runs)
        lines.append(f"| {delta:g} | {100 * fired / races:.1f}% | {np.mean(runs):.2f} "
                     f"({saved:.2f} fewer) | {100 * right / races:.1f}% "
                     f"({100 * (right - base_right) / races:+.1f} pts) | "
                     f"{100 * loss / races:.3f} |")
    return lines


def boundary(races: int) -> list[str]:
    """Step 4, noise sd 0.004 (as tests/test_stopping.py)."""
    sd = 0.004
    lines = []
    worst = (0.0, 0.0)
    for ms in (2, 4, 6):
        for dsd in (1.5, 2.0, 2.5, 3.0):
            for k in (2, 4, 8):
                delta = dsd * sd
                wrong = lost = 0
                for i in range(races):
                    rng = random.Random(i)
                    vals = [0.9] + [0.9 - delta] * (k - 1)
                    rng.shuffle(vals)
                    means = {f"c{j}": v for j, v in enumerate(vals)}
                    r, _ = drive(means, sd, ms, delta, 10**6 + i, one_at_a_time=False)
                    if r.equivalent:
                        inc = means[r.incumbent]
                        wrong += any(abs(means[c] - inc) >= delta * (1 - 1e-9)
                                     for c in r.equivalent)
                        lost += inc < 0.9 - 1e-12
                worst = (max(worst[0], wrong / races), max(worst[1], lost / races))
                lines.append(f"| {ms} | {dsd:g} | {k} | {100 * wrong / races:.1f}% | "
                             f"{100 * lost / races:.1f}% |")
    lines.append(f"\nworst: a rival delta away declared equivalent in {100 * worst[0]:.1f}% of "
                 f"races, the race stopped on an incumbent delta below the best in "
                 f"{100 * worst[1]:.1f}%")
    return lines


def main() -> int:
    global FIRST
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first", type=int, default=FIRST, choices=(2, 4),
                    help="the horizon the rule stops at (epochs; the table has 2 and 4)")
    FIRST = ap.parse_args().first
    t0 = time.perf_counter()
    print("# Stopping rules on the recorded table\n")
    print(f"- date: {_sh('date -u')}")
    print(f"- load: {_sh('uptime')}")
    table = CurveTable.load(DATA)
    print("\n## 1. Seed noise by epoch (repeated schedules, truncated 8-epoch runs)\n")
    for above in (0.88, 0.85):
        shown = epoch_noise(table, above)
        print(f"- schedules with final accuracy > {above}: one run's sd " + ", ".join(
            f"{sd:.4f} at epoch {e}" for e, (sd, _) in shown.items())
            + f" ({shown[FIRST][1]} pairs)")
    noise = epoch_noise(table, 0.85)  # the schedules with short runs end near 0.85-0.90
    print(f"\n## 2. `behind` at {FIRST} epochs (z = {Z_BEHIND:g}, sigma {SIGMA}, cut "
          f"{behind_by(SIGMA):.4f})\n")
    print("| reference family | schedules with short runs | best at 2 | best at 4 | best at 8 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for line in reference_families(table):
        print(line)
    contests = 20000
    print(f"\n{contests} drawn contests (4 of the families with short runs, 3 schedules each):"
          "\n")
    print(f"| noise at {FIRST} epochs | z | stops per contest | stopped refs that are best at 8 | "
          "within noise (< 0.0086) of the best at 8 | contests whose 8-epoch best is stopped "
          "| median gap at 8 of a stopped ref |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for sd2, z in ((0.0, Z_BEHIND), (SIGMA, Z_BEHIND), (noise[FIRST][0], Z_BEHIND),
                   (0.0, 6.0), (noise[FIRST][0], 6.0)):
        m = behind_at_first(table, sd2, contests, z)
        print(f"| {sd2:.4f} | {z:g} | {m['stops']:.2f} | {m['best']} of {m['stopped']} "
              f"({100 * m['best'] / max(1, m['stopped']):.1f}%) | {m['near']} "
              f"({100 * m['near'] / max(1, m['stopped']):.1f}%) | "
              f"{100 * m['contests_best']:.1f}% | {m['median_gap']:.4f} |")
    races = 1000
    print(f"\n## 3. The equivalence stop on the table's races ({races} races, sigma {SIGMA}, "
          "max_seeds 4, one run at a time)\n")
    need = 2 * (racing.Z_OUT * SIGMA / 0.001) ** 2
    print(f"TOST at gap 0 needs margin(sigma, n) < delta: for delta 0.001, n > 2 (Z_OUT x "
          f"sigma / delta)^2 = {need:.1f} shared seeds; at 4 seeds delta must exceed "
          f"margin({SIGMA}, 4) = {racing.margin(SIGMA, 4):.4f}.\n")
    print("| delta | equivalence decides | runs after seed 0 | answer is the field's true "
          "best | mean loss to the field's best (points) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for line in table_races(table, [0.001, 0.0025, 0.005, 0.0075, 0.01], races):
        print(line)
    print("\n## 4. Equivalence at the boundary (rivals exactly delta below; sd 0.004; "
          "1000 races a row, all due runs at once)\n")
    print("| max_seeds | delta (sds) | contenders | a rival delta away declared equivalent | "
          "stopped on an incumbent delta below the best |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for line in boundary(1000):
        print(line)
    print(f"\n- {time.perf_counter() - t0:.0f} s in all; load after: {_sh('uptime')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
