"""A noisy objective for contest tests: known true quality per schedule, seed noise on top.

The true validation accuracy of a schedule is `quality(schedule, optimizer)`; each run adds
Gaussian noise (sd `noise`, from the study file's [objective] table, default 0.003) drawn
from the run's seed and the schedule, so a seed repeats its score and two seeds differ. The
optimizer is the real one the run names (schedule-free too, from the `schedulefree`
package), so what is recorded is what torch received. Options: `noise`, `best_lr` (where
every scheduled family peaks in a run of 2 epochs), `lr_beta` (the best LR falls with the
run's length as (epochs / 2) ** -lr_beta, default 0), `schedulefree_quality`, `sleep`
(seconds per epoch), `test_flip` (the test split scores the reverse of the validation
split: an adversarial test set), `as_error` (report the error rate 1 - accuracy as `val_err`
in the mapping form and return nothing: a study minimising it is the mirror image of one
maximising the accuracy).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time

import torch

from objectives.classify import make_optimizer

__all__ = ["QUALITY", "TRAINS_OPTIMIZERS", "quality", "train"]

TRAINS_OPTIMIZERS = True  # builds the optimizer cfg.optimizer names (schedule-free included)

STEPS = 4  # optimizer steps per epoch
QUALITY = {  # the true accuracy of each family at its best LR
    "CosineAnnealingLR": 0.900, "PolynomialLR": 0.898, "OneCycleLR": 0.896,
    "WarmupCosine": 0.897, "WarmupStableDecay": 0.897, "Constant": 0.870, "StepLR": 0.880,
    "MultiStepLR": 0.886, "ExponentialLR": 0.888, "ReduceLROnPlateau": 0.880,
    "CosineAnnealingWarmRestarts": 0.885, "InverseTimeDecay": 0.884,
}
SCHEDULEFREE_QUALITY = 0.894  # at 10x the scheduled families' best LR


def quality(schedule, optimizer: str, best_lr: float = 0.1,
            schedulefree: float = SCHEDULEFREE_QUALITY) -> float:
    """True accuracy: the family's best, minus a penalty for the LR's distance from the best
    LR in decades (schedule-free peaks at 10x)."""
    if optimizer.startswith("schedulefree"):
        top, peak = schedulefree, best_lr * 10
    else:
        top, peak = QUALITY[schedule.family], best_lr
    return top - 0.03 * math.log10(schedule.lr / peak) ** 2


def _noise(schedule, optimizer: str, seed: int, sd: float, split: str) -> float:
    what = json.dumps([schedule.to_dict(), optimizer, seed, split], sort_keys=True, default=str)
    return random.Random(hashlib.sha1(what.encode()).hexdigest()).gauss(0.0, sd)


def train(cfg, schedule, report) -> float:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer([param], cfg, schedule, STEPS * cfg.epochs)
    if hasattr(opt, "train"):  # schedule-free: train mode while stepping
        opt.train()
    built = schedule.build(opt, STEPS, cfg.epochs)
    sd = float(cfg.options.get("noise", 0.003))
    best_lr = float(cfg.options.get("best_lr", 0.1)) * (cfg.epochs / 2) ** -float(
        cfg.options.get("lr_beta", 0.0))
    true = quality(schedule, cfg.optimizer, best_lr,
                   float(cfg.options.get("schedulefree_quality", SCHEDULEFREE_QUALITY)))
    split = cfg.holdout
    acc = true + _noise(schedule, cfg.optimizer, cfg.seed, sd, split)
    if split == "test" and cfg.options.get("test_flip"):
        acc = 1.8 - acc  # the reverse of the validation split's order
    for epoch in range(cfg.epochs):
        lr = opt.param_groups[0]["lr"]
        for _ in range(STEPS):
            param.grad = torch.zeros(1)
            opt.step()
            built.after_batch()
        step_acc = acc - 0.01 * (cfg.epochs - 1 - epoch)
        time.sleep(float(cfg.options.get("sleep", 0.0)))
        if cfg.options.get("as_error"):  # the mirror image: the error rate, minimised
            report(epoch, {"val_err": 1.0 - step_acc, "val_loss": 1.0 - step_acc}, lr=lr)
        else:
            report(epoch, 1.0 - step_acc, step_acc, lr)
        built.after_epoch(1.0 - step_acc)
    return None if cfg.options.get("as_error") else acc


train.holdout = True  # it scores the split cfg.holdout names (the test split: its own noise)
