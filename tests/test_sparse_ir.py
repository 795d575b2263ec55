"""Sparse affine weights (scipy CSR) in the IR: every pass gives what the same dense network gives,
bounds are sound by sampling, and nothing large is densified."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from relumilp import matrices
from relumilp.bounds import compute_bounds
from relumilp.bounds.engine import BoundEngine, network_ops, roundoff_margin
from relumilp.bounds.interval import interval_bounds
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError
from relumilp.formulation.bigm import build_milp
from relumilp.frontends._builder import NetworkBuilder
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network
from relumilp.pruning import prune
from relumilp.scaling import scale_network


def _pair(seed=0, n_in=6, width=40, density=0.15):
    """The same residual network twice: sparse CSR weights and their dense copies."""
    rng = np.random.default_rng(seed)
    w0 = sp.random_array((width, n_in), density=0.5, rng=rng, data_sampler=rng.standard_normal).tocsr()
    w1 = sp.random_array((width, width), density=density, rng=rng, data_sampler=rng.standard_normal).tocsr()
    skip = sp.eye_array(width, format="csr")
    w2 = sp.random_array((3, width), density=0.5, rng=rng, data_sampler=rng.standard_normal).tocsr()
    b0, b1, b2 = rng.standard_normal(width) * 0.3, rng.standard_normal(width) * 0.3, rng.standard_normal(3)

    def build(f):
        return Network([
            InputNode("input", n_in),
            AffineNode("l0", width, ("input",), (f(w0),), b0),
            ActivationNode("a0", width, ("l0",), kind="relu"),
            AffineNode("l1", width, ("a0", "l0"), (f(w1), f(skip)), b1),
            ActivationNode("a1", width, ("l1",), kind="leaky_relu", alpha=0.1),
            AffineNode("out", 3, ("a1",), (f(w2),), b2),
        ], "out")

    return build(lambda w: w), build(lambda w: w.toarray())


def _samples(domain, count=3000, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(domain.lower, domain.upper, size=(count, domain.lower.size))
    return np.vstack([x, domain.lower, domain.upper])


def test_sparse_network_matches_dense_in_forward_hash_and_file(tmp_path):
    sparse, dense = _pair()
    assert sparse["l1"].is_sparse and not dense["l1"].is_sparse
    x = _samples(InputDomain.box([-1.0] * 6, [1.0] * 6), 50)
    np.testing.assert_allclose(sparse.forward(x), dense.forward(x), rtol=1e-13, atol=1e-13)
    assert sparse.content_hash == dense.content_hash  # the same function, whatever the storage
    sparse.save(tmp_path / "s.npz")
    loaded = Network.load(tmp_path / "s.npz")
    assert loaded["l1"].is_sparse and loaded.content_hash == sparse.content_hash
    np.testing.assert_array_equal(loaded.forward(x), sparse.forward(x))
    np.testing.assert_array_equal(sparse["l0"].weight, dense["l0"].weight)


def test_dense_view_of_a_large_sparse_weight_is_refused():
    n = 5000  # 25e6 entries: above the 2^24 limit
    node = AffineNode("big", n, ("input",), (sp.eye_array(n, format="csr"),), np.zeros(n))
    net = Network([InputNode("input", n), node], "big")
    with pytest.raises(InvalidNetworkError, match="too large to densify"):
        net["big"].weight
    assert matrices.max_row_terms(net["big"].weights[0]) == 1  # the rounding count of a sparse row
    small = AffineNode("s", 3, ("input",), (sp.eye_array(3, format="csr"),), np.zeros(3))
    with pytest.raises(InvalidNetworkError, match="limit 8"):
        small.dense(limit=8)
    assert np.array_equal(small.dense(limit=9), np.eye(3))


def test_interval_symbolic_and_milp_of_sparse_match_dense_and_are_sound():
    sparse, dense = _pair(seed=3)
    domain = InputDomain.box([-1.0] * 6, [1.0] * 6)
    x = _samples(domain)
    values = sparse.forward_all(x)
    for method in ("interval", "symbolic"):
        bs, bd = compute_bounds(sparse, domain, method), compute_bounds(dense, domain, method)
        for node in sparse.order:
            lo, hi = bs[node.name]
            assert np.all(values[node.name] >= lo) and np.all(values[node.name] <= hi), (method, node.name)
            np.testing.assert_allclose(lo, bd.lower[node.name], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(hi, bd.upper[node.name], rtol=1e-9, atol=1e-9)
    # the engine with every weight held as torch sparse (as for layers too large to densify)
    engine = BoundEngine(network_ops(sparse, dense_limit=0), sparse, roundoff_margin(sparse))
    lo, hi = engine.bounds(domain.lower[None], domain.upper[None])
    reference = compute_bounds(sparse, domain, "symbolic")
    for node in sparse.order:
        assert np.all(values[node.name] >= lo[node.name][0]) and np.all(values[node.name] <= hi[node.name][0])
        np.testing.assert_allclose(lo[node.name][0], reference.lower[node.name], rtol=1e-9, atol=1e-9)
    bounds = interval_bounds(sparse, domain)
    a, b = build_milp(sparse, bounds), build_milp(dense, bounds)
    assert (a.A != b.A).nnz == 0 and np.array_equal(a.row_lower, b.row_lower)


def test_chunked_back_substitution_equals_one_block(monkeypatch):
    from relumilp.bounds import engine as engine_module

    sparse, _ = _pair(seed=4)
    domain = InputDomain.box([-1.0] * 6, [1.0] * 6)
    whole = BoundEngine.for_network(sparse).bounds(domain.lower[None], domain.upper[None])
    monkeypatch.setattr(engine_module, "COEFFICIENT_BUDGET", 2 * 40 * 7)  # seven neurons per block
    chunked = BoundEngine.for_network(sparse).bounds(domain.lower[None], domain.upper[None])
    for name in whole.lower:
        np.testing.assert_allclose(chunked.lower[name], whole.lower[name], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(chunked.upper[name], whole.upper[name], rtol=1e-12, atol=1e-12)


def test_scaling_and_pruning_keep_sparse_weights_and_the_function():
    sparse, _ = _pair(seed=5)
    domain = InputDomain.box([-0.5] * 6, [0.5] * 6)
    bounds = compute_bounds(sparse, domain, "symbolic")
    x = _samples(domain, 200)
    scaled, _ = scale_network(sparse, bounds)
    assert scaled["l1"].is_sparse
    np.testing.assert_allclose(scaled.forward(x), sparse.forward(x), rtol=1e-12, atol=1e-12)
    pruned = prune(sparse, bounds)
    np.testing.assert_allclose(pruned.forward(x), sparse.forward(x), rtol=1e-10, atol=1e-10)


def test_builder_never_builds_a_dense_identity_for_wide_values():
    b = NetworkBuilder()
    x = b.input((60_100,), batched=False)
    h = b.relu(b.add(x, np.ones(60_100)))
    net = b.finish(b.index(h, slice(0, 10)), "wide")
    assert all(node.is_sparse for node in net.affines)
    assert net.forward(np.full(60_100, -2.0)).tolist() == [0.0] * 10


@pytest.mark.parametrize("rows", [5, matrices.SPARSE_PRODUCT_ROWS + 7])
def test_torch_sparse_products_and_their_gradients_match_dense(rows):
    """``TorchSparse.lmatmul``/``rmatmul`` and the gradients through them (our own backward, with the
    transposed CSR; in blocks of rows beyond ``SPARSE_PRODUCT_ROWS``) equal the dense products' ones."""
    import torch

    rng = np.random.default_rng(rows)
    w = sp.random_array((30, 50), density=0.1, rng=rng, data_sampler=rng.standard_normal).tocsr()
    sparse = matrices.TorchSparse(w, torch.float64, None)
    dense = torch.tensor(w.toarray())
    for product, reference, width in ((sparse.lmatmul, lambda a: a @ dense, 30),
                                      (sparse.rmatmul, lambda a: a @ dense.T, 50)):
        a = torch.tensor(rng.standard_normal((rows, 2, width)) if product == sparse.lmatmul
                         else rng.standard_normal((rows, width)), requires_grad=True)
        weights = torch.tensor(rng.standard_normal(tuple(reference(a).shape)))
        got = product(a)
        torch.testing.assert_close(got, reference(a), rtol=1e-12, atol=1e-12)
        (grad,) = torch.autograd.grad((got * weights).sum(), a)
        (expected,) = torch.autograd.grad((reference(a) * weights).sum(), a)
        torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
