"""Measurement side: timing, per-operator profiles and benchmarks of converted submodels."""
