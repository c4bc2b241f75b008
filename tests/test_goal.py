"""Any metric, either direction (search.goal): the sign lives in one place, `report` takes a
mapping of metrics, and every reader follows the study's goal.

The mirror test: a study maximising an accuracy and a study minimising the error rate
1 - accuracy over the same runs (tests/contest_objectives.py with `as_error`) must train the
same trials and name the same winner in every reader, with the values mirrored.
"""

from __future__ import annotations

import json
import math
import textwrap

import optuna
import pytest
from conftest import applied_lrs, run_cli
from test_contest import study_file

from search import answer, cli, record, runner
from search.answer.fields import validation_fields
from search.contest.standing import standing
from search.errors import UserError
from search.goal import DEFAULT, Goal


@pytest.mark.parametrize("goal", [Goal(), Goal("val_loss", "minimize"), Goal("bleu")])
@pytest.mark.parametrize("value", [0.0, 0.25, -3.5, 1e6])
def test_score_and_value_are_inverse_and_higher_scores_are_better(goal, value):
    assert goal.value(goal.score(value)) == value
    better = value + 1 if goal.maximize else value - 1
    assert goal.score(better) > goal.score(value)


def test_a_study_without_a_recorded_goal_maximises_accuracy():
    assert Goal.of({}) == DEFAULT == Goal("val_acc", "maximize")
    ident = {record.Study.IDENTITY: {"metric": "val_loss", "direction": "minimize"}}
    assert Goal.of(ident) == Goal("val_loss", "minimize")
    assert Goal().name() == "validation accuracy" and Goal().name("test") == "test accuracy"
    assert Goal("val_loss", "minimize").name("test") == "val_loss on the test split"


@pytest.fixture
def trial():
    study = optuna.create_study(direction="minimize")
    return study, study.ask()


def test_the_mapping_form_records_every_metric_and_the_study_metric_is_the_value(trial):
    study, t = trial
    rec = runner.Recorder(t, metric="val_loss")
    rec(0, {"val_loss": 2.0, "val_acc": 0.25, "bleu": 3.0}, lr=0.1)
    rec(1, {"val_loss": 1.5, "val_acc": 0.5}, lr=0.05)
    r = record.of(t)
    assert r.metric_curve("val_loss") == [2.0, 1.5] and r.metric_curve("bleu") == [3.0, None]
    assert r.curve(record.LR_CURVE) == [0.1, 0.05]
    assert study.get_trials()[0].intermediate_values == {1: 2.0, 2: 1.5}
    assert record.epochs_trained(t) == 2


def test_the_positional_form_keeps_working(trial):
    _, t = trial
    rec = runner.Recorder(t)
    rec(0, 1.2, 0.6, 0.1)
    assert record.of(t).val_acc_curve == [0.6] and record.of(t).metric_curve("val_loss") == [1.2]


def test_a_metric_never_reported_is_one_line_naming_those_reported(trial):
    _, t = trial
    with pytest.raises(UserError) as e:
        runner.Recorder(t, metric="val_los")(0, {"val_loss": 1.0, "val_acc": 0.5})
    assert "val_acc, val_loss" in str(e.value) and "'val_los'" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("args, kwargs", [
    ((0.5,), {}), ((0.5, 0.6), {}), (({"val_loss": "x"},), {}), (({"val_loss": 1.0},),
                                                                 {"learning_rate": 0.1}),
    ((1.0, 0.5, 0.1, 0.2), {}), (({"val_loss": 1.0}, 0.1), {"lr": 0.1}),
])
def test_report_called_wrongly_is_one_line_naming_both_forms(trial, args, kwargs):
    _, t = trial
    with pytest.raises(UserError) as e:
        runner.Recorder(t, metric="val_loss")(0, *args, **kwargs)
    msg = str(e.value)
    assert all(form in msg for form in runner.REPORT_FORMS) and "\n" not in msg


def test_a_non_finite_metric_ends_the_trial_as_diverged(trial):
    from objectives import Diverged

    _, t = trial
    with pytest.raises(Diverged):
        runner.Recorder(t, metric="bleu")(0, {"bleu": math.nan})


def test_left_out_the_lr_is_the_one_the_epochs_first_step_applied(trial):
    import torch

    from search import schedules

    _, t = trial
    rec = runner.Recorder(t, metric="val_loss")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    s = schedules.ScheduleConfig("StepLR", {"step_size": 1 / 3, "gamma": 0.5}, lr=0.1,
                                 listener=rec.built)
    built = schedules.build(opt, s, 3, 3)
    for epoch in range(3):
        for _ in range(3):
            opt.step()
            built.after_batch()
        built.after_epoch(1.0)
        rec(epoch, {"val_loss": 1.0})
    assert record.of(t).curve(record.LR_CURVE) == pytest.approx([0.1, 0.05, 0.025])


# A plain loop, end to end: its own metric, minimised.
FIT = '''
import torch

def fit(cfg, schedule, report):
    """A toy loss that is lowest near lr = 0.05 and falls with every epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=schedule.lr, momentum=schedule.momentum)
    built = schedule.build(opt, 4, cfg.epochs)
    for epoch in range(cfg.epochs):
        for _ in range(4):
            opt.step()
            built.after_batch()
        far = abs(torch.log10(torch.tensor(schedule.lr / 0.05))).item()
        loss = (1 + far) * (1 + 1 / (epoch + 1))
        built.after_epoch(loss)
        report(epoch, {"val_loss": loss, "val_acc": 1 / (1 + loss)})
'''

STUDY = '''
name = "plain"
trials = 8
[objective]
function = "myfit:fit"
epochs = 4
metric = "val_loss"
direction = "minimize"
[space]
families = ["StepLR", "CosineAnnealingLR", "ReduceLROnPlateau"]
lr = {{ low = 0.001, high = 1.0, log = true }}
[pruner]
name = "{pruner}"
n_startup_trials = 2
n_warmup_steps = 1
'''


def _plain(tmp_path, pruner="none"):
    (tmp_path / "myfit.py").write_text(FIT)
    (tmp_path / "s.toml").write_text(STUDY.format(pruner=pruner))
    out = run_cli("run", "--study", "s.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    return optuna.load_study(study_name="plain", storage=f"sqlite:///{tmp_path}/search.db")


def test_a_plain_loop_minimising_its_loss_end_to_end(tmp_path):
    """Each trial's value is the loss it last reported; `best` names the lowest; its code
    applies exactly the LRs the trial recorded, in every format that applies."""
    study = _plain(tmp_path)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 8
    for t in done:
        assert t.value == record.of(t).metric_curve("val_loss")[-1]
    lowest = min(done, key=lambda t: t.value)
    out = run_cli("best", "--study", "s.toml", "--format", "json", cwd=tmp_path,
                  env={"PYTHONPATH": str(tmp_path)})
    got = json.loads(out.stdout)
    assert got["trial_number"] == lowest.number and got["value"] == lowest.value
    assert got["goal"] == {"metric": "val_loss", "direction": "minimize"}
    text = run_cli("best", "--study", "s.toml", cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path)}).stdout
    assert f"val_loss {lowest.value:.4f}" in text.splitlines()[0]
    code = run_cli("best", "--study", "s.toml", "--format", "python", cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path)}).stdout
    trace = record.of(lowest).lr_trace
    assert applied_lrs(code, record.of(lowest).metric_curve("val_loss")) == pytest.approx(
        trace["lr"], rel=1e-12)
    for fmt in ("lightning", "hf"):
        out = run_cli("best", "--study", "s.toml", "--format", fmt, cwd=tmp_path,
                      env={"PYTHONPATH": str(tmp_path)})
        assert out.returncode == 0 and f"trial {lowest.number}" in out.stdout


def test_pruning_follows_the_minimised_metric(tmp_path):
    study = _plain(tmp_path, pruner="median")
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert pruned and all(record.epochs_trained(t) < 4 for t in pruned)
    # the median pruner stops the trials whose loss is HIGH: each pruned one was above the
    # median of those before it at the epoch it stopped
    for t in pruned:
        e = max(t.intermediate_values)
        earlier = [o.intermediate_values[e] for o in study.trials
                   if o.number < t.number and e in o.intermediate_values]
        assert t.intermediate_values[e] > sorted(earlier)[len(earlier) // 2 - 1]
    assert min(t.value for t in done) < min(t.intermediate_values[max(t.intermediate_values)]
                                            for t in pruned)


def test_a_wrong_report_call_is_one_line_and_stores_nothing(tmp_path):
    (tmp_path / "myfit.py").write_text(FIT.replace(
        'report(epoch, {"val_loss": loss, "val_acc": 1 / (1 + loss)})', "report(epoch, loss)"))
    (tmp_path / "s.toml").write_text(STUDY.format(pruner="none"))
    out = run_cli("run", "--study", "s.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the objective called report(") and all(
        f in line for f in runner.REPORT_FORMS)
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/search.db") == []


def test_a_metric_the_loop_never_reports_is_one_line_and_stores_nothing(tmp_path):
    (tmp_path / "myfit.py").write_text(FIT)
    (tmp_path / "s.toml").write_text(STUDY.format(pruner="none").replace(
        'metric = "val_loss"', 'metric = "val_los"'))
    out = run_cli("run", "--study", "s.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "reported val_acc, val_loss but not 'val_los'" in out.stderr
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/search.db") == []


def test_a_metric_without_its_direction_is_refused_at_load(tmp_path):
    (tmp_path / "s.toml").write_text(textwrap.dedent('''
        [objective]
        function = "myfit:fit"
        metric = "val_loss"
        [space]
        families = ["StepLR"]
    '''))
    out = run_cli("run", "--study", "s.toml", cwd=tmp_path)
    assert out.returncode == 2 and "`objective.direction` must be set" in out.stderr
    assert not (tmp_path / "search.db").exists()


def test_the_built_in_objective_offers_its_two_metrics(tmp_path):
    (tmp_path / "s.toml").write_text(textwrap.dedent('''
        [objective]
        dataset = "fashion_mnist"
        metric = "bleu"
        direction = "maximize"
        [space]
        families = ["StepLR"]
    '''))
    out = run_cli("run", "--study", "s.toml", cwd=tmp_path)
    assert out.returncode == 2 and "'val_acc', 'val_loss'" in out.stderr


def test_resuming_with_another_goal_is_refused(tmp_path):
    _plain(tmp_path)
    (tmp_path / "s.toml").write_text(STUDY.format(pruner="none").replace(
        'direction = "minimize"', 'direction = "maximize"'))
    out = run_cli("run", "--study", "s.toml", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2 and "already exists" in out.stderr


# The mirror: one table of known values, maximised as accuracy and minimised as error.
def test_maximising_accuracy_and_minimising_error_choose_mirror_image_winners(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    up = study_file(tmp_path, name="up")
    down = study_file(tmp_path, name="down", objective='metric = "val_err"\n'
                      'direction = "minimize"\nas_error = true')
    for f in (up, down):
        assert cli.main(["run", "--study", str(f), "--storage", url]) == 0
    a, b = (optuna.load_study(study_name=n, storage=url) for n in ("up", "down"))
    ta, tb = a.get_trials(), b.get_trials()
    assert [t.params for t in ta] == [t.params for t in tb]  # the same search, step by step
    assert [t.state for t in ta] == [t.state for t in tb]
    for x, y in zip(ta, tb, strict=True):
        if x.value is not None:
            assert y.value == pytest.approx(1.0 - x.value, abs=1e-12)
    sa, sb = standing(a), standing(b)
    assert sa.leader.key == sb.leader.key and sa.leader.source_trial == sb.leader.source_trial
    assert [g.contender.key for g in sa.gaps] == [g.contender.key for g in sb.gaps]
    assert sb.goal == Goal("val_err", "minimize")
    ra, rb = answer.recommend(a), answer.recommend(b)
    assert ra.trial_number == rb.trial_number and ra.kwargs == rb.kwargs
    assert answer.best_trial(a).number == answer.best_trial(b).number
    ja, jb = (json.loads(answer.render(r, "json")) for r in (ra, rb))
    assert jb["contest"]["recommendation"]["mean"] == pytest.approx(
        1 - ja["contest"]["recommendation"]["mean"])
    assert jb["contest"]["margin"] == pytest.approx(ja["contest"]["margin"])
    text = answer.render(rb, "text")
    assert f"val_err {1 - ja['contest']['recommendation']['mean']:.4f}" in text
    assert "-0." not in text.split("verdict")[0]  # no negated loss shown
    for name in ("up", "down"):
        assert cli.main(["validate", "--study", str(up if name == "up" else down),
                         "--storage", url, "--seeds", "2"]) == 0
    va, vb = (answer.recommend(s).validation for s in (a, b))
    assert [r.key for r in va.ranked] == [r.key for r in vb.ranked]
    assert va.winner.key == vb.winner.key
    assert (validation_fields(vb)["mean"]
            == pytest.approx(1 - validation_fields(va)["mean"]))
    capsys.readouterr()
    assert cli.main(["studies", "--storage", url]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[1:]}
    assert sa.leader.label in lines["up"] and sb.leader.label in lines["down"]
    assert "val_err" in lines["down"]
