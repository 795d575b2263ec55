"""Operators of real exports (issue #14's closing list), torch and ONNX: Resize / Upsample, ceil-mode pooling,
adaptive average and max pooling, the SiLU, HardSwish and GELU (Erf) patterns and HardSwish, ReduceSum / ReduceMean
/ ReduceMax / ReduceMin, Expand, Tile, Where, DepthToSpace / SpaceToDepth (pixel shuffles), Mean, the shape
sub-graphs of Reshape. The IR's forward pass against torch and onnxruntime, bounds sound by sampling, and
the MILP optimum of a tiny network with a Resize against brute force."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from torch import nn

import relumilp
from relumilp import optimize
from relumilp.domain import InputDomain
from relumilp.errors import UnsupportedOperatorError
from relumilp.frontends.onnx import from_onnx
from relumilp.frontends.torch import from_torch

from conftest import assert_bounds_hold, assert_onnx_model_matches_ort, onnx_graph_model
from oracles import brute_force_optima

ort = pytest.importorskip("onnxruntime")


class Net(nn.Module):
    """A small network around one family of operators (``kind``), with trained-like random weights."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(1, 2, 2)
        self.lin = nn.Linear(6, 6)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.silu, self.hardswish, self.gelu = nn.SiLU(), nn.Hardswish(), nn.GELU()
        self.adaptive = nn.AdaptiveAvgPool2d((4, 1))
        self.shuffle, self.unshuffle = nn.PixelShuffle(2), nn.PixelUnshuffle(2)
        self.head = nn.LazyLinear(2)

    def body(self, x):
        k = self.kind
        if k == "upsample":  # (1, 3, 3) -> conv (2, 2, 2) -> nearest x2, then bilinear to (5, 3)
            h = torch.relu(F.interpolate(self.conv(x), scale_factor=2, mode="nearest"))
            return F.interpolate(h, size=(5, 3), mode="bilinear")
        if k == "upsample_corners":  # the module, align_corners, and 1-D linear
            h = self.up(self.conv(x))
            return F.interpolate(torch.relu(h).flatten(2), scale_factor=1.5, mode="linear")
        if k == "ceil_pools":  # (1, 6, 5): windows past the end, padding counted or not
            h = self.conv(x)  # (2, 5, 4)
            h = F.max_pool2d(h, 3, 2, 1, ceil_mode=True)  # (2, 3, 3)
            a = F.avg_pool2d(h, 2, 2, 0, ceil_mode=True, count_include_pad=True)  # (2, 2, 2)
            b = F.avg_pool2d(h, 3, 2, 1, ceil_mode=True, count_include_pad=False)  # (2, 2, 2)
            return torch.cat([a.flatten(1), b.flatten(1)], 1)
        if k == "silu":  # the product spelling exporters emit, and nn.SiLU
            h = self.lin(x)
            return self.silu(self.lin(h * torch.sigmoid(h)))
        if k == "hardswish":  # the layer and both product spellings
            h = self.hardswish(self.lin(x))
            g = self.lin(h)
            h = g * F.relu6(g + 3) / 6
            h = self.lin(h)
            return h * F.hardsigmoid(h)
        if k == "gelu":  # torch exports GELU below opset 20 as x * 0.5 * (1 + erf(x / sqrt 2))
            return self.gelu(self.lin(self.gelu(self.lin(x))))
        if k == "reduce":  # (2, 3, 4): sums, means, broadcasting, tiling, a constant selection
            s = x.sum(dim=2) + x.mean(dim=(1, 2), keepdim=True).squeeze(2)  # (1, 2, 4)
            e = s[:, :1].expand(-1, 2, 4).repeat(1, 1, 2)  # (1, 2, 8)
            return torch.where(torch.arange(8) % 3 == 0, e, torch.relu(s.repeat(1, 1, 2)))
        if k == "reduce_max":  # (2, 3, 4): maxima and minima over axes, exact ReLU trees
            h = torch.amax(x, dim=2) - torch.amin(x, dim=(1, 2), keepdim=True).squeeze(2)  # (1, 2, 3)
            return torch.cat([h, torch.amax(x, dim=(1, 2, 3), keepdim=True).squeeze(3).expand(-1, 2, 1)], 2)
        if k == "adaptive":  # (1, 5, 4) -> conv (2, 4, 3): adaptive pools and area interpolation (factor sizes)
            h = torch.relu(self.conv(x))
            return torch.cat([F.adaptive_avg_pool2d(h, (2, 1)).flatten(1), self.adaptive(h).flatten(1),
                              F.interpolate(h, size=(2, 3), mode="area").flatten(1),
                              F.adaptive_max_pool2d(h, (2, 3)).flatten(1)], 1)
        if k == "pixel":  # (8, 2, 3) -> (2, 4, 6) -> (8, 2, 3): sub-pixel re-indexing
            return self.unshuffle(torch.relu(self.shuffle(x)))
        if k == "shape":  # the Shape -> Gather -> Unsqueeze -> Concat -> Reshape sub-graph of view(size(0), -1)
            h = torch.relu(self.conv(x))
            return h.view(h.size(0), -1)
        raise AssertionError(k)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


SHAPES = {"upsample": (1, 3, 3), "upsample_corners": (1, 3, 3), "ceil_pools": (1, 6, 5), "silu": (6,),
          "hardswish": (6,), "gelu": (6,), "reduce": (2, 3, 4), "reduce_max": (2, 3, 4), "adaptive": (1, 5, 4), "pixel": (8, 2, 3), "shape": (1, 3, 4)}
ONNX_OPS = {"upsample": {"Resize"}, "upsample_corners": {"Resize"}, "ceil_pools": {"MaxPool", "AveragePool"},
            "silu": {"Sigmoid", "Mul"}, "gelu": {"Erf", "Div", "Mul"}, "hardswish": {"HardSwish", "Clip", "HardSigmoid"},
            "reduce": {"ReduceSum", "ReduceMean", "Expand", "Tile", "Where"},
            "reduce_max": {"ReduceMax", "ReduceMin"}, "adaptive": {"AveragePool", "MaxPool"}, "pixel": {"DepthToSpace"}, "shape": {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"}}


def _model(kind):
    torch.manual_seed(0)
    model = Net(kind).double().eval()
    model(torch.zeros((1,) + SHAPES[kind], dtype=torch.float64))  # materialise the lazy head
    return model


def _onnx(model, shape, opset=17) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.float(), torch.zeros((1,) + shape), buffer, dynamo=False, opset_version=opset,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    model.double()
    return buffer.getvalue()


def _samples(shape, n=16, scale=3.0, seed=1):
    return torch.randn((n,) + shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize("kind", list(SHAPES))
def test_ir_forward_matches_torch_and_onnxruntime(kind):
    model, shape = _model(kind), SHAPES[kind]
    x = _samples(shape)
    flat = x.reshape(len(x), -1).numpy()
    expected = model(x).detach().numpy()
    np.testing.assert_allclose(from_torch(model, input_shape=shape).forward(flat), expected, rtol=1e-12, atol=1e-12)
    seen = set()
    # below 14, torch spells Hardswish x * HardSigmoid(x); opset 11's Constant nodes have no value_float
    for opset in {"hardswish": (13, 17), "gelu": (11, 17)}.get(kind, (17,)):
        data = _onnx(model, shape, opset)
        seen |= {n.op_type for n in onnx.load_from_string(data).graph.node}
        reference = ort.InferenceSession(data).run(None, {"x": x.float().numpy()})[0]
        got = from_onnx(onnx.load_from_string(data)).forward(flat)
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)  # the float32 weights of the export
    assert ONNX_OPS[kind] <= seen, seen


@pytest.mark.parametrize("kind", ["upsample", "ceil_pools", "reduce"])
def test_torch_export_and_jit_trace_give_the_same_function(kind):
    """The ATen spellings: upsample_*.vec, sum.dim_IntList, expand with TorchScript's implicit flag ..."""
    model, shape = _model(kind), SHAPES[kind]
    x = _samples(shape)
    expected = model(x).detach().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = [torch.export.export(model, (x[:1],)), torch.jit.trace(model, x[:1])]
    for source in sources:
        net = from_torch(source, input_shape=shape)
        np.testing.assert_allclose(net.forward(x.reshape(len(x), -1).numpy()), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool", [nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d])
def test_adaptive_pooling_to_sizes_that_do_not_divide_the_input(pool):
    """Windows of different lengths that overlap (torch's ONNX export refuses these sizes)."""
    model = nn.Sequential(pool((3, None)), nn.Flatten(), nn.Linear(30, 2)).double().eval()
    x = _samples((2, 7, 5), n=8)
    expected = model(x).detach().numpy()
    for source in (model, torch.export.export(model, (x[:1],))):
        net = from_torch(source, input_shape=(2, 7, 5))
        np.testing.assert_allclose(net.forward(x.reshape(8, -1).numpy()), expected, atol=1e-12)


@pytest.mark.parametrize("kind", ["upsample", "ceil_pools", "silu", "hardswish", "reduce", "reduce_max", "adaptive"])
def test_bounds_are_sound_by_sampling(kind):
    model, shape = _model(kind), SHAPES[kind]
    net = from_torch(model, input_shape=shape)
    rng = np.random.default_rng(0)
    centre = rng.uniform(-1, 1, net.input_size)
    cheap = kind in ("silu", "hardswish", "ceil_pools", "adaptive", "reduce_max")  # LP: smooth bands, ReLU trees
    methods = ("interval", "symbolic") if cheap else ("interval", "symbolic", "lp")
    assert_bounds_hold(net, InputDomain.box(centre - 0.5, centre + 0.5), methods, samples=3000)


def test_milp_optimum_of_a_tiny_resize_net_equals_brute_force():
    torch.manual_seed(5)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(5, 1)

        def forward(self, x):  # 3 ReLUs, linear upsampling 3 -> 5, 5 ReLUs
            h = torch.relu(self.a(x)).unsqueeze(1)
            return self.b(torch.relu(F.interpolate(h, size=5, mode="linear")).flatten(1))

    model = Tiny().double().eval()
    net = from_torch(model, input_shape=(2,))
    x = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(net.forward(x), model(torch.tensor(x)).detach().numpy(), atol=1e-12)
    lower, upper = np.full(2, -1.0), np.full(2, 1.0)
    oracle = brute_force_optima(net, lower, upper, np.ones(1))
    for sense in ("min", "max"):
        result = optimize(net, (lower, upper), method="milp", **{("maximize" if sense == "max" else "minimize"): 0})
        assert result.status == "optimal"
        assert result.objective == pytest.approx(oracle[sense][0], abs=1e-7), sense


# -- hand-built ONNX graphs: attributes torch does not emit -------------------------------------------------


_graph_model = onnx_graph_model


def _check_against_ort(model, in_shape, seed=0):
    return assert_onnx_model_matches_ort(model, in_shape, seed=seed, tol=1e-5)


@pytest.mark.parametrize("mode, transform, nearest", [
    ("nearest", "half_pixel", "round_prefer_floor"), ("nearest", "asymmetric", "round_prefer_ceil"),
    ("nearest", "align_corners", "floor"), ("nearest", "tf_half_pixel_for_nn", "ceil"),
    ("nearest", "pytorch_half_pixel", "round_prefer_floor"), ("linear", "half_pixel_symmetric", "floor"),
    ("linear", "asymmetric", "floor"), ("linear", "pytorch_half_pixel", "floor"), ("linear", "align_corners", "floor")])
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_resize_attributes_match_onnxruntime(mode, transform, nearest, by):
    inputs = ["x", "", "scales", ""] if by == "scales" else ["x", "", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], mode=mode, coordinate_transformation_mode=transform,
                            nearest_mode=nearest)
    consts = [("scales", np.array([1, 1, 1.7, 0.6], np.float32))] if by == "scales" else \
        [("sizes", np.array([1, 2, 7, 2], np.int64))]
    _check_against_ort(_graph_model([node], [1, 2, 3, 4], consts), [1, 2, 3, 4])


def test_resize_half_pixel_symmetric_offset_is_exact_where_the_spec_form_rounds_up():
    """7 rows at scale 0.5 (3 out): offset 0.5 exactly, so nearest ``ceil`` reads row 1 for output row 0 as
    onnxruntime does; the spec's written form gives 0.5000000000000002 and row 2."""
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode="half_pixel_symmetric", nearest_mode="ceil")
    _check_against_ort(_graph_model([node], [1, 2, 7, 5], [("scales", np.array([1, 1, 0.5, 3], np.float32))]),
                       [1, 2, 7, 5])


def test_resize_pytorch_half_pixel_to_one_output_reads_the_first_input_as_the_spec_says():
    """One output row (3 rows at scale 0.5): the spec's ``length_resized > 1`` test is on the integer output
    length, so the row is read at coordinate 0, as onnxruntime does (torch's interpolate reads 0.5)."""
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear",
                            coordinate_transformation_mode="pytorch_half_pixel")
    net = _check_against_ort(_graph_model([node], [1, 1, 3, 2], [("scales", np.array([1, 1, 0.5, 1], np.float32))]),
                             [1, 1, 3, 2])
    np.testing.assert_array_equal(net.forward(np.array([[10.0, 1.0, 20.0, 2.0, 30.0, 3.0]])), [[10.0, 1.0]])


_K = np.array([[[1.0, 5.0, 2.0, 7.0]]], np.float32)


@pytest.mark.parametrize("node, constant, extra, expected", [
    # SAME_LOWER, kernel 3, stride 3 on 4 values: pads 2 before, windows {1, 5} and {2, 7}
    (helper.make_node("MaxPool", ["K"], ["c"], kernel_shape=[3], strides=[3], auto_pad="SAME_LOWER"), _K, [], [5, 7]),
    # ceil_mode with begin padding: windows {1} {1, 5} {5, 2} {2, 7}
    (helper.make_node("MaxPool", ["K"], ["c"], kernel_shape=[2], strides=[1], pads=[1, 0], ceil_mode=1), _K, [],
     [1, 5, 5, 7]),
    # rank 3: one maximum per channel
    (helper.make_node("GlobalMaxPool", ["K"], ["c"]), np.array([[[1.0, 3.0, 2.0], [9.0, 4.0, 5.0]]], np.float32), [],
     [3, 9]),
    # inference normalisation with identity parameters is the identity (up to epsilon)
    (helper.make_node("BatchNormalization", ["K", "s", "b", "m", "v"], ["c"], epsilon=1e-5),
     np.array([[[1.0, 2.0, 4.0]]], np.float32),
     [("s", np.ones(1, np.float32)), ("b", np.zeros(1, np.float32)), ("m", np.zeros(1, np.float32)),
      ("v", np.ones(1, np.float32))], [1, 2, 4]),
    # SAME_UPPER with ceil_mode: windows {1, 5} {2, 7} {3}
    (helper.make_node("AveragePool", ["K"], ["c"], kernel_shape=[2], strides=[2], auto_pad="SAME_UPPER", ceil_mode=1),
     np.array([[[1.0, 5.0, 2.0, 7.0, 3.0]]], np.float32), [], [3, 4.5, 3]),
])
def test_pools_and_normalisation_of_constants_fold_as_for_network_values(node, constant, extra, expected):
    """``y = x + OP(K)`` with ``K`` an initializer: the constant-only node is evaluated by relumilp's own
    conversion (ONNX's reference evaluator, which folds other constants, gets each of these wrong)."""
    expected = np.asarray(expected, dtype=np.float64)
    shape = [1] + list(constant.shape[1:-1]) + [expected.size // int(np.prod(constant.shape[1:-1]))]
    add = helper.make_node("Add", ["x", "c"], ["y"])
    model = _graph_model([node, add], shape, [("K", constant)] + extra, opset=13)
    net = from_onnx(model)
    np.testing.assert_allclose(net.forward(np.zeros((1, expected.size))), expected[None], rtol=1e-5)


def _constant_then_add(op_node, constant, extra=(), x_shape=None, opset=13):
    """``y = x + OP(K)``, ``K`` a float32 initializer, as a model."""
    shape = list(x_shape or constant.shape)
    add = helper.make_node("Add", ["x", "c"], ["y"])
    return _graph_model([op_node, add], shape, [("K", constant)] + list(extra), opset=opset)


def test_a_constant_maximum_folds_exactly_and_keeps_its_dtype():
    """A folded maximum is numpy's (the network's ``b + relu(a - b)`` would lose 1 beside -1e20), and the
    folded constant keeps float32, so a later constant-only node (here an Add of a float32 initializer,
    folded by ONNX's reference evaluator, which refuses mixed types) still loads."""
    pool = helper.make_node("MaxPool", ["K"], ["p"], kernel_shape=[2], strides=[2])
    shift = helper.make_node("Add", ["p", "one"], ["c"])
    add = helper.make_node("Add", ["x", "c"], ["y"])
    constant = np.array([[[1.0, -1e20, 3.0, 2.0]]], np.float32)
    model = _graph_model([pool, shift, add], [1, 1, 2], [("K", constant), ("one", np.ones(1, np.float32))], opset=13)
    np.testing.assert_array_equal(from_onnx(model).forward(np.zeros((1, 2))), [[2.0, 4.0]])


def test_a_constant_batch_of_several_images_still_folds():
    """relumilp's own conversion takes one image; a constant batch of two goes to the reference evaluator."""
    constant = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    node = helper.make_node("AveragePool", ["K"], ["c"], kernel_shape=[2, 2], strides=[2, 2])
    net = from_onnx(_constant_then_add(node, constant, x_shape=[1, 1, 2, 2]))
    pooled = constant.reshape(2, 1, 2, 2, 2, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(net.forward(np.zeros((1, 4))), pooled.reshape(1, -1))


@pytest.mark.parametrize("layer, shape", [(nn.ZeroPad2d((1, 0, 2, 1)), (1, 2, 4, 5)), (nn.ConstantPad2d(1, 0.5), (1, 2, 4, 5)),
                                          (nn.ReflectionPad2d(1), (1, 2, 4, 5)), (nn.ReplicationPad1d(2), (1, 2, 5))])
def test_padding_layers_and_one_sided_clamps_match_torch(layer, shape):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = layer

        def forward(self, x):
            padded = self.pad(x)
            return torch.clamp(padded, min=0.3) + torch.clamp(padded, max=-0.2)

    model = Model()
    x = np.random.default_rng(0).normal(size=(6, int(np.prod(shape))))
    expected = model(torch.tensor(x).reshape(len(x), *shape[1:])).reshape(len(x), -1).numpy()
    net = from_torch(model, shape)
    np.testing.assert_allclose(net.forward(x), expected, rtol=0, atol=1e-12)
    assert {n.kind for n in net.activations} == {"pwl"}  # max(x, 0.3) and min(x, -0.2): shifted ReLUs
    circular = nn.Sequential(nn.CircularPad1d((1, 2)))
    y = np.random.default_rng(1).normal(size=(3, 10))
    np.testing.assert_array_equal(from_torch(circular, (1, 2, 5)).forward(y),
                                  circular(torch.tensor(y).reshape(3, 2, 5)).reshape(3, -1).numpy())


class _PadMode(nn.Module):
    """F.pad with a mode torch does not have: the frontend names it before torch would."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return F.pad(x, (1, 1), mode=self.mode)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_convolutions_padding_other_than_with_zeros_match_torch(mode):
    for model, shape in [(nn.Sequential(nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode, stride=2), nn.ReLU()), (2, 5, 6)),
                         (nn.Sequential(nn.Conv1d(2, 3, 2, padding=2, padding_mode=mode, dilation=2)), (2, 7))]:
        x = np.random.default_rng(0).normal(size=(4, int(np.prod(shape))))
        expected = model.double()(torch.tensor(x).reshape(len(x), *shape)).reshape(len(x), -1).detach().numpy()
        np.testing.assert_allclose(from_torch(model, shape).forward(x), expected, rtol=0, atol=1e-12)
    with pytest.raises(UnsupportedOperatorError, match="padding mode 'zeroes'"):
        from_torch(_PadMode("zeroes"), (2, 7))


def test_pad_with_pad_amounts_for_another_rank_is_a_clear_error():
    node = helper.make_node("Pad", ["x", "pads"], ["y"])
    model = _graph_model([node], [1, 2, 3], [("pads", np.array([0, 1, 0, 1], np.int64))])
    with pytest.raises(Exception, match="Pad has 4 pad amounts for 3 axes") as caught:
        from_onnx(model)
    assert isinstance(caught.value, relumilp.RelumilpError)


def test_a_node_whose_attributes_do_not_fit_its_input_is_a_one_line_error():
    node = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1, 3])  # rank 4 for a rank-3 input
    with pytest.raises(relumilp.RelumilpError, match=r"ONNX node 'y' \(Transpose\) does not fit its inputs of shapes"):
        from_onnx(_graph_model([node], [1, 2, 3], []))


def test_onnx_bytes_load_and_bad_sources_are_clear_errors():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _graph_model([node], [1, 3], [])
    net = from_onnx(model.SerializeToString())
    np.testing.assert_array_equal(net.forward(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])
    for bad, message in [(b"not a model", "cannot read the given bytes"), (3, "not int")]:
        with pytest.raises(relumilp.RelumilpError, match=message):
            from_onnx(bad)
    with pytest.raises(relumilp.RelumilpError, match="the input must be numbers"):
        net.forward("abc")


def test_resize_axes_aspect_policy_and_upsample_opset9():
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", axes=[2, 3],
                            keep_aspect_ratio_policy="not_larger")
    net = _check_against_ort(_graph_model([node], [1, 1, 3, 4], [("sizes", np.array([7, 6], np.int64))]), [1, 1, 3, 4])
    assert net.output_shape == (1, 5, 6)  # scale min(7/3, 6/4) = 1.5
    for mode in ("nearest", "linear"):
        up = helper.make_node("Upsample", ["x", "scales"], ["y"], mode=mode)
        model = _graph_model([up], [1, 1, 2, 3], [("scales", np.array([1, 1, 2, 1.5], np.float32))], opset=9)
        _check_against_ort(model, [1, 1, 2, 3])


def test_reductions_silu_and_hardswish_graphs_match_onnxruntime():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),  # (1, 3, 4) -> (1, 4)
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2]),  # opset < 18: axes attribute, (1, 1, 1)
             helper.make_node("Reshape", ["m", "one"], ["m1"]),
             helper.make_node("Sub", ["s", "m1"], ["d"]),
             helper.make_node("Sigmoid", ["d"], ["g"]),
             helper.make_node("Mul", ["g", "d"], ["silu"]),  # gate first: either order is SiLU
             helper.make_node("HardSwish", ["silu"], ["h"]),
             helper.make_node("HardSigmoid", ["h"], ["hg"], alpha=1 / 6),
             helper.make_node("Mul", ["h", "hg"], ["hs"]),  # (1, 4)
             helper.make_node("Reshape", ["hs", "shape"], ["r"]),  # (1, 1, 2, 2)
             helper.make_node("GlobalMaxPool", ["r"], ["gm"]),
             helper.make_node("ReduceMin", ["r"], ["rm"], axes=[3], keepdims=1),  # (1, 1, 2, 1)
             helper.make_node("Add", ["rm", "gm"], ["y"])]
    consts = [("axes", np.array([1], np.int64)), ("one", np.array([1, 1], np.int64)),
              ("shape", np.array([1, 1, 2, 2], np.int64))]
    net = _check_against_ort(_graph_model(nodes, [1, 3, 4], consts, opset=14), [1, 3, 4])
    kinds = [n.activation.kind for n in net.activations]
    assert kinds[:3] == ["silu", "hard_swish", "hard_swish"] and set(kinds[3:]) == {"relu"}  # max trees


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_ceil_mode_drops_a_last_window_that_starts_in_the_end_padding(op):
    """torch and the ONNX reference drop it (onnxruntime's shape inference does not): 3 + 2 pads, kernel 2,
    stride 2 gives ceil(3 / 2) + 1 = 3 windows, the last starting at 4 >= 3 + 1, so 2 remain."""
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                            **({"count_include_pad": 1} if op == "AveragePool" else {}))
    model = _graph_model([node], [1, 1, 3, 3], opset=19)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 3, 3))
    net = from_onnx(model)
    assert net.output_shape == (1, 2, 2)
    reference = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]
    pool = F.avg_pool2d if op == "AveragePool" else F.max_pool2d
    expected = pool(torch.tensor(x), 2, 2, 1, ceil_mode=True).numpy()
    np.testing.assert_allclose(net.forward(x.reshape(1, -1)), expected.reshape(1, -1), atol=1e-12)
    np.testing.assert_allclose(reference.reshape(1, -1), expected.reshape(1, -1), atol=1e-6)


@pytest.mark.parametrize("op, attrs", [("DepthToSpace", {"mode": "DCR"}), ("DepthToSpace", {"mode": "CRD"}),
                                       ("SpaceToDepth", {})])
def test_depth_to_space_and_mean_graphs_match_onnxruntime(op, attrs):
    nodes = [helper.make_node(op, ["x"], ["d"], blocksize=2, **attrs), helper.make_node("Neg", ["d"], ["n"]),
             helper.make_node("Relu", ["d"], ["r"]), helper.make_node("Mean", ["d", "n", "r"], ["y"])]
    _check_against_ort(_graph_model(nodes, [1, 8, 4, 6], opset=13), [1, 8, 4, 6])


def test_gelu_spelled_with_erf_and_the_half_first():
    class Spelled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 4)

        def forward(self, x):
            h = self.lin(x)
            return (h * 0.5) * (1.0 + torch.erf(h * 0.7071067811865476))

    torch.manual_seed(0)
    data = _onnx(Spelled().double().eval(), (3,), opset=13)
    net = _check_against_ort(onnx.load_from_string(data), [1, 3])
    assert [n.activation.kind for n in net.activations] == ["gelu"]
    alone = _check_against_ort(_graph_model([helper.make_node("Erf", ["x"], ["y"])], [1, 3]), [1, 3])
    assert [n.activation.kind for n in alone.activations] == ["erf"]  # an Erf that is no GELU gate: its own kind


@pytest.mark.parametrize("transform", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                                       "half_pixel_symmetric"])
@pytest.mark.parametrize("a, exclude", [(-0.75, 0), (-0.5, 1)])
def test_cubic_resize_matches_onnxruntime(transform, a, exclude):
    """Keys' cubic kernel over the four inputs around each coordinate, edges repeated or (exclude_outside)
    dropped and renormalised; upsampling, downsampling and a 2.5 x stretch."""
    for scales in ([1, 1, 2.0, 1.5], [1, 1, 0.6, 1.7], [1, 1, 1.0, 2.5]):
        cubic = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", cubic_coeff_a=a,
                                 exclude_outside=exclude, coordinate_transformation_mode=transform)
        _check_against_ort(_graph_model([cubic], [1, 1, 4, 5], [("scales", np.array(scales, np.float32))]),
                           [1, 1, 4, 5])


@pytest.mark.parametrize("align", [False, True])
def test_torch_bicubic_compiles_to_torch_s_function(align):
    module = nn.Upsample(scale_factor=1.5, mode="bicubic", align_corners=align)
    x = _samples((2, 3, 4), n=3)
    expected = module(x).reshape(3, -1).numpy()
    for source in (module, torch.export.export(module, (x[:1].float(),))):
        net = from_torch(source, input_shape=(2, 3, 4))
        np.testing.assert_allclose(net.forward(x.reshape(3, -1).numpy()), expected, rtol=1e-12, atol=1e-12)


def test_unsupported_attributes_keep_the_one_line_error():
    shrink = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", antialias=1)
    with pytest.raises(UnsupportedOperatorError, match="Resize with antialias when downsampling") as err:
        from_onnx(_graph_model([shrink], [1, 1, 4, 4], [("scales", np.array([1, 1, 0.5, 0.5], np.float32))]))
    assert "\n" not in str(err.value)
    computed = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Resize", ["x", "", "r"], ["y"])]
    with pytest.raises(UnsupportedOperatorError, match="Resize scales computed from the network input"):
        from_onnx(_graph_model(computed, [1, 1, 1, 4]))
    other = [helper.make_node("Neg", ["x"], ["n"]), helper.make_node("Sigmoid", ["n"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["y"])]  # x * sigmoid(-x) is no activation: a product
    net = from_onnx(_graph_model(other, [1, 3]))
    x = np.linspace(-2.0, 2.0, 12).reshape(4, 3)
    np.testing.assert_allclose(net.forward(x), x / (1.0 + np.exp(x)), rtol=1e-12, atol=1e-14)
    assert sorted(a.activation.kind for a in net.activations) == ["sigmoid", "square", "square"]
    class Antialiased(nn.Module):
        def forward(self, x):
            return F.interpolate(x, size=(1, 1), mode="bicubic", antialias=True).flatten(1)

    with pytest.raises(UnsupportedOperatorError, match="interpolation with antialias"):
        from_torch(Antialiased(), input_shape=(1, 2, 2))
