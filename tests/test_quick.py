"""The quick look (search/studies/quick.toml): lr-fashion's contest scaled down to minutes.

It loads as a contest whose `trials` cover its own minimum, on lr-fashion's data, net and
families; a run of it (made tiny: one epoch, a small Fashion-MNIST fixture in the real
idx format) finishes and `best` recommends from its race; and the refusal of a budget too small
for a contest names it.
"""

from __future__ import annotations

import gzip
import shlex
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pytest

from objectives.data import DATASETS
from search import answer, cli, config
from search.contest.standing import standing


def _idx(array: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return head + array.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory) -> Path:
    """A small Fashion-MNIST in the real idx.gz files: each class a brightness band."""
    root = tmp_path_factory.mktemp("fashion")
    folder = root / DATASETS["fashion_mnist"].folder
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 400), ("t10k", 100)):
        labels = np.arange(n) % 10
        images = np.clip(labels[:, None, None] * 25 + rng.normal(0, 20, (n, 28, 28)), 0, 255)
        (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return root


def test_the_quick_study_is_a_contest_that_fits_its_own_budget():
    quick, main = config.load_study("quick"), config.load_study("lr-fashion")
    assert quick.contest is not None and quick.contest.horizons == ()
    assert quick.contest.min_trials() <= quick.trials < main.trials
    assert not quick.contest.budget_problem(quick.trials)
    # lr-fashion's data, net and families, a fraction of its training
    assert (quick.train.dataset, quick.train.width, quick.space.families) == (
        main.train.dataset, main.train.width, main.space.families)
    assert quick.trials * quick.epochs * quick.train.train_subset < (
        main.trials * main.epochs * main.train.train_subset / 10)


def test_a_quick_run_finishes_and_best_recommends_from_its_race(
        tmp_path, fashion_dir, capsys, one_thread):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert cli.main(["run", "--study", "quick", "--epochs", "1", "--train-subset", "64",
                     "--data-dir", str(fashion_dir), "--storage", url]) == 0
    study = optuna.load_study(study_name="quick", storage=url)
    trials = config.load_study("quick").trials
    finished = len([t for t in study.trials if t.state.is_finished()])
    st = standing(study)  # the contest ran: tuned references and searched shapes raced
    assert finished == trials or (finished < trials and st.decided)  # budget spent, or decided
    assert st.leader is not None
    assert {c.role for c in st.state.contenders} == {"reference", "searched"}
    out = capsys.readouterr().out
    assert f"study 'quick': {finished} finished trials" in out
    assert cli.main(["best", "--study", "quick", "--storage", url]) == 0
    assert f"Study 'quick': {answer.headline(st)}" in capsys.readouterr().out


def test_a_budget_too_small_for_a_contest_names_the_quick_look(tmp_path, fashion_dir, capsys):
    db = tmp_path / "s.db"
    code = cli.main(["run", "--study", "lr-fashion", "--trials", "6", "--data-dir",
                     str(fashion_dir), "--storage", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "`--trials` must be >= 62 for a study with a [contest]" in err
    hint = err.split("or try `")[1].split("`")[0]
    assert shlex.split(hint)[:5] == ["python", "-m", "search", "run", "--study"]
    assert shlex.split(hint)[5] == "quick" and "for a few-minute look" in err
    assert not db.exists() or not sqlite3.connect(db).execute(
        "select name from sqlite_master").fetchall()
