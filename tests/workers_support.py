"""Helpers for the many-workers tests: study files, worker processes, a database per test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import ROOT

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"
ENV = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}


def write_study(
    where: Path, name: str = "fast", *, trials: int = 10, epochs: int = 3, sleep: float = 0.05,
    heartbeat: int = 1, grace: int = 10, pruner: str = "none",
) -> Path:
    """A study file over the fast fake objective (tests/fake_objectives.py)."""
    path = where / f"{name}.toml"
    path.write_text(f"""name = "{name}"
trials = {trials}
[objective]
function = "fake_objectives:train"
epochs = {epochs}
sleep = {sleep}
[space]
families = ["StepLR", "CosineAnnealingLR", "ExponentialLR", "Constant"]
lr = {{ low = 0.001, high = 1.0, log = true }}
[sampler]
name = "random"
[pruner]
name = "{pruner}"
[workers]
heartbeat_interval = {heartbeat}
grace_period = {grace}
""")
    return path


def start(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """`python -m search ...` in the background; output goes to files (no pipe fills up)."""
    out, err = (open(cwd / f"{tag}-{uuid.uuid4().hex[:6]}.log", "w+") for tag in ("out", "err"))
    proc = subprocess.Popen([sys.executable, "-m", "search", *args], cwd=cwd,
                            env={**os.environ, **ENV, **(env or {})}, stdout=out, stderr=err)
    proc.out, proc.err = out, err
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for `proc` (SIGKILL past the timeout, then fail): (code, stdout, stderr)."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
        proc.err.seek(0)
        pytest.fail(f"still running after {timeout} s: {proc.err.read()[-3000:]}")
    texts = []
    for f in (proc.out, proc.err):
        f.seek(0)
        texts.append(f.read())
    return code, texts[0], texts[1]


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = check()
        except Exception:  # the store may not exist yet, or be restarting
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def trials(url: str, name: str = "fast") -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    finally:
        storage.engine.dispose()


def finished(url: str, name: str = "fast") -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sum(t.state in states for t in trials(url, name))


def running(url: str, name: str = "fast") -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials(url, name) if t.state == optuna.trial.TrialState.RUNNING]


def check_exact(url: str, target: int, name: str = "fast") -> list[optuna.trial.FrozenTrial]:
    """The invariants of every many-workers run; returns the trials."""
    ts = trials(url, name)
    assert finished(url, name) == target
    assert sorted(t.number for t in ts) == list(range(len(ts)))  # unique and contiguous
    assert not [t.number for t in ts if t.state == optuna.trial.TrialState.RUNNING]
    return ts


def admin():
    import psycopg

    try:
        return psycopg.connect(ADMIN, autocommit=True)
    except psycopg.OperationalError as e:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({e}); see .ci/run")


def cluster(action: str) -> None:
    """Stop or start the whole local PostgreSQL cluster."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
                   check=True, capture_output=True, timeout=60)
    if action == "start":
        wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0,
                 30, "PostgreSQL to accept connections")


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for this test only, dropped afterwards."""
    name = f"schedsearch_{uuid.uuid4().hex[:12]}"
    with admin() as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG + name
    finally:
        if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode != 0:
            cluster("start")
        with admin() as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
