"""What a contest concluded, for every reader: the recommendation, its margin over the best
tuned reference on shared validation seeds, who is within noise, the LR bands, a verdict.

`standing(study)` is the one function that names the recommendation of a contest study;
`best`, `studies`, the report, its figures and `validate` all ask it. Everything here is on
the validation split (the test split is `validate`'s, and chooses nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import optuna

from search import record, stats
from search.contest import law as lr_law
from search.contest import race as racing
from search.contest.contenders import REFERENCES, at_edge
from search.contest.state import Contender, Grid, Settings, State, derive
from search.goal import Goal
from search.stats import json_number as _num

__all__ = ["Standing", "standing"]


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
        without: tuned at a shorter horizon only (a contest run with rungs at short horizons,
        which stopped clear losers there)."""
        st = self.state
        last = st.settings.lengths[-1]
        if len(st.settings.lengths) < 2 or not st.racing:
            return []
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
            return "nothing has finished yet"
        sure = "" if self.decided else (
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

    def lines(self) -> list[str]:
        """The contest for people, indented to sit in `best`'s output."""
        st, lead = self.state, self.leader
        if lead is None:
            return ["  contest  : no contender has finished a run yet"]
        stage = ("race decided" if self.decided else
                 "race not decided" if st.racing and not st.running else
                 "race running" if st.racing else "tuning the references and searching shapes")
        goal = self.goal
        out = [f"  contest  : {stage}; seed noise {st.race.sigma:.4f} (sd of one run); "
               f"validation split; {goal.metric}, {goal.better} is better"]
        out.append(f"    {'#':>2}  {'contender':<40} {'role':<10} {goal.short():<17} seeds  LR")
        ranked = [lead] + [g.contender for g in self.gaps]
        for i, c in enumerate(ranked, start=1):
            acc = (f"{goal.text(c.mean)} ± {c.std:.4f}" if c.n > 1 else goal.text(c.mean))
            out.append(f"    {i:>2}  {c.label[:40]:<40} {c.role:<10} {acc:<17} {c.n:<5}  "
                       f"{c.schedule.get('lr', math.nan):.3g}")
        out.append(f"  verdict  : {self.verdict()}")
        out += [f"  mattered : {line}" for line in self.mattered()]
        for g in st.grids.values():
            band = self.lr_band(g)
            if band is not None:
                lo, hi, best = band
                span = f"{lo:.3g}" if lo == hi else f"{lo:.3g} to {hi:.3g}"
                out.append(f"  LR band  : {g.label}: {span} within noise of its best "
                           f"({best:.3g}; {len(g.scored)} LRs tried)")
        for label, edge in self.untuned:
            out.append(f"  not tuned: {label}: its best LR is the {edge}est tried, and the "
                       "study's LR range stops the grid there (widen `space.lr`)")
        for label, h, behind in self.stopped:
            out.append(f"  stopped  : {label} at {h} epochs, {goal.gap(behind)} behind the "
                       "best reference there (not tuned at longer horizons)")
        for law in self.laws.values():
            lrs = ", ".join(f"{lr:.3g}" for lr in law.lrs)
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




def standing(study: optuna.Study) -> Standing | None:
    """The contest of `study`, or None where the study is a plain search."""
    settings = Settings.of(record.study_of(study))
    if settings is None:
        return None
    return Standing(study.study_name, derive(study.get_trials(deepcopy=False), settings))
