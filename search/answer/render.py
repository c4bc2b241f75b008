"""A Recommendation in each of `best`'s formats, and the report's view of the same answer."""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna

from search import storage
from search.answer import frameworks
from search.answer.choose import NotYet, recommend
from search.answer.fields import as_dict
from search.answer.recommendation import Recommendation
from search.answer.text import pending_text, text
from search.errors import UserError

__all__ = ["FORMATS", "Shown", "render", "shown"]

FORMATS = ("text", "json", "python", "lightning", "hf")


def render(rec: Recommendation, fmt: str = "text", grad_accum: int = 1) -> str:
    """`rec` in a format of FORMATS; `grad_accum`: batches per optimizer step (the counts are
    optimizer steps, and every format says so). The commands it suggests reach the study and
    store this command reached (`storage.carried`)."""
    if fmt == "lightning":
        return frameworks.lightning(rec, grad_accum)
    if fmt == "hf":
        return frameworks.hf(rec, grad_accum)
    if fmt == "json":
        out = as_dict(rec)
        out["code"] = storage.carried(out["code"])
        return json.dumps(out, indent=2)
    if fmt not in ("text", "python"):
        raise UserError(f"`--format` must be one of {', '.join(FORMATS)} but got {fmt!r}")
    code = rec.code()
    words = code if fmt == "python" else text(rec)
    if grad_accum > 1:  # one line above the code, where the counts are read
        at = max(words.rfind(code), 0)
        words = (f"{words[:at]}# --grad-accum {grad_accum}: every count here is in optimizer "
                 f"steps of {grad_accum} batches each (STEPS_PER_EPOCH too)\n{words[at:]}")
    return storage.carried(words)


@dataclass(frozen=True)
class Shown:
    """The answer as `best` shows it by default, for a page (the report)."""

    text: str  # `best`'s text: the schedule in words, then its code; or where a contest stands
    code: str  # the paste-ready PyTorch alone ("" while there is no recommendation)
    trial_number: int | None  # None: no recommendation yet (an unfinished contest)


def shown(study: optuna.Study, epochs: int | None = None,
          steps_per_epoch: int | None = None) -> Shown:
    """What `best --study S [--epochs N --steps-per-epoch M]` prints, and its code: an
    unfinished contest says where it stands, as `best` does, with no code. A study with no
    answer raises UserError."""
    try:
        rec = recommend(study, epochs=epochs, steps_per_epoch=steps_per_epoch)
    except NotYet as e:
        return Shown(pending_text(e.standing), "", None)
    return Shown(render(rec, "text"), rec.code(), rec.trial_number)
