"""The contest against today's default search, replayed on the recorded learning-curve table.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/contest_replay.py [--repeats R]
        [--races N (0: no racing-rule table)] [--protocols default,contest,budget] [--out F]
    .venv/bin/python benchmarks/contest_replay.py --pair NEW.json OLD.json

The module runs against the code before the cost issue (e697a78) as well as after it: it reads
no setting or field that only one of them has (`per_step`, `equivalence`, `state.behind` are
read where present).

No training: every trial is answered by the table's surrogate (benchmarks.replay.Surrogate, k=1:
the recorded curve of the nearest recorded schedule of the same family and warmup choice) plus
seed noise. A run of the table's length (8 epochs) gets the nearest row's 8-epoch curve; a
run of h < 8 epochs (a contest horizon, `cfg.epochs` = h) gets the whole h-epoch run of the
nearest row among those the table trained at h (`Row.short[h]`: 60 of the 200 schedules, at 2
and 4 epochs), so it reports h epochs and counts h. (Before this, every run reported the
8-epoch curve whatever its length: a 2- or 4-epoch horizon run was counted and scored as an
8-epoch run.) Few rows have short runs: whole-run cosine and constant without warmup have one
each, so at 2 and 4 epochs their score is the same for every LR (only the noise differs), and
their grids there pick an LR by noise alone.
A schedule's TRUE score is the surrogate's final validation accuracy at 8 epochs; a run on seed
s scores true + e, e ~ N(0, 0.0037) drawn from (repeat, schedule, optimizer, seed) by a hash:
the same run repeats its score within a repeat, two seeds differ, and every repeat draws a new
world (the same e at every length: the key is the budget-free schedule, without `per_step`,
so the old and the new code draw the same noise for the same run). Each epoch reports the
surrogate's curve shifted by the same e, so the pruner prunes shapes as it would in the real
search. The table's runs stepped their schedules per epoch: a schedule stepped per optimizer
step (the new code's references) is answered as the same schedule stepped per epoch.

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
stage (the references' by horizon), the race's pooled noise estimate, how often its leader is
the truly best of its contenders, and the references stopped as clearly behind (code that
stops them: state.behind) with the false stops: a stopped reference that is the truly best
reference at 8 epochs (each reference's true best over a dense LR grid in the table's range).
Today's default and the contest are also compared paired, repeat by repeat. `--out FILE`
writes every repeat's answers as JSON; `--pair NEW OLD` compares two such files (say, two
versions of the code) repeat by repeat and exits.

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
from benchmarks.shell import sh as _sh  # noqa: E402
from search import config, record, runner, schedules, space  # noqa: E402
from search.contest import race as racing  # noqa: E402
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
        # h -> the surrogate of the whole h-epoch runs: the rows the table trained at h, each
        # answering with its h-epoch curve (same nearest-neighbour rule, same k)
        lengths = sorted({h for r in table.rows for h in r.short if h < table.epochs})
        self.short = {h: Surrogate([dataclasses.replace(r, val_acc=r.short[h])
                                    for r in table.rows if h in r.short], k) for h in lengths}
        self.dists: dict[str, BaseDistribution] = {}
        for r in table.rows:
            self.dists.update(r.distributions)
        self._curves: dict[tuple[int, str], np.ndarray] = {}

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

    def curve(self, s: schedules.ScheduleConfig, epochs: int | None = None) -> np.ndarray:
        """The surrogate's curve of `s` as a whole run of `epochs` (the table's by default)."""
        h = self.epochs if epochs is None else int(epochs)
        if h != self.epochs and h not in self.short:
            raise RuntimeError(f"the table has no whole {h}-epoch runs "
                               f"(it has {self.epochs} and {sorted(self.short)})")
        key = (h, json.dumps(_budget_free(s), sort_keys=True))
        if key not in self._curves:
            model = self.surrogate if h == self.epochs else self.short[h]
            self._curves[key] = model.curve(self.params(s), self.dists)
        return self._curves[key]

    def true(self, s: schedules.ScheduleConfig | dict[str, Any]) -> float:
        if isinstance(s, dict):
            s = schedules.ScheduleConfig.from_dict(s)
        return float(self.curve(s)[-1])

    def noise(self, s: schedules.ScheduleConfig, optimizer: str, seed: int) -> float:
        what = f"{self.repeat}|{_noise_key(s, optimizer)}|{seed}"
        h = int(hashlib.sha256(what.encode()).hexdigest()[:16], 16)
        return float(np.random.default_rng(h).normal(0.0, self.sd))


def _budget_free(s: schedules.ScheduleConfig) -> dict[str, Any]:
    """The schedule's dict without `per_step` (new code only): the table's runs stepped per
    epoch, so how a schedule steps changes neither its curve nor its noise here."""
    d = s.to_dict()
    d.pop("per_step", None)
    return d


def _noise_key(s: schedules.ScheduleConfig, optimizer: str) -> str:
    """contender_key of the schedule without `per_step` (the old code's contender_key)."""
    what = {**_budget_free(s), "optimizer": optimizer or "sgd"}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


_WORLD: list[World] = []  # the world `surrogate_objective` answers from


def surrogate_objective(cfg: Any, schedule: schedules.ScheduleConfig, report: Any) -> float:
    """The study's objective (cfg, schedule, report), trained on the surrogate: what
    objectives.classify.train reports, epoch by epoch, without training. A run of
    `cfg.epochs` epochs reports the surrogate's whole run of that length (World.curve)."""
    w = _WORLD[0]
    if getattr(cfg, "optimizer", "sgd") != "sgd":
        raise RuntimeError(f"the table has no {cfg.optimizer} runs")
    steps = math.ceil(cfg.train_subset * (1 - cfg.val_fraction) / cfg.batch_size)
    built = schedules.resolve(schedule, cfg.epochs, steps)
    if schedule.listener is not None:  # what schedules.build tells the Recorder
        schedule.listener(built)
    e = w.noise(schedule, "", cfg.seed)
    curve = w.curve(schedule, cfg.epochs) + e
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
    stopped: list[str] = dataclasses.field(default_factory=list)  # contest: references
    # stopped as clearly behind (no grid at the search's length, no race seat)
    false_stop: bool = False  # contest: one of them is the truly best reference at 8 epochs
    best_reference: str = ""  # contest: the truly best reference at 8 epochs (its label)
    references: dict[str, float] = dataclasses.field(default_factory=dict)  # contest: each
    # reference's true best at 8 epochs over the LR range
    tuned: dict[str, float] = dataclasses.field(default_factory=dict)  # contest: each
    # reference tuned at 8 epochs, the true score of its grid's best LR (its LR tuning loss
    # is `references` minus this)


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
        r = record.of(t)
        stage = r.stage if r.stage is not None else "shape"
        n = len(t.intermediate_values)
        stages[stage] = stages.get(stage, 0) + n
        if stage == "reference":  # by horizon: the epochs each run trained
            h = f"reference {n}"
            stages[h] = stages.get(h, 0) + n
    true = world.true(lead.schedule)
    field = max(world.true(c.schedule) for c in st.state.contenders)
    stopped, refs, tuned = _stopped(st.state, world)
    best_ref = max(refs, key=lambda k: refs[k]) if refs else ""
    return Answer(_epochs(study), true, lead.mean, len(_finished(study)),
                  lead.role == "reference", st.decided, lead.label if lead.role ==
                  "reference" else f"searched {lead.schedule['family']}", stages,
                  st.state.race.sigma, true >= field, sorted(stopped), best_ref in stopped,
                  best_ref, refs, tuned)


LRS = np.geomspace(0.01, 6.0, 241)  # the study's LR range, 40 points per decade


def _stopped(state: Any, world: World
             ) -> tuple[set[str], dict[str, float], dict[str, float]]:
    """(the labels of the references stopped as clearly behind, {label: the reference's true
    best at 8 epochs over LRS}, {label: the true score of its grid's best at 8 epochs}).
    Stopped: in state.behind (the new code's stopping rule), or tuned at shorter horizons only
    once the race began (either code); the old code stops none."""
    last = state.settings.lengths[-1]
    behind = set(getattr(state, "behind", {}) or {})
    refs: dict[str, float] = {}
    tuned: dict[str, float] = {}
    stopped: set[str] = set()
    for slot, by_h in state.ladder.items():
        grid = next(iter(by_h.values()))
        run = next((r for r in grid.runs if r.schedule), None)
        if run is None or run.optimizer:  # schedule-free: not in the table
            continue
        d = dict(run.schedule)
        refs[grid.label] = max(world.true({**d, "lr": float(lr)}) for lr in LRS)
        if slot in behind or (state.racing and last not in by_h):
            stopped.add(grid.label)
        elif last in by_h and (b := by_h[last].best) is not None:
            tuned[grid.label] = world.true(b.schedule)
    return stopped, refs, tuned


def studies(table: CurveTable) -> tuple[config.StudyConfig, config.StudyConfig, int]:
    """(today's default, the contest, the contest's trials) with the surrogate objective."""
    cfg = config.load_study("lr-fashion")
    if cfg.contest is None or cfg.epochs != table.epochs:
        raise SystemExit("lr-fashion must have a [contest] table and the table's epochs")
    obj = f"{__name__}:surrogate_objective"  # importlib finds this very module (even __main__)
    cfg = dataclasses.replace(cfg, objective=obj)
    default = dataclasses.replace(cfg, contest=None, trials=DEFAULT_TRIALS)
    return default, cfg, cfg.trials - SCHEDULEFREE_GRID


PROTOCOLS = ("default", "contest", "budget")


def compare(table: CurveTable, repeats: int, protocols: tuple[str, ...] = PROTOCOLS,
            out: Path | None = None) -> None:
    world = World(table)
    _WORLD[:] = [world]
    default, cont, target = studies(table)
    finals = table.finals
    cut = float(np.sort(finals)[::-1][max(1, round(TOP * len(finals))) - 1])
    rows: dict[str, list[Answer]] = {k: [] for k in PROTOCOLS if k in protocols}
    t0 = time.perf_counter()
    for r in range(repeats):
        world.repeat = r
        if "default" in rows:
            rows["default"].append(plain(dataclasses.replace(default, seed=r), world,
                                         Count(default.trials)))
        c = contest(dataclasses.replace(cont, seed=r), world, target)
        if "contest" in rows:
            rows["contest"].append(c)
        if "budget" in rows:
            rows["budget"].append(plain(dataclasses.replace(default, seed=r), world,
                                        EpochBudget(c.epochs)))
    secs = time.perf_counter() - t0
    print(f"table: {len(table.rows)} schedules x {table.epochs} epochs; best {finals.max():.4f}, "
          f"top-5% cut {cut:.4f} (the {round(TOP * len(finals))}th best), median "
          f"{np.median(finals):.4f}; seed noise sd {NOISE_SD}; surrogate k=1; whole shorter "
          f"runs: " + ", ".join(f"{len(m.rows)} schedules at {h} epochs"
                                for h, m in world.short.items()))
    print(f"{repeats} repeats ({secs:.0f} s, {secs / repeats:.1f} s per repeat of "
          f"{', '.join(rows)}); contest: `trials` {target} ({cont.trials} less the "
          f"{SCHEDULEFREE_GRID} runs of schedule-free SGD's grid), {cont.contest}\n")
    if out is not None:
        doc = {"commit": _sh(f"git -C {Path(__file__).resolve().parent} rev-parse --short HEAD"),
               "dirty": bool(_sh(f"git -C {Path(__file__).resolve().parent} status "
                                 "--porcelain -- search")),
               "table": str(DATA.name), "cut": cut, "repeats": repeats, "seconds": secs,
               "contest": str(cont.contest), "target": target,
               "rows": {k: [dataclasses.asdict(x) for x in v] for k, v in rows.items()}}
        out.write_text(json.dumps(doc, indent=1))
        print(f"(every repeat's answers: {out})\n")
    report(rows, cut, target)


NAMES = {"default": f"today's default ({DEFAULT_TRIALS} trials)", "contest": "contest",
         "budget": "today's default at the contest's epochs"}


def report(rows: dict[str, list[Answer]], cut: float, target: int) -> None:
    names = {k: v + (f" ({target} trials)" if k == "contest" else "")
             for k, v in NAMES.items() if k in rows}
    repeats = len(next(iter(rows.values())))
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
    if "contest" in rows:
        c = rows["contest"]
        keys = sorted({k for x in c for k in x.stages if k.startswith("reference ")},
                      key=lambda k: int(k.split()[1]))
        stages = {k: np.mean([x.stages.get(k, 0) for x in c])
                  for k in ("reference", "shape", "race", *keys)}
        by_h = ", ".join(f"{stages[k]:.0f} at {k.split()[1]} epochs" for k in keys)
        print(f"\ncontest epochs by stage: reference LR grids {stages['reference']:.0f} "
              f"({by_h}), shapes {stages['shape']:.0f}, race {stages['race']:.0f}; the race's "
              f"pooled seed noise {np.mean([x.sigma for x in c]):.4f} (true {NOISE_SD}); its "
              f"leader is the truly best of its contenders in "
              f"{100 * np.mean([x.best_of_field for x in c]):.0f}% of repeats")
        counts: dict[str, int] = {}
        for x in c:
            for lb in x.stopped:
                counts[lb] = counts.get(lb, 0) + 1
        best: dict[str, int] = {}
        for x in c:
            best[x.best_reference] = best.get(x.best_reference, 0) + 1
        print(f"references stopped as clearly behind: "
              f"{np.mean([len(x.stopped) for x in c]):.2f} per repeat ("
              + (", ".join(f"{k} {100 * v / repeats:.0f}%" for k, v in sorted(counts.items()))
                 or "none") + f"); false stops (a stopped reference is the truly best reference "
              f"at 8 epochs): {sum(x.false_stop for x in c)} of {repeats} repeats; the truly "
              f"best reference: " + ", ".join(f"{k} {100 * v / repeats:.0f}%"
                                              for k, v in sorted(best.items())))
        loss: dict[str, list[float]] = {}
        for x in c:
            for lb, v in x.tuned.items():
                loss.setdefault(lb, []).append(x.references[lb] - v)
        print("LR tuning loss at 8 epochs (a tuned reference's true best over the LR range "
              "minus its grid's best LR's true score; mean, share > 0.005): " + ", ".join(
                  f"{k} {np.mean(v):.4f}, {100 * np.mean(np.array(v) > 0.005):.0f}% (tuned "
                  f"in {100 * len(v) / repeats:.0f}%)" for k, v in sorted(loss.items())))
    pairs = [(one, two) for one, two in (("contest", "default"), ("contest", "budget"),
                                 ("budget", "default")) if one in rows and two in rows]
    if pairs:
        print("\npaired over repeats (same sampler seed and noise world), true score:\n")
        print("| comparison | mean difference [95%] | p |")
        print("| --- | --- | --- |")
    for one, two in pairs:
        p = paired({i: x.true for i, x in enumerate(rows[one])},
                   {i: x.true for i, x in enumerate(rows[two])})
        print(f"| {names[one]} - {names[two]} | {p.margin:+.4f} [{p.low:+.4f}, {p.high:+.4f}] | "
              f"{p.p_value:.2g} |")
    print("\nthe answers (share of repeats):\n")
    for key in ("default", "contest"):
        if key not in rows:
            continue
        counts = {}
        for x in rows[key]:
            counts[x.label] = counts.get(x.label, 0) + 1
        text = ", ".join(f"{k} {100 * v / repeats:.0f}%" for k, v in
                         sorted(counts.items(), key=lambda kv: -kv[1]))
        print(f"- {names[key]}: {text}")


SCALE = "CosineAnnealingLR (whole run)"  # the reference that sets the LR scale


def _scale_loss(x: Answer) -> float:
    """The LR tuning loss of the reference that sets the LR scale, at 8 epochs."""
    return x.references.get(SCALE, math.nan) - x.tuned.get(SCALE, math.nan)


def _stage(key: str) -> Callable[[Answer], float]:
    """An answer's epochs at one stage (or one reference horizon)."""
    return lambda x: float(x.stages.get(key, 0))


@dataclasses.dataclass
class _Line:
    """One row of `pair`'s table: new, old (mean [95%]) and new - old paired."""

    new: dict[int, Answer]
    old: dict[int, Answer]
    common: list[int]

    def __call__(self, name: str, f: Callable[[Answer], float], fmt: str = "{:.1f}") -> None:
        a, b, common = self.new, self.old, self.common
        q = t_quantile(0.975, len(common) - 1)
        p = paired({i: f(a[i]) for i in common}, {i: f(b[i]) for i in common})
        mn, sn = mean_std([f(a[i]) for i in common])
        mo, so = mean_std([f(b[i]) for i in common])
        hn, ho = q * sn / math.sqrt(len(common)), q * so / math.sqrt(len(common))
        print(f"| {name} | {fmt.format(mn)} [{fmt.format(mn - hn)}, {fmt.format(mn + hn)}] | "
              f"{fmt.format(mo)} [{fmt.format(mo - ho)}, {fmt.format(mo + ho)}] | "
              f"{fmt.format(p.margin)} [{fmt.format(p.low)}, {fmt.format(p.high)}] |")


def pair(new: Path, old: Path) -> None:
    """Two --out files (the same repeats on two versions of the code), side by side and
    paired repeat by repeat: protocol by protocol, new minus old."""
    docs = {"new": json.loads(new.read_text()), "old": json.loads(old.read_text())}
    for tag, d in docs.items():
        print(f"- {tag}: {d['commit']}{' (dirty)' if d['dirty'] else ''}, {d['repeats']} "
              f"repeats, {d['seconds']:.0f} s, `trials` {d['target']}, {d['contest']}")
    n, o = docs["new"], docs["old"]
    for key in [k for k in PROTOCOLS if k in n["rows"] and k in o["rows"]]:
        a = {i: Answer(**x) for i, x in enumerate(n["rows"][key])}
        b = {i: Answer(**x) for i, x in enumerate(o["rows"][key])}
        common = sorted(set(a) & set(b))
        print(f"\n### {NAMES[key]}: {len(common)} paired repeats\n")
        stage_keys = sorted({k for i in common for x in (a[i], b[i]) for k in x.stages},
                            key=lambda k: (k.split()[0], int(k.split()[1]) if " " in k else 0))
        print("| | new | old | new - old [95%] |")
        print("| --- | --- | --- | --- |")
        line = _Line(a, b, common)

        line("trials", lambda x: x.trials)
        line("epochs", lambda x: x.epochs)
        for k in stage_keys:
            line(f"epochs: {k}", _stage(k))
        line("expected true score", lambda x: x.true, "{:.4f}")
        line("in the table's top 5%", lambda x: 100.0 * (x.true >= n["cut"]), "{:.0f}%")
        line("claimed - true", lambda x: x.claimed - x.true, "{:+.4f}")
        if key == "contest":
            line("answer is a tuned reference", lambda x: 100.0 * x.reference, "{:.0f}%")
            line("race decided", lambda x: 100.0 * x.decided, "{:.0f}%")
            line("references stopped", lambda x: len(x.stopped), "{:.2f}")
            line("false stops", lambda x: 100.0 * x.false_stop, "{:.0f}%")
            line("cosine's LR tuning loss at 8 epochs", _scale_loss, "{:.4f}")
        ratio = [a[i].epochs / b[i].epochs for i in common]
        mr, sr = mean_std(ratio)
        q = t_quantile(0.975, len(common) - 1)
        tot = sum(a[i].epochs for i in common) / sum(b[i].epochs for i in common)
        print(f"\nepochs new / old: {100 * tot:.1f}% of the total over the repeats (per repeat "
              f"{100 * mr:.1f}% [{100 * (mr - q * sr / math.sqrt(len(ratio))):.1f}%, "
              f"{100 * (mr + q * sr / math.sqrt(len(ratio))):.1f}%], range "
              f"{100 * min(ratio):.1f}%-{100 * max(ratio):.1f}%)")


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
    p.add_argument("--races", type=int, default=2000, help="races per row of the racing "
                   "rule's table (0: leave that section out)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   help=f"which of {','.join(PROTOCOLS)} to run (the contest runs always)")
    p.add_argument("--out", type=Path, help="write every repeat's answers here (JSON)")
    p.add_argument("--pair", type=Path, nargs=2, metavar=("NEW", "OLD"),
                   help="compare two --out files repeat by repeat, and exit")
    a = p.parse_args()
    if a.pair:
        pair(*a.pair)
        return 0
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t0 = time.perf_counter()
    header()
    table = CurveTable.load(a.table)
    protocols = tuple(k for k in a.protocols.split(",") if k)
    if set(protocols) - set(PROTOCOLS):
        raise SystemExit(f"--protocols: some of {','.join(PROTOCOLS)}")
    _section("Protocols at equal epochs (surrogate + seed noise)",
             lambda: compare(table, a.repeats, protocols, a.out))
    if a.races > 0:
        _section("The racing rule alone: does a race find a clear best?",
                 lambda: race_table(a.races))
    print(f"\n- load average after: {_sh('cat /proc/loadavg')}")
    print(f"- {time.perf_counter() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
