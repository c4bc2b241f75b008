from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixture import write_cifar_fixture

from objectives import data
from search.errors import UserError

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reads the user's cache or $SEARCH_DATA_DIR, or reaches the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(data.ENV, raising=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(("classes", "name", "key"), [(10, "cifar10", b"labels"),
                                                       (100, "cifar100", b"fine_labels")])
def test_fixture_round_trip(tmp_path, classes, name, key):
    folder = write_cifar_fixture(tmp_path, n_train=60, n_test=20, classes=classes)
    x, y = data.load(name, "train", tmp_path)
    assert x.shape == (60, 3, 32, 32) and x.dtype == torch.uint8
    assert y.shape == (60,) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) < classes
    # Same bytes as the pickles hold, in the official layout (N, 3072) -> (N, 3, 32, 32).
    first = pickle.load(open(folder / data.DATASETS[name].files["train"][0], "rb"),
                        encoding="bytes")
    n = len(first[key])
    assert y[:n].tolist() == first[key]
    assert np.array_equal(x[:n].reshape(n, -1).numpy(), first[b"data"])
    tx, ty = data.load(name, "test", tmp_path)
    assert tx.shape == (20, 3, 32, 32) and ty.shape == (20,)


def test_fixture_is_learnable_by_colour(tmp_path):
    write_cifar_fixture(tmp_path, n_train=200, n_test=10)
    x, y = data.load("cifar10", "train", tmp_path)
    means = x.float().mean(dim=(2, 3))
    centroids = torch.stack([means[y == c].mean(0) for c in range(10)])
    nearest = torch.cdist(means, centroids).argmin(1)
    assert (nearest == y).float().mean() > 0.9


def test_batches_dir_itself_and_env(tmp_path, monkeypatch):
    folder = write_cifar_fixture(tmp_path, n_train=10, n_test=5)
    assert data.locate("cifar10", "train", folder) == folder
    assert data.load("cifar10", "test", folder)[0].shape[0] == 5
    monkeypatch.setenv(data.ENV, str(tmp_path))
    assert data.locate("cifar10", "train") == folder
    monkeypatch.setenv(data.ENV, str(folder))
    assert data.load("cifar10", "train")[0].shape[0] == 10


def test_load_is_cached_in_process(tmp_path):
    write_cifar_fixture(tmp_path, n_train=10, n_test=5)
    assert data.load("cifar10", "train", tmp_path)[0] is data.load("cifar10", "train", tmp_path)[0]


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError, match="cifar10, cifar100, fashion_mnist but got 'mnist'"):
        data.load("mnist")


def test_explicit_dir_without_files(tmp_path):
    with pytest.raises(UserError) as e:
        data.load("cifar10", "train", tmp_path / "nowhere")
    msg = _one_line(e)
    assert str(tmp_path / "nowhere") in msg and "cifar-10-batches-py" in msg
    assert "data_batch_1" in msg


def test_offline_says_where_to_put_files():
    with pytest.raises(UserError) as e:
        data.load("cifar10")
    msg = _one_line(e)
    assert "could not be downloaded (network disabled in tests)" in msg
    assert "put cifar-10-batches-py/" in msg and "cifar-10-python.tar.gz" in msg
    assert "--data-dir" in msg and "$SEARCH_DATA_DIR" in msg


def _serve(monkeypatch, name: str, folder: Path, md5: dict | None = None) -> None:
    """Point `name`'s downloads at file:// URLs in `folder` (a dead mirror first)."""
    spec = data.DATASETS[name]
    urls = ((folder / "dead").as_uri() + "/", folder.as_uri() + "/")
    monkeypatch.setitem(data.DATASETS, name,
                        dataclasses.replace(spec, urls=urls, md5=md5 or dict(spec.md5)))
    monkeypatch.setattr(urllib.request, "urlopen", urllib.request.build_opener().open)


def _cifar_archive(tmp_path: Path) -> tuple[Path, str]:
    write_cifar_fixture(tmp_path / "src", n_train=20, n_test=10)
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((served / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    return served, md5


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    served, md5 = _cifar_archive(tmp_path)
    _serve(monkeypatch, "cifar10", served, {"cifar-10-python.tar.gz": md5})
    x, y = data.load("cifar10", "train")
    assert x.shape == (20, 3, 32, 32)
    cache = data.cache_dir()
    assert cache == tmp_path / "xdg" / "schedsearch"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-py"]


def test_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    served, _ = _cifar_archive(tmp_path)
    _serve(monkeypatch, "cifar10", served)  # the official md5: cannot match the fixture
    with pytest.raises(UserError) as e:
        data.load("cifar10")
    assert "md5" in _one_line(e) and "removed" in str(e.value)
    assert list(data.cache_dir().iterdir()) == []


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fashion_files(folder: Path, n: int = 12, gz: bool = True) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28))
    for split in ("train", "t10k"):
        sfx = ".gz" if gz else ""
        _write_idx(folder / f"{split}-images-idx3-ubyte{sfx}", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", np.arange(n) % 10)
    return images


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_plain_and_gz(tmp_path, gz):
    images = _fashion_files(tmp_path / "fashion-mnist", gz=gz)
    x, y = data.load("fashion_mnist", "train", tmp_path)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert np.array_equal(x[:, 0].numpy(), images) and y.tolist() == [i % 10 for i in range(12)]


def test_idx_reader_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(UserError, match="not an idx file"):
        data.read_idx(tmp_path / "bad")


def test_fashion_download_per_file(tmp_path, monkeypatch):
    _fashion_files(tmp_path / "served")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest()
           for p in (tmp_path / "served").iterdir()}
    _serve(monkeypatch, "fashion_mnist", tmp_path / "served", md5)
    monkeypatch.setitem(data.DATASETS, "fashion_mnist",
                        dataclasses.replace(data.DATASETS["fashion_mnist"], system_dirs=()))
    x, _ = data.load("fashion_mnist", "test")
    assert x.shape == (12, 1, 28, 28)
    assert len(list((data.cache_dir() / "fashion-mnist").iterdir())) == 4


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    x, y = data.load("fashion_mnist", "train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [6000] * 10
    tx, ty = data.load("fashion_mnist", "test")
    assert tx.shape == (10000, 1, 28, 28) and torch.bincount(ty).tolist() == [1000] * 10
    assert 60 < x[:1000].float().mean() < 90  # mostly dark backgrounds, as published
