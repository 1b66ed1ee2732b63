"""Reproducible benchmarks; each prints a comparison, not a verdict."""
