"""Worker processes on this machine (`run --jobs N`, `validate --jobs N`), spread over GPUs.

The parent spawns N processes, each running one trial loop (sequential or array, see
`engine.claim`) on the shared study; it forwards SIGTERM/Ctrl-C to them, reports a worker that
died, and waits. A job travels over stdin as a pickle (never on a command line: `ps` shows
those, and the storage URL may hold a password); its `call` is a function named by module
and name, so this module imports nothing of the commands that use it.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search import record, storage
from search.config import StudyConfig, load_objective
from search.engine import array as arrays
from search.engine import sequential
from search.engine.claim import count, join, open_for
from search.engine.signals import Interrupted, Signals
from search.errors import UserError
from search.progress import Display, notify

__all__ = ["gpu_plan", "run_many", "search_worker", "supervise", "visible_gpus"]

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("search.engine")


def visible_gpus(device: str) -> list[str]:
    """The CUDA device ids workers may be spread over (none unless device is auto/cuda)."""
    if device not in ("auto", "cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    ids = [str(i) for i in range(torch.cuda.device_count())]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:  # already narrowed by the user: keep to those
        ids = [s.strip() for s in env.split(",") if s.strip()][: len(ids)]
    return ids


def gpu_plan(jobs: int, per_gpu: int, gpus: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker: round robin, at most `per_gpu` on one GPU."""
    if not gpus:
        return [None] * jobs
    if jobs > len(gpus) * per_gpu:
        raise UserError(
            f"`--jobs` must be at most {len(gpus)} GPUs x --workers-per-gpu {per_gpu} = "
            f"{len(gpus) * per_gpu} but got {jobs}; raise --workers-per-gpu to share a GPU")
    return [gpus[i % len(gpus)] for i in range(jobs)]


def _spawn(job: dict[str, Any], gpu: str | None, jobs: int) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.getcwd(),
                                                    env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    proc = subprocess.Popen([sys.executable, "-m", "search.engine.workers"],
                            stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None  # stdin=PIPE
    proc.stdin.write(pickle.dumps(job))
    proc.stdin.close()
    return proc


def supervise(call: Callable[..., Any], args: tuple, jobs: int, gpus: list[str | None],
              sig: Signals, tick: Callable[[], None] = lambda: None) -> list[int]:
    """Run `call(*args, share=...)` in `jobs` worker processes and wait: their exit codes.

    `share`: how many workers the worker's GPU holds (1 on a CPU). Signals received by this
    process (`sig`, installed by the caller) are forwarded; `tick` runs twice a second.
    """
    procs: list[subprocess.Popen] = []
    try:
        for i in range(jobs):
            job = {"call": call, "args": args, "share": gpus.count(gpus[i]) if gpus[i] else 1,
                   "index": i, "parent": os.getpid()}
            procs.append(_spawn(job, gpus[i], jobs))
        forwarded, reported = None, set()
        while [p.poll() for p in procs].count(None):  # poll each: exit codes are read
            if sig.received is not None and forwarded != sig.received:
                forwarded = sig.received
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(sig.received)
            tick()
            for i, p in enumerate(procs):
                if p.returncode not in (None, 0, 130) and i not in reported:
                    reported.add(i)
                    log.warning("worker %d exited with %s; the others go on (its trial is "
                                "retried after the grace period)", i, _describe(p.returncode))
            time.sleep(0.5)
    finally:
        for p in procs:  # the parent is leaving (an error): so do its workers
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
    return [p.returncode for p in procs]


def search_worker(cfg: StudyConfig, url: str, target: int, array: int | None,
                  share: int = 1) -> None:
    """One worker of `run --jobs`: an array where one is asked for or fits a GPU, else the
    sequential loop. K is picked here, after CUDA_VISIBLE_DEVICES gave the worker its GPU."""
    k = arrays.array_size(cfg, array, share)
    if k is None:
        sequential.work(cfg, url, target)
    else:
        arrays.run(cfg, url, target, k=k)


def _show_new(study: optuna.Study, seen: set[int], progress: Display | None) -> None:
    """The trials the workers ended since the last look, then what each worker trains now."""
    try:
        trials = study.get_trials(deepcopy=False, states=record.FINISHED + (
            TrialState.FAIL, TrialState.RUNNING))
    except Exception as e:
        if storage.is_transient(e):
            return  # the workers wait for the database; the display just skips a beat
        raise
    for t in sorted(trials, key=lambda t: t.number):
        if t.state != TrialState.RUNNING and t.number not in seen:
            seen.add(t.number)
            if progress is not None:
                progress.trial_finished(study, t)
    notify(progress, "track", [t for t in trials if t.state == TrialState.RUNNING])


def run_many(
    cfg: StudyConfig, url: str, target: int, jobs: int, per_gpu: int = 1,
    progress: Display | None = None,
    array: int | None = None,
) -> tuple[optuna.Study, int]:
    """Start `jobs` worker processes on the study and wait for them: (study, exit code).

    `array`: each worker trains fused arrays of that many trials (None: as `run` picks it,
    from the worker's share of its GPU's free memory; sequential on a CPU).
    """
    gpus = gpu_plan(jobs, per_gpu, visible_gpus(cfg.train.device))
    load_objective(cfg.objective)  # bad input fails once here, not once per worker
    store = open_for(cfg.workers, url)
    study, _ = join(cfg, store, worker=0)  # created here, once; no seed index taken
    seen = {t.number for t in study.get_trials(
        deepcopy=False, states=record.FINISHED + (TrialState.FAIL,))}
    before = set(seen)
    if progress is not None:
        progress.start(study, target)
        if cfg.contest is not None:  # the ETA counts the contest's remaining stages
            from search.contest import work as contest_work

            notify(progress, "plan", contest_work.tracker(cfg, target, study))
        notify(progress, "parallel", jobs)
        notify(progress, "phase", f"starting {jobs} worker processes")
    with Signals(store) as sig:
        codes = supervise(search_worker, (cfg, url, target, array), jobs, gpus, sig,
                          lambda: _show_new(study, seen, progress))
    _show_new(study, seen, progress)
    if sig.received == signal.SIGINT:  # the workers closed their trials: say which
        raise Interrupted(sorted(
            t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
            if t.number not in before
            and record.of(t).end_reason == record.End.INTERRUPTED))
    if sig.terminated or storage.retry(lambda: count(study)) >= target:
        return study, 0
    return study, exit_code(codes)


def exit_code(codes: list[int]) -> int:
    """The run's exit code from its workers': 0, else the worst (a signal counts as 1)."""
    return max((c if c > 0 else 1) for c in codes if c != 0) if any(codes) else 0


def _describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"code {code}"


def _die_with_parent(parent: int) -> None:
    """A worker gets SIGTERM when its parent dies (Linux), ending its trial cleanly."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before we got here
        os.kill(os.getpid(), signal.SIGTERM)


def child_main() -> int:
    """Entry of one worker process started by `supervise` (its job arrives on stdin)."""
    job = pickle.load(sys.stdin.buffer)
    logging.basicConfig(level=logging.WARNING, format=f"worker {job['index']}: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        _die_with_parent(job["parent"])
        job["call"](*job["args"], share=job["share"])
    except UserError as e:
        print(f"worker {job['index']}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    from search.engine.workers import child_main as _main  # the module, not this __main__ copy

    raise SystemExit(_main())
