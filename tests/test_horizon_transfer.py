"""benchmarks/horizon_transfer.py on any study: runs train through the study's own objective
and are compared by its goal (tests/contest_objectives.py, noise off: its error rate `val_err`,
minimised, is lowest at LR 0.1; the same runs as an accuracy, maximised, peak there too)."""

from __future__ import annotations

import json
import math

import pytest
from test_contest import study_file

from benchmarks import horizon_transfer as ht
from objectives import Diverged
from search import config
from search.schedules import ScheduleConfig
from search.stats import paired

CONSTANT = ScheduleConfig(family="Constant", lr=0.3, momentum=0.9, weight_decay=0.0)


def _cfg(tmp_path, minimise: bool):
    extra = 'metric = "val_err"\ndirection = "minimize"\nas_error = true\n' if minimise else ""
    return config.load_study(str(study_file(tmp_path, name="down" if minimise else "up",
                                            objective=extra + "noise = 0.0")))


@pytest.mark.parametrize("minimise", [True, False])
def test_the_sweep_picks_the_best_value_in_the_study_s_direction(tmp_path, minimise, capsys):
    cfg = _cfg(tmp_path, minimise)
    runs = ht.Runs(tmp_path / "runs.jsonl", cfg)
    scored = ht.sweep(runs, CONSTANT, "", 0.3, 2, 0)
    assert len(scored) == 5 and ht.best_lr(scored) == pytest.approx(0.1)  # 0.3 / sqrt(3)^2
    values = {lr: cfg.goal.value(s) for lr, s in scored.items()}
    best = (min if minimise else max)(values.values())
    assert values[ht.best_lr(scored)] == best
    assert best == pytest.approx(0.13 if minimise else 0.87)  # the objective's true quality
    lines = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert {x["metric"] for x in lines} == {cfg.goal.metric} and len(lines) == 5
    line = ht.sweep_line(cfg.goal, scored, 2, 0)
    assert line.endswith("-> 0.1") and ("val_err, lower is better" in line) == minimise
    capsys.readouterr()
    again = ht.Runs(tmp_path / "runs.jsonl", cfg)  # resumed: nothing trains again
    again._objective = lambda *_: pytest.fail("trained twice")
    assert ht.sweep(again, CONSTANT, "", 0.3, 2, 0) == scored


def test_a_diverged_run_is_the_worst_and_old_accuracy_lines_still_read(tmp_path, capsys):
    cfg = _cfg(tmp_path, minimise=True)
    runs = ht.Runs(tmp_path / "runs.jsonl", cfg)

    def diverges(*_):
        raise Diverged(0, 0, math.nan)

    runs._objective = diverges
    assert runs.score(CONSTANT, "", 2, 0, "test") == -math.inf
    assert json.loads((tmp_path / "runs.jsonl").read_text())["value"] == math.inf  # worst loss
    up = _cfg(tmp_path, minimise=False)
    old = tmp_path / "old.jsonl"
    key = ht._key(CONSTANT.to_dict(), "", 2, 0, "test")
    old.write_text(json.dumps({"key": key, "acc": 0.9, "lr": 0.3}) + "\n")
    assert ht.Runs(old, up).score(CONSTANT, "", 2, 0, "test") == 0.9
    with pytest.raises(SystemExit, match="val_acc"):  # another metric's runs are refused
        ht.Runs(old, cfg).score(CONSTANT, "", 2, 0, "test")
    capsys.readouterr()


def test_the_table_names_the_metric_and_says_lower_is_better(tmp_path):
    goal = _cfg(tmp_path, minimise=True).goal
    values = {"oracle": [0.13, 0.14, 0.12], "naive": [0.15, 0.17, 0.16],
              "law": [0.14, 0.14, 0.13]}
    test = {arm: {s: goal.score(v) for s, v in enumerate(vs)} for arm, vs in values.items()}
    arms = {"oracle": 0.1, "naive": 0.3, "law": 0.2}
    lines = ht.table(goal, arms, test, 0.1, 0.3)
    assert lines[0].startswith("| arm | LR | val_err on the test split (mean ± std; lower is "
                               "better) |")
    naive = next(x for x in lines if x.startswith("| naive"))
    assert "| 0.1600 ± 0.0100 | +0.0300 [" in naive  # its loss, 0.03 above the oracle's
    c = paired(test["law"], test["naive"])
    assert lines[-1].startswith(f"law against naive: {-c.margin:+.4f} [")
    assert "val_err, lower is better, p = " in lines[-1]
    up = _cfg(tmp_path, minimise=False).goal  # accuracy: as before, in points
    acc = {arm: {s: 1 - v for s, v in enumerate(vs)} for arm, vs in values.items()}
    lines = ht.table(up, arms, acc, 0.1, 0.3)
    assert lines[0].startswith("| arm | LR | test accuracy (mean ± std) |")
    assert "| 0.8400 ± 0.0100 | -3.00 pts [" in next(x for x in lines if x.startswith("| naive"))
    assert "lower" not in "".join(lines)
