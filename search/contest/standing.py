"""What a contest concluded, for every reader: the recommendation, its margin over the best
tuned reference on shared validation seeds, who is within noise, the LR bands, a verdict.

`standing(study)` is the one function that names the recommendation of a contest study;
`best`, `studies`, the report, its figures and `validate` all ask it. Everything here is on
the validation split (the test split is `validate`'s, and chooses nothing). The
recommendation is chosen among runs of the study's length only: until one has finished there
is none, and every reader says where the contest stands instead (`stage`, `pending`,
`headline`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import optuna
from optuna.trial import TrialState

from search import record, stats
from search.config import ContestConfig
from search.contest import law as lr_law
from search.contest import race as racing
from search.contest.contenders import REFERENCES, at_edge
from search.contest.state import (
    RACE,
    REFERENCE,
    SHAPE,
    Contender,
    Grid,
    Run,
    Settings,
    State,
    derive,
)
from search.goal import Goal
from search.progress import lr_text
from search.stats import json_number as _num

__all__ = ["Stage", "Standing", "standing"]


@dataclass(frozen=True)
class Stage:
    """Where a contest stands: its stage and how far it has come, for every reader's line."""

    name: str  # REFERENCE (the LR grids), SHAPE (the shapes searched) or RACE
    horizon: int  # the epochs its runs train: the grids' horizon now, else the search's length
    lengths: tuple[int, ...]  # the horizons, shortest first, the search's length last
    done: int  # its runs finished (reference runs, shape trials, race runs)
    planned: int  # the runs it takes as planned so far (the race: 0, as many as it needs)
    running: bool  # a run of the contest is in flight
    decided: bool  # the race is decided

    def text(self) -> str:
        """"tuning the references at 4 of 2, 4, 8 epochs: 23 of about 47 reference runs"."""
        if self.name == REFERENCE:
            at = (f"{self.horizon} of {', '.join(map(str, self.lengths))}"
                  if len(self.lengths) > 1 else str(self.horizon))
            return (f"tuning the references at {at} epochs: {self.done} of about "
                    f"{self.planned} reference runs")
        if self.name == SHAPE:
            return (f"searching shapes at {self.lengths[-1]} epochs: {self.done} of "
                    f"{self.planned} shape trials")
        runs = _count(self.done, "race run")
        if self.decided:
            return f"race decided after {runs}"
        if self.running:
            return f"race running: {runs} so far"
        return f"race not decided after {runs}" if self.done else "race starting"

    def fields(self) -> dict[str, Any]:
        return {"name": self.name, "horizon": self.horizon, "horizons": list(self.lengths),
                "done": self.done, "planned": self.planned, "text": self.text()}


@dataclass(frozen=True)
class Gap:
    contender: Contender
    gap: float  # its mean minus the leader's, over the seeds they share
    n: int  # seeds shared with the leader
    within: bool  # within noise of the leader (still in the race, or tied)


@dataclass(frozen=True)
class Standing:
    study: str
    state: State

    @property
    def leader(self) -> Contender | None:
        return self.state.leader

    @property
    def goal(self) -> Goal:
        return self.state.settings.goal

    @property
    def decided(self) -> bool:
        return self.state.racing and self.state.race.decided and not self.state.running

    @property
    def gaps(self) -> list[Gap]:
        """Every other contender against the leader, closest first."""
        r = self.state.race
        out = []
        for c in self.state.contenders:
            if c.key == r.incumbent:
                continue
            gap, n = r.gaps.get(c.key, (math.nan, 0))
            out.append(Gap(c, gap, n, c.key not in r.out))
        return sorted(out, key=lambda g: (not g.within, -g.gap if not math.isnan(g.gap)
                                          else math.inf))

    @property
    def best_reference(self) -> Contender | None:
        """The best tuned reference other than the leader (by shared-seed gap to it)."""
        refs = [g for g in self.gaps if g.contender.role == "reference"]
        return refs[0].contender if refs else None

    @property
    def best_searched(self) -> Contender | None:
        found = [g for g in self.gaps if g.contender.role == "searched"]
        return found[0].contender if found else None

    def versus(self, other: Contender | None) -> stats.Paired | None:
        """The leader minus `other`, paired over the seeds both ran."""
        lead = self.leader
        if lead is None or other is None:
            return None
        return stats.paired(lead.scores, other.scores)

    @cached_property
    def laws(self) -> dict[str, lr_law.Law]:
        """slot -> the LR law of each reference tuned at two horizons or more."""
        return lr_law.laws(self.state.ladder, self.state.race.sigma)

    def transfer(self, c: Contender, epochs: int | None, keep_lr: bool = False,
                 ) -> lr_law.Transfer:
        """Contender `c`'s LR at `epochs` (None: as searched): its own law for a reference,
        the LR scale's for a searched shape (search.contest.law.transfer)."""
        return lr_law.transfer(self.laws, c.slot if c.role == "reference" else "",
                               REFERENCES[0].slot, float(c.schedule.get("lr", math.nan)),
                               self.state.settings.lengths[-1], epochs, keep_lr)

    def schedule_at(self, c: Contender, epochs: int | None, keep_lr: bool = False) -> Any:
        """Contender `c`'s budget-free schedule at `epochs`, its LR moved by `transfer`: what
        `best --epochs N` prints and `validate --epochs N` trains."""
        from search.schedules import ScheduleConfig

        return lr_law.moved(ScheduleConfig.from_dict(c.schedule),
                            self.transfer(c, epochs, keep_lr))

    def keys_at(self, epochs: int | None, keep_lr: bool = False) -> set[str]:
        """The contender keys `validate --epochs N` trains: the leader and every reference,
        each at its LR for that length."""
        from search.contest.contenders import contender_key

        return {contender_key(self.schedule_at(c, epochs, keep_lr), c.optimizer)
                for c in self.state.contenders
                if c.role == "reference" or c.key == self.state.race.incumbent}

    @property
    def stopped(self) -> list[tuple[str, int, float]]:
        """(label, horizon, points behind the best there) of the references the race began
        without: clearly behind at the first horizon (state.stopped), or tuned at a shorter
        horizon only (a contest from before, run with rungs at short horizons)."""
        st = self.state
        last = st.settings.lengths[-1]
        if not st.racing:
            return []
        if len(st.settings.lengths) < 2:
            return [(st.ladder[slot][last].label, last, gap) for slot, gap in st.behind.items()]
        out = []
        for by_h in st.ladder.values():
            h = max(by_h)
            b = by_h[h].best
            if h >= last or b is None or any(r.state.name == "RUNNING" for r in by_h[h].runs):
                continue
            top = max((g[h].best.score for g in st.ladder.values()
                       if h in g and g[h].best is not None), default=b.score)
            out.append((by_h[h].label, h, top - b.score))
        return out

    def lr_band(self, g: Grid) -> tuple[float, float, float] | None:
        """(lowest, highest, best) LR of a grid whose score is within noise of its best run."""
        b = g.best
        if b is None:
            return None
        near = [lr for lr, v in g.scored.items()
                if v >= b.score - racing.margin(self.state.race.sigma, 1)]
        return min(near), max(near), b.lr

    @property
    def untuned(self) -> list[tuple[str, str]]:
        """(label, "low" | "high") for references whose best LR sits on the edge of their
        grid where the study's LR range stopped it."""
        if not self.state.racing:
            return []
        return [(g.label, e) for g in self.state.grids.values() if (e := at_edge(g.scored))]

    def verdict(self) -> str:
        lead = self.leader
        if lead is None:
            return self.pending()
        sure = "" if self.decided else (
            " (so far: the race has not begun)" if not self.state.racing else
            " (so far: the race is running)" if self.state.running else
            " (so far: the budget ended before the race was decided; run again with more "
            "--trials to finish it)")
        if lead.role == "reference":
            other = self.best_searched
            if other is None:
                return f"a tuned reference leads: {lead.label}{sure}"
            p = self.versus(other)
            return (f"no searched shape beats the tuned references: {lead.label} leads, the "
                    f"best searched shape ({other.label}) is {self.goal.gap(p.margin)} behind "
                    f"on {_seeds(p.n)}{self._interval(p)}{sure}")
        ref = self.best_reference
        if ref is None:
            return f"{lead.label} leads; no tuned reference finished{sure}"
        p = self.versus(ref)
        if p.distinguishable and p.margin > 0:
            return (f"{lead.label} beats the best tuned reference, {ref.label}, by "
                    f"{self.goal.gap(p.margin)} on {_seeds(p.n)}{self._interval(p)}{sure}")
        return (f"{lead.label} leads, but cannot be told apart from the best tuned reference, "
                f"{ref.label} ({self.goal.gap(p.margin, signed=True)} on {_seeds(p.n)}"
                f"{self._interval(p)}){sure}")

    def _interval(self, p: stats.Paired) -> str:
        if p.n < 2:
            return ""
        return (f"; {stats.CONFIDENCE:.0%} interval {self.goal.interval(p.low, p.high)}, "
                f"p = {p.p_value:.2g}")

    def mattered(self) -> list[str]:
        """What a person should care about: who is within noise, who loses and by how much."""
        lead = self.leader
        if lead is None:
            return []
        gaps = self.gaps
        tied = [g.contender.label for g in gaps if g.within]
        lost = [f"{g.contender.label} {self.goal.gap(-g.gap)}" for g in gaps
                if not g.within and not math.isnan(g.gap)]
        out = []
        if tied:
            out.append(f"within noise of it: {', '.join(tied)}")
        if lost:
            out.append(f"behind it: {', '.join(lost)}")
        return out

    @cached_property
    def stage(self) -> Stage:
        """Which stage the contest is in and how far it has come (a reader's view: the race
        has begun once a race run exists, or the shapes are searched and nothing runs)."""
        st = self.state
        lengths = st.settings.lengths
        running = bool(st.running)
        if st.racing:
            done = sum(1 for r in st.runs if r.stage == RACE and r.finished)
            return Stage(RACE, lengths[-1], lengths, done, 0, running, self.decided)
        if st.shapes:
            done = sum(1 for r in st.shapes if r.state in (TrialState.COMPLETE,
                                                            TrialState.PRUNED))
            return Stage(SHAPE, lengths[-1], lengths, done, st.settings.shape_trials, running,
                         False)
        refs = [r for r in st.runs if r.stage == REFERENCE]
        horizon = max((r.horizon for r in refs), default=lengths[0])
        done = sum(1 for r in refs if r.finished)
        busy = sum(1 for r in refs if r.state == TrialState.RUNNING)
        return Stage(REFERENCE, horizon, lengths, done,
                     max(_planned_references(st), done + busy), running, False)

    @property
    def budget(self) -> int:
        """The search's length: the recommendation is chosen among runs of this length."""
        return self.state.settings.lengths[-1]

    def leading_short(self) -> tuple[Run, int] | None:
        """Before any run at the search's length has finished: the best reference run at the
        longest horizon reached so far, and that horizon (shown as what exists, never as the
        answer)."""
        best: tuple[Run, int] | None = None
        for by_h in self.state.ladder.values():
            for h, g in by_h.items():
                b = g.best
                if b is not None and (best is None or (h, b.score) > (best[1], best[0].score)):
                    best = (b, h)
        return best

    def pending(self) -> str:
        """One line: why there is no recommendation yet (no run at the search's length has
        finished), with the stage and how far it has come."""
        return (f"study {self.study!r} has no recommendation yet: its contest is "
                f"{self.stage.text()}, and its answer is chosen among runs of "
                f"{_count(self.budget, 'epoch')}, the study's length")

    def headline(self) -> str:
        """Who leads at the search's length and where the contest stands, in one line (the
        live line, `studies`, the end of `run`)."""
        lead, goal, stage = self.leader, self.goal, self.stage.text()
        if lead is None:
            return f"no recommendation yet ({stage})"
        if not self.state.racing:
            which = ("" if lead.label.startswith(f"trial {lead.source_trial} ")
                     else f", trial {lead.source_trial}")
            return (f"leader so far {lead.label} at {_count(self.budget, 'epoch')}: "
                    f"{goal.metric} {goal.text(lead.mean)}{which} ({stage})")
        who = "recommended" if self.decided else "leader"
        return (f"{who} {lead.label}: {goal.metric} {goal.text(lead.mean)} mean of "
                f"{_count(lead.n, 'seed')} ({stage})")

    def lines(self) -> list[str]:
        """The contest for people, indented to sit in `best`'s output."""
        st, lead, goal = self.state, self.leader, self.goal
        if lead is None:
            out = [f"  contest  : {self.stage.text()}; validation split; {goal.metric}, "
                   f"{goal.better} is better"]
            short = self.leading_short()
            if short is None:
                return out + ["  so far   : no run has finished yet"]
            run, h = short
            return out + [f"  so far   : leading reference at {_count(h, 'epoch')}: {run.label}, "
                          f"LR {lr_text(run.lr)}, {goal.name()} {goal.text(run.score)} (trial "
                          f"{run.number}); a {h}-epoch run, not the answer: that is chosen "
                          f"among runs of {_count(self.budget, 'epoch')}, the study's length"]
        out = [f"  contest  : {self.stage.text()}; seed noise {st.race.sigma:.4f} (sd of one "
               f"run); validation split; {goal.metric}, {goal.better} is better"]
        out.append(f"    {'#':>2}  {'contender':<40} {'role':<10} {goal.short():<17} seeds  LR")
        ranked = [lead] + [g.contender for g in self.gaps]
        for i, c in enumerate(ranked, start=1):
            acc = (f"{goal.text(c.mean)} ± {c.std:.4f}" if c.n > 1 else goal.text(c.mean))
            out.append(f"    {i:>2}  {c.label[:40]:<40} {c.role:<10} {acc:<17} {c.n:<5}  "
                       f"{lr_text(c.schedule.get('lr', math.nan))}")
        out.append(f"  verdict  : {self.verdict()}")
        out += [f"  mattered : {line}" for line in self.mattered()]
        for g in st.grids.values():
            band = self.lr_band(g)
            if band is not None:
                lo, hi, best = band
                span = lr_text(lo) if lo == hi else f"{lr_text(lo)} to {lr_text(hi)}"
                out.append(f"  LR band  : {g.label}: {span} within noise of its best "
                           f"({lr_text(best)}; {len(g.scored)} LRs tried)")
        for label, edge in self.untuned:
            out.append(f"  not tuned: {label}: its best LR is the {edge}est tried, and the "
                       "study's LR range stops the grid there (widen `space.lr`)")
        for label, h, behind in self.stopped:
            out.append(f"  stopped  : {label} at {h} epochs, {goal.gap(behind)} behind the "
                       "best reference there (not tuned at longer horizons)")
        for law in self.laws.values():
            lrs = ", ".join(lr_text(lr) for lr in law.lrs)
            out.append(f"  LR*      : {law.label}: {lrs} at {law.horizons} epochs; beta "
                       f"{law.beta:.2f} [{law.beta_low:.2f}, {law.beta_high:.2f}]"
                       f"{' (flat)' if law.flat else ''}"
                       f"{'; ' + law.left_out if law.left_out else ''}")
        return out

    def fields(self) -> dict[str, Any]:
        """The same facts for JSON."""
        lead = self.leader
        p = self.versus(self.best_reference) if lead is not None else None

        goal = self.goal

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
            "decided": self.decided,
            "stage": self.stage.fields(),
            "seed_noise": _num(self.state.race.sigma),
            "recommendation": one(lead) if lead is not None else None,
            "contenders": [one(g.contender) | {"gap": _num(g.gap), "shared_seeds": g.n,
                                               "within_noise": g.within} for g in self.gaps],
            "best_reference": self.best_reference.label if self.best_reference else None,
            "margin": _num(p.margin) if p else None,
            "margin_low": _num(p.low) if p else None,
            "margin_high": _num(p.high) if p else None,
            "p_value": _num(p.p_value) if p else None,
            "paired_seeds": p.n if p else 0,
            "verdict": self.verdict(),
            "lr_bands": {g.label: list(b) for g in self.state.grids.values()
                         if (b := self.lr_band(g)) is not None},
            "not_tuned": [{"label": lb, "edge": e} for lb, e in self.untuned],
            "horizons": list(self.state.settings.lengths),
            "stopped": [{"label": lb, "horizon": h, "behind": _num(x)}
                        for lb, h, x in self.stopped],
            "lr_laws": [law.fields() for law in self.laws.values()],
        }


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} shared seeds"


def _count(n: int, what: str) -> str:
    """"1 epoch", "2 epochs"."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _planned_references(st: State) -> int:
    """The reference runs the grids take as planned so far: every reference's grid at every
    horizon, its first points (the first reference's wider at the first horizon) or as many
    as it has run (a grid extended past an edge). Until the first horizon's grids are done the
    references are not all known: as many as a contest can have (ContestConfig.REFERENCES)."""
    lengths = st.settings.lengths
    first_done = st.racing or bool(st.shapes) or any(
        r.stage == REFERENCE and r.horizon != lengths[0] for r in st.runs)
    if first_done:  # every reference has run at the first horizon
        slots = [s for s in st.ladder if lengths[0] in st.ladder[s]]
    else:  # those seen, the scheduled ones, and one more (a schedule-free one, where it runs)
        slots = list(dict.fromkeys([*(ref.slot for ref in REFERENCES if ref.by_default),
                                    *st.ladder]))
        slots += [""] * max(0, ContestConfig.REFERENCES - len(slots))
    total = 0
    for i, h in enumerate(lengths):
        for slot in slots:
            if slot in st.behind and h > max(st.ladder[slot]):
                continue  # stopped at a shorter horizon
            first = ContestConfig.grid(i, scale_setter=slot == REFERENCES[0].slot)[1]
            g = st.ladder.get(slot, {}).get(h)
            ran = {r.grid_step for r in g.runs if r.finished or r.state == TrialState.RUNNING
                   } if g is not None else set()
            total += max(len(first), len(ran))
    return total




def standing(study: optuna.Study) -> Standing | None:
    """The contest of `study`, or None where the study is a plain search."""
    settings = Settings.of(record.study_of(study))
    if settings is None:
        return None
    return Standing(study.study_name, derive(study.get_trials(deepcopy=False), settings))
