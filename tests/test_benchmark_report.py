"""benchmarks/report.py builds its synthetic store through the project's own schedule path:
the space draws the schedule, `schedules.resolve` gives the exact torch kwargs, and what it
records is what training would record (and what `best` reads back and builds)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import optuna
import torch

from search import record, schedules

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks/report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_records_the_kwargs_training_resolves():
    bench = _bench()
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=3))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(bench.objective, n_trials=120, catch=(RuntimeError,))
    seen: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        rec = record.of(trial)
        sched = schedules.recorded(trial)
        built = schedules.resolve(sched, bench.EPOCHS, bench.STEPS)
        assert rec.scheduler_kwargs == built.kwargs, trial.number
        assert trial.user_attrs[record.INTERVAL] == built.interval
        # torch builds it, as `best` and training do
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=sched.lr)
        schedules.build(opt, sched, bench.STEPS, bench.EPOCHS)
        seen.add(sched.family)
    assert seen == set(schedules.SCHEDULES)


def test_benchmark_kwargs_for_a_few_families_are_the_catalogs():
    """Exact kwargs checked by hand for three families: epoch counts and per-step factors,
    in optimizer steps (every family steps per optimizer step unless a study keeps it per
    epoch)."""
    bench = _bench()
    total = bench.EPOCHS * bench.STEPS
    cases = {
        "StepLR": ({"StepLR.step_size": 5, "StepLR.gamma": 0.5},
                   {"step_size": 5 * bench.STEPS, "gamma": 0.5}),
        "ExponentialLR": ({"ExponentialLR.final_factor": 0.01},
                          {"gamma": 0.01 ** (1 / total)}),
        "OneCycleLR": ({"OneCycleLR.pct_start": 0.3, "OneCycleLR.div_factor": 25.0,
                        "OneCycleLR.final_div_factor": 1e4},
                       {"max_lr": 0.1, "total_steps": bench.EPOCHS * bench.STEPS,
                        "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}),
    }
    for family, (params, kwargs) in cases.items():
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"scheduler": family, "lr": 0.1, "momentum": 0.9,
                             "weight_decay": 1e-4, **params})
        trial = study.ask()
        built = bench._resolved(trial)
        assert built.kwargs == kwargs
        assert built.kwargs == schedules.resolve(built.schedule, bench.EPOCHS,
                                                 bench.STEPS).kwargs
