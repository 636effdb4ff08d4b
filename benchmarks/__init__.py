"""Benchmarks of the LINE campaign delivery project: ``python -m benchmarks.run [CASE...]``."""
