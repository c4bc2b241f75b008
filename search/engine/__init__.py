"""How trials execute. `runner.run` is the sequential loop (one trial at a time).

- `array`: fused trial arrays, K trials trained as one model with continuous refill
  (`array.run`, `array.array_size`); `fused`: the array trainer itself, without Optuna.
"""

from __future__ import annotations

__all__ = ["array", "fused"]
