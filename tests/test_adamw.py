"""AdamW as the study's optimizer: the setting, the study's identity, what every trial records,
`best` in every format, and `validate` with the schedule-free AdamW baseline."""

from __future__ import annotations

import importlib.util
import json
import re

import optuna
import pytest
import torch
from conftest import dump
from optuna.trial import TrialState

from objectives.classify import TrainConfig, make_optimizer, optimizer_record
from search import answer, cli, runner, schedules
from search.config import load_study
from search.errors import UserError
from search.progress import lr_text

ADAMW = """
name = "tiny"
trials = 3
[objective]
dataset = "cifar10"
epochs = 2
batch_size = 64
width = [8, 8, 8]
train_subset = 256
val_fraction = 0.25
optimizer = "adamw"
betas = [0.85, 0.99]
eps = 1e-7
[space]
families = ["Constant", "CosineAnnealingLR", "OneCycleLR", "StepLR"]
lr = { low = 1e-4, high = 1e-2, log = true }
weight_decay = { low = 0.01, high = 0.1, log = true }
default_lr = 3e-3
[sampler]
name = "random"
[pruner]
name = "none"
"""


def _write(tmp_path, text: str, name: str = "adamw.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_adamw_is_built_and_recorded_as_torch_received_it():
    s = schedules.ScheduleConfig("Constant", lr=3e-3, weight_decay=0.05)
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))],
                         TrainConfig(optimizer="adamw", betas=(0.85, 0.99), eps=1e-7), s, 10)
    assert type(opt) is torch.optim.AdamW
    rec = optimizer_record(opt)
    assert rec["name"] == "AdamW"
    assert (rec["lr"], rec["betas"], rec["eps"], rec["weight_decay"]) == (3e-3, [0.85, 0.99],
                                                                          1e-7, 0.05)
    assert "momentum" not in rec and json.loads(json.dumps(rec)) == rec
    sgd = optimizer_record(make_optimizer([torch.nn.Parameter(torch.zeros(1))], TrainConfig(),
                                          s, 10))
    assert (sgd["name"], sgd["momentum"], sgd["nesterov"]) == ("SGD", 0.9, True)


@pytest.mark.parametrize("line,message", [
    ('optimizer = "adam"', '`objective.optimizer` must be "sgd" or "adamw"'),
    ('optimizer = "schedulefree"', '`objective.optimizer` must be "sgd" or "adamw"'),
    ("betas = [0.9]", "`objective.betas` must be two numbers in [0, 1)"),
    ("betas = [0.9, 1.0]", "`objective.betas` must be two numbers in [0, 1)"),
    ("eps = 0", "`objective.eps` must be a number in (0, 1)"),
])
def test_bad_optimizer_settings_name_the_key(tmp_path, line, message):
    text = ADAMW.replace('optimizer = "adamw"\nbetas = [0.85, 0.99]\neps = 1e-7', line)
    with pytest.raises(UserError, match=re.escape(f"adamw.toml: {message}")):
        load_study(_write(tmp_path, text))


def test_identity_refuses_resuming_an_sgd_study_as_adamw(tmp_path, capsys, cifar_dir):
    store = f"sqlite:///{tmp_path / 'search.db'}"
    sgd = load_study(_write(tmp_path, ADAMW.replace('optimizer = "adamw"\n', ""), "sgd.toml"))
    runner.create_or_load(sgd, store)
    adamw = load_study(_write(tmp_path, ADAMW))
    with pytest.raises(UserError, match="already exists with optimizer = 'sgd'"):
        runner.create_or_load(adamw, store)
    runner.create_or_load(sgd, store)  # the same file resumes
    other_betas = load_study(_write(tmp_path, ADAMW.replace("0.85", "0.8"), "b.toml"))
    store2 = f"sqlite:///{tmp_path / 'other.db'}"
    runner.create_or_load(adamw, store2)
    with pytest.raises(UserError, match="already exists with betas = "):
        runner.create_or_load(other_betas, store2)  # betas are part of the identity too
    before = dump(tmp_path / "search.db")
    assert cli.main(["run", "--study", str(tmp_path / "adamw.toml"), "--storage", store,
                     "--data-dir", str(cifar_dir)]) == 2
    err = capsys.readouterr().err
    assert dump(tmp_path / "search.db") == before
    assert err.startswith("error: study 'tiny' already exists") and err.count("\n") == 1


def test_adamw_study_end_to_end(tmp_path, cifar_dir, capsys, one_thread):
    study_file = _write(tmp_path, ADAMW)
    data = ["--data-dir", str(cifar_dir)]
    assert cli.main(["run", "--study", study_file, *data]) == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///search.db")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for t in done:  # exactly what torch.optim.AdamW received
        o = t.user_attrs["optimizer"]
        assert o["name"] == "AdamW" and o["betas"] == [0.85, 0.99] and o["eps"] == 1e-7
        assert o["lr"] == pytest.approx(t.params.get("lr", 3e-3), rel=1e-12)
        assert o["weight_decay"] == t.params["weight_decay"]
        assert "momentum" not in o
    best = answer.best_trial(study)
    lr = best.user_attrs["optimizer"]["lr"]

    def best_in(fmt: str) -> str:
        capsys.readouterr()
        assert cli.main(["best", "--study", study_file, "--format", fmt]) == 0
        return capsys.readouterr().out

    # the text rounds the LR for people; the code (every format below) keeps it exact
    assert f"optimizer        : AdamW lr={lr_text(lr)} betas=(0.85, 0.99)" in best_in("text")
    for fmt in ("python", "lightning"):
        assert f"torch.optim.AdamW(params, lr={schedules.lit(lr)}, betas=(0.85, 0.99)" in \
            best_in(fmt)
    hf = best_in("hf")
    assert ('optim="adamw_torch"' in hf and "adam_beta1=0.85" in hf) or \
        "torch.optim.AdamW(params" in hf
    capsys.readouterr()  # 10 batches an epoch, 4 per optimizer step: 3 optimizer steps
    assert cli.main(["best", "--study", study_file, "--format", "hf", "--epochs", "3",
                     "--steps-per-epoch", "10", "--grad-accum", "4"]) == 0
    hf = capsys.readouterr().out
    assert "max_steps=9," in hf and "gradient_accumulation_steps=4," in hf
    assert "3 epochs x 3 optimizer steps" in hf
    out = json.loads(best_in("json"))
    assert out["optimizer"]["name"] == "AdamW"
    assert out["frameworks"]["optimizer"]["class"] == "torch.optim.AdamW"

    # validate: candidates train with AdamW, the no-schedule baseline is schedule-free AdamW
    assert cli.main(["validate", "--study", study_file, "--top", "1", "--seeds", "1",
                     *data]) == 0
    comp = optuna.load_study(study_name="tiny.validate", storage="sqlite:///search.db")
    names = {t.user_attrs["label"]: t.user_attrs["optimizer"]["name"]
             for t in comp.get_trials(states=(TrialState.COMPLETE,))}  # LR sweeps included
    free = importlib.util.find_spec("schedulefree") is not None
    assert len(names) == 1 + 4 + free  # constant, cosine, one-cycle, linear to zero
    assert names.pop("schedule-free AdamW", "AdamWScheduleFree") == "AdamWScheduleFree"
    assert set(names.values()) == {"AdamW"}


def test_fused_arrays_train_sgd_only(tmp_path):
    from search.engine import array

    adamw = load_study(_write(tmp_path, ADAMW))
    with pytest.raises(UserError, match="`--array` trains SGD only"):
        array.array_size(adamw, 3)
    assert array.array_size(adamw) is None  # the sequential engine, even on a GPU


SEARCHED_BETAS = ADAMW.replace(
    "default_lr = 3e-3", "default_lr = 3e-3\nbeta1 = { low = 0.8, high = 0.95 }\nbeta2 = 0.995",
).replace("trials = 3", "trials = 4")


def test_searched_betas_reach_torch_the_record_and_every_export(tmp_path, cifar_dir, capsys,
                                                                 one_thread):
    study_file = _write(tmp_path, SEARCHED_BETAS)
    assert cli.main(["run", "--study", study_file, "--data-dir", str(cifar_dir)]) == 0
    study = optuna.load_study(study_name="tiny", storage="sqlite:///search.db")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4
    drawn = set()
    for t in done:  # the drawn beta1 and the fixed beta2 are what torch.optim.AdamW received
        assert t.user_attrs["optimizer"]["betas"] == [t.params["beta1"], 0.995]
        assert schedules.recorded(t).beta1 == t.params["beta1"]
        if not t.user_attrs.get("default"):
            drawn.add(t.params["beta1"])
    defaults = [t for t in done if t.user_attrs.get("default")]
    assert len(defaults) == 2 and all(t.params["beta1"] == 0.9 for t in defaults)  # standard
    assert len(drawn) == 2 and all(0.8 <= b <= 0.95 for b in drawn) and 0.9 not in drawn
    best = answer.best_trial(study)
    b1 = schedules.lit(best.params["beta1"])
    capsys.readouterr()
    assert cli.main(["best", "--study", study_file, "--format", "python"]) == 0
    assert f"betas=({b1}, 0.995)" in capsys.readouterr().out
    assert cli.main(["best", "--study", study_file, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["optimizer"]["betas"] == [
        best.params["beta1"], 0.995]
    # validate: candidates keep their drawn betas, baselines take the standard ones in range
    from search.validation import plan

    p = plan.plan(load_study(study_file), study, top=1)
    (cand,) = [j for j in p.jobs if "candidate" in j.roles]
    assert cand.schedule.beta1 == best.params["beta1"]
    assert (p.knobs["beta1"], p.knobs["beta2"]) == (0.9, 0.995)
    base = [b.schedule(1e-3, p.knobs) for b in p.sweeps]  # 4 trials: every LR is swept
    assert base and all((s.beta1, s.beta2) == (0.9, 0.995) for s in base)


def test_searched_betas_need_adamw(tmp_path):
    text = SEARCHED_BETAS.replace('optimizer = "adamw"\n', "")
    with pytest.raises(UserError, match=re.escape(
            'adamw.toml: `space.beta1` must be set with `objective.optimizer = "adamw"` only')):
        load_study(_write(tmp_path, text))
    s = schedules.ScheduleConfig("Constant", beta1=0.85)
    assert schedules.ScheduleConfig.from_dict(s.to_dict()) == s
    assert "beta1" not in schedules.ScheduleConfig("Constant").to_dict()
