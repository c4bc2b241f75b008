"""Language-model objective: `train(cfg, schedule, report) -> validation loss` (lower is better).

A small decoder-only transformer over bytes (objectives.lm_model) trained with AdamW on a real
text (objectives.text: the King James Bible, or the option `text_path`), scored by its mean
cross-entropy on held-out text. A study names it with `function = "objectives.lm:train"`,
`metric = "val_loss"`, `direction = "minimize"` (search/studies/lr-lm.toml).

The budget is counted in optimizer steps, not passes over the text. One "epoch" of the
schedule is one evaluation interval:

    epochs          evaluations (TrainConfig.epochs, the study's `epochs`)
    steps_per_eval  optimizer steps between two evaluations (option, default 50)
    total steps     epochs x steps_per_eval

so the schedule is built as `schedule.build(optimizer, steps_per_eval, epochs)`: a family
stepped per iteration steps after every optimizer step, one stepped per epoch after every
evaluation (its LR changes only there: more evaluations of fewer steps make it smoother),
and the pruner's resources, the contest's horizons and `warmup_epochs` count evaluations.
An added warmup makes any family step per optimizer step.

Each step trains on `batch_size` windows of `context` + 1 bytes at random places in the
training part (drawn from a torch Generator seeded with cfg.seed: a seed gives the same
batches), predicting every byte of a window from those before it. The model's weights start
from torch.manual_seed(cfg.seed). AdamW takes the schedule's LR and weight decay and cfg's
betas and eps (LM practice: betas (0.9, 0.95), weight decay 0.1); the weight decay applies to
the matrices (linear weights and the tied embedding, as nanoGPT), not to the LayerNorms.
Gradients are clipped to norm 1.0 before every step. `optimizer = "schedulefree_adamw"`
trains schedule-free AdamW (the contest's baseline), evaluated at its averaged weights.

An evaluation is the mean cross-entropy in nats over every predicted byte of a fixed set of
non-overlapping windows of the scored part (evenly spread over it, at most `eval_bytes` bytes,
default 32 KiB: under a second on a CPU), reported as `val_loss` with `val_bpc` (bits per
byte, val_loss / ln 2) beside it: `report(epoch, {"val_loss": ..., "val_bpc": ...},
lr=...)`, `epoch` counting evaluations from 0, `lr` the LR applied at the first optimizer step
since the previous evaluation. `holdout = "test"` (validate) trains on train + validation text
and scores the test text under the same names. `final_test`: after the last evaluation,
`report.test(test_loss, test_acc)` with the test text's loss and next-byte accuracy (top-1).

Options (keys of the study's [objective] that are not TrainConfig fields): d_model, n_layers,
n_heads, context (the model), steps_per_eval, eval_bytes, text_path (relative to the working
directory); an unknown one is a UserError. `train_subset` (`--train-subset N`) trains on the
first N bytes of the training text. The study's `dataset` is a label only; the image
settings (data_dir, width, val_fraction, label_smoothing, augment) are not read. A
non-finite training loss raises objectives.Diverged at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import fields
from typing import Any

import torch
import torch.nn.functional as F

from objectives import Diverged, Schedule, UserError, text
from objectives.classify import ScheduleFree, make_optimizer, resolve_device
from objectives.lm_model import ByteLM, LMShape
from objectives.settings import TrainConfig

__all__ = ["DEFAULTS", "GRAD_CLIP", "TRAINS_OPTIMIZERS", "Options", "evaluate", "eval_windows",
           "options_of", "prepare", "train", "train_batch"]

# The contest may run its schedule-free AdamW baseline here: this objective builds the
# optimizer cfg.optimizer names (search.contest.contenders.unavailable).
TRAINS_OPTIMIZERS = True
GRAD_CLIP = 1.0
EVAL_BATCH = 64  # windows per forward pass when evaluating
_SHAPE = {f.name for f in fields(LMShape)}
DEFAULTS: dict[str, Any] = {**{f.name: f.default for f in fields(LMShape)},
                            "steps_per_eval": 50, "eval_bytes": 32768, "text_path": None}


class Options(dict):
    """The objective's options with their defaults filled in, checked."""

    @property
    def shape(self) -> LMShape:
        return LMShape(**{k: self[k] for k in _SHAPE})


def options_of(cfg: TrainConfig) -> Options:
    """cfg.options checked: known keys, whole numbers >= 1 where counts, a buildable shape."""
    given: Mapping[str, Any] = cfg.options or {}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown option `{unknown[0]}` for objectives.lm; its options are "
                        f"{', '.join(DEFAULTS)}")
    out = Options(DEFAULTS, **given)
    for k, v in out.items():
        if k != "text_path" and (type(v) is not int or v < 1):
            raise UserError(f"`{k}` must be an integer >= 1 but got {v!r}")
    problem = out.shape.problem()
    if problem:
        raise UserError(problem)
    if type(cfg.batch_size) is not int or cfg.batch_size < 1:
        raise UserError(f"`batch_size` must be an integer >= 1 but got {cfg.batch_size!r}")
    return out


def _parts(cfg: TrainConfig, opts: Options) -> tuple[torch.Tensor, torch.Tensor]:
    data = text.load(opts["text_path"])
    fit, scored = text.parts(data, cfg.holdout)
    window = opts["context"] + 1
    if cfg.train_subset is not None:
        fit = fit[: cfg.train_subset]
        if len(fit) < window:
            raise UserError(f"`train_subset` ({cfg.train_subset} bytes of training text) is "
                            f"too few for windows of {window} bytes (context + 1)")
    if len(fit) < window or len(scored) < window:
        where = f"`text_path` {opts['text_path']}" if opts["text_path"] else "the corpus"
        raise UserError(
            f"{where} holds {len(data)} bytes: too few for windows of {window} bytes (context "
            f"+ 1) in each part (the last {text.VAL_FRACTION + text.TEST_FRACTION:.0%} is "
            "held out); use a longer text or a smaller `context`")
    return fit, scored


def prepare(cfg: TrainConfig) -> None:
    """Check the options and load the corpus, before a study stores anything: a bad option or
    a missing corpus is one UserError line."""
    _parts(cfg, options_of(cfg))


def train_batch(part: torch.Tensor, batch: int, context: int,
                generator: torch.Generator) -> torch.Tensor:
    """`batch` windows of context + 1 bytes at random places inside `part`, as int64."""
    starts = torch.randint(0, len(part) - context, (batch,), generator=generator,
                           device=generator.device)
    return part[starts[:, None] + torch.arange(context + 1, device=part.device)].long()


def eval_windows(part: torch.Tensor, context: int, cap: int) -> torch.Tensor:
    """The scored windows: non-overlapping windows of context + 1 bytes of `part`, at most
    ~cap predicted bytes, evenly spread over it (fixed: every run is scored on the same)."""
    window = context + 1
    n = len(part) // window
    keep = max(1, min(n, cap // context))
    chosen = torch.linspace(0, n - 1, keep).round().long()
    return part[chosen[:, None] * window + torch.arange(window)].long()


def evaluate(model: torch.nn.Module, windows: torch.Tensor, autocast: Callable = nullcontext
             ) -> tuple[float, float]:
    """Mean cross-entropy (nats per byte) and next-byte accuracy over the windows."""
    model.eval()
    loss, correct, count = 0.0, 0, 0
    with torch.inference_mode(), autocast():
        for w in windows.split(EVAL_BATCH):
            logits = model(w[:, :-1]).float().flatten(0, 1)
            target = w[:, 1:].flatten()
            loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(1) == target).sum())
            count += target.numel()
    model.train()
    return loss / count, correct / count


def train(cfg: TrainConfig, schedule: Schedule, report: Callable[..., Any]) -> float:
    """Train for cfg.epochs evaluations of steps_per_eval optimizer steps each, calling
    `report(epoch, {"val_loss": ..., "val_bpc": ...}, lr=lr_applied)` after each. Returns the
    last validation loss (nats per byte). Whatever `report` raises propagates."""
    opts = options_of(cfg)
    fit, scored = _parts(cfg, opts)
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    torch.manual_seed(cfg.seed)
    model = ByteLM(opts.shape).to(device)
    fit = fit.to(device)
    windows = eval_windows(scored, opts["context"], opts["eval_bytes"]).to(device)
    steps, epochs, context = opts["steps_per_eval"], cfg.epochs, opts["context"]
    optimizer = make_optimizer(model.param_groups(), cfg, schedule, steps * epochs)
    free = cfg.optimizer.startswith("schedulefree")
    built = schedule.build(optimizer, steps, epochs)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    params = [p for group in optimizer.param_groups for p in group["params"]]

    val_loss, step = math.nan, 0
    for epoch in range(epochs):
        lr_applied = math.nan
        if free:
            assert isinstance(optimizer, ScheduleFree)  # free: a schedule-free optimizer
            optimizer.train()
        for i in range(steps):
            xb = train_batch(fit, cfg.batch_size, context, gen)
            with autocast():
                logits = model(xb[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), xb[:, 1:].flatten())
            value = loss.item()  # one sync per step: divergence must stop the trial at once
            if not math.isfinite(value):
                raise Diverged(epoch, step, value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            if i == 0:
                lr_applied = optimizer.param_groups[0]["lr"]  # what this step applies
            optimizer.step()
            built.after_batch()
            step += 1
        if free:  # score the averaged weights (no BatchNorm here: nothing to recalibrate)
            assert isinstance(optimizer, ScheduleFree)
            optimizer.eval()
        val_loss, _ = evaluate(model, windows, autocast)
        if not math.isfinite(val_loss):
            raise Diverged(epoch, step, val_loss)
        built.after_epoch(val_loss)
        report(epoch, {"val_loss": val_loss, "val_bpc": val_loss / math.log(2)}, lr=lr_applied)
    on_test = getattr(report, "test", None)
    if cfg.final_test and on_test is not None:
        test_part = scored if cfg.holdout == "test" else text.parts(
            text.load(opts["text_path"]), "test")[1]
        on_test(*evaluate(model, eval_windows(test_part, context, opts["eval_bytes"])
                          .to(device), autocast))
    return val_loss


train.prepare = prepare  # type: ignore[attr-defined]  # search.runner.prepare calls it
train.holdout = True  # type: ignore[attr-defined]  # "test": trains on train + val, scores test
train.options = tuple(DEFAULTS)  # type: ignore[attr-defined]  # the keys options_of accepts
