"""The trial record (search/record.py) is the one place that names a trial's or a study's
attributes: what is enqueued reads back as enqueued, what training writes reads back typed, and
no module outside it touches user or system attributes."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search import record
from search.record import End, Enqueued

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("search", "dashboards", "benchmarks", "objectives")
# Where attributes may be touched: the record, and compat's store-level writes of a mapping
# the record built (search/compat.py: fail_running, add_complete).
ALLOWED = {"search/record.py", "search/compat.py",
           # optuna-dashboard's own study system attributes (its figures), no trial record
           "dashboards/figures.py"}
ATTRS = {"user_attrs", "system_attrs"}
WRITES = {"set_user_attr", "set_system_attr", "set_trial_user_attr", "set_trial_system_attr",
          "set_study_user_attr", "set_study_system_attr", "get_study_system_attrs",
          "get_study_user_attrs"}


def uses(source: str) -> list[str]:
    """Every read or write of user or system attributes in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and (node.attr in ATTRS or node.attr in WRITES):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.keyword) and node.arg == "user_attrs":
            found.append(f"line {node.value.lineno}: user_attrs={ast.unparse(node.value)}")
    return found


def test_no_attribute_access_outside_the_record():
    offenders = []
    for path in sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        offenders += [f"{rel} {u}" for u in uses(path.read_text(encoding="utf-8"))]
    assert not offenders, "read and write trial attributes through search.record:\n" + (
        "\n".join(offenders))


def test_the_scan_finds_each_kind_of_access():
    source = ("a = t.user_attrs\nt.set_user_attr('x', 1)\nstore.set_trial_system_attr(1, 'k', 2)\n"
              "study.enqueue_trial({}, user_attrs={'k': 1})\nb = t.system_attrs['w']\n")
    assert len(uses(source)) == 5
    assert uses("r = record.of(t).epochs\n") == []


def test_enqueued_fields_are_the_stored_keys():
    """Each tag is stored under its own name, and read back by the property of that name."""
    names = {f.name for f in dataclasses.fields(Enqueued)} - {"schedule", "default"}
    for name in names:
        assert isinstance(getattr(record.Record, name), property), name


@pytest.fixture
def study():
    return optuna.create_study(direction="maximize")


def test_an_enqueued_run_reads_back_as_enqueued(study):
    run = Enqueued(schedule={"family": "CosineAnnealingLR", "lr": 0.3}, seed=7, epochs=4,
                   holdout="val", optimizer_name="adamw", stage="reference", contender="c1",
                   label="cosine", slot="cos", grid_step=-1, source_trial=3, validate_key="k",
                   roles=("baseline", "sweep"), sweep_for="cos", searched_study="lr")
    record.enqueue(study, run)
    trial = study.ask()
    r = record.of(trial)
    assert r.is_fixed and r.fixed == {"family": "CosineAnnealingLR", "lr": 0.3}
    assert (r.seed, r.epochs, r.holdout, r.optimizer_name) == (7, 4, "val", "adamw")
    assert (r.stage, r.contender, r.label, r.slot, r.grid_step) == (
        "reference", "c1", "cosine", "cos", -1)
    assert (r.source_trial, r.validate_key, r.roles, r.sweep_for, r.searched_study) == (
        3, "k", ("baseline", "sweep"), "cos", "lr")
    assert not r.default and record.family_of(trial) == "CosineAnnealingLR"
    study.tell(trial, 0.5)
    frozen = study.trials[-1]
    assert record.of(frozen).attrs == record.of(trial).attrs


def test_a_default_is_sampled_and_marked(study):
    record.enqueue(study, Enqueued(default=True), params={"lr": 0.1})
    trial = study.ask()
    trial.suggest_float("lr", 1e-3, 1.0)
    r = record.of(trial)
    assert r.default and not r.is_fixed and r.fixed is None and r.holdout == "test"


def test_what_training_writes_reads_back_typed(study):
    trial = study.ask()
    w = record.Writer(trial)
    w.built({"family": "StepLR", "lr": 0.1}, {"step_size": 3}, "epoch", 17, 5, None)
    w.optimizer({"name": "SGD", "lr": 0.1})
    w.epoch([0.1, 0.05], {"val_acc": [0.5, None], "val_loss": [1.0, None], "bleu": [3, 4]},
            (4, [0.1, 0.1]))
    w.test(0.3, 0.91)
    w.end(End.NON_FINITE)
    r = record.of(study.tell(trial, state=optuna.trial.TrialState.PRUNED))
    assert r.schedule == {"family": "StepLR", "lr": 0.1} and r.scheduler_kwargs == {
        "step_size": 3}
    assert (r.interval, r.steps_per_epoch, r.epochs, r.warmup) == ("epoch", 17, 5, None)
    assert r.optimizer == {"name": "SGD", "lr": 0.1} and r.lr == 0.1
    assert r.val_acc_curve == [0.5, None] and record.epochs_trained(study.trials[-1]) == 2
    assert r.curve(record.LR_CURVE) == [0.1, 0.05]
    assert r.metric_curve("bleu") == [3, 4] and r.metric_curve("val_loss") == [1.0, None]
    assert r.metric_curve("val_loss") == r.curve(record.VAL_LOSS_CURVE) and r.metric_curve(
        "nope") is None and set(r.metrics) == {"val_acc", "val_loss", "bleu"}
    assert r.lr_trace == {"every": 4, "lr": [0.1, 0.1]}
    assert (r.test_loss, r.test_acc) == (0.3, 0.91)
    assert r.end_reason == End.NON_FINITE and r.diverged
    assert record.family_of(study.trials[-1]) == "StepLR"


def test_an_older_store_reads_as_missing():
    r = record.of({"epochs": "x", "val_acc_curve": "not a list"})
    assert r.epochs is None and r.val_acc_curve == [] and r.end_reason is None
    assert r.schedule is None and r.seed is None and r.roles == ()
    assert record.family_of(None) == record.UNKNOWN


def test_a_companion_describes_each_key_and_reads_it_back(study):
    v = record.Validated(label="cosine", family="CosineAnnealingLR", roles=("sweep", "baseline"),
                         source_trial=None, lr=0.3, lr_source="sweep of 5 LRs", lr_trial=None)
    record.set_validated(study, "cos", v)
    record.set_study(study, record.Study.NOTES, ["n"])
    assert record.validated(study) == {"cos": dataclasses.replace(v, roles=("baseline", "sweep"))}
    assert record.study_of(study)[record.Study.NOTES] == ["n"]


_text = st.text(min_size=1, max_size=12)
_int = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.builds(
    Enqueued, schedule=st.none() | st.fixed_dictionaries({"family": _text, "lr": st.floats(
        1e-6, 10)}), default=st.booleans(), seed=st.none() | _int, epochs=st.none() | _int,
    holdout=st.none() | st.sampled_from(["val", "test"]), optimizer_name=st.none() | _text,
    stage=st.none() | _text, contender=st.none() | _text, label=st.none() | _text,
    slot=st.none() | _text, grid_step=st.none() | _int, source_trial=st.none() | _int,
    validate_key=st.none() | _text, roles=st.none() | st.lists(_text, max_size=3).map(tuple),
    sweep_for=st.none() | _text, searched_study=st.none() | _text,
    repeat_of=st.none() | _int))
def test_every_enqueued_field_reads_back_as_written(run):
    """Whatever a fixed run is queued with, its record reads back the same values (the
    stored form is what optuna keeps: JSON)."""
    import json

    r = record.of(json.loads(json.dumps(run.attrs())))
    assert r.fixed == (dict(run.schedule) if run.schedule is not None else None)
    assert r.is_fixed == (run.schedule is not None) and r.default == run.default
    assert r.split == run.holdout and r.holdout == ("val" if run.holdout == "val" else "test")
    assert r.roles == (run.roles or ())
    for f in dataclasses.fields(Enqueued):
        if f.name not in ("schedule", "default", "holdout", "roles"):
            assert getattr(r, f.name) == getattr(run, f.name), f.name
