"""Finished trials per second with 1, 4 and 8 worker processes, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/storage.py                      # both back ends, 1 4 8 workers
    .venv/bin/python benchmarks/storage.py --workers 1 2 --trials-per-worker 10

1. The objective is trivial (no training, no sleep) but the trial's storage traffic is the
   real one: the conditional space is suggested (`scheduler` + its parameters), and `report`
   is called for 3 epochs (intermediate value + 3 curve attributes each), as in a search.
2. Each configuration gets a fresh store (a temporary SQLite file in WAL mode, or a new
   PostgreSQL database on 127.0.0.1 that is dropped afterwards) and runs through
   `workers.run_many`: separate processes, the claim lock, heartbeats, the retry wrapper.
3. Measured from the first trial's start to the last trial's end (process start-up is not
   counted): finished trials per second, and the worker time per trial in ms
   (workers x span / trials: with an objective that costs ~0, that is storage + sampler).
4. Then one worker in this process with every storage call timed: the storage time per trial
   in ms and its share of the trial loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPOCHS = 3
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def trivial(cfg, schedule, report) -> float:
    """The objective: costs nothing but reports like a real one."""
    acc = 0.0
    for epoch in range(cfg.epochs):
        acc = 0.5 + 0.1 * epoch / cfg.epochs
        report(epoch, 1.0 - acc, acc, schedule.lr)
    return acc


STUDY = f"""name = "bench"
[objective]
function = "benchmarks.storage:trivial"
epochs = {EPOCHS}
[space]
families = "all"
enqueue_defaults = false
[sampler]
name = "random"
[pruner]
name = "none"
"""


def measure(url: str, workers: int, trials: int) -> dict:
    import optuna

    from search.config import load_study
    from search.engine import workers as engine

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.toml"
        path.write_text(STUDY)
        cfg = load_study(str(path))
        began = time.perf_counter()
        study, code = engine.run_many(cfg, url, trials, workers)
        wall = time.perf_counter() - began
    assert code == 0, f"workers exited with {code}"
    ts = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(ts) == trials, (len(ts), trials)
    span = (max(t.datetime_complete for t in ts) - min(t.datetime_start for t in ts))
    span_s = span.total_seconds()
    in_trial = statistics.median((t.datetime_complete - t.datetime_start).total_seconds()
                                 for t in ts)
    from search import compat

    compat.rdb_of(compat.storage_of(study)).engine.dispose()
    return {"trials_per_s": trials / span_s, "worker_ms": 1000 * workers * span_s / trials,
            "in_trial_ms": 1000 * in_trial, "wall_s": wall}


def storage_share(url: str, trials: int) -> tuple[float, float]:
    """One worker in this process: (ms per trial in all, ms of it inside storage calls)."""
    import threading

    from search import compat, storage
    from search.config import load_study
    from search.engine import claim, sequential

    spent, depth, real = [0.0], threading.local(), storage.Resilient._call

    def timed(self, method, *args, **kwargs):  # outermost calls only (some nest)
        if getattr(depth, "n", 0):
            return real(self, method, *args, **kwargs)
        depth.n, began = 1, time.perf_counter()
        try:
            return real(self, method, *args, **kwargs)
        finally:
            depth.n = 0
            spent[0] += time.perf_counter() - began

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.toml"
        path.write_text(STUDY)
        cfg = load_study(str(path))
        store = claim.open_for(cfg.workers, url)
        sequential.work(cfg, store, 2)  # warm up: imports, tables, first queries
        storage.Resilient._call, spent[0] = timed, 0.0
        try:
            began = time.perf_counter()
            sequential.work(cfg, store, 2 + trials)
            total = time.perf_counter() - began
        finally:
            storage.Resilient._call = real
        compat.rdb_of(store).engine.dispose()
    return 1000 * total / trials, 1000 * spent[0] / trials


def sqlite_store(d: str) -> str:
    return f"sqlite:///{Path(d) / f'{uuid.uuid4().hex}.db'}"


def pg_store() -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return PG_URL + name, drop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--trials-per-worker", type=int, default=20)
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                   choices=["sqlite", "postgresql"])
    a = p.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    print(f"{os.cpu_count()} CPUs; trivial objective, {EPOCHS} reported epochs a trial, "
          "random sampler")
    print(f"{'backend':<11} {'workers':>7} {'trials':>6} {'trials/s':>9} {'x 1 worker':>10} "
          f"{'worker ms/trial':>15} {'ms in trial':>11} {'wall s':>7}")
    with tempfile.TemporaryDirectory() as d:
        for backend in a.backends:
            base = None
            for n in a.workers:
                trials = n * a.trials_per_worker
                if backend == "sqlite":
                    url, drop = sqlite_store(d), (lambda: None)
                else:
                    url, drop = pg_store()
                try:
                    r = measure(url, n, trials)
                finally:
                    drop()
                base = base or r["trials_per_s"]
                print(f"{backend:<11} {n:>7} {trials:>6} {r['trials_per_s']:>9.1f} "
                      f"{r['trials_per_s'] / base:>10.2f} {r['worker_ms']:>15.0f} "
                      f"{r['in_trial_ms']:>11.0f} {r['wall_s']:>7.1f}", flush=True)
        print("\none worker in this process, storage calls timed (claim lock and sweep "
              "queries not included):")
        for backend in a.backends:
            url, drop = (sqlite_store(d), lambda: None) if backend == "sqlite" else pg_store()
            try:
                total, in_storage = storage_share(url, a.trials_per_worker)
            finally:
                drop()
            print(f"{backend:<11} {total:6.1f} ms per trial, {in_storage:6.1f} ms of it in "
                  f"storage calls ({in_storage / total:.0%})", flush=True)


if __name__ == "__main__":
    main()
