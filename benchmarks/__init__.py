"""Benchmark scripts: each prints a table and writes CSV (and figures) under benchmarks/results/."""
