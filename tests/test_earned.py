"""No answer before it is earned (issue 32): while a contest has no run of the study's length
finished, every reader (`best` in every format, `studies`, `validate`, the report, the live
line) says where it stands and never passes a shorter horizon's run off as the answer; once a
run of that length leads, it is shown as the leader so far, its code for that length applying
exactly the recorded LRs while the text rounds them; and every per-trial line names the run's
role, label, length and LR as its record has them.

The contest is tests/contest_objectives.py's (known quality, seed noise) with horizons 1 and 2
epochs. `run --trials` refuses fewer trials than a contest needs, so a run cut short inside
its first horizon is the engine driven directly with the CLI's display (`cli._progress`)."""

from __future__ import annotations

import json
import re

import optuna
import pytest
from conftest import applied_lrs
from optuna.trial import TrialState
from test_contest import study_file

from dashboards import report
from search import cli, config
from search.engine import sequential
from search.progress import lr_text

LINE = re.compile(r"\[(\d+)/(\d+)\] trial (\d+) (reference|shape|race) (.+?) at (\d+) "
                  r"epochs?(?:, LR ([^,:]+))?(?:, seed (\d+))?: val_acc (\S+) \((\w+)\); "
                  r"(.*); (?:ETA .*|done)")


def contest_file(tmp_path):
    f = study_file(tmp_path)
    f.write_text(f.read_text() + "horizons = [1, 2]\n")
    return f


def run_until(f, url: str, n: int, capsys) -> list[str]:
    """The run stopped after `n` finished trials: its per-trial lines."""
    cfg = config.load_study(str(f))
    capsys.readouterr()
    sequential.run(cfg, url, n, cli._progress(cfg))
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]


def best(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(["best", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def finished(study: optuna.Study, epochs: int | None = None) -> list:
    return [t for t in study.get_trials(states=(TrialState.COMPLETE,))
            if epochs is None or t.user_attrs["epochs"] == epochs]


def test_an_unfinished_contest_says_where_it_stands_and_prints_code_only_for_its_length(
        tmp_path, capsys):
    f = contest_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    where = ["--study", str(f), "--storage", url]
    lines = run_until(f, url, 8, capsys)  # cosine's grid and part of the next, at 1 epoch
    study = optuna.load_study(study_name="c", storage=url)
    assert len(lines) == 8 and not finished(study, 2)
    stage = "tuning the references at 1 of 1, 2 epochs"
    for k, line in enumerate(lines, start=1):  # the live line's "best" is no 1-epoch run
        assert line.split("); ", 1)[1].startswith(
            f"no recommendation yet ({stage}: {k} of about "), line
    lead = max(finished(study), key=lambda t: (t.value, -t.number))  # the best 1-epoch run

    # best: where the contest stands, what exists (the 1-epoch leader, said to be one), no code
    code, out, _ = best(capsys, *where)
    assert code == 0
    assert out.startswith(f"Study 'c': no recommendation yet ({stage}: 8 of about ")
    assert f"contest  : {stage}: 8 of about " in out
    attrs = lead.user_attrs
    assert (f"so far   : leading reference at 1 epoch: {attrs['label']}, LR "
            f"{lr_text(attrs['fixed_schedule']['lr'])}, validation accuracy {lead.value:.4f} "
            f"(trial {lead.number}); a 1-epoch run, not the answer: that is chosen among runs "
            "of 2 epochs") in out
    assert "make_optimizer_and_scheduler" not in out and "EPOCHS" not in out
    for fmt in ("json", "python", "lightning", "hf"):  # code would be a 1-epoch run's: 2
        code, out, err = best(capsys, *where, "--format", fmt)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, fmt
        assert err.startswith(f"error: study 'c' has no recommendation yet: its contest is "
                              f"{stage}") and "among runs of 2 epochs" in err
    # studies, validate and the report say the same
    capsys.readouterr()
    assert cli.main(["studies", "--storage", url]) == 0
    row = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("c "))
    assert row.endswith(f"  no recommendation yet ({stage}: 8 of about 32 reference "
                        "runs)")
    assert cli.main(["validate", *where, "--seeds", "1"]) == 2
    assert "error: study 'c' has no recommendation yet" in capsys.readouterr().err
    page = report.write_report(study, tmp_path / "r.html", save=False).read_text()
    section = page[page.index('<section id="recommendation">'):]
    section = section[:section.index("</section>")]
    assert "Study &#x27;c&#x27;: no recommendation yet (" in section and stage in section
    assert "make_optimizer_and_scheduler" not in section and 'class="code"' not in section

    # --trial N still exports a finished run as asked: the text rounds its LR, the code
    # applies exactly the LRs it applied
    long = next(t for t in finished(study) if repr(t.user_attrs["optimizer"]["lr"])
                != lr_text(t.user_attrs["optimizer"]["lr"]))  # e.g. 0.1 / 3
    lr = long.user_attrs["optimizer"]["lr"]
    _, out, _ = best(capsys, *where, "--trial", str(long.number))
    assert out.startswith(f"Schedule of study 'c': trial {long.number}, reference "
                          f"{long.user_attrs['label']} at 1 epoch, LR {lr_text(lr)}, ")
    shown = next(r for r in out.splitlines() if r.startswith("  optimizer "))
    assert f"lr={lr_text(lr)} " in shown and repr(lr) not in shown
    _, code_text, _ = best(capsys, *where, "--trial", str(long.number), "--format", "python")
    assert applied_lrs(code_text, long.user_attrs["val_loss_curve"]) == (
        long.user_attrs["lr_trace"]["lr"])

    # on into the 2-epoch grids: a run of the study's length leads, as the leader so far
    lines = run_until(f, url, 20, capsys)
    study = optuna.load_study(study_name="c", storage=url)
    runs2 = finished(study, 2)
    assert runs2 and not [t for t in study.trials if "fixed_schedule" not in t.user_attrs]
    lead = max(runs2, key=lambda t: (t.value, -t.number))
    assert (f"(trial {lead.number}) at 2 epochs: val_acc {lead.value:.4f} (tuning the "
            "references at 2 of ") in lines[-1]
    code, out, _ = best(capsys, *where)
    assert code == 0 and out.startswith(
        f"Study 'c': leader so far {lead.user_attrs['label']} (trial {lead.number}) at 2 "
        f"epochs: val_acc {lead.value:.4f} (tuning the references at 2 of 1, 2 epochs")
    # one headline (search.answer.headline): the live line's leader is best's first line
    head = out.splitlines()[0].removeprefix("Study 'c': ")
    assert f"; {head}; " in lines[-1]
    shown = next(r for r in out.splitlines() if r.startswith("  optimizer "))
    assert f"lr={lr_text(lead.user_attrs['optimizer']['lr'])} " in shown
    _, code_text, _ = best(capsys, *where, "--format", "python")
    assert "EPOCHS = 2\n" in code_text and "the contest is unfinished" in code_text
    assert applied_lrs(code_text, lead.user_attrs["val_loss_curve"]) == (
        lead.user_attrs["lr_trace"]["lr"])
    got = json.loads(best(capsys, *where, "--format", "json")[1])
    assert got["trial_number"] == lead.number and got["epochs"] == 2
    assert got["optimizer"]["lr"] == lead.user_attrs["optimizer"]["lr"]  # exact, not rounded
    assert got["unfinished"].startswith("tuning the references at 2 of 1, 2 epochs")
    assert got["contest"]["stage"]["name"] == "reference"
    for fmt in ("lightning", "hf"):
        code, out, _ = best(capsys, *where, "--format", fmt)
        assert code == 0 and "the contest is unfinished" in out
        compile(out, f"best.{fmt}", "exec")


def test_every_per_trial_line_names_what_ran_and_the_leader_at_the_study_length(tmp_path,
                                                                                capsys):
    f = contest_file(tmp_path)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    lines = run_until(f, url, 45, capsys)
    study = optuna.load_study(study_name="c", storage=url)
    # one line per finished trial (the race may be decided before 45)
    assert len(lines) == sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                             for t in study.trials) <= 45
    roles = set()
    for line in lines:
        m = LINE.fullmatch(line)
        assert m, line
        k, _, number, role, label, epochs, lr, seed, value, _, leader = m.groups()
        t = study.trials[int(number)]
        a = t.user_attrs
        fixed = a.get("fixed_schedule")
        roles.add(role)
        assert role == (a["stage"] if fixed else "shape"), line
        assert label == (a["label"] if fixed else t.params["scheduler"]), line
        assert int(epochs) == a["epochs"] and value == f"{t.value:.4f}", line
        assert lr == lr_text((fixed or a["schedule"])["lr"]), line
        assert (seed is not None) == (role == "race") and (seed is None or int(seed) == a["seed"])
        # the leader is a run of the study's length (2 epochs), never a shorter one
        so_far = [s for s in study.trials[:int(number) + 1]
                  if s.state == TrialState.COMPLETE and s.user_attrs["epochs"] == 2]
        if not so_far:
            assert leader.startswith("no recommendation yet (tuning the references at 1 of "
                                     "1, 2 epochs: "), line
        elif "race" not in leader:  # before the race: the best single run at 2 epochs
            top = max(so_far, key=lambda s: (s.value, -s.number))
            assert leader.startswith("leader so far ") and " at 2 epochs: " in leader, line
            assert f"val_acc {top.value:.4f}" in leader and f"trial {top.number}" in leader
        else:
            assert re.match(r"(leader|recommended) .+: val_acc [\d.]+ mean of \d+ seeds? \(race ",
                            leader), line
        assert "1 epoch:" not in leader
    assert roles == {"reference", "shape", "race"}
    assert {int(m.group(6)) for m in map(LINE.fullmatch, lines)} == {1, 2}


@pytest.mark.parametrize("lr, shown", [(0.09999999999999999, "0.1"), (1 / 30, "0.03333"),
                                       (3e-4, "0.0003"), (1.0, "1")])
def test_lrs_are_shown_to_four_significant_digits(lr, shown):
    assert lr_text(lr) == shown
