"""Ideal ReLU cuts (relumilp.formulation.ideal): valid at every forward pass, optimum unchanged, bound tighter."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import random_mlp
from oracles import brute_force_optima
from relumilp.domain import InputDomain
from relumilp.formulation.bigm import start_vector
from relumilp.formulation.ideal import IdealSeparator, add_cuts, root_cuts
from relumilp.optimization import optimize
from relumilp.pipeline import compile_network
from test_formulation_oracle import random_network


def tiny_relu_net(seed: int):
    """A ReLU MLP with 1-3 inputs and one or two hidden layers of 2-5 units, over a random box."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    hidden = [int(rng.integers(2, 6)) for _ in range(int(rng.integers(1, 3)))]
    net = random_mlp(rng, [n_in, *hidden, int(rng.integers(1, 3))], scale=1.5)
    center, half = rng.normal(size=n_in), rng.uniform(0.2, 2.0, size=n_in)
    return net, InputDomain(center - half, center + half)


def nets(count: int, offset: int = 0):
    """Alternately a ReLU-only net and a mixed-activation one (clipped / leaky layers keep big-M only)."""
    for seed in range(offset, offset + count):
        net, domain = tiny_relu_net(seed) if seed % 2 == 0 else random_network(seed)
        yield net, domain, seed


@pytest.mark.parametrize("seed", range(8))
def test_every_separated_cut_holds_at_exact_forward_passes(seed):
    """Cuts separated at LP optima and at random fractional points all hold at 10^4 sampled inputs,
    with x, y from the float64 forward pass and z from its activation pattern."""
    (net, domain, _), = nets(1, offset=seed)
    compiled = compile_network(net, domain)
    rng = np.random.default_rng(seed)
    separator = IdealSeparator(compiled.network, compiled.milp)
    blocks, uppers = [], []
    for k in range(net.output_size):  # cuts at the LP points of the loop
        c = np.zeros(net.output_size)
        c[k] = 1.0
        for sense in ("min", "max"):
            base = compiled.milp.with_objective(c, sense)
            cut, _ = root_cuts(compiled.network, base)
            blocks.append(cut.A[[*range(base.num_rows, cut.num_rows)]])
            uppers.append(cut.row_upper[base.num_rows:])
    milp = compiled.milp
    lower, upper = np.nan_to_num(milp.col_lower, neginf=-1.0), np.nan_to_num(milp.col_upper, posinf=1.0)
    for _ in range(200):  # and at random points of the column box (any I can come up)
        A, u = separator.separate(rng.uniform(lower, upper), tolerance=0.0)
        blocks.append(A)
        uppers.append(u)
    A, u = sp.vstack(blocks).tocsr(), np.concatenate(uppers)
    assert A.shape[0] > 0 or separator.num_neurons == 0
    points = domain.sample(10_000, np.random.default_rng(seed + 1))
    V = np.array([start_vector(compiled.network, milp, x) for x in points])
    activity = (A @ V.T).T
    size = 1.0 + abs(A) @ np.abs(V.T)
    assert np.all(activity - u <= 1e-9 * (size.T + np.abs(u))), np.max(activity - u)


@pytest.mark.parametrize("seed", range(0, 16, 2))
def test_cut_rows_hold_in_exact_arithmetic_where_they_are_tight(seed):
    """Every cut row holds, in rational arithmetic and with no tolerance, at the points where the exact cut
    is tight (``z = 1``: inputs outside ``I`` at ``Ub``; ``z = 0``: inputs in ``I`` at ``Lb``; the other
    inputs at box corners): the row's float64 coefficients and right-hand side are rounded outward. Without
    that margin about half of these checks fail by a few units in the last place."""
    from fractions import Fraction

    (net, domain, _), = nets(1, offset=seed)
    compiled = compile_network(net, domain)
    separator = IdealSeparator(compiled.network, compiled.milp)
    rng = np.random.default_rng(seed)
    checked = 0
    for layer in separator.layers:
        for _ in range(20):
            v = np.zeros(separator.num_columns)
            v[layer.x] = rng.uniform(compiled.milp.col_lower[layer.x], compiled.milp.col_upper[layer.x])
            v[layer.y] = rng.uniform(0.0, 2.0, layer.y.size)
            v[layer.z] = rng.uniform(0.0, 1.0, layer.z.size)
            A, upper = separator.separate(v, tolerance=-np.inf)
            A = A.tocsr()
            rows = {}  # binary column -> the row of that neuron's cut (y columns are the next layer's x)
            for r in range(A.shape[0]):
                own = np.intersect1d(A.indices[A.indptr[r]:A.indptr[r + 1]], layer.z)
                if own.size:
                    rows[int(own[0])] = r
            for k, ycol in enumerate(layer.y):
                r = rows.get(int(layer.z[k]))
                if r is None:
                    continue
                cols, vals = A.indices[A.indptr[r]:A.indptr[r + 1]], A.data[A.indptr[r]:A.indptr[r + 1]]
                entries = layer.row == k  # the neuron's nonzero weights (the other inputs take no part)
                inputs, w, lo, hi = layer.x[layer.col[entries]], layer.w[entries], layer.lo[entries], layer.hi[entries]
                in_set = np.isin(inputs, cols)
                for z in (0, 1):
                    x = np.where(rng.random(inputs.size) < 0.5, lo, hi)
                    if z == 1:
                        x = np.where(in_set, x, hi)
                    else:
                        x = np.where(in_set, lo, x)
                    pre = sum(Fraction(float(wi)) * Fraction(float(xi)) for wi, xi in zip(w, x)) + Fraction(
                        float(layer.b[k]))
                    if (pre >= 0) != bool(z):  # not a point of the neuron's set
                        continue
                    value = dict(zip(inputs.tolist(), x.tolist()))
                    value[int(ycol)] = max(pre, Fraction(0))
                    value[int(layer.z[k])] = z
                    lhs = sum(Fraction(float(a)) * Fraction(value.get(int(c), 0)) for c, a in zip(cols, vals))
                    assert lhs <= Fraction(float(upper[r])), (seed, k, z, float(lhs - Fraction(float(upper[r]))))
                    checked += 1
    assert checked > 0 or separator.num_neurons == 0


@pytest.mark.parametrize("seed", range(8))
def test_root_bound_with_cuts_is_never_weaker(seed):
    net, domain = tiny_relu_net(100 + seed)
    compiled = compile_network(net, domain)
    for sense, sign in (("max", 1.0), ("min", -1.0)):
        milp = compiled.milp.with_objective(np.ones(net.output_size), sense)
        _, stats = root_cuts(compiled.network, milp)
        if stats["root_bound_before"] is None:
            continue
        slack = 1e-7 * max(1.0, abs(stats["root_bound_before"]))
        assert sign * (stats["root_bound_after"] - stats["root_bound_before"]) <= slack


def test_root_bound_is_strictly_tighter_on_some_nets():
    tighter = 0
    for seed in range(12):
        net, domain = tiny_relu_net(200 + seed)
        compiled = compile_network(net, domain)
        _, stats = root_cuts(compiled.network, compiled.milp.with_objective(np.ones(net.output_size), "max"))
        if stats["root_bound_before"] is not None and stats["added"]:
            tighter += stats["root_bound_after"] < stats["root_bound_before"] - 1e-6 * max(1.0, abs(stats["root_bound_before"]))
    assert tighter >= 3


def test_cut_rows_are_named_and_the_model_keeps_its_columns():
    net, domain = tiny_relu_net(4)
    compiled = compile_network(net, domain)
    milp = compiled.milp.with_objective(np.ones(net.output_size), "max")
    cut, stats = root_cuts(compiled.network, milp)
    assert cut.num_columns == milp.num_columns and cut.num_rows == milp.num_rows + stats["added"]
    if stats["added"]:
        assert cut.row_names()[-1].startswith("ideal_cuts[")
    again = add_cuts(cut, cut.A[[cut.num_rows - 1]], cut.row_upper[-1:])
    assert again.row_ranges["ideal_cuts"] == (milp.num_rows, again.num_rows)


@pytest.mark.parametrize("batch", [0, 1] + [pytest.param(b, marks=pytest.mark.slow) for b in range(2, 5)])
def test_optimum_with_cuts_equals_big_m_and_brute_force(batch):
    """50 tiny networks (ten per batch; 20 in the default suite), min and max: ideal_cuts, bigm and the
    oracle agree."""
    for net, domain, seed in nets(10, offset=300 + 10 * batch):
        k = net.output_size - 1
        coefficients = np.zeros(net.output_size)
        coefficients[k] = 1.0
        expected = brute_force_optima(net, domain.lower, domain.upper, coefficients)
        for sense in ("min", "max"):
            choice = {"minimize" if sense == "min" else "maximize": k}
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a forward-pass mismatch warning fails the test
                cut = optimize(net, domain, formulation="ideal_cuts", **choice)
                big_m = optimize(net, domain, method="milp", **choice)
            assert cut.status == big_m.status == "optimal", (seed, sense, cut.notes)
            assert "cuts" in cut.stats and "cuts" not in big_m.stats
            assert cut.objective == pytest.approx(expected[sense][0], abs=1e-6, rel=1e-6), seed
            assert cut.objective == pytest.approx(big_m.objective, abs=1e-6, rel=1e-6), seed


def test_unknown_formulation_is_refused():
    from relumilp.errors import RelumilpError

    net, domain = tiny_relu_net(0)
    with pytest.raises(RelumilpError):
        optimize(net, domain, maximize=0, formulation="extended")


def test_cli_solve_with_ideal_cuts(capsys):
    from relumilp.cli import main

    args = ["solve", "--example", "peaks", "--maximize", "0"]
    assert main([*args, "--formulation", "ideal_cuts", "--json"]) == 0
    cut = json.loads(capsys.readouterr().out)
    assert main([*args, "--json"]) == 0
    big_m = json.loads(capsys.readouterr().out)
    assert cut["status"] == big_m["status"] == "optimal"
    assert cut["objective"] == pytest.approx(big_m["objective"], abs=1e-6)
    stats = cut["stats"]["cuts"]
    assert stats["added"] > 0 and stats["root_bound_after"] < stats["root_bound_before"]
    assert main([*args, "--formulation", "ideal_cuts"]) == 0
    assert "ideal cuts in" in capsys.readouterr().out


def test_sparse_weights_are_never_densified(monkeypatch):
    """Cuts over a network stored with sparse (CSR) weights come from the nonzeros alone (verivital's
    lowered max-pool has an 8,682 x 23,328 layer), and equal those of the same network stored dense."""
    from dataclasses import replace

    import relumilp.matrices as matrices
    from relumilp.ir import AffineNode, Network

    net, domain = tiny_relu_net(4)
    sparse_net = Network([replace(node, weights=tuple(sp.csr_array(w) for w in node.weights))
                          if isinstance(node, AffineNode) else node for node in net], net.output)
    assert all(node.is_sparse for node in sparse_net.affines)
    dense = compile_network(net, domain)
    sparse = compile_network(sparse_net, domain)
    monkeypatch.setattr(matrices, "densify", lambda *a, **k: pytest.fail("densified"))
    v = np.random.default_rng(0).uniform(np.nan_to_num(dense.milp.col_lower, neginf=-1.0),
                                         np.nan_to_num(dense.milp.col_upper, posinf=1.0))
    A, upper = IdealSeparator(sparse.network, sparse.milp).separate(v, tolerance=-np.inf)
    B, upper_dense = IdealSeparator(dense.network, dense.milp).separate(v, tolerance=-np.inf)
    assert A.shape[0] > 0
    np.testing.assert_array_equal(A.toarray(), B.toarray())
    np.testing.assert_array_equal(upper, upper_dense)
