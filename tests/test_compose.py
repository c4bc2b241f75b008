"""docker-compose.yml: it parses, keeps secrets out of commands, and its commands really work.

No Docker engine runs here, so the worker and dashboard commands the file declares are run
directly, with the environment it declares, against this machine's PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
import yaml
from conftest import ROOT
from workers_support import ENV, check_exact, finish, wait_for, write_study
from workers_support import pg_url as pg_url  # noqa: F401 (fixture)

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} and $$, as `docker compose` does."""
    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(arg)
        return arg if op == ":-" else ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_services_are_wired_for_many_workers(compose):
    s = compose["services"]
    assert {"db", "worker", "dashboard"} <= set(s)
    db, worker, dash = s["db"], s["worker"], s["dashboard"]
    assert db["image"].startswith("postgres:") and "pg_isready" in str(db["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in db["volumes"]) and "pgdata" in compose["volumes"]
    assert worker["build"] == "." and worker["restart"] in ("on-failure", "unless-stopped")
    assert worker["depends_on"]["db"]["condition"] == "service_healthy"
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=N
    gpu = s["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["command"] == worker["command"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    assert dash["depends_on"]["db"]["condition"] == "service_healthy"
    assert all(p.startswith("127.0.0.1:") for p in dash["ports"])  # the dashboard has no login


def test_the_password_comes_from_the_env_file_only(compose):
    assert _env_example()["POSTGRES_PASSWORD"] == ""  # no placeholder a user could keep
    services = compose["services"]
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name in ("worker", "worker-gpu", "dashboard"):
        assert ":${POSTGRES_PASSWORD:?" in services[name]["environment"]["SEARCH_STORAGE"]
    for name, service in services.items():  # no command line carries the URL (`ps` shows it)
        assert "SEARCH_STORAGE" not in json.dumps(service.get("command", "")), name
        assert "postgresql" not in json.dumps(service.get("command", "")), name


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="Debian's docker-compose absent")
def test_docker_compose_config_accepts_it(tmp_path):
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    env = (ROOT / ".env.example").read_text()
    (tmp_path / ".env").write_text(env.replace("POSTGRES_PASSWORD=", "POSTGRES_PASSWORD=x1y2"))
    r = subprocess.run(["docker-compose", "config", "--quiet"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (tmp_path / ".env").write_text(env)  # the example as it is: compose refuses, naming the fix
    r = subprocess.run(["docker-compose", "config", "--quiet"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "set POSTGRES_PASSWORD in .env" in r.stderr


def _service(compose: dict, name: str, env: dict[str, str]) -> tuple[list[str], dict]:
    """The command and environment of a service, interpolated; `db` is this machine."""
    service = compose["services"][name]
    command = [interpolate(part, env) for part in service["command"]]
    assert command[0] == "python"
    command[0] = sys.executable  # the image's python is the one with the project installed
    environment = {k: interpolate(str(v), env) for k, v in service["environment"].items()}
    environment["SEARCH_STORAGE"] = environment["SEARCH_STORAGE"].replace("@db:", "@127.0.0.1:")
    return command, {**os.environ, **ENV, **environment}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_declared_worker_and_dashboard_commands_run(compose, tmp_path, pg_url):
    port = _free_port()
    study = write_study(tmp_path, trials=4)
    env = {**_env_example(), "POSTGRES_PASSWORD": "a1long2test3password",
           "POSTGRES_USER": "postgres", "POSTGRES_DB": pg_url.rsplit("/")[-1],
           "SEARCH_STUDY": str(study), "SEARCH_DASHBOARD_PORT": str(port)}
    command, environment = _service(compose, "worker", env)
    assert command[1:4] == ["-m", "search", "run"]
    assert environment["SEARCH_STORAGE"] == pg_url.replace(
        "postgres@", f"postgres:{env['POSTGRES_PASSWORD']}@")
    with open(tmp_path / "w.out", "w+") as out, open(tmp_path / "w.err", "w+") as err:
        proc = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=out, stderr=err)
        proc.out, proc.err = out, err
        code, stdout, stderr = finish(proc, 180)
    assert code == 0, stderr
    assert env["POSTGRES_PASSWORD"] not in stdout + stderr
    check_exact(pg_url, 4)

    command, environment = _service(compose, "dashboard", env)
    environment["SEARCH_DASHBOARD_HOST"] = "127.0.0.1"  # not 0.0.0.0 outside a container
    with open(tmp_path / "d.log", "w+") as log:
        dash = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log)
        try:
            def api(path: str):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{path}",
                                            timeout=5) as r:
                    return json.load(r)

            listed = wait_for(lambda: api("studies")["study_summaries"], 90,
                              "the dashboard to answer")
            assert [s["study_name"] for s in listed] == ["fast"]
            detail = api(f"studies/{listed[0]['study_id']}")
            assert sum(t["state"] == "Complete" for t in detail["trials"]) == 4
        finally:
            dash.send_signal(signal.SIGTERM)
            dash.wait(timeout=30)
        log.seek(0)
        assert env["POSTGRES_PASSWORD"] not in log.read()
