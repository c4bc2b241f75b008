"""A corpus of corrupt data files: each is one line naming the file and the fix; no code runs.

Every file of the corpus replaces one file of a good CIFAR-10 or Fashion-MNIST copy; loading
must end in a UserError of one line that names the file and says how to fix it (delete it to
download again, with the md5, or reinstall the package). Pickles that ask to run code (a
payload that would create a file) are refused before anything is called.
BAD_INPUT_TALLY=FILE appends the outcome counts as JSON (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import pickletools
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cifar_fixture import write_cifar_fixture

from objectives import data
from search.errors import UserError

CIFAR = data.DATASETS["cifar10"]
FASHION = data.DATASETS["fashion_mnist"]
TALLY: Counter = Counter()


@pytest.fixture(autouse=True)
def _fresh_cache():
    data._read.cache_clear()  # each case reads its own files
    yield
    data._read.cache_clear()


def _cifar(root: Path) -> Path:
    return write_cifar_fixture(root, n_train=50, n_test=10)


def _idx(array: np.ndarray, header: bytes | None = None) -> bytes:
    head = header if header is not None else (
        bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes())
    return head + array.astype(np.uint8).tobytes()


def _fashion(root: Path) -> Path:
    folder = root / FASHION.folder
    folder.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28))
    for split in ("train", "t10k"):
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx(np.arange(12) % 10)))
    return folder


def _payload(marker: Path) -> bytes:
    """A pickle whose loading would create `marker` (builtins.open(marker, "w"))."""
    return (b"\x80\x02cbuiltins\nopen\nq\x00X" + len(str(marker)).to_bytes(4, "little")
            + str(marker).encode() + b"X\x01\x00\x00\x00w\x86R.")


def _system_payload(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2)


def _object_array(marker: Path) -> bytes:
    arr = np.empty(1, dtype=object)
    arr[0] = _Marker(str(marker))
    return pickle.dumps({b"data": arr, b"labels": [0]}, protocol=2)


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _good_batch(**changes) -> bytes:
    batch = {b"data": np.zeros((5, 3072), np.uint8), b"labels": [1, 2, 3, 4, 5],
             b"batch_label": b"x", b"filenames": [b"a"] * 5}
    batch.update({k.encode(): v for k, v in changes.items()})
    return pickle.dumps({k: v for k, v in batch.items() if v is not None}, protocol=2)


# (name, data set, file replaced, its new content (a function of the marker path))
CASES = [
    ("cifar truncated", "cifar10", "data_batch_1", lambda m, good: good[: len(good) // 2]),
    ("cifar empty", "cifar10", "data_batch_2", lambda m, good: b""),
    ("cifar garbled", "cifar10", "data_batch_3", lambda m, good: bytes(range(256)) * 4),
    ("cifar text", "cifar10", "test_batch", lambda m, good: b"<html>404 Not Found</html>"),
    ("cifar a list", "cifar10", "data_batch_1", lambda m, good: pickle.dumps([1, 2, 3])),
    ("cifar no data", "cifar10", "data_batch_1", lambda m, good: _good_batch(data=None)),
    ("cifar wrong shape", "cifar10", "data_batch_1",
     lambda m, good: _good_batch(data=np.zeros((5, 100), np.uint8))),
    ("cifar float pixels", "cifar10", "data_batch_1",
     lambda m, good: _good_batch(data=np.zeros((5, 3072), np.float64))),
    ("cifar label count", "cifar10", "data_batch_1",
     lambda m, good: _good_batch(labels=[1, 2])),
    ("cifar label range", "cifar10", "data_batch_1",
     lambda m, good: _good_batch(labels=[1, 2, 3, 4, 255])),
    ("cifar labels strings", "cifar10", "data_batch_1",
     lambda m, good: _good_batch(labels=["a"] * 5)),
    ("pickle payload open", "cifar10", "data_batch_1", lambda m, good: _payload(m)),
    ("pickle payload os.system", "cifar10", "data_batch_4", lambda m, good: _system_payload(m)),
    ("pickle object array", "cifar10", "data_batch_5", lambda m, good: _object_array(m)),
    ("idx truncated gz", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: good[: len(good) // 2]),
    ("idx not gzip", "fashion_mnist", "train-images-idx3-ubyte.gz", lambda m, good: b"PK\x03"),
    ("idx empty gz", "fashion_mnist", "train-labels-idx1-ubyte.gz", lambda m, good: b""),
    ("idx wrong magic", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: gzip.compress(b"\x00\x00\x0d\x03" + b"\x00" * 64)),
    ("idx huge ndim", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: gzip.compress(b"\x00\x00\x08\xff" + b"\xff" * 64)),
    ("idx header cut", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: gzip.compress(b"\x00\x00\x08\x03\x00\x00")),
    ("idx huge dims", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: gzip.compress(b"\x00\x00\x08\x03" + b"\xff" * 12 + b"\x00" * 10)),
    ("idx data cut", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: gzip.compress(gzip.decompress(good)[:-100])),
    ("idx wrong image shape", "fashion_mnist", "train-images-idx3-ubyte.gz",
     lambda m, good: gzip.compress(_idx(np.zeros((12, 14, 56))))),
    ("idx label count", "fashion_mnist", "train-labels-idx1-ubyte.gz",
     lambda m, good: gzip.compress(_idx(np.zeros(7)))),
    ("idx label range", "fashion_mnist", "train-labels-idx1-ubyte.gz",
     lambda m, good: gzip.compress(_idx(np.full(12, 200)))),
]


@pytest.mark.parametrize("name, dataset, file, make", CASES, ids=[c[0] for c in CASES])
def test_each_corrupt_file_is_one_line_naming_it_and_the_fix(tmp_path, name, dataset, file,
                                                             make):
    folder = _cifar(tmp_path) if dataset == "cifar10" else _fashion(tmp_path)
    marker = tmp_path / "payload-ran"
    target = folder / file
    target.write_bytes(make(marker, target.read_bytes()))
    outcome = "no error"
    try:
        data.load(dataset, "train", tmp_path)
        data.load(dataset, "test", tmp_path)
    except UserError as e:
        msg = str(e)
        outcome = "one line" if "\n" not in msg and str(target) in msg else f"vague: {msg}"
        fix = "delete" in msg and "md5" in msg
        outcome = outcome if fix else f"no fix: {msg}"
    except Exception:
        outcome = f"traceback: {traceback.format_exc()}"
    TALLY["one line" if outcome == "one line" else outcome.split(":")[0]] += 1
    assert not marker.exists(), "the pickle's payload ran"
    assert outcome == "one line"


def test_the_payload_really_would_run_with_plain_pickle(tmp_path):
    """The corpus' payloads are live: plain pickle.loads creates the marker file."""
    marker = tmp_path / "ran"
    pickle.loads(_payload(marker)).close()
    assert marker.exists()
    assert any(op.name in ("GLOBAL", "STACK_GLOBAL")
               for op, _, _ in pickletools.genops(_system_payload(marker)))


def test_a_system_copy_says_reinstall(tmp_path, monkeypatch):
    folder = _fashion(tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    spec = data.DATASETS["fashion_mnist"]
    monkeypatch.setitem(data.DATASETS, "fashion_mnist",
                        type(spec)(**{**spec.__dict__, "system_dirs": (str(tmp_path),)}))
    with pytest.raises(UserError, match="reinstall the package"):
        data.read_idx(folder / "train-labels-idx1-ubyte.gz")


def test_zz_tally():
    if os.environ.get("BAD_INPUT_TALLY") and TALLY:
        with open(os.environ["BAD_INPUT_TALLY"], "a") as f:
            f.write(json.dumps({"kind": "data files", **TALLY}) + "\n")
