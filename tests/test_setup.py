"""scripts/setup, the README's set-up command, run with stubs for apt-get, dpkg-query, sudo,
id and python3 that record their calls: as root on a machine without sudo it installs what is
missing without sudo; as a user it asks sudo; with nothing missing it installs nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

BASH = shutil.which("bash")
STUB = """#!{bash}
echo "{name} $*" >> "$CALLS"
{body}
"""
# dpkg-query -W -f=${{Status}} PKG: installed unless PKG is listed in $MISSING
DPKG = 'case " $MISSING " in *" ${@: -1} "*) exit 1;; esac; printf "install ok installed"'
# python3 -c ...: Python can make a venv; python3 -m venv DIR: a venv whose pip records too
PYTHON = f"""if [ "$1" = -m ] && [ "$2" = venv ]; then
  {shutil.which("mkdir")} -p "$3/bin"
  printf '#!{BASH}\\necho "pip $*" >> "$CALLS"\\n' > "$3/bin/pip"
  {shutil.which("chmod")} +x "$3/bin/pip"
fi"""


def setup(tmp_path: Path, uid: int, missing: str, sudo: bool) -> tuple[int, list[str], str]:
    """Run a copy of scripts/setup with only the stubs (and dirname, env, grep) on PATH."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup", repo / "scripts" / "setup")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"apt-get": "", "dpkg-query": DPKG, "python3": PYTHON, "id": f"echo {uid}"}
    if sudo:
        stubs["sudo"] = '"$@"'
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(STUB.format(bash=BASH, name=name, body=body))
        path.chmod(0o755)
    for tool in ("dirname", "env", "grep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "calls"
    env = {"PATH": str(bin_dir), "CALLS": str(calls), "MISSING": missing}
    r = subprocess.run([BASH, "scripts/setup"], cwd=repo, env=env, capture_output=True,
                       text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    asked = [line for line in lines if not line.startswith(("dpkg-query", "id "))]
    return r.returncode, asked, r.stderr


VENV = ["python3 -c import ensurepip, venv", "python3 -m venv .venv",
        "pip install -q --disable-pip-version-check torch==2.13.0 -e .[dev]"]


def test_as_root_without_sudo_installs_what_is_missing_directly(tmp_path):
    code, calls, err = setup(tmp_path, uid=0, missing="chromium", sudo=False)
    assert code == 0, err
    assert calls == [VENV[0], "apt-get update -qq",
                     "apt-get install -y -qq chromium", *VENV[1:]]


def test_as_a_user_apt_get_runs_through_sudo(tmp_path):
    code, calls, err = setup(tmp_path, uid=1000, missing="dataset-fashion-mnist chromium",
                             sudo=True)
    assert code == 0, err
    assert calls == [VENV[0], "sudo apt-get update -qq", "apt-get update -qq",
                     "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                     "dataset-fashion-mnist chromium",
                     "apt-get install -y -qq dataset-fashion-mnist chromium", *VENV[1:]]


@pytest.mark.parametrize("uid", [0, 1000])
def test_nothing_missing_installs_nothing_and_asks_no_sudo(tmp_path, uid):
    code, calls, err = setup(tmp_path, uid=uid, missing="", sudo=True)
    assert code == 0, err
    assert calls == VENV


def test_a_user_without_sudo_is_told_in_one_line(tmp_path):
    code, calls, err = setup(tmp_path, uid=1000, missing="chromium", sudo=False)
    assert code == 2
    assert err.strip() == ("error: installing chromium needs root; run this script as root or "
                           "install sudo")
    assert not any(c.startswith(("apt-get", "pip")) for c in calls)


def test_ci_uses_the_same_set_up():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup docker-compose" in ci
    assert "apt-get" not in ci and "python3 -m venv" not in ci
    assert os.access(ROOT / "scripts" / "setup", os.X_OK)
