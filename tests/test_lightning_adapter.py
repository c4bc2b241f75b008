"""objectives.lightning: a user's LightningModule trained by a real lightning.Trainer.

Truth for the LRs is the search's own loop (conftest.step_through: torch's scheduler stepped
as `Built` says) and the code `best` prints; the module records the LR of every optimizer step
itself (tests/lightning_support.py), independently of the adapter's trace. Tiny data: an epoch
is a few optimizer steps of a linear model, a training a second or two.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import warnings

import optuna
import pytest
from conftest import applied_lrs, step_through

lightning = pytest.importorskip("lightning")

import lightning_support as ls  # noqa: E402 - needs lightning
import torch  # noqa: E402

from objectives import Diverged, UserError  # noqa: E402
from objectives import lightning as adapter  # noqa: E402
from objectives.classify import make_optimizer, optimizer_record  # noqa: E402
from objectives.settings import TrainConfig  # noqa: E402
from search import answer, schedules, space  # noqa: E402
from search.config import SpaceConfig  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning",
    "ignore:.*LeafSpec.*:DeprecationWarning", "ignore:.*LeafSpec.*:FutureWarning")

E = 4  # epochs
VAL_LOSSES = [1.0, 1.1, 1.2, 1.3]  # worse after the first: ReduceLROnPlateau cuts
TINY = {"module": "lightning_support:TinyModule", "datamodule": "lightning_support:TinyData"}


@pytest.fixture(autouse=True)
def _quiet_threads(one_thread):
    ls.INSTANCES.clear()


def config(epochs: int = E, **options) -> TrainConfig:
    kw = {k: options.pop(k) for k in ("metric", "holdout", "optimizer") if k in options}
    return TrainConfig(epochs=epochs, device="cpu", seed=0, options={**TINY, **options},
                       **{"metric": "val_loss", **kw})


def schedule_for(family: str, warmup: float = 0.0) -> schedules.ScheduleConfig:
    """A schedule of `family` with parameters drawn from the study space's ranges."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = space.suggest(trial, SpaceConfig(families=(family,)), E)
    return dataclasses.replace(s, lr=0.05, warmup=warmup)


class Reports:
    """A report callable as the runner's Recorder takes it (the mapping form)."""

    def __init__(self, raise_at: int | None = None, exc: BaseException | None = None):
        self.calls: list[tuple[int, dict[str, float], float]] = []
        self.raise_at, self.exc = raise_at, exc

    def __call__(self, epoch, metrics, lr):
        self.calls.append((epoch, dict(metrics), lr))
        if epoch == self.raise_at:
            raise self.exc


def run(cfg: TrainConfig, schedule: schedules.ScheduleConfig, report=None):
    """train(); (its return, the Built it made, the report, the module it trained)."""
    got: list[schedules.Built] = []
    report = report if report is not None else Reports()
    value = adapter.train(cfg, dataclasses.replace(schedule, listener=got.append), report)
    return value, got[0], report, ls.INSTANCES[-1]


# -- 1. what is reported and what is applied ------------------------------------------------


CASES = [("StepLR", 0.0, 1), ("CosineAnnealingLR", 0.25, 1), ("OneCycleLR", 0.0, 1),
         ("ReduceLROnPlateau", 0.0, 1), ("OneCycleLR", 0.0, 2)]


@pytest.mark.parametrize("family,warmup,accum", CASES)
def test_the_trace_is_what_the_optimizer_applied_and_what_the_export_applies(
        family, warmup, accum):
    s = schedule_for(family, warmup)
    cfg = config(module_args={"losses": VAL_LOSSES},
                 trainer_args={"accumulate_grad_batches": accum})
    value, built, report, module = run(cfg, s)

    steps = ls.N_TRAIN // ls.BATCH // accum  # optimizer steps an epoch
    assert (built.epochs, built.steps_per_epoch, built.every) == (E, steps, 1)
    # the LR of every optimizer step, read by the module itself
    assert built.trace == module.lrs and len(module.lrs) == E * steps
    # the search's own loop on the same optimizer
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, s, E * steps)
    want = step_through(opt, s, E, steps, VAL_LOSSES).trace
    assert built.trace == pytest.approx(want, rel=1e-12)
    if family == "ReduceLROnPlateau":
        assert built.interval == "plateau" and len(set(want)) > 1  # it did cut
    # the code `best` prints for it
    rec = answer.Recommendation(
        study="toy", trial_number=0, value=value, family=built.family, kwargs=built.kwargs,
        interval=built.interval, warmup=built.warmup, optimizer=optimizer_record(opt),
        epochs=E, steps_per_epoch=steps, searched_epochs=E, searched_steps_per_epoch=steps)
    assert applied_lrs(answer.render(rec, "python"), VAL_LOSSES) == pytest.approx(
        built.trace, rel=1e-7)

    # one report per epoch: every logged metric, the LR of the epoch's first optimizer step
    assert [c[0] for c in report.calls] == list(range(E))
    assert [c[2] for c in report.calls] == module.lrs[::steps]
    for epoch, metrics, _ in report.calls:
        assert set(metrics) == {"val_loss", "val_acc", "train_loss"}
        assert all(type(v) is float for v in metrics.values())
        assert metrics["val_loss"] == pytest.approx(VAL_LOSSES[epoch])
        # this epoch's training mean, not the previous epoch's
        assert metrics["train_loss"] == pytest.approx(module.train_means[epoch], rel=1e-6)
    assert value == report.calls[-1][1]["val_loss"]


def test_a_metric_logged_in_on_validation_epoch_end_is_reported_and_can_be_the_metric():
    cfg = config(epochs=2, metric="val_score", module="lightning_support:EpochEndModule")
    value, _, report, _ = run(cfg, schedule_for("StepLR"))
    scores = [m["val_score"] for _, m, _ in report.calls]
    assert scores == pytest.approx([1 - m["val_loss"] for _, m, _ in report.calls])
    assert value == scores[-1]


def test_schedule_free_trains_without_a_scheduler_in_train_mode_and_evaluates_in_eval_mode():
    pytest.importorskip("schedulefree")
    cfg = config(epochs=2, optimizer="schedulefree")
    _, built, report, module = run(cfg, schedule_for("Constant"))
    assert type(module.trainer.optimizers[0]).__name__ == "SGDScheduleFree"
    assert module.trainer.lr_scheduler_configs == []
    assert set(module.modes["train"]) == {True} and set(module.modes["val"]) == {False}
    assert built.trace == module.lrs and len(report.calls) == 2


def test_the_run_is_seeded():
    s = schedule_for("StepLR")
    a = run(config(epochs=2), s)[2].calls
    b = run(config(epochs=2), s)[2].calls
    assert a == b


# -- 2, 3. exceptions -----------------------------------------------------------------------


class Stop(Exception):
    pass


def test_an_exception_from_report_stops_lightnings_loop_and_propagates_as_is():
    stop = Stop("from report")
    with pytest.raises(Stop) as caught:
        run(config(), schedule_for("StepLR"), Reports(raise_at=1, exc=stop))
    assert caught.value is stop
    module = ls.INSTANCES[-1]
    # reported after epoch 1's validation, inside fit: epochs 2 and 3 never trained
    assert module.epochs_started == 2 and len(module.lrs) == 2 * ls.N_TRAIN // ls.BATCH


def test_a_keyboard_interrupt_from_report_is_a_keyboard_interrupt_not_lightnings_exit():
    before = signal.getsignal(signal.SIGINT)
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as caught:
        run(config(), schedule_for("StepLR"), Reports(raise_at=0, exc=interrupt))
    assert caught.value is interrupt  # not SystemExit(1)
    assert signal.getsignal(signal.SIGINT) is before  # Lightning's SIG_IGN undone
    assert ls.INSTANCES[-1].epochs_started == 1


def test_sigterm_during_training_is_a_keyboard_interrupt():
    """SIGTERM that the search only notes (its handler raises nothing outside training):
    Lightning's own SIGTERM handler then stops the loop with SIGTERMException (a SystemExit),
    which must reach the search as a KeyboardInterrupt."""
    noted: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: noted.append(signum))

    def report(epoch, metrics, lr):
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        with pytest.raises(KeyboardInterrupt):
            run(config(), schedule_for("StepLR"), report)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert noted == [signal.SIGTERM]  # the search's handler still ran (Lightning chains it)
    assert ls.INSTANCES[-1].epochs_started == 1


def test_sigterm_raising_keyboard_interrupt_as_the_search_does_ends_the_run_so():
    from search.engine.signals import Signals

    def report(epoch, metrics, lr):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    with Signals() as sig, pytest.raises(KeyboardInterrupt), sig.interruptible():
        run(config(), schedule_for("StepLR"), report)
    assert sig.terminated and ls.INSTANCES[-1].epochs_started == 2


def test_a_users_own_system_exit_is_left_alone():
    with pytest.raises(SystemExit) as caught:
        run(config(module_args={"exit_at": 1}), schedule_for("StepLR"))
    assert caught.value.code == 3


def test_a_non_finite_training_loss_raises_diverged_before_the_step_is_applied():
    with pytest.raises(Diverged) as caught:
        run(config(module_args={"nan_at": 7}), schedule_for("StepLR"))
    steps = ls.N_TRAIN // ls.BATCH
    assert (caught.value.epoch, caught.value.step) == (1, 7) and steps == 6
    assert len(ls.INSTANCES[-1].lrs) == 7  # step 7 never reached the optimizer


# -- 4. prepare: one line for every mistake, before anything is stored ----------------------


def _prepare_error(**changes) -> str:
    options = {**TINY, **changes.pop("options", {})}
    cfg = TrainConfig(epochs=2, device="cpu", metric=changes.pop("metric", "val_loss"),
                      options={k: v for k, v in options.items() if v is not None}, **changes)
    with pytest.raises(UserError) as caught:
        adapter.prepare(cfg)
    msg = str(caught.value)
    assert "\n" not in msg
    return msg


def test_prepare_accepts_a_good_setup_and_writes_nothing(tmp_path):
    adapter.prepare(config(epochs=2, loss_metric="val_loss"))
    assert set(os.listdir(tmp_path)) <= {"cache"}  # no lightning_logs, no checkpoints


def test_prepare_refuses_an_unknown_option_with_a_guess():
    msg = _prepare_error(options={"modul_args": {}})
    assert msg.startswith("unknown key `objective.modul_args`")
    assert "did you mean `objective.module_args`?" in msg


@pytest.mark.parametrize("options,says", [
    ({"module": None}, "`objective.module` is required"),
    ({"module": "lightning_support"}, 'must look like "package.module:ClassName"'),
    ({"module": "no_such_module_here:Net"},
     "`objective.module` = 'no_such_module_here:Net': module 'no_such_module_here' cannot "
     "be imported"),
    ({"module": "lightning_support:Nope"}, "module lightning_support has no 'Nope'"),
    ({"module": "lightning_support:NotAModule"},
     "'lightning_support:NotAModule' is a class but must be a subclass of "
     "lightning.LightningModule"),
    ({"datamodule": "lightning_support:TinyModule"},
     "must be a subclass of lightning.LightningDataModule"),
    ({"module_args": {"width": 3}}, "lightning_support:TinyModule(**objective.module_args) "
     "fails: "),
    ({"module_args": [1]}, "`objective.module_args` must be a table"),
    ({"trainer_args": {"max_epochs": 3}}, "cannot set max_epochs: "),
    ({"trainer_args": {"accumulate_grad_batch": 2}},
     "names 'accumulate_grad_batch', which lightning.Trainer does not take; did you mean "
     "'accumulate_grad_batches'?"),
    ({"trainer_args": {"precision": "nonsense"}}, "lightning.Trainer rejects "),
    ({"module": "lightning_support:ManualModule"}, "optimises manually"),
])
def test_prepare_names_each_mistake_in_one_line(options, says):
    assert says in _prepare_error(options=options)


def test_prepare_says_when_the_module_fails_on_import(tmp_path, monkeypatch):
    (tmp_path / "broken_user_module.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    msg = _prepare_error(options={"module": "broken_user_module:Net"})
    assert msg == ("`objective.module` = 'broken_user_module:Net': module "
                   "'broken_user_module' fails on import: RuntimeError: no GPU here")


def test_prepare_says_when_a_constructor_fails():
    msg = _prepare_error(options={"datamodule_args": {"batch_size": -1}})
    assert msg == ("lightning_support:TinyData(**objective.datamodule_args) fails: "
                   "ValueError: batch_size must be positive")


def test_prepare_says_which_metrics_the_module_logs():
    msg = _prepare_error(metric="val_losss")
    assert msg == ("the LightningModule lightning_support:TinyModule never logs metric "
                   "'val_losss' (it logged: val_acc, val_loss); set `objective.metric` to one "
                   "of them, or self.log it in validation_step")
    assert "never logs metric 'loss'" in _prepare_error(options={"loss_metric": "loss"})


def test_prepare_without_a_test_split_for_validate():
    msg = _prepare_error(holdout="test",
                         options={"datamodule": "lightning_support:NoTestData"})
    assert "lightning_support:NoTestData has no test_dataloader()" in msg


def test_prepare_without_lightning_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "lightning", None)
    msg = _prepare_error()
    assert msg.endswith("pip install 'schedsearch[lightning]'")


def test_train_is_given_prepare():
    assert adapter.train.prepare is adapter.prepare


def test_train_says_when_the_metric_is_never_logged():
    with pytest.raises(UserError, match="never logs metric 'val_f1'"):
        run(config(epochs=1, metric="val_f1"), schedule_for("StepLR"))


def test_plateau_needs_its_loss_metric_logged():
    cfg = config(epochs=1, loss_metric="val_nll")
    with pytest.raises(UserError, match=r"never logs metric 'val_nll' .*ReduceLROnPlateau"):
        run(cfg, schedule_for("ReduceLROnPlateau"))


def test_a_run_without_optimizer_steps_or_without_validations_says_so():
    with pytest.raises(UserError, match="cannot count the run's optimizer steps"):
        run(config(epochs=1, trainer_args={"limit_train_batches": 0}), schedule_for("StepLR"))
    with pytest.raises(UserError, match="finished training without a validation"):
        run(config(epochs=1, trainer_args={"limit_val_batches": 0}), schedule_for("StepLR"))


# -- 5, 6. holdout, and the user's class ----------------------------------------------------


def test_holdout_test_validates_on_the_test_split():
    _, _, report, module = run(config(epochs=2, holdout="test"), schedule_for("StepLR"))
    assert module.val_sizes == [ls.N_TEST, ls.N_TEST] and len(report.calls) == 2
    _, _, _, module = run(config(epochs=2), schedule_for("StepLR"))
    assert module.val_sizes == [ls.N_VAL, ls.N_VAL]


def test_the_users_class_is_left_as_it_was():
    run(config(epochs=1), schedule_for("OneCycleLR"))
    assert ls.TinyModule.configure_optimizers is ls.ORIGINAL_CONFIGURE
    assert "configure_optimizers" in vars(ls.INSTANCES[-1])  # this instance's only
    fresh = ls.TinyModule()
    assert fresh.configure_optimizers().param_groups[0]["lr"] == 0.123


# -- end to end: `python -m search` with the adapter (a subprocess per test, ~10 s each) -----


def _study(where, name: str = "tiny", *, trials: int = 3, epochs: int = 3,
           pruner: str = 'name = "none"', module_args: str = "{}") -> str:
    path = where / f"{name}.toml"
    path.write_text(f"""name = "{name}"
trials = {trials}
seed = 0
[objective]
function = "objectives.lightning:train"
module = "lightning_support:TinyModule"
module_args = {module_args}
datamodule = "lightning_support:TinyData"
metric = "val_loss"
direction = "minimize"
epochs = {epochs}
device = "cpu"
[space]
families = ["OneCycleLR", "StepLR", "CosineAnnealingLR"]
lr = {{ low = 0.0001, high = 1.0, log = true }}
[sampler]
name = "random"
[pruner]
{pruner}
""")
    return str(path)


def _trials(url: str, name: str = "tiny"):
    return optuna.load_study(study_name=name, storage=url).get_trials()


def test_a_cli_search_records_every_logged_metric_and_prints_code_that_applies_its_lrs(
        tmp_path):
    from conftest import run_cli
    from workers_support import ENV

    from search import record

    url = f"sqlite:///{tmp_path / 's.db'}"
    out = run_cli("run", "--study", _study(tmp_path), "--storage", url, cwd=tmp_path, env=ENV)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "lightning_logs").exists()
    ts = _trials(url)
    assert [t.state for t in ts] == [optuna.trial.TrialState.COMPLETE] * 3
    for t in ts:
        r = record.of(t)
        losses = r.metric_curve("val_loss")
        assert set(r.metrics) == {"val_loss", "val_acc", "train_loss"} and len(losses) == 3
        assert t.value == losses[-1]  # the last logged val_loss is the trial's value
        assert [t.intermediate_values[e] for e in (1, 2, 3)] == losses
    assert optuna.load_study(study_name="tiny", storage=url).direction.name == "MINIMIZE"

    best = min(ts, key=lambda t: t.value)
    out = run_cli("best", "--study", _study(tmp_path), "--storage", url, "--format",
                  "lightning", cwd=tmp_path, env=ENV)
    assert out.returncode == 0, out.stderr
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its Trainer(max_epochs=3): "logger=True uses CSV"
        exec(compile(out.stdout, "pasted.py", "exec"), ns)  # noqa: S102 - as printed
    module = type("Pasted", (ns["MyModule"], ls.TinyModule), {})()
    trainer = lightning.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=ls.TinyData())
    trace = record.of(best).lr_trace
    assert trace["every"] == 1
    assert module.lrs == pytest.approx(trace["lr"], rel=1e-7)


def test_a_cli_search_prunes_inside_lightnings_loop(tmp_path):
    from conftest import run_cli
    from workers_support import ENV

    from search import record

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(tmp_path, trials=6, epochs=4,
                   pruner='name = "median"\nn_startup_trials = 2\nn_warmup_steps = 0')
    out = run_cli("run", "--study", study, "--storage", url, cwd=tmp_path, env=ENV)
    assert out.returncode == 0, out.stderr
    pruned = [t for t in _trials(url) if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned
    for t in pruned:
        losses = record.of(t).metric_curve("val_loss")
        assert len(losses) < 4 and t.value == losses[-1]  # stopped inside fit, as reported


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_ends_the_lightning_trial_as_interrupted(tmp_path, sig, code):
    from workers_support import finish, start, wait_for

    from search import record

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = _study(tmp_path, trials=2, epochs=40, module_args="{ sleep = 0.1 }")
    proc = start("run", "--study", study, "--storage", url, cwd=tmp_path)
    wait_for(lambda: [t for t in _trials(url) if t.intermediate_values], 120,
             "a trial that reported an epoch")
    proc.send_signal(sig)
    got, _, err = finish(proc, 120)
    assert got == code, err
    assert "Traceback" not in err, err
    ts = [t for t in _trials(url) if t.state != optuna.trial.TrialState.WAITING]
    assert [(t.state, record.of(t).end_reason) for t in ts] == [
        (optuna.trial.TrialState.FAIL, "interrupted")], err
