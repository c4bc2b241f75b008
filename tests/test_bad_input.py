"""Generated study files: every one runs cleanly or is refused in one line, exit 2, store empty.

Hypothesis writes study files of the right and wrong shapes (wrong types, NaN and inf, extreme
and tiny numbers, missing and extra tables, deep nesting, long and odd strings, binary
bytes) and each is run as `python -m search run --study FILE --trials 1` on a tiny CIFAR
fixture, in a child process with a timeout (tests/bad_inputs/driver.py: forked from one warm
process, so a case costs milliseconds, not the seconds of importing torch).

Reproducible: a fixed seed, and failing examples kept in tests/bad_inputs/hypothesis-db.
BAD_INPUT_EXAMPLES=N tries N files (default 200, under a minute on 2 cores);
BAD_INPUT_TALLY=FILE appends the outcome counts as JSON (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import optuna
import pytest
from conftest import ROOT, dump
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from search import cli

EXAMPLES = int(os.environ.get("BAD_INPUT_EXAMPLES", "200"))
TIMEOUT_S = 60  # one tiny trial takes about a second; a minute is a hang
SECRET = "hunter2PASSWORD"
DB = DirectoryBasedExampleDatabase(str(Path(__file__).parent / "bad_inputs" / "hypothesis-db"))

BASE: dict = {
    "name": "gen",
    "trials": 1,
    "seed": 0,
    "objective": {"dataset": "cifar10", "epochs": 1, "batch_size": 32, "width": [4, 4, 4],
                  "train_subset": 64, "val_fraction": 0.25},
    "space": {"families": ["Constant", "StepLR"], "lr": {"low": 0.01, "high": 0.5},
              "StepLR": {"gamma": {"low": 0.1, "high": 0.5}}},
    "sampler": {"name": "random"},
    "pruner": {"name": "none"},
}
KEYS = {  # the keys a mutation may touch, per table ("" = top level); plus made-up ones
    "": ["name", "trials", "seed", "storage", "description", "objective", "space", "sampler",
         "pruner", "workers", "limits", "epoch"],
    "objective": ["dataset", "epochs", "batch_size", "width", "train_subset", "val_fraction",
                  "label_smoothing", "seed", "device", "augment", "function", "holdout"],
    "space": ["families", "lr", "momentum", "weight_decay", "warmup_epochs", "default_lr",
              "enqueue_defaults", "StepLR", "OneCycleLR"],
    "sampler": ["name", "n_startup_trials", "multivariate", "group"],
    "pruner": ["name", "n_startup_trials", "n_warmup_steps", "min_resource",
               "reduction_factor"],
    "workers": ["heartbeat_interval", "grace_period", "max_retry"],
    "limits": ["epochs", "trials", "lr", "width"],
    "space.StepLR": ["gamma", "step_size", "gama"],
    "space.OneCycleLR": ["pct_start", "div_factor", "final_div_factor"],
}

# Numbers: in-range ones are small (a valid file trains one tiny trial), the rest extreme.
numbers = st.sampled_from([
    0, 1, 2, 3, -1, 0.5, 0.05, 1.5, 5, 100, -0.0, 1e-300, 5e-324, 1e300, 1e308, -1e308,
    math.nan, math.inf, -math.inf, 2**31, 2**63 - 1, -(2**63), 10**9, 100_001,
])
odd_strings = st.one_of(
    st.sampled_from(["", " ", "cpu", "cuda", "cuda:7", "potato", "all", "tpe", "none",
                     "random", "StepLr", "cifar10", "mnist", "x" * 5000, "../../etc/passwd",
                     "a:b", "no.such.module:fn", "os:system", "name with spaces", "\u00e9t\u00e9",
                     "\x00", "line\nbreak", f"postgresql+psycopg://u:{SECRET}@db/x"]),
    st.text(max_size=30),
)
leaf = st.one_of(numbers, odd_strings, st.booleans())
values = st.recursive(
    leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["low", "high", "log", "x"]), inner,
                                            max_size=3)),
    max_leaves=8,
)
mutation = st.tuples(st.sampled_from(sorted(KEYS)), st.data())


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if -(2**63) <= v < 2**63 else f"{float(v)!r}"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) \
            else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(doc: dict) -> str:
    """A TOML document: top-level values, then each table (sub-tables as dotted headers)."""
    lines, tables = [], []
    for k, v in doc.items():
        (tables if isinstance(v, dict) else lines).append((k, v))
    out = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in lines]
    for name, table in tables:
        inner = {k: v for k, v in table.items() if not isinstance(v, dict) or k in ("lr",)
                 or k[:1].islower()}
        out.append(f"[{_toml_key(name)}]")
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in inner.items()]
        for k, v in table.items():
            if k not in inner:
                out.append(f"[{_toml_key(name)}.{_toml_key(k)}]")
                out += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"


@st.composite
def study_files(draw) -> bytes:
    kind = draw(st.sampled_from(["mutated"] * 8 + ["raw", "nested", "minimal"]))
    if kind == "raw":  # binary junk, truncated TOML, empty files
        return draw(st.one_of(st.binary(max_size=64), st.just(b""),
                              st.just(to_toml(BASE)[:draw(st.integers(0, 200))].encode())))
    if kind == "nested":  # RecursionError territory for naive readers
        n = draw(st.sampled_from([10, 500, 5000, 100_000]))
        key = draw(st.sampled_from(["x", "trials", "objective"]))
        return f"{key} = {'[' * n}{']' * n}\n".encode()
    doc = json.loads(json.dumps(BASE))
    if kind == "minimal":
        doc = {k: v for k, v in doc.items() if draw(st.booleans())}
    for table, data in draw(st.lists(mutation, max_size=3)):
        target = doc
        for part in [p for p in table.split(".") if p]:
            node = target.get(part)
            if not isinstance(node, dict):
                node = target[part] = {}
            target = node
        key = data.draw(st.one_of(st.sampled_from(KEYS[table]), st.text(max_size=8)))
        if data.draw(st.integers(0, 5)) == 0:
            target.pop(key, None)  # a missing key or table
        elif not (table == "limits" and isinstance(target.get(key), int | float)):
            target[key] = data.draw(values)
    return to_toml(doc).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def driver(cifar_dir):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "bad_inputs" / "driver.py")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    tally: Counter = Counter()
    # An empty store with optuna's tables, copied for each case: creating them costs a second
    template = Path(tempfile.mkdtemp(prefix="template-")) / "s.db"
    optuna.storages.RDBStorage(f"sqlite:///{template}")

    def run(text: bytes) -> tuple[dict, str, str, Path]:
        case = Path(tempfile.mkdtemp(prefix="case-"))
        (case / "gen.toml").write_bytes(text)
        shutil.copy(template, case / "s.db")
        args = ["run", "--study", str(case / "gen.toml"), "--trials", "1", "--data-dir",
                str(cifar_dir), "--storage", f"sqlite:///{case / 's.db'}"]
        proc.stdin.write(json.dumps({"args": args, "cwd": str(case), "timeout": TIMEOUT_S})
                         + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        out, err = ((case / n).read_text(errors="replace") for n in ("stdout", "stderr"))
        return answer, out, err, case

    run.tally = tally
    yield run
    proc.stdin.close()
    proc.wait(timeout=30)
    if os.environ.get("BAD_INPUT_TALLY"):
        with open(os.environ["BAD_INPUT_TALLY"], "a") as f:
            f.write(json.dumps({"kind": "study files", **tally}) + "\n")


def _studies_in(db: Path) -> list:
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        try:
            return con.execute("select study_name from studies").fetchall()
        except sqlite3.OperationalError:  # no tables: nothing was stored
            return []


def outcome(answer: dict, err: str, case: Path) -> str:
    if answer["hung"]:
        return "hang"
    if "Traceback" in err or answer["code"] not in (0, 2):
        return "traceback"
    if answer["code"] == 0:
        return "clean"
    lines = err.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return "not one line"
    if _studies_in(case / "s.db"):
        return "refused but stored"
    return "refused"


def _base_with(old: str, new: str) -> bytes:
    return to_toml(BASE).replace(old, new, 1).encode()


@seed(11)
@example(text=_base_with("batch_size = 32", "batch_size = []"))  # found by this test
@example(text=b"")  # an empty file: refused, not the default CIFAR study
@example(text=b"\x89PNG\r\n\x1a\n\x00\xff")
@example(text=_base_with('name = "gen"', f'storage = ["postgresql+psycopg://u:{SECRET}@db/x"]'))
@example(text=_base_with("epochs = 1", "epochs = 1000000000"))  # used to train until killed
@settings(max_examples=EXAMPLES, deadline=None, database=DB, derandomize=False,
          suppress_health_check=list(HealthCheck))
@given(text=study_files())
def test_every_generated_study_file_runs_or_is_refused_in_one_line(driver, text):
    answer, out, err, case = driver(text)
    result = outcome(answer, err, case)
    driver.tally[result] += 1
    driver.tally[f"seconds {result}"] += answer["seconds"]
    assert SECRET not in out + err
    assert result in ("clean", "refused"), f"{result}: exit {answer['code']}\n{err[-3000:]}"
    if result == "clean":
        assert "1 finished trials" in out


# A reading command (`best`, `validate`, `report`, `dashboard`) naming a study that is not
# stored: a name close to a stored study's is "did you mean" it, with the command that reads it
# and no study to run; a bad --study-name is its own line. One line, exit 2, the store as it was.


@pytest.mark.parametrize("args, line", [
    (["best", "--study", "lr-fashoin"],  # a typo'd --study: the stored name
     "no study 'lr-fashoin' in {url}; did you mean 'lr-fashion'? `python -m search best "
     "--study lr-fashion --storage {url}` reads it"),
    (["report", "--study", "lr-fashion", "--study-name", "lr-fashoin"],  # its file's own study
     "no study 'lr-fashoin' in {url}; did you mean 'lr-fashion'? `python -m search report "
     "--study lr-fashion --storage {url}` reads it"),
    (["dashboard", "--study", "lr", "--study-name", "lr-cpuu"],  # a study run with --study-name
     "no study 'lr-cpuu' in {url}; did you mean 'lr-cpu'? `python -m search dashboard "
     "--study lr --study-name lr-cpu --storage {url}` reads it"),
    (["validate", "--study", "lr-fashion-adamw"],  # another shipped study's: by its own file
     "no study 'lr-fashion-adamw' in {url}; did you mean 'lr-fashion'? `python -m search "
     "validate --study lr-fashion --storage {url}` reads it"),
    (["best", "--study", "lr", "--study-name", "unrelated"],  # nothing close: start it
     "no study 'unrelated' in {url}; run `python -m search run --study lr --study-name "
     "unrelated --storage {url}` first"),
    (["best", "--study", "lr-fashion", "--study-name", "a b"],  # never the file's study instead
     "`--study-name` must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter "
     "or digit but got 'a b'; it names files and database rows"),
])
def test_a_reading_command_on_a_mistyped_study_names_the_stored_one(tmp_path, capsys, args,
                                                                     line):
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    for name in ("lr-fashion", "lr-fashion.validate", "lr-cpu"):
        optuna.create_study(storage=url, study_name=name)
    before = dump(db)
    code = cli.main([*args, "--storage", url])
    assert (code, capsys.readouterr().err) == (2, f"error: {line.format(url=url)}\n")
    assert dump(db) == before
