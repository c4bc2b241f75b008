"""A wheel built from the repository, installed (not editable) into a fresh venv, runs a shipped
study by name from a directory outside the repository: the study files travel in the package.

The fresh venv gets the project's dependencies from the test's own environment through a .pth
line (appended after the venv's own site-packages), so nothing is downloaded; `search` itself
must come from the installed wheel, which the test checks.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

from conftest import ROOT


def _sh(*args: str | Path, cwd: Path, env: dict | None = None) -> str:
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
    return r.stdout


def test_wheel_ships_the_studies_and_runs_one_by_name(tmp_path, cifar_dir):
    wheels = tmp_path / "wheels"
    _sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", wheels, ROOT, cwd=tmp_path)
    (wheel,) = wheels.glob("schedsearch-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("search/studies/")}
    assert "search/studies/smoke.toml" in shipped and "search/studies/lr.toml" in shipped

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=False)
    py = fresh / "bin" / "python"
    _sh(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q",
        wheel, cwd=tmp_path)
    fresh_site = Path(_sh(py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                          cwd=tmp_path).strip())
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _sh(py, "-c", "import search; print(search.__file__)", cwd=outside, env=env)
    assert Path(where.strip()).is_relative_to(fresh_site)  # the wheel, not the checkout
    out = _sh(py, "-m", "search", "run", "--study", "smoke", "--trials", "1", "--data-dir",
              cifar_dir, "--storage", f"sqlite:///{outside / 'smoke.db'}", "--device", "cpu",
              cwd=outside, env=env)
    assert "study 'smoke': 1 finished trials" in out
