"""objectives.hf: the Hugging Face Trainer as an objective, on a tiny model (hf_support).

Truth for the LRs is threefold: what the optimizer held before every optimizer step (a spy
callback, independent of objectives.hf), the search's own loop on the same schedule
(conftest.step_through), and the code `best --format hf` prints, run in the real Trainer.
The recorded trace must equal all three.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import pytest

transformers = pytest.importorskip("transformers")

import hf_support  # noqa: E402
import torch  # noqa: E402
from conftest import step_through  # noqa: E402
from hf_support import SETTINGS  # noqa: E402

from objectives import Diverged, UserError, hf  # noqa: E402
from objectives.classify import make_optimizer, optimizer_record  # noqa: E402
from objectives.settings import TrainConfig  # noqa: E402
from search import answer, schedules  # noqa: E402
from search.answer import frameworks  # noqa: E402
from search.schedules import ScheduleConfig  # noqa: E402

E, S = 4, 3  # epochs; optimizer steps an epoch (21 examples in batches of 8)
EVAL_LOSSES = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]  # worse after the first: the plateau cuts

pytestmark = pytest.mark.usefixtures("one_thread")


def config(**options) -> TrainConfig:
    extra = {k: options.pop(k) for k in ("metric", "holdout", "optimizer", "epochs")
             if k in options}
    return TrainConfig(**{"epochs": E, "metric": "eval_loss", "device": "cpu", **extra},
                       options={"trainer": "hf_support:make", **options})


class Reports:
    """A fake `report` in the mapping form; `fail` maps an evaluation index to what to raise."""

    def __init__(self, fail: dict[int, BaseException] | None = None) -> None:
        self.calls: list[tuple[int, dict[str, float], float]] = []
        self.fail = fail or {}

    def __call__(self, epoch, metrics, lr=None) -> None:
        self.calls.append((epoch, dict(metrics), lr))
        if epoch in self.fail:
            raise self.fail[epoch]


def run(cfg: TrainConfig, schedule: ScheduleConfig, report=None):
    """train() with the Built captured: (value, report, built)."""
    got: list[schedules.Built] = []
    report = report or Reports()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = hf.train(cfg, dataclasses.replace(schedule, listener=got.append), report)
    return value, report, got[0]


def exported_lrs(built: schedules.Built, cfg: TrainConfig) -> list[float]:
    """The LR of every optimizer step of the code `best --format hf` prints for this run,
    trained in the real Trainer on the same model and data."""
    rec = answer.Recommendation(
        study="toy", trial_number=0, value=0.5, family=built.family, kwargs=built.kwargs,
        interval=built.interval, warmup=built.warmup,
        optimizer=optimizer_record(built.scheduler.optimizer), epochs=built.epochs,
        steps_per_epoch=built.steps_per_epoch, searched_epochs=built.epochs,
        searched_steps_per_epoch=built.steps_per_epoch)
    code = answer.render(rec, "hf")
    spy = hf_support.Spy()
    ns = {"model": hf_support.Toy(spy), "train": hf_support.rows(SETTINGS["n_train"], 0),
          "val": hf_support.rows(SETTINGS["n_val"], 1)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "pasted.py", "exec"), ns)  # noqa: S102 - exactly as printed
        trainer = ns["trainer"]
        trainer.add_callback(spy)
        trainer.args.disable_tqdm = True
        trainer.train()
    return spy.lrs


def reference_lrs(schedule: ScheduleConfig, cfg: TrainConfig, losses) -> list[float]:
    """The search's own loop: torch's scheduler stepped as Built says."""
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, schedule, E * S)
    return step_through(opt, schedule, E, S, losses).trace


# -- 1. the LRs and the reports -------------------------------------------------------------

CASES = {
    "OneCycleLR": (ScheduleConfig("OneCycleLR", {"pct_start": 0.3, "div_factor": 25.0,
                                                 "final_div_factor": 1e4}, lr=0.1), "sgd"),
    "StepLR": (ScheduleConfig("StepLR", {"step_size": 0.5, "gamma": 0.5}, lr=0.1), "sgd"),
    "StepLR+warmup": (ScheduleConfig("StepLR", {"step_size": 0.5, "gamma": 0.5}, lr=0.1,
                                     warmup=0.25), "adamw"),
    "ReduceLROnPlateau": (ScheduleConfig("ReduceLROnPlateau", {"factor": 0.5, "patience": 0.2},
                                         lr=0.01), "adamw"),
}
INTERVALS = {"OneCycleLR": "iteration", "StepLR": "epoch", "StepLR+warmup": "iteration",
             "ReduceLROnPlateau": "plateau"}


@pytest.mark.parametrize("name", list(CASES))
def test_recorded_lrs_are_the_applied_ones_and_the_exported_codes(name, monkeypatch):
    schedule, optimizer = CASES[name]
    monkeypatch.setitem(SETTINGS, "eval_losses", EVAL_LOSSES)
    cfg = config(optimizer=optimizer)
    value, report, built = run(cfg, schedule)
    spy = hf_support.LAST["spy"]
    assert built.interval == INTERVALS[name]
    assert (built.epochs, built.steps_per_epoch, built.every) == (E, S, 1)
    assert len(spy.lrs) == E * S
    assert built.trace == spy.lrs  # recorded = applied, at every optimizer step
    assert built.trace == pytest.approx(reference_lrs(schedule, cfg, EVAL_LOSSES), rel=1e-12)
    assert built.trace == pytest.approx(exported_lrs(built, cfg), rel=1e-7)
    if name == "ReduceLROnPlateau":
        assert len(set(built.trace)) > 1  # the scripted losses made it cut: the test can tell
    # one report per epoch: every metric of the evaluation, the LR of its epoch's first step
    assert [c[0] for c in report.calls] == list(range(E))
    for (i, metrics, lr), raw in zip(report.calls, spy.metrics, strict=True):
        assert set(metrics) == {"eval_loss", "eval_accuracy", "eval_n"}
        assert metrics["eval_loss"] == pytest.approx(EVAL_LOSSES[i])
        assert metrics["eval_accuracy"] == raw["eval_accuracy"]
        assert all(type(v) is float for v in metrics.values())
        assert lr == spy.lrs[i * S]
    assert value == report.calls[-1][1]["eval_loss"]


def test_step_per_epoch_is_the_printed_one():
    """StepPerEpoch here and the class `best --format hf` prints: same LRs, same state."""
    ns: dict = {}
    exec(frameworks._STEP_PER_EPOCH, ns)  # noqa: S102
    printed = ns["StepPerEpoch"]
    public = {n for n in vars(printed) if not n.startswith("__")}
    assert public == {n for n in vars(hf.StepPerEpoch) if not n.startswith("__")}

    def lrs(cls, resume_at=None):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = cls(torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5), 3)
        out = []
        for call in range(20):
            if call == resume_at:  # a checkpoint restored into a new wrapper and optimizer
                state, opt_state = sched.state_dict(), opt.state_dict()
                opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
                sched = cls(torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5), 3)
                opt.load_state_dict(opt_state)
                sched.load_state_dict(state)
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out, sched

    ours, sched = lrs(hf.StepPerEpoch)
    theirs, printed_sched = lrs(printed)
    assert ours == theirs and len(set(ours)) > 2
    assert sched.state_dict().keys() == printed_sched.state_dict().keys() == {"calls",
                                                                               "scheduler"}
    assert sched.get_last_lr() == printed_sched.get_last_lr()
    assert lrs(hf.StepPerEpoch, resume_at=7)[0] == ours


def test_gradient_accumulation_counts_optimizer_steps(monkeypatch):
    """21 examples in batches of 4 = 6 batches; 2 a step = 3 optimizer steps an epoch."""
    cfg = config(training_args={"per_device_train_batch_size": 4,
                                "gradient_accumulation_steps": 2})
    schedule = CASES["OneCycleLR"][0]
    _, report, built = run(cfg, schedule)
    assert built.steps_per_epoch == S
    assert built.trace == hf_support.LAST["spy"].lrs
    assert built.trace == pytest.approx(reference_lrs(schedule, cfg, None), rel=1e-12)


def test_eval_steps_reports_every_evaluation_and_the_last_step():
    """eval_steps = 5 of 12 steps: evaluations after steps 5, 10 and 12 (the last); the
    schedule still spans all 12 steps and each report carries the LR of its first step."""
    schedule = CASES["StepLR"][0]
    _, report, built = run(config(eval_steps=5), schedule)
    spy = hf_support.LAST["spy"]
    assert spy.evaluations == 3 and [c[0] for c in report.calls] == [0, 1, 2]
    assert [c[2] for c in report.calls] == [spy.lrs[0], spy.lrs[5], spy.lrs[10]]
    assert built.trace == spy.lrs
    assert built.trace == pytest.approx(reference_lrs(schedule, config(), None), rel=1e-12)


def test_a_metric_other_than_the_loss_is_the_value():
    value, report, _ = run(config(metric="eval_accuracy"), CASES["StepLR"][0])
    assert value == report.calls[-1][1]["eval_accuracy"]


# -- 3. what report raises, and interrupts, leave the Trainer as they are ---------------------


class Stop(Exception):
    pass


def test_an_exception_from_report_stops_training_and_propagates_as_is():
    report = Reports(fail={1: Stop("pruned, say")})
    with pytest.raises(Stop, match="pruned, say"):
        run(config(), CASES["StepLR"][0], report)
    assert len(hf_support.LAST["spy"].lrs) == 2 * S < E * S  # stopped at the 2nd evaluation
    assert len(report.calls) == 2


def test_keyboard_interrupt_from_report_comes_out_as_is():
    with pytest.raises(KeyboardInterrupt):
        run(config(), CASES["StepLR"][0], Reports(fail={0: KeyboardInterrupt()}))


def test_keyboard_interrupt_inside_a_training_step_comes_out_as_is(monkeypatch):
    monkeypatch.setitem(SETTINGS, "interrupt_at", 4)
    with pytest.raises(KeyboardInterrupt):
        run(config(), CASES["StepLR"][0])
    assert len(hf_support.LAST["spy"].lrs) == 4


def test_a_non_finite_training_loss_diverges_at_once(monkeypatch):
    monkeypatch.setitem(SETTINGS, "nan_at", 4)
    report = Reports()
    with pytest.raises(Diverged) as e:
        run(config(), CASES["StepLR"][0], report)
    assert (e.value.epoch, e.value.step) == (1, 4)
    assert len(hf_support.LAST["spy"].lrs) == 4 and len(report.calls) == 1


def test_a_non_finite_eval_loss_diverges(monkeypatch):
    monkeypatch.setitem(SETTINGS, "eval_losses", [1.0, float("nan"), 1.0, 1.0])
    report = Reports()
    with pytest.raises(Diverged) as e:
        run(config(metric="eval_accuracy"), CASES["StepLR"][0], report)
    assert (e.value.epoch, e.value.step) == (1, 2 * S) and len(report.calls) == 1


# -- 5. holdout ------------------------------------------------------------------------------


def test_holdout_test_evaluates_the_test_dataset():
    _, report, _ = run(config(holdout="test"), CASES["StepLR"][0])
    assert hf_support.LAST["holdout"] == "test"
    assert {c[1]["eval_n"] for c in report.calls} == {SETTINGS["n_test"]}
    _, report, _ = run(config(), CASES["StepLR"][0])
    assert {c[1]["eval_n"] for c in report.calls} == {SETTINGS["n_val"]}


def test_a_function_without_holdout_is_called_without_arguments():
    run(config(trainer="hf_support:make_plain"), CASES["StepLR"][0])
    assert hf_support.LAST["plain"] and hf_support.LAST["holdout"] == "val"


def test_a_model_returned_twice_is_refused():
    cfg = config(trainer="hf_support:make_same_model")
    run(cfg, CASES["StepLR"][0])
    with pytest.raises(UserError, match="returned a model it returned before"):
        run(cfg, CASES["StepLR"][0])


# -- 4. prepare: every mistake one line, nothing written -------------------------------------


def one_line(cfg: TrainConfig) -> str:
    with pytest.raises(UserError) as e, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf.prepare(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_prepare_passes_and_writes_nothing(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf.prepare(config(metric="eval_accuracy", loss_metric="eval_loss"))
        hf.prepare(config(holdout="test"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == []


@pytest.mark.parametrize("options,expected", [
    ({"trainr": "x"}, "`objective.trainr` is not an option of objectives.hf:train (its "
                      "options: trainer, training_args, eval_steps, loss_metric); did you mean "
                      "'trainer'?"),
    ({"trainer": None}, "`objective.trainer` must name the function"),
    ({"trainer": "model.make"}, "must look like package.module:function but got 'model.make'"),
    ({"eval_steps": 0}, "`objective.eval_steps` must be a whole number of optimizer steps"),
    ({"training_args": {"learning_rate": 0.1}},
     "`objective.training_args`: learning_rate is set by schedsearch: the optimizer and the "
     "schedule are the trial's"),
    ({"training_args": {"max_steps": 9}}, "max_steps is set by schedsearch: the budget is"),
    ({"training_args": {"per_device_train_batch_sise": 4}},
     "'per_device_train_batch_sise' is not a TrainingArguments field; did you mean "
     "'per_device_train_batch_size'?"),
    ({"trainer": "no_such_module_here:make"},
     "`objective.trainer` = 'no_such_module_here:make': module 'no_such_module_here' cannot be "
     "imported"),
    ({"trainer": "hf_support:mkae"}, "module 'hf_support' has no 'mkae'; did you mean 'make'?"),
    ({"trainer": "hf_support:not_callable"}, "not_callable is a int, not a function"),
    ({"trainer": "hf_support:make_wrong_shape"},
     "is a Trainer function of the wrong shape: it must take no arguments (or only holdout=) "
     "and return the Trainer's keyword arguments, but it requires data_dir"),
    ({"trainer": "hf_support:make_fails"}, "fails: FileNotFoundError: data/train.csv"),
    ({"trainer": "hf_support:make_not_a_mapping"}, "returned a list; it must return a mapping"),
    ({"trainer": "hf_support:make_no_eval"},
     "returned no eval_dataset; it must return model, train_dataset, eval_dataset"),
    ({"trainer": "hf_support:make_with_optimizers"},
     "returned 'optimizers', which schedsearch sets: schedsearch builds the optimizer and the "
     "trial's scheduler"),
    ({"trainer": "hf_support:make_typo"},
     "returned 'compute_metric', which is not a Trainer keyword argument; did you mean "
     "'compute_metrics'?"),
    ({"loss_metric": "eval_los"}, "not 'eval_los'; set `objective.loss_metric`"),
])
def test_prepare_says_each_mistake_in_one_line(options, expected):
    assert expected in one_line(config(**options))


def test_prepare_refuses_the_built_in_objectives_settings():
    cfg = dataclasses.replace(config(), batch_size=64)
    assert one_line(cfg) == (
        "`objective.batch_size` is the built-in objective's setting, unused by "
        "objectives.hf:train; set `objective.training_args` = { per_device_train_batch_size = "
        "... } instead")
    assert "your `objective.trainer` function decides it" in one_line(
        dataclasses.replace(config(), dataset="fashion_mnist"))


def test_prepare_names_the_metrics_the_evaluation_reports():
    assert one_line(config(metric="eval_los")) == (
        "the Trainer's evaluation reports eval_loss, eval_accuracy, eval_n, not 'eval_los'; "
        "set [objective] metric to one of them; did you mean 'eval_loss'?")


def test_prepare_a_module_failing_on_import(tmp_path, monkeypatch):
    (tmp_path / "broken_trainer.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ("`objective.trainer` = 'broken_trainer:make': module 'broken_trainer' fails on "
            "import: RuntimeError: no GPU here") in one_line(config(trainer="broken_trainer:make"))


def test_prepare_holdout_test_without_a_test_dataset(monkeypatch):
    monkeypatch.setattr(hf_support, "make_no_test", lambda: {
        k: v for k, v in hf_support.make().items() if k != "test_dataset"}, raising=False)
    assert "returned no test_dataset" in one_line(
        config(trainer="hf_support:make_no_test", holdout="test"))


def test_prepare_without_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    assert "pip install 'schedsearch[hf]'" in one_line(config())


def test_the_runner_finds_prepare():
    assert hf.train.prepare is hf.prepare


def test_importing_the_module_needs_no_transformers():
    code = ("import sys; sys.modules['transformers'] = None; sys.modules['accelerate'] = None; "
            "import objectives.hf as m; print(m.StepPerEpoch.__name__)")
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(hf_support.__file__).rsplit("/tests/", 1)[0]}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.stdout.strip() == "StepPerEpoch", out.stderr


# -- end to end: `python -m search run` with objectives.hf -------------------------------------
# The search's runner gives a Recorder as `report` (the mapping form) and calls
# objectives.hf.prepare before storing anything.

STUDY = """
trials = {trials}
seed = 0
[objective]
function = "objectives.hf:train"
trainer = "hf_support:{make}"
metric = "eval_loss"
direction = "minimize"
epochs = 3
device = "cpu"
[space]
families = ["OneCycleLR", "StepLR", "ReduceLROnPlateau"]
lr = {{ low = 0.01, high = 0.5, log = true }}
enqueue_defaults = false
[sampler]
name = "random"
[pruner]
{pruner}
"""


def run_study(tmp_path, trials: int, make: str, pruner: str):
    import optuna
    from conftest import ROOT, run_cli

    (tmp_path / "hf.toml").write_text(STUDY.format(trials=trials, make=make, pruner=pruner))
    out = run_cli("run", "--study", "hf.toml", cwd=tmp_path, timeout=240,
                  env={"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
                       "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage).trials


def test_cli_every_trial_is_worth_its_last_evaluation(tmp_path):
    from search import record

    trials = run_study(tmp_path, 3, "make", 'name = "none"')
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for t in trials:
        r = record.of(t)
        losses = r.metric_curve("eval_loss")
        assert len(losses) == 3 and t.value == losses[-1] == t.intermediate_values[3]
        assert len(r.metric_curve("eval_accuracy")) == 3  # every metric is recorded
        assert len(r.lr_trace["lr"]) == 3 * S  # the LR of every optimizer step


def test_cli_pruning_stops_a_trial_inside_the_trainer(tmp_path):
    from search import record

    trials = run_study(tmp_path, 3, "make_worse_each_call",
                       'name = "median"\nn_startup_trials = 1')
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    first, pruned = trials[0], trials[1]
    # each call's eval loss is one more than the last's (prepare calls it too)
    assert list(pruned.intermediate_values) == [1]
    assert pruned.intermediate_values[1] == first.value + 1
    # the Trainer stopped at the first evaluation: one epoch of optimizer steps, not three
    assert len(record.of(pruned).lr_trace["lr"]) == S


def test_cli_a_metric_the_trainer_does_not_report_is_one_line_and_stores_nothing(tmp_path):
    from conftest import ROOT, run_cli

    study = STUDY.format(trials=1, make="make", pruner='name = "none"')
    (tmp_path / "hf.toml").write_text(study.replace('"eval_loss"', '"eval_los"'))
    out = run_cli("run", "--study", "hf.toml", cwd=tmp_path, timeout=240,
                  env={"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
                       "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: the Trainer's evaluation reports eval_loss, eval_accuracy, eval_n, not "
        "'eval_los'; set [objective] metric to one of them; did you mean 'eval_loss'?")
    assert not (tmp_path / "search.db").exists()
