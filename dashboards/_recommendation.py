"""The report's first section: the best schedule in words and code, exactly as `best` prints it.

The words and the code come from `search.export` (one source of truth for the snippet); this
module only places them in HTML, or says why there is nothing to recommend yet (an unfinished
contest: where it stands, in `best`'s words, and no code).
"""

from __future__ import annotations

import html
from typing import NamedTuple

import optuna

__all__ = ["RecommendationInfo"]

TITLE = "Recommendation"


class RecommendationInfo(NamedTuple):
    text: str  # render(rec, "text"): the schedule in words (and code, if text includes it)
    code: str  # rec.code: paste-ready PyTorch
    trial_number: int | None
    reason: str


def _info(
    study: optuna.Study, epochs: int | None = None, steps_per_epoch: int | None = None
) -> RecommendationInfo:
    # Imported here: the report must still render if export is broken or not there yet.
    try:
        from search.errors import UserError
        from search.export import NotYet, pending_text, recommend, render
    except ImportError as e:
        return RecommendationInfo("", "", None, f"search.export is not available ({e})")
    if len(study.directions) != 1:
        return RecommendationInfo("", "", None, "multi-objective studies are not supported")
    try:
        rec = recommend(study, epochs=epochs, steps_per_epoch=steps_per_epoch)
        text = render(rec, "text")
    except NotYet as e:  # an unfinished contest: where it stands, as `best` says it; no code
        return RecommendationInfo(pending_text(e.standing), "", None, "")
    except UserError as e:
        return RecommendationInfo("", "", None, str(e))
    except (KeyError, TypeError, ValueError) as e:
        # A best trial without a complete schedule record (written by something else, or
        # an older runner): the rest of the report is still worth having.
        return RecommendationInfo(
            "", "", None, f"the best trial's schedule record is incomplete ({e!r})"
        )
    code = rec.code() if callable(rec.code) else rec.code  # a method on export's dataclass
    return RecommendationInfo(text, str(code), rec.trial_number, "")


def _html(info: RecommendationInfo) -> str:
    if info.reason:
        body = f'<p class="reason">Nothing to recommend yet: {html.escape(info.reason)}</p>'
    else:
        body = f'<pre class="words">{html.escape(info.text.rstrip())}</pre>'
        # `best`'s text output may already carry the code; show it once.
        if info.code.strip() and info.code.strip() not in info.text:
            body += f'\n<pre class="code"><code>{html.escape(info.code.rstrip())}</code></pre>'
    return f'<section id="recommendation"><h2>{TITLE}</h2>\n{body}\n</section>'
