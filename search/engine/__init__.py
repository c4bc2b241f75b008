"""How trials execute.

- `workers`: the trial loop every worker runs (`workers.work`, ask/tell under a claim lock so
  the target is exact across processes and machines) and `--jobs` (`workers.run_many`);
  `runner.run` delegates to it.
- `array`: fused trial arrays, K trials trained as one model with continuous refill
  (`array.run`, `array.array_size`); `fused`: the array trainer itself, without Optuna.
"""

from __future__ import annotations

__all__ = ["array", "fused", "workers"]
