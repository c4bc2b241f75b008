"""`python -m search report --study lr`: write lr-report.html and print its path.

The report is one self-contained HTML file (works offline). Writing it also refreshes the same
figures inside the study, where optuna-dashboard shows them (`--no-save` to leave the store
untouched, e.g. with a read-only database user).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

import optuna

from dashboards import _recommendation
from dashboards._common import snapshot, storage_label
from dashboards._page import render_page
from dashboards.figures import STORE_ERRORS, make_figures, save_figures
from search.storage import carried

__all__ = ["HELP", "add_arguments", "default_path", "main", "write_atomically", "write_report"]

HELP = "write a self-contained HTML report comparing the study's schedules"
MAX_STEM = 64  # characters of the study name in the default file name, its hash included


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from search.options import add_study_args, positive_int

    add_study_args(parser)
    parser.add_argument(
        "--out", type=Path, default=None, metavar="PATH",
        help="where to write the report (default: <study>-report.html here)",
    )
    parser.add_argument(
        "--top", type=positive_int, default=10, metavar="N",
        help="trials in the leaderboard and the LR-curve overlay (default: 10)",
    )
    parser.add_argument("--epochs", type=positive_int, metavar="N",
                        help="show the recommended schedule rescaled to N epochs (as `best`)")
    parser.add_argument("--steps-per-epoch", type=positive_int, metavar="M",
                        help="... and to M optimizer steps per epoch (as `best`)")
    parser.add_argument(
        "--no-save", action="store_true",
        help="don't refresh the figures stored in the study for optuna-dashboard",
    )


def default_path(study_name: str) -> Path:
    """`<study>-report.html` in the working directory. A name that is longer than MAX_STEM
    (study names go to 100 characters; Optuna's own, made elsewhere, further) or has odd
    characters (made `_`) keeps its start and gains 8 hex digits of the whole name's hash, so
    that the file name stays short and readable and no two studies share one."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip("._") or "study"
    if safe != study_name or len(safe) > MAX_STEM:
        digest = hashlib.sha256(study_name.encode()).hexdigest()[:8]
        safe = f"{safe[:MAX_STEM - 9].rstrip('._-')}-{digest}"
    return Path(f"{safe}-report.html")


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path` in one step: written to a temporary file beside it, flushed to disk,
    then renamed over it. An interruption leaves the previous file as it was, and no
    temporary file behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as readable as a file written in place (mkstemp: 0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_report(
    study: optuna.Study,
    path: str | Path | None = None,
    *,
    top: int = 10,
    save: bool = True,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
) -> Path:
    """Write the HTML report for `study` and return its absolute path.

    1. read the trials once and build every figure from that one snapshot;
    2. ask `search.answer` for the recommendation (optuna's storage cache serves the finished
       trials it reads, so this is no second read of the store);
    3. write the page (in one step: an interrupted write leaves the previous report), then
       (with `save`) store the figures in the study for optuna-dashboard, all in one step.
    """
    from search.errors import UserError, must

    if top < 1:
        raise must("--top", "at least 1", top)
    out = Path(path) if path is not None else default_path(study.study_name)
    if not out.parent.is_dir():
        raise must("--out", "a file in an existing directory", str(out))
    snap = snapshot(study)
    figures = make_figures(snap, top=top)
    rec = _recommendation._info(study, epochs=epochs, steps_per_epoch=steps_per_epoch)
    rec = rec._replace(code=carried(rec.code))  # its hint as in the text, which `best` wrote
    write_atomically(out, render_page(snap, rec, figures, storage_label(study)))
    if save:
        try:
            save_figures(study, figures)
        except STORE_ERRORS as e:
            raise UserError(
                f"wrote {out.resolve()}, but could not store its figures in the study for "
                f"optuna-dashboard ({type(e).__name__}); use --no-save with a read-only store"
            ) from None
    return out.resolve()


def main(args: argparse.Namespace) -> int:
    from search.options import open_study

    _cfg, study = open_study(args)
    path = write_report(study, args.out, top=args.top, save=not args.no_save,
                        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch)
    print(path)
    return 0
