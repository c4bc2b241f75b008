"""The answer for tools: `best --format json`, every field, from the same numbers as the text.

Functions over search.stats' `Validation`, search.contest.standing's `Standing` and `Stage`
and search.contest.law's `Transfer` (a law's own fields, `Law.fields`, are what the contest
stores with the study, so they stay with the law); NaN becomes null (JSON has none).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from search.answer import frameworks
from search.answer.recommendation import Recommendation
from search.answer.text import contest_verdict, stage_text, validation_verdict
from search.contest.law import Transfer
from search.contest.standing import Stage, Standing
from search.contest.state import Contender
from search.stats import Validation
from search.stats import json_number as _num

__all__ = ["EMPTY_VALIDATION", "as_dict", "contest_fields", "stage_fields", "transfer_fields",
           "validation_fields"]

# Every validation key, null: the JSON of a study `validate` has not run on.
EMPTY_VALIDATION: dict[str, object] = {"validated": False, **dict.fromkeys((
    "validation_study", "validation_epochs", "mean", "std", "n_seeds", "scores",
    "baseline", "baseline_mean", "baseline_std", "margin", "margin_std",
    "margin_low", "margin_high", "p_value", "paired_seeds", "distinguishable",
    "verdict", "ranking", "notes", "validation_steps_per_epoch", "baseline_lr",
    "baseline_lr_source", "comparisons"))}


def as_dict(rec: Recommendation) -> dict[str, Any]:
    """`--format json`: every field, the code, the validation and how each framework steps it."""
    out = asdict(replace(rec, validation=None, standing=None, transfer=None))
    del out["validation"], out["standing"], out["transfer"]
    out["contest"] = contest_fields(rec.standing) if rec.standing is not None else None
    out["lr_transfer"] = transfer_fields(rec.transfer) if rec.transfer is not None else None
    out["step"] = rec.step
    out["code"] = rec.code()
    out |= validation_fields(rec.validation) if rec.validation else dict(EMPTY_VALIDATION)
    out["frameworks"] = frameworks.describe(rec)  # how it steps in Lightning / HF Trainer
    return out


def validation_fields(v: Validation) -> dict[str, object]:
    """The same facts as `text.validation_lines`, for JSON (NaN becomes null)."""
    w, b, c, g = v.winner, v.baseline, v.comparison, v.goal
    out = dict(EMPTY_VALIDATION)
    out |= {  # means and scores in the metric's terms; margins: score differences
        "validated": w is not None, "validation_study": v.study,
        "validation_epochs": v.epochs, "verdict": validation_verdict(v),
        "validation_steps_per_epoch": v.steps_per_epoch or None,
        "notes": list(v.notes), "other_epochs": list(v.other_epochs),
        "ranking": [{"label": r.label, "roles": list(r.roles), "source_trial": r.source_trial,
                     "mean": _num(g.value(r.mean)), "std": _num(r.std), "n_seeds": r.n,
                     "diverged_seeds": list(r.diverged), "lr": r.extra.get("lr"),
                     "lr_source": r.extra.get("lr_source") or None}
                    for r in v.ranked],
    }
    if w is not None:
        out |= {"mean": _num(g.value(w.mean)), "std": _num(w.std), "n_seeds": w.n,
                "scores": {str(s): g.value(x) for s, x in sorted(w.scores.items())}}
    if b is not None and c is not None:
        out |= {"baseline": b.label, "baseline_mean": _num(g.value(b.mean)),
                "baseline_lr": b.extra.get("lr"),
                "baseline_lr_source": b.extra.get("lr_source") or None,
                "baseline_std": _num(b.std), "margin": _num(c.margin),
                "margin_std": _num(c.std), "margin_low": _num(c.low),
                "margin_high": _num(c.high), "p_value": _num(c.p_value),
                "paired_seeds": c.n, "distinguishable": c.distinguishable}
    out["comparisons"] = [
        {"baseline": r.label, "margin": _num(p.margin), "margin_low": _num(p.low),
         "margin_high": _num(p.high), "p_value": _num(p.p_value), "p_holm": _num(h),
         "paired_seeds": p.n} for r, p, h in v.comparisons]
    return out


def stage_fields(s: Stage) -> dict[str, Any]:
    return {"name": s.name, "horizon": s.horizon, "horizons": list(s.lengths),
            "done": s.done, "planned": s.planned, "text": stage_text(s)}


def contest_fields(st: Standing) -> dict[str, Any]:
    """The same facts as `text.contest_lines`, for JSON."""
    lead, goal = st.leader, st.goal
    p = st.versus(st.best_reference) if lead is not None else None

    def one(c: Contender) -> dict[str, Any]:  # values in the metric's own terms
        return {"label": c.label, "role": c.role, "key": c.key,
                "mean": _num(goal.value(c.mean)), "n_seeds": c.n,
                "scores": {str(s): goal.value(v) for s, v in sorted(c.scores.items())},
                "lr": c.schedule.get("lr"), "source_trial": c.source_trial,
                "optimizer": c.optimizer or None}

    # gaps and margins: differences of scores, positive where the first is better
    return {
        "metric": goal.metric,
        "direction": goal.direction,
        "decided": st.decided,
        "stage": stage_fields(st.stage),
        "seed_noise": _num(st.state.race.sigma),
        "recommendation": one(lead) if lead is not None else None,
        "contenders": [one(g.contender) | {"gap": _num(g.gap), "shared_seeds": g.n,
                                           "within_noise": g.within} for g in st.gaps],
        "best_reference": st.best_reference.label if st.best_reference else None,
        "margin": _num(p.margin) if p else None,
        "margin_low": _num(p.low) if p else None,
        "margin_high": _num(p.high) if p else None,
        "p_value": _num(p.p_value) if p else None,
        "paired_seeds": p.n if p else 0,
        "verdict": contest_verdict(st),
        "lr_bands": {g.label: list(b) for g in st.state.grids.values()
                     if (b := st.lr_band(g)) is not None},
        "not_tuned": [{"label": lb, "edge": e} for lb, e in st.untuned],
        "horizons": list(st.state.settings.lengths),
        "stopped": [{"label": lb, "horizon": h, "behind": _num(x)}
                    for lb, h, x in st.stopped],
        "lr_laws": [law.fields() for law in st.laws.values()],
    }


def transfer_fields(t: Transfer) -> dict[str, Any]:
    return {"epochs": t.epochs, "searched_epochs": t.searched_epochs,
            "searched_lr": t.searched_lr, "lr": t.lr, "factor": t.factor,
            "lr_low": t.lr_low, "lr_high": t.lr_high,
            "measured": t.law is not None, "whose": t.whose or None,
            "kept": t.kept, "law_lr": _num(t.law_lr),
            "extrapolated": t.extrapolated,
            "beyond_longest_horizon": _num(t.beyond),
            "fit": t.law.fields() if t.law is not None else None}
