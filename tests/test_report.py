"""The HTML report: self-contained, ordered as issue 4 lists it, the recommendation as `best`
prints it, the figures refreshed in the study; and `python -m search report` end to end.

The browser checks (console, rendering, pixels) are in test_dashboards_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dashboards import report
from dashboards.figures import FIGURES, GRAPH_ID_PREFIX
from search import compat
from search.errors import UserError
from tests.test_dashboards_figures import make_trial, populated_study, study_of

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["recommendation", "leaderboard", "validation", "families", "lr-curves",
         "learning-curves", "history", "importance", "params"]


def _saved(study: optuna.Study) -> dict[str, dict]:
    saved = compat.saved_figures(compat.storage_of(study), compat.study_id(study))
    return {k: json.loads(v) for k, v in saved.items() if v}


def test_report_is_self_contained_and_in_issue_order(tmp_path):
    study = populated_study(f"sqlite:///{tmp_path / 's.db'}")
    path = report.write_report(study, tmp_path / "out.html")
    assert path == (tmp_path / "out.html").resolve()
    page = path.read_text(encoding="utf-8")
    # Offline: plotly.js inline exactly once, nothing fetched from anywhere.
    assert page.count("* plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"""<link[^>]+href=["']?https?:""", page)
    assert '<meta charset="utf-8">' in page
    positions = [page.index(f'id="{name}"') for name in ORDER]
    assert positions == sorted(positions)
    for name in FIGURES:
        assert f'id="fig-{name}"' in page
    assert "Study lr" in page and "storage sqlite:///" in page


def test_report_recommendation_is_what_best_prints(tmp_path):
    from search.answer import recommend, render

    study = populated_study()
    page = report.write_report(study, tmp_path / "r.html", save=False).read_text()
    text = render(recommend(study), "text")
    first_line = text.splitlines()[0].replace("'", "&#x27;")
    assert first_line in page
    assert "torch.optim.lr_scheduler" in page
    assert page.count("def make_optimizer_and_scheduler") == 1  # the code is shown once


def test_report_refreshes_the_figures_in_the_study(tmp_path):
    study = populated_study(f"sqlite:///{tmp_path / 's.db'}")
    report.write_report(study, tmp_path / "a.html")
    saved = _saved(study)
    assert set(saved) == {GRAPH_ID_PREFIX + name for name in FIGURES}
    # optuna-dashboard gives each figure a fixed 450-px panel: no height of our own there.
    assert all("height" not in fig["layout"] for fig in saved.values())
    before = saved[GRAPH_ID_PREFIX + "history"]["data"][1]["x"]
    study.add_trial(make_trial("StepLR", 0.99))
    report.write_report(study, tmp_path / "b.html")
    after = _saved(study)
    assert set(after) == set(saved)  # overwritten in place, not added
    assert after[GRAPH_ID_PREFIX + "history"]["data"][1]["x"] != before


def test_interrupted_report_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    study = populated_study()
    out = tmp_path / "r.html"
    report.write_report(study, out, save=False)
    previous = out.read_bytes()
    study.add_trial(make_trial("StepLR", 0.99))  # the next report differs

    def interrupted(fd):  # the page is written, not yet on disk nor renamed: Ctrl-C now
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(study, out, save=False)
    assert out.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary left behind
    monkeypatch.undo()
    report.write_report(study, out, save=False)
    assert out.read_bytes() != previous
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # as a file written in place


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_interrupted_figure_save_leaves_the_previous_figures_whole(tmp_path, monkeypatch):
    import sqlalchemy

    study = populated_study(f"sqlite:///{tmp_path / 's.db'}")
    report.write_report(study, tmp_path / "a.html")
    saved = _saved(study)
    study.add_trial(make_trial("StepLR", 0.99))  # every figure changes
    real, calls = sqlalchemy.update, []

    def interrupted_after_two(*args, **kwargs):  # two attributes rewritten, then Ctrl-C
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlalchemy, "update", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(study, tmp_path / "b.html")
    assert len(calls) == 3
    assert _saved(study) == saved  # none of the new figures, and the old ones whole
    monkeypatch.undo()
    report.write_report(study, tmp_path / "b.html")
    assert _saved(study) != saved and set(_saved(study)) == set(saved)


def test_report_on_a_store_it_cannot_write_says_so_in_one_line(tmp_path, monkeypatch):
    import optuna_dashboard

    def read_only(*args, **kwargs):
        raise optuna.exceptions.StorageInternalError("attempt to write a readonly database")

    monkeypatch.setattr(optuna_dashboard, "save_plotly_graph_object", read_only)
    with pytest.raises(UserError, match="could not store its figures.*use --no-save"):
        report.write_report(populated_study(), tmp_path / "r.html")
    assert (tmp_path / "r.html").is_file()  # the report itself was written


def test_report_recommendation_rescaled_like_best(tmp_path):
    page = report.write_report(populated_study(), tmp_path / "r.html", save=False, epochs=30,
                               steps_per_epoch=7).read_text()
    assert "30 epochs x 7 steps (rescaled from the searched 6 x 10)" in page


def test_no_save_leaves_the_store_alone(tmp_path):
    study = populated_study(f"sqlite:///{tmp_path / 's.db'}")
    report.write_report(study, tmp_path / "a.html", save=False)
    assert _saved(study) == {}


@pytest.mark.parametrize(
    "trials",
    [
        [],
        [make_trial(state=TrialState.PRUNED, value=None)],
        [make_trial("StepLR", 0.5 + 0.01 * i) for i in range(3)],
    ],
    ids=["empty", "only-pruned", "one-family"],
)
def test_report_on_awkward_studies_says_why(tmp_path, trials):
    study = study_of(*trials)
    page = report.write_report(study, tmp_path / "r.html").read_text()
    for name in FIGURES:
        assert f'id="fig-{name}"' in page
    if not any(t.state == TrialState.COMPLETE for t in trials):
        assert "Nothing to recommend yet" in page and "no complete trial yet" in page


def test_storage_password_never_reaches_the_page(tmp_path):
    from dashboards._common import storage_label

    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    rdb.url = "postgresql+psycopg://me:s3cret@db.example/search"  # what it would print
    study = optuna.create_study(storage=rdb)  # optuna wraps it in its cache
    label = storage_label(study)
    assert "s3cret" not in label and label.startswith("postgresql+psycopg://me:***@")
    assert storage_label(optuna.create_study()) is None  # in memory: no URL


def test_default_path_and_bad_arguments(tmp_path):
    assert report.default_path("lr") == Path("lr-report.html")
    assert report.default_path("a b/c") == Path("a_b_c-539138d5-report.html")
    # two names that read the same get two files; a 100-character name a short one
    assert report.default_path("a_b_c") == Path("a_b_c-report.html")
    long = [report.default_path("x" * 99 + c).name for c in "yz"]
    assert long[0] != long[1] and all(len(n) <= report.MAX_STEM + len("-report.html")
                                      for n in long)
    assert long[0].startswith("x" * 55 + "-")
    study = study_of(make_trial())
    with pytest.raises(UserError, match="`--top` must be at least 1"):
        report.write_report(study, tmp_path / "x.html", top=0)
    with pytest.raises(UserError, match="`--out` must be a file in an existing directory"):
        report.write_report(study, tmp_path / "missing" / "x.html")


def test_report_writes_default_name_in_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = report.write_report(study_of(make_trial(), name="my study"), save=False)
    assert path == tmp_path / report.default_path("my study") and path.is_file()
    assert path.name.startswith("my_study-")


# ----------------------------------------------------------------------------------------
# `python -m search report` (search.options: add_study_args, open_study)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SEARCH_STORAGE", None)
    return subprocess.run([sys.executable, "-m", "search", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_report_writes_study_report_and_prints_its_path(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    populated_study(url, name="lr")
    done = _cli("report", "--study", "lr", "--storage", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "lr-report.html")
    assert (tmp_path / "lr-report.html").stat().st_size > 1_000_000  # plotly.js is inside
    study = optuna.load_study(study_name="lr", storage=url)
    assert len(_saved(study)) == len(FIGURES)


def test_cli_report_options(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    populated_study(url, name="dash-cli")
    out = tmp_path / "sub" / "r.html"
    out.parent.mkdir()
    done = _cli("report", "--study", "dash-cli", "--storage", url, "--out", str(out),
                "--top", "3", "--no-save", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert _saved(optuna.load_study(study_name="dash-cli", storage=url)) == {}


def test_cli_report_user_errors_are_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    populated_study(url, name="dash-cli")
    done = _cli("report", "--study", "dash-cli", "--storage", url, "--out",
                str(tmp_path / "nope" / "r.html"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: `--out` must be") and done.stderr.count("\n") == 1
    missing = _cli("report", "--study", "no-such-study", "--storage", url, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
