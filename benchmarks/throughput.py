"""Finished trials per hour, side by side in one run: the same study, net, epochs and data.

    .venv/bin/python benchmarks/throughput.py                  # CPU, tiny sizes (labelled CPU)
    .venv/bin/python benchmarks/throughput.py --device cuda --epochs 10 --width 64 256 256 \\
        --batch-size 512 --n-train 50000 --trials 128 --baseline-trials 6 --arrays 4 8 16 32

(a) the plain Optuna PyTorch example loop: a Dataset with per-sample transforms, a DataLoader,
    fp32, `study.optimize`; (b) our sequential engine
    (`search.engine.sequential.run`); (c) K worker processes
    on the same device (`workers.run_many`); (d) fused arrays of K trials (`array.run`), with
    `--compile` also torch.compile'd. Every mode runs the study of search/studies/lr.toml (TPE, the
    same seed and space; pruning off unless --pruner) on a fresh SQLite store until it holds
    its trials; wall time includes everything a user waits for. Before them, one training
    step of K members is timed three ways (K lone nets, grouped convs, torch.func.vmap): the
    measurement behind fusing with grouped convs.

Data: CIFAR-10 from --data-dir when given, else synthetic CIFAR-10-shaped pixels (written by
tests/cifar_fixture.py; the output says so). TFLOP/s counts the matmul and conv
FLOPs of the epochs trained (torch.utils.flop_counter), against the device's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import optuna  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from trial_loop import PerSampleDataset  # noqa: E402  (benchmarks/: the per-sample loop)

from objectives import classify, data, fused, models  # noqa: E402
from search import config, record, runner, schedules, space  # noqa: E402
from search.engine import claim, sequential  # noqa: E402
from tests.cifar_fixture import write_cifar_fixture  # noqa: E402

# Dense bf16 tensor-core peaks (vendor data sheets), by a substring of the device name.
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10": 125e12}


# 1. The study every mode runs.


def study_config(a: argparse.Namespace, data_dir: str) -> config.StudyConfig:
    cfg = config.load_study("lr")
    train = dataclasses.replace(
        cfg.train, data_dir=data_dir, epochs=a.epochs, batch_size=a.batch_size,
        width=tuple(a.width), train_subset=None, val_fraction=a.val_fraction, device=a.device,
    )
    pruner = dataclasses.replace(cfg.pruner, name=a.pruner)
    return dataclasses.replace(cfg, name="throughput", train=train, pruner=pruner, seed=a.seed)


def synthetic(n_train: int, root: Path) -> str:
    write_cifar_fixture(root / "data", n_train=n_train, n_test=10)
    return str(root / "data")


# 2. (a) The Optuna PyTorch example's loop: per-sample transforms (trial_loop's Dataset, as
# torchvision's RandomCrop + RandomHorizontalFlip + Normalize) in a DataLoader, fp32.


def example_loop(cfg: config.StudyConfig, url: str, n: int, loader_workers: int) -> None:
    t = cfg.train
    device = classify.resolve_device(t.device)
    split = classify.split(t)
    spec = data.dataset(t.dataset)
    args = (split.mean, split.std)
    train_set = PerSampleDataset(split.train_x, split.train_y, *args, spec.crop_pad, spec.flip,
                                 train=True)
    val_set = PerSampleDataset(split.val_x, split.val_y, *args, 0, False, train=False)

    def objective(trial: optuna.Trial) -> float:
        schedule = space.suggest(trial, cfg.space, t.epochs)
        model = models.make(width=t.width, in_channels=spec.shape[0], classes=spec.classes,
                            image_size=spec.shape[1]).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum,
                              nesterov=schedule.momentum > 0,
                              weight_decay=schedule.weight_decay)
        loader = torch.utils.data.DataLoader(
            train_set, batch_size=t.batch_size, shuffle=True, drop_last=True,
            num_workers=loader_workers, pin_memory=device.type == "cuda")
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=classify.EVAL_BATCH,
                                                 num_workers=loader_workers)
        built = schedules.build(opt, schedule, len(loader), t.epochs)
        acc = 0.0
        for epoch in range(t.epochs):
            model.train()
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y, label_smoothing=t.label_smoothing)
                opt.zero_grad()
                loss.backward()
                opt.step()
                built.after_batch()
            model.eval()
            total, correct = 0.0, 0
            with torch.no_grad():
                for x, y in val_loader:
                    logits = model(x.to(device))
                    total += F.cross_entropy(logits, y.to(device), reduction="sum").item()
                    correct += int((logits.argmax(1).cpu() == y).sum())
            val_loss, acc = total / len(val_set), correct / len(val_set)
            if not math.isfinite(val_loss):
                raise optuna.TrialPruned
            built.after_epoch(val_loss)
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned
        return acc

    study = runner.create_or_load(cfg, url)
    study.optimize(objective, n_trials=n, gc_after_trial=False)


# 3. FLOPs and the device.


def flops_per_epoch(cfg: config.StudyConfig) -> float:
    """Matmul + conv FLOPs of one epoch of one trial: training steps and validation."""
    from torch.utils.flop_counter import FlopCounterMode

    t, spec = cfg.train, data.dataset(cfg.train.dataset)
    model = models.make(width=t.width, in_channels=spec.shape[0], classes=spec.classes,
                        image_size=spec.shape[1])
    x = torch.randn(2, *spec.shape)  # FLOPs are linear in the batch: count 2, scale
    with FlopCounterMode(display=False) as train:
        model(x).sum().backward()
    with FlopCounterMode(display=False) as evaluate, torch.no_grad():
        model(x)
    split = classify.split(t)
    steps = classify.steps_per_epoch(t)
    return (steps * t.batch_size * train.get_total_flops()
            + len(split.val_y) * evaluate.get_total_flops()) / 2


def describe(device: torch.device) -> tuple[str, float | None]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        return name, peak
    cores = os.cpu_count()
    return f"CPU ({platform.processor() or platform.machine()}, {cores} cores, " \
           f"{torch.get_num_threads()} torch threads)", None


def fusion_check(cfg: config.StudyConfig, k: int, steps: int = 5) -> dict[str, float]:
    """ms per member per training step: K lone nets in turn, grouped convs, vmap."""
    from torch.func import (
        functional_call,
        replace_all_batch_norm_modules_,
        stack_module_state,
        vmap,
    )

    t, spec = cfg.train, data.dataset(cfg.train.dataset)
    dev = classify.resolve_device(t.device)
    cuda = dev.type == "cuda"
    shape = {"width": t.width, "in_channels": spec.shape[0], "classes": spec.classes,
             "image_size": spec.shape[1]}
    cl = torch.channels_last
    x = torch.randn(t.batch_size, *spec.shape, device=dev).contiguous(memory_format=cl)
    y = torch.randint(0, spec.classes, (k, t.batch_size), device=dev)
    nets = [models.make(**shape).to(dev, memory_format=cl) for _ in range(k)]
    fusedn = fused.FusedAirbench(k, **shape).to(dev, memory_format=cl)
    lone_step = lambda: [F.cross_entropy(n(x), y[0]).backward() for n in nets]  # noqa: E731
    fused_step = lambda: fused.member_losses(fusedn(x), y).sum().backward()  # noqa: E731
    vnets = [copy.deepcopy(n) for n in nets]
    for n in vnets:  # vmap cannot update running stats in place: batch statistics only
        replace_all_batch_norm_modules_(n)
    params, buffers = stack_module_state(vnets)
    base = copy.deepcopy(vnets[0]).to("meta")

    def vmap_step():
        out = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
        fused.member_losses(out, y).sum().backward()

    out = {}
    for name, step in (("lone nets in turn", lone_step), ("grouped convs", fused_step),
                       ("torch.func.vmap", vmap_step)):
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
                step()  # warm-up
                sync(dev)
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                sync(dev)
            out[name] = (time.perf_counter() - t0) / steps / k * 1e3
        except Exception as e:  # report, don't stop the benchmark
            out[name] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    return out


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# 4. The modes, timed.


def measure(name: str, k: int | None, run, url: str, flops: float, peak: float | None) -> dict:
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name="throughput", storage=url)
    finished = claim.count(study)
    epochs = sum(len(t.intermediate_values) for t in study.get_trials(states=record.FINISHED))
    tflops = epochs * flops / wall / 1e12
    row = {"mode": name, "k": k, "finished": finished, "wall_s": round(wall, 2),
           "trials_per_hour": round(finished / wall * 3600, 1), "epochs": epochs,
           "tflops": round(tflops, 4), "peak_fraction": round(tflops * 1e12 / peak, 4)
           if peak else None}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--width", type=int, nargs=3, default=[16, 32, 32])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=1024, help="synthetic images (no --data-dir)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--data-dir", help="real CIFAR-10 (else synthetic pixels)")
    p.add_argument("--trials", type=int, default=8, help="trials per worker/array mode")
    p.add_argument("--baseline-trials", type=int, default=4, help="trials for (a) and (b)")
    p.add_argument("--workers", type=int, default=2, help="K processes in mode (c)")
    p.add_argument("--arrays", type=int, nargs="*", default=[4, 8])
    p.add_argument("--compile", action="store_true", help="also torch.compile'd arrays")
    p.add_argument("--pruner", default="none", choices=["none", "median", "hyperband"])
    p.add_argument("--loader-workers", type=int, help="DataLoader workers in (a) "
                   "(default: 0 on a CPU, 4 on a GPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c", "d", "fusion"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if a.threads:
        torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="throughput-"))
    try:
        return bench(a, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(a: argparse.Namespace, tmp: Path) -> int:
    real = a.data_dir is not None
    data_dir = a.data_dir or synthetic(a.n_train, tmp)
    cfg = study_config(a, data_dir)
    device = classify.resolve_device(a.device)
    name, peak = describe(device)
    flops = flops_per_epoch(cfg)
    loader_workers = a.loader_workers if a.loader_workers is not None else (
        4 if device.type == "cuda" else 0)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    label = f"CIFAR-10 from {a.data_dir}" if real else \
        f"synthetic CIFAR-10-shaped pixels ({a.n_train} training images, write_cifar_fixture)"
    n_train = len(classify.split(cfg.train).train_y)
    print(f"# Throughput, {when}\n\ndevice: {name}; torch {torch.__version__}\n"
          f"data: {label}\nstudy: lr.toml space, TPE seed {a.seed}, pruner {a.pruner}; "
          f"net airbench width {tuple(a.width)}, {a.epochs} epochs, batch {a.batch_size}, "
          f"{n_train} training images\nFLOPs per trial-epoch: {flops / 1e12:.4f} TFLOP; "
          f"bf16 peak: {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'n/a'}\n")

    if "fusion" not in a.skip:
        k = max(a.arrays or [4])
        print(f"one training step of K={k} members, ms per member (fwd+bwd, "
              f"{'bf16 autocast, ' if device.type == 'cuda' else ''}channels_last):")
        for how, ms in fusion_check(cfg, k).items():
            print(f"- {how}: {ms if isinstance(ms, str) else f'{ms:.2f}'}")
        print()

    rows = []

    def url(tag: str) -> str:
        return f"sqlite:///{tmp / tag}.db"

    if "a" not in a.skip:
        u = url("a")
        rows.append(measure("(a) Optuna example loop", None,
                            lambda: example_loop(cfg, u, a.baseline_trials, loader_workers),
                            u, flops, peak))
    if "b" not in a.skip:
        u = url("b")
        rows.append(measure("(b) sequential engine", None,
                            lambda: sequential.run(cfg, u, a.baseline_trials), u, flops, peak))
    if "c" not in a.skip:
        from search.engine import workers

        u = url("c")
        threads = a.threads or torch.get_num_threads()
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads // a.workers))
        rows.append(measure(f"(c) {a.workers} worker processes", a.workers,
                            lambda: workers.run_many(cfg, u, a.trials, a.workers,
                                                     per_gpu=a.workers), u, flops, peak))
    if "d" not in a.skip:
        from search.engine import array

        for k in a.arrays:
            for comp in (False, True) if a.compile else (False,):
                u = url(f"d{k}{'c' if comp else ''}")
                rows.append(measure(f"(d) fused array{' compiled' if comp else ''}", k,
                                    lambda k=k, u=u, comp=comp: array.run(
                                        cfg, u, a.trials, k=k, compile=comp), u, flops, peak))

    base = rows[0]["trials_per_hour"] if rows and rows[0]["mode"].startswith("(a)") else None
    print("| mode | K | finished | wall s | trials/hour | vs (a) | epochs | TFLOP/s "
          "| of bf16 peak |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['trials_per_hour'] / base:.2f}x" if base else "-"
        frac = f"{r['peak_fraction']:.1%}" if r["peak_fraction"] is not None else "n/a"
        print(f"| {r['mode']} | {r['k'] or '-'} | {r['finished']} | {r['wall_s']} | "
              f"{r['trials_per_hour']} | {ratio} | {r['epochs']} | {r['tflops']} | {frac} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"date": when, "device": name, "data": label,
                                            "args": vars(a), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
