"""How long `report` takes on a 2,000-trial store (target: under 15 s).

    .venv/bin/python benchmarks/report.py                 # 2,000 trials, temporary SQLite
    .venv/bin/python benchmarks/report.py --keep /tmp/bench.db   # build once, reuse after

1. A fast synthetic objective runs in memory (no training): the same conditional space
   (`scheduler` + `<Family>.<arg>` + shared `lr`, `momentum`, `weight_decay`), the same user
   attrs the runner writes (scheduler_kwargs, lr_curve, lr_trace, val_acc_curve,
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

from search import record  # noqa: E402

EPOCHS, STEPS = 20, 98  # a CIFAR-10 subset budget: 98 steps of 512 per epoch
FAMILIES = [  # family -> (interval, its own searched parameters as (name, low, high, kind))
    ("Constant", "epoch", []),
    ("StepLR", "epoch", [("step_size", 2, 10, "int"), ("gamma", 0.05, 0.7, "log")]),
    ("MultiStepLR", "epoch", [("n_milestones", 1, 3, "int"), ("milestone_0", 0.2, 0.95, "f"),
                              ("milestone_1", 0.2, 0.95, "f"), ("milestone_2", 0.2, 0.95, "f"),
                              ("gamma", 0.05, 0.7, "log")]),
    ("ExponentialLR", "epoch", [("final_factor", 1e-3, 0.5, "log")]),
    ("CosineAnnealingLR", "epoch", [("T_max", 10, 20, "int"),
                                    ("eta_min_factor", 1e-4, 0.1, "log")]),
    ("ReduceLROnPlateau", "plateau", [("factor", 0.1, 0.7, "f"), ("patience", 0, 4, "int")]),
    ("OneCycleLR", "iteration", [("pct_start", 0.1, 0.5, "f"), ("div_factor", 5, 100, "log"),
                                 ("final_div_factor", 10, 1e4, "log")]),
    ("CosineAnnealingWarmRestarts", "epoch", [("T_0", 2, 10, "int"), ("T_mult", 1, 2, "int"),
                                              ("eta_min_factor", 1e-4, 0.1, "log")]),
    ("PolynomialLR", "epoch", [("power", 0.5, 3.0, "f")]),
    ("InverseTimeDecay", "iteration", [("decay", 1e-5, 1e-1, "log")]),
    ("WarmupCosine", "iteration", [("warmup_frac", 0.01, 0.3, "f"),
                                   ("eta_min_factor", 1e-4, 0.1, "log")]),
    ("WarmupStableDecay", "iteration", [("warmup_frac", 0.01, 0.2, "f"),
                                        ("decay_frac", 0.1, 0.6, "f"),
                                        ("end_factor", 1e-3, 0.1, "log")]),
]
SPEC = {name: (interval, params) for name, interval, params in FAMILIES}


def _shape(family: str, p: dict, e: int) -> float:
    """A plausible LR multiplier at epoch e (the benchmark needs realistic data, not torch)."""
    x = e / EPOCHS
    match family:
        case "StepLR":
            return p["gamma"] ** (e // p["step_size"])
        case "MultiStepLR":
            return p["gamma"] ** (e >= round(p["milestone_0"] * EPOCHS))
        case "ExponentialLR":
            return p["final_factor"] ** x
        case "CosineAnnealingLR" | "WarmupCosine" | "CosineAnnealingWarmRestarts":
            t = x if family != "CosineAnnealingWarmRestarts" else (e % p["T_0"]) / p["T_0"]
            warm = min(1.0, x / p["warmup_frac"]) if family == "WarmupCosine" else 1.0
            return warm * (p["eta_min_factor"] + 0.5 * (1 + math.cos(math.pi * t)))
        case "ReduceLROnPlateau":
            return p["factor"] ** (e // (p["patience"] + 4))
        case "OneCycleLR":
            return (x / p["pct_start"] if x < p["pct_start"] else 1 - x) + 1 / p["div_factor"]
        case "PolynomialLR":
            return (1 - x) ** p["power"] + 1e-4
        case "InverseTimeDecay":
            return 1 / (1 + p["decay"] * e * STEPS)
        case "WarmupStableDecay":
            return min(1.0, x / p["warmup_frac"], max(p["end_factor"], (1 - x) / p["decay_frac"]))
    return 1.0


def _kwargs(family: str, p: dict, lr: float) -> dict:
    """The exact torch kwargs, from the project's catalog (so `best`'s code path runs too)."""
    try:
        from search.schedules import SCHEDULES

        return SCHEDULES[family].kwargs(p, lr, EPOCHS, STEPS)
    except (ImportError, KeyError, TypeError):  # catalog moved on: the figures don't care
        return dict(p)


def objective(trial: optuna.Trial) -> float:
    """Suggest like search.space, write the attrs like search.runner, 'train' in microseconds."""
    family = trial.suggest_categorical("scheduler", [f for f, _, _ in FAMILIES])
    interval, spec = SPEC[family]
    p = {}
    for name, low, high, kind in spec:
        key = f"{family}.{name}"
        if kind == "int":
            p[name] = trial.suggest_int(key, low, high)
        else:
            p[name] = trial.suggest_float(key, low, high, log=kind == "log")
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    momentum = trial.suggest_float("momentum", 0.8, 0.99)
    wd = trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True)
    write = record.Writer(trial)
    write.built(None, _kwargs(family, p, lr), interval, STEPS, EPOCHS, None)
    write.optimizer({"name": "SGD", "lr": lr, "momentum": momentum, "nesterov": True,
                     "weight_decay": wd})
    rng = random.Random(trial.number)
    final = 0.93 - 0.04 * math.log10(lr / 0.08) ** 2 - 0.02 * (family == "Constant")
    final = max(0.1, final + rng.gauss(0, 0.015))
    prune_at = rng.randint(3, 8) if final < 0.86 and rng.random() < 0.7 else None
    lrs, accs, losses = [], [], []
    for e in range(EPOCHS):
        lrs.append(lr * _shape(family, p, e))
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
        lr * _shape(family, p, step // STEPS) for step in range(0, len(lrs) * STEPS, every)]))
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
