"""Smoke tests of the on-demand benchmarks (tiny configurations: report structure, not speed)."""
