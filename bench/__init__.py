"""Benchmarks of issue 4: scripts anyone can run that print figures and write docs/benchmarks.md.

`python -m bench.run_all` runs them all; each `python -m bench.<name>` runs one (see bench/README.md).
"""
