"""The CLI end to end: a smoke study into SQLite, `best`, bad input, divergence, Ctrl-C."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from conftest import ROOT, applied_lrs, dump, run_cli

from search import answer, cli, runner
from search.config import load_study
from search.engine import claim

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory, cifar_dir):
    """A finished smoke study (6 trials) made through the real CLI."""
    cwd = tmp_path_factory.mktemp("smoke")
    r = run_cli("run", "--study", "smoke", "--data-dir", str(cifar_dir), "--trials", "6", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return cwd


def load(cwd, name="smoke"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'search.db'}")


def replay(code: str, rec: answer.Recommendation, val_losses) -> list[float]:
    """Run the printed code's optimizer and scheduler as its STEP says; LR per epoch."""
    return applied_lrs(code, val_losses)[:: rec.steps_per_epoch]


def test_run_resumes_to_the_total_and_studies_lists_it(smoke_store, cifar_dir):
    study = load(smoke_store)
    assert claim.count(study) == 6
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    # the known-good defaults were tried first
    assert [t.params["scheduler"] for t in study.trials[:2]] == ["CosineAnnealingLR",
                                                                   "OneCycleLR"]
    r = run_cli("run", "--study", "smoke", "--data-dir", str(cifar_dir), "--trials", "7",
                cwd=smoke_store)
    assert r.returncode == 0, r.stderr
    assert claim.count(load(smoke_store)) == 7  # one more, not seven more
    r = run_cli("studies", cwd=smoke_store)
    assert r.returncode == 0 and "smoke" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("smoke"))
    study = load(smoke_store)
    states = [t.state for t in study.trials]
    assert row.split()[1:3] == [str(states.count(optuna.trial.TrialState.COMPLETE)),
                                str(states.count(optuna.trial.TrialState.PRUNED))]


def test_one_headline_in_runs_end_studies_and_best(smoke_store, cifar_dir):
    """The answer is named by one function (search.answer.headline) wherever it is named: the
    last line of `run`, the row of `studies`, the first line of `best`."""
    study = load(smoke_store)
    done = run_cli("run", "--study", "smoke", "--data-dir", str(cifar_dir), "--trials", "6",
                   cwd=smoke_store)  # already holds 6: prints its summary, trains nothing
    listed = run_cli("studies", cwd=smoke_store)
    best = run_cli("best", "--study", "smoke", cwd=smoke_store)
    assert done.returncode == listed.returncode == best.returncode == 0
    trial, st = answer.recommended_trial(study)
    line = answer.headline(st, trial, load_study("smoke").goal)
    assert line.startswith(f"best trial {trial.number} ") and f"{trial.value:.4f}" in line
    assert f"; {line}: `" in done.stdout.strip().splitlines()[-1]
    row = next(r for r in listed.stdout.splitlines() if r.startswith("smoke"))
    assert row.endswith(f"  {line}")
    assert best.stdout.splitlines()[0] == f"Study 'smoke': {line}"


def test_every_trial_records_what_was_applied(smoke_store):
    for t in load(smoke_store).trials:
        a = t.user_attrs
        assert {"scheduler_kwargs", "lr_curve", "val_acc_curve", "val_loss_curve"} <= set(a)
        assert len(a["lr_curve"]) == len(a["val_acc_curve"]) == len(t.intermediate_values)
        if t.state == optuna.trial.TrialState.PRUNED:
            assert a["end_reason"] == "pruned"


def test_best_python_code_runs_and_reproduces_the_stored_lr_curve(smoke_store):
    study = load(smoke_store)
    r = run_cli("best", "--study", "smoke", "--format", "python", cwd=smoke_store)
    assert r.returncode == 0, r.stderr
    best = answer.best_trial(study)
    rec = answer.recommend(study)
    assert replay(r.stdout, rec, best.user_attrs["val_loss_curve"]) == pytest.approx(
        best.user_attrs["lr_curve"], rel=1e-6)
    # every trial's schedule, whatever its family, replays to what the optimizer applied
    for t in study.trials:
        rec = answer.from_trial("smoke", t)
        curve = t.user_attrs["lr_curve"]
        got = replay(rec.code(), rec, t.user_attrs["val_loss_curve"])
        assert got[: len(curve)] == pytest.approx(curve, rel=1e-6), t.params["scheduler"]


def test_best_text_and_json_with_rescaled_epochs(smoke_store):
    r = run_cli("best", "--study", "smoke", cwd=smoke_store)
    assert r.returncode == 0 and "Study 'smoke': best trial " in r.stdout
    assert "def make_optimizer_and_scheduler" in r.stdout
    r = run_cli("best", "--study", "smoke", "--epochs", "90", "--format", "json", cwd=smoke_store)
    out = json.loads(r.stdout)
    assert out["epochs"] == 90 and out["searched_epochs"] == 2
    assert out["family"] == load(smoke_store).best_trial.params["scheduler"]
    assert out["step"] in ("epoch", "batch", "val_loss") and "import torch" in out["code"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--study", "nope"], "unknown study 'nope'"),
        (["run", "--study", "smoke", "--trials", "0"], "--trials: must be >= 1 but got 0"),
        (["run", "--study", "smoke", "--data-dir", "/nonexistent"], "/nonexistent"),
        (["run", "--study", "smoke", "--storage", "sqlite:////no/such/dir/x.db"],
         "storage directory /no/such/dir does not exist"),
        (["run", "--study", "smoke", "--storage", "nonsense://"], "storage"),
        (["best", "--study", "never-ran"], "no study 'never-ran'"),
        (["best", "--study", "smoke", "--format", "yaml"], "--format: invalid choice"),
        (["run", "--study", "bad.toml"], "malformed TOML"),
        (["run", "--study", "range.toml"], "must be <="),
    ],
)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    smoke_store, tmp_path, capsys, args, message, cifar_dir
):
    (tmp_path / "bad.toml").write_text("trials = [1,")
    (tmp_path / "range.toml").write_text("[space]\nlr = { low = 1.0, high = 0.1 }\n")
    db = smoke_store / "search.db"
    before = dump(db)
    if "--storage" not in args:
        args = [*args, "--storage", f"sqlite:///{db}"]
    if args[0] == "run" and "--data-dir" not in args:
        args = [*args, "--data-dir", str(cifar_dir)]  # so the storage itself is what fails
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli.main(args))
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert dump(db) == before


def test_best_on_a_study_with_no_finished_trial(tmp_path, capsys):
    optuna.create_study(study_name="empty", storage="sqlite:///search.db")
    assert cli.main(["best", "--study", "empty"]) == 2
    assert "has no complete trial yet" in capsys.readouterr().err


def test_offline_cifar_stops_with_the_data_message(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli.main(["run", "--study", "lr"]))
    assert e.value.code == 2
    assert not (tmp_path / "search.db").exists() or not optuna.get_all_study_names(
        "sqlite:///search.db")


def test_huge_lr_diverges_is_pruned_with_its_reason_and_the_study_goes_on(tmp_path, cifar_dir):
    study_file = tmp_path / "wild.toml"
    study_file.write_text((ROOT / "search" / "studies" / "smoke.toml").read_text().replace(
        'families = "all"', 'families = ["Constant", "StepLR"]').replace(
        "lr = { low = 0.01, high = 0.5, log = true }", "lr = { low = 0.01, high = 1e9 }")
        + "[limits]\nlr = 1e9\n")  # past the sane LR bound, knowingly
    cfg = load_study(str(study_file))
    study = runner.create_or_load(cfg, "sqlite:///search.db")
    study.enqueue_trial({"scheduler": "Constant", "lr": 1e9})
    r = run_cli("run", "--study", str(study_file), "--data-dir", str(cifar_dir), "--trials", "3",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    trials = optuna.load_study(study_name="wild", storage="sqlite:///search.db").trials
    assert trials[0].state == optuna.trial.TrialState.PRUNED
    assert trials[0].user_attrs["end_reason"] == "non_finite_loss"
    assert "lr_curve" not in trials[0].user_attrs  # stopped inside its first epoch
    assert claim.count(optuna.load_study(study_name="wild", storage="sqlite:///search.db")) == 3


def test_ctrl_c_closes_the_running_trial_and_exits_130(tmp_path, cifar_dir):
    study_file = tmp_path / "slow.toml"
    study_file.write_text((ROOT / "search" / "studies" / "smoke.toml").read_text().replace(
        "epochs = 2", "epochs = 50"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "run", "--study", str(study_file), "--data-dir",
         str(cifar_dir)], cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    db = tmp_path / "search.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until a trial has reported an epoch
        time.sleep(0.5)
        try:
            with sqlite3.connect(db) as con:
                if con.execute("select count(*) from trial_user_attributes "
                               "where key = 'lr_curve'").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    trials = optuna.load_study(study_name="slow", storage=f"sqlite:///{db}").trials
    assert trials and all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    (stopped,) = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert stopped.user_attrs["end_reason"] == "interrupted"
    assert len(stopped.user_attrs["lr_curve"]) < 50
