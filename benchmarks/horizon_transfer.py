"""Does the LR law carry a searched schedule to a longer run? (issue "the schedule for the
user's training length"; benchmarks/RESULTS.md, "The LR for the user's training length").

After a contest search with horizons (say [2, 4, 8] epochs), train the recommended schedule at
EPOCHS (say 32) three ways, on the same seeds, scored on the test split:

- the oracle: the recommended shape with its LR swept at EPOCHS itself (the search's training
  seed, the validation split, LRs sqrt(3) apart around the searched LR, extended where the best
  is on an edge), then its best LR on every seed;
- naive transfer: the LR searched at the longest horizon (`best --epochs EPOCHS --keep-lr`);
- the law's LR (`best --epochs EPOCHS`).

    .venv/bin/python benchmarks/horizon_transfer.py --study lr-fashion \\
        --storage sqlite:////work/runs/h-sgd/search.db --epochs 32 --seeds 5

Every run is one JSON line in --runs (default horizon-runs.jsonl), keyed by what it trains:
an interrupted measurement resumes, and a run is never trained twice. `--sweep-only` trains the
oracle's sweep alone; `--arm NAME` one arm's seeds (run arms side by side, then once more
without it for the table). Prints a markdown table for RESULTS.md.
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
from pathlib import Path

STEP = math.sqrt(3.0)  # the oracle sweep's LR ratio: twice as fine as the contest's grids


def _key(schedule: dict, optimizer: str, epochs: int, seed: int, holdout: str) -> str:
    """What a run trains; floats to 10 digits (an LR reached by x sqrt(3) twice is x 3)."""
    same = {k: float(f"{v:.10g}") if isinstance(v, float) else v for k, v in schedule.items()}
    return json.dumps([same, optimizer, epochs, seed, holdout], sort_keys=True)


class Runs:
    """Trained runs, one JSON line each (resumable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict] = {}
        self._read()

    def _read(self) -> None:
        """What is trained so far (another process, e.g. `--arm`, may have added runs)."""
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                r = json.loads(line)
                self.done[r["key"]] = r

    def score(self, cfg, schedule, optimizer: str, epochs: int, seed: int, holdout: str) -> float:
        from objectives import classify

        key = _key(schedule.to_dict(), optimizer, epochs, seed, holdout)
        if key not in self.done:
            self._read()
        if key in self.done:
            return self.done[key]["acc"]
        changes = {"epochs": epochs, "seed": seed, "holdout": holdout, "final_test": False}
        if optimizer:
            changes["optimizer"] = optimizer
        train = dataclasses.replace(cfg.train, **changes)
        t0 = time.time()
        try:
            acc = float(classify.train(train, schedule, lambda *_: None))
        except Exception as e:  # a diverged LR: the worst score, as the contest counts it
            if type(e).__name__ != "Diverged":
                raise
            acc = -math.inf
        r = {"key": key, "acc": acc, "lr": schedule.lr, "epochs": epochs, "seed": seed,
             "holdout": holdout, "seconds": round(time.time() - t0, 1),
             "load": os.getloadavg()[0], "at": dt.datetime.now(dt.UTC).isoformat()}
        with self.path.open("a") as f:
            f.write(json.dumps(r) + "\n")
        self.done[key] = r
        print(f"  lr {schedule.lr:.4g} epochs {epochs} seed {seed} {holdout}: {acc:.4f} "
              f"({r['seconds']} s, load {r['load']:.1f})", flush=True)
        return acc


def sweep(runs: Runs, cfg, schedule, optimizer: str, centre: float, epochs: int, seed: int,
          extend: int = 2) -> dict[float, float]:
    """The oracle's LR sweep on the validation split: centre x STEP**k, k in -3..1, extended
    by up to `extend` steps past an edge that holds the best."""
    ks = list(range(-3, 2))
    scored: dict[float, float] = {}
    while True:
        for k in ks:
            lr = centre * STEP**k
            if lr not in scored:
                scored[lr] = runs.score(cfg, dataclasses.replace(schedule, lr=lr), optimizer,
                                        epochs, seed, "val")
        best = max(scored, key=lambda lr: (scored[lr], -lr))
        if best == min(scored) and min(ks) > -3 - extend:
            ks = [min(ks) - 1]
        elif best == max(scored) and max(ks) < 1 + extend:
            ks = [max(ks) + 1]
        else:
            return scored


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
    p.add_argument("--epochs", type=int, default=32)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--runs", type=Path, default=Path("horizon-runs.jsonl"))
    p.add_argument("--sweep-only", action="store_true")
    p.add_argument("--arm", choices=("oracle", "naive", "law"),
                   help="train this arm's seeds only (arms side by side, each in its process)")
    args = p.parse_args(argv)

    import optuna

    from search import answer, config, record, schedules, stats
    from search.answer.text import left_out
    from search.stats import paired

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = config.load_study(args.study)
    study = optuna.load_study(study_name=args.study_name or cfg.name, storage=args.storage)
    runs = Runs(args.runs)
    law = answer.recommend(study, args.epochs)
    naive = answer.recommend(study, args.epochs, keep_lr=True)
    lead = naive.standing.leader if naive.standing is not None else None
    optimizer = lead.optimizer if lead is not None else ""
    base = schedules.ScheduleConfig.from_dict(lead.schedule)
    seed0 = int(record.study_of(study).get(record.Study.SEARCH_SEED, cfg.train.seed))
    print(f"{naive.label}: searched LR {base.lr:.4g} at {naive.searched_epochs} epochs; "
          f"law's LR at {args.epochs}: {law.lr:.4g}", flush=True)
    scored = sweep(runs, cfg, base, optimizer, base.lr, args.epochs, seed0)
    oracle_lr = max(scored, key=lambda lr: (scored[lr], -lr))
    print(f"oracle sweep ({args.epochs} epochs, val, seed {seed0}): "
          + ", ".join(f"{lr:.3g}: {v:.4f}" for lr, v in sorted(scored.items()))
          + f" -> {oracle_lr:.4g}", flush=True)
    if args.sweep_only:
        return 0
    seeds = [seed0 + k for k in range(args.seeds)]
    arms = {"oracle": oracle_lr, "naive": base.lr, "law": law.lr}
    if args.arm:
        for s in seeds:
            runs.score(cfg, dataclasses.replace(base, lr=arms[args.arm]), optimizer, args.epochs,
                       s, "test")
        return 0
    test = {name: {s: runs.score(cfg, dataclasses.replace(base, lr=lr), optimizer, args.epochs,
                                 s, "test") for s in seeds} for name, lr in arms.items()}
    fit = law.transfer.law
    beta = (f"beta {fit.beta:.3f} [{fit.beta_low:.3f}, {fit.beta_high:.3f}] from LR* "
            + ", ".join(f"{lr:.3g} at {h}" for h, lr in zip(fit.horizons, fit.lrs, strict=True))
            + (f" ({left_out(fit)})" if left_out(fit) else "")) if fit else "no law"
    print(f"\n{cfg.name}: {naive.label}; {beta}; {args.epochs} epochs, {len(seeds)} seeds, "
          f"test split; {platform.machine()} {os.cpu_count()} cores, {dt.date.today()}")
    print(_cost(study))
    print("| arm | LR | test acc (mean ± std) | against the oracle (paired, 95%) | p |")
    print("|---|---|---|---|---|")
    for name, lr in arms.items():
        m, sd = stats.mean_std(list(test[name].values()))
        c = paired(test[name], test["oracle"])
        vs = "" if name == "oracle" else (
            f"{100 * c.margin:+.2f} pts [{100 * c.low:+.2f}, {100 * c.high:+.2f}]")
        print(f"| {name} | {lr:.4g} | {m:.4f} ± {sd:.4f} | {vs} | "
              f"{'' if name == 'oracle' else f'{c.p_value:.3f}'} |")
    c = paired(test["law"], test["naive"])
    print(f"law against naive: {100 * c.margin:+.2f} pts [{100 * c.low:+.2f}, "
          f"{100 * c.high:+.2f}], p = {c.p_value:.3f}; oracle LR / searched LR = "
          f"{oracle_lr / base.lr:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
