"""The engine's per-node economies for branch and bound on large networks: ``refine="output"`` (fixed
intermediate bounds), ``optimise["rows"]`` (only the output rows that still matter) and sparse torch
weights for very sparse layers. Each is sound by sampling and changes no bound it promises to keep."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from relumilp import matrices
from relumilp.bounds.engine import BETA, BoundEngine
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network

from conftest import random_mlp
from test_bounds_beta import assert_bounds_hold_on_regions


def _boxes(rng, batch, n):
    L = rng.uniform(-1, 0.2, size=(batch, n))
    return L, np.minimum(L + rng.uniform(0.3, 1.2, size=(batch, n)), 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_output_only_refinement_is_sound_from_parent_bounds(seed):
    """Children bounded with ``refine="output"`` from their parent's bounds and random splits contain
    every sampled forward value of their region, and their intermediate bounds are the parent's (never
    looser)."""
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 10, 10, 10, 3])
    engine = BoundEngine.for_network(net)
    batch = 8
    L, U = _boxes(rng, batch, 3)
    parent = engine.bounds(L, U)
    start = {k: (parent.lower[k], parent.upper[k]) for k in parent.lower}
    splits = {}
    for act in net.activations:  # splits of neurons the parent leaves unstable
        unstable = (parent.lower[act.inputs[0]] < 0) & (parent.upper[act.inputs[0]] > 0)
        splits[act.name] = np.where(unstable, rng.choice([-1, 0, 0, 0, 0, 0, 1], size=(batch, act.size)), 0)
    child = engine.bounds(L, U, start, refine="output", splits=splits,
                          optimise={"steps": 6, "sense": "both"})
    live = ~child.empty  # an empty node's bounds are vacuous (set at the kink)
    assert live.any()
    for name in parent.lower:  # within the final widening for the forward pass's rounding
        slack = 1e-12 * (1 + np.abs(parent.lower[name][live]) + np.abs(parent.upper[name][live]))
        assert np.all(child.lower[name][live] >= parent.lower[name][live] - slack)
        assert np.all(child.upper[name][live] <= parent.upper[name][live] + slack)
    assert_bounds_hold_on_regions(net, child, L, U, splits, rng, nodes=list(child.lower))


def test_refine_rejects_unknown_policies():
    net = random_mlp(np.random.default_rng(0), [2, 4, 1])
    with pytest.raises(Exception, match="refine must be"):
        BoundEngine.for_network(net).bounds(np.zeros((1, 2)), np.ones((1, 2)), refine="some")


def test_optimised_rows_only_tighten_the_chosen_rows_and_keep_the_others_parameters():
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [4, 12, 12, 5])
    engine = BoundEngine.for_network(net)
    batch, m = 6, 5
    L, U = _boxes(rng, batch, 4)
    splits = {act.name: rng.choice([-1, 0, 0, 1], size=(batch, act.size)) for act in net.activations}
    options = {"steps": 8, "sense": "lower"}
    full = engine.bounds(L, U, splits=splits, optimise=options)
    rows = np.zeros((batch, m), dtype=bool)
    for i in range(1, batch):  # two rows per box, so no box is padded with others ...
        rows[i, rng.choice(m, size=2, replace=False)] = True
    # ... but box 0, with none: it is bounded on its first two rows (padding), still soundly
    part = engine.bounds(L, U, splits=splits, optimise={**options, "rows": rows, "slopes": full.slopes})
    out = net.output
    plain = engine.bounds(L, U, splits=splits)
    live = ~part.empty & ~plain.empty
    # every row is at least as tight as the plain bound; chosen rows come from the optimisation
    assert np.all(part.lower[out][live] >= plain.lower[out][live] - 1e-12)
    for key, value in part.slopes.items():
        assert value.shape == full.slopes[key].shape
        # a row left out keeps its warm start exactly
        kept = ~rows
        kept[0, :2] = False  # box 0's padding rows were optimised
        assert np.array_equal(value[kept], full.slopes[key][kept]), key
    assert any(isinstance(k, tuple) and k[0] == BETA for k in part.slopes)
    assert_bounds_hold_on_regions(net, part, L, U, splits, rng)


def test_optimised_rows_have_the_output_shape():
    net = random_mlp(np.random.default_rng(1), [2, 4, 3])
    with pytest.raises(Exception, match="optimise rows must have shape"):
        BoundEngine.for_network(net).bounds(np.zeros((2, 2)), np.ones((2, 2)),
                                            optimise={"steps": 1, "sense": "lower", "rows": np.ones((2, 2), bool)})


def test_a_very_sparse_layer_stays_sparse_in_torch_with_the_same_bounds(monkeypatch):
    """Below :data:`~relumilp.matrices.SPARSE_PRODUCT_DENSITY` the engine multiplies sparse; its bounds
    equal those of the dense products up to round-off."""
    rng = np.random.default_rng(5)
    w = sp.random_array((200, 300), density=0.01, format="csr", rng=rng)
    assert isinstance(matrices.to_torch(w, torch.float64, None), matrices.TorchSparse)
    assert isinstance(matrices.to_torch(sp.csr_array(np.ones((20, 30))), torch.float64, None), torch.Tensor)
    net = Network([InputNode("x", 300), AffineNode("a", 200, ("x",), (w,), np.full(200, 0.1)),
                   ActivationNode("r", 200, ("a",)),
                   AffineNode("hidden", 20, ("r",), (rng.normal(size=(20, 200)),), np.zeros(20)),
                   ActivationNode("r2", 20, ("hidden",)),
                   AffineNode("out", 1, ("r2",), (np.ones((1, 20)),), np.zeros(1))], "out")
    assert matrices.is_sparse(net["a"].weights[0])
    L, U = -np.ones((2, 300)), np.ones((2, 300))
    sparse = BoundEngine.for_network(net)
    assert isinstance(sparse.ops[1].weights[0], matrices.TorchSparse)
    a = sparse.bounds(L, U, optimise={"steps": 3, "sense": "both"})
    monkeypatch.setattr(matrices, "SPARSE_PRODUCT_DENSITY", 0.0)
    dense = BoundEngine.for_network(net)
    assert isinstance(dense.ops[1].weights[0], torch.Tensor)
    b = dense.bounds(L, U, optimise={"steps": 3, "sense": "both"})
    for name in a.lower:
        np.testing.assert_allclose(a.lower[name], b.lower[name], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a.upper[name], b.upper[name], rtol=1e-9, atol=1e-9)


def test_optimised_bounds_carry_their_input_coefficients():
    """``input_coefficients`` are the optimised lower bounds' ``Λ``: with no steps they are the plain
    relaxation's (:meth:`BoundEngine.input_coefficients`), rows not optimised are zero (but for padding), and each row's
    linear bound ``Λ x + c`` (``c`` read off at the box's minimising corner) lies below every sampled
    output value."""
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [4, 12, 12, 5])
    engine = BoundEngine.for_network(net)
    L, U = _boxes(rng, 6, 4)
    plain = engine.bounds(L, U, optimise={"steps": 0, "sense": "lower"})
    reference = engine.input_coefficients(plain.lower, plain.upper)
    np.testing.assert_allclose(plain.input_coefficients, reference, rtol=1e-12, atol=1e-12)
    rows = rng.random((6, 5)) < 0.5
    rows[:, 0] = True
    tuned = engine.bounds(L, U, optimise={"steps": 8, "sense": "lower", "rows": rows})
    lam = tuned.input_coefficients
    assert lam.shape == (6, 5, 4)
    optimised = (lam != 0.0).any(axis=-1)  # the chosen rows, padded with others to the batch's largest count
    assert np.all(optimised[rows]) and np.all(optimised.sum(axis=1) <= rows.sum(axis=1).max())
    # the linear form's minimum over the box is the optimised bound (at most: intersected with the plain one)
    corner_min = np.einsum("bmn,bn->bm", np.clip(lam, 0, None), L) + np.einsum("bmn,bn->bm", np.clip(lam, None, 0), U)
    for b in range(6):
        X = L[b] + rng.random((2000, 4)) * (U[b] - L[b])
        Y = net.forward(X)
        for r in np.flatnonzero(optimised[b]):
            c = tuned.lower[net.output][b, r] - corner_min[b, r]  # largest c the bound allows: still below
            assert np.all(X @ lam[b, r] + c <= Y[:, r] + 1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_split_estimates_bound_each_child_and_never_fall_below_the_parent(seed):
    """The strong-branching estimates (:meth:`BoundEngine.split_bounds`): each child's estimated output
    lower bound lies below every sampled forward value of the child's region (the parent's splits plus
    the candidate's), is at least the parent's bound, and absent candidates are ``+inf``."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 10, 10, 3])
    engine = BoundEngine.for_network(net)
    names = [act.name for act in net.activations]
    batch, k = 5, 3
    L, U = _boxes(rng, batch, 3)
    root = engine.bounds(L, U)
    splits = {}
    for act in net.activations:  # a few parent splits among the unstable neurons
        unstable = (root.lower[act.inputs[0]] < 0) & (root.upper[act.inputs[0]] > 0)
        splits[act.name] = np.where(unstable, rng.choice([-1, 0, 0, 0, 1], size=(batch, act.size)), 0).astype(np.int8)
    start = {name: (root.lower[name], root.upper[name]) for name in root.lower}
    parent = engine.bounds(L, U, start, refine="output", splits=splits, optimise={"steps": 4, "sense": "lower"})
    layer = rng.integers(0, len(names), size=(batch, k))
    neuron = np.array([[rng.choice(np.flatnonzero(splits[names[layer[b, j]]][b] == 0)) for j in range(k)]
                       for b in range(batch)])  # candidates are neurons the parent has not split
    layer[0, -1] = -1  # an absent candidate
    estimates = engine.split_bounds(parent.lower, parent.upper, splits, parent.slopes, names, layer, neuron)
    assert estimates.shape == (batch, k, 2, 3)
    assert np.all(estimates[0, -1] == np.inf)
    out = parent.lower[net.output]
    for b in range(batch):
        for j in range(k):
            if layer[b, j] < 0:
                continue
            for side, sign in enumerate((1, -1)):
                est = estimates[b, j, side]
                assert np.all(est >= out[b] - 1e-12)
                child = {name: v[b : b + 1].copy() for name, v in splits.items()}
                child[names[layer[b, j]]][0, neuron[b, j]] = sign
                # an estimate, in float32 (BoundEngine._search_ops): below the values up to its precision
                slack = 1e-5 * (1.0 + np.abs(np.where(np.isinf(est), 0.0, est)))
                check = SimpleNamespace(lower={net.output: np.where(np.isinf(est), -np.inf, est - slack)[None]},
                                        upper={net.output: np.full((1, 3), np.inf)}, empty=np.zeros(1, dtype=bool))
                assert_bounds_hold_on_regions(net, check, L[b : b + 1], U[b : b + 1], child, rng, samples=1500)


def test_candidates_are_the_best_scored_open_neurons():
    from relumilp.bab import _Search

    search = _Search.__new__(_Search)  # only the two fields candidates() reads
    net = random_mlp(np.random.default_rng(0), [2, 3, 2, 1])
    search.fnet = net
    search.splittable = [act.name for act in net.activations]
    a, b = search.splittable
    open_ = {a: np.array([[True, False, True], [False, False, False]]), b: np.array([[True, True], [False, True]])}
    scores = {a: np.array([[0.5, 9.0, 0.1], [1.0, 1.0, 1.0]]), b: np.array([[0.7, 0.0], [0.0, 0.0]])}
    layer, neuron = search.candidates(np.arange(2), open_, scores, 3)
    assert layer.tolist() == [[1, 0, 0], [1, -1, -1]]
    assert neuron[0].tolist() == [0, 0, 2] and neuron[1, 0] == 1
