"""ONNX graphs as other toolchains write them (tf2onnx/keras, mixed precision, old opsets, sklearn-style):
read exactly as onnxruntime or the ONNX spec computes them, or refused in one line."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import relumilp
from relumilp.errors import ModelFileError, UnsupportedOperatorError
from relumilp.frontends.onnx import from_onnx


# -- A Cast of a network value to a 16-bit float type rounds it (onnxruntime computes the rounded value):
# refused in one line, as the torch frontend refuses `.half()`; Cast to float / double stays the identity.


def _cast_model(to):
    w = np.array([[100.3, -7.77], [55.1, 3.3]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Cast", ["h"], ["c"], to=to),
         helper.make_node("Cast", ["c"], ["y"], to=TensorProto.FLOAT)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [numpy_helper.from_array(w, "W")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("to", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_cast_of_a_network_value_to_16_bits_is_refused(to):
    name = TensorProto.DataType.Name(to).lower()
    with pytest.raises(UnsupportedOperatorError, match=f"Cast of a network value to {name}"):
        from_onnx(_cast_model(to))


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_cast_to_float_or_double_is_the_identity(to):
    net = from_onnx(_cast_model(to))
    x = np.array([0.123, 0.456])
    assert np.allclose(net.forward(x), x @ np.array([[100.3, -7.77], [55.1, 3.3]], np.float32), rtol=1e-12)


# -- LeakyRelu with alpha >= 1 is valid ONNX (torch's LeakyReLU(negative_slope=1.5) exports it): it compiles
# as PRelu with that slope does, and matches onnxruntime; alpha = 1 is the identity.


ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("alpha", [1.0, 1.5, 3.0])
def test_leaky_relu_slope_at_least_one(alpha):
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("LeakyRelu", ["h"], ["a"], alpha=alpha),
         helper.make_node("MatMul", ["a", "W2"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    net = from_onnx(m)
    x = rng.uniform(-1, 1, size=(200, 3))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"x": x.astype(np.float32)})[0]
    assert np.allclose(net.forward(x), ref, rtol=1e-5, atol=1e-5)
    bounds = relumilp.compute_bounds(net, (-np.ones(3), np.ones(3)), "symbolic", workers=1)
    lower, upper = bounds[net.output]
    values = net.forward(x)
    assert np.all(values >= lower - 1e-9) and np.all(values <= upper + 1e-9)


# -- Opset < 7 Add / Sub / Mul / Div with ``broadcast=1, axis=k`` align the second input at axis k (the old
# exporters' per-channel bias and scale); numpy's trailing alignment gave a different network when the
# channel count equals the width, and a refusal otherwise. onnxruntime has no kernels below opset 7: the
# expected values are the spec's, computed with numpy.


def _old_model(nodes, c, w, initializers):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 2, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 2, w])],
                              [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)])
    m.ir_version = 3
    return m


@pytest.mark.parametrize("c, w", [(4, 4), (3, 4)])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_legacy_broadcast_aligns_at_axis(op, c, w):
    rng = np.random.default_rng(0)
    s = rng.uniform(0.5, 2.0, size=c).astype(np.float32)
    m = _old_model([helper.make_node(op, ["x", "s"], ["y"], broadcast=1, axis=1)], c, w, {"s": s})
    x = rng.normal(size=(1, c, 2, w))
    fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
    expected = fn(x, s.astype(np.float64).reshape(1, c, 1, 1)).ravel()
    assert np.allclose(from_onnx(m).forward(x.ravel()), expected, rtol=1e-12, atol=1e-12)


def test_legacy_broadcast_of_constants_is_folded_the_same_way():
    rng = np.random.default_rng(1)
    a, s = rng.normal(size=(1, 4, 2, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    m = _old_model([helper.make_node("Mul", ["a", "s"], ["p"], broadcast=1, axis=1),
                    helper.make_node("Add", ["x", "p"], ["y"])], 4, 4, {"a": a, "s": s})
    x = rng.normal(size=(1, 4, 2, 4))
    expected = (x + a * s.reshape(1, 4, 1, 1)).ravel()
    assert np.allclose(from_onnx(m).forward(x.ravel()), expected, rtol=1e-6, atol=1e-6)


# -- Dropout with a true ``training_mode`` input drops random elements (onnxruntime does): refused in one line, as
# training-mode BatchNormalization is; false, absent or a zero ratio stays the identity.


def _dropout(ratio, training):
    inits = {"r": np.array(ratio, np.float32)}
    inputs = ["x", "r"]
    if training is not None:
        inits["t"] = np.array(training)
        inputs.append("t")
    graph = helper.make_graph([helper.make_node("Dropout", inputs, ["y", "mask"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def test_training_mode_dropout_is_refused():
    with pytest.raises(UnsupportedOperatorError, match="training-mode Dropout"):
        from_onnx(_dropout(0.5, True))


@pytest.mark.parametrize("ratio, training", [(0.5, False), (0.5, None), (0.0, True)])
def test_inference_dropout_is_the_identity(ratio, training):
    x = np.array([1.0, -2.0, 3.0, 0.5])
    assert np.array_equal(from_onnx(_dropout(ratio, training)).forward(x), x)


# -- Concat's axis is optional (default 1) below opset 4; a required attribute that a node lacks is named in the
# one-line error instead of reading as a shape mismatch.


def _model(nodes, opset):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 3
    return m


def _relu_concat():
    return [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Concat", ["r", "x"], ["y"])]


def test_concat_without_axis_before_opset_4_concatenates_channels():
    net = from_onnx(_model(_relu_concat(), 3))
    x = np.arange(18.0) - 9
    assert np.array_equal(net.forward(x), np.concatenate([np.maximum(x, 0).reshape(2, 9), x.reshape(2, 9)]).ravel())


@pytest.mark.parametrize("nodes, name", [(_relu_concat(), "axis"), ([helper.make_node("MaxPool", ["x"], ["y"])], "kernel_shape")])
def test_a_missing_required_attribute_is_named(nodes, name):
    with pytest.raises(ModelFileError, match=f"lacks its required attribute '{name}'"):
        from_onnx(_model(nodes, 13))


# -- An Identity between a comparison and the Where that reads it (tf2onnx keeps such nodes) passes the
# comparison through: the choice compiles as without it.


def test_identity_of_a_comparison_feeds_where():
    graph = helper.make_graph(
        [helper.make_node("Greater", ["x", "z"], ["g"]), helper.make_node("Identity", ["g"], ["gi"]),
         helper.make_node("Where", ["gi", "x", "z"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [numpy_helper.from_array(np.float32(0), "z")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    x = np.array([-1.5, 0.25, 2.0, -0.1])
    assert np.array_equal(from_onnx(m).forward(x), np.where(x > 0, x, 0.0))
