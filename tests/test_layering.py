"""The import layering of pyproject.toml's [tool.importlinter] holds, and `lint-imports` does
catch a cycle: a throwaway two-module package passes, then fails once its lower module imports
the higher one back (inside a function, where a cycle hides from an import at start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LINT = Path(sys.executable).parent / "lint-imports"

CONTRACT = """
[tool.importlinter]
root_packages = ["toy"]

[[tool.importlinter.contracts]]
name = "toy layers"
type = "layers"
layers = ["toy.high", "toy.low"]
"""


def _lint(cwd: Path, *config: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT), "--no-cache", *config], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_lint_imports_fails_on_a_cycle(tmp_path):
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "__init__.py").write_text("")
    (toy / "high.py").write_text("from toy import low\n\n\ndef run():\n    return low.VALUE\n")
    (toy / "low.py").write_text("VALUE = 1\n")
    (tmp_path / "pyproject.toml").write_text(CONTRACT)
    ok = _lint(tmp_path, "pyproject.toml")
    assert ok.returncode == 0 and "1 kept, 0 broken" in ok.stdout, ok.stdout + ok.stderr

    (toy / "low.py").write_text("VALUE = 1\n\n\ndef back():\n    from toy import high\n\n"
                                "    return high.run\n")
    broken = _lint(tmp_path, "pyproject.toml")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "toy.low -> toy.high" in broken.stdout and "0 kept, 1 broken" in broken.stdout


def test_the_repository_keeps_its_layering():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    assert "0 broken" in r.stdout
