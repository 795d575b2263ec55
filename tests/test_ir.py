"""The IR: forward pass, construction checks, persistence, hashing."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.errors import InvalidNetworkError, ModelFileError, UnsupportedOperatorError
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network


def test_forward_matches_manual_mlp():
    rng = np.random.default_rng(0)
    (w1, b1), (w2, b2) = [(rng.normal(size=(4, 3)), rng.normal(size=4)), (rng.normal(size=(2, 4)), rng.normal(size=2))]
    net = Network.sequential([(w1, b1), (w2, b2)], {"kind": "leaky_relu", "alpha": 0.1})
    x = rng.normal(size=(5, 3))
    h = x @ w1.T + b1
    expected = np.where(h >= 0, h, 0.1 * h) @ w2.T + b2
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-14)
    np.testing.assert_allclose(net.forward(x[0]), expected[0], rtol=1e-14)
    assert net.is_sequential and net.hidden_sizes == [4]


def test_activation_kinds():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    node = lambda kind, **kw: ActivationNode("a", 5, ("i",), kind=kind, **kw)
    np.testing.assert_array_equal(node("relu").apply(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_array_equal(node("leaky_relu", alpha=-0.5).apply(x), [1, 0.25, 0, 0.5, 2])
    np.testing.assert_array_equal(node("clipped_relu", cap=1.0).apply(x), [0, 0, 0, 0.5, 1])
    np.testing.assert_array_equal(node("identity").apply(x), x)


def test_dag_with_residual_and_concat():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2))
    nodes = [
        InputNode("x", 2),
        AffineNode("h", 3, ("x",), (w,), np.zeros(3)),
        ActivationNode("r", 3, ("h",)),
        # residual: out = V r + U x + c (a multi-input affine node)
        AffineNode("out", 1, ("r", "x"), (np.ones((1, 3)), np.array([[1.0, -1.0]])), np.array([0.5])),
    ]
    net = Network(nodes, "out")
    x = rng.normal(size=(4, 2))
    expected = np.maximum(x @ w.T, 0).sum(axis=1, keepdims=True) + (x[:, :1] - x[:, 1:]) + 0.5
    np.testing.assert_allclose(net.forward(x), expected)
    assert not net.is_sequential


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Network.sequential([(np.array([[np.nan]]), [0.0]), (np.ones((1, 1)), [0.0])]), "NaN"),
        (lambda: Network.sequential([(np.ones((2, 3)), np.zeros(2)), (np.ones((1, 3)), np.zeros(1))]), "shape"),
        (lambda: Network.sequential([(np.ones((2, 3)), np.zeros(3)), (np.ones((1, 2)), np.zeros(1))]), "bias"),
        (lambda: Network([InputNode("x", 2), ActivationNode("a", 2, ("y",))], "a"), "unknown node"),
        (lambda: Network.sequential([(np.ones((1, 1)), [0.0])] * 2, {"kind": "clipped_relu", "cap": -1.0}), "cap"),
    ],
)
def test_invalid_networks_raise_one_line(make, match):
    with pytest.raises(InvalidNetworkError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_unsupported_activation_names_itself():
    with pytest.raises(UnsupportedOperatorError, match="mish.*supported: abs, clip, clipped_relu, .*leaky_relu, .*relu"):
        Network([InputNode("x", 1), ActivationNode("a", 1, ("x",), kind="mish")], "a")


def test_save_load_roundtrip(tmp_path):
    net = random_mlp(np.random.default_rng(2), [3, 5, 4, 2], {"kind": "clipped_relu", "cap": 1.5})
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = Network.load(path)
    assert loaded.content_hash == net.content_hash
    x = np.random.default_rng(3).normal(size=(10, 3))
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]  # no temporary left behind


def test_load_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        Network.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError, match="cannot read"):
        Network.load(bad)


def test_content_hash_changes_with_weights():
    rng = np.random.default_rng(4)
    a = random_mlp(rng, [2, 3, 1])
    layers = a.dense_layers()
    b = Network.sequential([(layers[0][0] * (1 + 1e-12), layers[0][1]), layers[1]])
    assert a.content_hash != b.content_hash
    assert a.content_hash == Network.sequential(layers).content_hash
