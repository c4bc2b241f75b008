from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cifar_fixture import write_cifar_fixture

from objectives import Diverged, classify, data
from search.schedules import ScheduleConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(data.ENV, raising=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_fixture(root, n_train=330, n_test=10)
    return str(root)


def tiny(fixture_dir: str, **kw) -> classify.TrainConfig:
    base = dict(data_dir=fixture_dir, epochs=3, batch_size=64, width=(8, 16, 16))
    return classify.TrainConfig(**{**base, **kw})


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, float, float, float]] = []

    def __call__(self, epoch: int, val_loss: float, val_acc: float, lr: float) -> None:
        self.calls.append((epoch, val_loss, val_acc, lr))


# 1. Augmentation.


def _matches(out: torch.Tensor, img: torch.Tensor, pad: int, flip: bool) -> bool:
    """`out` is a crop of reflect-padded `img` shifted by at most `pad` (mirrored if allowed)."""
    h, w = img.shape[1:]
    padded = F.pad(img[None].float(), (pad,) * 4, mode="reflect")[0]
    for y in range(2 * pad + 1):
        for x in range(2 * pad + 1):
            crop = padded[:, y : y + h, x : x + w]
            if torch.equal(crop, out.float()) or (flip and torch.equal(crop.flip(2), out.float())):
                return True
    return False


@pytest.mark.parametrize(("pad", "flip", "shape"), [(4, True, (3, 32, 32)),
                                                    (2, False, (1, 28, 28))])
def test_augment_crops_within_padding(pad, flip, shape):
    x = torch.randint(0, 256, (24, *shape), dtype=torch.uint8)
    out = classify.augment(x, pad, flip, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert not torch.equal(out, x)
    assert all(_matches(o, i, pad, flip) for o, i in zip(out, x, strict=True))
    if not flip:  # never mirrored: a crop of a mirrored image would not match
        assert not all(_matches(o, i.flip(2), pad, False) for o, i in zip(out, x, strict=True))


def test_augment_flips_about_half():
    x = torch.arange(8, dtype=torch.uint8).repeat(400, 1, 8, 1)  # rows 0..7
    out = classify.augment(x, 0, True, torch.Generator().manual_seed(1))
    mirrored = (out[:, 0, 0, 0] == 7).float().mean()
    assert 0.4 < mirrored < 0.6


def test_augment_without_padding_or_flip_is_identity():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(classify.augment(x, 0, False), x)


def test_training_augments_as_the_data_sets_entry_says(fixture_dir, monkeypatch):
    """The crop padding and flip come from the data set's entry (objectives.data), for every
    data set, and a data set cannot be declared without them."""
    seen: list[tuple[int, bool]] = []
    real = classify.augment

    def spy(x, pad, flip, gen=None):
        seen.append((pad, flip))
        return real(x, pad, flip, gen)

    monkeypatch.setattr(classify, "augment", spy)
    cfg = tiny(fixture_dir, epochs=1)
    classify.train(cfg, ScheduleConfig("Constant", lr=0.1), Recorder())
    assert seen and set(seen) == {(4, True)}
    entry = data.DATASETS["cifar10"]
    monkeypatch.setitem(data.DATASETS, "cifar10",
                        dataclasses.replace(entry, crop_pad=3, flip=False))
    seen.clear()
    classify.train(cfg, ScheduleConfig("Constant", lr=0.1), Recorder())
    assert seen and set(seen) == {(3, False)}
    assert (data.dataset("fashion_mnist").crop_pad, data.dataset("fashion_mnist").flip) == (
        2, False)
    fields = {f.name: f for f in dataclasses.fields(data.Dataset)}
    for name in ("crop_pad", "flip"):
        assert fields[name].default is dataclasses.MISSING
    kwargs = {f.name: getattr(entry, f.name) for f in dataclasses.fields(data.Dataset)
              if f.name not in ("crop_pad", "flip")}
    with pytest.raises(TypeError, match="crop_pad"):
        data.Dataset(**kwargs)


# 2. Training.


def test_train_reports_each_epoch_with_applied_lr(fixture_dir):
    rec = Recorder()
    sched = ScheduleConfig("StepLR", {"step_size": 1 / 3, "gamma": 0.5}, lr=0.4)  # of 3 epochs
    acc = classify.train(tiny(fixture_dir), sched, rec)
    assert [c[0] for c in rec.calls] == [0, 1, 2]
    assert all(math.isfinite(c[1]) and 0 <= c[2] <= 1 for c in rec.calls)
    # StepLR's closed form: base_lr * gamma ** (epoch // step_size)
    assert [c[3] for c in rec.calls] == pytest.approx([0.4, 0.2, 0.1])
    assert acc == rec.calls[-1][2] and 0.0 <= acc <= 1.0
    assert acc > 0.3  # 10 classes: chance is 0.1


def test_lr_applied_is_read_at_each_epochs_first_step(fixture_dir):
    rec = Recorder()
    cfg = tiny(fixture_dir)
    steps = classify.steps_per_epoch(cfg)
    # decay 0.1 per iteration, given as the factor reached at the end of the 3 epochs
    sched = ScheduleConfig("InverseTimeDecay", {"final_factor": 1 / (1 + 0.1 * 3 * steps)},
                           lr=0.3)
    classify.train(cfg, sched, rec)
    # per iteration: lr / (1 + decay * iteration); epoch e starts at iteration e * steps
    assert [c[3] for c in rec.calls] == pytest.approx([0.3 / (1 + 0.1 * e * steps)
                                                        for e in range(3)])


def test_steps_per_epoch_is_the_number_of_optimizer_steps(fixture_dir):
    seen: dict[str, int] = {"steps": 0}

    class Spied(ScheduleConfig):  # the objective builds its scheduler through the schedule
        def build(self, optimizer, steps_per_epoch, epochs):
            seen["declared"], seen["epochs"] = steps_per_epoch, epochs
            optimizer.register_step_post_hook(
                lambda *a: seen.__setitem__("steps", seen["steps"] + 1))
            return super().build(optimizer, steps_per_epoch, epochs)

    cfg = tiny(fixture_dir, epochs=2, batch_size=50)
    classify.train(cfg, Spied("Constant", lr=0.1), Recorder())
    # 330 images, 33 of them validation: 297 for training, 5 full batches of 50
    assert seen["declared"] == classify.steps_per_epoch(cfg) == 5
    assert seen["steps"] == 2 * 5 and seen["epochs"] == 2


def test_batch_larger_than_training_part_is_one_step(fixture_dir):
    cfg = tiny(fixture_dir, batch_size=4096, train_subset=100)
    assert classify.steps_per_epoch(cfg) == 1
    classify.train(tiny(fixture_dir, batch_size=4096, epochs=1), ScheduleConfig("Constant"),
                   Recorder())


def test_huge_lr_diverges_at_once(fixture_dir):
    rec = Recorder()
    cfg = tiny(fixture_dir, epochs=20)
    with pytest.raises(Diverged) as e:
        classify.train(cfg, ScheduleConfig("Constant", lr=1e6), rec)
    assert not math.isfinite(e.value.loss)
    # within two epochs, and nothing reported for the epoch it diverged in
    assert e.value.step < 2 * classify.steps_per_epoch(cfg)
    assert len(rec.calls) == e.value.epoch <= 1


def test_exception_from_report_propagates(fixture_dir):
    class Stop(Exception):
        pass

    calls = []

    def report(*args):
        calls.append(args)
        raise Stop

    with pytest.raises(Stop):
        classify.train(tiny(fixture_dir), ScheduleConfig("Constant", lr=0.1), report)
    assert len(calls) == 1


def test_same_seed_same_run_and_fixed_validation_split(fixture_dir):
    runs = []
    for seed in (0, 0, 1):
        rec = Recorder()
        classify.train(tiny(fixture_dir, epochs=1, seed=seed), ScheduleConfig("Constant"), rec)
        runs.append(rec.calls)
    assert runs[0] == runs[1] and runs[0] != runs[2]
    a = classify.split(tiny(fixture_dir, seed=0))
    b = classify.split(tiny(fixture_dir, seed=5, train_subset=50))
    assert torch.equal(a.val_x, b.val_x) and len(b.train_y) == 50


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_learns():
    cfg = classify.TrainConfig(dataset="fashion_mnist", epochs=2, batch_size=128,
                               width=(16, 32, 32), train_subset=6000)
    rec = Recorder()
    sched = ScheduleConfig("CosineAnnealingLR", {"T_max": 2, "eta_min_factor": 0.01}, lr=0.5)
    acc = classify.train(cfg, sched, rec)
    assert len(rec.calls) == 2 and acc > 0.6


def test_holdout_test_trains_on_train_and_val_and_scores_the_test_split(fixture_dir):
    val = classify.split(tiny(fixture_dir))
    test = classify.split(tiny(fixture_dir, holdout="test"))
    x_test, y_test = data.load("cifar10", "test", fixture_dir)
    assert len(test.train_y) == len(val.train_y) + len(val.val_y)
    assert torch.equal(test.val_x, x_test) and torch.equal(test.val_y, y_test)
    seen = []
    classify.train(tiny(fixture_dir, holdout="test", epochs=1),
                   ScheduleConfig("Constant", {}, lr=0.1), lambda *a: seen.append(a))
    assert len(seen) == 1
    with pytest.raises(ValueError, match="holdout"):
        classify.split(tiny(fixture_dir, holdout="train"))


@pytest.mark.parametrize("key", sorted(__import__("objectives.optimizers").optimizers.OPTIMIZERS))
def test_each_optimizer_is_built_and_recorded_as_its_table_says(key):
    """objectives.optimizers is the one description: the class built, the name recorded, and
    its flags (Adam-type: betas; Nesterov; schedule-free: a warmup share) agree with torch."""
    from objectives.optimizers import OPTIMIZERS, by_class

    kind = OPTIMIZERS[key]
    if kind.module != "torch.optim":
        pytest.importorskip(kind.module)
    cfg = classify.TrainConfig(dataset="cifar10", optimizer=key)
    opt = classify.make_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg,
                                  ScheduleConfig("Constant", lr=0.1, momentum=0.9), 100)
    record = classify.optimizer_record(opt)
    assert type(opt).__name__ == kind.name == record["name"] and by_class(kind.name) is kind
    assert ("betas" in record) == kind.adam
    assert record.get("nesterov", False) == kind.nesterov
    assert ("warmup_steps" in record) == kind.schedule_free
    if kind.schedule_free:  # the table's warmup share of the run, in training and exports
        from search.answer.choose import _for_budget

        assert kind.warmup == 0.05 and record["warmup_steps"] == kind.warmup_steps(100) == 5
        assert _for_budget(record, 400)["warmup_steps"] == kind.warmup_steps(400) == 20
    else:
        assert kind.warmup == 0.0
