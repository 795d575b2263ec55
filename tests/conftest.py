"""Shared test fixtures: the optional ../shared data folder and small random networks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from relumilp.matrices import densify
from relumilp.ir import Network

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RELUMILP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder (ACAS Xu, reformer.csv); tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def acasxu_dir(shared_data) -> Path:
    folder = shared_data / "acasxu"
    if not folder.is_dir():
        pytest.skip("ACAS Xu networks not present")
    return folder


def random_mlp(rng: np.random.Generator, sizes, activation="relu", scale=1.0) -> Network:
    """A random MLP with layer sizes ``sizes`` (input first, output last)."""
    layers = [
        (rng.normal(0.0, scale / np.sqrt(n_in), size=(n_out, n_in)), rng.normal(0.0, 0.3, size=n_out))
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]
    return Network.sequential(layers, activation)


def assert_same_ir(a: Network, b: Network, tol: float = 1e-12) -> None:
    """Same nodes (names, kinds, sizes, wiring), shapes and parameters up to ``tol``."""

    def structure(net):
        return [
            (type(n).__name__, n.name, n.size, n.inputs, *(getattr(n, k, None) for k in ("kind", "alpha", "cap")))
            for n in net
        ]

    assert structure(a) == structure(b)
    assert (a.output, a.input_shape, a.output_shape) == (b.output, b.input_shape, b.output_shape)
    for x, y in zip(a.affines, b.affines):
        for wx, wy in zip(x.weights, y.weights):
            np.testing.assert_allclose(densify(wx), densify(wy), rtol=tol, atol=tol)
        np.testing.assert_allclose(x.bias, y.bias, rtol=tol, atol=tol)


def check_scaling_and_pruning(net: Network, domain):
    """Unit scaling changes some activation (kinks away from 0 rescale) and keeps the function, with sound
    bounds; pruning removes neurons and keeps the function. Returns (interval bounds, the samples)."""
    from relumilp.bounds import compute_bounds
    from relumilp.pruning import prune
    from relumilp.scaling import scale_network

    bounds = compute_bounds(net, domain, "interval")
    x = domain.sample(2000, 0)
    scaled, scaled_bounds = scale_network(net, bounds, "unit")
    assert any(a.activation != b.activation for a, b in zip(scaled.activations, net.activations))
    np.testing.assert_allclose(scaled(x), net(x), rtol=1e-12, atol=1e-12)
    scaled_bounds.check_sound(scaled, x)
    pruned = prune(net, bounds)
    assert sum(a.size for a in pruned.activations) < sum(a.size for a in net.activations)
    np.testing.assert_allclose(pruned(x), net(x), rtol=1e-10, atol=1e-10)
    return bounds, x


def assert_bounds_hold(net: Network, domain, methods, samples: int = 2000, seed: int = 0) -> None:
    """Every bound method in ``methods`` contains the float64 forward value of every node at ``samples``
    uniform points of the box ``domain`` and at its two extreme corners, with tolerance 0."""
    from relumilp.bounds import compute_bounds

    rng = np.random.default_rng(seed)
    x = np.vstack([rng.uniform(domain.lower, domain.upper, (samples, net.input_size)), domain.lower, domain.upper])
    values = net.forward_all(x)
    for method in methods:
        bounds = compute_bounds(net, domain, method)
        for node in net.order:
            lo, hi = bounds[node.name]
            assert np.all(values[node.name] >= lo) and np.all(values[node.name] <= hi), (method, node.name)


def assert_torch_sources_match(module, shape, rows: int = 5, seed: int = 1, tol: float = 1e-9,
                               sources=("fx", "export", "trace")) -> None:
    """The IR from each torch source of ``module`` (the module through torch.fx, torch.export at batch 1, a
    TorchScript trace) against the module's own float64 forward pass on ``rows`` random inputs."""
    import torch

    from relumilp.frontends import from_torch

    x = np.random.default_rng(seed).normal(size=(rows, int(np.prod(shape))))
    expected = module.double()(torch.as_tensor(x).view(-1, *shape)).detach().numpy().reshape(rows, -1)
    module.float()
    example = torch.randn(1, *shape)
    makers = {"fx": lambda: module, "export": lambda: torch.export.export(module, (example,)),
              "trace": lambda: torch.jit.trace(module, example, check_trace=False)}
    for source in sources:
        net = from_torch(makers[source](), input_shape=shape)
        np.testing.assert_allclose(net.forward(x), expected, rtol=tol, atol=tol, err_msg=source)


def assert_onnx_export_matches_ort(module, shape, opset: int, rows: int = 5, seed: int = 2, tol: float = 2e-5):
    """torch's ONNX export of ``module`` at ``opset``, loaded by relumilp, against onnxruntime (float32)."""
    import io
    import warnings

    import torch

    from relumilp.frontends import from_onnx

    ort = pytest.importorskip("onnxruntime")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(1, *shape), buffer, opset_version=opset, dynamo=False)
    net = from_onnx(buffer.getvalue())
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(seed).normal(size=(rows, int(np.prod(shape))))
    reference = np.concatenate([session.run(None, {name: row.reshape(1, *shape).astype(np.float32)})[0].reshape(1, -1)
                                for row in x])
    np.testing.assert_allclose(net.forward(x), reference, rtol=tol, atol=tol)


def onnx_graph_model(nodes, in_shape, initializers=(), opset: int = 19):
    """A one-input (``x``, float32 of ``in_shape``), one-output (``y``) ONNX model of ``nodes`` and constant
    ``initializers`` (name, array) at ``opset``."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def assert_onnx_model_matches_ort(model, in_shape, low: float = -2.0, high: float = 2.0, seed: int = 0,
                                  tol: float = 2e-5):
    """``model`` loaded by relumilp against onnxruntime on four uniform inputs in ``[low, high]``; the network."""
    from relumilp.frontends import from_onnx

    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(seed).uniform(low, high, (4,) + tuple(in_shape[1:])).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = np.stack([session.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    net = from_onnx(model)
    np.testing.assert_allclose(net.forward(x.reshape(len(x), -1).astype(np.float64)), reference.reshape(len(x), -1),
                               rtol=tol, atol=tol)
    return net
