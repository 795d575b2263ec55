"""Solver backends: the one place that talks to a solver library (today HiGHS through highspy)."""
