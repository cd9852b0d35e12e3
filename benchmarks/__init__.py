"""Benchmarks; ``python -m benchmarks.run`` (``make bench``) runs every ``bench_*`` module."""
