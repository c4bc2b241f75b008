"""What a contest concluded, for every reader: the recommendation, its margin over the best
tuned reference on shared validation seeds, who is within noise, the LR bands, a verdict.

`standing(study)` is the one function that names the recommendation of a contest study;
`best`, `studies`, the report, its figures and `validate` all ask it. Everything here is on
the validation split (the test split is `validate`'s, and chooses nothing). The
recommendation is chosen among runs of the study's length only: until one has finished there
is none, and every reader says where the contest stands instead (`stage`). Numbers only:
how a standing reads (its lines, verdict, headline, JSON) is search.answer's.
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
from search.contest.contenders import REFERENCES, at_edge, edge_margin
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
            if (h >= last or b is None or b.score is None
                    or any(r.state.name == "RUNNING" for r in by_h[h].runs)):
                continue
            bests = [g[h].best for g in st.ladder.values() if h in g]
            top = max((x.score for x in bests if x is not None and x.score is not None),
                      default=b.score)
            out.append((by_h[h].label, h, top - b.score))
        return out

    def lr_band(self, g: Grid) -> tuple[float, float, float] | None:
        """(lowest, highest, best) LR of a grid whose score is within noise of its best run."""
        b = g.best
        if b is None or b.score is None:
            return None
        near = [lr for lr, v in g.scored.items()
                if v >= b.score - racing.margin(self.state.race.sigma, 1)]
        return min(near), max(near), b.lr

    @property
    def untuned(self) -> list[tuple[str, str]]:
        """(label, "low" | "high") for references whose best LR sits on the edge of their
        grid where the study's LR range stopped it (an edge within noise of its neighbour at a
        longer horizon is not gone past, and is no sign of an untuned LR: edge_margin)."""
        if not self.state.racing:
            return []
        s = self.state.settings
        margin = edge_margin(s.noise_sd, len(s.lengths) - 1)
        return [(g.label, e) for g in self.state.grids.values()
                if (e := at_edge(g.scored, margin))]

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
