"""Benchmarks of tap-custobar against the local sandbox; run ``python -m benchmarks.bench``."""
