"""optuna-dashboard as `dashboard` starts it: its HTTP API serves the study, its trials and our
saved figures; the command binds 127.0.0.1, prints the URL and stops cleanly on Ctrl-C.

The page itself rendering in Chromium is checked in test_dashboards_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest

from dashboards import serve
from dashboards.figures import FIGURES, GRAPH_ID_PREFIX, make_figures, save_figures
from search import compat
from search.errors import UserError
from tests.test_dashboards_figures import populated_study

ROOT = Path(__file__).resolve().parents[1]
FIGURE_IDS = {GRAPH_ID_PREFIX + name for name in FIGURES}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


@contextmanager
def running(storage, host: str = "127.0.0.1") -> Iterator[str]:
    """serve.start on a free port (port 0), serving in a thread; yields the base URL."""
    server = serve.start(storage, host, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield serve.url_of(server).removesuffix("/dashboard")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def check_api(base: str, study: optuna.Study, figures: set[str]) -> None:
    """The study is listed; its detail has every trial and exactly `figures` saved."""
    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    assert study.study_name in [s["study_name"] for s in summaries]
    detail = get_json(f"{base}/api/studies/{compat.study_id(study)}")
    assert detail["name"] == study.study_name
    assert len(detail["trials"]) == len(study.trials)
    states = {t["state"] for t in detail["trials"]}
    assert {"Complete", "Pruned", "Fail"} <= states
    graphs = {g["id"]: g["graph_object"] for g in detail["plotly_graph_objects"]}
    assert set(graphs) == figures
    for body in graphs.values():
        assert json.loads(body)["data"] is not None


def test_api_serves_study_trials_and_saved_figures(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    study = populated_study(url, name="served")
    save_figures(study, make_figures(study))
    with running(compat.storage_of(study)) as base:
        check_api(base, study, FIGURE_IDS)
        with urllib.request.urlopen(f"{base}/dashboard/studies/{compat.study_id(study)}") as r:
            page = r.read().decode()
        assert "bundle.js" in page  # optuna-dashboard's own UI, served from the package


def test_start_reports_a_busy_port_as_a_user_error(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'x.db'}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve.start(storage, "127.0.0.1", port)
    with pytest.raises(UserError, match="`--port` must be between 0 and 65535"):
        serve.start(storage, "127.0.0.1", 70000)


# ----------------------------------------------------------------------------------------
# `python -m search dashboard` (needs the core's cli.py)


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SEARCH_STORAGE", None)
    return env


def _first_line(proc: subprocess.Popen, timeout: float = 90) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "dashboard printed no URL in time"
    return proc.stdout.readline().strip()


@contextmanager
def dashboard_cli(*args: str, cwd: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "search", "dashboard", *args], cwd=cwd, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield proc, _first_line(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_cli_dashboard_prints_url_serves_and_stops_on_ctrl_c(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    study = populated_study(url, name="dash-cli")
    with dashboard_cli("--study", "dash-cli", "--storage", url, "--port", "0",
                       cwd=tmp_path) as (proc, printed):
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/dashboard/studies/(\d+)", printed)
        assert m, printed
        assert int(m.group(2)) == compat.study_id(study)
        # `dashboard` refreshed our figures before serving (no `report` ran on this store).
        check_api(printed.split("/dashboard")[0], study, FIGURE_IDS)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "dashboard stopped" in err and "Traceback" not in err
    with socket.socket() as s:  # nothing listens there any more (a restart can bind it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(m.group(1))))


def test_cli_dashboard_no_refresh_and_host(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    study = populated_study(url, name="dash-cli")
    with dashboard_cli("--study", "dash-cli", "--storage", url, "--port", "0", "--host",
                       "localhost", "--no-refresh", cwd=tmp_path) as (proc, printed):
        assert printed.startswith("http://127.0.0.1:")
        check_api(printed.split("/dashboard")[0], study, set())
        proc.terminate()  # SIGTERM (docker stop) stops as cleanly as Ctrl-C
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "dashboard stopped" in err


def test_cli_dashboard_busy_port_is_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    populated_study(url, name="dash-cli")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = subprocess.run(
            [sys.executable, "-m", "search", "dashboard", "--study", "dash-cli", "--storage",
             url, "--port", str(s.getsockname()[1]), "--no-refresh"],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot listen on") and done.stderr.count("\n") == 1


def test_importance_panel_prints_no_ped_anova_noise():
    """optuna-dashboard's own importance panel on a small, narrow study: optuna warns that
    regimes are small; with `quiet_importance` (as `dashboard` runs) nothing reaches the user."""
    import warnings

    from tests.test_dashboards_figures import make_trial, study_of

    study = study_of(*(make_trial("StepLR", 0.5 + 0.01 * i) for i in range(4)),
                     make_trial("Constant", 0.4))
    url = "/api/studies/{}/param_importances?evaluator=ped_anova"
    with warnings.catch_warnings(record=True) as loud:
        warnings.simplefilter("always")
        with running(compat.storage_of(study)) as base:
            get_json(base + url.format(compat.study_id(study)))
    assert any(t in str(w.message) for w in loud for t in serve.IMPORTANCE_NOISE)
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        serve.quiet_importance()
        with running(compat.storage_of(study)) as base:
            get_json(base + url.format(compat.study_id(study)))
    assert not [w for w in quiet if any(t in str(w.message) for t in serve.IMPORTANCE_NOISE)]
