"""What a user's objective declares (objectives/__init__.py): `fit.holdout = True` (it scores
the split `cfg.holdout` names, else `validate` refuses it in one line, nothing stored) and
`fit.options = (...)` (the [objective] options it reads: other keys are refused when the
study file is loaded, with a did-you-mean; without it, any key reaches `cfg.options`). The
adapters declare both, their option checks and the declaration one list."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import optuna
import pytest
from conftest import ROOT, dump, run_cli

from objectives import hf, lightning
from objectives.settings import TrainConfig
from search import cli, config, record
from search.errors import UserError

# A plain loop in a few lines: its accuracy peaks at lr 0.1, lower on the test split, so
# scores on the two splits differ. Every call is logged (split and options) to calls.jsonl.
FIT = '''
import json
import math

import torch


def fit(cfg, schedule, report):
    with open("calls.jsonl", "a") as f:
        f.write(json.dumps({"holdout": cfg.holdout, "options": dict(cfg.options)}) + "\\n")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=schedule.lr)
    built = schedule.build(opt, 2, cfg.epochs)
    scale = 0.9 if cfg.holdout == "test" else 1.0
    for epoch in range(cfg.epochs):
        for _ in range(2):
            opt.step()
            built.after_batch()
        loss = 0.1 + abs(math.log10(schedule.lr / 0.1)) + 1 / (epoch + 2)
        built.after_epoch(loss)
        report(epoch, {"val_loss": loss, "val_acc": scale / (1 + loss)})
'''

STUDY = """
name = "plain"
trials = 4
seed = 0
[objective]
function = "myfit:fit"
epochs = 2
{options}
[space]
families = ["StepLR", "CosineAnnealingLR"]
lr = {{ low = 0.01, high = 1.0, log = true }}
enqueue_defaults = false
[sampler]
name = "random"
[pruner]
name = "none"
"""


def _write(where, fit: str = FIT, options: str = "") -> None:
    (where / "myfit.py").write_text(fit)
    (where / "s.toml").write_text(STUDY.format(options=options))


def _cli(where, *args: str):
    return run_cli(*args, "--study", "s.toml", cwd=where,
                   env={"PYTHONPATH": f"{ROOT}{os.pathsep}{where}"})


def _calls(where) -> list[dict]:
    path = where / "calls.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def _one_line_refusal(out) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def _module(tmp_path, monkeypatch, name: str, source: str) -> str:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{name}.py").write_text(source)
    importlib.invalidate_caches()
    monkeypatch.setitem(sys.modules, name, None)  # forgotten again after the test
    del sys.modules[name]  # imported afresh from this source
    return f"{name}:fit"


def _load(tmp_path, spec: str, options: str):
    (tmp_path / "s.toml").write_text(
        STUDY.format(options=options).replace('"myfit:fit"', f'"{spec}"'))
    return config.load_study(str(tmp_path / "s.toml"))


# -- the holdout ---------------------------------------------------------------------------


def test_validate_refuses_an_undeclared_holdout_and_validates_once_it_is_declared(
        tmp_path, monkeypatch):
    _write(tmp_path, options="hidden = 3")  # a free-form option: fit declares no options
    _module(tmp_path, monkeypatch, "myfit", FIT)
    assert cli.main(["run", "--study", "s.toml"]) == 0  # the search, in this process
    searched = _calls(tmp_path)
    assert len(searched) == 4 and {c["holdout"] for c in searched} == {"val"}
    assert all(c["options"] == {"hidden": 3} for c in searched)
    db = tmp_path / "search.db"
    before = dump(db)

    line = _one_line_refusal(_cli(tmp_path, "validate", "--top", "1", "--seeds", "1"))
    assert "'myfit:fit' does not say that it reads `cfg.holdout`" in line
    assert "fit.holdout = True" in line
    assert dump(db) == before  # nothing stored: no companion study
    assert optuna.get_all_study_names(f"sqlite:///{db}") == ["plain"]
    assert _calls(tmp_path) == searched  # nothing trained

    # as the line says: fit scores cfg.holdout's split already; declare it
    (tmp_path / "myfit.py").write_text(FIT + "\nfit.holdout = True\n")
    out = _cli(tmp_path, "validate", "--top", "1", "--seeds", "1")
    assert out.returncode == 0, out.stderr
    comp = optuna.load_study(study_name="plain.validate", storage=f"sqlite:///{db}")
    done = comp.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    tested = [t for t in done if record.of(t).holdout == "test"]
    assert tested  # the candidate and the baselines, scored on the test split
    trained = _calls(tmp_path)[len(searched):]
    assert len(trained) == len(done)
    assert sum(c["holdout"] == "test" for c in trained) == len(tested)
    for t in done:  # each run's value is its own split's: fit scales the test split by 0.9
        scale = 0.9 if record.of(t).holdout == "test" else 1.0
        loss = record.of(t).metric_curve("val_loss")[-1]
        assert t.value == pytest.approx(scale / (1 + loss), rel=1e-12)


def test_a_holdout_declared_as_anything_but_true_is_one_line(tmp_path, monkeypatch):
    spec = _module(tmp_path, monkeypatch, "fit_says_test", FIT + '\nfit.holdout = "test"\n')
    with pytest.raises(UserError) as e:
        config.check_holdout(_load(tmp_path, spec, ""))
    assert str(e.value).startswith("`fit.holdout` must be True") and "but got 'test'" in str(
        e.value)


def test_the_built_in_objective_and_the_adapters_declare_the_holdout(tmp_path):
    for spec in (config.DEFAULT_OBJECTIVE, "objectives.lightning:train", "objectives.hf:train"):
        assert config.load_objective(spec).holdout is True


# -- options --------------------------------------------------------------------------------


def test_an_unknown_option_of_a_declaring_objective_is_refused_with_a_guess(tmp_path,
                                                                          monkeypatch):
    _write(tmp_path, fit=FIT + '\nfit.options = ("hidden",)\n', options="batchsize = 64")
    line = _one_line_refusal(_cli(tmp_path, "run"))
    assert "unknown key `objective.batchsize`; did you mean `objective.batch_size`?" in line
    assert "hidden" in line.split("valid keys:")[1]  # the declared options are valid keys
    assert "`fit.options` declares" in line
    assert not (tmp_path / "search.db").exists() and _calls(tmp_path) == []
    # the same in this process: a typo of a declared option has the option as its guess
    spec = _module(tmp_path, monkeypatch, "myfit", FIT + '\nfit.options = ("hidden",)\n')
    with pytest.raises(UserError, match=r"unknown key `objective.hiden`; did you mean "
                                        r"`objective.hidden`\?"):
        _load(tmp_path, spec, "hiden = 3")
    # the declared option itself reaches fit
    _load(tmp_path, spec, "hidden = 3")
    assert cli.main(["run", "--study", "s.toml"]) == 0
    assert [c["options"] for c in _calls(tmp_path)] == [{"hidden": 3}] * 4


def test_an_objective_declaring_nothing_keeps_free_form_options(tmp_path, monkeypatch):
    spec = _module(tmp_path, monkeypatch, "free_fit", FIT)
    cfg = _load(tmp_path, spec, 'batchsize = 64\nwhatever = { a = 1 }')
    assert dict(cfg.train.options) == {"batchsize": 64, "whatever": {"a": 1}}
    assert cfg.train.batch_size == TrainConfig.batch_size  # as before: the typo is its own
    assert config.declared_options(spec) is None


@pytest.mark.parametrize("n, declared, says", [
    (0, '"hidden"', "`fit.options` must be a tuple of the option names it reads from cfg.options "
                 "but got 'hidden'"),
    (1, '{"hidden": 3}', "must be a tuple of the option names"),
    (2, '("hidden", "batch_size")', "`fit.options` must be option names other than the "
                                 "TrainConfig settings but got 'batch_size'"),
])
def test_a_malformed_declaration_is_one_line_at_load(tmp_path, monkeypatch, n, declared, says):
    spec = _module(tmp_path, monkeypatch, f"bad_fit_{n}", FIT + f"\nfit.options = {declared}\n")
    with pytest.raises(UserError) as e:
        _load(tmp_path, spec, "hidden = 3")
    assert says in str(e.value) and "\n" not in str(e.value)


# -- the adapters: one list -------------------------------------------------------------------


def _refused_as_unknown(check, unknown: str, key: str) -> bool:
    """Whether the adapter's own option check refuses `key` as an option it does not have."""
    try:
        check(TrainConfig(options={key: "x"}))
    except UserError as e:
        return unknown.format(key=key) in str(e)
    return False


@pytest.mark.parametrize("adapter, check, unknown", [
    (lightning, lightning._options, "unknown key `objective.{key}`"),
    (hf, hf.options, "`objective.{key}` is not an option of"),
], ids=["lightning", "hf"])
def test_an_adapters_declaration_is_what_its_check_accepts(tmp_path, adapter, check, unknown):
    spec = f"{adapter.__name__}:train"
    declared = config.declared_options(spec)
    assert declared == tuple(adapter.train.options) and adapter.train.options is adapter.OPTIONS
    typos = {k[:-1] for k in declared} | {k + "s" for k in declared} | {"hidden", "batchsize"}
    accepted = {k for k in set(declared) | typos if not _refused_as_unknown(check, unknown, k)}
    assert accepted == set(declared)
    # and at load time, through the study file: a typo of the first option has its guess
    first = declared[0]
    (tmp_path / "s.toml").write_text(
        STUDY.format(options=f'{first[:-1]} = "x"').replace('"myfit:fit"', f'"{spec}"'))
    with pytest.raises(UserError) as e:
        config.load_study(str(tmp_path / "s.toml"))
    assert f"unknown key `objective.{first[:-1]}`; did you mean `objective.{first}`?" in str(
        e.value)


def test_loading_an_adapters_study_imports_no_framework(tmp_path):
    (tmp_path / "s.toml").write_text(STUDY.format(options=textwrap.dedent('''
        module = "m:Net"
        datamodule = "m:Data"
        ''')).replace('"myfit:fit"', '"objectives.lightning:train"'))
    (tmp_path / "h.toml").write_text(STUDY.format(options='trainer = "m:make"').replace(
        '"myfit:fit"', '"objectives.hf:train"'))
    code = ("import sys; from search.config import load_study; "
            "[load_study(p) for p in ('s.toml', 'h.toml')]; "
            "print(sorted({'lightning', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
