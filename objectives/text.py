"""The language-model objective's corpus (objectives.lm): a text as bytes, cut into three parts.

The corpus: the King James Version of the Bible, from the Debian package `bible-kjv` (its
data file /usr/lib/bible.data comes with `bible-kjv-text`, on which it depends). Why this
one: 4.3 MB of plain ASCII English prose in one style (enough text that a study's runs never
see a byte twice: 800 steps of 32 x 65 bytes read 1.7 MB); public domain (the translation is
of 1611; the package's software is GPL, the text is not restricted); a fixed order (Genesis
to Revelation), so every machine holds the same bytes in the same order. Its data file is
compressed in the package's own format, readable only through the package's program, so the
text is `bible -l0 gen1:1-rev22:21` (every verse, one per line, no wrapping: the output
does not depend on the terminal), read once per process. Other candidates: `fortunes` is
plain files but 2.4 MB of short unrelated quotes and ASCII art; `jargon-text` 0.6 MB.

The option `text_path` trains on any other file instead (read as bytes, whatever its
encoding).

The parts, by position: the first 90% of the bytes trains, the next 5% validates (the
search's score), the last 5% tests (`validate`, `final_test`). The parts never overlap and
no window of bytes read from one crosses into another (objectives.lm cuts its windows inside
a part). With `holdout = "test"` the training part is the first 95% (train + validation).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import torch

from objectives import UserError

__all__ = ["KJV_PACKAGE", "TEST_FRACTION", "VAL_FRACTION", "bounds", "load", "parts"]

KJV_PACKAGE = "bible-kjv"  # the Debian package whose program prints the text
KJV_PROGRAM = "bible"
KJV_ARGS = ("-l0", "gen1:1-rev22:21")  # every verse, lines not wrapped
KJV_MIN_BYTES = 4_000_000  # the whole text is 4,298,239 bytes (bible-kjv 4.38)
KJV_START = b"\nGenesis 1\n"
VAL_FRACTION = 0.05
TEST_FRACTION = 0.05
MAX_TEXT_BYTES = 1 << 30  # a `text_path` is read whole into memory


def _missing_kjv(why: str) -> UserError:
    return UserError(
        f"the language-model corpus (the King James Bible) {why}: install the Debian package "
        f"{KJV_PACKAGE} (apt-get install {KJV_PACKAGE}), or set `text_path` in [objective] to "
        "a plain-text file to train on")


@functools.lru_cache(maxsize=1)
def _kjv(program: str) -> bytes:
    try:
        done = subprocess.run(
            [program, *KJV_ARGS], stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _missing_kjv(f"cannot be read ({KJV_PROGRAM}: {e})") from None
    out = done.stdout
    if done.returncode != 0 or len(out) < KJV_MIN_BYTES or not out.startswith(KJV_START):
        said = " ".join(done.stderr.decode("utf-8", "replace").split())[:120]
        raise _missing_kjv(
            f"cannot be read ({KJV_PROGRAM} exited {done.returncode} with {len(out)} bytes, "
            f"not the whole text{': ' + said if said else ''})")
    return out


def _file(path: str) -> bytes:
    p = Path(path).expanduser()
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise UserError(f"`text_path` {path} is not a file")
        if size > MAX_TEXT_BYTES:
            raise UserError(f"`text_path` {path} is over {MAX_TEXT_BYTES >> 30} GiB, more "
                            "than is read into memory")
        return p.read_bytes()
    except OSError as e:
        raise UserError(f"`text_path` {path} cannot be read ({e.strerror or e})") from None


@functools.lru_cache(maxsize=2)
def _tensor(raw: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def load(text_path: str | None = None) -> torch.Tensor:
    """The corpus as a 1-d uint8 tensor (shared: don't modify): the KJV, or `text_path`'s
    bytes. A missing corpus is one UserError line naming the package to install."""
    if text_path is not None:
        if not isinstance(text_path, str) or not text_path:
            raise UserError(f"`text_path` must be the path of a text file but got {text_path!r}")
        return _tensor(_file(text_path))
    program = shutil.which(KJV_PROGRAM)
    if program is None:
        raise _missing_kjv(f"is not installed (no `{KJV_PROGRAM}` program)")
    return _tensor(_kjv(program))


def bounds(n: int) -> dict[str, tuple[int, int]]:
    """[start, end) of the "train", "val" and "test" parts of an n-byte text, in order."""
    val_start = n - round((VAL_FRACTION + TEST_FRACTION) * n)
    test_start = n - round(TEST_FRACTION * n)
    return {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, n)}


def parts(data: torch.Tensor, holdout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the bytes a run trains on, the bytes it is scored on) for `holdout`: "val" (the
    search: train / val), "test" (`validate`: train + val / test)."""
    b = bounds(len(data))
    if holdout == "val":
        (t0, t1), (e0, e1) = b["train"], b["val"]
    elif holdout == "test":
        (t0, t1), (e0, e1) = (b["train"][0], b["val"][1]), b["test"]
    else:
        raise ValueError(f"holdout must be 'val' or 'test' but got {holdout!r}")
    return data[t0:t1], data[e0:e1]
