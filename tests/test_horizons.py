"""Horizons end to end: a contest tunes its references' LRs as whole runs at each horizon, fits
each one's LR law, and carries the recommendation to another length: what `best --epochs N`
prints (every format) is the law's LR as its JSON computes it, and `validate --epochs N`
trains exactly that. The objective (tests/contest_objectives.py) has a known law: the best LR
falls as (epochs / 2) ** -lr_beta."""

from __future__ import annotations

import json
import signal
from collections import Counter

import optuna
import pytest
import torch
from conftest import run_cli
from test_contest import interrupt_run, study_file

from dashboards import _lr_law, _lr_scores
from search import cli
from search.contest import stopping
from search.contest.standing import standing

BETA = 0.5


def horizon_file(tmp_path, horizons="[1, 2, 4]", objective=f"lr_beta = {BETA}\nnoise = 0.001",
                 trials=70, name="c"):
    f = study_file(tmp_path, name=name, trials=trials, objective=objective)
    text = f.read_text().replace("epochs = 2\n", "epochs = 4\n")
    f.write_text(text + (f"horizons = {horizons}\n" if horizons else ""))
    return f


def fixed_runs(study: optuna.Study) -> list[tuple]:
    """(stage, contender, seed, epochs) of every finished fixed run."""
    return [(t.user_attrs["stage"], t.user_attrs["contender"], t.user_attrs["seed"],
             t.user_attrs["epochs"])
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,
                                              optuna.trial.TrialState.PRUNED))
            if "contender" in t.user_attrs]


def _best(capsys, *args: str) -> str:
    capsys.readouterr()
    assert cli.main(["best", *args]) == 0
    return capsys.readouterr().out


def test_the_law_carries_the_recommendation_to_another_length(tmp_path, capsys):
    f = horizon_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    study = optuna.load_study(study_name="c", storage=url)
    st = standing(study)
    # every reference run is a whole run of its horizon: the schedule resolved for that length
    for t in study.trials:
        if t.user_attrs.get("stage") == "reference":
            e = t.user_attrs["epochs"]
            assert e in (1, 2, 4) and len(t.user_attrs["val_acc_curve"]) == e
            assert t.user_attrs["scheduler_kwargs"].get("T_max", e) in (e, e * 4)
    assert {h for g in st.state.ladder.values() for h in g} == {1, 2, 4}
    # at the longest horizon shorter than the search's (2 of 4 epochs) a reference more than
    # Z_SHORTER paired noise sds behind the leader is stopped there, with its numbers, and
    # never raced; every other reference is tuned at every horizon
    h, z = stopping.stop_at((1, 2, 4))
    bests = {slot: g[h].best.score for slot, g in st.state.ladder.items() if h in g}
    gone = {k: v for k, v in stopping.behind(bests, 0.003, z).items() if k != "cosine"}
    assert dict(st.state.behind) == gone
    assert sorted(st.stopped) == sorted((st.state.ladder[k][h].label, h, v)
                                        for k, v in gone.items())
    assert all(set(g) == ({1, 2} if slot in gone else {1, 2, 4})
               for slot, g in st.state.ladder.items())
    assert not gone.keys() & {c.slot for c in st.state.contenders}
    cosine = st.laws["cosine"]
    assert cosine.horizons == (1, 2, 4) and cosine.beta_low < BETA < cosine.beta_high
    assert not cosine.flat
    stored = study.user_attrs["lr_law"][cosine.label]  # with the study, for its dashboard
    assert stored == cosine.fields()
    lead = st.leader
    assert lead.role == "reference" and lead.slot in st.laws
    # the report draws each law, the recommendation's marked; the LR-score figure keeps to
    # the search's length (a shorter horizon's grid is not the same contest)
    drawn = _lr_law._info(study)
    assert {x.slot for x in drawn.laws} == set(st.laws) and drawn.recommended == lead.slot
    assert len(_lr_law._plot(drawn).data) == 2 * len(st.laws)
    grid_points = {(g.name, lr) for g in _lr_scores._info(study).groups if g.kind == "reference"
                   for lr in g.lrs}
    assert grid_points == {(g.label, lr) for g in st.state.grids.values() for lr in g.scored}

    # best --epochs 16: the law's LR, the same number in every format
    got = json.loads(_best(capsys, "--study", str(f), "--storage", url, "--epochs", "16",
                           "--format", "json"))
    move = got["lr_transfer"]
    law = st.laws[lead.slot]
    assert move["lr"] == law.lr_at(16) and move["fit"]["beta"] == law.beta
    assert move["searched_lr"] == lead.schedule["lr"] and move["searched_epochs"] == 4
    assert got["optimizer"]["lr"] == move["lr"]
    text = _best(capsys, "--study", str(f), "--storage", url, "--epochs", "16")
    assert f"LR {move['lr']:.4g} at 16 epochs" in text and "beta" in text
    code = _best(capsys, "--study", str(f), "--storage", url, "--epochs", "16", "--format",
                 "python")
    ns: dict = {}
    exec(compile(code, "best.py", "exec"), ns)
    opt, _ = ns["make_optimizer_and_scheduler"]([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["lr"] == move["lr"] and ns["EPOCHS"] == 16
    for fmt in ("lightning", "hf"):
        printed = _best(capsys, "--study", str(f), "--storage", url, "--epochs", "16",
                        "--format", fmt)
        compile(printed, f"best.{fmt}", "exec")
        assert repr(move["lr"]) in printed
    kept = json.loads(_best(capsys, "--study", str(f), "--storage", url, "--epochs", "16",
                            "--keep-lr", "--format", "json"))
    assert kept["optimizer"]["lr"] == lead.schedule["lr"] and kept["lr_transfer"]["kept"]
    same = json.loads(_best(capsys, "--study", str(f), "--storage", url, "--format", "json"))
    assert same["optimizer"]["lr"] == lead.schedule["lr"]  # as searched: the LR that raced

    # validate --epochs 16 trains exactly what best --epochs 16 prints
    assert cli.main(["validate", "--study", str(f), "--storage", url, "--seeds", "1",
                     "--epochs", "16"]) == 0
    comp = optuna.load_study(study_name="c.validate", storage=url)
    mine = [t for t in comp.trials if t.user_attrs.get("source_trial") == lead.source_trial]
    assert mine and all(t.user_attrs["fixed_schedule"]["lr"] == move["lr"] for t in mine)
    assert all(t.user_attrs["optimizer"]["lr"] == move["lr"] for t in mine)
    assert all(t.user_attrs["epochs"] == 16 for t in comp.trials)
    for c in st.state.contenders:  # every baseline at its own law's LR
        if c.role == "reference":
            want = st.transfer(c, 16).lr
            assert any(t.user_attrs["fixed_schedule"]["lr"] == want for t in comp.trials)
    # naive transfer validated beside it: each `best` reads its own runs, never a mix
    assert cli.main(["validate", "--study", str(f), "--storage", url, "--seeds", "1",
                     "--epochs", "16", "--keep-lr"]) == 0
    for flags, lr in (([], move["lr"]), (["--keep-lr"], lead.schedule["lr"])):
        shown = json.loads(_best(capsys, "--study", str(f), "--storage", url, "--epochs", "16",
                                 "--format", "json", *flags))
        assert shown["validated"] and shown["validation_epochs"] == 16
        top = [r for r in shown["ranking"] if "recommended" in r["roles"]]
        assert [r["lr"] for r in top] == [lr]


def test_without_horizons_the_lr_is_as_searched_and_says_so(tmp_path, capsys):
    f = horizon_file(tmp_path, horizons="", objective="noise = 0.001")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli.main(["run", "--study", str(f), "--storage", url, "--trials", "45"]) == 0
    st = standing(optuna.load_study(study_name="c", storage=url))
    assert st.laws == {} and st.state.settings.lengths == (4,)
    text = _best(capsys, "--study", str(f), "--storage", url, "--epochs", "16")
    assert "LR law   : not measured across lengths" in text
    got = json.loads(_best(capsys, "--study", str(f), "--storage", url, "--epochs", "16",
                           "--format", "json"))
    assert got["optimizer"]["lr"] == st.leader.schedule["lr"]
    assert got["lr_transfer"]["measured"] is False
    assert "one length only" in _lr_law._info(
        optuna.load_study(study_name="c", storage=url)).reason


def test_bad_horizons_are_one_line(tmp_path):
    for bad in ("[1, 2, 8]", "[2, 1, 4]", "[0, 4]", '["2", 4]'):
        f = horizon_file(tmp_path, horizons=bad, name="bad")
        r = run_cli("run", "--study", str(f), cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, bad
        assert "contest.horizons" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _reference_runs(url: str, epochs: int) -> int:
    try:
        study = optuna.load_study(study_name="c", storage=url)
    except KeyError:
        return 0
    return sum(1 for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
               if t.user_attrs.get("stage") == "reference" and t.user_attrs["epochs"] == epochs)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_resume_mid_horizon_trains_nothing_twice(tmp_path, how):
    f = horizon_file(tmp_path, objective=f"lr_beta = {BETA}\nnoise = 0.001\nsleep = 0.3")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    interrupt_run(str(f), url, tmp_path, lambda: _reference_runs(url, 2) >= 2, how)  # mid 2
    assert run_cli("run", "--study", str(f), "--storage", url, cwd=tmp_path).returncode == 0
    study = optuna.load_study(study_name="c", storage=url)
    st = standing(study)
    assert st.decided and st.laws["cosine"].horizons == (1, 2, 4)
    runs = fixed_runs(study)
    assert not [r for r, n in Counter(runs).items() if n > 1]  # nothing trained twice
