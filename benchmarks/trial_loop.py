"""Our trial loop against the plain loop of Optuna's PyTorch example, in one run.

    .venv/bin/python benchmarks/trial_loop.py                    # Fashion-MNIST subset
    .venv/bin/python benchmarks/trial_loop.py --data fixture     # generated CIFAR-10 fixture
    .venv/bin/python benchmarks/trial_loop.py --trials 5 --epochs 3 --subset 8000 --width 16,32,32

Both loops train the same model (objectives.models, same width and initial weights), on the
same training and validation images, for the same epochs, with the same SGD and cosine
schedule, N trials one at a time into a SQLite store (or memory with --storage memory):

- baseline: as Optuna's examples/pytorch/pytorch_simple.py: a torch Dataset whose
  __getitem__ augments and normalises one image (random crop with reflect padding, flip for
  CIFAR), a DataLoader(shuffle=True), trial.report + trial.should_prune after every epoch;
- ours: the project's engine (search.engine.sequential.run: claim, heartbeats, curves
  recorded on the trial) around objectives.classify.train (uint8 data in memory, batched
  augmentation).

The trials alternate between the loops, so a neighbour's load on a shared machine falls on
both alike. Printed: per-trial wall time (claim to tell), time inside training, time outside
it (storage, sampler, bookkeeping = trial wall time minus training; the report/prune calls
count as outside) and the ratio baseline / ours. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from objectives import classify, data, models  # noqa: E402
from search import config  # noqa: E402
from search.engine import sequential  # noqa: E402
from search.schedules import ScheduleConfig  # noqa: E402
from tests.cifar_fixture import write_cifar_fixture  # noqa: E402

ETA_MIN_FACTOR = 0.01  # cosine to 1% of the base LR over the run, in both loops


class Timing:
    """Per-trial wall times (start of a trial's claim to its end) and time inside training."""

    def __init__(self) -> None:
        self.walls: list[float] = []
        self.train: list[float] = []
        self.acc: list[float] = []
        self.started = 0.0
        self.report_s = 0.0  # time in report/prune calls during the current trial

    def begin(self, *_: object) -> None:
        self.started = time.perf_counter()

    def end(self, *_: object) -> None:
        self.walls.append(time.perf_counter() - self.started)


# 1. The baseline: Optuna's pytorch_simple loop over a per-sample Dataset.


class PerSampleDataset(torch.utils.data.Dataset):
    """One image at a time, as a torchvision transform pipeline does it."""

    def __init__(self, x, y, mean, std, pad: int, flip: bool, train: bool) -> None:
        self.x, self.y, self.pad, self.flip, self.train = x, y, pad, flip, train
        self.mean, self.std = mean[:, None, None] / 255.0, std[:, None, None] / 255.0

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i].float() / 255.0  # ToTensor
        if self.train and self.pad:  # RandomCrop(size, padding=pad, padding_mode="reflect")
            h, w = img.shape[1:]
            img = F.pad(img, (self.pad,) * 4, mode="reflect")
            top, left = random.randint(0, 2 * self.pad), random.randint(0, 2 * self.pad)
            img = img[:, top : top + h, left : left + w]
        if self.train and self.flip and random.random() < 0.5:  # RandomHorizontalFlip
            img = img.flip(2)
        return (img - self.mean) / self.std, self.y[i]  # Normalize


def baseline(cfg: classify.TrainConfig, args, storage) -> tuple[Timing, Callable]:
    split = classify.split(cfg)  # the same images as ours
    spec = data.dataset(cfg.dataset)
    train_set = PerSampleDataset(split.train_x, split.train_y, split.mean, split.std,
                                 spec.crop_pad, spec.flip, True)
    val_set = PerSampleDataset(split.val_x, split.val_y, split.mean, split.std, 0, False, False)
    device = classify.resolve_device(cfg.device)
    timing = Timing()

    def objective(trial: optuna.Trial) -> float:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        model = models.make(width=cfg.width, in_channels=spec.shape[0], classes=spec.classes,
                            image_size=spec.shape[1]).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True,
                                    weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=cfg.epochs, eta_min=args.lr * ETA_MIN_FACTOR)
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size,
                                                   shuffle=True, drop_last=True)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=classify.EVAL_BATCH)
        t0, timing.report_s = time.perf_counter(), 0.0
        for epoch in range(cfg.epochs):
            model.train()
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
                loss.backward()
                optimizer.step()
            scheduler.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in val_loader:
                    x, y = x.to(device), y.to(device)
                    correct += int((model(x).argmax(1) == y).sum())
            accuracy = correct / len(val_set)
            t = time.perf_counter()
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
            timing.report_s += time.perf_counter() - t
        timing.train.append(time.perf_counter() - t0 - timing.report_s)
        timing.acc.append(accuracy)
        return accuracy

    study = optuna.create_study(study_name="baseline", storage=storage, direction="maximize",
                                pruner=optuna.pruners.NopPruner(),
                                sampler=optuna.samplers.TPESampler(seed=0))

    def one_trial(k: int) -> None:
        timing.begin()
        study.optimize(objective, n_trials=1, callbacks=[timing.end])

    return timing, one_trial


# 2. Ours: the project's runner around classify.train, with a fixed schedule.


def ours(cfg: classify.TrainConfig, args, storage) -> tuple[Timing, Callable]:
    P = config.ParamSpec
    study_cfg = config.StudyConfig(
        name="ours", path=Path("trial_loop.toml"), objective=config.DEFAULT_OBJECTIVE,
        train=cfg, trials=args.trials, pruner=config.PrunerConfig(name="none"),
        space=config.SpaceConfig(
            families=("CosineAnnealingLR",), lr=P(args.lr, args.lr), enqueue_defaults=False,
            ranges={"CosineAnnealingLR": {"T_max": P(1.0, 1.0),
                                          "eta_min_factor": P(ETA_MIN_FACTOR, ETA_MIN_FACTOR)}},
        ),
    )
    timing = Timing()
    real_train = classify.train

    def timed_train(train_cfg, schedule: ScheduleConfig, report) -> float:
        def timed_report(*a) -> None:
            t = time.perf_counter()
            try:
                report(*a)
            finally:
                timing.report_s += time.perf_counter() - t

        t0, timing.report_s = time.perf_counter(), 0.0
        acc = real_train(train_cfg, schedule, timed_report)
        timing.train.append(time.perf_counter() - t0 - timing.report_s)
        timing.acc.append(acc)
        return acc

    class Progress:  # the runner's progress hooks, used as a clock
        start = timing.begin
        trial_finished = timing.end

        def epoch(self, *_: object) -> None:
            pass

    def one_trial(k: int) -> None:
        classify.train = timed_train  # the runner looks the objective up as a study starts
        try:
            sequential.run(study_cfg, storage, k, progress=Progress())  # until k trials finished
        finally:
            classify.train = real_train

    return timing, one_trial


# 3. One run, one table.


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=4000, help="training images per epoch")
    ap.add_argument("--width", default="16,32,32", help="channels of the three blocks")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--data", choices=["fashion", "fixture"], default="fashion")
    ap.add_argument("--storage", choices=["sqlite", "memory"], default="sqlite")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data == "fixture":
            write_cifar_fixture(tmp, n_train=max(2000, args.subset + 500), n_test=10)
        cfg = classify.TrainConfig(
            dataset="cifar10" if args.data == "fixture" else "fashion_mnist",
            data_dir=tmp if args.data == "fixture" else None, epochs=args.epochs,
            batch_size=args.batch_size, width=tuple(int(c) for c in args.width.split(",")),
            val_fraction=args.val_fraction, train_subset=args.subset, device=args.device,
        )
        split = classify.split(cfg)
        print(f"{cfg.dataset}: {len(split.train_y)} training, {len(split.val_y)} validation "
              f"images; width {cfg.width}, batch {cfg.batch_size}, {cfg.epochs} epochs, "
              f"{args.trials} trials each, {args.device}, {torch.get_num_threads()} threads, "
              f"storage {args.storage}", flush=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # warm-up (oneDNN kernels, allocator) outside the timings
        classify.train(dataclasses.replace(cfg, epochs=1),
                       ScheduleConfig("Constant", lr=args.lr), lambda *a: None)
        results, trial = {}, {}
        for name, loop in (("baseline", baseline), ("ours", ours)):
            store = (f"sqlite:///{tmp}/{name}.db" if args.storage == "sqlite"
                     else optuna.storages.InMemoryStorage())
            results[name], trial[name] = loop(cfg, args, store)
        # Interleaved, so a neighbour's load on a shared machine falls on both loops alike.
        for k in range(1, args.trials + 1):
            for name in results:
                trial[name](k)

    print(f"\n{'loop':10s} {'trial s':>8s} {'train s':>8s} {'outside ms':>11s} "
          f"{'train img/s':>12s} {'val acc':>8s}")
    n_img = cfg.epochs * (len(split.train_y) // cfg.batch_size) * cfg.batch_size
    per = {}
    for name, t in results.items():
        wall = sum(t.walls) / len(t.walls)
        train = sum(t.train) / len(t.train)
        per[name] = wall
        print(f"{name:10s} {wall:8.2f} {train:8.2f} {1000 * (wall - train):11.1f} "
              f"{n_img / train:12.0f} {sum(t.acc) / len(t.acc):8.4f}")
    print(f"\nratio baseline / ours (wall time per trial): {per['baseline'] / per['ours']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
