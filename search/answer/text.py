"""The answer for people: every line `best` prints, the one headline, the verdicts.

Functions over the numbers the rest of the project computes (search.stats' `Validation`,
search.contest.standing's `Standing` and `Stage`, search.contest.law's `Transfer` and `Law`,
search.answer.recommendation's `Recommendation`), so that changing what `best` prints changes
this package only. `headline` is the one line naming what a study recommends: the end of
`run`, the live line of a contest, `studies` and the first line of `best` all print it.
"""

from __future__ import annotations

import json
import math

from optuna.trial import FrozenTrial

from search import record, storage
from search.answer.recommendation import Recommendation, lr_shown, optimizer_line
from search.contest.law import EXTRAPOLATION, Law, Transfer
from search.contest.standing import Stage, Standing
from search.contest.state import REFERENCE, SHAPE
from search.goal import DEFAULT, Goal
from search.progress import lr_text
from search.stats import CONFIDENCE, Paired, Result, Validation

__all__ = ["contest_lines", "contest_verdict", "headline", "left_out", "mattered",
           "pending", "pending_text", "stage_text", "text", "transfer_lines",
           "validation_lines", "validation_verdict", "verdict"]


def _count(n: int, what: str) -> str:
    """"1 epoch", "2 epochs"."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} shared seeds"


# 1. The headline: one line, for every place that names the answer.


def headline(st: Standing | None, trial: FrozenTrial | None = None,
             goal: Goal = DEFAULT) -> str:
    """What the study recommends and where it stands, in one line: a contest's leader at the
    search's length (`st`), else a plain search's best trial (`trial`, scored by `goal`). The
    end of `run`, a contest's live line, `studies` and `best`'s first line print it."""
    if st is None:
        if trial is None:
            return "no complete trial yet"
        return _best(trial.number, record.family_of(trial), trial.value, goal)
    lead, goal, stage = st.leader, st.goal, stage_text(st.stage)
    if lead is None:
        return f"no recommendation yet ({stage})"
    name = _named(lead.label, lead.source_trial)
    if not st.state.racing:
        return (f"leader so far {name} at {_count(st.budget, 'epoch')}: "
                f"{goal.metric} {goal.text(lead.mean)} ({stage})")
    who = "recommended" if st.decided else "leader"
    return (f"{who} {name}: {goal.metric} {goal.text(lead.mean)} mean of "
            f"{_count(lead.n, 'seed')} ({stage})")


def _named(label: str, number: int | None) -> str:
    """A contender's label with its trial: "linear to zero (trial 4)", "trial 17 OneCycleLR"."""
    return label if number is None or label.startswith(f"trial {number} ") else (
        f"{label} (trial {number})")


def _best(number: int, family: str, value: float | None, goal: Goal) -> str:
    shown = "-" if value is None else goal.text(goal.score(value))
    return f"best {_named(f'trial {number} {family}', number)}: {goal.metric} {shown}"


def _headline_of(rec: Recommendation) -> str:
    """`headline` of the study `rec` was chosen from (its standing, or its trial's numbers)."""
    if rec.standing is not None:
        return headline(rec.standing)
    return _best(rec.trial_number, rec.family, rec.value, rec.goal)


# 2. Where a contest stands, and what it concluded.


def stage_text(s: Stage) -> str:
    """"tuning the references at 4 of 2, 4, 8 epochs: 23 of about 47 reference runs"."""
    if s.name == REFERENCE:
        at = (f"{s.horizon} of {', '.join(map(str, s.lengths))}"
              if len(s.lengths) > 1 else str(s.horizon))
        return (f"tuning the references at {at} epochs: {s.done} of about "
                f"{s.planned} reference runs")
    if s.name == SHAPE:
        return (f"searching shapes at {s.lengths[-1]} epochs: {s.done} of "
                f"{s.planned} shape trials")
    runs = _count(s.done, "race run")
    if s.decided:
        return f"race decided after {runs}"
    if s.running:
        return f"race running: {runs} so far"
    return f"race not decided after {runs}" if s.done else "race starting"


def pending(st: Standing) -> str:
    """One line: why there is no recommendation yet (no run at the search's length has
    finished), with the stage and how far it has come."""
    return (f"study {st.study!r} has no recommendation yet: its contest is "
            f"{stage_text(st.stage)}, and its answer is chosen among runs of "
            f"{_count(st.budget, 'epoch')}, the study's length")


def _interval(goal: Goal, p: Paired) -> str:
    if p.n < 2:
        return ""
    return f"; {CONFIDENCE:.0%} interval {goal.interval(p.low, p.high)}, p = {p.p_value:.2g}"


def contest_verdict(st: Standing) -> str:
    """One sentence: does the leader beat the best tuned reference on the validation seeds?"""
    lead, goal = st.leader, st.goal
    if lead is None:
        return pending(st)
    sure = "" if st.decided else (
        " (so far: the race has not begun)" if not st.state.racing else
        " (so far: the race is running)" if st.state.running else
        " (so far: the budget ended before the race was decided; run again with more "
        "--trials to finish it)")
    if lead.role == "reference":
        other = st.best_searched
        if other is None:
            return f"a tuned reference leads: {lead.label}{sure}"
        p = st.versus(other)
        assert p is not None  # a leader and another contender: a pairing
        return (f"no searched shape beats the tuned references: {lead.label} leads, the "
                f"best searched shape ({other.label}) is {goal.gap(p.margin)} behind "
                f"on {_seeds(p.n)}{_interval(goal, p)}{sure}")
    ref = st.best_reference
    if ref is None:
        return f"{lead.label} leads; no tuned reference finished{sure}"
    p = st.versus(ref)
    assert p is not None  # a leader and another contender: a pairing
    if p.distinguishable and p.margin > 0:
        return (f"{lead.label} beats the best tuned reference, {ref.label}, by "
                f"{goal.gap(p.margin)} on {_seeds(p.n)}{_interval(goal, p)}{sure}")
    return (f"{lead.label} leads, but cannot be told apart from the best tuned reference, "
            f"{ref.label} ({goal.gap(p.margin, signed=True)} on {_seeds(p.n)}"
            f"{_interval(goal, p)}){sure}")


def mattered(st: Standing) -> list[str]:
    """What a person should care about: who is within noise, who loses and by how much."""
    if st.leader is None:
        return []
    gaps = st.gaps
    tied = [g.contender.label for g in gaps if g.within]
    lost = [f"{g.contender.label} {st.goal.gap(-g.gap)}" for g in gaps
            if not g.within and not math.isnan(g.gap)]
    out = []
    if tied:
        out.append(f"within noise of it: {', '.join(tied)}")
    if lost:
        out.append(f"behind it: {', '.join(lost)}")
    return out


def left_out(law: Law) -> str:
    """The horizons left out of the law's fit, and why ("" where none)."""
    out = [h for h in law.horizons if h not in law.fitted_on]
    if not out:
        return ""
    return (f"the best LR at {', '.join(map(str, out))} epochs is on its grid's edge: left "
            "out of the fit")


def contest_lines(st: Standing) -> list[str]:
    """The contest for people, indented to sit in `best`'s output."""
    state, lead, goal = st.state, st.leader, st.goal
    if lead is None:
        out = [f"  contest  : {stage_text(st.stage)}; validation split; {goal.metric}, "
               f"{goal.better} is better"]
        short = st.leading_short()
        if short is None:
            return out + ["  so far   : no run has finished yet"]
        run, h = short
        assert run.score is not None  # a finished run: a grid's best
        return out + [f"  so far   : leading reference at {_count(h, 'epoch')}: {run.label}, "
                      f"LR {lr_text(run.lr)}, {goal.name()} {goal.text(run.score)} (trial "
                      f"{run.number}); a {h}-epoch run, not the answer: that is chosen "
                      f"among runs of {_count(st.budget, 'epoch')}, the study's length"]
    out = [f"  contest  : {stage_text(st.stage)}; seed noise {state.race.sigma:.4f} (sd of one "
           f"run); validation split; {goal.metric}, {goal.better} is better"]
    out.append(f"    {'#':>2}  {'contender':<40} {'role':<10} {goal.short():<17} seeds  LR")
    ranked = [lead] + [g.contender for g in st.gaps]
    for i, c in enumerate(ranked, start=1):
        acc = (f"{goal.text(c.mean)} ± {c.std:.4f}" if c.n > 1 else goal.text(c.mean))
        out.append(f"    {i:>2}  {c.label[:40]:<40} {c.role:<10} {acc:<17} {c.n:<5}  "
                   f"{lr_text(c.schedule.get('lr', math.nan))}")
    out.append(f"  verdict  : {contest_verdict(st)}")
    out += [f"  mattered : {line}" for line in mattered(st)]
    for g in state.grids.values():
        band = st.lr_band(g)
        if band is not None:
            lo, hi, best = band
            span = lr_text(lo) if lo == hi else f"{lr_text(lo)} to {lr_text(hi)}"
            out.append(f"  LR band  : {g.label}: {span} within noise of its best "
                       f"({lr_text(best)}; {len(g.scored)} LRs tried)")
    for label, edge in st.untuned:
        out.append(f"  not tuned: {label}: its best LR is the {edge}est tried, and the "
                   "study's LR range stops the grid there (widen `space.lr`)")
    for label, h, behind in st.stopped:
        after = ("not tuned at longer horizons, not raced" if h < st.state.settings.lengths[-1]
                 else "not raced")
        out.append(f"  stopped  : {label} at {h} epochs, {goal.gap(behind)} behind the "
                   f"best reference there, clearly ({after})")
    for law in st.laws.values():
        lrs = ", ".join(lr_text(lr) for lr in law.lrs)
        why = left_out(law)
        out.append(f"  LR*      : {law.label}: {lrs} at {law.horizons} epochs; beta "
                   f"{law.beta:.2f} [{law.beta_low:.2f}, {law.beta_high:.2f}]"
                   f"{' (flat)' if law.flat else ''}"
                   f"{'; ' + why if why else ''}")
    return out


def transfer_lines(t: Transfer) -> list[str]:
    """For `best`'s text: the LR at this length and how sure that is."""
    law, searched = t.law, f"{t.searched_epochs} epochs"
    if t.epochs == t.searched_epochs and law is None:
        return []
    if law is None:
        return [f"  LR law   : not measured across lengths (the study has no [contest] "
                f"`horizons`): the LR is as searched at {searched}, {t.searched_lr:.4g}"]
    pad = " " * 13
    whose = "" if t.whose == "its own" else f" ({t.whose})"
    out = [f"  LR law   : {law.label}'s{whose}: beta {law.beta:.2f}, {CONFIDENCE:.0%} "
           f"interval [{law.beta_low:.2f}, {law.beta_high:.2f}]; LR* " + ", ".join(
               f"{lr:.3g} at {h}" for h, lr in zip(law.horizons, law.lrs, strict=True))
           + " epochs"]
    if left_out(law):
        out.append(f"{pad}{left_out(law)}")
    if t.epochs == t.searched_epochs:
        return out + [f"{pad}for another length, `best --epochs N` gives the law's LR "
                      f"at N (`--keep-lr`: this one)"]
    if t.kept:
        return out + [f"{pad}--keep-lr: LR {t.searched_lr:.4g} as searched at {searched}; the "
                      f"law gives {t.law_lr:.4g} at {t.epochs} epochs"]
    if law.flat:
        return out + [f"{pad}flat (its interval holds 0): LR {t.searched_lr:.4g} as "
                      f"searched at {searched}, unchanged at {t.epochs} epochs"]
    out.append(f"{pad}LR {t.lr:.4g} at {t.epochs} epochs, {t.factor:.3g}x the "
               f"{t.searched_lr:.4g} searched at {searched} ({CONFIDENCE:.0%}: "
               f"{t.lr_low:.3g} to {t.lr_high:.3g}); {t.beyond:.3g}x the longest "
               f"horizon measured ({max(law.horizons)} epochs)")
    if t.extrapolated:
        out.append(f"{pad}an extrapolation: {t.epochs} epochs lies beyond "
                   f"{EXTRAPOLATION}x the horizons measured and the interval is wide; "
                   "search with a longer horizon, or validate at this length")
    return out


# 3. What `validate` found on the test split.


def verdict(winner: Result, baseline: Result | None, cmp: Paired | None,
            goal: Goal = DEFAULT) -> str:
    """One plain sentence: does the recommendation beat the best baseline, on these seeds?"""
    if baseline is None or cmp is None:
        return ("no baseline was validated at this length: nothing to compare the "
                "recommendation with")
    name = baseline.label
    if cmp.n == 0:
        return f"the recommendation and {name} share no seed yet: they cannot be compared"
    if cmp.n == 1:
        return (f"only 1 seed in common with {name}: the recommendation cannot be told apart "
                "from it (validate with --seeds 3 or more)")
    interval = f"{CONFIDENCE:.0%} interval {goal.interval(cmp.low, cmp.high)}"
    if cmp.distinguishable and cmp.margin > 0:
        return f"the recommendation beats {name} on these {cmp.n} test seeds ({interval})"
    if cmp.distinguishable:
        return (f"{name} beats the recommendation on these {cmp.n} test seeds ({interval}): "
                "the search's choice did not hold up on the test split")
    return (f"the recommendation cannot be told apart from {name} on {cmp.n} test seeds "
            f"({interval} contains 0)")


def validation_verdict(v: Validation) -> str:
    """`verdict` of a validation's winner against its best baseline."""
    w = v.winner
    if w is None:
        return "the recommended schedule has no finished validation run at this length yet"
    return verdict(w, v.baseline, v.comparison, v.goal)


def validation_lines(v: Validation) -> list[str]:
    """The ranking and the verdict, for people (indented to sit in `best`'s output). A
    margin is the recommendation's score minus the baseline's: positive, it is better."""
    g = v.goal
    seeds = sorted({s for r in v.ranked for s in r.scores})
    shown = f"seeds {seeds[0]}-{seeds[-1]}" if seeds else "no seed finished"
    budget = f"{v.epochs} epochs" + (f" x {v.steps_per_epoch} steps" if v.steps_per_epoch
                                     else "")
    other = (f"; NOT the searched {v.searched_epochs} epochs" if v.searched_epochs
             and v.searched_epochs != v.epochs else "")
    out = [f"  validated on the test split ({v.study!r}, {budget}{other} on the "
           f"training and validation data, {shown}):",
           f"    {'#':>2}  {'schedule':<44} {'role':<11} {g.short('test'):<17} seeds"]
    for i, r in enumerate(v.ranked, start=1):
        acc = f"{g.text(r.mean)} ± {r.std:.4f}" if r.n else "-"
        tail = f"  diverged on {len(r.diverged)}" if r.diverged else ""
        out.append(f"    {i:>2}  {r.label[:44]:<44} {r.role:<11} {acc:<17} {r.n}{tail}")
    w, b, c = v.winner, v.baseline, v.comparison
    if w is not None:
        out.append(f"  recommended: {w.label}, {g.name('test')} {g.text(w.mean)} ± "
                   f"{w.std:.4f} (mean ± std over {w.n} seeds; chosen on the validation "
                   "split)")
    if b is not None and c is not None:
        out.append(f"  baseline : {b.label}, {g.text(b.mean)} ± {b.std:.4f} (the best tuned "
                   "baseline)")
        if b.extra.get("lr_source"):
            out.append(f"  its LR   : {b.extra.get('lr'):.4g}, {b.extra['lr_source']}")
        if c.n >= 2:
            out.append(f"  margin   : {c.margin:+.4f} ± {c.std:.4f} (paired over the same "
                       f"{c.n} seeds; {CONFIDENCE:.0%} interval [{c.low:+.4f}, "
                       f"{c.high:+.4f}], p = {c.p_value:.2g})")
        elif c.n == 1:
            out.append(f"  margin   : {c.margin:+.4f} on 1 seed (no spread to judge it by)")
    tests = [(r, p, h) for r, p, h in v.comparisons if p.n >= 2]
    if tests:
        out.append(f"  paired   : against each tuned baseline (as the margin: positive, the "
                   f"recommendation is better), p Holm-corrected over the {len(tests)}:")
        for r, p, h in tests:
            out.append(f"    {r.label[:44]:<44} {p.margin:+.4f} [{p.low:+.4f}, {p.high:+.4f}]"
                       f"  p = {p.p_value:.2g}, Holm p = {h:.2g}")
        beaten = [r.label for r, p, h in tests if p.margin < 0 and h < 1 - CONFIDENCE]
        out.append("  holds    : " + (
            f"{', '.join(beaten)} beat(s) the recommendation on the test split (Holm p < "
            f"{1 - CONFIDENCE:.2g})" if beaten else
            f"no tuned baseline beats the recommendation on the test split (Holm p < "
            f"{1 - CONFIDENCE:.2g})"))
    out.append(f"  verdict  : {validation_verdict(v)}")
    out += [f"  note     : {n}" for n in v.notes]
    if v.other_epochs:
        lengths = ", ".join(str(e) for e in v.other_epochs)
        out.append(f"  also validated at {lengths} epochs (best --epochs N shows that length)")
    return out


# 4. `best`'s text.


def pending_text(st: Standing) -> str:
    """`best`'s text while a contest has no run at the study's length: where it stands, the
    leading reference of the longest horizon so far (what exists), and why no code yet."""
    again = storage.hint_command(f"best --study {st.study}")
    short = st.leading_short()
    trial = "" if short is None else (f" (`--trial {short[0].number}` exports trial "
                                      f"{short[0].number} as it is)")
    return "\n".join([
        f"Study {st.study!r}: {headline(st)}",
        *contest_lines(st),
        f"  code     : none yet: `{again}` prints it once a {st.budget}-epoch run has "
        f"finished{trial}",
    ])


def _head(rec: Recommendation) -> str:
    """`best`'s first line: the study's `headline`, or what `--trial N` ran."""
    if rec.asked:  # `--trial N`: as asked, not chosen
        return (f"Schedule of study {rec.study!r}: trial {rec.trial_number}, {rec.asked}, "
                f"{rec.outcome()}")
    return f"Study {rec.study!r}: {_headline_of(rec)}"


def text(rec: Recommendation) -> str:
    """`best`'s text: the headline, the contest, the validation, the optimizer, the stepping,
    the budget, the LR law, and the code."""
    st = rec.standing
    lines = [
        _head(rec),
        *(contest_lines(st) if st is not None else []),
        *(validation_lines(rec.validation) if rec.validation else [] if rec.asked else [
            f"  (not validated: `{storage.hint_command(f'validate --study {rec.study}')}` "
            "re-trains it "
            "and the tuned baselines on new seeds, scored on the test set)"]),
        *([f"  scheduler kwargs : {json.dumps(lr_shown(rec.kwargs))}"]
          if not rec.schedule_free else []),
        f"  optimizer        : {optimizer_line(rec.optimizer)}",
        f"  stepping         : {rec.stepping()}",
    ]
    if rec.schedule_free:
        lines.append(f"  its LR           : {rec.schedule_free_note()}")
    if rec.warmup:
        steps = rec.warmup["total_iters"]
        lines.append(f"  warmup           : linear over {steps} optimizer steps")
    budget = f"{rec.epochs} epochs x {rec.steps_per_epoch} steps"
    if (rec.epochs, rec.steps_per_epoch) != (rec.searched_epochs, rec.searched_steps_per_epoch):
        budget += (f" (rescaled from the searched {rec.searched_epochs} x "
                   f"{rec.searched_steps_per_epoch})")
    lines.append(f"  budget           : {budget}")
    if rec.transfer is not None:
        lines += transfer_lines(rec.transfer)
    v = rec.validation
    if v is not None and v.steps_per_epoch and (v.epochs, v.steps_per_epoch) != (
            rec.epochs, rec.steps_per_epoch):
        flags = f"--epochs {v.epochs} --steps-per-epoch {v.steps_per_epoch}"
        lines.append(f"  validated as     : {v.epochs} epochs x {v.steps_per_epoch} steps, the "
                     f"same schedule resolved for that budget (`{flags}` prints exactly what "
                     "was validated)")
    lines += ["", rec.code()]
    return "\n".join(lines)

