"""Products and quotients of two network values, softmax, normalisation, Pow / Sqrt / Exp / Log: their
spelling in affine maps and one-neuron smooth kinds (relumilp.frontends._builder), against torch and
onnxruntime, bounds by sampling, and certified answers against sampling and the forward pass."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import assert_onnx_export_matches_ort, assert_torch_sources_match
from relumilp import optimize
from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError, UnsupportedOperatorError
from relumilp.frontends import from_onnx, from_torch
from relumilp.frontends._builder import ConstantBuilder, NetworkBuilder


class Gate(nn.Module):
    """Squeeze-and-excitation: channels scaled by a sigmoid of their pooled means."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 3, 3), nn.Linear(3, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        g = torch.sigmoid(self.fc(h.mean(dim=(2, 3))))
        return (h * g[:, :, None, None]).flatten(1)


class Attention(nn.Module):
    """One attention head over 3 tokens of width 4, then a layer normalisation."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        x = x.view(-1, 3, 4)
        weights = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / 2.0, dim=-1)
        return self.norm(x + weights @ self.v(x)).flatten(1)


class Elementary(nn.Module):
    """Quotients, powers and the elementary functions, on values kept positive where they must be."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        positive = 1.0 + b * b
        parts = [a / positive, a**3, positive**-1, positive**0.5, torch.rsqrt(positive), torch.exp(a),
                 torch.log(positive), a * a, F.log_softmax(a, dim=-1), torch.softmax(a[:, :2], dim=-1)]
        return torch.cat(parts, dim=-1)


MODULES = {"gate": (Gate, (1, 5, 5)), "attention": (Attention, (12,)), "elementary": (Elementary, (3,))}


def _module(key):
    cls, shape = MODULES[key]
    torch.manual_seed(0)
    return cls().eval(), shape


@pytest.mark.parametrize("key", sorted(MODULES))
def test_torch_sources_compile_to_the_same_function(key):
    assert_torch_sources_match(*_module(key), rows=6, tol=1e-6, sources=("fx", "export"))


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("key", sorted(MODULES))
def test_onnx_exports_match_onnxruntime(key, opset):
    assert_onnx_export_matches_ort(*_module(key), opset)


def test_a_product_is_two_squares_and_a_square_of_one_value_is_one():
    b = NetworkBuilder()
    x = b.input((3,))
    h = b.relu(b.linear(x, np.eye(3)))
    y = b.concat([b.mul(h, b.smooth(h, "tanh")), b.mul(h, h)], -1)
    net = b.finish(y, "products")
    kinds = [a.activation.kind for a in net.activations]
    assert kinds.count("square") == 3  # two for h * tanh(h), one for h * h
    X = np.random.default_rng(3).normal(size=(9, 3))
    H = np.maximum(X, 0.0)
    np.testing.assert_allclose(net.forward(X), np.concatenate([H * np.tanh(H), H * H], axis=1), rtol=1e-13, atol=1e-15)


def test_constant_products_and_quotients_are_exact():
    b = ConstantBuilder()
    a, c = b.constant([3.0, 1e-8, 7.0]), b.constant([1.0 / 3.0, 1e8, -2.0])
    assert np.array_equal(b.value(b.mul(a, c)), np.array([3.0, 1e-8, 7.0]) * np.array([1 / 3, 1e8, -2.0]))
    assert np.array_equal(b.value(b.div(a, c)), np.array([3.0, 1e-8, 7.0]) / np.array([1 / 3, 1e8, -2.0]))
    assert np.array_equal(b.value(b.matmul(a, np.eye(3))), np.array([3.0, 1e-8, 7.0]))
    assert np.array_equal(b.value(b.power(a, 0)), np.ones(3))


def test_softmax_over_two_entries_is_a_sigmoid_and_one_entry_a_constant():
    b = NetworkBuilder()
    x = b.input((2,))
    z = b.linear(x, np.array([[1.0, 2.0], [-1.0, 0.5]]))
    net = b.finish(b.concat([b.softmax(z, -1), b.softmax(z, -1, log=True)], -1), "two")
    assert sorted(a.activation.kind for a in net.activations) == ["sigmoid", "softplus"]
    X = np.random.default_rng(4).normal(size=(7, 2)) * 5
    Z = X @ np.array([[1.0, 2.0], [-1.0, 0.5]]).T
    soft = np.exp(Z - Z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(net.forward(X), np.concatenate([soft, np.log(soft)], 1), rtol=1e-12, atol=1e-13)
    b = NetworkBuilder()
    x = b.input((1,))
    assert np.array_equal(ConstantBuilder.value(b.softmax(b.relu(x), -1)), np.ones((1, 1)))
    assert np.array_equal(ConstantBuilder.value(b.softmax(b.relu(x), -1, log=True)), np.zeros((1, 1)))


def _elementary_net():
    module, shape = _module("elementary")
    return from_torch(module, input_shape=shape)


@pytest.mark.parametrize("method", ["interval", "symbolic", "alpha"])
def test_bounds_contain_every_sampled_value(method):
    for net, lower, upper in [(_elementary_net(), -np.ones(3), np.ones(3)),
                              (from_torch(_module("attention")[0], input_shape=(12,)), -np.ones(12), np.ones(12))]:
        bounds = compute_bounds(net, InputDomain(lower, upper), method)
        rng = np.random.default_rng(5)
        X = np.concatenate([rng.uniform(lower, upper, size=(20_000, lower.size)), [lower, upper]])
        for name, values in net.forward_all(X).items():
            assert np.all(values >= bounds.lower[name]) and np.all(values <= bounds.upper[name]), (method, name)


def test_certified_interval_of_a_softmax_output_contains_the_sampled_maximum():
    torch.manual_seed(3)
    module = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3), nn.Softmax(dim=-1)).eval()
    net = from_torch(module, input_shape=(2,))
    domain = InputDomain(-np.ones(2), np.ones(2))
    result = optimize(net, domain, maximize=0, time_limit=60)
    assert result.status in ("optimal", "feasible")
    np.testing.assert_allclose(result.objective, net.forward(result.x)[0], rtol=0, atol=0)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    best = net.forward(grid)[:, 0].max()
    assert result.bound >= best
    from relumilp.smooth import SMOOTH_GAP

    assert result.bound - result.objective <= 1e-2 * max(1.0, abs(result.objective)) or result.status == "feasible"
    if result.status == "optimal":  # "optimal" promises the asked gap, measured from the forward value
        assert (result.bound - result.objective) / max(1.0, abs(result.objective)) <= SMOOTH_GAP


def test_positive_domains_and_unsupported_powers_are_one_line_errors():
    b = NetworkBuilder()
    x = b.input((2,))
    net = b.finish(b.log(b.linear(x, np.eye(2), np.array([0.5, 3.0]))), "log")
    with pytest.raises(InvalidNetworkError, match="log neurons .*positive inputs.*-0.5") as err:
        compute_bounds(net, InputDomain(-np.ones(2), np.ones(2)), "interval")
    assert "\n" not in str(err.value)
    bounds = compute_bounds(net, InputDomain(-0.4 * np.ones(2), np.ones(2)), "symbolic")
    assert np.all(np.isfinite(bounds.lower[net.output]))
    b = NetworkBuilder()
    x = b.input((2,))
    with pytest.raises(UnsupportedOperatorError, match="Pow with an exponent that varies"):
        b.power(b.relu(x), np.array([1.5, 2.0]))
    net = b.finish(b.power(b.linear(x, np.eye(2)), 1.5), "power")  # x^1.5 needs x > 0
    with pytest.raises(InvalidNetworkError, match="power neurons .*positive inputs"):
        compute_bounds(net, InputDomain(-np.ones(2), np.ones(2)), "symbolic")
    b = NetworkBuilder()
    x = b.input((2,))
    net = b.finish(b.exp(b.linear(x, 400.0 * np.eye(2))), "exp")
    with pytest.raises(InvalidNetworkError, match="exp neurons .*overflow float64"):
        compute_bounds(net, InputDomain(-np.ones(2), 2 * np.ones(2)), "interval")
    b = NetworkBuilder()
    x = b.input((2,))
    net = b.finish(b.square(b.linear(x, 1e160 * np.eye(2))), "square")
    with pytest.raises(InvalidNetworkError, match="square neurons .*overflow float64.*1e\\+160"):
        compute_bounds(net, InputDomain(-np.ones(2), np.ones(2)), "interval")
    b = NetworkBuilder()
    x = b.input((2,))
    quotient = b.div(b.linear(x, np.eye(2)), b.linear(x, np.ones((2, 2))))  # the divisor crosses 0
    net = b.finish(quotient, "quotient")
    with pytest.raises(InvalidNetworkError, match="reciprocal neurons .*divisor"):
        compute_bounds(net, InputDomain(-np.ones(2), np.ones(2)), "interval")


def test_layer_normalization_statistics_outputs_match_onnxruntime():
    """ONNX LayerNormalization's optional Mean and InvStdDev outputs, read by the graph, compile too."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "scale", "shift"], ["y", "mean", "inv"], axis=-1,
                              epsilon=1e-3),
             helper.make_node("Concat", ["y", "mean", "inv"], ["out"], axis=-1)]
    inits = [numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "scale"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "shift")]
    graph = helper.make_graph(nodes, "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    net = from_onnx(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(4, 3))
    reference = np.concatenate([session.run(None, {"x": row[None].astype(np.float32)})[0] for row in x])
    np.testing.assert_allclose(net.forward(x), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_local_response_normalisation_matches_onnxruntime_and_torch(size):
    """ONNX LRN (window ``c - floor((size-1)/2) .. c + ceil((size-1)/2)``) against the spec in numpy and
    onnxruntime (odd sizes), and torch's
    LocalResponseNorm (window ``c - size//2 .. c + (size-1)//2``; exported with an ``If`` on the input's
    rank, inlined on its constant condition) against torch."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(size)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]),
             helper.make_node("LRN", ["h"], ["y"], size=size, alpha=0.5, beta=0.75, bias=2.0)]
    graph = helper.make_graph(nodes, "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(rng.normal(size=(6, 1, 2, 2)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    net = from_onnx(model)
    x = rng.normal(size=(3, 16))
    # the spec in numpy (ONNX's reference evaluator sums channel 0's window only; onnxruntime takes odd sizes)
    h = torch.nn.functional.conv2d(torch.as_tensor(x).view(-1, 1, 4, 4),
                                   torch.as_tensor(numpy_helper.to_array(graph.initializer[0]), dtype=torch.float64))
    h = h.numpy()
    total = np.stack([(h[:, max(0, c - (size - 1) // 2):c + size // 2 + 1] ** 2).sum(1) for c in range(6)], 1)
    spec = (h / (2.0 + 0.5 / size * total) ** 0.75).reshape(3, -1)
    np.testing.assert_allclose(net.forward(x), spec, rtol=1e-12, atol=1e-12)
    if size % 2:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        reference = np.concatenate([session.run(None, {"x": row.reshape(1, 1, 4, 4).astype(np.float32)})[0].reshape(1, -1)
                                    for row in x])
        np.testing.assert_allclose(net.forward(x), reference, rtol=1e-5, atol=1e-5)
    torch.manual_seed(size)
    module = nn.Sequential(nn.Conv2d(1, 6, 2), nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0), nn.Flatten())
    expected = module.double()(torch.as_tensor(x).view(-1, 1, 4, 4)).detach().numpy()
    np.testing.assert_allclose(from_torch(module, input_shape=(1, 4, 4)).forward(x), expected, rtol=1e-12, atol=1e-12)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.float(), torch.randn(1, 1, 4, 4), buffer, opset_version=13, dynamo=False)
    np.testing.assert_allclose(from_onnx(buffer.getvalue()).forward(x), expected, rtol=1e-5, atol=1e-5)


def test_if_on_a_constant_condition_takes_its_branch_and_a_computed_one_is_refused():
    from onnx import TensorProto, helper

    def model(cond_from_input: bool, cond: bool):
        branch = lambda op, name: helper.make_graph(  # noqa: E731 (reads the outer scope's "h")
            [helper.make_node(op, ["h"], [name])], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)])
        nodes = [helper.make_node("Relu", ["x"], ["h"]),
                 helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [cond])),
                 helper.make_node("If", ["x" if cond_from_input else "c"], ["y"],
                                  then_branch=branch("Neg", "t"), else_branch=branch("Sigmoid", "e"))]
        graph = helper.make_graph(nodes, "if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    x = np.array([[-1.0], [0.5], [2.0]])
    np.testing.assert_allclose(from_onnx(model(False, True)).forward(x), -np.maximum(x, 0.0))
    np.testing.assert_allclose(from_onnx(model(False, False)).forward(x), 1 / (1 + np.exp(-np.maximum(x, 0.0))))
    with pytest.raises(UnsupportedOperatorError, match="If with a condition computed from the network input"):
        from_onnx(model(True, True))


def test_constants_computed_from_network_values_flow_on_as_constants():
    """A softmax over one entry is 1 and ``x ** 0`` is 1, whatever ``x``: later operators (a product with a
    network value, a Linear, ONNX's reshapes) take them as constants; a network whose output is one says so."""

    class OneEntry(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            z = self.fc(x).view(-1, 1, 4)
            return self.out((torch.softmax(z, dim=1) * z).flatten(1)) + x[:, :2] ** 0

    torch.manual_seed(0)
    module = OneEntry().eval()
    x = np.random.default_rng(7).normal(size=(5, 4))
    expected = module.double()(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(from_torch(module, input_shape=(4,)).forward(x), expected, rtol=1e-12, atol=1e-12)
    for opset in (11, 13, 17):
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.float(), torch.randn(1, 4), buffer, opset_version=opset, dynamo=False)
        module.double()
        np.testing.assert_allclose(from_onnx(buffer.getvalue()).forward(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidNetworkError, match="does not depend on the network input"):
        from_torch(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=0)), input_shape=(2,))  # softmax over the batch


def test_wide_softmax_and_stacked_layer_norms_keep_finite_tight_bounds():
    """A softmax whose logits differ by up to 40 (its ``1 + sum exp`` spans 1 .. 1e17) and two stacked
    layer normalisations (the second's ``var + eps`` close to its domain edge once widened for rounding):
    bounds contain every sampled value and stay finite; each normalised value lies within ``+-sqrt(d)``."""
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Linear(1, 3), nn.Softmax(dim=-1)).eval()
    with torch.no_grad():
        wide[0].weight.copy_(torch.tensor([[20.0], [-20.0], [0.0]]))
    norms = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4, elementwise_affine=False), nn.Linear(4, 4),
                          nn.LayerNorm(4, elementwise_affine=False)).eval()
    for module, size in ((wide, 1), (norms, 3)):
        net = from_torch(module, input_shape=(size,))
        lower, upper = -np.ones(size), np.ones(size)
        X = np.concatenate([np.random.default_rng(8).uniform(lower, upper, (20_000, size)), [lower, upper]])
        values = net.forward_all(X)
        for method in ("interval", "symbolic", "alpha"):
            bounds = compute_bounds(net, InputDomain(lower, upper), method)
            for name, v in values.items():
                assert np.all(np.isfinite(bounds.lower[name])) and np.all(np.isfinite(bounds.upper[name]))
                assert np.all(v >= bounds.lower[name]) and np.all(v <= bounds.upper[name]), (method, name)
            if module is norms:
                assert np.all(bounds.lower[net.output] >= -2.0) and np.all(bounds.upper[net.output] <= 2.0)
            else:
                assert np.all(bounds.lower[net.output] >= 0.0) and np.all(bounds.upper[net.output] <= 1.0 + 1e-9)


class Spread(nn.Module):
    """var / std (the dim, unbiased and correction forms), log1p and true_divide."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 6)

    def forward(self, x):
        h = self.fc(x)
        return torch.cat([h.var(dim=1, keepdim=True), torch.var(h, 1, unbiased=False, keepdim=True),
                          h.std(dim=-1, keepdim=True), torch.log1p(h * h), torch.true_divide(h, 3.0),
                          torch.var(h, dim=1, correction=2, keepdim=True)], 1)


NORMS = {
    "group": (lambda: nn.Sequential(nn.Conv2d(1, 6, 2), nn.GroupNorm(3, 6), nn.Flatten()), (1, 4, 4)),
    "group_plain": (lambda: nn.Sequential(nn.Conv2d(1, 6, 2), nn.GroupNorm(2, 6, affine=False), nn.Flatten()), (1, 4, 4)),
    "instance": (lambda: nn.Sequential(nn.Conv2d(1, 4, 2), nn.InstanceNorm2d(4, affine=True), nn.Flatten()), (1, 4, 4)),
    "instance1d": (lambda: nn.Sequential(nn.Conv1d(1, 4, 2), nn.InstanceNorm1d(4), nn.Flatten()), (1, 6)),
    "spread": (Spread, (3,)),
}


@pytest.mark.parametrize("key", sorted(NORMS))
def test_group_and_instance_norms_and_spreads_match_torch_in_every_source(key):
    make, shape = NORMS[key]
    torch.manual_seed(0)
    module = make().eval()
    with torch.no_grad():
        for parameter in module.parameters():  # affine parameters away from their 1 / 0 defaults
            parameter.add_(torch.randn_like(parameter) * 0.3)
    x = np.random.default_rng(9).normal(size=(3, int(np.prod(shape))))
    expected = module.double()(torch.as_tensor(x).view(-1, *shape)).detach().numpy().reshape(3, -1)
    module.float()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(1, *shape), buffer, opset_version=17, dynamo=False)
    nets = [from_torch(module, input_shape=shape), from_torch(torch.export.export(module, (torch.randn(2, *shape),))),
            from_onnx(buffer.getvalue())]
    for net in nets:
        np.testing.assert_allclose(net.forward(x), expected, rtol=1e-9, atol=1e-9)


def test_a_rounding_artefact_of_a_product_is_not_reported_as_a_counterexample():
    """``x0 x1`` at ``x0 ~ 1e8``, ``x1 ~ 1e-8`` computes 1.5 as a difference of squares in float64, the exact
    value is 1.0: ``Y >= 1.2`` must not come back ``violated``."""
    from relumilp.frontends.vnnlib import parse_vnnlib
    from relumilp.verify import verify

    b = NetworkBuilder()
    x = b.input((2,))
    first, second = b.take(b.linear(x, np.eye(2)), [0], -1), b.take(b.linear(x, np.eye(2)), [1], -1)
    net = b.finish(b.mul(first, second), "product")
    lower, upper = np.array([1e8, 1e-8]), np.array([1e8 + 1e-4, 1e-8 + 1e-16])
    X = np.random.default_rng(10).uniform(lower, upper, (2000, 2))
    assert net.forward(X).max() > 1.2  # the artefact: the exact product is at most 1.0000000020
    text = "\n".join(["(declare-const X_0 Real)", "(declare-const X_1 Real)", "(declare-const Y_0 Real)",
                      f"(assert (>= X_0 {float(lower[0])!r}))", f"(assert (<= X_0 {float(upper[0])!r}))",
                      f"(assert (>= X_1 {float(lower[1])!r}))", f"(assert (<= X_1 {float(upper[1])!r}))", "(assert (>= Y_0 1.2))"])
    result = verify(net, parse_vnnlib(text), time_limit=5)
    assert result.result == "unknown"


def test_the_variance_of_everything_in_the_var_input_unbiased_form():
    class Overall(nn.Module):
        def forward(self, x):
            return torch.var(x, True).reshape(1, 1)

    x = np.random.default_rng(11).normal(size=(4, 6))
    net = from_torch(Overall(), input_shape=(2, 3))
    expected = [np.var(row, ddof=1) for row in x]
    np.testing.assert_allclose(net.forward(x)[:, 0], expected, rtol=1e-12)


def test_rounding_divisions_and_impossible_resizes_are_refused_and_exponents_broadcast():
    class Floor(nn.Module):
        def forward(self, x):
            return torch.div(3.0 * x, 2.0, rounding_mode="floor")

    with pytest.raises(UnsupportedOperatorError, match="rounding_mode='floor'"):
        from_torch(Floor(), input_shape=(1,))

    class Wide(nn.Module):
        def forward(self, x):
            return torch.pow(x, torch.full((2, 1, 3), 2.0)).flatten(1)  # the exponent broadcasts the base

    x = np.random.default_rng(12).normal(size=(3, 3))
    expected = np.stack([Wide()(torch.as_tensor(row[None])).numpy().ravel() for row in x])
    np.testing.assert_allclose(from_torch(Wide(), input_shape=(3,)).forward(x), expected, rtol=1e-12)
    from onnx import TensorProto, helper, numpy_helper

    for scales in ([1, 1, np.inf, 2], [1, 1, 1e12, 2]):
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
        graph = helper.make_graph([node], "r", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [numpy_helper.from_array(np.array(scales, np.float32), "scales")])
        with pytest.raises(InvalidNetworkError, match="resize|Resize") as err:
            from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
        assert "\n" not in str(err.value)


def test_an_odd_negative_power_of_a_positive_value_bounds():
    """``x ** -3`` on ``[0.5, 2]``: one power neuron (the products spelling ``x^3`` had loose bounds below 0, so
    its reciprocal was refused)."""
    b = NetworkBuilder()
    x = b.input((1,))
    net = b.finish(b.power(b.linear(x, np.eye(1)), -3), "cube")
    bounds = compute_bounds(net, InputDomain(np.array([0.5]), np.array([2.0])), "symbolic")
    assert bounds.lower[net.output][0] <= 0.125 and bounds.upper[net.output][0] >= 8.0
    np.testing.assert_allclose(net.forward(np.array([[0.5], [2.0]]))[:, 0], [8.0, 0.125], rtol=1e-15)


def test_log_softmax_is_finite_for_any_logits_and_its_differences_are_the_logits():
    """``x_i - logsumexp(x)`` through a softplus tree: logits 2,000 apart give torch's values (the pairwise
    ``-log(1 + sum exp(x_j - x_i))`` overflowed to -inf or NaN), and bounds of ``y_0 - y_1`` are those of
    ``x_0 - x_1`` (the shared logsumexp cancels)."""
    b = NetworkBuilder()
    x = b.input((5,))
    net = b.finish(b.concat([b.softmax(x, -1, log=True), b.softmax(x, -1)], -1), "log_softmax")
    X = np.random.default_rng(12).normal(size=(4, 5)) * 3
    X[0, 0], X[1, 1], X[2, :2] = 2000.0, -1500.0, (800.0, -800.0)
    reference = torch.cat([F.log_softmax(torch.as_tensor(X), -1), F.softmax(torch.as_tensor(X), -1)], -1).numpy()
    np.testing.assert_allclose(net.forward(X), reference, rtol=1e-13, atol=1e-12)
    assert sum(a.size for a in net.activations if a.activation.kind == "softplus") == 8  # n - 1 per vector and call
    torch.manual_seed(13)
    weights = [np.random.default_rng(13).normal(size=shape) for shape in ((8, 3), (4, 8))]
    widths = []
    for log_softmax in (True, False):
        b = NetworkBuilder()
        logits = b.linear(b.relu(b.linear(b.input((3,)), weights[0])), weights[1])
        y = b.softmax(logits, -1, log=True) if log_softmax else logits
        margin = b.sub(b.index(y, (slice(None), slice(0, 1))), b.index(y, (slice(None), slice(1, 2))))
        net = b.finish(margin, "margin")
        bounds = compute_bounds(net, InputDomain(-0.2 * np.ones(3), 0.2 * np.ones(3)), "symbolic")
        widths.append((bounds.lower[net.output][0], bounds.upper[net.output][0]))
    np.testing.assert_allclose(widths[0], widths[1], rtol=1e-9)
