"""What one claim costs as a study grows: 2,000 and 20,000 finished trials, SQLite and PostgreSQL.

    .venv/bin/python benchmarks/claim_cost.py                          # both back ends
    .venv/bin/python benchmarks/claim_cost.py --sizes 2000 --backends sqlite --repeats 5

1. A fresh store per size: a study and N COMPLETE trials written straight into optuna's
   tables (`compat.insert_trials`), each with a value and the curves a 30-epoch trial records
   (three lists of 30 floats), no training.
2. A worker opens it as `run` does (`claim.open_for`: optuna's cache, retries, heartbeats) and
   the claim protocol is timed in this process:
   - `counters`: the policy's question under the claim lock (`claim.Count`: how many trials
     are finished and running), on a fresh worker (`cold`: the first call) and then the median
     of `--repeats` calls (`warm`);
   - `claim`: a whole claim (`Claimer.claim`: the lock, the stale sweep, the counters,
     `study.ask()` with the random sampler, the claim's writes), cold on another fresh worker,
     then the median of `--repeats` claims (each claimed trial is told COMPLETE, untimed).
   Optuna's `ask()` reads every trial into its cache on a worker's first claim whatever the
   counters do (TPE reads them all on every claim), so `cold` is mostly optuna's.
3. One markdown row per size and back end, with the 1-minute load average at that moment.
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

from storage import pg_store  # noqa: E402 (benchmarks/storage.py: a database per run)

from search import record  # noqa: E402

CURVE = [round(0.5 + 0.01 * i, 4) for i in range(30)]
ATTRS = {record.VAL_ACC_CURVE: CURVE, record.VAL_LOSS_CURVE: CURVE, record.LR_CURVE: CURVE}


def populate(url: str, n: int) -> None:
    import optuna

    from search import compat, storage

    store = storage.resilient(url)
    study = optuna.create_study(study_name="bench", storage=store, direction="maximize")
    compat.insert_trials(store, compat.study_id(study), [0.5 + i / (4 * n) for i in range(n)],
                         ATTRS)
    compat.rdb_of(store).engine.dispose()


def worker(url: str):
    """A study opened as a worker opens it: cached, resilient, with heartbeats."""
    import optuna

    from search.config import WorkersConfig
    from search.engine import claim

    store = claim.open_for(WorkersConfig(heartbeat_interval=30, grace_period=120), url)
    return optuna.load_study(study_name="bench", storage=store,
                             sampler=optuna.samplers.RandomSampler(seed=0))


def ms(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - began)


def measure(url: str, n: int, repeats: int) -> dict[str, float]:
    import warnings

    from search import compat
    from search.engine import claim

    warnings.filterwarnings("ignore", "Heartbeat of storage")
    policy = claim.Count(n + 10 * repeats + 10)
    out = {}
    study = worker(url)
    out["counters cold"] = ms(lambda: policy(study, True))
    out["counters warm"] = statistics.median(ms(lambda: policy(study, True))
                                             for _ in range(repeats))
    compat.rdb_of(compat.storage_of(study)).engine.dispose()
    study = worker(url)
    claimer, times = claim.Claimer(study, 120.0), []
    for _ in range(repeats + 1):
        began = time.perf_counter()
        trial = claimer.claim(policy)
        times.append(1000 * (time.perf_counter() - began))
        study.tell(trial, 0.5)
    out["claim cold"], out["claim warm"] = times[0], statistics.median(times[1:])
    compat.rdb_of(compat.storage_of(study)).engine.dispose()
    return out


def sqlite_store(d: str) -> tuple[str, Callable[[], None]]:
    return f"sqlite:///{Path(d) / f'{uuid.uuid4().hex}.db'}", lambda: None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                   choices=["sqlite", "postgresql"])
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keys = ["counters cold", "counters warm", "claim cold", "claim warm"]
    print("| back end | trials | " + " | ".join(f"{k} (ms)" for k in keys) + " | load (1 min) |")
    print("| --- | ---: | " + " | ".join("---:" for _ in keys) + " | ---: |")
    with tempfile.TemporaryDirectory() as d:
        for backend in a.backends:
            for n in a.sizes:
                url, drop = sqlite_store(d) if backend == "sqlite" else pg_store()
                try:
                    populate(url, n)
                    got = measure(url, n, a.repeats)
                finally:
                    drop()
                cells = " | ".join(f"{got[k]:.1f}" for k in keys)
                print(f"| {backend} | {n:,} | {cells} | {os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
