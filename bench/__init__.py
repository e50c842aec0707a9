"""Benchmarks; `python -m bench` runs the comparison of issue 8 (see bench/README.md)."""
