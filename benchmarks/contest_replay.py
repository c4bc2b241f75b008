"""The contest against today's default search, replayed on the recorded learning-curve table.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/contest_replay.py [--repeats R]

No training: every trial is answered by the table's surrogate (benchmarks.replay.Surrogate, k=1:
the recorded curve of the nearest recorded schedule of the same family and warmup choice) plus
seed noise. A schedule's TRUE score is the surrogate's final validation accuracy; a run on seed
s scores true + e, e ~ N(0, 0.0037) drawn from (repeat, schedule, optimizer, seed) by a hash:
the same run repeats its score within a repeat, two seeds differ, and every repeat draws a new
world. Each epoch reports the surrogate's curve shifted by the same e, so the pruner prunes
shapes as it would in the real search.

Both protocols run the project's own code: the study made by engine.claim.join (an in-memory
Optuna storage), runner.make_objective with this module's `surrogate_objective` as the study's
objective (runner.Recorder reports, prunes, records), engine.sequential.loop claiming trials
through engine.claim.Claimer, and the real claim policies:

1. today's default: lr-fashion without its [contest] table, 30 trials (its file before the
   contest), TPE, Hyperband(1, 3), the two enqueued defaults; claim policy engine.claim.Count;
   the answer is the best single trial (study.best_trial, by its noisy score);
2. the contest: lr-fashion as shipped, claim policy contest.policy.ContestPolicy; the answer
   is contest.standing's leader. Schedule-free SGD is not in the table, so this objective
   says it trains no schedule-free optimizer (no TRAINS_OPTIMIZERS: contenders.unavailable
   leaves that reference out) and the contest's `trials` drops by that reference's grid (3
   runs), so that the race keeps the runs it has in the real study;
3. today's default given the contest's epochs: the same search, trials claimed until the
   epochs this repeat's contest spent are spent (the last trial may run past by < 8 epochs).

Per protocol, over R repeats (repeat r: sampler seed r, noise world r, the same for all
three): epochs trained (a pruned trial counts the epochs it trained), the expected TRUE score
of the answer with a 95% t interval, how often the answer is in the table's top 5% by true
score, what it claims (its noisy score, or the race mean) minus its true score, and for the
contest how often the answer is a tuned reference and the race was decided, the epochs of each
stage, the race's pooled noise estimate, and how often its leader is the truly best of its
contenders. Today's default and the contest are also compared paired, repeat by repeat.

Then the racing rule alone (contest.race.race, driven to its decision): 8 contenders, scores =
known mean + N(0, sd), prior_sd = sd, max_seeds 4, every contender starting with one seed (as
in the contest); the true best 2 or 3 sds above the second best; the share of 2,000 fixed-seed
races whose final incumbent is the true best.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.replay import CurveTable, Surrogate  # noqa: E402
from search import config, record, runner, schedules, space  # noqa: E402
from search.contest import race as racing  # noqa: E402
from search.contest.contenders import contender_key  # noqa: E402
from search.contest.policy import ContestPolicy  # noqa: E402
from search.contest.standing import standing  # noqa: E402
from search.engine.claim import Count, join  # noqa: E402
from search.engine.sequential import loop  # noqa: E402
from search.engine.signals import Signals  # noqa: E402
from search.stats import mean_std, paired, t_quantile  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "curves.json.gz"
NOISE_SD = 0.0037  # one run's seed noise above 0.88 on the table (benchmarks/RESULTS.md)
TOP = 0.05  # the table's top 5% by final validation accuracy
DEFAULT_TRIALS = 30  # lr-fashion's `trials` before the contest
SCHEDULEFREE_GRID = len(config.ContestConfig.SHAPE_STEPS)  # runs of the reference left out


class World:
    """The surrogate's truth and the seed noise of one repeat."""

    def __init__(self, table: CurveTable, sd: float = NOISE_SD, k: int = 1) -> None:
        self.surrogate, self.epochs, self.sd, self.repeat = Surrogate(table.rows, k), \
            table.epochs, sd, 0
        self.dists: dict[str, BaseDistribution] = {}
        for r in table.rows:
            self.dists.update(r.distributions)
        self._curves: dict[str, np.ndarray] = {}

    def params(self, s: schedules.ScheduleConfig) -> dict[str, Any]:
        """The budget-free schedule as the table's Optuna params (inside their ranges: the
        cosine reference's eta_min 0 is the table's lowest eta_min_factor, 1e-4)."""
        fam = schedules.family(s.family)
        out: dict[str, Any] = {"scheduler": s.family}
        for prm in fam.params:
            name = space.param_name(s.family, prm.name)
            if prm.name in s.params and name in self.dists:
                v = s.params[prm.name]
                out[name] = self._clip(round(v * self.epochs) if prm.kind == "epochs" else v,
                                       name)
        if fam.warmup_ok:
            out["warmup"] = s.warmup > 0
            if s.warmup > 0:
                out["warmup_epochs"] = self._clip(s.warmup * self.epochs, "warmup_epochs")
        out["lr"] = self._clip(s.lr, "lr")
        return out

    def _clip(self, v: Any, name: str) -> Any:
        d = self.dists[name]
        return v if not hasattr(d, "low") else type(v)(min(max(v, d.low), d.high))

    def curve(self, s: schedules.ScheduleConfig) -> np.ndarray:
        key = json.dumps(s.to_dict(), sort_keys=True)
        if key not in self._curves:
            self._curves[key] = self.surrogate.curve(self.params(s), self.dists)
        return self._curves[key]

    def true(self, s: schedules.ScheduleConfig | dict[str, Any]) -> float:
        if isinstance(s, dict):
            s = schedules.ScheduleConfig.from_dict(s)
        return float(self.curve(s)[-1])

    def noise(self, s: schedules.ScheduleConfig, optimizer: str, seed: int) -> float:
        what = f"{self.repeat}|{contender_key(s, optimizer)}|{seed}"
        h = int(hashlib.sha256(what.encode()).hexdigest()[:16], 16)
        return float(np.random.default_rng(h).normal(0.0, self.sd))


_WORLD: list[World] = []  # the world `surrogate_objective` answers from


def surrogate_objective(cfg: Any, schedule: schedules.ScheduleConfig, report: Any) -> float:
    """The study's objective (cfg, schedule, report), trained on the surrogate: what
    objectives.classify.train reports, epoch by epoch, without training."""
    w = _WORLD[0]
    if getattr(cfg, "optimizer", "sgd") != "sgd":
        raise RuntimeError(f"the table has no {cfg.optimizer} runs")
    steps = math.ceil(cfg.train_subset * (1 - cfg.val_fraction) / cfg.batch_size)
    built = schedules.resolve(schedule, cfg.epochs, steps)
    if schedule.listener is not None:  # what schedules.build tells the Recorder
        schedule.listener(built)
    e = w.noise(schedule, "", cfg.seed)
    curve = w.curve(schedule) + e
    for k, acc in enumerate(curve):
        report(k, 1.0 - float(acc), float(acc), schedule.lr)
    return float(curve[-1])


class EpochBudget(Count):
    """Count's claim policy, bounded by epochs trained instead of trials."""

    def __init__(self, epochs: int) -> None:
        super().__init__(10**6)
        self.epochs = epochs

    def __call__(self, study: optuna.Study, live: bool) -> str | None:
        return runner.DONE if _epochs(study) >= self.epochs else None


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=record.FINISHED)


def _epochs(study: optuna.Study) -> int:
    """Epochs trained: every finished trial's reports (a pruned one's up to its pruning)."""
    return sum(len(t.intermediate_values) for t in _finished(study))


def _search(cfg: config.StudyConfig, policy: Any) -> optuna.Study:
    study, _ = join(cfg, optuna.storages.InMemoryStorage())
    loop(study, runner.make_objective(cfg), policy, Signals(), cfg.workers.grace_period)
    return study


@dataclasses.dataclass
class Answer:
    epochs: int
    true: float
    claimed: float
    trials: int
    reference: bool = False
    decided: bool = False
    label: str = ""
    stages: dict[str, int] = dataclasses.field(default_factory=dict)  # contest: epochs
    sigma: float = math.nan  # contest: the race's pooled seed noise
    best_of_field: bool = False  # contest: the leader is its truly best contender


def plain(cfg: config.StudyConfig, world: World, policy: Any) -> Answer:
    study = _search(cfg, policy)
    best = study.best_trial
    return Answer(_epochs(study), world.true(schedules.recorded(best).to_dict()),
                  float(best.value), len(_finished(study)), label=best.params["scheduler"])


def contest(cfg: config.StudyConfig, world: World, target: int) -> Answer:
    study = _search(cfg, ContestPolicy(cfg, target))
    st = standing(study)
    lead = st.leader
    stages: dict[str, int] = {}
    for t in _finished(study):
        stage = record.of(t).stage
        stage = stage if stage is not None else "shape"
        stages[stage] = stages.get(stage, 0) + len(t.intermediate_values)
    true = world.true(lead.schedule)
    field = max(world.true(c.schedule) for c in st.state.contenders)
    return Answer(_epochs(study), true, lead.mean, len(_finished(study)),
                  lead.role == "reference", st.decided, lead.label if lead.role ==
                  "reference" else f"searched {lead.schedule['family']}", stages,
                  st.state.race.sigma, true >= field)


def studies(table: CurveTable) -> tuple[config.StudyConfig, config.StudyConfig, int]:
    """(today's default, the contest, the contest's trials) with the surrogate objective."""
    cfg = config.load_study("lr-fashion")
    if cfg.contest is None or cfg.epochs != table.epochs:
        raise SystemExit("lr-fashion must have a [contest] table and the table's epochs")
    obj = f"{__name__}:surrogate_objective"  # importlib finds this very module (even __main__)
    cfg = dataclasses.replace(cfg, objective=obj)
    default = dataclasses.replace(cfg, contest=None, trials=DEFAULT_TRIALS)
    return default, cfg, cfg.trials - SCHEDULEFREE_GRID


def compare(table: CurveTable, repeats: int) -> None:
    world = World(table)
    _WORLD[:] = [world]
    default, cont, target = studies(table)
    finals = table.finals
    cut = float(np.sort(finals)[::-1][max(1, round(TOP * len(finals))) - 1])
    rows: dict[str, list[Answer]] = {"default": [], "contest": [], "budget": []}
    t0 = time.perf_counter()
    for r in range(repeats):
        world.repeat = r
        rows["default"].append(plain(dataclasses.replace(default, seed=r), world,
                                     Count(default.trials)))
        c = contest(dataclasses.replace(cont, seed=r), world, target)
        rows["contest"].append(c)
        rows["budget"].append(plain(dataclasses.replace(default, seed=r), world,
                                    EpochBudget(c.epochs)))
    secs = time.perf_counter() - t0
    print(f"table: {len(table.rows)} schedules x {table.epochs} epochs; best {finals.max():.4f}, "
          f"top-5% cut {cut:.4f} (the {round(TOP * len(finals))}th best), median "
          f"{np.median(finals):.4f}; seed noise sd {NOISE_SD}; surrogate k=1")
    print(f"{repeats} repeats ({secs:.0f} s, {secs / repeats:.1f} s per repeat of all three); "
          f"contest: `trials` {target} ({cont.trials} less the {SCHEDULEFREE_GRID} runs of "
          f"schedule-free SGD's grid), {cont.contest}\n")
    names = {"default": f"today's default ({DEFAULT_TRIALS} trials)",
             "contest": f"contest ({target} trials)",
             "budget": "today's default at the contest's epochs"}
    q = t_quantile(0.975, repeats - 1)
    print("| protocol | trials | epochs | expected true score [95%] | in top 5% | "
          "claimed - true | answer is a tuned reference | race decided |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, name in names.items():
        a = rows[key]
        m, sd = mean_std([x.true for x in a])
        half = q * sd / math.sqrt(len(a))
        top = np.mean([x.true >= cut for x in a])
        opt = np.mean([x.claimed - x.true for x in a])
        ref = f"{100 * np.mean([x.reference for x in a]):.0f}%" if key == "contest" else "-"
        dec = f"{100 * np.mean([x.decided for x in a]):.0f}%" if key == "contest" else "-"
        print(f"| {name} | {np.mean([x.trials for x in a]):.1f} | "
              f"{np.mean([x.epochs for x in a]):.0f} | {m:.4f} [{m - half:.4f}, {m + half:.4f}]"
              f" | {100 * top:.0f}% | {opt:+.4f} | {ref} | {dec} |")
    stages = {k: np.mean([x.stages.get(k, 0) for x in rows["contest"]])
              for k in ("reference", "shape", "race")}
    print(f"\ncontest epochs by stage: reference LR grids {stages['reference']:.0f}, shapes "
          f"{stages['shape']:.0f}, race {stages['race']:.0f}; the race's pooled seed noise "
          f"{np.mean([x.sigma for x in rows['contest']]):.4f} (true {NOISE_SD}); its leader is "
          f"the truly best of its contenders in "
          f"{100 * np.mean([x.best_of_field for x in rows['contest']]):.0f}% of repeats")
    print("\npaired over repeats (same sampler seed and noise world), true score:\n")
    print("| comparison | mean difference [95%] | p |")
    print("| --- | --- | --- |")
    for a, b in (("contest", "default"), ("contest", "budget"), ("budget", "default")):
        p = paired({i: x.true for i, x in enumerate(rows[a])},
                   {i: x.true for i, x in enumerate(rows[b])})
        print(f"| {names[a]} - {names[b]} | {p.margin:+.4f} [{p.low:+.4f}, {p.high:+.4f}] | "
              f"{p.p_value:.2g} |")
    print("\nthe answers (share of repeats):\n")
    for key in ("default", "contest"):
        counts: dict[str, int] = {}
        for x in rows[key]:
            counts[x.label] = counts.get(x.label, 0) + 1
        text = ", ".join(f"{k} {100 * v / repeats:.0f}%" for k, v in
                         sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"- {names[key]}: {text}")


def race_once(means: list[float], sd: float, max_seeds: int, rng: random.Random,
              one_at_a_time: bool = True) -> tuple[str, int]:
    """A race driven to its decision from one seed each: (its incumbent, runs after seed 0).
    One at a time: the due run first, then the race again (the sequential engine's order);
    else every due run at once (workers that take them all)."""
    seeds = list(range(max_seeds))
    scores = {f"c{i}": {seeds[0]: m + rng.gauss(0.0, sd)} for i, m in enumerate(means)}
    runs = 0
    for _ in range(len(means) * max_seeds + 1):
        r = racing.race([racing.Entry(k, v) for k, v in scores.items()], max_seeds,
                        prior_sd=sd, seeds=seeds)
        if r.decided:
            return r.incumbent or "", runs
        for key, seed in r.due[:1] if one_at_a_time else r.due:
            scores[key][seed] = means[int(key[1:])] + rng.gauss(0.0, sd)
            runs += 1
    raise RuntimeError("the race never decided")


def race_share(gap_sds: float, layout: str = "spread", one_at_a_time: bool = True,
               races: int = 2000, n: int = 8, max_seeds: int = 4, sd: float = NOISE_SD,
               seed: int = 0) -> tuple[float, float]:
    """(share of races whose final incumbent is the true best, mean runs after seed 0).

    The true best is `gap_sds` sds above the second best; "spread": the others 0.5 sd apart
    below the second (tests/test_race.py's layout); "bunched": all of them at the second's
    mean. Race i draws from random.Random(seed * 1_000_003 + i) and places the best at a
    random position (ties go to the earlier contender)."""
    best = 0.90
    below = [best - gap_sds * sd - (0.5 * sd * i if layout == "spread" else 0.0)
             for i in range(n - 1)]
    wins, runs = 0, 0
    for i in range(races):
        rng = random.Random(seed * 1_000_003 + i)
        means = [best, *below]
        order = list(range(n))
        rng.shuffle(order)
        got, k = race_once([means[j] for j in order], sd, max_seeds, rng, one_at_a_time)
        wins += got == f"c{order.index(0)}"
        runs += k
    return wins / races, runs / races


def race_table(races: int) -> None:
    print(f"8 contenders, max_seeds 4, prior_sd = noise sd = {NOISE_SD}; {races} fixed-seed "
          "races per row\n")
    print("| gap (sds) | the others | driven | final incumbent is the true best | "
          "runs after seed 0 |")
    print("| --- | --- | --- | --- | --- |")
    for gap in (2.0, 3.0):
        for layout in ("spread", "bunched"):
            for one in (True, False):
                share, runs = race_share(gap, layout, one, races)
                print(f"| {gap:g} | {layout} | {'one at a time' if one else 'all due at once'}"
                      f" | {100 * share:.1f}% | {runs:.1f} |")
    print("\nspread: the others 0.5 sd apart below the second best (tests/test_race.py); "
          "bunched: all 7 at the second best's mean. One at a time: the sequential engine "
          "(ContestPolicy enqueues the first due run, then derives the race again).")


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def header() -> None:
    import torch

    print("# The contest against today's default search, on the recorded table\n")
    print(f"- date: {_sh('date -u')}")
    cpu = _sh("lscpu | grep 'Model name'").split(":", 1)[-1].strip()
    print(f"- cpu: {cpu}")
    print(f"- torch {torch.__version__}, optuna {optuna.__version__}, python "
          f"{sys.version.split()[0]}")
    print(f"- load average before: {_sh('cat /proc/loadavg')}")


def _section(title: str, body: Callable[[], None]) -> None:
    print(f"\n## {title}\n")
    body()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=DATA)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--races", type=int, default=2000)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t0 = time.perf_counter()
    header()
    table = CurveTable.load(a.table)
    _section("Protocols at equal epochs (surrogate + seed noise)",
             lambda: compare(table, a.repeats))
    _section("The racing rule alone: does a race find a clear best?",
             lambda: race_table(a.races))
    print(f"\n- load average after: {_sh('cat /proc/loadavg')}")
    print(f"- {time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
