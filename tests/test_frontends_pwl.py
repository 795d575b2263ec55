"""Frontends of the piecewise-linear kinds: torch (fx, TorchScript, torch.export) and ONNX give IRs whose
float64 forward pass equals torch's and onnxruntime's for Hardsigmoid, PReLU (1 or C slopes), abs,
Max/Min with constants, Hardtanh and ReLU6."""

from __future__ import annotations

import copy
import io

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from relumilp.frontends.onnx import from_onnx
from relumilp.frontends.torch import from_torch

ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


class Functional(nn.Module):
    """abs and maximum / minimum with constants, as functions in forward."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 4)
        self.register_buffer("cap", torch.tensor([0.3, -0.2, 0.3, 0.5], dtype=torch.float64))

    def forward(self, x):
        h = torch.abs(self.a(x))
        h = torch.maximum(self.b(h), self.cap)
        return torch.minimum(h, torch.full((4,), 0.8, dtype=torch.float64))


def sequential(prelu_params: int) -> nn.Sequential:
    torch.manual_seed(prelu_params)
    prelu = nn.PReLU(prelu_params)
    with torch.no_grad():  # slopes of every sort: 0, < 1, negative, 1 and > 1 (concave)
        prelu.weight.copy_(torch.tensor([0.25, -0.5, 1.0, 2.0, 0.0, 0.25][:prelu_params]))
    return nn.Sequential(nn.Linear(3, 6), nn.Hardsigmoid(), nn.Linear(6, 6), prelu, nn.Linear(6, 5), nn.Hardtanh(-0.5, 0.7),
                         nn.Linear(5, 4), nn.ReLU6(), nn.Linear(4, 2)).double().eval()


MODULES = {"prelu1": lambda: sequential(1), "preluC": lambda: sequential(6),
           "functional": lambda: Functional().double().eval()}


def rows(seed: int = 0, n: int = 200) -> torch.Tensor:
    return torch.tensor(np.random.default_rng(seed).normal(scale=3.0, size=(n, 3)))


@pytest.mark.parametrize("name", list(MODULES))
def test_torch_forward_equals_the_ir(name):
    module = MODULES[name]()
    x = rows()
    with torch.no_grad():
        expected = module(x).numpy()
    sources = [module, torch.jit.script(module)]
    if name == "preluC":  # torch.export is slow to start: once, on the module with the most layer kinds
        sources.append(torch.export.export(module, (x[:2],)))
    for source in sources:
        net = from_torch(source, input_shape=(3,))
        np.testing.assert_allclose(net(x.numpy()), expected, rtol=1e-12, atol=1e-12)
    kinds = {a.kind for a in from_torch(module).activations}
    assert kinds <= {"hard_sigmoid", "leaky_relu", "relu", "pwl", "clip", "clipped_relu", "abs"}


def test_per_channel_prelu_splits_by_slope():
    """Six slopes with five distinct values: 1 is the identity (no node), the others one node each."""
    net = from_torch(sequential(6))
    prelu_nodes = [a for a in net.activations if a.kind in ("leaky_relu", "relu", "pwl")]
    assert sorted(a.kind for a in prelu_nodes) == ["leaky_relu", "leaky_relu", "pwl", "relu"]
    assert sum(a.size for a in prelu_nodes) == 5


def export(module: nn.Module, dtype=torch.float64) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(module, (torch.zeros(1, 3, dtype=dtype),), buffer, dynamo=False, opset_version=17,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def run_ort(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", list(MODULES))
def test_torch_to_onnx_to_ir_equals_torch_and_onnxruntime(name):
    module = MODULES[name]()
    proto = export(module)
    ops = {n.op_type for n in proto.graph.node}
    net = from_onnx(proto)
    x = rows(1)
    with torch.no_grad():
        expected = module(x).numpy()
    # ONNX keeps HardSigmoid's alpha in float32 (0.16666667 for 1/6): a 2e-9 relative change of the slope
    np.testing.assert_allclose(net(x.numpy()), expected, rtol=1e-8, atol=1e-8 if "HardSigmoid" in ops else 1e-12)
    try:
        reference = run_ort(proto, x.numpy())
    except Exception:  # no float64 kernel for some op: compare on a float32 copy
        proto32 = export(copy.deepcopy(module).float(), torch.float32)
        reference = run_ort(proto32, x.numpy().astype(np.float32))
    np.testing.assert_allclose(net(x.numpy()), reference, rtol=1e-5, atol=1e-5)


def graph(op: str, consts: dict, attrs=None, inputs=("x",), dtype=np.float64) -> onnx.ModelProto:
    """One ONNX node ``op`` on a (1, 4) input ``x`` and constant initializers."""
    node = helper.make_node(op, list(inputs), ["y"], **(attrs or {}))
    tensors = [numpy_helper.from_array(np.asarray(v, dtype=dtype), k) for k, v in consts.items()]
    kind = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", kind, ["N", 4])],
                          [helper.make_tensor_value_info("y", kind, ["N", 4])], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("op, consts, attrs, inputs", [
    ("HardSigmoid", {}, {"alpha": 0.5, "beta": 0.25}, ("x",)),
    ("HardSigmoid", {}, {"alpha": -0.75, "beta": 0.5}, ("x",)),
    ("Abs", {}, None, ("x",)),
    ("PRelu", {"s": [0.25]}, None, ("x", "s")),
    ("PRelu", {"s": [0.25, -0.5, 1.0, 2.0]}, None, ("x", "s")),
    ("Max", {"c": 0.5}, None, ("x", "c")),
    ("Max", {"c": [0.0, 0.5, -1.0, 0.5], "d": -0.25}, None, ("c", "x", "d")),
    ("Min", {"c": [0.5, -0.5, 0.0, 2.0]}, None, ("x", "c")),
    ("Max", {"c": 0.0}, None, ("x", "c")),
])
def test_onnx_ops_equal_onnxruntime(op, consts, attrs, inputs):
    """Bitwise equal to ONNX's float64 reference evaluator; equal to ORT in float64 where it has the
    kernel (Abs, PRelu, Max, Min), else within float32 rounding on a float32 copy (HardSigmoid)."""
    from onnx.reference import ReferenceEvaluator

    proto = graph(op, consts, attrs, inputs)
    net = from_onnx(proto)
    x = np.concatenate([np.random.default_rng(2).normal(scale=3.0, size=(300, 4)), np.zeros((1, 4))])
    reference = ReferenceEvaluator(proto)
    expected = reference.run(None, {"x": x})[0]
    np.testing.assert_array_equal(net(x), expected)
    if op == "HardSigmoid":
        x32 = x.astype(np.float32)
        out32 = run_ort(graph(op, consts, attrs, inputs, np.float32), x32)
        np.testing.assert_allclose(net(x32.astype(np.float64)), out32, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(net(x), run_ort(proto, x))
    if op == "Max" and consts.get("c") == 0.0:
        assert [a.kind for a in net.activations] == ["relu"]


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_of_network_values_and_a_constant(op):
    """Two network values (exact ReLU lowering) and a constant (a ReLU-type kind) in one Max/Min."""
    from onnx.reference import ReferenceEvaluator

    proto = graph(op, {"c": np.array([0.5, -1.0, 0.0, 2.0])}, None, ("x", "x", "c"))
    net = from_onnx(proto)
    x = np.random.default_rng(3).normal(scale=3.0, size=(200, 4))
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    np.testing.assert_array_equal(net(x), expected)
