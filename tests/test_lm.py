"""objectives.lm: the byte-level language-model objective, on tiny models and texts."""

from __future__ import annotations

import dataclasses
import math
import random
import shutil

import pytest
import torch

from objectives import Diverged, UserError, lm, text
from objectives.settings import TrainConfig
from search.schedules import ScheduleConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2, "context": 16, "eval_bytes": 512}
WORDS = ("the lord said unto moses and aaron in the land of egypt this month shall be unto "
         "you the beginning of months it shall be the first month of the year to you").split()


@pytest.fixture
def text_file(tmp_path) -> str:
    """60 KB of English-like text: sentences of words drawn with a fixed seed."""
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14))).capitalize() + "."
             for _ in range(1200)]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class Report:
    """A fake `report`: records every call (and `test`, when final_test asks)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float], float]] = []
        self.tests: list[tuple[float, float]] = []

    def __call__(self, epoch: int, metrics: dict[str, float], lr: float) -> None:
        self.calls.append((epoch, dict(metrics), lr))

    def test(self, loss: float, acc: float) -> None:
        self.tests.append((loss, acc))

    def losses(self) -> list[float]:
        return [m["val_loss"] for _, m, _ in self.calls]


def config(path: str, **kw) -> TrainConfig:
    options = {**TINY, "text_path": path, "steps_per_eval": 15, **kw.pop("options", {})}
    base = dict(epochs=3, batch_size=8, optimizer="adamw", betas=(0.9, 0.95), metric="val_loss",
                options=options)
    return TrainConfig(**{**base, **kw})


SCHEDULE = ScheduleConfig("CosineAnnealingLR", {"T_max": 1.0, "eta_min_factor": 0.0},
                          lr=1e-2, weight_decay=0.1)


def test_a_trial_is_deterministic_for_its_seed_and_learns(text_file):
    runs = []
    for _ in range(2):
        report = Report()
        value = lm.train(config(text_file), SCHEDULE, report)
        runs.append(report)
    first, second = runs
    assert first.calls == second.calls  # the same batches, weights and losses, bit for bit
    losses = first.losses()
    assert [e for e, _, _ in first.calls] == [0, 1, 2]
    assert value == losses[-1]
    assert losses[0] < math.log(256) - 1.0 and losses[-1] < losses[0]  # it learns
    for _, metrics, lr in first.calls:
        assert set(metrics) == {"val_loss", "val_bpc"}
        assert metrics["val_bpc"] == pytest.approx(metrics["val_loss"] / math.log(2))
        assert 0 < lr <= 1e-2
    other = Report()
    lm.train(config(text_file, seed=1), SCHEDULE, other)
    assert other.losses() != losses  # another seed, other batches and weights


def test_parts_never_overlap_and_windows_stay_inside_their_part(tmp_path):
    for n in (1000, 4_298_239, 123_457):
        b = text.bounds(n)
        assert b["train"][0] == 0 and b["test"][1] == n
        assert b["train"][1] == b["val"][0] and b["val"][1] == b["test"][0]  # no gap, no overlap
        assert b["train"][1] == pytest.approx(0.9 * n, abs=1)
        assert b["val"][1] - b["val"][0] == pytest.approx(0.05 * n, abs=1)
    # each part a letter of its own: a window holding another letter crossed a boundary
    data = torch.tensor(list(b"a" * 900 + b"b" * 50 + b"c" * 50), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    for holdout, trained, scored in (("val", b"a", b"b"), ("test", b"ab", b"c")):
        fit, held = text.parts(data, holdout)
        seen = set(lm.train_batch(fit, 500, 16, gen).flatten().tolist())
        assert seen == set(trained)
        assert set(lm.eval_windows(held, 16, 10_000).flatten().tolist()) == set(scored)
    # the scored windows: non-overlapping, the same every time, spread up to the cap
    held = torch.arange(1000)  # each byte its position
    windows = lm.eval_windows(held, 9, 90)
    assert windows.shape == (10, 10)
    starts = windows[:, 0].tolist()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert starts == sorted(starts) and min(gaps) >= 10 and starts[-1] >= 900
    assert torch.equal(windows, lm.eval_windows(held, 9, 90))


def test_holdout_test_trains_on_train_and_val_and_scores_the_test_text(text_file):
    report = Report()
    lm.train(config(text_file, epochs=1, holdout="test", final_test=True), SCHEDULE, report)
    (_, metrics, _), = report.calls
    (test_loss, test_acc), = report.tests
    assert test_loss == metrics["val_loss"]  # the scored part is the test text already
    assert 0 < test_acc < 1


def test_schedule_free_adamw_trains_and_scores_its_averaged_weights(text_file):
    pytest.importorskip("schedulefree")
    report = Report()
    cfg = config(text_file, epochs=2, optimizer="schedulefree_adamw", final_test=True)
    value = lm.train(cfg, ScheduleConfig("Constant", lr=3e-3, weight_decay=0.1), report)
    losses = report.losses()
    assert len(losses) == 2 and value == losses[-1] < math.log(256)
    (test_loss, test_acc), = report.tests  # holdout "val": the test text scored once, at the end
    assert math.isfinite(test_loss) and test_loss != losses[-1] and 0 < test_acc < 1


def test_a_missing_corpus_is_one_line_naming_the_package(monkeypatch, text_file):
    monkeypatch.setattr(text.shutil, "which", lambda name: None)
    cfg = config(text_file, options={"text_path": None})
    for call in (lambda: lm.prepare(cfg), lambda: lm.train(cfg, SCHEDULE, Report())):
        with pytest.raises(UserError) as e:
            call()
        message = str(e.value)
        assert "\n" not in message
        assert "apt-get install bible-kjv" in message and "`text_path`" in message
    assert lm.train.prepare is lm.prepare
    with pytest.raises(UserError, match="`text_path` .*nowhere.txt cannot be read"):
        lm.prepare(config(str(text_file) + ".nowhere.txt"))


def test_bad_options_are_one_line_before_training(text_file, tmp_path):
    with pytest.raises(UserError, match="unknown option `d_modle`"):
        lm.prepare(config(text_file, options={"d_modle": 8}))
    with pytest.raises(UserError, match="multiple of `n_heads`"):
        lm.prepare(config(text_file, options={"d_model": 10, "n_heads": 4}))
    with pytest.raises(UserError, match="`steps_per_eval` must be an integer >= 1"):
        lm.prepare(config(text_file, options={"steps_per_eval": 0}))
    with pytest.raises(UserError, match="`train_subset` .* too few for windows of 17 bytes"):
        lm.prepare(config(text_file, train_subset=16))  # --train-subset: bytes of training text
    short = tmp_path / "short.txt"
    short.write_text("x" * 200)
    with pytest.raises(UserError, match="too few for windows of 17 bytes"):
        lm.prepare(config(str(short)))


def test_an_iteration_schedule_steps_with_every_optimizer_step(text_file):
    got, applied = [], []

    def listen(built):  # the runner's hook: sees the optimizer before its first step
        got.append(built)
        built.scheduler.optimizer.register_step_pre_hook(
            lambda opt, args, kwargs: applied.append(opt.param_groups[0]["lr"]))

    one_cycle = ScheduleConfig("OneCycleLR", {"pct_start": 0.3, "div_factor": 25.0,
                                              "final_div_factor": 1e4}, lr=1e-2)
    epochs, steps = 2, 150  # 300 steps: the trace keeps every 2nd step's LR
    report = Report()
    tiny = {"d_model": 8, "n_heads": 1, "context": 8, "eval_bytes": 64, "steps_per_eval": steps}
    lm.train(config(text_file, epochs=epochs, batch_size=2, options=tiny),
             dataclasses.replace(one_cycle, listener=listen), report)
    (built,) = got
    assert (built.interval, built.steps_per_epoch, built.epochs) == ("iteration", steps, epochs)
    assert len(applied) == epochs * steps
    assert built.every == 2 and len(built.trace) == epochs * steps // built.every
    assert built.trace == applied[:: built.every]
    assert [lr for _, _, lr in report.calls] == applied[::steps]  # each interval's first step
    assert len(set(applied[:steps])) > steps // 2  # it moved within an evaluation interval
    assert max(applied) == pytest.approx(1e-2, rel=1e-3) and applied[-1] < 1e-5


def test_non_finite_loss_diverges_at_once_and_report_errors_propagate(text_file, monkeypatch):
    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    with pytest.raises(Stop):
        lm.train(config(text_file), SCHEDULE, stop)
    real = torch.nn.functional.cross_entropy
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        return out * math.nan if len(calls) == 4 else out

    monkeypatch.setattr(lm.F, "cross_entropy", poisoned)
    with pytest.raises(Diverged) as e:
        lm.train(config(text_file), SCHEDULE, Report())
    assert (e.value.epoch, e.value.step) == (0, 3) and math.isnan(e.value.loss)


@pytest.mark.skipif(shutil.which(text.KJV_PROGRAM) is None,
                    reason=f"the corpus is not installed (apt-get install {text.KJV_PACKAGE})")
def test_the_corpus_is_the_whole_king_james_bible():
    data = text.load()
    assert len(data) >= text.KJV_MIN_BYTES
    raw = bytes(data[:60].tolist())
    assert raw.startswith(b"\nGenesis 1\n\n  1 In the beginning God created")
    assert int(data.max()) < 128  # ASCII
    assert text.load() is data  # read once per process


LM_STUDY = """
trials = 3
seed = 0
[objective]
function = "objectives.lm:train"
metric = "val_loss"
direction = "minimize"
dataset = "text"
epochs = 3
batch_size = 8
optimizer = "adamw"
betas = [0.9, 0.95]
text_path = "{text}"
steps_per_eval = 12
d_model = 16
n_layers = 1
n_heads = 2
context = 16
eval_bytes = 512
[space]
families = ["WarmupStableDecay", "CosineAnnealingLR", "StepLR"]
lr = {{ low = 1e-3, high = 3e-2, log = true }}
weight_decay = 0.1
warmup_epochs = {{ low = 0.0, high = 1.0 }}
default_lr = 3e-3
enqueue_defaults = false
[pruner]
name = "none"
"""


def test_an_lm_recommendation_prints_code_that_applies_the_recorded_per_step_lrs(
        text_file, tmp_path, capsys, one_thread):
    """A language-model study run from its study file, minimising the validation loss: `best`
    names the lowest loss, and its python code applies exactly the LR the trial applied at every
    optimizer step (every family stepped per optimizer step); the Lightning and HF forms print
    the same scheduler, stepped per step."""
    import optuna
    from conftest import applied_lrs

    from search import cli

    f = tmp_path / "lm.toml"
    f.write_text(LM_STUDY.format(text=text_file))
    url = f"sqlite:///{tmp_path / 'lm.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    study = optuna.load_study(study_name="lm", storage=url)
    best = min((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    assert best.user_attrs["interval"] == "iteration"  # per optimizer step, whatever family
    capsys.readouterr()
    assert cli.main(["best", "--study", str(f), "--storage", url, "--format", "python"]) == 0
    code = capsys.readouterr().out
    assert f"val_loss {best.value:.4f}" in code
    assert applied_lrs(code, best.user_attrs["val_loss_curve"]) == pytest.approx(
        best.user_attrs["lr_trace"]["lr"], rel=1e-9)
    kwargs = best.user_attrs["scheduler_kwargs"]
    for fmt, per_step in (("lightning", '"interval": "step"'), ("hf", "max_steps=36")):
        capsys.readouterr()
        assert cli.main(["best", "--study", str(f), "--storage", url, "--format", fmt]) == 0
        out = capsys.readouterr().out
        compile(out, f"best.{fmt}", "exec")
        assert per_step in out, fmt
        assert all(repr(v) in out or str(v) in out for v in kwargs.values()
                   if isinstance(v, int) and not isinstance(v, bool)), fmt
