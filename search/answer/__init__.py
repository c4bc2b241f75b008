"""The answer: every rendering of what a study recommends, in one package.

- `choose`: which trial is shown (`recommended_trial`: the contest's leader or the best trial;
  `trial_of` for `--trial N`) and its schedule at the asked budget (`recommend`, `from_trial`).
- `recommendation`: the `Recommendation` and its paste-ready PyTorch code.
- `frameworks`: the same for PyTorch Lightning and the Hugging Face Trainer.
- `text`: every line for people, and the one `headline` (run's end, the live line of a
  contest, `studies`, `best`'s first line).
- `fields`: the same facts for JSON.
- `render`: `best`'s formats, and `shown` (the report's section).

The numbers come from below (search.stats, search.contest, search.validation.companion); how
they read is decided here only.
"""

from search.answer.choose import (
    NotYet,
    best_trial,
    from_trial,
    recommend,
    recommended_trial,
    trial_of,
)
from search.answer.fields import as_dict
from search.answer.recommendation import Recommendation, optimizer_call, optimizer_line
from search.answer.render import FORMATS, Shown, render, shown
from search.answer.text import headline, pending_text

__all__ = ["FORMATS", "NotYet", "Recommendation", "Shown", "as_dict", "best_trial",
           "from_trial", "headline", "optimizer_call", "optimizer_line", "pending_text",
           "recommend", "recommended_trial", "render", "shown", "trial_of"]
