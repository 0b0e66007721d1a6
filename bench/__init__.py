"""Benchmarks and load scripts: they print figures, they are not tests."""
