"""What a benchmark records about where it ran: one shell command's output (the date, the
load average, the CPU, the commit), never failing the measurement."""

from __future__ import annotations

import subprocess

__all__ = ["sh"]


def sh(cmd: str) -> str:
    """`cmd`'s stdout, stripped; "?" where it cannot run."""
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
