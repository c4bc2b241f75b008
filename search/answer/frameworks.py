"""A Recommendation -> code for PyTorch Lightning and the Hugging Face Trainer.

Each framework decides itself when a scheduler steps, and translating by hand is where
schedules go wrong. `describe(rec)` says, JSON-able, how the schedule steps in each framework
(`--format json` carries it, so another tool can generate its own code); `lightning(rec)` and
`hf(rec)` print paste-ready code from it. The kwargs are the recommendation's, already at its
budget: nothing here rescales.

Lightning steps a scheduler as its config dict says: `interval` "step" (after every optimizer
step) or "epoch", and ReduceLROnPlateau with the logged metric named by `monitor`.
The Hugging Face Trainer steps its scheduler after every optimizer step, and a
ReduceLROnPlateau after every evaluation with `metric_for_best_model`. A schedule stepped per
epoch is wrapped there (`StepPerEpoch`) so that it still changes the LR once per epoch.
"""

from __future__ import annotations

import inspect
import json
import shlex
import textwrap
from collections.abc import Callable
from typing import Any

from objectives.hf import StepPerEpoch
from objectives.optimizers import by_class
from search import schedules, storage
from search.answer.recommendation import Recommendation, optimizer_call

__all__ = ["HF_BUILTIN", "describe", "hf", "lightning"]

MONITOR = "val_loss"  # the metric ReduceLROnPlateau reads: the search stepped it on val loss
LIGHTNING_INTERVAL = {schedules.EPOCH: "epoch", schedules.ITERATION: "step",
                      schedules.PLATEAU: "epoch"}


def _constant(rec: Recommendation) -> dict[str, Any] | None:
    return None if rec.warmup else {"lr_scheduler_type": "constant", "lr_scheduler_kwargs": {}}


def _plateau(rec: Recommendation) -> dict[str, Any]:
    # The Trainer's reduce_lr_on_plateau is torch's ReduceLROnPlateau(optimizer, **kwargs),
    # stepped with eval_<metric_for_best_model> after each evaluation.
    return {"lr_scheduler_type": "reduce_lr_on_plateau", "lr_scheduler_kwargs": dict(rec.kwargs)}


# Families with an exact built-in `lr_scheduler_type` (the same LR at every optimizer step, as
# tests/test_frameworks.py checks with transformers' get_scheduler); None: not for this one.
HF_BUILTIN: dict[str, Callable[[Recommendation], dict[str, Any] | None]] = {
    "Constant": _constant,
    "ReduceLROnPlateau": _plateau,
}

_NOT_BUILTIN = {
    "OneCycleLR": "the Trainer has no one-cycle schedule",
    "InverseTimeDecay": "the Trainer's inverse_sqrt decays as 1/sqrt(step), not "
                        "1/(1 + decay * step)",
    "WarmupCosine": "its warmup starts at {f} x the LR; the Trainer's cosine schedules warm up "
                    "from 0",
    "WarmupStableDecay": "its warmup starts at {f} x the LR; the Trainer's warmup_stable_decay "
                         "warms up from 0",
}


def _hf_reason(rec: Recommendation, builtin: dict[str, Any] | None) -> str:
    if builtin is not None:
        return (f"{rec.family} is exactly the built-in lr_scheduler_type "
                f"{builtin['lr_scheduler_type']!r}")
    why = "no built-in lr_scheduler_type gives the same LR at every step: "
    if rec.warmup:
        return why + (f"its warmup starts at {rec.warmup['start_factor']:g} x the LR; the "
                      "Trainer's warmups start from 0")
    if rec.interval == schedules.EPOCH:
        return why + ("it changes the LR once per epoch, the Trainer's built-ins at every "
                      "optimizer step")
    return why + _NOT_BUILTIN.get(rec.family, "the Trainer has none like it").format(
        f=schedules.WARMUP_START_FACTOR)


def describe(rec: Recommendation) -> dict[str, Any]:
    """How the schedule steps in Lightning and in the Hugging Face Trainer, JSON-able."""
    cls, kwargs = optimizer_call(rec.optimizer)
    plateau = rec.interval == schedules.PLATEAU
    known = by_class(rec.optimizer.get("name", "SGD")) is not None  # the Trainer builds it
    builtin = HF_BUILTIN[rec.family](rec) if rec.family in HF_BUILTIN and known else None
    total = rec.epochs * rec.steps_per_epoch
    hf_fields: dict[str, Any] = {"max_steps": total}  # E x S: the Trainer stops there
    if plateau:  # the Trainer steps it after every evaluation, with eval_loss
        hf_fields |= {"eval_strategy": "epoch", "metric_for_best_model": "loss"}
    if builtin is not None:
        hf_fields |= {"learning_rate": kwargs["lr"], **builtin, "warmup_steps": 0,
                      "weight_decay": kwargs.get("weight_decay", 0.0)}
        hf_fields |= _hf_optim(rec.optimizer)
    return {
        "optimizer": {"class": cls, "kwargs": kwargs},
        "lightning": {"interval": LIGHTNING_INTERVAL[rec.interval], "frequency": 1,
                      "monitor": MONITOR if plateau else None},
        "hf": {
            "form": "training_arguments" if builtin is not None else "optimizers",
            "reason": _hf_reason(rec, builtin) if known else (
                f"the Trainer has no optim name for {rec.optimizer.get('name')}"),
            # the Trainer steps after every optimizer step; the scheduler wants one step per
            # this many of them (StepPerEpoch) or is stepped by evaluations (plateau: 0)
            "step_every": 0 if plateau else (
                rec.steps_per_epoch if rec.interval == schedules.EPOCH else 1),
            "training_arguments": hf_fields,
        },
    }


def _hf_optim(o: dict[str, Any]) -> dict[str, Any]:
    kind = by_class(o.get("name", "SGD"))
    assert kind is not None  # describe asks only for an optimizer the table knows
    out: dict[str, Any] = {"optim": kind.hf}
    if "betas" in o:
        out |= {"adam_beta1": o["betas"][0], "adam_beta2": o["betas"][1]}
    if "eps" in o:
        out["adam_epsilon"] = o["eps"]
    extra = {k: o[k] for k in kind.hf_optim_args if k in o}
    if extra:
        out["optim_args"] = ",".join(f"{k}={v}" for k, v in extra.items())
    return out


def _header(rec: Recommendation, what: str) -> str:
    again = storage.hint_command(f"best --study {shlex.quote(rec.study)} --epochs N "
                                 "--steps-per-epoch M")
    name = rec.label or rec.family
    if rec.schedule_free:
        name = f"{rec.label or 'schedule-free'} (no scheduler)"
    return (f"# {what}: study {rec.study!r}, trial {rec.trial_number}, {name}, "
            f"{rec.outcome()}.\n# Computed for {rec.epochs} epochs x "
            f"{rec.steps_per_epoch} optimizer steps = {rec.epochs * rec.steps_per_epoch} "
            f"steps; for another length run\n# `{again}`.\n")


def _body(rec: Recommendation, params: str) -> str:
    return (f"params = {params}\noptimizer = {rec.optimizer_code()}\n"
            f"scheduler = {rec.scheduler_code()}\n")


def _py(v: Any) -> str:
    """A Python literal, strings in double quotes, floats as the other exports print them."""
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(x)}" for k, x in v.items()) + "}"
    return schedules.lit(v)


def _comment(text: str) -> str:
    return textwrap.fill(text, 97, initial_indent="# ", subsequent_indent="# ") + "\n"


def lightning(rec: Recommendation, grad_accum: int = 1) -> str:
    """`configure_optimizers(self)` in a LightningModule stub, and the Trainer it was computed
    for: valid Python as printed. `grad_accum`: batches per optimizer step (the Trainer's
    `accumulate_grad_batches`); counts are optimizer steps."""
    if rec.schedule_free:
        return _lightning_schedule_free(rec, grad_accum)
    d = describe(rec)["lightning"]
    lines = [f'"interval": {_py(d["interval"])},  # ' + (
        "scheduler.step() after every optimizer step" if d["interval"] == "step"
        else "scheduler.step() once after each epoch"), '"frequency": 1,']
    if d["monitor"]:
        lines.append(f'"monitor": {_py(d["monitor"])},  # needs self.log("{d["monitor"]}", loss) '
                     "in validation_step (logged per epoch)")
    config = textwrap.indent("\n".join(lines), " " * 16)
    trainer = f"max_epochs={rec.epochs}"
    per_epoch = f"{rec.steps_per_epoch} optimizer steps an epoch"
    if grad_accum > 1:
        trainer += f", accumulate_grad_batches={grad_accum}"
        per_epoch = f"{rec.steps_per_epoch} optimizer steps of {grad_accum} batches an epoch"
    return (_header(rec, "PyTorch Lightning") + _comment(
        "MyModule stands for your LightningModule: add configure_optimizers to it (the rest "
        "stays yours), and train with the Trainer below.")
            + "import lightning as L\nimport torch\n\n\n"
            "class MyModule(L.LightningModule):\n"
            "    def configure_optimizers(self):\n"
            + textwrap.indent(_body(rec, "self.parameters()"), " " * 8) +
            "        return {\n"
            '            "optimizer": optimizer,\n'
            '            "lr_scheduler": {\n'
            '                "scheduler": scheduler,\n'
            f"{config}\n"
            "            },\n"
            "        }\n\n\n"
            f"trainer = L.Trainer({trainer})  # {per_epoch}\n")


def _lightning_schedule_free(rec: Recommendation, grad_accum: int) -> str:
    """A schedule-free optimizer in Lightning: no scheduler; its train/eval modes follow the
    model's (the optimizer averages its iterates: evaluate and save in eval mode)."""
    trainer = f"max_epochs={rec.epochs}"
    if grad_accum > 1:
        trainer += f", accumulate_grad_batches={grad_accum}"
    module = rec.optimizer_code().split(".", 1)[0]
    mode = "        self.optimizers().optimizer.{}()\n"
    return (_header(rec, "PyTorch Lightning") + _comment(
        "MyModule stands for your LightningModule: add these methods to it (the rest stays "
        "yours). Schedule-free: no LR scheduler; the optimizer is in train mode while "
        "training and in eval mode to evaluate or save.")
            + f"import lightning as L\nimport {module}  # pip install schedulefree\n\n\n"
            "class MyModule(L.LightningModule):\n"
            "    def configure_optimizers(self):\n"
            f"        return {rec.optimizer_code().replace('(params,', '(self.parameters(),')}"
            "\n\n"
            "    def on_train_epoch_start(self):\n" + mode.format("train") + "\n"
            "    def on_validation_epoch_start(self):\n" + mode.format("eval") + "\n"
            "    def on_validation_epoch_end(self):\n" + mode.format("train") + "\n"
            "    def on_save_checkpoint(self, checkpoint):\n" + mode.format("eval") + "\n\n"
            f"trainer = L.Trainer({trainer})  # {rec.steps_per_epoch} optimizer steps an "
            "epoch\n")


# The wrapper printed for a schedule stepped per epoch is the class the HF adapter trains with
# (objectives.hf): one definition for the search and for the code a person pastes.
_STEP_PER_EPOCH = "\n\n" + inspect.getsource(StepPerEpoch)


def _args(fields: dict[str, Any], grad_accum: int) -> str:
    items = {"output_dir": "out", **fields, "gradient_accumulation_steps": grad_accum}
    text = "".join(f"    {k}={_py(v)},\n" for k, v in items.items())
    return f"args = TrainingArguments(\n{text})\n"


def hf(rec: Recommendation, grad_accum: int = 1) -> str:
    """For the Hugging Face Trainer: TrainingArguments fields where the schedule is a built-in
    lr_scheduler_type exactly, else `optimizers=(optimizer, scheduler)` from torch classes.
    Counts are optimizer steps; `grad_accum` batches make one optimizer step."""
    d = describe(rec)["hf"]
    head = _header(rec, "Hugging Face Trainer") + _comment(
        f"Form: {d['form']}, because {d['reason']}.")
    fields = d["training_arguments"]
    if d["form"] == "training_arguments":
        return (head + _comment("The Trainer exempts biases and LayerNorm weights from "
                                "weight decay; the search decayed every parameter.")
                + "from transformers import Trainer, "
                "TrainingArguments\n\n" + _args(fields, grad_accum)
                + "trainer = Trainer(model=model, args=args, train_dataset=train, "
                "eval_dataset=val)\n")
    every = d["step_every"]
    wrap = every > 1
    make = ("\n\ndef make_optimizer_and_scheduler(model):\n"
            + textwrap.indent(_body(rec, "model.parameters()"), "    ")
            + (f"    scheduler = StepPerEpoch(scheduler, {every})  # stepped once per epoch\n"
               if wrap else "")
            + "    return optimizer, scheduler\n\n\n")
    note = ("# learning_rate and the scheduler in TrainingArguments are unused: the optimizer "
            "and scheduler come\n# from `optimizers`. max_steps fixes the optimizer steps "
            "the schedule was computed for.\n")
    return (head + "import torch\nfrom transformers import Trainer, TrainingArguments\n"
            + (_STEP_PER_EPOCH if wrap else "") + make + note + _args(fields, grad_accum)
            + "trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,\n"
            "                  optimizers=make_optimizer_and_scheduler(model))\n")
