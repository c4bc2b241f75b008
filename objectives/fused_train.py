"""Train K trials at once as one fused model, refilling a slot as soon as its trial ends.

The array counterpart of `objectives.classify.train`; it knows nothing of Optuna or of the
search (the caller hands in jobs, each with its schedule's knobs and a function that builds
its torch scheduler, and is told how each ended). A member trained here is the lone trial of
`classify.train`, up to float rounding:

- Weights: every trial starts from the net that `torch.manual_seed(cfg.seed)` then
  `models.make` gives, exactly as a lone trial does (so all trials share one initialisation).
- Batches: a lone trial's epoch e is the e-th epoch of one generator seeded with cfg.seed
  (`randperm`, then per step the crop and flip draws of `classify.augment`). Here the
  generator's state at the start of every epoch index is kept, so a member in its epoch e
  gets exactly those batches whenever it started. Members at the same epoch index (all of
  them, until a slot is refilled) share one batch; otherwise each gets its own.
- Optimizer: one shadow torch.optim.SGD per member, over a dummy parameter, carries the
  member's real torch scheduler (built by the job's `build`); its param_groups[0]["lr"] is the LR
  that `FusedSGD` applies to the member's rows. ReduceLROnPlateau steps on the member's own
  validation loss.
- Independence: each member's loss is its own mean cross entropy; the summed loss gives each
  member exactly its own gradient. No clipping across members. A member whose training loss
  is not finite is stopped at that step (its update is masked out), reset to the initial
  weights, and its slot refilled at the next epoch boundary, where refills happen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from objectives import Diverged, data, models
from objectives import classify as lone
from objectives.fused import FusedAirbench, FusedSGD, member_losses

__all__ = ["ArrayTrainer", "Job", "member_bytes"]

Report = Callable[[int, float, float, float], None]
# (optimizer, steps per epoch, epochs) -> the built schedule: `after_batch()` after every
# optimizer step, `after_epoch(val_loss)` after every epoch
Build = Callable[[torch.optim.Optimizer, int, int], Any]
_IDLE = {"lr": 0.0, "momentum": 0.0}  # an empty slot's hyperparameters (it does not move)


@dataclass
class Job:
    """One trial for a slot: its schedule's knobs (`lr`, `momentum`, `weight_decay`), how to
    build its scheduler, its `report`, and the caller's handle."""

    schedule: Any
    build: Build
    report: Report
    tag: Any = None
    # Called once every member has reported an epoch, in ascending `order`: the pruning
    # decision (raises to end the trial), so no member's fate depends on its slot.
    decide: Callable[[], None] | None = None
    order: int = 0


@dataclass
class _Member:
    job: Job
    shadow: torch.optim.SGD  # carries the member's LR; never holds real weights
    built: Any  # what job.build returned
    epoch: int = 0
    lr_applied: float = math.nan
    stepped: bool = False  # its shadow optimizer has stepped once


def _net_shape(cfg: lone.TrainConfig) -> dict[str, Any]:
    spec = data.dataset(cfg.dataset)
    return {"width": cfg.width, "in_channels": spec.shape[0], "classes": spec.classes,
            "image_size": spec.shape[1]}


class ArrayTrainer:
    """K slots of one fused model over the data of `cfg`; `run` trains jobs until none is left."""

    def __init__(
        self, cfg: lone.TrainConfig, k: int, *, channels_last: bool = True, compile: bool = False
    ) -> None:
        # 1. Data on the device as uint8, the split and statistics of classify.train.
        self.cfg, self.k = cfg, k
        self.device = dev = lone.resolve_device(cfg.device)
        self.cuda = dev.type == "cuda"
        split = lone.split(cfg)
        self.train_x, self.train_y = split.train_x.to(dev), split.train_y.to(dev)
        self.val_x, self.val_y = split.val_x.to(dev), split.val_y.to(dev)
        self.mean = split.mean.to(dev)[None, :, None, None]
        self.inv_std = (1.0 / split.std).to(dev)[None, :, None, None]
        self.memory = torch.channels_last if channels_last else torch.contiguous_format
        self.n, self.bs = len(self.train_y), cfg.batch_size
        self.steps = lone.steps_per_epoch(cfg)
        spec = data.dataset(cfg.dataset)
        self.pad, self.flip = (spec.crop_pad, spec.flip) if cfg.augment else (0, False)

        # 2. The lone trial's initial weights, and the fused model of K members.
        torch.manual_seed(cfg.seed)
        self.init = {n: t.to(dev) for n, t in models.make(**_net_shape(cfg)).state_dict().items()}
        # Module.to takes memory_format; torch's overloads for it leave it out
        self.model = FusedAirbench(k, **_net_shape(cfg)).to(dev, memory_format=self.memory)  # type: ignore[call-overload]
        for slot in range(k):
            self.model.load_member(slot, self.init)
        self.forward = torch.compile(self.model) if compile else self.model
        self.sgd = FusedSGD(list(self.model.parameters()), k)
        self.members: list[_Member | None] = [None] * k
        # 3. Generator state at the start of each epoch index (see the module docstring).
        gen = torch.Generator(device=dev).manual_seed(cfg.seed)
        self.states: dict[int, torch.Tensor] = {0: gen.get_state()}

    # -- helpers ----------------------------------------------------------------------------

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    def _normalise(self, xb: torch.Tensor) -> torch.Tensor:
        return (xb.float() - self.mean) * self.inv_std

    def _mask(self) -> torch.Tensor:
        return torch.tensor([m is not None for m in self.members], device=self.device)

    def _live(self, slot: int) -> _Member:
        """The member training in `slot`, where the caller knows one is."""
        m = self.members[slot]
        assert m is not None, f"slot {slot} is idle"
        return m

    def _stop(self, slot: int) -> None:
        """Empty a slot; its weights go back to the start so nothing non-finite lingers."""
        self.members[slot] = None
        self.model.load_member(slot, self.init)

    def _start(self, slot: int, job: Job) -> None:
        s = job.schedule
        shadow = torch.optim.SGD(
            [torch.nn.Parameter(torch.zeros(1))], lr=s.lr, momentum=s.momentum,
            nesterov=lone.nesterov(s.momentum), weight_decay=s.weight_decay,
        )
        built = job.build(shadow, self.steps, self.cfg.epochs)
        self.model.load_member(slot, self.init)
        self.sgd.set_member(slot, s.weight_decay, lone.nesterov(s.momentum))
        self.members[slot] = _Member(job, shadow, built)

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self,
        next_job: Callable[[], Job | None],
        finish: Callable[[Job, float | BaseException], None],
    ) -> None:
        """Train until `next_job` has nothing more and every slot is empty.

        `finish(job, outcome)` is called once per job as it ends: with the last validation
        accuracy when it completed its epochs, with objectives.Diverged when a loss became
        non-finite, or with the exception its `report` raised (a pruned trial). Whatever
        `next_job` or `finish` raise, and any other error, propagates at once.
        """
        while True:
            # 1. Refill at the epoch boundary: every empty slot gets the next job, if any.
            for slot in range(self.k):
                if self.members[slot] is None:
                    job = next_job()
                    if job is None:
                        break
                    self._start(slot, job)
            if all(m is None for m in self.members):
                return
            self._epoch(finish)

    def _epoch(self, finish: Callable[[Job, float | BaseException], None]) -> None:
        # 1. One data stream per epoch index in use, each where that epoch starts.
        dev, steps, bs = self.device, self.steps, self.bs
        epochs = sorted({m.epoch for m in self.members if m is not None})
        gens, orders = {}, {}
        for e in epochs:
            gens[e] = torch.Generator(device=dev)
            gens[e].set_state(self.states[e])
            orders[e] = torch.randperm(self.n, generator=gens[e], device=dev)
        active = self._mask()

        # 2. Steps: each stream's batch, each member's loss; stop the non-finite ones.
        for i in range(steps):
            xs, ys = {}, {}
            for e in epochs:
                idx = orders[e][i * bs : (i + 1) * bs]
                xb, ys[e] = self.train_x[idx], self.train_y[idx]
                if self.pad or self.flip:
                    xb = lone.augment(xb, self.pad, self.flip, gens[e])
                xs[e] = self._normalise(xb)
            at = [m.epoch if m is not None else epochs[0] for m in self.members]
            if len(epochs) == 1:
                x, y = xs[epochs[0]], ys[epochs[0]].expand(self.k, -1)
            else:  # one input per member: (B, K*C, H, W), member k's channels at k*C
                x = torch.stack([xs[e] for e in at], 1).flatten(1, 2)
                y = torch.stack([ys[e] for e in at])
            with self._autocast():
                logits = self.forward(x.contiguous(memory_format=self.memory))
            losses = member_losses(logits, y, self.cfg.label_smoothing)
            values = losses.tolist()  # one sync per step, as the lone trial
            diverged = [k for k, m in enumerate(self.members)
                        if m is not None and not math.isfinite(values[k])]
            for k in diverged:
                gone, self.members[k] = self._live(k), None
                active = self._mask()
                finish(gone.job, Diverged(gone.epoch, gone.epoch * steps + i, values[k]))
            if all(m is None for m in self.members):  # nobody left: end the round here (its
                for k in diverged:  # streams are unfinished, so their states are not kept)
                    self._stop(k)
                return
            self.sgd.zero_grad()
            torch.where(active, losses, 0.0).sum().backward()
            # What each member's scheduler set for this step (OneCycleLR moves momentum too).
            groups = [m.shadow.param_groups[0] if m is not None else _IDLE for m in self.members]
            if i == 0:
                for m, g in zip(self.members, groups, strict=True):
                    if m is not None:
                        m.lr_applied = g["lr"]  # what this step applies, as the lone trial
            hyper = torch.tensor([[g["lr"] for g in groups], [g["momentum"] for g in groups]],
                                 device=dev)
            self.sgd.step(hyper[0], hyper[1], active)
            for m in self.members:
                if m is not None:
                    if not m.stepped:  # nothing to move; satisfies torch's step-order check
                        m.shadow.step()
                        m.stepped = True
                    m.built.after_batch()
            for k in diverged:
                self._stop(k)
        for e in epochs:
            self.states[e + 1] = gens[e].get_state()
        self.states = {e: s for e, s in self.states.items() if e == 0 or e - 1 in epochs}

        # 3. Validate all members at once; step each schedule and report, every member before
        #    any pruning decision; then decide in trial order; end or continue.
        val_loss, val_acc = self._evaluate()
        outcomes: dict[int, float | BaseException | None] = {}
        for k, m in enumerate(self.members):
            if m is None:
                continue
            outcomes[k] = None
            if not math.isfinite(val_loss[k]):
                outcomes[k] = Diverged(m.epoch, (m.epoch + 1) * steps, val_loss[k])
                continue
            m.built.after_epoch(val_loss[k])
            try:
                m.job.report(m.epoch, val_loss[k], val_acc[k], m.lr_applied)
            except Exception as e:  # the report failed: this trial ends
                outcomes[k] = e
        for k in sorted(outcomes, key=lambda k: self._live(k).job.order):
            m = self._live(k)
            if outcomes[k] is None and m.job.decide is not None:
                try:
                    m.job.decide()
                except Exception as e:  # pruned
                    outcomes[k] = e
            if outcomes[k] is None and m.epoch + 1 == self.cfg.epochs:
                outcomes[k] = val_acc[k]
        for k in sorted(outcomes, key=lambda k: self._live(k).job.order):
            m, outcome = self._live(k), outcomes[k]
            if outcome is None:
                m.epoch += 1
            else:
                self._stop(k)
                finish(m.job, outcome)

    def _evaluate(self) -> tuple[list[float], list[float]]:
        """Per member: mean cross entropy (no label smoothing) and accuracy, in eval mode."""
        self.model.eval()
        k = self.k
        loss = torch.zeros(k, dtype=torch.float64, device=self.device)
        correct = torch.zeros(k, dtype=torch.int64, device=self.device)
        chunk = min(lone.EVAL_BATCH, self.bs)  # no more memory than a training step
        with torch.inference_mode(), self._autocast():
            for xb, yb in zip(self.val_x.split(chunk), self.val_y.split(chunk), strict=True):
                x = self._normalise(xb).contiguous(memory_format=self.memory)
                logits = self.forward(x).float()
                y = yb.expand(k, -1)
                ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
                loss += ce.view(k, -1).sum(1, dtype=torch.float64)
                correct += (logits.argmax(2) == y).sum(1)
        self.model.train()
        n = len(self.val_y)
        return (loss / n).tolist(), (correct.double() / n).tolist()


def member_bytes(cfg: lone.TrainConfig, device: torch.device) -> int:
    """GPU memory one more member takes: the peak of a training step at K=2 minus at K=1.

    Weights, gradients, momentum and the step's activations; the data set is shared.
    """
    shape = _net_shape(cfg)
    peaks = []
    for k in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        # Module.to takes memory_format; torch's overloads for it leave it out
        model = FusedAirbench(k, **shape).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        sgd = FusedSGD(list(model.parameters()), k)
        x = torch.randn(cfg.batch_size, shape["in_channels"], shape["image_size"],
                        shape["image_size"], device=device).contiguous(
                            memory_format=torch.channels_last)
        y = torch.randint(0, shape["classes"], (k, cfg.batch_size), device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = member_losses(model(x), y).sum()
        loss.backward()
        zero = torch.zeros(k, device=device)
        sgd.step(zero, zero, torch.ones(k, dtype=torch.bool, device=device))
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del model, sgd, x, y, loss
    torch.cuda.empty_cache()
    return max(1, peaks[1] - peaks[0])
