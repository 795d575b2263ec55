"""ONNX frontend: a ``.onnx`` model (or ``onnx.ModelProto``) of piecewise-linear layers to the IR.

Dense, convolutional (Conv, ConvTranspose, AveragePool), resizing (Resize, Upsample), reducing (ReduceSum,
ReduceMean) and re-indexing operators (Pad, Slice, Gather with constant indices, Split, Concat, Transpose,
Reshape, Expand, Tile, Where with a constant condition...) all become sparse or dense affine maps. GELU as
exporters spell it with Erf is fused into one Gelu node first (:func:`_fused`).

Nodes are visited in graph order. Nodes whose inputs are all constants (initializers, ``Constant``
nodes, shape arithmetic) are evaluated with ONNX's reference evaluator; the others must be one of
:data:`SUPPORTED_OPS` and are emitted through the shared
:class:`~relumilp.frontends._builder.NetworkBuilder`, which folds normalisation, batch norm and
consecutive affine operators into single affine nodes. Initializers that old exporters also list as
graph inputs are constants; the network input is the one graph input that is not an initializer.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InvalidNetworkError, ModelFileError, RelumilpError, UnsupportedOperatorError
from ..ir import Network
from ._builder import SIGN_HINT, STEP_HINT, ConstantBuilder, NetworkBuilder, SignOf, Step, is_sym, one_line, smooth_hint

_FLT_MAX = 3.4028234663852886e38  # Clip's unbounded defaults in the attribute form (opset < 11)


class _MissingAttribute(KeyError):
    """A required attribute the node does not have (an invalid model)."""


class _Attributes(dict):
    """A node's attributes; reading an absent one raises :class:`_MissingAttribute` (reported in one line)."""

    def __missing__(self, name):
        raise _MissingAttribute(name)


def _attrs(node) -> dict:
    """Node attributes; float ones decoded as the shortest decimal that rounds to their float32 value.

    ONNX keeps float attributes (LeakyRelu alpha, BatchNormalization epsilon, Clip bounds, Gemm alpha)
    in float32: an exporter given 0.1 stores 0.10000000149. Reading back 0.1 recovers the value the
    model was built with, so the IR matches the source framework's exactly.
    """
    values = _Attributes()
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if attr.type == onnx.AttributeProto.FLOAT:
            value = float(np.format_float_positional(np.float32(value), unique=True, trim="0"))
        values[attr.name] = value
    return values


def _optional(values: list, i: int):
    return values[i] if i < len(values) else None


def _gemm(b: NetworkBuilder, node, values, attrs, opset):
    a, w, c = values[0], values[1], _optional(values, 2)
    if attrs.get("transA", 0):
        a = b.transpose(a)
    if attrs.get("transB", 0):
        w = b.transpose(w)
    y = b.scaled(b.matmul(a, w), attrs.get("alpha", 1.0))
    return y if c is None else b.add(y, b.scaled(c, attrs.get("beta", 1.0)))


def _bound(value, default_attr) -> float | None:
    """A Clip bound as a float; absent or at the float extremes means unbounded (None)."""
    value = default_attr if value is None else value
    if value is None:
        return None
    value = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    return None if abs(value) >= _FLT_MAX else value


def _clip(b, node, values, attrs, opset):
    if any(is_sym(v) for v in values[1:]):
        raise b.unsupported("Clip with a bound computed from the network input", ["constant Clip bounds"])
    if opset < 11:
        return b.clip(values[0], _bound(None, attrs.get("min")), _bound(None, attrs.get("max")))
    return b.clip(values[0], _bound(_optional(values, 1), None), _bound(_optional(values, 2), None))


def _flatten(b, node, values, attrs, opset):
    x = values[0]
    axis = attrs.get("axis", 1)
    if not -x.ndim <= axis <= x.ndim:
        raise b.invalid(f"Flatten axis {axis} is outside [-{x.ndim}, {x.ndim}] for a rank-{x.ndim} input")
    axis = axis + x.ndim if axis < 0 else axis
    return b.reshape(x, (int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))


def _reshape(b, node, values, attrs, opset):
    x, shape = values[0], [int(d) for d in np.asarray(values[1]).reshape(-1)]
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return b.reshape(x, shape)


def _axes(values, attrs) -> list[int] | None:
    axes = attrs.get("axes", _optional(values, 1))
    return None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]


def _squeeze(b, node, values, attrs, opset):
    x, axes = values[0], _axes(values, attrs)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axes is None else b.axes(axes, x.ndim)
    return b.reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


def _unsqueeze(b, node, values, attrs, opset):
    x, axes = values[0], _axes(values, attrs)
    if axes is None:
        raise b.invalid("Unsqueeze needs axes")
    rank = x.ndim + len(axes)
    shape, dims = [], iter(x.shape)
    axes = set(b.axes(axes, rank))
    for i in range(rank):
        shape.append(1 if i in axes else next(dims))
    return b.reshape(x, shape)


def _batch_norm(b, node, values, attrs, opset):
    if attrs.get("training_mode", 0) or attrs.get("spatial", 1) != 1 or sum(1 for o in node.output if o) > 1:
        raise b.unsupported(
            "training-mode or non-spatial BatchNormalization",
            ["inference-mode BatchNormalization"],
            "export the model in eval mode",
        )
    x, scale, shift, mean, var = values[:5]
    return b.batch_norm(x, mean, var, scale, shift, attrs.get("epsilon", 1e-5))


def _dropout(b, node, values, attrs, opset):
    """Dropout in inference: the identity, nothing dropped. A ``training_mode`` input (opset 12) that is true
    with a positive ratio drops random elements (onnxruntime does): refused, as training-mode BatchNormalization."""
    x, ratio, training = values[0], _optional(values, 1), _optional(values, 2)
    if is_sym(ratio) or is_sym(training):
        raise b.unsupported("Dropout with a ratio or training_mode computed from the network input",
                            ["inference-mode Dropout"])
    ratio = 0.5 if ratio is None or np.size(ratio) == 0 else float(np.asarray(ratio).reshape(-1)[0])
    if training is not None and np.size(training) and bool(np.asarray(training).reshape(-1)[0]) and ratio > 0:
        raise b.unsupported("training-mode Dropout (training_mode is true)", ["inference-mode Dropout"],
                            "export the model in eval mode")
    return x, np.ones(x.shape, dtype=bool)


def _shape(b, node, values, attrs, opset):
    shape = np.array(values[0].shape, dtype=np.int64)
    return shape[attrs.get("start", 0) : attrs.get("end", len(shape))]


#: the types a Cast of a network value may convert to: those relumilp computes in (float32 and float64)
_EXACT_CASTS = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


def _cast(b, node, values, attrs, opset):
    """Cast: the identity to float32 / float64. A conversion to an integer or
    boolean type truncates and one to float16, bfloat16 or a float8 type rounds the value, as onnxruntime
    computes it: both are refused, as in the torch frontend."""
    if isinstance(values[0], Step):  # a comparison cast to bool or float stays the same step
        return values[0]
    to = int(attrs["to"])
    if to not in _EXACT_CASTS:
        name = onnx.TensorProto.DataType.Name(to).lower() if to in onnx.TensorProto.DataType.values() else f"type {to}"
        raise b.unsupported(f"Cast of a network value to {name}", ["Cast to float (float32) or double (float64)"],
                            "a conversion to an integer, boolean or 16-bit type rounds the value")
    return values[0]


def _extremum(b, node, values, attrs, opset):
    """``Max`` / ``Min`` of any mix of network values and constants (broadcast).

    The constants fold into one bound; network values are combined pairwise (exact ReLU lowering, see
    ``NetworkBuilder.maximum``); the bound then makes a (shifted) ReLU-type kind per distinct value.
    """
    pick = np.maximum if node.op_type == "Max" else np.minimum
    pair = b.maximum if node.op_type == "Max" else b.minimum
    syms = [v for v in values if is_sym(v)]
    consts = [np.asarray(v, dtype=np.float64) for v in values if not is_sym(v)]
    if not syms:  # constants only are folded before a handler is called; kept for safety
        return functools.reduce(pick, consts)
    total = functools.reduce(pair, syms)
    return pair(total, functools.reduce(pick, consts)) if consts else total


def _prelu(b, node, values, attrs, opset):
    if is_sym(values[1]):
        raise b.unsupported("PRelu with a network value as slope", ["PRelu with a constant slope"])
    return b.prelu(values[0], values[1])  # ONNX broadcasts the slope to X by numpy rules


def _sum(b, node, values, attrs, opset):
    total = values[0]
    for value in values[1:]:
        total = b.add(total, value)
    return total


def _gelu(b, n, v, a, o):
    approximate = a.get("approximate", "none")
    return b.gelu(v[0], approximate.decode() if isinstance(approximate, bytes) else approximate)


def _sym_pads(b, x, attrs, kernel, stride, dilation, what: str) -> list[int]:
    """ONNX ``pads`` ([begins..., ends...]) of a window operator, from ``auto_pad`` where it is set."""
    d = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        return [int(p) for p in attrs.get("pads", [0] * (2 * d))]
    if auto == "VALID":
        return [0] * (2 * d)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise b.unsupported(f"{what} auto_pad {auto!r}", ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"])
    size = x.shape[-d:]
    begins, ends = [], []
    for i in range(d):
        out = -(-size[i] // stride[i])
        total = max(0, (out - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - size[i])
        small, large = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else large)
        ends.append(large if auto == "SAME_UPPER" else small)
    return begins + ends


def _window_attrs(b, x, attrs, kernel, what):
    """``(strides, pads, dilations)`` of a window operator (checked by the builder; strides and dilations
    here first, since ``auto_pad`` divides by them)."""
    d = len(kernel)
    stride = [int(v) for v in attrs.get("strides", [1] * d)]
    dilation = [int(v) for v in attrs.get("dilations", [1] * d)]
    if len(stride) != d or len(dilation) != d or min(stride + dilation, default=1) < 1:
        raise b.invalid(f"{what} strides {stride} and dilations {dilation} must have {d} values, each at least 1")
    return stride, _sym_pads(b, x, attrs, kernel, stride, dilation, what), dilation


def _kernel(b, w, attrs, what) -> list[int]:
    """The kernel of a convolution: its weight's spatial shape, which ``kernel_shape`` may only repeat."""
    kernel = [int(k) for k in np.shape(w)[2:]]
    if "kernel_shape" in attrs and [int(k) for k in attrs["kernel_shape"]] != kernel:
        raise b.invalid(f"{what} kernel_shape {list(attrs['kernel_shape'])} differs from its weight's "
                        f"spatial shape {kernel}")
    return kernel


def _conv(b, node, values, attrs, opset):
    x, w, bias = values[0], values[1], _optional(values, 2)
    if is_sym(w) or is_sym(bias):
        raise b._nonlinear("convolution")
    kernel = _kernel(b, w, attrs, "Conv")
    stride, pads, dilation = _window_attrs(b, x, attrs, kernel, "Conv")
    return b.conv(x, w, bias, stride, pads, dilation, attrs.get("group", 1))


def _conv_transpose(b, node, values, attrs, opset):
    x, w, bias = values[0], values[1], _optional(values, 2)
    if is_sym(w) or is_sym(bias):
        raise b._nonlinear("transposed convolution")
    kernel = _kernel(b, w, attrs, "ConvTranspose")
    d = len(kernel)
    if "output_shape" in attrs:
        raise b.unsupported("ConvTranspose with output_shape", ["ConvTranspose with pads and output_padding"])
    stride = [int(v) for v in attrs.get("strides", [1] * d)]
    dilation = [int(v) for v in attrs.get("dilations", [1] * d)]
    auto = attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID", ""):
        raise b.unsupported("ConvTranspose auto_pad SAME", ["explicit pads"])
    pads = [int(p) for p in attrs.get("pads", [0] * (2 * d))]
    return b.conv_transpose(x, w, bias, stride, pads, dilation, attrs.get("group", 1), attrs.get("output_padding"))


def _average_pool(b, node, values, attrs, opset):
    x, kernel = values[0], [int(k) for k in attrs["kernel_shape"]]
    stride, pads, dilation = _window_attrs(b, x, attrs, kernel, "AveragePool")
    return b.avg_pool(x, kernel, stride, pads, bool(attrs.get("count_include_pad", 0)), dilation,
                      bool(attrs.get("ceil_mode", 0)))


def _max_pool(b, node, values, attrs, opset):
    x, kernel = values[0], [int(k) for k in attrs["kernel_shape"]]
    if sum(1 for o in node.output if o) > 1:
        raise b.unsupported("MaxPool with an Indices output", ["MaxPool with one output"])
    stride, pads, dilation = _window_attrs(b, x, attrs, kernel, "MaxPool")
    return b.max_pool(x, kernel, stride, pads, dilation, bool(attrs.get("ceil_mode", 0)))


def _global_average_pool(b, node, values, attrs, opset):
    x = values[0]
    return b.avg_pool(x, list(x.shape[2:]))


def _pad(b, node, values, attrs, opset):
    x = values[0]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if opset < 11:
        pads, value, axes = attrs.get("pads", attrs.get("paddings")), attrs.get("value", 0.0), None
    else:
        pads = values[1]
        value = _optional(values, 2)
        axes = _optional(values, 3)
    if is_sym(pads) or is_sym(value):
        raise b.invalid("Pad amounts and value must be constants")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    value = 0.0 if value is None or np.size(value) == 0 else float(np.asarray(value).reshape(-1)[0])
    if not math.isfinite(value):
        raise b.invalid(f"Pad value {value} is not finite")
    axes = list(range(x.ndim)) if axes is None else [b.axis(a, x.ndim) for a in np.asarray(axes).reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise b.invalid(f"Pad has {len(pads)} pad amounts for {len(axes)} axes; it needs two per axis, "
                        f"{2 * len(axes)}")
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[len(axes) + i])
    return b.pad(x, widths, {"constant": "constant", "edge": "edge", "reflect": "reflect"}.get(mode, mode), value)


def _slice(b, node, values, attrs, opset):
    x = values[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends, axes, steps = values[1], values[2], _optional(values, 3), _optional(values, 4)
    if any(is_sym(v) for v in (starts, ends, axes, steps)):
        raise b.invalid("Slice starts, ends, axes and steps must be constants")
    starts, ends = np.asarray(starts).reshape(-1), np.asarray(ends).reshape(-1)
    axes = range(len(starts)) if axes is None else np.asarray(axes).reshape(-1)
    steps = np.ones(len(starts), dtype=np.int64) if steps is None else np.asarray(steps).reshape(-1)
    key = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step == 0:
            raise b.invalid("Slice step 0")
        axis = b.axis(axis, x.ndim)
        key[axis] = _slice_key(int(start), int(end), int(step), x.shape[axis])
    return b.index(x, tuple(key))


def _slice_key(start: int, end: int, step: int, size: int) -> slice:
    """The Python slice of ONNX Slice's ``start:end:step`` on an axis of ``size``: negative values count
    from the end once, then both are clamped (to ``[0, size]`` going forward, ``[0, size - 1]`` and
    ``[-1, size - 1]`` going backward), where Python would wrap a negative end again or clamp a start
    below ``-size`` to an empty slice."""
    start, end = start + size if start < 0 else start, end + size if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), size), min(max(end, 0), size), step)
    start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    return slice(start, None if end < 0 else end, step)


def _gather(b, node, values, attrs, opset):
    x, indices = values[0], values[1]
    if is_sym(indices):
        raise b.unsupported("Gather with indices computed from the network input", ["constant indices"])
    return b.take(x, np.asarray(indices).astype(np.int64), attrs.get("axis", 0))


def _nd_key(b, shape, indices, batch_dims: int) -> tuple:
    """The advanced-indexing key of GatherND / ScatterND (``batch_dims = 0``)."""
    if batch_dims:
        raise b.unsupported(f"GatherND with batch_dims {batch_dims}", ["batch_dims = 0"])
    if indices.ndim < 1 or indices.shape[-1] > len(shape):
        raise b.invalid(f"indices of shape {indices.shape} for data of shape {tuple(shape)}")
    return tuple(indices[..., k] for k in range(indices.shape[-1]))


def _gather_elements(b, node, values, attrs, opset):
    x, indices = values[0], b.index_array(values[1], "GatherElements indices")
    return b.gather_positions(x, b.along_axis(x.shape, indices, attrs.get("axis", 0)))


def _gather_nd(b, node, values, attrs, opset):
    x, indices = values[0], b.index_array(values[1], "GatherND indices")
    key = _nd_key(b, x.shape, indices, int(attrs.get("batch_dims", 0)))
    return b.gather_positions(x, b.positions(x.shape, key, "GatherND index"))


def _scatter(b, node, values, attrs, opset):
    """ScatterND and ScatterElements (and the old Scatter) with constant indices and ``reduction`` none."""
    x, updates = values[0], values[2]
    reduction = _text(attrs.get("reduction"), "none")
    if reduction != "none":
        raise b.unsupported(f"{node.op_type} reduction {reduction!r}", ["reduction 'none'"])
    indices = b.index_array(values[1], f"{node.op_type} indices")
    shape = x.shape if is_sym(x) else np.shape(x)
    if node.op_type == "ScatterND":
        positions = b.positions(shape, _nd_key(b, shape, indices, 0), "ScatterND index")
    else:
        positions = b.along_axis(shape, indices, attrs.get("axis", 0))
    return b.scatter(x, positions, updates)


def _split(b, node, values, attrs, opset):
    x = values[0]
    axis = b.axis(attrs.get("axis", 0), x.ndim)
    sizes = attrs.get("split") if opset < 13 else _optional(values, 1)
    if is_sym(sizes):
        raise b.invalid("Split sizes must be constants")
    count = sum(1 for _ in node.output)
    if sizes is None or np.size(sizes) == 0:
        n = int(attrs.get("num_outputs", count))
        length = x.shape[axis]
        if n < 1:
            raise b.invalid(f"Split into {n} outputs")
        # equal parts of ceil(length / n), the last one smaller (empty when the parts run out first)
        part = -(-length // n)
        sizes = [min(part, max(0, length - k * part)) for k in range(n)]
    return b.split(x, [int(s) for s in np.asarray(sizes).reshape(-1)], axis)


def _text(value, default: str) -> str:
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _constant_input(b, value, what: str):
    """An optional constant input as a flat array, None when absent or empty."""
    if is_sym(value):
        raise b.unsupported(f"{what} computed from the network input", [f"constant {what}"])
    return None if value is None or np.size(value) == 0 else np.asarray(value).reshape(-1)


def _resize(b, node, values, attrs, opset):
    """Resize (opset 10 to 19) and Upsample (opset 7 to 9): constant scales or sizes; nearest, linear or cubic."""
    x = values[0]
    if node.op_type == "Upsample" or opset < 11:
        # Upsample and Resize-10: scales only, asymmetric coordinates, nearest rounds down
        scales = attrs.get("scales") if "scales" in attrs else _constant_input(b, values[-1], "Resize scales")
        sizes, transform, nearest_mode, axes = None, "asymmetric", "floor", None
    else:
        scales = _constant_input(b, _optional(values, 2), "Resize scales")
        sizes = _constant_input(b, _optional(values, 3), "Resize sizes")
        transform = _text(attrs.get("coordinate_transformation_mode"), "half_pixel")
        nearest_mode = _text(attrs.get("nearest_mode"), "round_prefer_floor")
        axes = attrs.get("axes")
    mode = _text(attrs.get("mode"), "nearest")
    axes = list(range(x.ndim)) if axes is None else [b.axis(a, x.ndim) for a in axes]
    if scales is None and sizes is None:
        raise b.invalid("Resize needs scales or sizes")
    if transform == "tf_crop_and_resize":
        raise b.unsupported("Resize coordinate_transformation_mode 'tf_crop_and_resize'", b.RESIZE_TRANSFORMS)
    full_scales, shape = [1.0] * x.ndim, list(x.shape)
    if sizes is not None:
        sizes = [int(v) for v in sizes]
        policy = _text(attrs.get("keep_aspect_ratio_policy"), "stretch")
        ratios = [sizes[i] / x.shape[a] for i, a in enumerate(axes)]
        if policy in ("not_larger", "not_smaller"):
            common = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [common] * len(axes)
            sizes = [int(np.floor(common * x.shape[a] + 0.5)) for a in axes]  # round half up, as ONNX
        elif policy != "stretch":
            raise b.unsupported(f"Resize keep_aspect_ratio_policy {policy!r}", ["stretch", "not_larger", "not_smaller"])
        for i, a in enumerate(axes):
            full_scales[a], shape[a] = ratios[i], sizes[i]
    else:
        for i, a in enumerate(axes):
            full_scales[a] = float(scales[i])
            if not (math.isfinite(full_scales[a]) and full_scales[a] > 0):
                raise b.invalid(f"Resize scale {full_scales[a]} is not a positive finite number")
            shape[a] = int(np.floor(x.shape[a] * float(scales[i])))
    if attrs.get("antialias", 0) and mode != "nearest" and min(full_scales) < 1.0:
        raise b.unsupported("Resize with antialias when downsampling", ["antialias=0, or upsampling only"])
    return b.resize(x, shape, full_scales, mode, transform, nearest_mode, float(attrs.get("cubic_coeff_a", -0.75)),
                    bool(attrs.get("exclude_outside", 0)))


def _reduce(b, node, values, attrs, opset):
    """ReduceSum / ReduceMean (sparse sums), ReduceMax / ReduceMin (exact ReLU trees), ReduceL1 / ReduceL2 /
    ReduceSumSquare / ReduceLogSum / ReduceLogSumExp (through abs, square, sqrt, log and exp); axes as an
    attribute (before opset 13 or 18, by operator) or a constant input."""
    x = values[0]
    if "axes" in attrs:
        axes = [int(a) for a in attrs["axes"]]
    else:
        axes = _constant_input(b, _optional(values, 1), "reduction axes")
        axes = None if axes is None else [int(a) for a in axes]
    if axes is None and attrs.get("noop_with_empty_axes", 0):  # no reduction, but the element-wise part stays
        op = node.op_type
        return b.abs(x) if op in ("ReduceL1", "ReduceL2") else b.square(x) if op == "ReduceSumSquare" else \
            b.log(x) if op == "ReduceLogSum" else x
    keep = bool(attrs.get("keepdims", 1))
    op = node.op_type
    if op in ("ReduceMax", "ReduceMin"):
        return b.reduce_max(x, axes, keep, minimum=op == "ReduceMin")
    if op in ("ReduceL1", "ReduceL2", "ReduceSumSquare"):
        return b.reduce_norm(x, axes, keep, 1 if op == "ReduceL1" else 2, root=op == "ReduceL2")
    if op == "ReduceLogSumExp":
        return b.reduce_log_sum_exp(x, axes, keep)
    if op == "ReduceLogSum":
        return b.log(b.reduce_sum(x, axes, keep))
    return b.reduce_sum(x, axes, keep, mean=op == "ReduceMean")


def _expand(b, node, values, attrs, opset):
    shape = _constant_input(b, values[1], "Expand shape")
    return b.expand(values[0], [] if shape is None else [int(d) for d in shape])


def _tile(b, node, values, attrs, opset):
    x, repeats = values[0], _constant_input(b, values[1], "Tile repeats")
    return x if repeats is None else b.tile(x, [int(r) for r in repeats])


def _swish(b, node, values, attrs, opset):
    """Swish ``x sigmoid(alpha x)`` (ONNX opset 24): SiLU at ``alpha = 1``."""
    alpha = float(attrs.get("alpha", 1.0))
    if alpha != 1.0:
        raise b.unsupported(f"Swish alpha {alpha:g}", ["alpha = 1 (SiLU)"])
    return b.smooth(values[0], "silu")


def _pow(b, node, values, attrs, opset):
    return b.power(values[0], values[1])  # the builder refuses an exponent computed from the input


def _softmax(b, node, values, attrs, opset):
    """Softmax / LogSoftmax: along ``axis`` (default -1) from opset 13; before, over the input flattened
    to 2-D at ``axis`` (default 1)."""
    x, log = values[0], node.op_type == "LogSoftmax"
    if opset >= 13:
        return b.softmax(x, attrs.get("axis", -1), log)
    axis = b.axis(attrs.get("axis", 1), x.ndim)
    flat = b.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))
    return b.reshape(b.softmax(flat, 1, log), x.shape)


def _layer_norm(b, node, values, attrs, opset):
    """LayerNormalization (opset 17): normalised over the axes from ``axis`` on, then scale and shift;
    the optional outputs Mean and InvStdDev too."""
    x = values[0]
    axis = b.axis(attrs.get("axis", -1), x.ndim)
    y, mean, inverse = b.normalize(x, list(range(axis, x.ndim)), attrs.get("epsilon", 1e-5), True)
    y = b.mul(y, values[1])
    y = y if len(values) < 3 or values[2] is None else b.add(y, values[2])
    return y, mean, inverse


def _rms_norm(b, node, values, attrs, opset):
    """RMSNormalization (opset 23): over the axes from ``axis`` on, then the scale."""
    x = values[0]
    axis = b.axis(attrs.get("axis", -1), x.ndim)
    return b.mul(b.rms_norm(x, list(range(axis, x.ndim)), attrs.get("epsilon", 1e-5)), values[1])


def _instance_norm(b, node, values, attrs, opset):
    """InstanceNormalization: per sample and channel over the spatial axes, then per-channel scale and shift."""
    x = values[0]
    if x.ndim < 3:
        raise b.invalid(f"InstanceNormalization needs an input of rank >= 3, got shape {x.shape}")
    per_channel = (x.shape[1],) + (1,) * (x.ndim - 2)
    scale = np.reshape(b.const(values[1], "the scale"), per_channel)
    shift = np.reshape(b.const(values[2], "the shift"), per_channel)
    return b.add(b.mul(b.normalize(x, list(range(2, x.ndim)), attrs.get("epsilon", 1e-5)), scale), shift)


def _lrn(b, node, values, attrs, opset):
    """LRN: the channel window ``c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2)``."""
    size = int(attrs["size"])
    return b.local_response_norm(values[0], size, attrs.get("alpha", 1e-4), attrs.get("beta", 0.75),
                                 attrs.get("bias", 1.0), (size - 1) // 2, size // 2)


def _lp_pool(b, node, values, attrs, opset):
    """LpPool (``p`` default 2; dilations and ceil_mode from opset 18) and GlobalLpPool."""
    x = values[0]
    p = int(attrs.get("p", 2))
    if node.op_type == "GlobalLpPool":
        return b.lp_pool(x, p, list(x.shape[2:]))
    kernel = [int(k) for k in attrs["kernel_shape"]]
    stride, pads, dilation = _window_attrs(b, x, attrs, kernel, "LpPool")
    return b.lp_pool(x, p, kernel, stride, pads, dilation, bool(attrs.get("ceil_mode", 0)))


def _lp_normalization(b, node, values, attrs, opset):
    p = int(attrs.get("p", 2))
    if p not in (1, 2):
        raise b.invalid(f"LpNormalization p must be 1 or 2, got {p}")
    return b.lp_normalize(values[0], attrs.get("axis", -1), p)


def _group_norm(b, node, values, attrs, opset):
    """GroupNormalization: scale and bias per group (opset 18; the spec's own, later deprecated reading) or
    per channel (opset 21)."""
    x, groups = values[0], int(attrs["num_groups"])
    y = b.group_norm(x, groups, attrs.get("epsilon", 1e-5))[0]
    scale, bias = b.const(values[1], "the scale").reshape(-1), b.const(values[2], "the bias").reshape(-1)
    count = x.shape[1] if opset >= 21 else groups
    if scale.size != count or bias.size != count:
        raise b.invalid(f"GroupNormalization (opset {opset}) needs a scale and a bias of {count} values, got "
                        f"{scale.size} and {bias.size}")
    if opset < 21:
        scale, bias = np.repeat(scale, x.shape[1] // groups), np.repeat(bias, x.shape[1] // groups)
    per_channel = (x.shape[1],) + (1,) * (x.ndim - 2)
    return b.add(b.mul(y, scale.reshape(per_channel)), bias.reshape(per_channel))


def _cumsum(b, node, values, attrs, opset):
    axis = _constant_input(b, values[1], "CumSum axis")
    if axis is None or axis.size != 1:
        raise b.invalid("CumSum needs one constant axis")
    return b.cumsum(values[0], int(axis[0]), bool(attrs.get("exclusive", 0)), bool(attrs.get("reverse", 0)))


def _thresholded_relu(b, node, values, attrs, opset):
    alpha = float(attrs.get("alpha", 1.0))
    if alpha != 0.0:
        raise b.unsupported(f"ThresholdedRelu alpha {alpha:g}", ["alpha = 0 (ReLU)"],
                            "it jumps from 0 to alpha at alpha: it is not continuous in the input")
    return b.relu(values[0])


_Handler = Callable[[NetworkBuilder, object, list, dict, int], object]

_OPS: dict[str, _Handler] = {
    "Gemm": _gemm,
    "MatMul": lambda b, n, v, a, o: b.matmul(v[0], v[1]),
    "Add": lambda b, n, v, a, o: b.add(v[0], v[1]),
    "Sub": lambda b, n, v, a, o: b.sub(v[0], v[1]),
    "Mul": lambda b, n, v, a, o: b.mul(v[0], v[1]),
    "Div": lambda b, n, v, a, o: b.div(v[0], v[1]),
    "Neg": lambda b, n, v, a, o: b.neg(v[0]),
    "Sign": lambda b, n, v, a, o: b.sign(v[0]),
    "Sum": _sum,
    "Relu": lambda b, n, v, a, o: b.relu(v[0]),
    "LeakyRelu": lambda b, n, v, a, o: b.leaky_relu(v[0], a.get("alpha", 0.01)),
    "Clip": _clip,
    "HardSigmoid": lambda b, n, v, a, o: b.hard_sigmoid(v[0], a.get("alpha", 0.2), a.get("beta", 0.5)),
    "PRelu": _prelu,
    "Abs": lambda b, n, v, a, o: b.abs(v[0]),
    "Max": _extremum,
    "Min": _extremum,
    "Sigmoid": lambda b, n, v, a, o: b.smooth(v[0], "sigmoid"),
    "Tanh": lambda b, n, v, a, o: b.smooth(v[0], "tanh"),
    "Softplus": lambda b, n, v, a, o: b.smooth(v[0], "softplus"),
    "Elu": lambda b, n, v, a, o: b.elu(v[0], a.get("alpha", 1.0)),
    "Selu": lambda b, n, v, a, o: b.selu(v[0], a.get("alpha", 1.67326319217681884765625),
                                         a.get("gamma", 1.05070102214813232421875)),
    "Celu": lambda b, n, v, a, o: b.celu(v[0], a.get("alpha", 1.0)),
    "Erf": lambda b, n, v, a, o: b.smooth(v[0], "erf"),
    "Softsign": lambda b, n, v, a, o: b.smooth(v[0], "softsign"),
    "Mish": lambda b, n, v, a, o: b.mish(v[0]),
    "Shrink": lambda b, n, v, a, o: b.shrink(v[0], a.get("lambd", 0.5), a.get("bias", 0.0)),
    "ThresholdedRelu": _thresholded_relu,
    "Gelu": _gelu,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": lambda b, n, v, a, o: b.transpose(v[0], a.get("perm")),
    "Concat": lambda b, n, v, a, o: b.concat(v, a.get("axis", 1) if o < 4 else a["axis"]),  # optional, 1, before opset 4
    "Identity": lambda b, n, v, a, o: v[0],
    "Dropout": _dropout,
    "BatchNormalization": _batch_norm,
    "Shape": _shape,
    "Cast": _cast,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_average_pool,
    "Pad": _pad,
    "Slice": _slice,
    "Gather": _gather,
    "GatherElements": _gather_elements,
    "GatherND": _gather_nd,
    "ScatterND": _scatter,
    "ScatterElements": _scatter,
    "Scatter": _scatter,
    "Split": _split,
    "MaxPool": _max_pool,
    "Resize": _resize,
    "Upsample": _resize,
    "ReduceSum": _reduce,
    "ReduceMean": _reduce,
    "ReduceMax": _reduce,
    "ReduceMin": _reduce,
    "ReduceL1": _reduce,
    "ReduceL2": _reduce,
    "ReduceSumSquare": _reduce,
    "ReduceLogSum": _reduce,
    "ReduceLogSumExp": _reduce,
    "LpPool": _lp_pool,
    "GlobalLpPool": _lp_pool,
    "LpNormalization": _lp_normalization,
    "GroupNormalization": _group_norm,
    "CumSum": _cumsum,
    "Einsum": lambda b, n, v, a, o: b.einsum(_text(a.get("equation"), ""), v),
    "GlobalMaxPool": lambda b, n, v, a, o: b.reduce_max(v[0], list(range(2, v[0].ndim)), True),
    "Expand": _expand,
    "Tile": _tile,
    "Where": lambda b, n, v, a, o: b.select(v[0], v[1], v[2]),
    "Greater": lambda b, n, v, a, o: b.compare(v[0], v[1], "gt"),
    "GreaterOrEqual": lambda b, n, v, a, o: b.compare(v[0], v[1], "ge"),
    "Less": lambda b, n, v, a, o: b.compare(v[0], v[1], "lt"),
    "LessOrEqual": lambda b, n, v, a, o: b.compare(v[0], v[1], "le"),
    "Not": lambda b, n, v, a, o: b.negate(v[0]),
    "HardSwish": lambda b, n, v, a, o: b.hard_swish(v[0]),
    "DepthToSpace": lambda b, n, v, a, o: b.depth_to_space(v[0], a["blocksize"], _text(a.get("mode"), "DCR")),
    "SpaceToDepth": lambda b, n, v, a, o: b.depth_to_space(v[0], a["blocksize"], "DCR", inverse=True),
    "Mean": lambda b, n, v, a, o: b.div(_sum(b, n, v, a, o), float(len(v))),
    "Size": lambda b, n, v, a, o: np.array(v[0].size, dtype=np.int64),
    "Swish": _swish,
    "Pow": _pow,
    "Sqrt": lambda b, n, v, a, o: b.sqrt(v[0]),
    "Exp": lambda b, n, v, a, o: b.exp(v[0]),
    "Log": lambda b, n, v, a, o: b.log(v[0]),
    "Sinh": lambda b, n, v, a, o: b.mul(b.sub(b.exp(v[0]), b.exp(b.neg(v[0]))), 0.5),
    "Cosh": lambda b, n, v, a, o: b.mul(b.add(b.exp(v[0]), b.exp(b.neg(v[0]))), 0.5),
    "Reciprocal": lambda b, n, v, a, o: b.reciprocal(v[0]),
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "LayerNormalization": _layer_norm,
    "RMSNormalization": _rms_norm,
    "InstanceNormalization": _instance_norm,
    "LRN": _lrn,
}

SUPPORTED_OPS = tuple(sorted(_OPS)) + ("Constant", "If (a constant condition)")


def _load(source) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):  # a serialised model, e.g. from torch.onnx.export
        what, read = "the given bytes", lambda: onnx.load_from_string(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        what, read = str(path), lambda: onnx.load(str(path))
    else:
        raise ModelFileError(f"an ONNX model is a path, an onnx.ModelProto or its bytes, not {type(source).__name__}")
    try:
        model = read()
    except Exception as exc:  # protobuf decode errors, missing external data ...
        raise ModelFileError(f"cannot read {what} as an ONNX model: {one_line(exc)}") from None
    if not model.graph.node or not model.graph.output:
        raise ModelFileError(f"{what} is not an ONNX model (it has no graph)")
    return model


def _dims_of(value_info):
    return value_info.type.tensor_type.shape.dim


def _fixed_dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in _dims_of(value_info)]


def _output_dims(model: onnx.ModelProto) -> list:
    """The output's shape as declared, else as ONNX shape inference finds it ([] when unknown)."""
    dims = _fixed_dims(model.graph.output[0]) if model.graph.output else []
    if dims and None not in dims:
        return dims
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph.output[0]
    except Exception:  # inference is only a hint here; the conversion reports real problems
        return dims
    return _fixed_dims(inferred)


def _input_value(model: onnx.ModelProto, constants: dict, b: NetworkBuilder):
    """The one graph input that is not an initializer, as the builder's input; batch dimension dropped."""
    inputs = [v for v in model.graph.input if v.name not in constants]
    if len(inputs) != 1:
        names = ", ".join(v.name for v in inputs) or "none"
        raise InvalidNetworkError(f"the ONNX model has {len(inputs)} inputs ({names}); relumilp needs exactly one")
    dims = _fixed_dims(inputs[0])
    if len(dims) >= 2 and dims[0] is not None and dims[0] > 1:
        # A leading input dimension the output also starts with is a batch of several samples; read as
        # features it would compile copies of the network side by side (a wider network). Otherwise
        # (e.g. a column input to Gemm with transA) the input is one sample of that shape.
        out = _output_dims(model)
        if len(out) >= 2 and out[0] == dims[0]:
            raise InvalidNetworkError(
                f"the ONNX input {inputs[0].name!r} has a fixed batch dimension of {dims[0]} (shape {dims}); "
                "re-export the model with batch size 1 or a dynamic batch axis"
            )
    batched = len(dims) >= 2 and dims[0] in (None, 1)
    shape = dims[1:] if batched else dims
    if 0 in shape:
        raise InvalidNetworkError(f"the ONNX input {inputs[0].name!r} has shape {dims}, with no elements")
    if not shape or None in shape:
        raise InvalidNetworkError(
            f"the ONNX input {inputs[0].name!r} has unknown shape {dims}; "
            "only the leading (batch) dimension may be symbolic"
        )
    return inputs[0].name, b.input(shape, batched=batched)


def _fold(node, values: list, opsets) -> list:
    """Evaluate a node whose inputs are all constants with ONNX's reference implementation."""
    from onnx.reference import ReferenceEvaluator

    names = [n for n in node.input if n]
    inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), np.shape(v))
        for n, v in zip(node.input, values) if n
    ]  # fmt: skip
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    model = helper.make_model(helper.make_graph([node], "fold", inputs, outputs), opset_imports=opsets)
    feeds = {n: np.asarray(v) for n, v in zip(node.input, values) if n}
    try:
        return ReferenceEvaluator(model).run(None, {n: feeds[n] for n in names})
    except Exception as exc:
        raise UnsupportedOperatorError(
            f"ONNX operator '{node.op_type}' on constants (node '{node.name}': {one_line(exc)})", SUPPORTED_OPS
        ) from None


#: operators evaluated by relumilp's own conversion when their inputs are all constants: ONNX's reference
#: evaluator gets several of them wrong (found by fuzzing against a spec implementation: BatchNormalization
#: at opsets 9-14 normalises with the batch's statistics, GlobalMaxPool of rank 3 also reduces the
#: channels, MaxPool with ceil_mode or SAME padding shifts or drops windows), so a constant folded by it
#: would differ from the same operator applied to a network value; its LRN sums the first channel's window
#: only
_OWN_FOLDS = frozenset({"AveragePool", "BatchNormalization", "Conv", "ConvTranspose", "GlobalAveragePool",
                        "GlobalMaxPool", "LRN", "MaxPool", "Resize", "Upsample"})
#: of those, the ones whose reference evaluation is wrong whatever the attributes: what relumilp refuses is
#: refused for constants too
_NO_REFERENCE = frozenset({"LRN"})


def _fold_own(b: NetworkBuilder, node, values: list, opset: int) -> tuple | None:
    """A constant-only node of :data:`_OWN_FOLDS` evaluated by relumilp's own conversion of it (a
    :class:`ConstantBuilder`), in the constant's dtype; None for other nodes and when that conversion
    refuses the node (e.g. a batch of several images): those go to the reference evaluator."""
    data = np.asarray(values[0]) if values and values[0] is not None else None
    if (node.domain not in ("", "ai.onnx") or node.op_type not in _OWN_FOLDS or data is None
            or data.dtype.kind != "f" or data.ndim == 0 or data.size == 0):
        return None
    inner = ConstantBuilder()
    inner.where = b.where
    try:
        result = _OPS[node.op_type](inner, node, [inner.constant(data), *values[1:]], _attrs(node), opset)
    except (RelumilpError, ValueError, IndexError, KeyError, TypeError):
        if node.op_type in _NO_REFERENCE:
            raise
        return None
    results = result if isinstance(result, tuple) else (result,)
    folded = [inner.value(r) if is_sym(r) else r for r in results]
    if any(f is None for f in folded):
        return None
    return tuple(np.asarray(f).astype(data.dtype) for f in folded)


def _scalar_constant(name: str, constants: dict, producers: dict) -> float | None:
    """The value of a one-element constant (an initializer or a ``Constant`` node), else None."""
    value = constants.get(name)
    node = producers.get(name)
    if value is None and node is not None and node.op_type == "Constant":
        attr = next((a for a in node.attribute if a.name in ("value", "value_float")), None)
        value = None if attr is None else helper.get_attribute_value(attr)
        value = numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value
    if value is None or np.size(value) != 1:
        return None
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def _erf_gate_input(gate: str, constants: dict, producers: dict) -> str | None:
    """``x`` when tensor ``gate`` is ``1 + erf(x / sqrt 2)`` (GELU's gate as exporters spell it), else None.
    The constants are compared in float32, the precision they are stored in."""
    same = lambda value, target: value is not None and np.float32(value) == np.float32(target)  # noqa: E731
    add = producers.get(gate)
    if add is None or add.op_type != "Add" or len(add.input) != 2:
        return None
    for erf_out, one in (tuple(add.input), tuple(add.input)[::-1]):
        erf = producers.get(erf_out)
        if not same(_scalar_constant(one, constants, producers), 1.0) or erf is None or erf.op_type != "Erf":
            continue
        scale = producers.get(erf.input[0])
        if scale is not None and scale.op_type == "Div" and same(
                _scalar_constant(scale.input[1], constants, producers), math.sqrt(2.0)):
            return scale.input[0]
        if scale is not None and scale.op_type == "Mul":
            for x, c in (tuple(scale.input), tuple(scale.input)[::-1]):
                if same(_scalar_constant(c, constants, producers), math.sqrt(0.5)):
                    return x
    return None


def _fused(graph, constants: dict) -> list:
    """The graph's nodes with GELU as exporters spell it below opset 20 replaced by ``Gelu``, and the nodes
    nothing then reads dropped.

    ``x * (1 + erf(x / sqrt 2))`` (a ``Mul`` of ``x`` and the gate, the ``1/2`` applied before or after)
    becomes ``Gelu(x)`` (times 2 when the half comes after). Erf alone is not an activation relumilp has,
    and the product is of two network values, so without this fusion such networks cannot load.
    """
    producers = {o: n for n in graph.node for o in n.output if o}
    nodes, fused = [], False
    for node in graph.node:
        if node.op_type == "Mul" and node.domain in ("", "ai.onnx") and len(node.input) == 2:
            for side, gate in (tuple(node.input), tuple(node.input)[::-1]):
                x = _erf_gate_input(gate, constants, producers)
                if x is None:
                    continue
                half = producers.get(side)
                if side == x:  # x * gate = 2 gelu(x); the 1/2 comes after
                    twice, two = f"{node.output[0]}__gelu", f"{node.output[0]}__two"
                    nodes += [helper.make_node("Gelu", [x], [twice], name=f"{node.name}__gelu"),
                              helper.make_node("Constant", [], [two], value=numpy_helper.from_array(np.float32(2.0))),
                              helper.make_node("Mul", [twice, two], list(node.output), name=node.name)]
                    fused = True
                    break
                if half is not None and half.op_type == "Mul" and any(
                        a == x and np.float32(_scalar_constant(c, constants, producers) or 0.0) == np.float32(0.5)
                        for a, c in (tuple(half.input), tuple(half.input)[::-1])):
                    nodes.append(helper.make_node("Gelu", [x], list(node.output), name=node.name))
                    fused = True
                    break
            else:
                nodes.append(node)
            continue
        nodes.append(node)
    if not fused or any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in nodes for a in n.attribute):
        return nodes  # nothing fused (or subgraphs, which read outer values without listing them): keep all
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(nodes):  # backwards: a node is kept when a kept node or the output reads it
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return kept[::-1]


def _inline_if(b: NetworkBuilder, node, env: dict, opsets, opset: int) -> None:
    """``If`` on a constant condition (exporters' shape and rank checks, e.g. torch's LocalResponseNorm): the
    chosen branch's nodes are converted in place, seeing the outer scope, and its outputs become the node's."""
    cond = b._constant_sym(env[node.input[0]])
    if is_sym(cond):
        raise b.unsupported("If with a condition computed from the network input", ["If on a constant condition"])
    cond = np.asarray(cond)
    if cond.size != 1:
        raise b.invalid(f"If needs a single-element condition, got shape {cond.shape}")
    chosen = "then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"
    branch = next((helper.get_attribute_value(a) for a in node.attribute if a.name == chosen), None)
    if branch is None:
        raise ModelFileError(f"{b.where} has no {chosen}")
    try:
        local = {**env, **{t.name: numpy_helper.to_array(t) for t in branch.initializer}}
    except Exception as exc:
        raise ModelFileError(f"cannot read the initializers of {b.where}'s {chosen}: {one_line(exc)}") from None
    where = b.where
    for inner in _fused(branch, local):
        _convert(b, inner, local, opsets, opset)
    b.where = where
    missing = [o.name for o in branch.output if o.name not in local]
    if missing or len(branch.output) != len(node.output):
        raise ModelFileError(f"{where}: its {chosen} does not produce the node's {len(node.output)} outputs")
    env.update((name, local[o.name]) for name, o in zip(node.output, branch.output) if name)


#: binary operators whose opset < 7 forms broadcast the second input onto the first only with ``broadcast=1``,
#: its dimensions aligned from ``axis`` (Add-6, Sub-6, Mul-6, Div-6: a per-channel bias of shape (C,) at axis 1)
_LEGACY_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div"})


def _legacy_broadcast(b: NetworkBuilder, node, values: list) -> list:
    """The inputs of an opset < 7 Add / Sub / Mul / Div with ``broadcast=1`` and ``axis``, the second given
    trailing dimensions of 1 so that numpy's (trailing) broadcasting aligns it at ``axis`` as the old spec does;
    without ``axis`` the old rule is numpy's suffix matching already."""
    attrs = _attrs(node)
    if not attrs.get("broadcast", 0) or "axis" not in attrs or len(values) != 2:
        return values
    a, c = values
    if not (is_sym(a) or isinstance(a, np.ndarray)) or isinstance(c, (Step, SignOf)):
        return values
    rank = a.ndim
    shape = tuple(c.shape) if is_sym(c) else np.shape(c)
    axis = int(attrs["axis"])
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis <= rank - len(shape):
        raise b.invalid(f"broadcast axis {attrs['axis']} does not fit a second input of shape {shape} "
                        f"to a first of rank {rank}")
    shape = shape + (1,) * (rank - axis - len(shape))
    return [a, b.reshape(c, shape) if is_sym(c) else np.reshape(c, shape)]


def _convert(b: NetworkBuilder, node, env: dict, opsets, opset: int) -> None:
    label = node.name or (node.output[0] if node.output else "?")
    b.where = f"ONNX node '{label}' ({node.op_type})"
    missing = [n for n in node.input if n and n not in env]
    if missing:
        raise ModelFileError(f"ONNX node '{label}' reads tensor {missing[0]!r}, which no earlier node produces")
    if node.op_type == "If" and node.domain in ("", "ai.onnx"):
        return _inline_if(b, node, env, opsets, opset)
    values = [env[n] if n else None for n in node.input]
    if opset < 7 and node.op_type in _LEGACY_BROADCAST and node.domain in ("", "ai.onnx"):
        values = _legacy_broadcast(b, node, values)
    if any(isinstance(v, SignOf) for v in values) and node.op_type != "Mul":
        raise UnsupportedOperatorError(f"use of Sign by ONNX operator '{node.op_type}' (node '{label}')",
                                       ["Sign(x) * Abs(x)"], SIGN_HINT)
    if any(isinstance(v, Step) for v in values) and node.op_type not in ("Where", "Mul", "Cast", "Not", "Identity"):
        raise UnsupportedOperatorError(f"use of a comparison by ONNX operator '{node.op_type}' (node '{label}')",
                                       ["Where", "Mul", "Cast", "Not", "Identity"], STEP_HINT)
    if not any(is_sym(v) or isinstance(v, (SignOf, Step)) for v in values):
        results = _fold_own(b, node, values, opset)
        if results is None:
            results = _fold(node, values, opsets)
    else:
        handler = _OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if handler is None:
            raise UnsupportedOperatorError(
                f"ONNX operator '{node.op_type}' (node '{label}')", SUPPORTED_OPS, smooth_hint(node.op_type)
            )
        try:
            results = handler(b, node, values, _attrs(node), opset)
        except RelumilpError:  # already one line (some are ValueErrors too)
            raise
        except _MissingAttribute as exc:
            raise ModelFileError(f"{b.where} lacks its required attribute {exc.args[0]!r}") from None
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            # attributes or input shapes the node's own rules reject (an invalid model): one line, not a trace
            shapes = ", ".join(str(tuple(getattr(v, "shape", ()))) for v in values if v is not None)
            raise ModelFileError(f"{b.where} does not fit its inputs of shapes {shapes}: {one_line(exc)}") from None
        results = results if isinstance(results, tuple) else (results,)
    env.update((name, value) for name, value in zip(node.output, results) if name)


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """A sparse initializer as a dense array: its values at flat positions, or at coordinates
    (``indices`` of shape ``(nnz, rank)``)."""
    values = numpy_helper.to_array(sparse.values).reshape(-1)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    shape = tuple(int(d) for d in sparse.dims)
    dense = np.zeros(shape, dtype=values.dtype)
    flat = indices.reshape(-1) if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), shape)
    dense.reshape(-1)[flat] = values
    return dense


def from_onnx(source, name: str | None = None) -> Network:
    """Convert an ONNX model (path, ``onnx.ModelProto`` or its serialised bytes) to the IR; batch dimensions
    are dropped."""
    model = _load(source)
    graph = model.graph
    try:
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        constants.update((t.values.name, _dense(t)) for t in graph.sparse_initializer)
    except Exception as exc:
        raise ModelFileError(f"cannot read the ONNX initializers: {one_line(exc)}") from None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    produced = [name for node in graph.node for name in node.output if name]
    defined = produced + list(constants) + [v.name for v in graph.input if v.name not in constants]
    if len(set(defined)) != len(defined):
        twice = sorted({name for name in defined if defined.count(name) > 1})
        raise ModelFileError(f"the ONNX graph defines tensor {twice[0]!r} more than once (invalid ONNX)")
    b = NetworkBuilder()
    input_name, x = _input_value(model, constants, b)
    env = {**constants, input_name: x}
    for node in _fused(graph, constants):
        _convert(b, node, env, model.opset_import, opset)
    if len(graph.output) != 1:
        raise InvalidNetworkError(f"the ONNX model has {len(graph.output)} outputs; relumilp needs exactly one")
    if graph.output[0].name not in env:
        raise ModelFileError(f"the ONNX output {graph.output[0].name!r} is not produced by any node")
    b.where = "the ONNX output"
    default = Path(source).stem if isinstance(source, (str, os.PathLike)) else (graph.name or "onnx")
    return b.finish(env[graph.output[0].name], name or default)
