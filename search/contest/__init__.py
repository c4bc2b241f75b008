"""The contest: how the search earns its answer (the study file's [contest]).

- search.contest.race: the racing rule over seeds (pure).
- search.contest.contenders: the reference shapes, contender identity, the LR grids.
- search.contest.state: the contest's state, derived from the trials in the store.
- search.contest.policy: the claim policy that runs it (references, shapes, race).
- search.contest.standing: what it concluded, for every reader (`best`, `studies`, the
  report, the dashboard, `validate`).
"""
