from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cifar_fixture import write_cifar_fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reads the user's cache or storage settings, or writes into the repo."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SEARCH_STORAGE", raising=False)
    monkeypatch.delenv("SEARCH_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets: one torch thread beats two (OpenMP threads spin-wait for a busy core)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """A small data set in the real CIFAR-10 python-pickle format."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_fixture(root, n_train=600, n_test=200)
    return root


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300):
    """`python -m search ...` in a subprocess, as a user types it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "search", *args], cwd=cwd, env=full_env, capture_output=True,
        text=True, timeout=timeout,
    )


def dump(db: Path) -> list[str]:
    """Every row of a SQLite store, to check that nothing stored changed."""
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


def applied_lrs(code: str, losses, more: int = 0) -> list[float]:
    """Run a module printed by `best` as its STEP says: the LR applied at every optimizer step
    (and for `more` epochs past the run, to see where the schedule goes after its end)."""
    import torch

    ns: dict = {}
    exec(compile(code, "best.py", "exec"), ns)
    opt, sched = ns["make_optimizer_and_scheduler"]([torch.nn.Parameter(torch.zeros(1))])
    out = []
    for epoch in range(ns["EPOCHS"] + more):
        try:
            for _ in range(ns["STEPS_PER_EPOCH"]):
                out.append(opt.param_groups[0]["lr"])
                opt.step()
                if ns["STEP"] == "batch":
                    sched.step()
        except ValueError:  # past the end of a schedule that cannot go on (OneCycleLR)
            if epoch < ns["EPOCHS"]:
                raise
            return out[:-1]
        if ns["STEP"] == "epoch":
            sched.step()
        elif ns["STEP"] == "val_loss":
            sched.step(losses[epoch])
    return out


def step_through(optimizer, schedule, epochs: int, steps: int, losses=None, report=None):
    """A toy training loop stepping `schedule` on `optimizer` as the objectives do (no data):
    the returned Built's `trace` holds the LR applied at every optimizer step (every 1 for runs
    of up to schedules.TRACE_POINTS steps). `report(epoch, val_loss, val_acc, lr)` as classify
    calls it, with a constant accuracy."""
    from search import schedules

    built = schedules.build(optimizer, schedule, steps, epochs)
    for epoch in range(epochs):
        lr = optimizer.param_groups[0]["lr"]
        for _ in range(steps):
            optimizer.step()
            built.after_batch()
        loss = losses[epoch] if losses else 1.0
        built.after_epoch(loss)
        if report is not None:
            report(epoch, loss, 0.5, lr)
    return built
