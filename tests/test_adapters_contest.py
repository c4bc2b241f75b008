"""objectives.lightning under the engine's whole protocol, as a user runs it: a [contest]
(its references, the schedule-free one included, trained through the adapter), `best`,
`validate` on the test split, and a kill -9 or SIGTERM mid-trial followed by a resume.

Everything runs `python -m search` in a subprocess on tests/lightning_support.py's tiny
linear model (tests/adapters_contest_support.py tells the test split apart: its inputs carry
a constant offset, and the module logs the mean input it validated on). One `python -m
search` start costs several seconds of imports on a loaded machine; the trainings themselves
are well under a second each.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter

import optuna
import pytest
from conftest import run_cli
from optuna.trial import TrialState

pytest.importorskip("lightning")

import adapters_contest_support as acs  # noqa: E402 - needs lightning
from lightning_support import N_TEST, N_VAL, _data  # noqa: E402
from workers_support import ENV, check_exact, finish, start, trials, wait_for  # noqa: E402

from search import record  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*LeafSpec.*:DeprecationWarning", "ignore:.*LeafSpec.*:FutureWarning")

SUBPROCESS_ENV = {**ENV, "OMP_NUM_THREADS": "1"}  # tiny nets: one thread each

# The mean input each split's validation sees: what `val_x_mean` must report.
VAL_MEAN = float(_data(N_VAL, 1).tensors[0].mean())
TEST_MEAN = float(_data(N_TEST, 2).tensors[0].mean()) + acs.TEST_OFFSET

STUDY = """name = "{name}"
trials = {trials}
seed = 0
[objective]
function = "objectives.lightning:train"
module = "{module}"
module_args = {module_args}
datamodule = "adapters_contest_support:OffsetTestData"
metric = "val_loss"
direction = "minimize"
optimizer = "sgd"
epochs = {epochs}
device = "cpu"
[space]
families = ["StepLR", "CosineAnnealingLR"]
lr = {{ low = 0.001, high = 0.3, log = true }}
default_lr = 0.01
[sampler]
name = "random"
[pruner]
name = "none"
[workers]
heartbeat_interval = 1
grace_period = 3
"""
CONTEST = """[contest]
shape_trials = 2
finalists = 1
max_seeds = 2
"""


def study_file(where, name: str, *, trials: int, epochs: int = 2, contest: bool = False,
               module: str = "adapters_contest_support:SplitModule",
               module_args: str = "{}") -> str:
    path = where / f"{name}.toml"
    path.write_text(STUDY.format(name=name, trials=trials, epochs=epochs, module=module,
                                 module_args=module_args) + (CONTEST if contest else ""))
    return str(path)


def cli(*args: str, cwd, timeout: float = 240):
    out = run_cli(*args, cwd=cwd, env=SUBPROCESS_ENV, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out


def split_of(t: optuna.trial.FrozenTrial) -> str:
    """Which split scored the trial, from what its module logged (not from its tags)."""
    (mean,) = set(record.of(t).metric_curve("val_x_mean"))  # one split for the whole run
    if mean == pytest.approx(VAL_MEAN, rel=1e-5):
        return "val"
    assert mean == pytest.approx(TEST_MEAN, rel=1e-5), mean
    return "test"


# -- a. the contest, best and validate through the Lightning adapter --------------------------


def test_a_contest_runs_its_references_through_lightning_and_validates_on_the_test_split(
        tmp_path):
    from search import answer
    from search.config import load_study
    from search.contest.standing import standing

    f = study_file(tmp_path, "c", trials=20, contest=True)
    assert load_study(f).contest.min_trials() == 20  # the smallest budget it accepts
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cli("run", "--study", f, "--storage", url, cwd=tmp_path)

    study = optuna.load_study(study_name="c", storage=url)
    ts = study.get_trials(deepcopy=False)
    assert [t.state for t in ts] == [TrialState.COMPLETE] * 20
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    for t in ts:  # every run trained by Lightning on the validation split, scored by val_loss
        r = record.of(t)
        assert set(r.metrics) == {"val_loss", "val_acc", "val_x_mean", "train_loss"}
        assert split_of(t) == "val" and t.value == r.metric_curve("val_loss")[-1]
    refs = [t for t in ts if record.of(t).stage == "reference"]
    slots = {record.of(t).slot for t in refs}
    assert slots == {"cosine", "constant", "onecycle", "linear0", "schedulefree"}
    for t in refs:
        r = record.of(t)
        free = r.slot == "schedulefree"
        # what torch received inside the Lightning run: the schedule-free class for its slot
        assert r.optimizer["name"] == ("SGDScheduleFree" if free else "SGD")
        assert r.optimizer_name == ("schedulefree" if free else None)
    st = standing(study)
    assert st.leader is not None

    rec = answer.recommend(study)
    assert rec.trial_number == st.leader.source_trial and rec.label == st.leader.label
    out = cli("best", "--study", f, "--storage", url, "--format", "lightning", cwd=tmp_path)
    printed = out.stdout
    assert f"trial {rec.trial_number}, {rec.label}" in printed.splitlines()[0]
    compile(printed, "best_lightning.py", "exec")  # valid Python as printed
    if st.leader.optimizer:  # schedule-free: no scheduler in what is printed
        assert "lr_scheduler" not in printed and "schedulefree." in printed
    else:
        assert "lr_scheduler" in printed

    out = cli("validate", "--study", f, "--storage", url, "--seeds", "2", cwd=tmp_path)
    comp = optuna.load_study(study_name="c.validate", storage=url)
    runs = comp.get_trials(deepcopy=False)
    keys = {record.of(t).validate_key for t in runs}
    assert f"validate plan: {len(keys)} schedules x 2 seeds" in out.stderr
    assert {c.key for c in st.state.contenders if c.role == "reference"} | {st.leader.key} \
        == keys
    assert all(t.state == TrialState.COMPLETE for t in runs)
    assert Counter(record.of(t).validate_key for t in runs if t.user_attrs["holdout"] == "test"
                   ) == dict.fromkeys(keys, 2)
    for t in runs:  # tagged for its split, and scored on it by the adapter
        assert split_of(t) == t.user_attrs["holdout"]
        assert t.value == record.of(t).metric_curve("val_loss")[-1]
    free = [t for t in runs if record.of(t).optimizer_name == "schedulefree"]
    assert free and {record.of(t).optimizer["name"] for t in free} == {"SGDScheduleFree"}
    after = answer.recommend(study)
    assert after.validation is not None and after.validation.winner.key == st.leader.key


# -- b. kill -9 and SIGTERM inside a Lightning trial, then the same command again -------------


EPOCHS = 6  # of the interrupted studies


def _slow_study(tmp_path, name: str) -> tuple[str, str]:
    """2 trials of 6 epochs, 0.2 s a training step (6 steps an epoch): once a trial has
    reported its first epoch, about 6 s of it remain, far more than a signal takes to land
    even on a loaded machine."""
    f = study_file(tmp_path, name, trials=2, epochs=EPOCHS, module="lightning_support:TinyModule",
                   module_args="{ sleep = 0.2 }")
    return f, f"sqlite:///{tmp_path / f'{name}.db'}"


def _mid_training(url: str, name: str) -> optuna.trial.FrozenTrial:
    """Once a trial runs and has reported an epoch (it is inside Lightning's fit), that trial."""
    return wait_for(lambda: next((t for t in trials(url, name) if t.state == TrialState.RUNNING
                                  and t.intermediate_values), None), 120,
                    "a RUNNING trial that reported an epoch")


def _trained_once(ts: list[optuna.trial.FrozenTrial]) -> None:
    """No (schedule, seed) is COMPLETE twice, and every COMPLETE run reported every epoch."""
    done = [t for t in ts if t.state == TrialState.COMPLETE]
    runs = Counter((json.dumps(t.params, sort_keys=True), record.of(t).seed) for t in done)
    assert not [r for r, n in runs.items() if n > 1]
    for t in done:
        assert record.of(t).metric_curve("val_loss") == [t.intermediate_values[e]
                                                         for e in range(1, EPOCHS + 1)]


def test_kill_9_inside_a_lightning_trial_then_resume_retries_it_once(tmp_path):
    f, url = _slow_study(tmp_path, "k")
    proc = start("run", "--study", f, "--storage", url, cwd=tmp_path, env=SUBPROCESS_ENV)
    victim = _mid_training(url, "k")
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc, 30)[0] == -signal.SIGKILL
    (still,) = [t for t in trials(url, "k") if t.state == TrialState.RUNNING]
    assert still.number == victim.number  # nobody ended it: it is swept by the next run

    cli("run", "--study", f, "--storage", url, cwd=tmp_path)  # waits out the grace period
    ts = check_exact(url, 2, "k")
    dead = ts[victim.number]
    assert dead.state == TrialState.FAIL and record.of(dead).end_reason == "worker_lost"
    (retry,) = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert record.of(retry).end_reason is None
    _trained_once(ts)


def test_sigterm_inside_a_lightning_trial_then_resume_reaches_the_target(tmp_path):
    f, url = _slow_study(tmp_path, "t")
    proc = start("run", "--study", f, "--storage", url, cwd=tmp_path, env=SUBPROCESS_ENV)
    victim = _mid_training(url, "t")
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc, 120)
    assert code == 0 and "Traceback" not in err, err
    stopped = trials(url, "t")[victim.number]
    assert stopped.state == TrialState.FAIL and record.of(stopped).end_reason == "interrupted"

    cli("run", "--study", f, "--storage", url, cwd=tmp_path)
    ts = check_exact(url, 2, "t")
    # the interrupted trial stays as it ended; a new one took its place, nothing else failed
    assert [(t.number, record.of(t).end_reason) for t in ts if t.state != TrialState.COMPLETE
            ] == [(victim.number, "interrupted")]
    _trained_once(ts)

