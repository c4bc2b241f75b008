"""The Lightning and Hugging Face exports, run in the real frameworks on a toy model.

Truth is the search's own loop: torch's scheduler for the recommendation's schedule, stepped
as `schedules.Built` says, on the optimizer the trial trained with. Each framework must apply
the same LR at every optimizer step (read from the optimizer), for every family, with and
without an added warmup, and ReduceLROnPlateau driven by the logged validation loss.
"""

from __future__ import annotations

import dataclasses
import warnings

import optuna
import pytest
import torch
import torch.nn.functional as F
from conftest import step_through
from torch.utils.data import DataLoader, TensorDataset

from objectives.classify import TrainConfig, make_optimizer, optimizer_record
from search import answer, schedules, space
from search.answer import frameworks
from search.config import SpaceConfig

lightning = pytest.importorskip("lightning")
transformers = pytest.importorskip("transformers")

E, S = 4, 3  # epochs, optimizer steps per epoch
BATCH = 2
PRINTED = 1e-7  # the printed code's float literals carry 8 significant digits (schedules.lit)
# Validation losses per epoch: worse and worse after the first, so ReduceLROnPlateau cuts.
VAL_LOSSES = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
WARMUP_FAMILIES = [f for f, fam in schedules.SCHEDULES.items() if fam.warmup_ok]
# warmup: False, True (an added warmup) or "epoch" (no warmup, kept stepping per epoch as a
# study's `[space] per_epoch` keeps a family; else families torch steps per epoch step per
# optimizer step)
CASES = ([(f, False) for f in schedules.SCHEDULES] + [(f, True) for f in WARMUP_FAMILIES]
         + [(f, "epoch") for f, fam in schedules.SCHEDULES.items()
            if fam.interval == schedules.EPOCH])


def _warm(s: schedules.ScheduleConfig) -> schedules.ScheduleConfig:
    # an added warmup of a quarter of the run (ScheduleConfig.warmup, a fraction of the run;
    # before the budget-free rewrite: warmup_epochs)
    names = {f.name for f in dataclasses.fields(s)}
    return dataclasses.replace(s, **({"warmup": 0.25} if "warmup" in names
                                     else {"warmup_epochs": E / 4}))


def schedule_for(family: str, warmup: bool | str, seed: int = 0) -> schedules.ScheduleConfig:
    """A schedule of `family` with parameters drawn from the study space's ranges (`warmup`:
    see CASES)."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    per_epoch = (family,) if warmup == "epoch" else ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = space.suggest(trial, SpaceConfig(families=(family,), per_epoch=per_epoch), E)
    s = dataclasses.replace(s, lr=0.01, weight_decay=0.05)
    return _warm(s) if warmup is True else s


def reference(s: schedules.ScheduleConfig, cfg: TrainConfig):
    """(Recommendation, LR at every optimizer step) as the search trains: torch's scheduler
    stepped as Built says, on the optimizer `cfg` names."""
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, s, E * S)
    built = step_through(opt, s, E, S, VAL_LOSSES)
    lrs = built.trace
    rec = answer.Recommendation(
        study="toy", trial_number=0, value=0.5, family=built.family, kwargs=built.kwargs,
        interval=built.interval, warmup=built.warmup,
        optimizer=optimizer_record(opt), epochs=E, steps_per_epoch=S, searched_epochs=E,
        searched_steps_per_epoch=S)
    return rec, lrs


def case(family: str, warmup: bool, optimizer: str = "adamw"):
    s = schedule_for(family, warmup)
    rec, want = reference(s, TrainConfig(optimizer=optimizer))
    assert (rec.warmup is not None) == (warmup is True)
    if family == "ReduceLROnPlateau":
        assert len(set(want)) > 1  # the losses made it cut the LR: the test can tell
    return rec, want


def _data(n: int):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g), torch.randn(n, 1, generator=g)


# -- Lightning ---------------------------------------------------------------------------


class _Toy(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.lrs: list[float] = []

    def training_step(self, batch, i):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def validation_step(self, batch, i):
        self.log("val_loss", VAL_LOSSES[self.current_epoch], on_epoch=True)

    def on_before_optimizer_step(self, optimizer):
        self.lrs.append(optimizer.param_groups[0]["lr"])  # what this step applies

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data(S * BATCH)),
                                           batch_size=BATCH)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data(BATCH)),
                                           batch_size=BATCH)


def run_lightning(code: str, grad_accum: int = 1) -> list[float]:
    """The printed code as it stands (MyModule given a toy model and data), trained E epochs
    of S optimizer steps of `grad_accum` batches; the LR of every optimizer step."""
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "pasted.py", "exec"), ns)  # noqa: S102 - exactly as printed
    data = TensorDataset(*_data(S * grad_accum * BATCH))
    module = type("Pasted", (ns["MyModule"], _Toy), {
        "train_dataloader": lambda self: DataLoader(data, batch_size=BATCH)})()
    trainer = lightning.Trainer(
        max_epochs=E, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        accumulate_grad_batches=grad_accum)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny data: "few batches", "no workers"
        trainer.fit(module)
    return module.lrs


@pytest.mark.parametrize("family,warmup", CASES)
def test_lightning_applies_the_recorded_lrs(family, warmup, one_thread):
    rec, want = case(family, warmup)
    code = answer.render(rec, "lightning")
    got = run_lightning(code)
    assert got == pytest.approx(want, rel=PRINTED, abs=0)
    assert "torch.optim.AdamW(" in code


def test_lightning_with_grad_accum_says_so_and_applies_the_same_lrs(one_thread):
    """Printed for 2 batches per optimizer step: the Trainer line names it, and a fit with
    2 x S batches an epoch applies the recorded LR at every optimizer step."""
    rec, want = case("OneCycleLR", False)
    code = answer.render(rec, "lightning", grad_accum=2)
    assert code.rstrip().endswith(
        f"trainer = L.Trainer(max_epochs={E}, accumulate_grad_batches=2)  # {S} optimizer "
        "steps of 2 batches an epoch")
    assert run_lightning(code, grad_accum=2) == pytest.approx(want, rel=PRINTED, abs=0)


def test_a_trial_pruned_before_its_first_report_exports_in_every_format():
    rec, _ = case("StepLR", False)
    pruned = dataclasses.replace(rec, value=None, state="PRUNED", epochs_trained=0)
    for fmt in answer.FORMATS:
        out = answer.render(pruned, fmt)
        if fmt in ("lightning", "hf"):
            assert out.startswith(f"# {'PyTorch Lightning' if fmt == 'lightning' else 'Hugging'}")
            assert "StepLR, pruned after 0 of 4 epochs (no validation accuracy).\n" in out


@pytest.mark.parametrize("fmt", ["text", "python"])
def test_grad_accum_counts_are_said_once_above_the_code(fmt):
    rec, _ = case("OneCycleLR", False)
    out = answer.render(rec, fmt, grad_accum=4)
    note = ("# --grad-accum 4: every count here is in optimizer steps of 4 batches each "
            "(STEPS_PER_EPOCH too)\n")
    assert out.count(note) == 1 and note + rec.code() in out
    assert "--grad-accum" not in answer.render(rec, fmt)


def test_lightning_plateau_names_the_metric():
    rec, _ = case("ReduceLROnPlateau", False)
    code = answer.render(rec, "lightning")
    assert '"monitor": "val_loss"' in code and 'self.log("val_loss"' in code
    assert '"interval": "epoch"' in code


# -- Hugging Face Trainer ----------------------------------------------------------------


class _HFToy(torch.nn.Module):
    """Train loss: MSE. Eval loss: VAL_LOSSES[evaluations so far], as a run's val loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.evals = 0

    def forward(self, x, labels):
        out = self.net(x)
        if self.training:
            return {"loss": F.mse_loss(out, labels), "logits": out}
        return {"loss": torch.tensor(VAL_LOSSES[self.evals]), "logits": out}


class _Spy(transformers.TrainerCallback):
    def __init__(self, model: _HFToy) -> None:
        self.model, self.lrs = model, []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kw):
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_evaluate(self, args, state, control, **kw):
        self.model.evals += 1


def _rows(n: int) -> list[dict]:
    x, y = _data(n)
    return [{"x": a, "labels": b} for a, b in zip(x, y, strict=True)]


def run_hf(code: str) -> list[float]:
    """The printed code with a toy model and data set: S batches of 8 an epoch; LR per step."""
    model = _HFToy()
    ns = {"model": model, "train": _rows(8 * S), "val": _rows(8)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(code, ns)  # noqa: S102 - exactly as printed
        trainer = ns["trainer"]
        spy = _Spy(model)
        trainer.add_callback(spy)
        trainer.args.disable_tqdm = True
        trainer.train()
    return spy.lrs


@pytest.mark.parametrize("family,warmup", CASES)
def test_hf_trainer_applies_the_recorded_lrs(family, warmup, one_thread):
    rec, want = case(family, warmup)
    code = answer.render(rec, "hf")
    got = run_hf(code)
    assert got == pytest.approx(want, rel=PRINTED, abs=0)
    form = frameworks.describe(rec)["hf"]["form"]
    assert f"# Form: {form}, because " in code
    builtin = family in ("Constant", "ReduceLROnPlateau") and warmup is not True
    assert (form == "training_arguments") == builtin
    assert ('optim="adamw_torch"' in code) if builtin else ("torch.optim.AdamW(" in code)


@pytest.mark.parametrize("family", list(frameworks.HF_BUILTIN))
def test_hf_builtin_matches_torch_step_by_step(family):
    """transformers' get_scheduler for the printed fields = torch's schedule, every step."""
    rec, want = case(family, False)
    fields = frameworks.describe(rec)["hf"]["training_arguments"]
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=fields["learning_rate"])
    sched = transformers.get_scheduler(
        fields["lr_scheduler_type"], opt, num_warmup_steps=fields["warmup_steps"],
        num_training_steps=fields["max_steps"],
        scheduler_specific_kwargs=fields["lr_scheduler_kwargs"])
    got = []
    for epoch in range(E):
        for _ in range(S):
            got.append(opt.param_groups[0]["lr"])
            opt.step()
            if not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step()  # the Trainer: after every optimizer step
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(VAL_LOSSES[epoch])  # the Trainer: after every evaluation
    assert got == pytest.approx(want, rel=1e-15, abs=0)


def test_hf_epoch_schedule_is_held_for_the_epoch():
    rec, _ = case("StepLR", "epoch")
    d = frameworks.describe(rec)["hf"]
    assert d["form"] == "optimizers" and d["step_every"] == S
    assert "once per epoch" in d["reason"]
    code = answer.render(rec, "hf", grad_accum=4)
    assert "StepPerEpoch(scheduler, 3)" in code and "gradient_accumulation_steps=4" in code
    assert f"max_steps={E * S}," in code


def test_sgd_in_every_format():
    rec, _ = case("Constant", False, optimizer="sgd")
    for fmt in ("text", "python", "lightning"):
        assert "torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True" in \
            answer.render(rec, fmt), fmt
    hf = answer.render(rec, "hf")
    assert 'optim="sgd"' in hf and 'optim_args="momentum=0.9,nesterov=True"' in hf


def test_an_optimizer_the_trainer_cannot_name_goes_through_optimizers():
    rec, _ = case("Constant", False)
    other = dataclasses.replace(rec, optimizer={"name": "Adam", "lr": 0.01})
    d = frameworks.describe(other)["hf"]
    assert d["form"] == "optimizers" and "no optim name for Adam" in d["reason"]
    assert "torch.optim.Adam(params, lr=0.01" in answer.render(other, "hf")
