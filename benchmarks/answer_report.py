"""What a contest study answered, and how it held up on the test split, as markdown tables.

    .venv/bin/python benchmarks/answer_report.py --storage sqlite:///search.db --study lr-fashion

Reads the store only (the study and its `<study>.validate` companion), through the project's
own readers: `search.contest.standing` (the contenders on the validation split) and
`search.validation.companion.validation` (the test split). Prints the standing, the
recommendation's test accuracy against every tuned reference (paired over the same seeds:
margin, 95% interval, p), and the epochs spent: the study's trials (pruned ones count the
epochs they trained) and the validation runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from search import answer, record, stats  # noqa: E402
from search.answer.text import contest_verdict, mattered, validation_verdict  # noqa: E402
from search.validation.companion import companion_name  # noqa: E402


def _epochs(trials: list) -> int:
    return sum(record.epochs_trained(t) for t in trials
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", required=True)
    p.add_argument("--study", required=True)
    a = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=a.study, storage=a.storage)
    rec = answer.recommend(study)
    st = rec.standing
    print(f"### {a.study}: the contest (validation split)\n")
    if st is not None:
        print("| # | contender | role | LR | val accuracy (mean ± sd) | seeds |")
        print("| ---: | --- | --- | ---: | --- | ---: |")
        ranked = [st.leader] + [g.contender for g in st.gaps]
        for i, c in enumerate(ranked, start=1):
            print(f"| {i} | {c.label} | {c.role} | {c.schedule.get('lr', 0):.3g} | "
                  f"{c.mean:.4f} ± {c.std:.4f} | {c.n} |")
        print(f"\nverdict: {contest_verdict(st)}\n")
        for line in mattered(st):
            print(f"- {line}")
        for label, edge in st.untuned:
            print(f"- not tuned: {label} (best LR at the {edge} edge of the study's range)")
    trials = study.get_trials(deepcopy=False)
    stages: dict[str, int] = {}
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            r = record.of(t)
            stage = r.stage if r.stage is not None else "shape"
            stages[stage] = stages.get(stage, 0) + record.epochs_trained(t)
    search_epochs = _epochs(trials)
    print(f"\nsearch: {len(trials)} trials, {search_epochs} epochs "
          f"({', '.join(f'{k} {v}' for k, v in sorted(stages.items()))})\n")
    v = rec.validation
    if v is None or v.winner is None:
        print("not validated")
        return
    comp = optuna.load_study(study_name=companion_name(a.study), storage=a.storage)
    val_epochs = _epochs(comp.get_trials(deepcopy=False))
    w = v.winner
    print(f"### {a.study}: the test split ({v.epochs} epochs x {v.steps_per_epoch} steps, "
          f"{w.n} seeds)\n")
    print("| schedule | role | test accuracy (mean ± sd) | recommendation minus it "
          "[95% interval] | p |")
    print("| --- | --- | --- | --- | ---: |")
    for r in v.ranked:
        if r.key == w.key:
            print(f"| **{r.label}** | recommended | {r.mean:.4f} ± {r.std:.4f} | | |")
            continue
        c = stats.paired(w.scores, r.scores)
        print(f"| {r.label} | {r.role} | {r.mean:.4f} ± {r.std:.4f} | "
              f"{c.margin:+.4f} [{c.low:+.4f}, {c.high:+.4f}] | {c.p_value:.2g} |")
    print(f"\nverdict: {validation_verdict(v)}\n")
    print(f"validation: {len(comp.trials)} runs, {val_epochs} epochs; search + validation: "
          f"{search_epochs + val_epochs} epochs")


if __name__ == "__main__":
    main()
