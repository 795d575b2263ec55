"""Convolution, pooling and re-indexing operators (issue #14), torch and ONNX: the IR's forward pass
against torch and onnxruntime, bounds sound by sampling, and the MILP optimum against brute force."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from relumilp import optimize
from relumilp.domain import InputDomain
from relumilp.errors import UnsupportedOperatorError
from relumilp.frontends.onnx import from_onnx
from relumilp.frontends.torch import from_torch

from conftest import assert_bounds_hold
from oracles import brute_force_optima, linprog

ort = pytest.importorskip("onnxruntime")


class Block(nn.Module):
    """A convolutional block exercising one family of operators per ``kind``."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        if kind == "conv2d":  # stride, padding, dilation, groups, BatchNorm folded, residual sum
            self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=(1, 2), dilation=(1, 2))
            self.bn = nn.BatchNorm2d(4)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1, groups=2)
            self.head = nn.Linear(4 * 4 * 3, 3)
        elif kind == "conv1d":
            self.c1 = nn.Conv1d(2, 3, 3, stride=2, padding=2, dilation=2)
            self.pool = nn.AvgPool1d(2)
            self.head = nn.Linear(3 * 2, 2)
        elif kind == "transpose":
            self.c1 = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)
            self.pool = nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False)
            self.head = nn.Linear(3 * 5 * 4, 2)
        elif kind == "maxpool":  # max pooling with padding and stride, element-wise max and min
            self.c1 = nn.Conv2d(2, 3, 2)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1)
            self.head = nn.Linear(3 * 2 * 2, 2)
        elif kind == "reindex":  # pad, slice, split, concat, transpose, squeeze/unsqueeze, gather
            self.c1 = nn.Conv2d(2, 4, 1)
            self.head = nn.Linear(36, 2)

    def forward(self, x):
        if self.kind == "conv2d":
            h = torch.relu(self.bn(self.c1(x)))
            h = h + torch.relu(self.c2(h))
            return self.head(torch.flatten(h, 1))
        if self.kind == "conv1d":
            return self.head(torch.flatten(self.pool(torch.relu(self.c1(x))), 1))
        if self.kind == "transpose":
            return self.head(torch.flatten(self.pool(torch.relu(self.c1(x))), 1))
        if self.kind == "maxpool":
            h = self.c1(x)  # (1, 3, 4, 3)
            h = torch.minimum(torch.maximum(h, h[:, [2, 0, 1]] * 0.5), h + 0.25)
            return self.head(torch.flatten(self.pool(h), 1))
        h = torch.relu(self.c1(x))  # (1, 4, 4, 3)
        h = nn.functional.pad(h, (1, 0, 0, 1))  # (1, 4, 5, 4)
        a, b = torch.split(h, [1, 3], dim=1)
        h = torch.cat([b[:, :, 1:4, 1:], a[:, :, ::2, 1:4].transpose(2, 3)[:, :, :, :3]], dim=1)  # (1, 4, 3, 3)
        h = h.unsqueeze(1).squeeze(1)[:, :, [2, 0, 1], :]
        return self.head(torch.flatten(h, 1))


SHAPES = {"conv2d": (2, 7, 5), "conv1d": (2, 9), "transpose": (2, 4, 3), "maxpool": (2, 5, 4), "reindex": (2, 4, 3)}


def _model(kind):
    torch.manual_seed(1)
    model = Block(kind).double().eval()
    if kind == "conv2d":
        with torch.no_grad():
            model.bn.weight.uniform_(0.5, 1.5)
            model.bn.bias.uniform_(-0.5, 0.5)
            model.bn.running_mean.uniform_(-0.3, 0.3)
            model.bn.running_var.uniform_(0.5, 2.0)
    return model


def _onnx(model, shape) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.float(), torch.zeros((1,) + shape), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    model.double()
    return buffer.getvalue()


@pytest.mark.parametrize("kind", list(SHAPES))
def test_ir_forward_matches_torch_and_onnxruntime(kind):
    model, shape = _model(kind), SHAPES[kind]
    x = torch.randn((16,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    flat = x.reshape(16, -1).numpy()
    net = from_torch(model, input_shape=shape)
    np.testing.assert_allclose(net.forward(flat), model(x).detach().numpy(), rtol=1e-12, atol=1e-12)
    data = _onnx(model, shape)
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    expected = {"conv2d": {"Conv", "Add"}, "conv1d": {"Conv", "AveragePool"}, "transpose": {"ConvTranspose", "AveragePool"},
                "maxpool": {"MaxPool", "Max", "Min"}, "reindex": {"Pad", "Split", "Slice", "Concat", "Transpose", "Gather"}}[kind]
    assert expected <= ops, ops
    reference = ort.InferenceSession(data).run(None, {"x": x.float().numpy()})[0]
    np.testing.assert_allclose(from_onnx(onnx.load_from_string(data)).forward(flat), reference, rtol=1e-4, atol=1e-5)


def test_conv_bounds_are_sound_by_sampling():
    model, shape = _model("conv2d"), SHAPES["conv2d"]
    net = from_torch(model, input_shape=shape)
    rng = np.random.default_rng(0)
    centre = rng.uniform(-1, 1, net.input_size)
    assert_bounds_hold(net, InputDomain.box(centre - 0.1, centre + 0.1), ("interval", "symbolic", "lp"))


def _tiny_conv():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Conv2d(2, 1, 2, stride=1, padding=1), nn.ReLU(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(1, 2)).double().eval()


def test_milp_optimum_of_a_tiny_conv_net_equals_brute_force():
    net = from_torch(_tiny_conv(), input_shape=(1, 2, 3))  # 6 inputs, 2 + 4 ReLUs, average pooling
    lower, upper = np.full(6, -1.0), np.full(6, 1.0)
    for output in range(1):
        oracle = brute_force_optima(net, lower, upper, np.eye(2)[output])
        for sense in ("min", "max"):
            result = optimize(net, (lower, upper), method="milp", **{("maximize" if sense == "max" else "minimize"): output})
            assert result.status == "optimal"
            assert result.objective == pytest.approx(oracle[sense][0], abs=1e-7), (output, sense)


def _max_pool_brute_force(model, lower, upper):
    """Optima of Conv1d(1, 1, 2) -> MaxPool1d(3, 1, 1) -> Linear over a box, without relumilp: for every
    choice of the winning element of each window, one LP with the winner above its window."""
    import itertools

    w, b = model[0].weight.detach().numpy().ravel(), float(model[0].bias.detach())
    c, d = model[3].weight.detach().numpy().ravel(), float(model[3].bias.detach())
    n = lower.size
    Z = np.array([[w[0] if k == i else w[1] if k == i + 1 else 0.0 for k in range(n)] for i in range(n - 1)])  # z = Z x + b
    windows = [[i for i in (j - 1, j, j + 1) if 0 <= i < n - 1] for j in range(n - 1)]
    best = {"min": np.inf, "max": -np.inf}
    for winners in itertools.product(*windows):
        G = [Z[i] - Z[win] for j, win in enumerate(winners) for i in windows[j] if i != win]  # z_i <= z_win
        objective = sum(c[j] * Z[win] for j, win in enumerate(winners))
        constant = d + b * c.sum()
        for sense, sign in (("min", 1.0), ("max", -1.0)):
            res = linprog(sign * objective, A_ub=np.array(G), b_ub=np.zeros(len(G)), bounds=list(zip(lower, upper)))
            if res.status == 0:
                value = float(objective @ res.x + constant)
                best[sense] = min(best[sense], value) if sense == "min" else max(best[sense], value)
    return best


def test_milp_optimum_of_a_tiny_max_pool_net_equals_brute_force():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv1d(1, 1, 2), nn.MaxPool1d(3, stride=1, padding=1), nn.Flatten(),
                          nn.Linear(4, 1)).double().eval()
    net = from_torch(model, input_shape=(1, 5))
    x = np.random.default_rng(0).uniform(-1, 1, (50, 5))
    np.testing.assert_allclose(net.forward(x), model(torch.tensor(x).reshape(50, 1, 5)).detach().numpy(), atol=1e-12)
    lower, upper = np.full(5, -1.0), np.full(5, 1.0)
    oracle = _max_pool_brute_force(model, lower, upper)
    for sense in ("min", "max"):
        result = optimize(net, (lower, upper), method="milp", **{("maximize" if sense == "max" else "minimize"): 0})
        assert result.status == "optimal"
        assert result.objective == pytest.approx(oracle[sense], abs=1e-7), sense


def test_unknown_operator_keeps_the_one_line_error():
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["h"]), helper.make_node("Hardmax", ["h"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((1, 1, 2), np.float32), "w")])
    with pytest.raises(UnsupportedOperatorError, match="'Hardmax'") as err:
        from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert "\n" not in str(err.value) and "Conv" in str(err.value)
