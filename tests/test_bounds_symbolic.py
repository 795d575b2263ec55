"""Symbolic (back-substitution) bounds: sound by sampling, never looser than interval, differentiable."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from conftest import random_mlp
from relumilp.bounds import compute_bounds, interval_bounds
from relumilp.activations import from_spec
from relumilp.bounds.symbolic import mlp_bounds, symbolic_bounds
from relumilp.domain import InputDomain
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network

ACTIVATIONS = [
    ("relu", 0.0, math.inf),
    ("leaky_relu", 0.2, math.inf),
    ("leaky_relu", -0.4, math.inf),
    ("leaky_relu", 0.9, math.inf),
    ("clipped_relu", 0.0, 1.0),
    ("clipped_relu", 0.0, 0.25),
    ("identity", 0.0, math.inf),
]


def samples_with_corners(domain: InputDomain, n: int = 100_000, seed: int = 0) -> np.ndarray:
    """``n`` uniform samples of the domain plus every corner of its box that satisfies its rows."""
    corners = np.array(list(itertools.product(*zip(domain.lower, domain.upper))))
    corners = corners[domain.contains(corners)]
    return np.vstack([domain.sample(n, seed), corners])


def mixed_mlp(seed: int, sizes=None) -> Network:
    """A random MLP mixing ReLU, LeakyReLU (positive and negative slopes) and clipped ReLU layers."""
    rng = np.random.default_rng(seed)
    if sizes is None:
        sizes = [int(rng.integers(2, 5))] + [int(rng.integers(3, 10)) for _ in range(int(rng.integers(1, 4)))] + [2]
    layers = [
        (rng.normal(0.0, 1.5 / np.sqrt(a), size=(b, a)), rng.normal(0.0, 0.3, size=b)) for a, b in zip(sizes[:-1], sizes[1:])
    ]
    specs = []
    for _ in range(len(layers) - 1):
        kind, alpha, cap = ACTIVATIONS[int(rng.integers(0, 6))]
        specs.append({"kind": kind, "alpha": alpha, "cap": cap} if kind != "relu" else "relu")
    return Network.sequential(layers, specs)


def residual_dag(seed: int = 1) -> Network:
    """A DAG with multi-input affine nodes (skip connections) and three activation kinds."""
    rng = np.random.default_rng(seed)
    n = 3
    nodes = [
        InputNode("x", n),
        AffineNode("a1", 8, ("x",), (rng.normal(size=(8, n)),), rng.normal(size=8) * 0.3),
        ActivationNode("r1", 8, ("a1",), kind="relu"),
        AffineNode("a2", 8, ("r1", "x"), (rng.normal(size=(8, 8)) / 3, rng.normal(size=(8, n))), rng.normal(size=8) * 0.3),
        ActivationNode("r2", 8, ("a2",), kind="clipped_relu", cap=1.0),
        AffineNode("a3", 6, ("r2", "r1"), (rng.normal(size=(6, 8)), rng.normal(size=(6, 8))), rng.normal(size=6) * 0.3),
        ActivationNode("r3", 6, ("a3",), kind="leaky_relu", alpha=-0.2),
        AffineNode("out", 2, ("r3", "a2"), (rng.normal(size=(2, 6)), rng.normal(size=(2, 8))), np.zeros(2)),
    ]
    return Network(nodes, "out", name="residual")


def assert_not_looser(tight, loose, net: Network, slack: float = 1e-9) -> None:
    for node in net.order:
        lo_t, hi_t = tight[node.name]
        lo_l, hi_l = loose[node.name]
        scale = 1.0 + np.maximum(np.abs(lo_l), np.abs(hi_l))
        assert np.all(lo_t >= lo_l - slack * scale), node.name
        assert np.all(hi_t <= hi_l + slack * scale), node.name
        assert np.all(lo_t <= hi_t), node.name


# -- element-wise relaxations ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind,alpha,cap", ACTIVATIONS)
def test_linear_relaxation_is_sound_on_every_case(kind, alpha, cap):
    rng = np.random.default_rng(0)
    # intervals covering every position relative to the kinks 0 and cap (including degenerate ones)
    l = torch.tensor(np.concatenate([rng.uniform(-3, 3, 5000), [0.0, -1.0, 0.25, 1.0, -2.0, 0.0]]))
    u = l + torch.tensor(np.concatenate([rng.exponential(1.5, 5000), [0.0, 1.0, 0.0, 2.0, 5.0, 0.25]]))
    al, cl, au, cu = from_spec({"kind": kind, "alpha": alpha, "cap": cap}).linear_relaxation(l, u)
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64).unsqueeze(1)
    x = l + (u - l) * t
    node = ActivationNode("a", 1, ("x",), kind=kind, alpha=alpha, cap=cap)
    f = torch.tensor(node.apply(x.numpy()))
    assert torch.all(al * x + cl <= f + 1e-12)
    assert torch.all(au * x + cu >= f - 1e-12)


# -- mlp_bounds (the torch API for training) ------------------------------------------------------------


def _torch_forward(layers, activations, x):
    values = []
    for k, (W, b) in enumerate(layers):
        x = x @ W.T + b
        values.append(x)
        if k < len(activations):
            kind, alpha, cap = activations[k]
            node = ActivationNode("a", 1, ("x",), kind=kind, alpha=alpha, cap=cap)
            x = torch.tensor(node.apply(x.detach().numpy()))
    return values


@pytest.mark.parametrize("seed", range(8))
def test_mlp_bounds_sound_and_tighter(seed):
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    sizes = [int(rng.integers(2, 5))] + [int(rng.integers(3, 12)) for _ in range(int(rng.integers(1, 4)))] + [2]
    layers = [
        (torch.randn(o, i, generator=gen, dtype=torch.float64), 0.3 * torch.randn(o, generator=gen, dtype=torch.float64))
        for i, o in zip(sizes[:-1], sizes[1:])
    ]
    activations = [ACTIVATIONS[int(rng.integers(0, 6))] for _ in range(len(layers) - 1)]
    lower = torch.tensor(rng.uniform(-2, 0, sizes[0]))
    upper = lower + torch.tensor(rng.uniform(0.1, 2, sizes[0]))
    interval = mlp_bounds(layers, activations, lower, upper, "interval")
    symbolic = mlp_bounds(layers, activations, lower, upper, "symbolic")
    domain = InputDomain(lower.numpy(), upper.numpy())
    x = torch.tensor(samples_with_corners(domain, 100_000, seed))
    for k, z in enumerate(_torch_forward(layers, activations, x)):
        for lo, hi in (interval[k], symbolic[k]):
            assert lo.shape == (sizes[k + 1],)
            assert torch.all(z >= lo - 1e-9) and torch.all(z <= hi + 1e-9)
        assert torch.all(symbolic[k][0] >= interval[k][0]) and torch.all(symbolic[k][1] <= interval[k][1])
        assert torch.all(symbolic[k][0] <= symbolic[k][1])


def test_mlp_bounds_symbolic_strictly_tighter_on_a_deep_net():
    gen = torch.Generator().manual_seed(3)
    layers = [(torch.randn(16, 4, generator=gen, dtype=torch.float64), torch.zeros(16, dtype=torch.float64))]
    layers += [(torch.randn(16, 16, generator=gen, dtype=torch.float64) / 4, torch.zeros(16, dtype=torch.float64)) for _ in range(3)]
    layers += [(torch.randn(1, 16, generator=gen, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))]
    acts = [ACTIVATIONS[0]] * 4
    lo, hi = -torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    wi = mlp_bounds(layers, acts, lo, hi, "interval")[-1]
    ws = mlp_bounds(layers, acts, lo, hi, "symbolic")[-1]
    assert float(ws[1] - ws[0]) < 0.8 * float(wi[1] - wi[0])


def test_mlp_bounds_batched_matches_single_and_is_differentiable():
    gen = torch.Generator().manual_seed(0)
    W1 = torch.randn(8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b1 = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    W2 = torch.randn(8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    W3 = torch.randn(2, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    zero8, zero2 = torch.zeros(8, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    layers = [(W1, b1), (W2, zero8), (W3, zero2)]
    acts = [ACTIVATIONS[4], ACTIVATIONS[2]]
    L = torch.rand(5, 3, generator=gen, dtype=torch.float64) - 1.0
    U = L + 0.7
    batched = mlp_bounds(layers, acts, L, U)
    for i in range(5):
        single = mlp_bounds(layers, acts, L[i], U[i])
        for (bl, bu), (sl, su) in zip(batched, single):
            assert bl.shape == (5, bl.shape[1])
            torch.testing.assert_close(bl[i], sl)
            torch.testing.assert_close(bu[i], su)
    loss = sum((u - l).sum() for l, u in batched)
    loss.backward()
    for p in (W1, b1, W2, W3):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert float(W1.grad.abs().sum()) > 0


def test_mlp_bounds_follows_dtype_and_device():
    layers = [(torch.randn(4, 2), torch.zeros(4)), (torch.randn(1, 4), torch.zeros(1))]
    out = mlp_bounds(layers, [("relu", 0.0, math.inf)], -torch.ones(2, dtype=torch.float64), torch.ones(2))
    assert out[-1][0].dtype == torch.float32 and out[-1][0].device == layers[0][0].device


def test_mlp_bounds_rejects_bad_arguments():
    layers = [(torch.randn(4, 2), torch.zeros(4)), (torch.randn(1, 4), torch.zeros(1))]
    with pytest.raises(Exception, match="method"):
        mlp_bounds(layers, [("relu", 0.0, math.inf)], -torch.ones(2), torch.ones(2), method="lp")
    with pytest.raises(Exception, match="activations"):
        mlp_bounds(layers, [], -torch.ones(2), torch.ones(2))


# -- symbolic bounds on the IR --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_symbolic_ir_sound_and_not_looser_than_interval(seed):
    net = mixed_mlp(seed)
    domain = InputDomain.box(-1.0, 1.0, net.input_size)
    interval = interval_bounds(net, domain)
    symbolic = symbolic_bounds(net, domain)
    assert symbolic.method == "symbolic"
    x = samples_with_corners(domain, 100_000, seed)
    interval.check_sound(net, x)
    symbolic.check_sound(net, x)
    assert_not_looser(symbolic, interval, net)


def test_symbolic_ir_agrees_with_mlp_bounds():
    net = mixed_mlp(11, [3, 9, 7, 2])
    domain = InputDomain.box(-0.5, 1.5, 3)
    ir = symbolic_bounds(net, domain)
    layers = [(torch.tensor(w), torch.tensor(b)) for w, b in net.dense_layers()]
    acts = [(a.kind, a.alpha if a.kind == "leaky_relu" else 0.0, a.cap) for a in net.activations]
    ref = mlp_bounds(layers, acts, torch.tensor(domain.lower), torch.tensor(domain.upper))
    for node, (lo, hi) in zip(net.affines, ref):
        np.testing.assert_allclose(ir.lower[node.name], lo.numpy(), atol=1e-9)
        np.testing.assert_allclose(ir.upper[node.name], hi.numpy(), atol=1e-9)


def test_symbolic_on_a_dag_with_skip_connections():
    net = residual_dag()
    domain = InputDomain.box(-1.0, 1.0, 3)
    interval = interval_bounds(net, domain)
    symbolic = symbolic_bounds(net, domain)
    symbolic.check_sound(net, samples_with_corners(domain, 100_000))
    assert_not_looser(symbolic, interval, net)
    width = lambda b: float(np.mean(b.upper["out"] - b.lower["out"]))
    assert width(symbolic) < 0.9 * width(interval)


def test_symbolic_start_bounds_are_kept():
    net = mixed_mlp(2, [2, 6, 6, 1])
    domain = InputDomain.box(-1.0, 1.0, 2)
    first = symbolic_bounds(net, domain)
    again = symbolic_bounds(net, domain, start=first)
    assert_not_looser(again, first, net, slack=0.0)


def test_compute_bounds_symbolic_dispatch_and_times():
    net = random_mlp(np.random.default_rng(0), [3, 10, 10, 1])
    domain = InputDomain.box(-1.0, 1.0, 3)
    bounds = compute_bounds(net, domain, "symbolic")
    assert bounds.method == "symbolic"
    assert set(bounds.times) >= {"interval", "symbolic"}
    bounds.check_sound(net, samples_with_corners(domain, 20_000))


# -- ACAS Xu ----------------------------------------------------------------------------------------------

#: input box of ACAS Xu property 1 in normalised units (from prop_1.vnnlib in ../shared/data/acasxu)
ACAS_PROP1 = ([0.6, -0.5, -0.5, 0.45, -0.5], [0.679857769, 0.5, 0.5, 0.5, -0.45])


def acas_network(acasxu_dir, name: str = "1_1") -> Network:
    frontends = pytest.importorskip("relumilp.frontends")
    if not hasattr(frontends, "load_network"):
        pytest.skip("the ONNX frontend is not available")
    return frontends.load_network(acasxu_dir / f"ACASXU_run2a_{name}_batch_2000.onnx")


@pytest.mark.parametrize("name", ["1_1", "2_3"])
def test_acasxu_interval_and_symbolic_sound(acasxu_dir, name):
    net = acas_network(acasxu_dir, name)
    domain = InputDomain(*ACAS_PROP1)
    interval = compute_bounds(net, domain, "interval")
    symbolic = compute_bounds(net, domain, "symbolic")
    x = samples_with_corners(domain, 100_000)
    interval.check_sound(net, x)
    symbolic.check_sound(net, x)
    assert_not_looser(symbolic, interval, net)
