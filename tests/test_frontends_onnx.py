"""Tests of the ONNX frontend: torch-exported and hand-built graphs against onnxruntime, and ACAS Xu.

Reference values come from onnxruntime (ORT) run in float64 wherever it has float64 kernels, compared
at 1e-9 relative. Two documented exceptions:

* ONNX stores float attributes in float32. The frontend reads LeakyRelu's alpha 0.10000000149 back as
  the 0.1 it was exported from (so the IR equals the torch one), while ORT computes with the float32
  value; that model is compared with ORT at 1e-7 (the float32 rounding of alpha is 1.5e-8 relative).
* ORT runs Clip in its opset-6 attribute form in float32 only: that graph is compared in float64 with
  ONNX's reference evaluator at 1e-9, and with ORT on a float32 copy at a float32 tolerance.

The ACAS Xu files are float32 models, so ORT computes in float32. They are compared at 1e-9 with a
float64 evaluation of their graph by the small numpy evaluator below (independent of the frontend),
and with ORT within a float32 rounding bound (see :func:`float32_error_scale`).
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from relumilp.errors import InvalidNetworkError, ModelFileError, UnsupportedOperatorError
from relumilp.frontends import load_network
from relumilp.frontends.onnx import from_onnx
from relumilp.frontends.torch import from_torch
from conftest import assert_same_ir
from relumilp.ir import Network

ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)
# torch.onnx's TorchScript-based exporter is deprecated upstream but runs offline (no onnxscript).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FLOAT32_RTOL = 2e-5
"""Tolerance for float32 computations, relative to :func:`float32_error_scale`: a float32 sum of n
products is off by at most about n * u (u = 6e-8, the float32 unit roundoff) times the sum of the
products' magnitudes, and such errors add up over layers: 7 layers * 50 terms * 6e-8 = 2e-5."""


def run_ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """ORT output for each row of ``x`` (reshaped to the model's input shape, batch of one)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    return np.stack([session.run(None, {feed.name: row.reshape(shape)})[0].reshape(-1) for row in x])


def model(nodes, inputs, output, initializers, opset=13, ir_version=8) -> onnx.ModelProto:
    tensors = [numpy_helper.from_array(v, k) for k, v in initializers.items()]
    graph = helper.make_graph(nodes, "g", inputs, [output], tensors)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def tensor(name, shape, dtype=TensorProto.DOUBLE):
    return helper.make_tensor_value_info(name, dtype, shape)


def rows(n_in: int, n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, size=(n, n_in))


# -- the same network through torch and ONNX ---------------------------------------------------------------


def every_layer_mlp(leaky: bool) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 8), nn.LeakyReLU(0.1) if leaky else nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(8, 6), nn.Hardtanh(0.0, 2.5), nn.Flatten(), nn.Linear(6, 6), nn.ReLU6(), nn.Linear(6, 3),
    ).double().eval()  # fmt: skip
    bn = net[1]
    gen = torch.Generator().manual_seed(1)
    bn.running_mean.copy_(torch.randn(8, generator=gen, dtype=torch.float64))
    bn.running_var.copy_(0.3 + torch.rand(8, generator=gen, dtype=torch.float64))
    return net


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(12, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        y = torch.relu(h + self.b(h))
        return self.c(torch.cat([y, torch.clamp(h, 0, 1.5)], dim=1).view(x.size(0), -1))


def residual() -> Residual:
    torch.manual_seed(2)
    return Residual().double().eval()


def hardtanh_mlp() -> nn.Sequential:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(3, 6), nn.Hardtanh(-1.0, 0.5), nn.Linear(6, 4), nn.ReLU6(), nn.Linear(4, 2)).double().eval()


def export(module: nn.Module, n_in: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    # opset 17: ORT has float64 LeakyRelu kernels up to that opset; the TorchScript-based exporter
    # (dynamo=False) runs offline without onnxscript.
    torch.onnx.export(
        module, (torch.zeros(1, n_in, dtype=torch.float64),), buffer, dynamo=False, opset_version=17,
        input_names=["x"], dynamic_axes={"x": {0: "batch"}},
    )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize(
    "make, n_in",
    [(lambda: every_layer_mlp(False), 5), (lambda: every_layer_mlp(True), 5), (residual, 4), (hardtanh_mlp, 3)],
    ids=["mlp", "mlp-leaky", "residual", "hardtanh"],
)
def test_torch_exported_onnx_gives_the_torch_ir(tmp_path, make, n_in):
    module = make()
    proto = export(module, n_in)
    onnx.save(proto, tmp_path / "net.onnx")
    net = load_network(tmp_path / "net.onnx")
    assert_same_ir(net, from_torch(module))
    x = rows(n_in)
    leaky = any(isinstance(m, nn.LeakyReLU) for m in module.modules())
    rtol = 1e-7 if leaky else 1e-9  # ORT uses LeakyRelu's float32 alpha (module docstring)
    np.testing.assert_allclose(net(x), run_ort(proto, x), rtol=rtol, atol=1e-12)


# -- hand-built graphs -----------------------------------------------------------------------------------


def check(proto: onnx.ModelProto, x: np.ndarray) -> Network:
    net = from_onnx(proto)
    np.testing.assert_allclose(net(x), run_ort(proto, x), rtol=1e-9, atol=1e-12)
    return net


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha, beta, bias_shape", [(1.0, 1.0, (4,)), (0.5, 2.0, (1, 4)), (-1.5, 0.0, (4,))])
def test_gemm_attributes(trans_a, trans_b, alpha, beta, bias_shape):
    rng = np.random.default_rng(trans_a * 2 + trans_b)
    w = rng.normal(size=(4, 3) if trans_b else (3, 4))
    c = rng.normal(size=bias_shape)
    x_shape = [3, 1] if trans_a else [1, 3]  # transA: the input is a column
    nodes = [
        helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=alpha, beta=beta, transA=trans_a, transB=trans_b),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    net = check(model(nodes, [tensor("x", x_shape)], tensor("z", None), {"w": w, "c": c}), rows(3))
    assert net.is_sequential and net.input_size == 3 and net.output_size == 4
    assert net.input_shape == ((3, 1) if trans_a else (3,))


def test_gemm_with_the_network_value_as_second_operand():
    rng = np.random.default_rng(7)
    w, c = rng.normal(size=(4, 3)), rng.normal(size=(4, 1))
    nodes = [helper.make_node("Gemm", ["w", "x", "c"], ["y"], transB=1, alpha=2.0)]  # y = 2 W x^T + c
    check(model(nodes, [tensor("x", [1, 3])], tensor("y", None), {"w": w, "c": c}), rows(3))


def test_matmul_add_normalisation_and_leaky_relu():
    rng = np.random.default_rng(3)
    init = {
        "mean": rng.normal(size=5), "std": rng.uniform(0.5, 2, size=5), "w1": rng.normal(size=(5, 6)),
        "b1": rng.normal(size=6), "w2": rng.normal(size=(6, 2)), "k": np.array(3.0), "b2": rng.normal(size=2),
    }  # fmt: skip
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["s"]),
        helper.make_node("Div", ["s", "std"], ["n"]),
        helper.make_node("MatMul", ["n", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("LeakyRelu", ["hb"], ["a"], alpha=0.125),  # exact in float32
        helper.make_node("Mul", ["a", "k"], ["ak"]),
        helper.make_node("MatMul", ["ak", "w2"], ["o"]),
        helper.make_node("Add", ["b2", "o"], ["y"]),
    ]
    net = check(model(nodes, [tensor("x", ["N", 5])], tensor("y", None), init, opset=16), rows(5))
    # the normalisation folds into the first layer, the scaling into the second.
    assert [type(n).__name__ for n in net] == ["InputNode", "AffineNode", "ActivationNode", "AffineNode"]
    assert net.activations[0].kind == "leaky_relu" and net.activations[0].alpha == 0.125


def clip_model(opset: int, dtype, low=0.0, high=2.0) -> onnx.ModelProto:
    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    w = np.random.default_rng(4).normal(size=(3, 4)).astype(np_type)
    init = {"w": w}
    if opset < 11:
        attrs = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
        clip = helper.make_node("Clip", ["h"], ["y"], **attrs)
    else:
        init.update({k: np.array(v, dtype=np_type) for k, v in (("lo", low), ("hi", high)) if v is not None})
        clip = helper.make_node("Clip", ["h", "lo" if low is not None else "", "hi" if high is not None else ""], ["y"])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), clip]
    return model(nodes, [tensor("x", [1, 3], dtype)], tensor("y", None, dtype), init, opset)


def test_clip_as_inputs_opset13():
    net = check(clip_model(13, TensorProto.DOUBLE), rows(3))
    assert (net.activations[0].kind, net.activations[0].cap) == ("clipped_relu", 2.0)
    assert check(clip_model(13, TensorProto.DOUBLE, high=None), rows(3)).activations[0].kind == "relu"


def test_clip_as_attributes_opset6():
    from onnx.reference import ReferenceEvaluator

    net = from_onnx(clip_model(6, TensorProto.DOUBLE))
    assert (net.activations[0].kind, net.activations[0].cap) == ("clipped_relu", 2.0)
    x = rows(3)
    reference = ReferenceEvaluator(clip_model(6, TensorProto.DOUBLE))
    expected = np.stack([reference.run(None, {"x": row.reshape(1, 3)})[0].reshape(-1) for row in x])
    np.testing.assert_allclose(net(x), expected, rtol=1e-9, atol=1e-12)
    # ORT implements opset-6 Clip in float32 only.
    x32 = x.astype(np.float32)
    out32 = run_ort(clip_model(6, TensorProto.FLOAT), x32)
    net32 = from_onnx(clip_model(6, TensorProto.FLOAT))
    np.testing.assert_allclose(net32(x32.astype(np.float64)), out32, rtol=FLOAT32_RTOL, atol=1e-6)
    assert from_onnx(clip_model(6, TensorProto.DOUBLE, high=None)).activations[0].kind == "relu"


def test_float_attributes_read_as_the_exported_decimal():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("LeakyRelu", ["h"], ["y"], alpha=0.1)]
    net = from_onnx(model(nodes, [tensor("x", [1, 2])], tensor("y", None), {"w": np.eye(2)}))
    assert net.activations[0].alpha == 0.1


def test_flatten_reshape_and_initializers_listed_as_inputs():
    rng = np.random.default_rng(5)
    init = {
        "w": rng.normal(size=(6, 4)), "b": rng.normal(size=4), "shape": np.array([0, -1], dtype=np.int64),
        "w2": rng.normal(size=(4, 2)),
    }  # fmt: skip
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Gemm", ["r", "w", "b"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["a2"]),
        helper.make_node("Flatten", ["a2"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w2"], ["y"]),
    ]
    listed = [tensor(k, list(v.shape), helper.np_dtype_to_tensor_dtype(v.dtype)) for k, v in init.items()]
    inputs = [tensor("x", ["N", 2, 3])] + listed  # old exporters list initializers as inputs
    net = check(model(nodes, inputs, tensor("y", None), init, opset=8, ir_version=3), rows(6))
    assert net.input_shape == (2, 3) and net.is_sequential and len(net.affines) == 2


def test_residual_add_concat_and_batch_norm():
    rng = np.random.default_rng(6)
    init = {
        "w1": rng.normal(size=(3, 4)), "w2": rng.normal(size=(4, 4)), "scale": rng.normal(size=8),
        "shift": rng.normal(size=8), "mean": rng.normal(size=8), "var": rng.uniform(0.5, 2, size=8),
        "w3": rng.normal(size=(8, 2)),
    }  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("MatMul", ["a", "w2"], ["g"]),
        helper.make_node("Add", ["a", "g"], ["r"]),  # residual: a sum of two network values
        helper.make_node("Relu", ["r"], ["ra"]),
        helper.make_node("Concat", ["ra", "a"], ["c"], axis=-1),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("MatMul", ["bn", "w3"], ["y"]),
    ]
    net = check(model(nodes, [tensor("x", [1, 3])], tensor("y", None), init, opset=15), rows(3))
    assert net["linear1"].inputs == ("act0",)  # a + a @ w2 reads a once
    assert net["linear2"].inputs == ("act0", "act1")  # the concatenation, normalised, then w3


# -- bad input ---------------------------------------------------------------------------------------


def single_op_model(op: str, **attrs) -> onnx.ModelProto:
    init = {"w": np.ones((3, 1, 2)) if op == "Conv" else np.ones((3, 3))}
    first = helper.make_node("MatMul", ["x", "w"], ["h"], name="dense") if op != "Conv" else None
    operands = ["x", "w"] if op == "Conv" else ["h"]
    node = helper.make_node(op, operands, ["y"], name=f"my_{op.lower()}", **attrs)
    shape = [1, 1, 5] if op == "Conv" else [1, 3]
    return model([n for n in (first, node) if n], [tensor("x", shape)], tensor("y", None), init)


@pytest.mark.parametrize(
    "op, smooth", [("Floor", False), ("Round", False), ("ArgMax", False), ("Sin", False)]
)
def test_unsupported_operator_is_named(op, smooth):
    with pytest.raises(UnsupportedOperatorError) as err:
        from_onnx(single_op_model(op))
    message = str(err.value)
    assert f"'{op}'" in message and f"my_{op.lower()}" in message and "Gemm" in message
    assert ("not piecewise-linear" in message) == smooth
    assert "\n" not in message


def test_nan_weights_name_the_node():
    proto = single_op_model("Relu")
    proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((3, 3), np.nan), "w"))
    with pytest.raises(InvalidNetworkError, match="'dense' \\(MatMul\\) contains NaN") as err:
        from_onnx(proto)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (None, "model file not found"),
        (b"\x08\x07\x12\x04junk\xff\xff\xff" * 20, "cannot read .* as an ONNX model"),
        (b"", "is not an ONNX model"),
    ],
    ids=["missing", "corrupt", "empty"],
)
def test_bad_onnx_files(tmp_path, content, pattern):
    path = tmp_path / "net.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=pattern) as err:
        load_network(path)
    assert "\n" not in str(err.value)


def test_two_inputs_are_refused():
    nodes = [helper.make_node("Add", ["x", "z"], ["y"])]
    with pytest.raises(InvalidNetworkError, match="2 inputs"):
        from_onnx(model(nodes, [tensor("x", [1, 3]), tensor("z", [1, 3])], tensor("y", None), {}))


# -- ACAS Xu -------------------------------------------------------------------------------------------


def numpy_reference(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Evaluate an ACAS Xu graph (Sub, Flatten, MatMul, Add, Relu) node by node in float64."""
    values = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    real_input = next(v for v in proto.graph.input if v.name not in values)
    rank = len(real_input.type.tensor_type.shape.dim)
    values[real_input.name] = x.reshape((len(x),) + (1,) * (rank - 2) + (x.shape[1],))
    ops = {
        "Sub": lambda a, b: a - b,
        "Add": lambda a, b: a + b,
        "MatMul": lambda a, b: a @ b,
        "Relu": lambda a: np.maximum(a, 0.0),
        "Flatten": lambda a: a.reshape(len(a), -1),
    }
    for node in proto.graph.node:
        values[node.output[0]] = ops[node.op_type](*(values[n] for n in node.input))
    return values[proto.graph.output[0].name].reshape(len(x), -1)


def float32_error_scale(net: Network, x: np.ndarray) -> np.ndarray:
    """The output's rounding-error scale: ``|W| |h| + |b|`` carried through the layers (active units only)."""
    values = net.forward_all(x)
    scale = {net.input.name: np.abs(x)}
    for node in net.order[1:]:
        source = scale[node.inputs[0]]
        if hasattr(node, "weights"):
            scale[node.name] = source @ np.abs(node.weight).T + np.abs(node.bias)
        else:
            scale[node.name] = np.where(values[node.inputs[0]] > 0, source, 0.0)
    return scale[net.output]


def test_acasxu_networks_match_onnxruntime(acasxu_dir):
    files = sorted(acasxu_dir.glob("ACASXU_run2a_*_batch_2000.onnx"))
    assert len(files) == 45
    x32 = np.random.default_rng(0).uniform(-0.5, 0.5, size=(40, 5)).astype(np.float32)
    x = x32.astype(np.float64)  # the IR and the float64 reference see exactly ORT's float32 input
    worst = {"reference": 0.0, "ort/output": 0.0, "ort/rounding-scale": 0.0}
    for path in files:
        proto = onnx.load(path)
        net = load_network(path)
        assert net.is_sequential and net.hidden_sizes == [50] * 6 and len(net.affines) == 7
        assert [a.kind for a in net.activations] == ["relu"] * 6
        assert (net.input_size, net.output_size, net.input_shape) == (5, 5, (1, 1, 5))
        out = net(x)
        reference = numpy_reference(proto, x)
        np.testing.assert_allclose(out, reference, rtol=1e-9, atol=1e-12)
        ort_error = np.abs(out - run_ort(proto, x32))
        worst["reference"] = max(worst["reference"], (np.abs(out - reference) / np.abs(reference)).max())
        worst["ort/output"] = max(worst["ort/output"], (ort_error / np.abs(out).max(axis=1, keepdims=True)).max())
        worst["ort/rounding-scale"] = max(worst["ort/rounding-scale"], (ort_error / float32_error_scale(net, x)).max())
    print("ACAS Xu max relative errors:", {k: f"{v:.2e}" for k, v in worst.items()})
    assert worst["ort/rounding-scale"] < FLOAT32_RTOL


def test_export_onnx_writes_a_file_relumilp_reads_back(tmp_path):
    import torch

    import relumilp

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    module.train()
    net = relumilp.export_onnx(module, tmp_path / "m.onnx")
    assert module.training  # the caller's mode is restored
    x = np.random.default_rng(0).normal(size=(5, 3))
    with torch.no_grad():
        expected = module(torch.tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-5, atol=1e-5)
    assert relumilp.load_network(tmp_path / "m.onnx").input_size == 3
    with pytest.raises(relumilp.ModelFileError):
        relumilp.export_onnx(module, tmp_path / "m.txt")


# -- general Clip(a, b) ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("low, high", [(-0.5, 1.25), (0.25, 2.0), (-3.0, -1.0)])
def test_general_clip_as_inputs_and_as_attributes(low, high):
    from onnx.reference import ReferenceEvaluator

    net = check(clip_model(13, TensorProto.DOUBLE, low, high), rows(3))  # IR forward equals ORT
    assert net.activations[0].activation.to_spec() == {"kind": "clip", "low": low, "high": high}
    proto = clip_model(6, TensorProto.DOUBLE, low, high)
    net = from_onnx(proto)
    assert net.activations[0].activation.to_spec() == {"kind": "clip", "low": low, "high": high}
    x = rows(3)
    reference = ReferenceEvaluator(proto)
    expected = np.stack([reference.run(None, {"x": row.reshape(1, 3)})[0].reshape(-1) for row in x])
    np.testing.assert_allclose(net(x), expected, rtol=1e-9, atol=1e-12)


def test_one_sided_clips_are_shifted_relus_and_a_reversed_range_is_refused():
    for low, high in [(0.5, None), (None, -0.25)]:
        net = from_onnx(clip_model(13, TensorProto.DOUBLE, low, high))
        assert [node.kind for node in net.activations] == ["pwl"]
        x = np.linspace(-2.0, 2.0, net.input_size)
        h = x @ np.random.default_rng(4).normal(size=(3, 4))  # clip_model's MatMul
        expected = np.maximum(h, low) if low is not None else np.minimum(h, high)
        np.testing.assert_array_equal(net.forward(x), expected)
    with pytest.raises(UnsupportedOperatorError, match="clip range"):
        from_onnx(clip_model(13, TensorProto.DOUBLE, 0.5, 0.25))


# -- edge cases of the ONNX spec, and invalid models onnxruntime refuses -------------------------------

def _graph(nodes, shape, initializers=(), opset=13, sparse=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers],
                              sparse_initializer=list(sparse))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("start, end, step", [(-100, -200, -1), (-100, 100, 1), (100, -100, -1), (2, -100, -2),
                                              (-1, 0, -1), (3, 1, -1), (0, -1, 1), (-2, 100, 2), (5, 0, -3)])
def test_slice_clamps_start_and_end_as_the_spec_says(start, end, step):
    # Python slices wrap a negative end again and empty a start below -size; ONNX clamps both once
    ort = pytest.importorskip("onnxruntime")
    ints = lambda name, v: (name, np.array([v], np.int64))
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["z"]), helper.make_node("Concat", ["x", "z"], ["y"], axis=2)]
    proto = _graph(nodes, [1, 2, 5], [ints("s", start), ints("e", end), ints("a", 2), ints("t", step)])
    x = np.random.default_rng(0).normal(size=(1, 2, 5)).astype(np.float32)
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    net = from_onnx(proto)
    assert net.output_size == expected.size
    np.testing.assert_allclose(net.forward(x.reshape(1, -1).astype(np.float64)), expected.reshape(1, -1), rtol=1e-6)


@pytest.mark.parametrize("indices", [np.array([1, 11]), np.array([[0, 1], [2, 3]])])
def test_sparse_initializers_are_read(indices):
    ort = pytest.importorskip("onnxruntime")
    weight = helper.make_sparse_tensor(numpy_helper.from_array(np.array([2.0, -1.5], np.float32), "W"),
                                       numpy_helper.from_array(indices.astype(np.int64), "W_idx"), [3, 4])
    proto = _graph([helper.make_node("MatMul", ["x", "W"], ["y"])], [1, 3], sparse=[weight])
    x = np.array([[0.5, -1.0, 2.0]], np.float32)
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(from_onnx(proto).forward(x.astype(np.float64)), expected, rtol=1e-6)


_W = ("w", np.ones((2, 1, 3, 3), np.float32))


@pytest.mark.parametrize("node, initializers, shape, pattern", [
    (helper.make_node("Conv", ["x", "w"], ["y"], strides=[0, 1]), [_W], [1, 1, 5, 5], "strides"),
    (helper.make_node("Conv", ["x", "w"], ["y"], dilations=[0, 1]), [_W], [1, 1, 5, 5], "dilations"),
    (helper.make_node("Conv", ["x", "w"], ["y"], strides=[-1, 1]), [_W], [1, 1, 5, 5], "strides"),
    (helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[0, 1]), [_W], [1, 1, 5, 5], "strides"),
    (helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[2, 2]), [_W], [1, 1, 5, 5], "kernel_shape"),
    (helper.make_node("Conv", ["x", "w"], ["y"], pads=[-1, 0, 0, 0]), [_W], [1, 1, 5, 5], "pads"),
    (helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[0, 1]), [("w", np.ones((1, 2, 3, 3), np.float32))],
     [1, 1, 5, 5], "strides"),
    (helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_padding=[2, 0]),
     [("w", np.ones((1, 2, 3, 3), np.float32))], [1, 1, 5, 5], "output_padding"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[1, 0]), [], [1, 1, 5, 5], "strides"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[-1, 1]), [], [1, 1, 5, 5], "dilations"),
    (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[0, 1]), [], [1, 1, 5, 5], "strides"),
    (helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[2, 2, 2, 2]), [], [1, 1, 5, 5], "pads"),
    (helper.make_node("Flatten", ["x"], ["y"], axis=5), [], [1, 1, 5, 5], "axis"),
    (helper.make_node("Pad", ["x", "p", "v"], ["y"]), [("p", np.array([0, 1, 0, 1], np.int64)),
                                                       ("v", np.array(np.nan, np.float32))], [1, 3], "Pad value"),
    (helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"]),
     [(k, np.array(v, np.float32)) for k, v in (("s", [1, 1, 1]), ("b", [0, 0, 0]), ("m", [0, 0, 0]), ("v", [1, -2, 1]))],
     [1, 3], "variance"),
    (helper.make_node("Slice", ["x", "s", "e"], ["y"]), [("s", np.array([5], np.int64)), ("e", np.array([9], np.int64))],
     [1, 3], "no element"),
    (helper.make_node("Relu", ["x"], ["y"]), [], [1, 0], "no elements"),
])
def test_invalid_models_are_refused_in_one_line(node, initializers, shape, pattern):
    with pytest.raises((InvalidNetworkError, ModelFileError), match=pattern) as info:
        from_onnx(_graph([node], shape, initializers))
    assert "\n" not in str(info.value)


def test_split_into_more_parts_than_elements_leaves_the_last_empty_and_says_so():
    nodes = [helper.make_node("Split", ["x"], ["a", "b", "c", "d"], axis=1, num_outputs=4),
             helper.make_node("Concat", ["a", "c"], ["y"], axis=1)]
    with pytest.raises(InvalidNetworkError, match="no element"):
        from_onnx(_graph(nodes, [1, 6], opset=18))
    nodes[0] = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)  # 3, 3, 1 of 7
    net = from_onnx(_graph(nodes, [1, 7], opset=18))
    x = np.arange(7.0)[None]
    np.testing.assert_array_equal(net.forward(x), x[:, [0, 1, 2, 6]])


def test_a_clip_bound_from_the_network_and_a_tensor_defined_twice_are_refused():
    nodes = [helper.make_node("ReduceMin", ["x"], ["m"], keepdims=0, axes=[0, 1]), helper.make_node("Clip", ["x", "m"], ["y"])]
    with pytest.raises(UnsupportedOperatorError, match="Clip with a bound computed from the network"):
        from_onnx(_graph(nodes, [1, 3]))
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
    with pytest.raises(ModelFileError, match="more than once"):
        from_onnx(_graph(nodes, [1, 3]))
