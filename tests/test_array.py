"""Fused trial arrays: exactness against lone trials, continuous refill, the Optuna side, CLI."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
import time

import optuna
import pytest
import torch
from optuna.trial import TrialState

from objectives import Diverged, classify
from objectives.fused_train import ArrayTrainer, Job
from search import cli, config, runner, schedules, space
from search.engine import array, claim, sequential
from search.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)

EPOCHS = 3
FAMILIES = list(schedules.SCHEDULES)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(cifar_dir) -> classify.TrainConfig:
    return classify.TrainConfig(
        data_dir=str(cifar_dir), epochs=EPOCHS, batch_size=64, width=(8, 8, 8),
        train_subset=256, val_fraction=0.25, device="cpu",
    )


def a_schedule(family: str, seed: int) -> schedules.ScheduleConfig:
    """A random valid schedule of `family`, with searched momentum and (where allowed) warmup."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    cfg = config.SpaceConfig(
        families=(family,), lr=config.ParamSpec(0.05, 0.3, log=True),
        momentum=config.ParamSpec(0.0, 0.95), warmup_epochs=config.ParamSpec(0.0, 1.0),
    )
    return space.suggest(study.ask(), cfg, EPOCHS)


def lone_run(cfg, schedule) -> tuple[list[tuple], float | BaseException]:
    reports: list[tuple] = []
    try:
        value = classify.train(cfg, schedule, lambda *a: reports.append(a))
    except Diverged as e:
        return reports, e
    return reports, value


def job(schedule: schedules.ScheduleConfig, report, tag=None, **more) -> Job:
    """An array job for `schedule`, its scheduler built as the engine builds it."""
    return Job(schedule, lambda opt, steps, epochs: schedules.build(opt, schedule, steps, epochs),
               report, tag, **more)


class Pruned(Exception):
    pass


@pytest.fixture(scope="module")
def arrayed(cifar_dir):
    """One array of K=4 over: a diverging trial, a trial pruned after its first epoch, then
    one trial of every family. The first two end early, so later trials start in slots
    refilled while the others are one or two epochs further: each slot's batches differ."""
    cfg = tiny(cifar_dir)
    jobs = [schedules.ScheduleConfig("Constant", lr=1e7), a_schedule("CosineAnnealingLR", 99)]
    jobs += [a_schedule(f, i) for i, f in enumerate(FAMILIES)]
    reports: dict[int, list[tuple]] = {i: [] for i in range(len(jobs))}
    outcomes: dict[int, float | BaseException] = {}
    started: dict[int, int] = {}  # job -> round it started in
    rounds = [0]

    def report_for(i):
        def report(epoch, *rest):
            reports[i].append((epoch, *rest))
            if i == 1:
                raise Pruned
        return report

    queue = list(range(len(jobs)))

    def next_job():
        if not queue:
            return None
        i = queue.pop(0)
        started[i] = rounds[0]
        return job(jobs[i], report_for(i), i)

    trainer = ArrayTrainer(cfg, 4)
    original = trainer._epoch

    def counted(finish):
        original(finish)
        rounds[0] += 1

    trainer._epoch = counted
    trainer.run(next_job, lambda job, out: outcomes.setdefault(job.tag, out))
    return cfg, jobs, reports, outcomes, started


def close(got: list[tuple], want: list[tuple], n_val: int) -> None:
    assert [r[0] for r in got] == [r[0] for r in want]  # the same epochs reported
    for (_, g_loss, g_acc, g_lr), (_, w_loss, w_acc, w_lr) in zip(got, want, strict=True):
        assert g_lr == pytest.approx(w_lr, rel=1e-12)  # the LR torch's scheduler set
        assert g_loss == pytest.approx(w_loss, rel=1e-4)
        assert abs(g_acc - w_acc) <= 1.5 / n_val  # an image near the boundary may flip


@pytest.mark.parametrize("family", FAMILIES)
def test_a_member_trains_as_the_lone_trial(arrayed, family):
    cfg, jobs, reports, outcomes, _ = arrayed
    i = 2 + FAMILIES.index(family)
    want_reports, want_value = lone_run(cfg, jobs[i])
    n_val = round(cfg.val_fraction * 600)
    close(reports[i], want_reports, n_val)
    assert not isinstance(want_value, BaseException)
    assert outcomes[i] == pytest.approx(want_value, abs=1.5 / n_val)
    assert len(reports[i]) == EPOCHS


def test_refill_diverged_and_pruned_trials_end_alone(arrayed):
    cfg, jobs, reports, outcomes, started = arrayed
    _, lone_diverged = lone_run(cfg, jobs[0])
    assert isinstance(lone_diverged, Diverged) and isinstance(outcomes[0], Diverged)
    assert (outcomes[0].epoch, outcomes[0].step) == (lone_diverged.epoch, lone_diverged.step)
    assert reports[0] == []
    assert isinstance(outcomes[1], Pruned) and len(reports[1]) == 1
    assert len(outcomes) == len(jobs)  # every job ended, once
    # refills happened while other members were in later epochs
    assert started[4] == 1 and started[5] == 1 and started[2] == 0
    assert max(started.values()) >= 3


def test_after_a_round_where_every_member_diverged_the_next_trial_is_still_exact(cifar_dir):
    cfg = tiny(cifar_dir)
    good = a_schedule("StepLR", 5)
    queue = [schedules.ScheduleConfig("Constant", lr=1e7), good]
    reports: list[tuple] = []
    outcomes: list = []
    ArrayTrainer(cfg, 1).run(
        lambda: job(queue.pop(0), lambda *r: reports.append(r)) if queue else None,
        lambda job, out: outcomes.append(out))
    assert isinstance(outcomes[0], Diverged) and isinstance(outcomes[1], float)
    want, value = lone_run(cfg, good)
    close(reports, want, round(cfg.val_fraction * 600))
    assert outcomes[1] == pytest.approx(value, abs=1.5 / 150)


def test_k_from_memory():
    gib = 1 << 30
    assert array.k_from_memory(40 * gib, gib) == 32  # capped
    assert array.k_from_memory(10 * gib, gib) == 8  # 80% of the free memory
    assert array.k_from_memory(gib // 2, gib) == 1  # never below one


def test_cpu_runs_keep_the_sequential_engine_unless_asked(cifar_dir):
    cfg = config.load_study("smoke").with_overrides(device="cpu")
    assert array.array_size(cfg) is None
    assert array.array_size(cfg, 3) == 3
    other = dataclasses.replace(cfg, objective="mypkg.mine:train")
    assert array.array_size(other) is None
    with pytest.raises(UserError, match="`--array` needs the built-in objective"):
        array.array_size(other, 2)


def smoke(cifar_dir, epochs=None):
    return config.load_study("smoke").with_overrides(
        data_dir=str(cifar_dir), device="cpu", epochs=epochs, train_subset=256,
    )


def test_array_study_reaches_the_target_with_the_sequential_attributes(tmp_path, cifar_dir):
    cfg = smoke(cifar_dir)
    seq = sequential.run(cfg, f"sqlite:///{tmp_path / 'seq.db'}", 1)
    arr = array.run(cfg, f"sqlite:///{tmp_path / 'arr.db'}", 5, k=3)
    assert claim.count(arr) == 5 and len(arr.trials) == 5  # no overshoot past the target
    assert not arr.get_trials(states=(TrialState.RUNNING, TrialState.FAIL))
    # trial 0 is the enqueued default in both: same params, value and attributes
    s, a = seq.trials[0], arr.trials[0]
    assert a.params == s.params and a.state == s.state
    assert a.value == pytest.approx(s.value, abs=1.5 / 150)
    assert a.user_attrs.keys() == s.user_attrs.keys()
    for key in ("scheduler_kwargs", "interval", "steps_per_epoch", "epochs", "optimizer",
                "lr_curve"):
        assert a.user_attrs[key] == s.user_attrs[key], key
    assert a.user_attrs["val_loss_curve"] == pytest.approx(s.user_attrs["val_loss_curve"],
                                                           rel=1e-4)
    for t in arr.trials:
        want = {"scheduler_kwargs", "interval", "steps_per_epoch", "epochs", "optimizer",
                "lr_curve", "val_acc_curve", "val_loss_curve"}
        assert want <= t.user_attrs.keys()
        assert len(t.user_attrs["lr_curve"]) == len(t.intermediate_values)
        assert (t.user_attrs.get("end_reason") == "pruned") == (t.state == TrialState.PRUNED)
    # resuming to a higher target refills from the same study
    arr = array.run(cfg, f"sqlite:///{tmp_path / 'arr.db'}", 7, k=3)
    assert claim.count(arr) == 7


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_closes_every_running_trial(tmp_path, cifar_dir, how):
    """Either signal ends every trial in flight as interrupted; SIGTERM then returns (the
    process exits 0), Ctrl-C raises KeyboardInterrupt (exit 130)."""
    class Interrupting:
        def start(self, study, target):
            pass

        def epoch(self, number, epoch, val_acc):
            os.kill(os.getpid(), signal.SIGTERM if how == "sigterm" else signal.SIGINT)
            time.sleep(5)  # the handler raises KeyboardInterrupt in here

        def trial_finished(self, study, trial):
            pass

    url = f"sqlite:///{tmp_path / 'x.db'}"
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    if how == "sigterm":
        array.run(smoke(cifar_dir, epochs=1), url, 4, Interrupting(), k=3)
    else:
        with pytest.raises(KeyboardInterrupt):
            array.run(smoke(cifar_dir, epochs=1), url, 4, Interrupting(), k=3)
    study = optuna.load_study(study_name="smoke", storage=url)
    assert len(study.trials) == 3
    assert {t.state for t in study.trials} == {TrialState.FAIL}
    assert {t.user_attrs["end_reason"] for t in study.trials} == {"interrupted"}
    # the handlers were put back (SIGINT is ignored where pytest itself runs in background)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_divergence_prunes_one_trial_and_a_failed_report_fails_the_run(tmp_path, cifar_dir):
    cfg = smoke(cifar_dir)
    study = runner.create_or_load(cfg, f"sqlite:///{tmp_path / 'x.db'}")
    arr = array._Array(cfg, study, 10, None)
    job = arr.next_job()
    arr.finish(job, Diverged(0, 3, math.nan))
    t = study.trials[0]
    assert t.state == TrialState.PRUNED and t.user_attrs["end_reason"] == "non_finite_loss"
    job = arr.next_job()
    with pytest.raises(OSError):
        arr.finish(job, OSError("disk full"))
    assert study.trials[1].state == TrialState.FAIL and not arr.live


def test_an_array_trial_beats_until_its_result_is_stored(tmp_path, cifar_dir, monkeypatch):
    from test_sequential import spy_heartbeats

    study = runner.create_or_load(smoke(cifar_dir), f"sqlite:///{tmp_path / 'x.db'}")
    arr, beating = array._Array(smoke(cifar_dir), study, 10, None), []
    beats = spy_heartbeats(monkeypatch, claim)
    real = claim.conclude

    def conclude(*args, **kwargs):
        beating.append(not beats[0].stop_event.is_set())
        return real(*args, **kwargs)

    monkeypatch.setattr(claim, "conclude", conclude)
    arr.finish(arr.next_job(), 0.5)
    assert beating == [True] and beats[0].stop_event.is_set()
    assert study.trials[0].state == TrialState.COMPLETE


@pytest.mark.parametrize("where", ["claiming", "telling"])
def test_a_store_that_refuses_writes_ends_every_array_trial_as_storage_error(
    tmp_path, cifar_dir, monkeypatch, where
):
    """As in a sequential run: one line, and no trial left RUNNING until its heartbeat
    expires, whether the write that failed was a new trial's or a finished one's."""
    full = sqlite3.OperationalError("database or disk is full")

    class Fake:
        def __init__(self, train_cfg, k, compile=False):
            pass

        def run(self, next_job, finish):
            first = next_job()
            next_job()  # "claiming": its suggestion is refused
            finish(first, 0.5)  # "telling": the result is refused

    real_suggest, real_state = space.suggest, optuna.storages.RDBStorage.set_trial_state_values
    if where == "claiming":
        calls = []

        def suggest(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise full
            return real_suggest(*args, **kwargs)

        monkeypatch.setattr(space, "suggest", suggest)
    else:
        def set_state(self, trial_id, state, values=None):
            if state == TrialState.COMPLETE:
                raise full
            return real_state(self, trial_id, state, values)

        monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", set_state)
    monkeypatch.setattr(array, "ArrayTrainer", Fake)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(UserError, match="refuses writes .*ended as FAIL"):
        array.run(smoke(cifar_dir), url, 4, k=2)
    study = optuna.load_study(study_name="smoke", storage=url)
    assert len(study.trials) == 2
    assert {t.state for t in study.trials} == {TrialState.FAIL}
    assert {t.user_attrs["end_reason"] for t in study.trials} == {"storage_error"}


def test_out_of_memory_fails_the_array_and_retries_with_half(tmp_path, cifar_dir, monkeypatch):
    sizes = []

    class Fake:
        def __init__(self, train_cfg, k, compile=False):
            sizes.append(k)
            self.k = k

        def run(self, next_job, finish):
            jobs = [j for j in (next_job() for _ in range(self.k)) if j is not None]
            if self.k > 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            for j in jobs:
                finish(j, 0.5)
            while (j := next_job()) is not None:
                finish(j, 0.5)

    monkeypatch.setattr(array, "ArrayTrainer", Fake)
    study = array.run(smoke(cifar_dir), f"sqlite:///{tmp_path / 'x.db'}", 6, k=8)
    assert sizes == [8, 4, 2]
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 6 + 4 and {t.user_attrs["end_reason"] for t in failed} == {"oom"}
    assert claim.count(study) == 6


def test_cli_array_flag(tmp_path, cifar_dir, capsys):
    code = cli.main(["run", "--study", "smoke", "--data-dir", str(cifar_dir), "--trials", "3",
                     "--epochs", "1", "--array", "2", "--device", "cpu",
                     "--train-subset", "256"])
    assert code == 0
    assert "3 finished trials" in capsys.readouterr().out
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert claim.count(study) == 3
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--study", "smoke", "--array", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--array" in err and "must be >= 1" in err


def test_jobs_compose_with_arrays(tmp_path, cifar_dir, capsys):
    code = cli.main(["run", "--study", "smoke", "--data-dir", str(cifar_dir), "--trials", "5",
                     "--epochs", "1", "--jobs", "2", "--array", "2", "--device", "cpu",
                     "--train-subset", "256"])
    assert code == 0
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert claim.count(study) == 5 and len(study.trials) == 5  # exact across both workers
    assert {t.system_attrs.get("engine") for t in study.trials} == {"array"}
    assert all(t.system_attrs["worker"].split(":")[1] != str(os.getpid())
               for t in study.trials)  # trained in the worker processes, not here


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_array_trains_in_bf16_near_the_lone_trial_and_picks_k(cifar_dir):
    cfg = dataclasses.replace(tiny(cifar_dir), device="cuda")
    schedule = a_schedule("OneCycleLR", 0)
    want, _ = lone_run(cfg, schedule)
    got: list[tuple] = []
    queue = [schedule, schedule]
    trainer = ArrayTrainer(cfg, 2)
    trainer.run(lambda: job(queue.pop(), lambda *r: got.append(r)) if queue else None,
                lambda job, out: None)
    assert len(got) == 2 * EPOCHS
    for g, w in zip(got[::2], want, strict=True):  # bf16: close, not equal
        assert g[1] == pytest.approx(w[1], rel=0.05) and g[3] == pytest.approx(w[3])
    study_cfg = dataclasses.replace(config.load_study("smoke"), train=cfg)
    assert 1 <= array.pick_k(study_cfg) <= array.MAX_K


# Pruning in an array: every member reports an epoch before any is pruned, and decisions are
# taken in trial order, so which trials survive does not depend on the slots they sit in.

FIXED = [[0.30, 0.50, 0.60], [0.60, 0.70, 0.80], [0.20, 0.30, 0.40], [0.50, 0.55, 0.90]]


def _pruning_outcomes(cifar_dir, slots: list[int]) -> dict[int, tuple[str, int]]:
    """Four trials (numbers 0-3) trained as one array, handed to the slots in `slots` order;
    each reports FIXED accuracies, so only the order of decisions could change the outcome."""
    halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2,
                                                     min_early_stopping_rate=0)
    study = optuna.create_study(direction="maximize", pruner=halving)
    trials = [study.ask() for _ in FIXED]
    recs = {t.number: runner.Recorder(t, defer_prune=True) for t in trials}

    def report_for(n):
        def report(epoch, val_loss, val_acc, lr):
            recs[n](epoch, val_loss, FIXED[n][epoch], lr)
        return report

    queue = list(slots)

    def next_job():
        if not queue:
            return None
        n = queue.pop(0)
        rec = recs[n]
        s = dataclasses.replace(schedules.ScheduleConfig("Constant", lr=0.1), listener=rec.built)
        return job(s, report_for(n), n, decide=rec.prune_check, order=n)

    out: dict[int, tuple[str, int]] = {}

    def finish(job, outcome):
        done = len(recs[job.tag].values)
        out[job.tag] = ("pruned" if isinstance(outcome, optuna.TrialPruned) else "complete", done)

    ArrayTrainer(tiny(cifar_dir), 4).run(next_job, finish)
    return out


def test_array_pruning_does_not_depend_on_slot_order(cifar_dir):
    first = _pruning_outcomes(cifar_dir, [0, 1, 2, 3])
    assert sorted(s for s, _ in first.values()).count("pruned") >= 1  # the pruner acted
    for slots in ([3, 2, 1, 0], [2, 0, 3, 1]):
        assert _pruning_outcomes(cifar_dir, slots) == first
