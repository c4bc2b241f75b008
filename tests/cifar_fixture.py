"""A small data set in the real CIFAR format, for tests and quick runs (benchmarks/ too).

Same dir and file names, pickle keys and dtypes as the official archives, so the real reader
(objectives.data) runs on it; classes differ by colour and stripes, so a tiny net learns
them within an epoch.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from objectives.data import DATASETS

__all__ = ["write_cifar_fixture"]


def _fixture_images(labels: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
    # Class = colour + stripe direction and frequency; random phase and noise on top, so
    # crops and flips keep the class and a tiny net beats chance within an epoch.
    style = np.random.default_rng(1234 + classes)
    colour = style.uniform(50, 205, (classes, 3))
    angle = style.uniform(0, np.pi, classes)
    freq = style.uniform(1.0, 4.0, classes)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    n = len(labels)
    proj = np.cos(angle)[labels, None, None] * yy + np.sin(angle)[labels, None, None] * xx
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    stripes = 45.0 * np.sin(2 * np.pi * freq[labels, None, None] * proj + phase)
    img = colour[labels, :, None, None] + stripes[:, None] + rng.normal(0, 20, (n, 3, 32, 32))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)


def write_cifar_fixture(
    root: str | os.PathLike, n_train: int = 1000, n_test: int = 200, classes: int = 10,
    seed: int = 0,
) -> Path:
    """Write a small CIFAR-10 (classes=10) or CIFAR-100 (classes=100) in the real format.

    Same dir and file names, pickle keys and dtypes as the official archives, so the real
    reader runs on it. Returns the data set's dir (`root/cifar-10-batches-py`).
    """
    if classes not in (10, 100):
        raise ValueError(f"classes must be 10 or 100 but got {classes}")
    spec = DATASETS["cifar10" if classes == 10 else "cifar100"]
    folder = Path(root) / spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(n: int, label: str) -> dict:
        y = rng.integers(0, classes, n)
        out = {b"batch_label": label.encode(), b"data": _fixture_images(y, classes, rng),
               b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        if classes == 10:
            out[b"labels"] = y.tolist()
        else:
            out.update({b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist()})
        return out

    def dump(obj: dict, name: str) -> None:
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    names = [f"class_{i}".encode() for i in range(classes)]
    if classes == 10:
        for i, n in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            dump(batch(len(n), f"training batch {i} of 5"), f"data_batch_{i}")
        dump(batch(n_test, "testing batch 1 of 1"), "test_batch")
        dump({b"label_names": names, b"num_cases_per_batch": -(-n_train // 5),
              b"num_vis": 3072}, "batches.meta")
    else:
        dump(batch(n_train, "training"), "train")
        dump(batch(n_test, "testing"), "test")
        dump({b"fine_label_names": names,
              b"coarse_label_names": [f"super_{i}".encode() for i in range(20)]}, "meta")
    return folder
