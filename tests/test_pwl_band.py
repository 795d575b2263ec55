"""The incremental band encoding (relumilp.formulation.pwl) against independent oracles: np.interp of
the band's end values at fixed inputs, and the vertex enumeration of a linear objective over the band."""

from __future__ import annotations

import numpy as np
import pytest

from relumilp.backends.highs import solve_milp
from relumilp.errors import RelumilpError
from relumilp.formulation.milp import MILPAssembler
from relumilp.formulation.pwl import add_band, start_values


def random_band(rng, n, exact=False):
    t, lo, hi = [], [], []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        points = np.sort(rng.uniform(-3.0, 3.0, k + 1))
        while np.any(np.diff(points) < 1e-3):
            points = np.sort(rng.uniform(-3.0, 3.0, k + 1))
        low = rng.normal(0.0, 1.0, k + 1)
        t.append(points)
        lo.append(low)
        hi.append(low if exact else low + rng.uniform(0.0, 0.5, k + 1))
    return t, lo, hi


def build(t, lo, hi, x_lower, x_upper):
    n = len(t)
    asm = MILPAssembler()
    x = asm.add_columns(x_lower, x_upper)
    y = asm.add_columns(np.full(n, -np.inf), np.full(n, np.inf))
    groups = add_band(asm, "band", x, y, t, lo, hi)
    milp = asm.finish(node_columns={"x": x, "y": y}, binaries={}, input_name="x", output_name="y")
    return milp, x, y, groups


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("exact", [False, True])
def test_band_at_fixed_inputs_is_the_interpolants(seed, exact):
    rng = np.random.default_rng(seed)
    t, lo, hi = random_band(rng, 12, exact)
    point = np.array([rng.choice([rng.uniform(p[0], p[-1]), rng.choice(p)]) for p in t])
    milp, x, y, groups = build(t, lo, hi, point, point)
    assert milp.num_binaries == sum(p.size - 2 for p in t)
    expected_hi = np.array([np.interp(v, p, h) for v, p, h in zip(point, t, hi)])
    expected_lo = np.array([np.interp(v, p, l) for v, p, l in zip(point, t, lo)])
    for sense, expected in (("max", expected_hi), ("min", expected_lo)):
        run = solve_milp(milp.with_objective(np.ones(len(t)), sense))
        assert run.status == "optimal"
        assert np.allclose(run.x[y], expected, atol=1e-7), (sense, run.x[y] - expected)
    # the start values of the forward point are feasible (y anywhere inside the band)
    vector = np.zeros(milp.num_columns)
    vector[x], vector[y] = point, 0.5 * (expected_lo + expected_hi)
    for g in groups:
        d, z = start_values(g, point)
        vector[g.delta], vector[g.z] = d, z
    assert milp.max_violation(vector) <= 1e-9


@pytest.mark.parametrize("seed", range(8))
def test_linear_objective_over_the_band_equals_vertex_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    t, lo, hi = random_band(rng, 10, exact=bool(seed % 2))
    c, d = rng.normal(size=10), rng.normal(size=10)
    lower = np.array([p[0] for p in t])
    upper = np.array([p[-1] for p in t])
    milp, x, y, _ = build(t, lo, hi, lower, upper)
    objective = np.zeros(milp.num_columns)
    objective[y], objective[x] = c, d
    milp.objective, milp.sense = objective, "min"
    run = solve_milp(milp)
    # a linear function over a polygon union is minimal at a vertex (t_j, lo_j) or (t_j, hi_j)
    brute = sum(min(np.min(ci * l + di * p), np.min(ci * h + di * p)) for ci, di, p, l, h in zip(c, d, t, lo, hi))
    assert run.status == "optimal"
    assert abs(run.objective - brute) <= 1e-6 * (1 + abs(brute))


def test_bad_bands_are_refused():
    asm = MILPAssembler()
    x, y = asm.add_columns([0.0], [1.0]), asm.add_columns([0.0], [1.0])
    with pytest.raises(RelumilpError, match="increasing"):
        add_band(asm, "b", x, y, [np.array([0.0, 1.0, 0.5])], [np.zeros(3)], [np.zeros(3)])
    with pytest.raises(RelumilpError, match="lower <= upper"):
        add_band(asm, "b", x, y, [np.array([0.0, 1.0])], [np.ones(2)], [np.zeros(2)])
