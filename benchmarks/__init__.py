"""Benchmark scripts (run as files: `python benchmarks/NAME.py`) and what they share:
`benchmarks.replay`, searches replayed on recorded learning curves; `benchmarks.shell`, what
a measurement records about where it ran."""
