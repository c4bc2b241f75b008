"""What an adapter costs: the same model and data trained by a plain PyTorch loop, by
`objectives.lightning:train` and by `objectives.hf:train`, side by side in one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adapter_overhead.py
    .venv/bin/python benchmarks/adapter_overhead.py --rounds 7 --threads 2
    .venv/bin/python benchmarks/adapter_overhead.py --profile hf     # cProfile of one run

The three runs are one trial each, as the search calls an objective: `train(cfg, schedule,
report)` with a fake `report` (the mapping form) that only notes the time. Same model (an MLP
784-128-128-10 returning {"loss", "logits"}), same data (the first --n-train images of a fixed
shuffle of Fashion-MNIST's training file, read as examples/lightning/model.py reads it, and
the next --n-val to validate once per epoch), same per-sample Dataset of dicts, batch size,
optimizer (SGD, Nesterov momentum 0.9), schedule (OneCycleLR at torch's standard settings,
stepped every optimizer step), seed and number of optimizer steps (the last partial batch
counts in all three). The three LR traces must be identical and the step counts equal, else
the script stops.

Order: one warm-up round (imports, lazy initialisation; not counted), then --rounds rounds of
plain, Lightning, HF, alternating, so slow drift of the machine's load hits all three alike.
Per run: `s/epoch` is the wall time of the whole train() call divided by the epochs (what a
trial costs, set-up included); `steady epoch` is the time between the first and the second
report (one epoch of training and validation, no set-up); `set-up` is the time from the call
to the model's first training forward, `after the last report` the time from the last report
to the call's return. torch's thread count is fixed (--threads, with
OMP_NUM_THREADS set to match before torch is imported) and checked after every run.
"""

from __future__ import annotations

import argparse
import os
import sys

THREADS_DEFAULT = 1


def _threads_from_argv() -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    return p.parse_known_args()[0].threads


if __name__ == "__main__" and os.environ.get("OMP_NUM_THREADS") != str(_threads_from_argv()):
    # OpenMP reads it once, when torch loads: set it, then start again with it
    os.environ["OMP_NUM_THREADS"] = str(_threads_from_argv())
    os.execv(sys.executable, [sys.executable, *sys.argv])

import datetime  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from objectives import Diverged  # noqa: E402
from objectives import hf as hf_adapter  # noqa: E402
from objectives import lightning as lightning_adapter  # noqa: E402
from objectives.classify import make_optimizer  # noqa: E402
from objectives.settings import TrainConfig  # noqa: E402
from search import schedules  # noqa: E402

# -- the data, model and settings all three share ---------------------------------------------

SPLIT_SEED = 0  # the fixed shuffle the training and validation images are taken from
EVAL_BATCH = 1000
SETTINGS = {"batch": 128}  # set from the arguments before any run
DATA: dict[str, Images] = {}
FORWARDS: list[float] = []  # the time of every training forward of the current run


def _example_loader():
    """examples/lightning/model.py's `load` (gzip'd idx files, read once per process)."""
    spec = importlib.util.spec_from_file_location(
        "fashion_example_model", ROOT / "examples" / "lightning" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Images(torch.utils.data.Dataset):
    """Examples as dicts of tensors (the HF Trainer's default collator wants them; torch's
    default collate stacks them the same way for the plain loop and Lightning)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def load_data(n_train: int, n_val: int) -> None:
    example = _example_loader()
    x, y = example.load(example.DATA_DIR, "train")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train, val = order[:n_train], order[n_train:n_train + n_val]
    DATA["train"], DATA["val"] = Images(x[train], y[train]), Images(x[val], y[val])


class MLP(torch.nn.Module):
    """784 -> 128 -> 128 -> 10; {"loss", "logits"} as the HF Trainer expects."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(784, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, 10))

    def forward(self, pixel_values, labels=None):
        if self.training:
            FORWARDS.append(time.perf_counter())
        logits = self.net(pixel_values)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


# -- (1) a plain PyTorch loop, reporting as the search's objectives do ------------------------


def plain_train(cfg: TrainConfig, schedule: schedules.ScheduleConfig, report) -> float:
    torch.manual_seed(cfg.seed)
    model = MLP()
    loader = DataLoader(DATA["train"], batch_size=SETTINGS["batch"], shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    val_loader = DataLoader(DATA["val"], batch_size=EVAL_BATCH)
    steps = len(loader)
    optimizer = make_optimizer(list(model.parameters()), cfg, schedule, cfg.epochs * steps)
    built = schedule.build(optimizer, steps, cfg.epochs)
    val_loss = math.nan
    for epoch in range(cfg.epochs):
        model.train()
        lr = float(optimizer.param_groups[0]["lr"])
        train_sum, n = torch.zeros(()), 0
        for batch in loader:
            loss = model(**batch)["loss"]
            value = float(loss.detach())  # the adapters' per-batch divergence check
            if not math.isfinite(value):
                raise Diverged(epoch, built.steps, value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            built.after_batch()
            train_sum += loss.detach() * len(batch["labels"])
            n += len(batch["labels"])
        model.eval()
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
        with torch.no_grad():
            for batch in val_loader:
                out = model(**batch)
                loss_sum += out["loss"] * len(batch["labels"])
                correct += (out["logits"].argmax(1) == batch["labels"]).sum()
        val_loss = float(loss_sum) / len(DATA["val"])
        built.after_epoch(val_loss)
        report(epoch, {"val_loss": val_loss, "val_acc": float(correct) / len(DATA["val"]),
                       "train_loss": float(train_sum) / n}, lr=lr)
    return val_loss


# -- (2) Lightning: the user's classes, as examples/lightning/model.py writes them -------------


class LitMLP(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = MLP()

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch)["loss"]
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        out = self.model(**batch)
        self.log("val_loss", out["loss"], on_epoch=True)
        self.log("val_acc", (out["logits"].argmax(1) == batch["labels"]).float().mean(),
                 on_epoch=True)

    def configure_optimizers(self):  # the adapter replaces it on each trial's instance
        return torch.optim.SGD(self.parameters(), lr=0.05)


class LitData(L.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return DataLoader(DATA["train"], batch_size=SETTINGS["batch"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(DATA["val"], batch_size=EVAL_BATCH)


# -- (3) the HF Trainer: the user's function returning the Trainer's keyword arguments ---------


def accuracy(pred) -> dict[str, float]:
    return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}


def make() -> dict:
    return {"model": MLP(), "train_dataset": DATA["train"], "eval_dataset": DATA["val"],
            "compute_metrics": accuracy}


# -- the runs ---------------------------------------------------------------------------------

ADAPTERS = ("plain", "lightning", "hf")
LABELS = {"plain": "plain PyTorch loop", "lightning": "`objectives.lightning:train`",
          "hf": "`objectives.hf:train`"}


def configs(epochs: int, batch: int) -> dict[str, tuple]:
    """(train function, TrainConfig) per adapter; the classes are named from this module."""
    me = __name__  # "__main__" when run as a script: the adapters import it as it is
    common = {"epochs": epochs, "device": "cpu", "seed": 0, "optimizer": "sgd",
              "direction": "minimize"}
    return {
        "plain": (plain_train, TrainConfig(metric="val_loss", **common)),
        "lightning": (lightning_adapter.train, TrainConfig(
            metric="val_loss", options={"module": f"{me}:LitMLP", "datamodule": f"{me}:LitData"},
            **common)),
        "hf": (hf_adapter.train, TrainConfig(
            metric="eval_loss", options={"trainer": f"{me}:make", "training_args": {
                "per_device_train_batch_size": batch,
                "per_device_eval_batch_size": EVAL_BATCH}}, **common)),
    }


class Clock:
    """The fake report: when each epoch was reported, and what."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.metrics: list[dict[str, float]] = []

    def __call__(self, epoch, metrics, lr=None) -> None:
        self.times.append(time.perf_counter())
        self.metrics.append(dict(metrics))


def one_run(name: str, fn, cfg: TrainConfig, lr: float, threads: int) -> dict:
    built: list[schedules.Built] = []
    schedule = schedules.ScheduleConfig("OneCycleLR", dict(schedules.ONE_CYCLE_STANDARD), lr=lr,
                                        listener=built.append)
    clock = Clock()
    FORWARDS.clear()
    began = time.perf_counter()
    value = fn(cfg, schedule, clock)
    ended = time.perf_counter()
    if torch.get_num_threads() != threads:
        sys.exit(f"{name} changed torch's threads to {torch.get_num_threads()}")
    if len(clock.times) != cfg.epochs:
        sys.exit(f"{name} reported {len(clock.times)} times for {cfg.epochs} epochs")
    return {"total": ended - began, "per_epoch": (ended - began) / cfg.epochs,
            "setup": FORWARDS[0] - began, "steady": clock.times[1] - clock.times[0],
            "after": ended - clock.times[-1],
            "forwards": len(FORWARDS), "trace": list(built[0].trace), "value": value,
            "metrics": clock.metrics[-1]}


def _sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def profile(name: str, runs: dict, lr: float, threads: int) -> None:
    import cProfile
    import pstats

    fn, cfg = runs[name]
    one_run(name, fn, cfg, lr, threads)  # warm
    prof = cProfile.Profile()
    prof.enable()
    one_run(name, fn, cfg, lr, threads)
    prof.disable()
    stats = pstats.Stats(prof).strip_dirs()
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    p.add_argument("--rounds", type=int, default=5, help="counted rounds of plain, Lightning, HF")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-val", type=int, default=2_000)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--profile", choices=ADAPTERS, help="cProfile one run of it instead")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the steady epoch is the second)")
    torch.set_num_threads(args.threads)
    SETTINGS["batch"] = args.batch_size
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    transformers.logging.set_verbosity_error()
    load_data(args.n_train, args.n_val)
    runs = configs(args.epochs, args.batch_size)
    if args.profile:
        profile(args.profile, runs, args.lr, args.threads)
        return

    load_before = _sh("cat /proc/loadavg")
    cpu = _sh("lscpu | grep 'Model name'").split(":", 1)[-1].strip()
    print(f"# adapter overhead, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"- CPU: {cpu}, {os.cpu_count()} logical CPUs ({len(os.sched_getaffinity(0))} usable), "
          f"{args.threads} torch thread(s), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"- Python {platform.python_version()}, torch {torch.__version__}, lightning "
          f"{L.__version__}, transformers {transformers.__version__}")
    print(f"- {args.n_train:,} training images, {args.n_val:,} validation images, batch "
          f"{args.batch_size}, {args.epochs} epochs, OneCycleLR (standard), SGD lr {args.lr}")
    print(f"- load average before: {load_before}", flush=True)

    results: dict[str, list[dict]] = {name: [] for name in ADAPTERS}
    for r in range(args.rounds + 1):  # round 0: warm-up, not counted
        for name in ADAPTERS:
            fn, cfg = runs[name]
            out = one_run(name, fn, cfg, args.lr, args.threads)
            print(f"  round {r}{' (warm-up)' if r == 0 else ''} {name:9s} "
                  f"{out['per_epoch']:.3f} s/epoch, steady epoch {out['steady']:.3f} s, "
                  f"set-up {out['setup']:.3f} s, {out['forwards']} training forwards, "
                  f"last {cfg.metric} {out['value']:.4f}", flush=True)
            if r:
                results[name].append(out)
    load_after = _sh("cat /proc/loadavg")

    # the same work in all three: optimizer steps, and the LR each step applied
    first = {name: rs[0] for name, rs in results.items()}
    if len({o["forwards"] for o in first.values()}) != 1:
        sys.exit(f"training forwards differ: { {n: o['forwards'] for n, o in first.items()} }")
    traces = [o["trace"] for o in first.values()]
    if any(len(t) != len(traces[0]) or not np.allclose(t, traces[0], rtol=1e-12)
           for t in traces):
        sys.exit("the LR traces differ between the three")

    base = statistics.median(o["per_epoch"] for o in results["plain"])
    base_steady = statistics.median(o["steady"] for o in results["plain"])
    print(f"\n{args.rounds} rounds; median (min-max) seconds:\n")
    print("| run | s/epoch (whole call / epochs) | ratio to plain | steady epoch | ratio to "
          "plain | set-up before the first step | after the last report |")
    print("| --- | --- | ---: | --- | ---: | --- | --- |")
    for name in ADAPTERS:
        rs = results[name]
        pe, st = [o["per_epoch"] for o in rs], [o["steady"] for o in rs]
        print(f"| {LABELS[name]} | {_spread(pe)} | {statistics.median(pe) / base:.2f}x | "
              f"{_spread(st)} | {statistics.median(st) / base_steady:.2f}x | "
              f"{_spread([o['setup'] for o in rs])} | {_spread([o['after'] for o in rs])} |")
    print(f"\n- {first['plain']['forwards']} optimizer steps a run in all three, the same "
          f"{len(traces[0])} LRs applied")
    print(f"- load average after: {load_after}")


if __name__ == "__main__":
    main()
