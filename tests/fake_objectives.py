"""Fast objectives for the many-workers tests: real schedules, no data, ~0.1-1 s a trial.

They follow the objective contract (`train(cfg, schedule, report) -> float`, no optuna):
a dummy parameter's SGD optimizer gets the trial's torch scheduler from schedules.build and
`report` is called once per epoch with the LR the optimizer applied. The accuracy is a
smooth function of the schedule, so TPE and the pruner have something to work with.
Options (from the study file's [objective] table): `sleep` seconds per epoch.
"""

from __future__ import annotations

import math
import time

import torch

from search import schedules

__all__ = ["train"]

STEPS = 4  # optimizer steps per epoch


def train(cfg, schedule: schedules.ScheduleConfig, report) -> float:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=schedule.lr, momentum=schedule.momentum)
    built = schedules.build(opt, schedule, STEPS, cfg.epochs)
    sleep = float(cfg.options.get("sleep", 0.05))
    acc = 0.0
    for epoch in range(cfg.epochs):
        lr = opt.param_groups[0]["lr"]
        for _ in range(STEPS):
            opt.step()
            built.after_batch()
        time.sleep(sleep)
        # Best near lr = 0.1, better with every epoch; never reaches 1.
        acc = (1 - 0.5 / (epoch + 2)) * math.exp(-abs(math.log10(max(lr, 1e-12)) + 1) / 2)
        report(epoch, 1.0 - acc, acc, lr)
        built.after_epoch(1.0 - acc)
    return acc


train.holdout = True  # no data: every split scores the same synthetic function
