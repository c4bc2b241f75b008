"""Image data sets as uint8 tensors: CIFAR-10/100 and Fashion-MNIST readers, download, fixtures.

Where a data set is looked for, in order: the `data_dir` argument (the CLI's --data-dir), then
$SEARCH_DATA_DIR, then the cache dir ($XDG_CACHE_HOME/schedsearch, else ~/.cache/schedsearch),
then system copies (Fashion-MNIST from the Debian package dataset-fashion-mnist), and last a
download into the cache, checked against the published md5. In each place both the parent dir
(holding `cifar-10-batches-py/`) and the data set's own dir are accepted.

A `data_dir` given explicitly must hold the files: falling back to a download would hide a typo.
$SEARCH_DATA_DIR is a default for every data set, so one lacking there is looked for further on.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from objectives import UserError

__all__ = [
    "DATASETS",
    "ENV",
    "Dataset",
    "cache_dir",
    "dataset",
    "load",
    "locate",
    "read_idx",
]

ENV = "SEARCH_DATA_DIR"
_CHUNK = 1 << 20  # bytes per read while downloading and hashing


@dataclass(frozen=True)
class Dataset:
    """Where a data set's files live, how to read them and where to download them from."""

    name: str
    title: str
    folder: str  # the data set's own dir inside a data dir
    files: Mapping[str, tuple[str, ...]]  # split -> files read for it
    read: Callable[[Path, tuple[str, ...]], tuple[np.ndarray, np.ndarray]]
    urls: tuple[str, ...]  # mirrors, tried in order; each + file name is a download
    md5: Mapping[str, str]  # downloaded file -> published md5
    archive: bool  # the download is one tar.gz holding `folder`, else the files themselves
    shape: tuple[int, int, int]  # C, H, W
    classes: int
    # Training augmentation (required: a data set added without them is an error here, not a
    # silent "no augmentation"): the random crop's padding in pixels, a random horizontal flip.
    crop_pad: int
    flip: bool
    system_dirs: tuple[str, ...] = ()


# 1. Readers of the original formats. A data dir is data, never code: a CIFAR batch is read by
#    an unpickler that builds only what the format holds, and every file that is corrupt,
#    truncated or of the wrong shape is one line naming it and the fix.

MAX_IDX_BYTES = 1 << 30  # decompressed bytes of one idx file (Fashion-MNIST's largest: 47 MB)
MAX_IDX_DIMS = 4  # an idx header's ndim: images are 3, labels 1


class _BatchUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, str, numbers and numpy arrays of plain dtypes, nothing else.

    A pickle names the callables it wants run (GLOBAL/STACK_GLOBAL); every name outside this
    table is refused before anything is called, so a crafted batch runs no code.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _PICKLE_GLOBALS.get((module, name))
        if allowed is None:
            raise _Refused(f"{module}.{name}")
        return allowed


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a callable that a data file never needs."""


def _plain_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:  # an object array's items would be arbitrary pickled objects
        raise _Refused("numpy.dtype('O')")
    return dt


def _array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _Refused(f"an array of type {getattr(subtype, '__name__', subtype)}")
    return _multiarray()._reconstruct(np.ndarray, shape, dtype)


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes for protocol 2 as _codecs.encode(text, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


def _multiarray() -> Any:
    core = getattr(np, "_core", None)  # numpy 2; numpy 1 calls it numpy.core
    if core is not None:
        return core.multiarray
    # numpy 1 only, and numpy 2's stubs have no numpy.core
    return np.core.multiarray  # type: ignore[attr-defined]


_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _array,
    ("numpy._core.multiarray", "_reconstruct"): _array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("_codecs", "encode"): _latin1,
}


def _md5_of(name: str) -> str | None:
    return next((d.md5[name] for d in DATASETS.values() if name in d.md5), None)


def _corrupt(path: Path, what: str) -> UserError:
    """The one line for a data file that cannot be read: which file, what is wrong, the fix."""
    system = next((d for spec in DATASETS.values() for d in spec.system_dirs
                   if str(path).startswith(d + os.sep)), None)
    if system is not None:
        fix = "reinstall the package that put it there (dataset-fashion-mnist)"
    else:
        archive = next((spec for spec in DATASETS.values()
                        if spec.archive and path.parent.name == spec.folder), None)
        if archive is not None:
            (name, md5), = archive.md5.items()
            fix = (f"delete {path.parent} to download it again ({name}, md5 {md5}), or put "
                   "the original files there")
        else:
            known = _md5_of(path.name)
            fix = "delete it to download it again" + (f" (md5 {known})" if known else "")
    return UserError(f"{path} {what}; {fix}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise _corrupt(path, f"asks to run {e}, which a CIFAR batch never holds: refused "
                       "without running it") from None
    except OSError as e:
        raise _corrupt(path, f"cannot be read ({e.strerror or e})") from None
    except Exception as e:  # truncated (EOFError), garbled (UnpicklingError, ValueError, ...)
        reason = " ".join(str(e).split())[:80] or "no detail"
        raise _corrupt(path, f"is not a CIFAR batch ({type(e).__name__}: {reason})") from None
    if not isinstance(batch, dict):
        raise _corrupt(path, f"holds a {type(batch).__name__}, not a CIFAR batch (a dict)")
    return batch


def _cifar_reader(label_key: bytes, classes: int) -> Callable[[Path, tuple[str, ...]], tuple]:
    def batch_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
        b = _unpickle(path)
        x, y = b.get(b"data"), b.get(label_key)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 \
                or x.shape[1] != 3 * 32 * 32:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise _corrupt(path, f"has no {b'data'!r} of uint8 rows of 3072 pixels (got {got})")
        if not isinstance(y, list | np.ndarray) or len(y) != len(x) or not all(
                isinstance(v, int | np.integer) and 0 <= v < classes for v in y):
            raise _corrupt(path, f"has no {label_key!r} list of {len(x)} labels in "
                           f"[0, {classes})")
        return x, np.asarray(y, dtype=np.int64)

    def read(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = zip(*(batch_arrays(folder / n) for n in names), strict=True)
        return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)

    return read


def _existing(folder: Path, name: str) -> Path | None:
    """An idx file, plain or gzipped."""
    for p in (folder / name, folder / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def _found(folder: Path, name: str) -> Path:
    """An idx file of a folder that `_holds` the split (the only folders `locate` returns)."""
    path = _existing(folder, name)
    assert path is not None, f"{folder} lost {name} after it was located"
    return path


def read_idx(path: Path) -> np.ndarray:
    """An idx file (the MNIST format: magic 0 0 dtype ndim, big-endian dims, then data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        what = "is truncated" if isinstance(e, EOFError) else \
            f"cannot be read ({' '.join(str(e).split())[:80] or type(e).__name__})"
        raise _corrupt(path, what) from None
    if len(raw) > MAX_IDX_BYTES:
        raise _corrupt(path, f"is over {MAX_IDX_BYTES >> 20} MiB, larger than any idx data set")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise _corrupt(path, "is not an idx file of unsigned bytes")
    ndim = raw[3]
    if not 1 <= ndim <= MAX_IDX_DIMS or len(raw) < 4 + 4 * ndim:
        raise _corrupt(path, f"has a broken idx header ({ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise _corrupt(path, f"is truncated ({data.size} of {math.prod(dims)} bytes)")
    return data.reshape(dims)


def _read_fashion(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    paths = [_found(folder, n) for n in names]
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise _corrupt(paths[0], f"holds images of shape {images.shape[1:]}, not (28, 28)")
    if labels.ndim != 1 or len(labels) != len(images) or (labels.size and labels.max() > 9):
        raise _corrupt(paths[1], f"holds labels of shape {labels.shape}, not {len(images)} "
                       "labels in 0..9 (one per image)")
    return images[:, None], labels.astype(np.int64)


_FASHION = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "cifar10", "CIFAR-10", "cifar-10-batches-py",
            {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
            _cifar_reader(b"labels", 10),
            ("https://www.cs.toronto.edu/~kriz/",),
            {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
            archive=True, shape=(3, 32, 32), classes=10, crop_pad=4, flip=True,
        ),
        Dataset(
            "cifar100", "CIFAR-100", "cifar-100-python",
            {"train": ("train",), "test": ("test",)},
            _cifar_reader(b"fine_labels", 100),
            ("https://www.cs.toronto.edu/~kriz/",),
            {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
            archive=True, shape=(3, 32, 32), classes=100, crop_pad=4, flip=True,
        ),
        Dataset(
            "fashion_mnist", "Fashion-MNIST", "fashion-mnist", _FASHION, _read_fashion,
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            ),
            {
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            # a smaller crop for its 28-pixel images, and no flip (its shoes all face left)
            archive=False, shape=(1, 28, 28), classes=10, crop_pad=2, flip=False,
            system_dirs=("/usr/share/datasets/fashion-mnist",),
        ),
    ]
}


def dataset(name: str) -> Dataset:
    """The registry entry for `name`; an unknown name lists the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(
            f"`dataset` must be one of {', '.join(DATASETS)} but got {name!r}"
        ) from None


_lookup = dataset  # for functions whose argument is named `dataset`


# 2. Finding the files.


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "schedsearch"


def _holds(folder: Path, spec: Dataset, split: str) -> bool:
    if spec.archive:
        return all((folder / n).is_file() for n in spec.files[split])
    return all(_existing(folder, n) is not None for n in spec.files[split])


def _find_in(root: Path, spec: Dataset, split: str) -> Path | None:
    for folder in (root / spec.folder, root):
        if _holds(folder, spec, split):
            return folder
    return None


def _short(path: Path) -> str:
    home = os.path.expanduser("~")
    s = str(path)
    return "~" + s[len(home):] if home not in ("", "/") and s.startswith(home + os.sep) else s


def locate(
    dataset: str, split: str = "train", data_dir: str | os.PathLike | None = None
) -> Path:
    """The dir holding `split` of `dataset`, downloading it into the cache if needed."""
    spec = _lookup(dataset)
    if split not in spec.files:
        raise UserError(f"`split` must be one of {', '.join(spec.files)} but got {split!r}")
    if data_dir is not None:
        found = _find_in(Path(data_dir).expanduser(), spec, split)
        if found is None:
            names = ", ".join(n if spec.archive else f"{n}[.gz]" for n in spec.files[split])
            raise UserError(
                f"data dir {data_dir} has no {spec.title} {split} files: expected {names} "
                f"in it or in its {spec.folder}/"
            )
        return found
    roots: list[str | Path] = [os.environ[ENV]] if os.environ.get(ENV) else []
    roots += [cache_dir(), *spec.system_dirs]
    for root in roots:
        found = _find_in(Path(root).expanduser(), spec, split)
        if found is not None:
            return found
    return _download(spec, split)


# 3. Download into the cache, checked against the published md5.


def _progress(total: int | None, label: str):
    """A rich progress bar on a terminal; None where stderr is a file or pipe."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                   transient=True)
    return bar, bar.add_task(label, total=total)


def _fetch(url: str, dest: Path, md5: str) -> None:
    """Stream `url` to `dest`, hashing as it goes; a bad checksum leaves no file behind."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            length = r.headers.get("Content-Length") if r.headers else None
            shown = _progress(int(length) if length else None, dest.name)
            if shown:
                shown[0].start()
            try:
                while chunk := r.read(_CHUNK):
                    digest.update(chunk)
                    f.write(chunk)
                    if shown:
                        shown[0].advance(shown[1], len(chunk))
            finally:
                if shown:
                    shown[0].stop()
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise UserError(
            f"{url} downloaded with md5 {digest.hexdigest()} but {md5} was expected; "
            "the file was removed, try again or download it yourself"
        )
    part.replace(dest)


def _fetch_any(spec: Dataset, file: str, dest: Path) -> None:
    error: Exception | None = None
    for base in spec.urls:
        try:
            return _fetch(base + file, dest, spec.md5[file])
        except (OSError, ValueError) as e:  # URLError is an OSError; a bad URL a ValueError
            if isinstance(e, UserError):
                raise
            error = e
    raise ConnectionError(getattr(error, "reason", None) or error)


def _extract(archive: Path, spec: Dataset, into: Path) -> None:
    # Extract beside the target, then move in whole: an interrupted run leaves no half dir.
    with tempfile.TemporaryDirectory(dir=into) as tmp, tarfile.open(archive, "r:gz") as tf:
        tf.extractall(tmp, filter="data")
        target = into / spec.folder
        if target.exists():
            shutil.rmtree(target)
        (Path(tmp) / spec.folder).replace(target)


def _download(spec: Dataset, split: str) -> Path:
    into = cache_dir()
    try:
        if spec.archive:
            into.mkdir(parents=True, exist_ok=True)
            (file,) = spec.md5
            _fetch_any(spec, file, into / file)
            _extract(into / file, spec, into)
            (into / file).unlink()
        else:
            (into / spec.folder).mkdir(parents=True, exist_ok=True)
            for file in spec.md5:
                if not (into / spec.folder / file).is_file():
                    _fetch_any(spec, file, into / spec.folder / file)
    except (OSError, tarfile.TarError) as e:
        what = f"{spec.folder}/" if spec.archive else ", ".join(spec.md5)
        src = spec.urls[0] + next(iter(spec.md5)) if spec.archive else spec.urls[0]
        extra = " (or install dataset-fashion-mnist)" if spec.system_dirs else ""
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(
            f"{spec.title} not found and could not be downloaded ({reason}): put {what} "
            f"(from {src}) in --data-dir, ${ENV} or {_short(into)}{extra}"
        ) from None
    found = _find_in(into, spec, split)
    if found is None:
        raise UserError(f"the {spec.title} download in {_short(into)} lacks its {split} files")
    return found


# 4. Loading, cached in-process: a study trains many trials on the same data.


def _signature(folder: Path, names: tuple[str, ...]) -> tuple:
    paths = [folder / n if (folder / n).is_file() else _found(folder, n) for n in names]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


@functools.lru_cache(maxsize=4)
def _read(
    name: str, split: str, folder: str, signature: tuple
) -> tuple[torch.Tensor, torch.Tensor]:
    spec = DATASETS[name]
    x, y = spec.read(Path(folder), spec.files[split])
    if x.shape[1:] != spec.shape or len(x) != len(y):  # the readers check each file first
        raise UserError(f"{folder} holds {len(x)} images of shape {x.shape[1:]} and {len(y)} "
                        f"labels, not one label per image of shape {spec.shape}")
    return torch.from_numpy(np.require(x, requirements=["C", "W"])), torch.from_numpy(y)


def load(
    dataset: str, split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) uint8 and labels (N,) int64 of one split. Shared: don't modify."""
    folder = locate(dataset, split, data_dir)
    files = DATASETS[dataset].files[split]
    return _read(dataset, split, str(folder.resolve()), _signature(folder, files))
