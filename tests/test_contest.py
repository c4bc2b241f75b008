"""The contest end to end (search.contest): what the search recommends is earned on the
validation split, printed whatever its role, and survives interruption, many workers and
PostgreSQL. The objective is tests/contest_objectives.py: known true quality + seed noise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
from conftest import ROOT, applied_lrs, run_cli
from workers_support import pg_url as pg_url  # noqa: F401 (fixture)

from search import answer, cli
from search.contest.standing import standing

STUDY = """
name = "{name}"
trials = {trials}
seed = 0
[objective]
function = "tests.contest_objectives:train"
epochs = 2
{objective}
[space]
families = {families}
lr = {{ low = {low}, high = {high}, log = true }}
default_lr = {default}
[sampler]
name = "tpe"
n_startup_trials = 3
[pruner]
name = "none"
[workers]
heartbeat_interval = 1
grace_period = 3
[contest]
shape_trials = {shapes}
finalists = 2
max_seeds = 3
noise_sd = 0.003
"""


def study_file(tmp_path, name="c", trials=45, shapes=6, families='"all"', low=0.001,
               high=3.0, default=0.1, objective=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(name=name, trials=trials, shapes=shapes, families=families,
                                 low=low, high=high, default=default, objective=objective))
    return path


def finished_runs(study: optuna.Study) -> list[tuple]:
    """(stage, contender, seed) of every finished fixed run."""
    return [(t.user_attrs["stage"], t.user_attrs["contender"], t.user_attrs["seed"])
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                              optuna.trial.TrialState.PRUNED))
            if "contender" in t.user_attrs]


def test_a_tuned_reference_wins_where_the_searched_families_cannot(tmp_path, capsys):
    """Only Constant and StepLR searched (true best 0.87 and 0.88) against whole-run cosine
    (0.90): `best` recommends the reference, prints its code, and the code applies exactly
    the LRs its run applied; every format prints it."""
    f = study_file(tmp_path, families='["Constant", "StepLR"]')
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    study = optuna.load_study(study_name="c", storage=url)
    st = standing(study)
    assert st.decided and st.leader.role == "reference"
    assert st.leader.label in ("CosineAnnealingLR (whole run)", "linear to zero",
                               "OneCycleLR (standard)", "schedule-free SGD")
    # the constant reference (true 0.870 against 0.900) is clearly behind once tuned: more
    # than 3 paired noise sds (3 x 0.003 x sqrt 2) below the best reference, it takes no race
    # seat, and `best` says so with its numbers
    (label, h, gap), = st.stopped
    assert (label, h) == ("Constant", 2) and gap > 3 * 0.003 * 2**0.5
    assert "constant" not in {c.slot for c in st.state.contenders}
    assert not any(r.stage == "race" and r.slot == "constant" for r in st.state.runs)
    capsys.readouterr()
    assert cli.main(["best", "--study", str(f), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert f"stopped  : Constant at 2 epochs, {st.goal.gap(gap)} behind" in out
    assert f"Study 'c': {answer.headline(st)}" in out and st.leader.label in out
    assert "no searched shape beats the tuned references" in out
    trial = study.trials[st.leader.source_trial]
    if st.leader.optimizer:  # schedule-free: no scheduler at all
        assert "no scheduler" in out and "schedulefree." in out
    else:
        code = out[out.index('"""Learning-rate schedule'):]
        assert applied_lrs(code, trial.user_attrs["val_loss_curve"]) == pytest.approx(
            trial.user_attrs["lr_trace"]["lr"], rel=1e-9)
    for fmt in ("json", "python", "lightning", "hf"):
        capsys.readouterr()
        assert cli.main(["best", "--study", str(f), "--storage", url, "--format", fmt]) == 0
        printed = capsys.readouterr().out
        if fmt == "json":
            got = json.loads(printed)
            assert got["contest"]["recommendation"]["label"] == st.leader.label
            assert got["trial_number"] == st.leader.source_trial
            assert got["optimizer"]["lr"] == pytest.approx(st.leader.schedule["lr"])
        else:
            compile(printed, f"best.{fmt}", "exec")
            assert f"{st.leader.schedule['lr']!r}"[:6] in printed


def test_schedule_free_wins_and_prints_no_scheduler(tmp_path, capsys):
    f = study_file(tmp_path, families='["Constant"]', objective="schedulefree_quality = 0.95")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    st = standing(optuna.load_study(study_name="c", storage=url))
    assert st.leader.label == "schedule-free SGD" and st.leader.optimizer == "schedulefree"
    capsys.readouterr()
    assert cli.main(["best", "--study", str(f), "--storage", url, "--format", "python"]) == 0
    code = capsys.readouterr().out
    ns: dict = {}
    exec(compile(code, "best.py", "exec"), ns)
    import torch

    opt, sched = ns["make_optimizer_and_scheduler"]([torch.nn.Parameter(torch.zeros(1))])
    assert sched is None and type(opt).__name__ == "SGDScheduleFree"
    assert opt.defaults["lr"] == pytest.approx(st.leader.schedule["lr"])
    # the Lightning form: no scheduler; the optimizer's mode follows training and validation
    capsys.readouterr()
    assert cli.main(["best", "--study", str(f), "--storage", url, "--format", "lightning"]) == 0
    printed = capsys.readouterr().out
    assert "lr_scheduler" not in printed and "import schedulefree" in printed
    lightning = pytest.importorskip("lightning")
    ns = {}
    exec(compile(printed.replace("trainer = L.Trainer", "_ = L.Trainer"), "l.py", "exec"), ns)

    class Boring(ns["MyModule"]):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, i):
            assert self.optimizers().optimizer.param_groups[0]["train_mode"]
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, i):
            assert not self.optimizers().optimizer.param_groups[0]["train_mode"]

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)),
                                       batch_size=4)
    trainer = lightning.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Boring(), data, data)
    assert type(trainer.optimizers[0]).__name__ == "SGDScheduleFree"


def test_the_test_split_chooses_nothing(tmp_path, capsys):
    """An adversarial test split (it scores the reverse of the validation split) changes no
    choice: the recommendation before and after `validate` is the same schedule."""
    f = study_file(tmp_path, objective="test_flip = true")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    study = optuna.load_study(study_name="c", storage=url)
    before = answer.recommend(study)
    assert cli.main(["validate", "--study", str(f), "--storage", url, "--seeds", "2"]) == 0
    after = answer.recommend(study)
    assert (after.trial_number, after.label) == (before.trial_number, before.label)
    v = after.validation
    assert v is not None and v.winner is not None and v.winner.label == before.label
    # on that test split the recommendation is the worst of them: shown, not acted on
    assert v.ranked[-1].key == v.winner.key or v.winner.mean <= min(
        r.mean for r in v.ranked if r.n)
    capsys.readouterr()
    assert cli.main(["best", "--study", str(f), "--storage", url]) == 0
    assert f"Study 'c': recommended {before.label}" in capsys.readouterr().out


def test_validate_trains_exactly_the_recommendation_and_the_tuned_references(tmp_path,
                                                                              capsys):
    f = study_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    study = optuna.load_study(study_name="c", storage=url)
    st = standing(study)
    capsys.readouterr()
    assert cli.main(["validate", "--study", str(f), "--storage", url, "--seeds", "2"]) == 0
    n = 1 + sum(c.role == "reference" and c.key != st.leader.key for c in st.state.contenders)
    # its plan and time, before it starts
    assert f"validate plan: {n} schedules x 2 seeds at 2 epochs ({2 * n} runs)" in \
        capsys.readouterr().err
    comp = optuna.load_study(study_name="c.validate", storage=url)
    trained = {t.user_attrs["validate_key"]: t for t in comp.trials}
    refs = {c.key for c in st.state.contenders if c.role == "reference"}
    assert set(trained) == refs | {st.leader.key}  # nothing swept again, nothing else
    rec = answer.recommend(study)
    t = trained[st.leader.key]
    assert t.user_attrs["fixed_schedule"] == st.leader.schedule
    assert t.user_attrs["scheduler_kwargs"] == answer.recommend(
        study, int(t.user_attrs["epochs"]), int(t.user_attrs["steps_per_epoch"])).kwargs
    assert rec.validation.winner.key == st.leader.key


def test_too_small_a_budget_and_an_old_study_are_one_line(tmp_path):
    f = study_file(tmp_path)
    r = run_cli("run", "--study", str(f), "--trials", "10", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "`--trials` must be >= " in r.stderr and len(r.stderr.strip().splitlines()) == 1
    plain = tmp_path / "plain.toml"
    plain.write_text(f.read_text().split("[contest]")[0])
    assert run_cli("run", "--study", str(plain), "--trials", "2", cwd=tmp_path).returncode == 0
    r = run_cli("run", "--study", str(f), cwd=tmp_path)
    assert r.returncode == 2 and "created by a plain search" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def interrupt_run(study: str, url: str, cwd, until, how) -> None:
    """Start `run` in a subprocess, send it `how` once `until()` holds (a killed run: wait
    past the grace period, so that its trial is retried)."""
    proc = subprocess.Popen([sys.executable, "-m", "search", "run", "--study", study,
                             "--storage", url], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not until() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(how)
    proc.wait(timeout=60)
    if how == signal.SIGKILL:
        time.sleep(4)  # past the grace period (3 s in these study files)


def _race_runs(url: str) -> int:
    try:
        study = optuna.load_study(study_name="c", storage=url)
    except KeyError:
        return 0
    return sum(1 for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
               if t.user_attrs.get("stage") == "race")


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_resume_mid_race_trains_nothing_twice_and_ends_with_the_same_answer(tmp_path, how):
    slow = "sleep = 0.4"
    ref_dir, cut_dir = tmp_path / "whole", tmp_path / "cut"
    ref_dir.mkdir(), cut_dir.mkdir()
    for d in (ref_dir, cut_dir):
        study_file(d, objective=slow)
    whole = f"sqlite:///{ref_dir / 'c.db'}"
    assert run_cli("run", "--study", "c.toml", "--storage", whole, cwd=ref_dir).returncode == 0
    cut = f"sqlite:///{cut_dir / 'c.db'}"
    interrupt_run("c.toml", cut, cut_dir, lambda: _race_runs(cut) >= 2, how)  # race begun
    assert run_cli("run", "--study", "c.toml", "--storage", cut, cwd=cut_dir).returncode == 0
    a = standing(optuna.load_study(study_name="c", storage=whole))
    b = standing(optuna.load_study(study_name="c", storage=cut))
    assert b.decided and (b.leader.key, dict(b.leader.scores)) == (a.leader.key,
                                                                   dict(a.leader.scores))
    runs = finished_runs(optuna.load_study(study_name="c", storage=cut))
    assert not [r for r, n in Counter(runs).items() if n > 1]  # nothing trained twice


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_race_together(tmp_path, backend, request):
    url = (f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_url"))
    f = study_file(tmp_path, objective="sleep = 0.05")
    r = run_cli("run", "--study", str(f), "--storage", url, "--jobs", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    study = optuna.load_study(study_name="c", storage=url)
    st = standing(study)
    assert st.decided
    runs = finished_runs(study)
    assert not [x for x, n in Counter(runs).items() if n > 1]
    assert {t.state for t in study.trials} <= {optuna.trial.TrialState.COMPLETE,
                                               optuna.trial.TrialState.PRUNED,
                                               optuna.trial.TrialState.FAIL}
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                        optuna.trial.TrialState.PRUNED))) <= 45



def test_every_reader_names_the_same_winner_when_it_is_not_the_best_single_run(tmp_path,
                                                                              capsys):
    """The race's leader is not the trial with the best single score (the luckiest run):
    `best`, `studies`, the report's recommendation and every figure that names a winner name
    the leader's trial all the same."""
    from dashboards import _leaderboard, _learning_curves, _lr_curves, _lr_scores, _winner
    from dashboards import _recommendation as rec_section

    # a world (default LR 0.11) whose luckiest single run is not the leader's: checked below
    f = study_file(tmp_path, default=0.11)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    study = optuna.load_study(study_name="c", storage=url)
    st = standing(study)
    n = st.leader.source_trial
    luckiest = max(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)),
                   key=lambda t: t.value)
    assert luckiest.number != n  # a race run or a lucky shape scored higher once
    assert answer.recommend(study).trial_number == n
    assert _winner._info(study).schedules[0].val_source == f"trial {n}"
    assert _lr_curves._info(study).curves[0].number == n
    assert _leaderboard._info(study).rows[0].number == n
    assert _learning_curves._info(study).best.number == n
    assert _lr_scores._info(study).recommended[2] == st.leader.label
    assert rec_section._info(study).trial_number == n
    capsys.readouterr()
    assert cli.main(["studies", "--storage", url]) == 0
    assert st.leader.label in capsys.readouterr().out


def test_an_edge_within_noise_of_its_neighbour_is_not_gone_past_nor_called_untuned():
    """At a longer horizon a grid goes past its best edge only where that edge beats its
    neighbour by more than a paired difference's noise; such an edge is then no sign of an
    untuned LR (the standing's `not tuned` line means the study's LR range stopped the grid)."""
    from search.contest.contenders import at_edge, edge_margin, next_lrs

    m = edge_margin(0.004, 1)
    assert edge_margin(0.004, 0) == 0.0 and m == pytest.approx(1.645 * 0.004 * 2**0.5)
    close = {0.1: 0.900, 0.3: 0.905, 0.9: 0.9052}  # best on the high edge by 0.0002
    steps, keep = (-1, 0, 1), (lambda lr: lr)
    assert at_edge(close) == "high" and at_edge(close, m) == ""
    assert next_lrs(close, 0.3, keep, steps, steps, 3.0, m) == ()
    assert next_lrs(close, 0.3, keep, steps, steps, 3.0, 0.0) == (2,)
    clear = {**close, 0.9: 0.93}
    assert at_edge(clear, m) == "high" and next_lrs(clear, 0.3, keep, steps, steps, 3.0, m) == (2,)
