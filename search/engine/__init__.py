"""How trials execute, below the commands (which call in here) and above `runner` (sampler,
pruner, study and recording helpers, which never call back).

- `claim`: the protocol every trial loop follows (claim under the lock with the exact global
  target, the worker's seed stream, heartbeats and stale-trial retries, the end of a trial,
  the failure streak); `signals`: SIGTERM ends cleanly (exit 0), Ctrl-C exits 130.
- `sequential`: one trial at a time (`sequential.run`); also `validate`'s loop.
- `array`: fused arrays of K trials with continuous refill (`array.run`); the training itself
  is `objectives.fused_train`.
- `workers`: worker processes (`run --jobs`, `validate --jobs`) spread over the GPUs.
"""

from __future__ import annotations

__all__ = ["array", "claim", "sequential", "signals", "workers"]
