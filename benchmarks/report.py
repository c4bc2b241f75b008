"""How long `report` takes on a 2,000-trial store (target: under 15 s).

    .venv/bin/python benchmarks/report.py                 # 2,000 trials, temporary SQLite
    .venv/bin/python benchmarks/report.py --keep /tmp/bench.db   # build once, reuse after

1. A fast synthetic objective runs in memory (no training): the project's conditional space
   (search.space over every family of the catalog; `lr`, `momentum`, `weight_decay`
   searched), the exact torch kwargs from schedules.resolve as training records them, the
   same user attrs the runner writes (scheduler_kwargs, lr_curve, lr_trace, val_acc_curve,
   val_loss_curve, end_reason, interval, epochs, steps_per_epoch, optimizer), pruned and
   failed trials.
2. The trials are copied into a fresh SQLite store opened the project's way
   (search.storage.open_storage: WAL), one transaction per trial (tens of ms each through
   optuna's ORM: building takes a minute or two, so `--keep` reuses a store).
3. The report is timed phase by phase on a study loaded fresh from that store, then end to
   end as the user runs it (`python -m search report`, a new process: imports included).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search import record, schedules, space  # noqa: E402
from search.config import ParamSpec, SpaceConfig  # noqa: E402

EPOCHS, STEPS = 20, 98  # a CIFAR-10 subset budget: 98 steps of 512 per epoch
# Every family of the catalog, searched as a study searches it (search.space), with searched
# momentum and weight decay.
SPACE = SpaceConfig(families=tuple(schedules.SCHEDULES), momentum=ParamSpec(0.8, 0.99),
                    weight_decay=ParamSpec(1e-5, 1e-3, log=True))


def _shape(built: schedules.Built, lr: float, e: int) -> float:
    """A plausible LR multiplier at epoch e, from the exact torch kwargs (the benchmark needs
    realistic data, not torch). Counts are in the schedule's own steps: epochs, or optimizer
    steps for per-iteration families."""
    kw, x, it = built.kwargs, e / EPOCHS, e * STEPS
    match built.family:
        case "StepLR":
            return kw["gamma"] ** (e // kw["step_size"])
        case "MultiStepLR":
            return kw["gamma"] ** sum(e >= m for m in kw["milestones"])
        case "ExponentialLR":
            return kw["gamma"] ** e
        case "CosineAnnealingLR" | "CosineAnnealingWarmRestarts":
            t = min(1.0, e / kw["T_max"]) if "T_max" in kw else (e % kw["T_0"]) / kw["T_0"]
            floor = kw["eta_min"] / lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        case "WarmupCosine":
            w, t = kw["warmup_iters"], kw["total_iters"]
            if it < w:
                return it / w
            floor = kw["eta_min"] / lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (it - w) / max(1, t - w)))
        case "ReduceLROnPlateau":
            return kw["factor"] ** (e // (kw["patience"] + 4))
        case "OneCycleLR":
            return (x / kw["pct_start"] if x < kw["pct_start"] else 1 - x) + 1 / kw["div_factor"]
        case "PolynomialLR":
            return (1 - min(1.0, e / kw["total_iters"])) ** kw["power"] + 1e-4
        case "InverseTimeDecay":
            return 1 / (1 + kw["decay"] * it)
        case "WarmupStableDecay":
            w, s, d = kw["warmup_iters"], kw["stable_iters"], kw["decay_iters"]
            if it < w:
                return it / w
            done = min(1.0, max(0, it - w - s) / d)
            return 1 - done * (1 - kw["end_factor"])
    return 1.0


def _resolved(trial: optuna.Trial) -> schedules.Built:
    """The trial's schedule drawn as search.space draws it, resolved for the budget as
    training resolves it (schedules.resolve): the exact torch kwargs the runner records, the
    ones `best` reads back and prints as code."""
    return schedules.resolve(space.suggest(trial, SPACE, EPOCHS), EPOCHS, STEPS)


def objective(trial: optuna.Trial) -> float:
    """Suggest with search.space, write the attrs like search.runner, 'train' in microseconds."""
    built = _resolved(trial)
    sched = built.schedule
    assert sched is not None
    family, lr = built.family, sched.lr
    write = record.Writer(trial)
    write.built(sched.to_dict(), built.kwargs, built.interval, STEPS, EPOCHS, built.warmup)
    write.optimizer({"name": "SGD", "lr": lr, "momentum": sched.momentum, "nesterov": True,
                     "weight_decay": sched.weight_decay})
    rng = random.Random(trial.number)
    final = 0.93 - 0.04 * math.log10(lr / 0.08) ** 2 - 0.02 * (family == "Constant")
    final = max(0.1, final + rng.gauss(0, 0.015))
    prune_at = rng.randint(3, 8) if final < 0.86 and rng.random() < 0.7 else None
    lrs, accs, losses = [], [], []
    for e in range(EPOCHS):
        lrs.append(lr * _shape(built, lr, e))
        if lr > 0.8 and e == 2:  # too hot: the loss blows up, as the runner records it
            losses.append(None)
            accs.append(None)
            write.end(record.End.NON_FINITE)
            break
        accs.append(round(final * (1 - math.exp(-(e + 1) / 3.5)) + rng.gauss(0, 0.004), 5))
        losses.append(round(2.3 * (1 - accs[-1]) + 0.05, 5))
        trial.report(accs[-1], e)
        if e + 1 == prune_at:
            write.end(record.End.PRUNED)
            break
    # The curves, and the per-step record (`lr_trace`): at most 256 points over the whole run,
    # as the runner keeps it; a pruned trial's stops where it stopped.
    every = math.ceil(EPOCHS * STEPS / 256)
    write.epoch(lrs, {"val_acc": accs, "val_loss": losses}, (every, [
        lr * _shape(built, lr, step // STEPS) for step in range(0, len(lrs) * STEPS, every)]))
    if record.of(trial).end_reason is not None:
        raise optuna.TrialPruned()
    if rng.random() < 0.01:
        write.end(record.End.OOM)
        raise RuntimeError("out of memory (synthetic)")
    return accs[-1]


def build_store(url: str, n_trials: int, name: str = "bench", seed: int = 0) -> optuna.Study:
    """`n_trials` synthetic trials in the SQLite store at `url` (study `name`)."""
    mem = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed))
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # not 20 "Trial failed" tracebacks
    try:
        mem.optimize(objective, n_trials=n_trials, catch=(RuntimeError,))
    finally:
        optuna.logging.set_verbosity(level)
    study = optuna.create_study(study_name=name, storage=_open(url), direction="maximize")
    study.add_trials(mem.get_trials(deepcopy=False))
    return study


def _open(url: str) -> optuna.storages.RDBStorage:
    """The store as the project opens it (SQLite in WAL mode, busy timeout): as `run` and
    `report` see it. WAL matters here: each figure chunk is its own commit."""
    from search.storage import open_storage

    return open_storage(url)


def _holds(url: str, n_trials: int) -> bool:
    try:
        study = optuna.load_study(study_name="bench", storage=_open(url))
    except KeyError:
        return False
    return len(study.get_trials(deepcopy=False)) == n_trials


def _timed(label: str, rows: list, fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    rows.append((label, time.perf_counter() - t))
    return out


def _fresh_copy(pristine: Path, dest: Path) -> str:
    """A copy of the store without any saved figures: a first report inserts them (slowest)."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{pristine}{suffix}").exists():
            shutil.copyfile(f"{pristine}{suffix}", f"{dest}{suffix}")
    return f"sqlite:///{dest}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--keep", type=Path,
                        help="keep the store in this file; reuse it when it already holds "
                        "the `bench` study with --trials trials")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from dashboards import _recommendation
    from dashboards._common import snapshot
    from dashboards._page import render_page
    from dashboards.figures import FIGURES, make_figures, save_figures
    from dashboards.report import write_report

    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    pristine = args.keep or tmp / "bench.db"
    t = time.perf_counter()
    if _holds(f"sqlite:///{pristine}", args.trials):
        built_how = "reused"
    else:
        pristine.unlink(missing_ok=True)
        build_store(f"sqlite:///{pristine}", args.trials)
        built_how = f"built in {time.perf_counter() - t:.0f} s"

    # 1. As the user runs it, on a store that has never had a report: a new process.
    url = _fresh_copy(pristine, tmp / "cli.db")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SEARCH_STORAGE", None)
    cmd = [sys.executable, "-m", "search", "report", "--study", "bench", "--storage", url,
           "--out", str(tmp / "cli.html")]
    t = time.perf_counter()
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    cli_first = time.perf_counter() - t
    t = time.perf_counter()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    cli_again = time.perf_counter() - t

    # 2. Phase by phase, in this process, on another fresh copy.
    url = _fresh_copy(pristine, tmp / "phases.db")
    study = optuna.load_study(study_name="bench", storage=_open(url))
    rows: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    snap = _timed("read all trials (one query)", rows, snapshot, study)
    figs = {}
    for name in FIGURES:
        figs |= _timed(f"figure {name}", rows, make_figures, snap, names=[name])
    rec = _timed("recommendation (imports torch)", rows, _recommendation._info, study)
    page = _timed("HTML page (plotly.js + JSON)", rows, render_page, snap, rec, figs, url)
    _timed("write file", rows, (tmp / "r.html").write_text, page, encoding="utf-8")
    _timed("save figures for optuna-dashboard", rows, save_figures, study, figs)
    in_process = time.perf_counter() - t0
    t = time.perf_counter()
    write_report(optuna.load_study(study_name="bench", storage=_open(url)), tmp / "again.html")
    write_report_again = time.perf_counter() - t

    counts = _snapshot_counts(snap)
    stored = sum(len(f.to_json()) for f in figs.values())
    print(f"store: {args.trials} trials ({counts}), SQLite, {built_how}; "
          f"report {len(page) / 1e6:.1f} MB, figures in the study {stored / 1e6:.2f} MB")
    for label, s in rows:
        print(f"  {label:<40} {s:6.2f} s")
    print(f"  {'total (first report on this store)':<40} {in_process:6.2f} s")
    print(f"  {'write_report() again (figures updated)':<40} {write_report_again:6.2f} s")
    for label, done, s in (("first", first, cli_first), ("again", again, cli_again)):
        if done.returncode:
            print(f"`python -m search report` failed ({done.returncode}): {done.stderr.strip()}")
            return 1
        print(f"`python -m search report`, new process, {label}: {s:.2f} s")
    worst = max(cli_first, cli_again, in_process)
    print(f"target < 15 s: {'met' if worst < 15 else 'MISSED'} (worst {worst:.1f} s)")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _snapshot_counts(snap) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(snap.counts().items()))


if __name__ == "__main__":
    raise SystemExit(main())
