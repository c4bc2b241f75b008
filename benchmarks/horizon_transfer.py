"""Does the LR law carry a searched schedule to a longer run? (issue "the schedule for the
user's training length"; benchmarks/RESULTS.md, "The LR for the user's training length").

After a contest search with horizons (say [2, 4, 8] epochs), train the recommended schedule at
EPOCHS (say 32) three ways, on the same seeds, scored on the test split:

- the oracle: the recommended shape with its LR swept at EPOCHS itself (the search's training
  seed, the validation split, LRs sqrt(3) apart around the searched LR, extended where the best
  is on an edge), then its best LR on every seed;
- naive transfer: the LR searched at the longest horizon (`best --epochs EPOCHS --keep-lr`);
- the law's LR (`best --epochs EPOCHS`).

Any study: every run trains through the study's own objective (`[objective] function`, as the
search and `validate` do; it must score the split `cfg.holdout` names, `holdout = True`) and is
scored by the study's goal (`[objective] metric` and `direction`, search.goal): the sweep picks
the best value, a diverged run is the worst, and the table names the metric (differences in its
units, arm minus oracle; "lower is better" where it is minimised). EPOCHS counts what the
study's `epochs` count: for `lr-lm`, evaluations of `steps_per_eval` (25) optimizer steps, so
64 is 1600 steps, 4 times its longest horizon (16).

    .venv/bin/python benchmarks/horizon_transfer.py --study lr-fashion \\
        --storage sqlite:////work/runs/h-sgd/search.db --epochs 32 --seeds 5
    .venv/bin/python benchmarks/horizon_transfer.py --study lr-lm \\
        --storage sqlite:////tmp/m/lm.db --epochs 64 --seeds 5 --runs lm-horizon-runs.jsonl

Every run is one JSON line in --runs (default horizon-runs.jsonl), keyed by what it trains,
with the metric it scored (lines from before, with "acc", are a validation accuracy's): an
interrupted measurement resumes, and a run is never trained twice; a file of another metric's
runs is refused. `--sweep-only` trains the oracle's sweep alone; `--arm NAME` one arm's seeds
(run arms side by side, then once more without it for the table). Prints a markdown table for
RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STEP = math.sqrt(3.0)  # the oracle sweep's LR ratio: twice as fine as the contest's grids


def _key(schedule: dict, optimizer: str, epochs: int, seed: int, holdout: str) -> str:
    """What a run trains; floats to 10 digits (an LR reached by x sqrt(3) twice is x 3)."""
    same = {k: float(f"{v:.10g}") if isinstance(v, float) else v for k, v in schedule.items()}
    return json.dumps([same, optimizer, epochs, seed, holdout], sort_keys=True)


class Report:
    """The `report` an objective calls, in either form the search accepts
    (search.runner.REPORT_FORMS): keeps the study's metric as last reported, and stops a run
    whose metric is not finite (objectives.Diverged), as the search's Recorder does."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.last: float | None = None

    def __call__(self, epoch: int, *args: Any, **kwargs: Any) -> None:
        from objectives import Diverged
        from search.errors import UserError
        from search.runner import _reported  # the search's own parser of both forms

        metrics, _ = _reported(epoch, args, kwargs)
        if self.metric not in metrics:
            raise UserError(
                f"the objective reported {', '.join(sorted(metrics)) or 'no metric'} but not "
                f"{self.metric!r}, the study's `objective.metric`")
        value = metrics[self.metric]
        if not math.isfinite(value):
            raise Diverged(epoch, -1, value)
        self.last = value


class Runs:
    """Trained runs of one study, one JSON line each (resumable), scored by its goal."""

    def __init__(self, path: Path, cfg: Any) -> None:
        self.path, self.cfg, self.goal = path, cfg, cfg.goal
        self.done: dict[str, dict] = {}
        self._objective: Any = None
        self._read()

    def _read(self) -> None:
        """What is trained so far (another process, e.g. `--arm`, may have added runs)."""
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                r = json.loads(line)
                self.done[r["key"]] = r

    def _value(self, r: Mapping[str, Any]) -> float:
        """A stored run's value, in the study's metric (a line with "acc": a validation
        accuracy's, as every line was before metrics)."""
        from search.goal import ACCURACY

        metric = r.get("metric", ACCURACY if "acc" in r else None)
        if metric != self.goal.metric:
            raise SystemExit(f"{self.path}: holds runs scored by {metric}, but study "
                             f"{self.cfg.name!r} is scored by {self.goal.metric}; give "
                             "another --runs")
        return float(r["value"] if "value" in r else r["acc"])

    def train(self, train: Any, schedule: Any) -> float:
        """One run of the study's objective: its value in the study's metric (what it returns,
        else what it last reported), the worst value where it diverged."""
        from objectives import Diverged
        from search.config import load_objective

        if self._objective is None:
            self._objective = load_objective(self.cfg.objective)
        report = Report(self.goal.metric)
        try:
            raw = self._objective(train, schedule, report)
        except Diverged:  # a diverged LR: the worst score, as the contest counts it
            return self.goal.worst
        value = float(raw) if raw is not None else report.last
        if value is None:
            raise SystemExit(f"{self.cfg.objective} returned nothing and never reported "
                             f"{self.goal.metric}")
        return value if math.isfinite(value) else self.goal.worst

    def score(self, schedule, optimizer: str, epochs: int, seed: int, holdout: str) -> float:
        """The run's score (search.goal: higher is better), trained unless stored."""
        key = _key(schedule.to_dict(), optimizer, epochs, seed, holdout)
        if key not in self.done:
            self._read()
        if key in self.done:
            return self.goal.score(self._value(self.done[key]))
        changes = {"epochs": epochs, "seed": seed, "holdout": holdout, "final_test": False}
        if optimizer:
            changes["optimizer"] = optimizer
        t0 = time.time()
        value = self.train(dataclasses.replace(self.cfg.train, **changes), schedule)
        r = {"key": key, "metric": self.goal.metric, "value": value, "lr": schedule.lr,
             "epochs": epochs, "seed": seed, "holdout": holdout,
             "seconds": round(time.time() - t0, 1), "load": os.getloadavg()[0],
             "at": dt.datetime.now(dt.UTC).isoformat()}
        with self.path.open("a") as f:
            f.write(json.dumps(r) + "\n")
        self.done[key] = r
        print(f"  lr {schedule.lr:.4g} epochs {epochs} seed {seed} {holdout}: {value:.4f} "
              f"({r['seconds']} s, load {r['load']:.1f})", flush=True)
        return self.goal.score(value)


def sweep(runs: Runs, schedule, optimizer: str, centre: float, epochs: int, seed: int,
          extend: int = 2) -> dict[float, float]:
    """The oracle's LR sweep on the validation split: centre x STEP**k, k in -3..1, extended
    by up to `extend` steps past an edge that holds the best. LR -> its score."""
    ks = list(range(-3, 2))
    scored: dict[float, float] = {}
    while True:
        for k in ks:
            lr = centre * STEP**k
            if lr not in scored:
                scored[lr] = runs.score(dataclasses.replace(schedule, lr=lr), optimizer,
                                        epochs, seed, "val")
        best = best_lr(scored)
        if best == min(scored) and min(ks) > -3 - extend:
            ks = [min(ks) - 1]
        elif best == max(scored) and max(ks) < 1 + extend:
            ks = [max(ks) + 1]
        else:
            return scored


def best_lr(scored: Mapping[float, float]) -> float:
    """The LR of the best score (the smaller LR of a tie)."""
    return max(scored, key=lambda lr: (scored[lr], -lr))


def sweep_line(goal, scored: Mapping[float, float], epochs: int, seed: int) -> str:
    """The sweep, as the metric's values."""
    what = "" if goal.is_accuracy else f"; {goal.metric}, {goal.better} is better"
    return (f"oracle sweep ({epochs} epochs, val, seed {seed}{what}): "
            + ", ".join(f"{lr:.3g}: {goal.value(v):.4f}" for lr, v in sorted(scored.items()))
            + f" -> {best_lr(scored):.4g}")


def _diff(goal, c) -> str:
    """A paired difference of scores (a minus b), in the metric's units: accuracy in points,
    another metric as its own value (a minimised one's sign turned back: + is higher)."""
    if goal.is_accuracy:
        return f"{100 * c.margin:+.2f} pts [{100 * c.low:+.2f}, {100 * c.high:+.2f}]"
    lo, hi = sorted((goal.value(c.low), goal.value(c.high)))
    return f"{goal.value(c.margin):+.4f} [{lo:+.4f}, {hi:+.4f}]"


def table(goal, arms: Mapping[str, float], test: Mapping[str, Mapping[int, float]],
          oracle_lr: float, searched_lr: float) -> list[str]:
    """The markdown table of the arms' test scores (`test`: arm -> seed -> score), each
    against the oracle, paired by seed, and the law against naive transfer."""
    from search import stats
    from search.stats import paired

    lower = "" if goal.maximize else "; lower is better"
    units = "" if goal.is_accuracy else f" {goal.metric}"
    lines = [f"| arm | LR | {goal.name('test')} (mean ± std{lower}) | against the oracle "
             "(paired, 95%) | p |", "|---|---|---|---|---|"]
    for name, lr in arms.items():
        m, sd = stats.mean_std([goal.value(v) for v in test[name].values()])
        c = paired(test[name], test["oracle"])
        vs = "" if name == "oracle" else _diff(goal, c)
        lines.append(f"| {name} | {lr:.4g} | {m:.4f} ± {sd:.4f} | {vs} | "
                     f"{'' if name == 'oracle' else f'{c.p_value:.3f}'} |")
    c = paired(test["law"], test["naive"])
    lines.append(f"law against naive: {_diff(goal, c)}{units}{lower.replace(';', ',')}, "
                 f"p = {c.p_value:.3f}; oracle LR / searched LR = {oracle_lr / searched_lr:.2f}")
    return lines


def _cost(study) -> str:
    """Epochs the search trained, by stage and horizon, and what the shorter horizons took."""
    from optuna.trial import TrialState

    from search import record

    by: dict[tuple[str, int], int] = {}  # (stage, epochs of a reference run; 0 else) -> epochs
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        r = record.of(t)
        stage = r.stage if r.stage is not None else "shape"
        what = (stage, (r.epochs if r.epochs is not None else 0) if stage == "reference" else 0)
        by[what] = by.get(what, 0) + record.epochs_trained(t)
    total = sum(by.values())
    longest = max((h for _, h in by), default=0)
    short = sum(v for (stage, h), v in by.items() if stage == "reference" and h < longest)
    parts = ", ".join(f"{stage} at {h} epochs: {v}" if h else f"{stage}: {v}"
                      for (stage, h), v in sorted(by.items()))
    return (f"search epochs: {total} ({parts}); the shorter horizons cost {short} epochs "
            f"({100 * short / total:.0f}%)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, help="the study file the search ran")
    p.add_argument("--storage", required=True)
    p.add_argument("--study-name", default=None)
    p.add_argument("--epochs", type=int, default=32,
                   help="the run's length, in the study's epochs (lr-lm: evaluations)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--runs", type=Path, default=Path("horizon-runs.jsonl"))
    p.add_argument("--sweep-only", action="store_true")
    p.add_argument("--arm", choices=("oracle", "naive", "law"),
                   help="train this arm's seeds only (arms side by side, each in its process)")
    args = p.parse_args(argv)

    import optuna

    from search import answer, config, record, schedules
    from search.answer.text import left_out
    from search.errors import UserError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        cfg = config.load_study(args.study)
        config.check_holdout(cfg)  # its test runs must score the test split
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    goal = cfg.goal
    study = optuna.load_study(study_name=args.study_name or cfg.name, storage=args.storage)
    runs = Runs(args.runs, cfg)
    law = answer.recommend(study, args.epochs)
    naive = answer.recommend(study, args.epochs, keep_lr=True)
    lead = naive.standing.leader if naive.standing is not None else None
    if lead is None:
        print(f"error: study {study.study_name!r} has no contest leader to transfer (a contest "
              "search, run far enough to name one)", file=sys.stderr)
        return 2
    optimizer = lead.optimizer
    base = schedules.ScheduleConfig.from_dict(lead.schedule)
    seed0 = int(record.study_of(study).get(record.Study.SEARCH_SEED, cfg.train.seed))
    print(f"{naive.label}: searched LR {base.lr:.4g} at {naive.searched_epochs} epochs; "
          f"law's LR at {args.epochs}: {law.lr:.4g}", flush=True)
    scored = sweep(runs, base, optimizer, base.lr, args.epochs, seed0)
    oracle_lr = best_lr(scored)
    print(sweep_line(goal, scored, args.epochs, seed0), flush=True)
    if args.sweep_only:
        return 0
    seeds = [seed0 + k for k in range(args.seeds)]
    arms = {"oracle": oracle_lr, "naive": base.lr, "law": law.lr}
    if args.arm:
        for s in seeds:
            runs.score(dataclasses.replace(base, lr=arms[args.arm]), optimizer, args.epochs, s,
                       "test")
        return 0
    test = {name: {s: runs.score(dataclasses.replace(base, lr=lr), optimizer, args.epochs, s,
                                 "test") for s in seeds} for name, lr in arms.items()}
    fit = law.transfer.law
    beta = (f"beta {fit.beta:.3f} [{fit.beta_low:.3f}, {fit.beta_high:.3f}] from LR* "
            + ", ".join(f"{lr:.3g} at {h}" for h, lr in zip(fit.horizons, fit.lrs, strict=True))
            + (f" ({left_out(fit)})" if left_out(fit) else "")) if fit else "no law"
    print(f"\n{cfg.name}: {naive.label}; {beta}; {args.epochs} epochs, {len(seeds)} seeds, "
          f"test split; {platform.machine()} {os.cpu_count()} cores, {dt.date.today()}")
    print(_cost(study))
    print("\n".join(table(goal, arms, test, oracle_lr, base.lr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
