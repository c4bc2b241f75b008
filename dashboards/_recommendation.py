"""The report's first section: the best schedule in words and code, exactly as `best` prints it.

The words and the code come from `search.answer.shown` (one source of truth for the snippet);
this module only places them in HTML, or says why there is nothing to recommend yet (an
unfinished contest: where it stands, in `best`'s words, and no code).
"""

from __future__ import annotations

import html
from typing import NamedTuple

import optuna

__all__ = ["RecommendationInfo"]

TITLE = "Recommendation"


class RecommendationInfo(NamedTuple):
    text: str  # `best`'s text: the schedule in words and code, or where a contest stands
    code: str  # the paste-ready PyTorch alone ("" while there is no recommendation)
    trial_number: int | None
    reason: str


def _info(
    study: optuna.Study, epochs: int | None = None, steps_per_epoch: int | None = None
) -> RecommendationInfo:
    from search.answer import shown  # torch: imported once the report is asked for
    from search.errors import UserError

    if len(study.directions) != 1:
        return RecommendationInfo("", "", None, "multi-objective studies are not supported")
    try:
        answer = shown(study, epochs=epochs, steps_per_epoch=steps_per_epoch)
    except UserError as e:
        return RecommendationInfo("", "", None, str(e))
    except (KeyError, TypeError, ValueError) as e:
        # A best trial without a complete schedule record (written by something else, or
        # an older runner): the rest of the report is still worth having.
        return RecommendationInfo(
            "", "", None, f"the best trial's schedule record is incomplete ({e!r})"
        )
    return RecommendationInfo(answer.text, answer.code, answer.trial_number, "")


def _html(info: RecommendationInfo) -> str:
    if info.reason:
        body = f'<p class="reason">Nothing to recommend yet: {html.escape(info.reason)}</p>'
    else:
        body = f'<pre class="words">{html.escape(info.text.rstrip())}</pre>'
        # `best`'s text output may already carry the code; show it once.
        if info.code.strip() and info.code.strip() not in info.text:
            body += f'\n<pre class="code"><code>{html.escape(info.code.rstrip())}</code></pre>'
    return f'<section id="recommendation"><h2>{TITLE}</h2>\n{body}\n</section>'
