"""`validate`: is the recommendation really better, on new seeds and the test split?

- `search.validation.validate`: the command, its runs through the engine's claim protocol.
- `search.validation.plan`: what it trains (the recommendation, tuned references, LR sweeps).
- `search.validation.companion`: the companion study it writes (`<study>.validate`) and reading
  its results back, for every reader (`best`, `studies`, the report).

Empty on purpose: the companion sits low in the layering (search.answer reads it), the command
high, so importing the package imports neither.
"""
