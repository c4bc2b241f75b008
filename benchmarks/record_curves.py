"""Record the learning-curve table that benchmarks/search_efficiency.py replays.

    .venv/bin/python benchmarks/record_curves.py record   # ~1 h on 2 CPU cores; resumable
    .venv/bin/python benchmarks/record_curves.py short    # ~10 min more: shorter runs
    .venv/bin/python benchmarks/record_curves.py export   # -> benchmarks/data/curves.json.gz
    .venv/bin/python benchmarks/record_curves.py slice    # -> tests/data/curves-slice.json.gz

`record` is two ordinary studies in their own store (default sqlite:///curves.db): `curves`
(benchmarks/curves.toml: random draws from lr-fashion's space, pruning off, test accuracy at the
end) and `curves-seed1`, the first quarter of those schedules again on a second seed, to know
the noise. Interrupted, it resumes: the search counts finished trials and retries the rest.
`short` trains the first schedules again as whole runs of fewer epochs (the same budget-free
schedule resolved for the shorter run, as `best --epochs` would print it), for successive
halving over training length; one JSON line per run in SHORT, skipped when already there.
`export` writes every finished trial (parameters, recorded schedule, applied LR, per-epoch
validation accuracy and loss, test accuracy) with the provenance of the recording.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState

from search import record as trial_record

HERE = Path(__file__).resolve().parent
STUDY_FILE = HERE / "curves.toml"
DATA = HERE / "data" / "curves.json.gz"
SLICE = HERE.parent / "tests" / "data" / "curves-slice.json.gz"
REPEAT = "curves-seed1"
SHORT = Path("curves-short.jsonl")
SHORT_EPOCHS = (2, 4)
FORMAT = 1


def _search(*args: str) -> None:
    jobs = os.environ.get("RECORD_JOBS", "1")  # worker processes, e.g. one per core
    cmd = [sys.executable, "-m", "search", "run", "--study", str(STUDY_FILE), "--jobs", jobs,
           *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=HERE.parent)


def record(storage: str, schedules: int, repeat: int) -> None:
    _search("--storage", storage, "--trials", str(schedules))
    first = optuna.load_study(study_name="curves", storage=storage)
    done = sorted((t for t in first.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))),
                  key=lambda t: t.number)[:repeat]
    again = optuna.create_study(study_name=REPEAT, storage=storage, direction="maximize",
                                load_if_exists=True)
    if not again.trials:  # the same schedules, enqueued once; the run below takes them first
        for t in done:
            trial_record.enqueue(again, trial_record.Enqueued(repeat_of=t.number),
                                 params=t.params)
    _search("--storage", storage, "--study-name", REPEAT, "--seed", "1",
            "--trials", str(len(done)))


def short(storage: str, n: int, path: Path = SHORT) -> None:
    import dataclasses

    from objectives import classify
    from search import config, schedules

    cfg = config.load_study(str(STUDY_FILE))
    done = set()
    if path.exists():
        done = {(r["trial"], r["epochs"]) for r in map(json.loads, path.read_text().splitlines())}
    study = optuna.load_study(study_name="curves", storage=storage)
    first = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                   key=lambda t: t.number)[:n]
    for epochs in SHORT_EPOCHS:
        train = dataclasses.replace(cfg.train, epochs=epochs, final_test=False)
        for t in first:
            if (t.number, epochs) in done:
                continue
            accs: list[float] = []
            classify.train(train, schedules.recorded(t),
                           lambda _e, _loss, acc, _lr, a=accs: a.append(float(acc)))
            with path.open("a") as f:
                f.write(json.dumps({"trial": t.number, "epochs": epochs, "val_acc": accs}) + "\n")
            print(f"trial {t.number} in {epochs} epochs: {accs[-1]:.4f}", flush=True)


def _round(xs: list[float | None], digits: int = 6) -> list[float | None]:
    return [None if x is None else float(f"{x:.{digits}g}") for x in xs]


def _rows(study: optuna.Study, seed: int) -> list[dict]:
    rows = []
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: t.number):
        r = trial_record.of(t)
        trace = r.lr_trace
        rows.append({
            "trial": t.number, "seed": seed, "repeat_of": r.repeat_of,
            "family": t.params["scheduler"], "params": t.params,
            "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
            "schedule": r.schedule,
            "lr_trace": {"every": trace["every"], "lr": _round(trace["lr"])},
            "val_acc": r.curve(trial_record.VAL_ACC_CURVE),
            "val_loss": _round(r.curve(trial_record.VAL_LOSS_CURVE)),
            "test_acc": r.test_acc, "test_loss": r.test_loss,
            "seconds": (t.datetime_complete - t.datetime_start).total_seconds(),
        })
    return rows


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def export(storage: str, out: Path, short_path: Path = SHORT, note: str = "") -> None:
    import torch

    from search import config

    cfg = config.load_study(str(STUDY_FILE))
    first = optuna.load_study(study_name="curves", storage=storage)
    rows = _rows(first, cfg.train.seed)
    try:
        rows += _rows(optuna.load_study(study_name=REPEAT, storage=storage), 1)
    except KeyError:
        pass
    if short_path.exists():  # {epochs: curve} of the whole shorter runs, per schedule
        runs = [json.loads(line) for line in short_path.read_text().splitlines()]
        for row in rows:
            mine = {str(r["epochs"]): r["val_acc"] for r in runs
                    if r["trial"] == row["trial"] and row["repeat_of"] is None}
            if mine:
                row["short"] = mine
    stamps = [t.datetime_start for t in first.trials if t.datetime_start]
    doc = {
        "format": FORMAT,
        "provenance": {
            "command": "benchmarks/record_curves.py record (benchmarks/curves.toml)",
            "recorded": f"{min(stamps):%Y-%m-%d %H:%M} to {max(stamps):%Y-%m-%d %H:%M} UTC"
            if stamps else None,
            "device": _cpu(), "python": platform.python_version(),
            "torch": torch.__version__, "optuna": optuna.__version__,
            "exported": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
            "conditions": note,
        },
        "setting": {"epochs": cfg.epochs, "train_subset": cfg.train.train_subset,
                    "val_fraction": cfg.train.val_fraction, "batch_size": cfg.train.batch_size,
                    "width": list(cfg.train.width), "dataset": cfg.train.dataset,
                    "short_epochs": list(SHORT_EPOCHS) if short_path.exists() else []},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wt", compresslevel=9) as f:
        json.dump(doc, f, separators=(",", ":"))
    tmp.replace(out)
    print(f"{len(rows)} recorded trainings -> {out} ({out.stat().st_size / 1024:.0f} KiB)")


def slice_table(src: Path, out: Path, n: int) -> None:
    """A random `n` of the table's first-seed schedules (seeded), for the regression test."""
    import random

    with gzip.open(src, "rt") as f:
        doc = json.load(f)
    first = [r for r in doc["rows"] if r["repeat_of"] is None]
    keep = sorted(random.Random(0).sample(range(len(first)), min(n, len(first))))
    doc["rows"] = [{k: v for k, v in first[i].items() if k not in ("lr_trace", "short")}
                   for i in keep]
    doc["provenance"]["slice"] = f"{len(keep)} of {len(first)} schedules (random, seed 0)"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", compresslevel=9) as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"{len(keep)} schedules -> {out} ({out.stat().st_size / 1024:.0f} KiB)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("record", "short", "export", "slice"))
    p.add_argument("--storage", default="sqlite:///curves.db")
    p.add_argument("--schedules", type=int, default=200)
    p.add_argument("--repeat", type=int, default=50, help="schedules trained on a second seed")
    p.add_argument("--short", type=int, default=60, help="schedules trained shorter")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--rows", type=int, default=60, help="slice: schedules kept")
    p.add_argument("--note", default="", help="export: the machine's load while recording")
    a = p.parse_args()
    if a.command == "record":
        record(a.storage, a.schedules, a.repeat)
    elif a.command == "short":
        short(a.storage, a.short)
    elif a.command == "export":
        export(a.storage, a.out or DATA, note=a.note)
    else:
        slice_table(DATA, a.out or SLICE, a.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
