"""PyTorch frontend: ``nn.Module`` (via torch.fx), TorchScript and ``torch.export`` programs to the IR.

All three sources are first rewritten into one list of :class:`_Op` records -- an operator name in
ATen spelling (``linear``, ``relu``, ``add``, ``cat`` ...) with its arguments -- and then run by a
single interpreter over :class:`~relumilp.frontends._builder.NetworkBuilder`. Operations whose
arguments are all constants (parameter transposes, shape arithmetic, TorchScript's constant branch
conditions) are evaluated with torch itself; the rest must be one of the piecewise-linear operators in
:data:`SUPPORTED_OPS`.
"""

from __future__ import annotations

import inspect
import math
import operator
import pickle
import warnings
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidNetworkError, ModelFileError, UnsupportedOperatorError
from ..ir import Network
from ._builder import (SIGN_HINT, STEP_HINT, NetworkBuilder, SignOf, Step, contains, contains_sym, is_sym,
                       one_line, smooth_hint)

SUPPORTED_LAYERS = (
    "Linear",
    "ReLU",
    "LeakyReLU",
    "ReLU6",
    "Hardtanh(min_val=a, max_val=b>a)",
    "Hardsigmoid",
    "PReLU (num_parameters 1 or C)",
    "BatchNorm1d/2d (eval)",
    "Conv1d/Conv2d",
    "ConvTranspose1d/2d",
    "AvgPool1d/2d",
    "ZeroPad/ConstantPad/ReflectionPad/ReplicationPad1d/2d",
    "MaxPool1d/2d",
    "Upsample (nearest, bilinear...)",
    "AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d",
    "PixelShuffle / PixelUnshuffle",
    "Hardswish",
    "Flatten",
    "Identity",
    "Dropout",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "SiLU",
    "Softplus(beta > 0)",
    "ELU, SELU, CELU",
    "Mish, Softsign, Tanhshrink, LogSigmoid, Softmin, Softshrink",
    "LPPool1d/2d",
    "GELU (exact, or approximate='tanh')",
    "relumilp.train SoftExponential (scalar alpha), RePU",
    "Softmax, LogSoftmax",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm1d/2d",
    "LocalResponseNorm",
)

_ALIASES = {
    "iadd": "add", "isub": "sub", "imul": "mul", "truediv": "div", "itruediv": "div", "true_divide": "div",
    "mm": "matmul",
    "reshape": "view", "_unsafe_view": "view", "view_copy": "view", "clip": "clamp", "concat": "cat",
    "concatenate": "cat", "feature_dropout": "dropout", "alpha_dropout": "dropout",
    "feature_alpha_dropout": "dropout", "dropout1d": "dropout", "contiguous": "identity",
    "detach": "identity", "alias": "identity", "float": "identity",
    "double": "identity", "to": "to", "_to_copy": "to", "type_as": "identity",
    "unchecked_cast": "identity", "_threshold": "threshold", "__getitem__": "getitem", "TupleIndex": "getitem",
    "ListConstruct": "list", "TupleConstruct": "list", "ListUnpack": "unpack", "TupleUnpack": "unpack",
}  # fmt: skip


def _canonical(name: str) -> str:
    """ATen-style name: in-place variants (``relu_``) and Python spellings (``truediv``) normalised."""
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return _ALIASES.get(name, name)


# -- the common op list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    """A reference to the value another op produced."""

    key: str


@dataclass
class _Op:
    """One source operation: ``outputs = name(*args, **kwargs)``; ``call`` evaluates it on constants."""

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    outputs: tuple = ()
    call: Callable | None = None
    where: str = ""
    blocks: tuple = ()  # TorchScript prim::If: ((ops, returns), (ops, returns))
    #: an in-place op (``relu_``, ``+=``, ``inplace=True``): it writes its result into its first argument
    mutates: bool = False


#: Python's in-place operators, which mutate a tensor (``h += 1`` changes every name bound to ``h``)
_INPLACE_OPERATORS = {"iadd", "isub", "imul", "itruediv", "idiv", "ifloordiv", "ipow", "imatmul"}

#: ops whose result may share its first argument's storage: an in-place op on one of them (or on their
#: source) changes the other, which relumilp's value-based ops do not follow, so such a pair is refused
_VIEWS = {"view", "getitem", "slice", "select", "transpose", "t", "permute", "flatten", "squeeze", "unsqueeze",
          "expand", "expand_as", "narrow", "unflatten", "movedim", "moveaxis", "chunk", "split", "split_with_sizes",
          "unpack", "identity", "view_as", "diagonal", "unbind", "as_strided", "getattr"}


def _inplace(raw_name: str, kwargs=None) -> bool:
    """Whether an op of source name ``raw_name`` (before :func:`_canonical`) writes into its first argument."""
    if raw_name in _INPLACE_OPERATORS or (raw_name.endswith("_") and not raw_name.endswith("__")):
        return True
    return bool(kwargs and kwargs.get("inplace") is True)


def _writable_view(op: _Op) -> bool:
    """Whether ``op`` is always a view whose elements are a fixed selection of its source's (a write into it is
    a scatter into the source): slicing and basic indexing. Ops that may copy (reshape, contiguous, dtype
    conversions, advanced indexing) are not, so a write through them is refused when the source is read later."""
    if op.name in ("slice", "select", "narrow"):
        return op.call is not None and len(op.outputs) == 1
    if op.name != "getitem" or len(op.args) < 2 or op.call is None:
        return False
    key = op.args[1] if isinstance(op.args[1], tuple) else (op.args[1],)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) and not isinstance(k, bool) and
               not any(isinstance(v, _Ref) for v in ((k.start, k.stop, k.step) if isinstance(k, slice) else ()))
               for k in key)


def _check_mutations(ops: list, output=None) -> None:
    """Refuse an in-place op whose tensor shares storage with another value read after it (a view of it, or
    what it is a view of, or the program's output): the write would reach that value in torch, not in
    relumilp's value-based ops. An in-place op's result is its target tensor itself (``h.relu_().add_(1)``
    writes ``h`` twice). A write into a slice is scattered into its source (:func:`_run`)."""
    flat = []

    def walk(sequence):
        for op in sequence:
            flat.append(op)
            for block_ops, _ in op.blocks:
                walk(block_ops)

    walk(ops)
    same: dict[str, str] = {}  # an in-place op's output -> the tensor it wrote
    base: dict[str, str] = {}
    born: dict[str, int] = {}  # where each key is defined: a view made after a write reads the new value
    writable: dict[str, bool] = {}  # a chain of slicing views: writes reach its root as a scatter
    first = [next(iter(_refs_in((op.args, op.kwargs))), None) for op in flat]
    for index, (op, source) in enumerate(zip(flat, first)):
        source = same.get(source, source)
        for key in op.outputs:
            born[key] = index
            if op.mutates and source is not None:
                same[key] = source
                continue
            view = op.name in _VIEWS and source is not None
            base[key] = base.get(source, source) if view else key
            writable[key] = not view or (_writable_view(op) and writable.get(source, True))
    reads = [{same.get(k, k) for k in _refs_in((o.args, o.kwargs))} for o in flat]
    reads.append({same.get(k, k) for k in _refs_in(output)})
    for i, op in enumerate(flat):
        source = _mutated(op)
        if source is None:
            continue
        if op.name in _VIEWS:  # transpose_, unsqueeze_, ...: they change how the tensor is read, not its values
            raise UnsupportedOperatorError(f"in-place view change '{op.name}_' ({op.where})", SUPPORTED_OPS,
                                           f"use the out-of-place {op.name}")
        source = same.get(source, source)
        root = base.get(source, source)
        shared = {key for key, b in base.items() if b == root and key not in (source, root) and born.get(key, -1) < i}
        if not writable.get(source, True):
            shared.add(root)
        later = next((j for j in range(i + 1, len(reads)) if shared & reads[j]), None)
        if later is not None:
            where = flat[later].where if later < len(flat) else "the output"
            raise UnsupportedOperatorError(
                f"in-place operation '{op.name}_' ({op.where}) on a tensor that shares its storage with a value "
                f"used later ({where})", SUPPORTED_OPS,
                "write it out of place (y = f(x) instead of x.f_() or x[...] = ...), or pass a torch.export program")


def _mutated(op: _Op) -> str | None:
    """The key of the tensor an in-place op writes into (its first argument), else None."""
    return next(iter(_refs_in((op.args, op.kwargs))), None) if op.mutates else None


def _refs_in(value):
    """The keys of every :class:`_Ref` in ``value`` (nested lists, tuples, dicts), in order."""
    if isinstance(value, _Ref):
        yield value.key
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _refs_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _refs_in(v)


def _constant(key: str, value, where: str) -> _Op:
    return _Op("constant", outputs=(key,), call=lambda: value, where=where)


@dataclass
class _Program:
    """A torch source rewritten as ops, with its input and output and what is known of the input shape."""

    ops: list
    input_key: str
    output: Any
    name: str
    input_shape: tuple | None = None
    batched: bool = True
    #: the example batch size a static export baked into its shapes (more than 1), else None
    baked_batch: int | None = None


class _Args:
    """Positional-or-keyword access to an op's arguments (``self`` and ``input`` are the same)."""

    _REQUIRED = object()

    def __init__(self, op: _Op, args: tuple, kwargs: dict):
        self.op, self.args, self.kwargs = op, args, kwargs

    def __call__(self, i: int, name: str, default=_REQUIRED):
        if i < len(self.args):
            return self.args[i]
        for key in (name, "self") if name == "input" else (name,):
            if key in self.kwargs:
                return self.kwargs[key]
        if default is self._REQUIRED:
            raise InvalidNetworkError(f"operation '{self.op.name}' is missing argument '{name}' ({self.op.where})")
        return default


# -- operator handlers (shared by torch.fx, TorchScript and torch.export) ----------------------------------


def _scalar(value) -> float | None:
    """A scalar argument (a bound, a slope) as a float; None stays None."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise InvalidNetworkError(f"expected a single number, got a tensor of shape {tuple(value.shape)}")
    return float(value)


def _shape_arg(a: _Args, name: str) -> list[int]:
    rest = list(a.args[1:]) if len(a.args) > 1 else [a(1, name)]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple, torch.Size)):
        rest = list(rest[0])
    return [int(d) for d in rest]


def _dims(b, x, dims: list[int]) -> tuple:
    return tuple(b.axis(d, x.ndim) for d in dims)


def _transpose(b, a):
    x = a(0, "input")
    if a.op.name == "t":
        return b.transpose(x, None)
    if a.op.name == "permute":
        return b.transpose(x, _dims(b, x, _shape_arg(a, "dims")))
    perm = list(range(x.ndim))
    i, j = _dims(b, x, [a(1, "dim0"), a(2, "dim1")])
    perm[i], perm[j] = perm[j], perm[i]
    return b.transpose(x, perm)


def _batch_norm(b, a):
    names = ("input", "weight", "bias", "running_mean", "running_var")
    x, weight, bias, mean, var = (a(i, n, None) for i, n in enumerate(names))
    functional = a.op.name == "_native_batch_norm_legit_functional"  # a functionalised train-mode export
    training = a(5, "training", False) if a.op.name == "batch_norm" or functional else False
    eps = a(7, "eps", 1e-5) if a.op.name == "batch_norm" or functional else a(6, "eps", 1e-5)
    if training or mean is None or var is None:
        raise b.unsupported(
            "batch norm with batch statistics",
            ["batch norm in eval mode with running statistics"],
            "call model.eval() before saving or exporting it",
        )
    y = b.batch_norm(x, mean, var, weight, bias, float(eps))
    return y if a.op.name == "batch_norm" else (y, None, None, None, None) if functional else (y, None, None)


def _size(b, a):
    x, dim = a(0, "input"), a(1, "dim", None)
    return torch.Size(x.shape) if dim is None else x.shape[dim]


def _getattr(b, a):
    x, attr = a(0, "input"), a(1, "name")
    if isinstance(x, _Extremum) and attr in _Extremum._fields:
        return getattr(x, attr)
    if is_sym(x) and attr in ("shape", "ndim"):
        return torch.Size(x.shape) if attr == "shape" else x.ndim
    if is_sym(x) and attr == "T":  # all dimensions reversed (torch's x.T)
        return b.transpose(x, list(range(x.ndim))[::-1])
    if is_sym(x) and attr == "mT" and x.ndim >= 2:  # the last two dimensions swapped
        return b.transpose(x, [*range(x.ndim - 2), x.ndim - 1, x.ndim - 2])
    raise b.unsupported(f"attribute '{attr}' of a network value", ["shape", "ndim", "T", "mT"])


def _getitem(b, a):
    x, key = a(0, "input"), a(1, "idx")
    return b.index(x, key) if is_sym(x) else x[key]


def _slice(b, a):
    x = a(0, "input")
    key = [slice(None)] * x.ndim
    key[b.axis(a(1, "dim", 0), x.ndim)] = slice(a(2, "start", None), a(3, "end", None), a(4, "step", 1))
    return b.index(x, tuple(key))


def _select(b, a):
    """ATen's ``select``: ``x[..., index, ...]`` at ``dim`` (integer indexing in scripted and exported models)."""
    x = a(0, "input")
    key = [slice(None)] * x.ndim
    key[b.axis(a(1, "dim"), x.ndim)] = int(a(2, "index"))
    return b.index(x, tuple(key))


def _view(b, a):
    return b.reshape(a(0, "input"), _shape_arg(a, "size" if "size" in a.kwargs else "shape"))


#: torch's softplus jumps by ``log1p(exp(-threshold)) / beta`` where it switches to ``x``; relumilp reads the
#: smooth function, so the jump must be negligible (2.1e-9 / beta at the default threshold 20)
SOFTPLUS_JUMP = 1e-6


def _softplus(b, a):
    """Softplus ``log(1 + exp(beta x)) / beta`` (torch returns ``x`` where ``beta x`` exceeds ``threshold``, a
    jump of ``log1p(exp(-threshold)) / beta``: at most :data:`SOFTPLUS_JUMP`, else refused)."""
    beta, threshold = _scalar(a(1, "beta", 1.0)), _scalar(a(2, "threshold", 20.0))
    if not 0.0 < beta < math.inf:
        raise UnsupportedOperatorError(f"Softplus beta {beta:g} ({a.op.where})", ["beta > 0"])
    if not math.log1p(math.exp(-min(threshold, 700.0))) / beta <= SOFTPLUS_JUMP:
        raise UnsupportedOperatorError(
            f"Softplus threshold {threshold:g} with beta {beta:g} ({a.op.where})",
            [f"a threshold where torch's switch to x jumps by at most {SOFTPLUS_JUMP:g} (the default 20)"],
            "torch returns x above the threshold: a jump, not continuous in the input")
    x = a(0, "input")
    return b.smooth(x, "softplus") if beta == 1.0 else b.mul(b.smooth(b.mul(x, beta), "softplus"), 1.0 / beta)


def _elu(b, a):
    """ELU, and ATen's ``elu(x, alpha, scale, input_scale)`` that SELU and CELU decompose into."""
    return b.elu(a(0, "input"), _scalar(a(1, "alpha", 1.0)), _scalar(a(2, "scale", 1.0)),
                 _scalar(a(3, "input_scale", 1.0)))


def _as_array(value):
    """A torch tensor as a numpy array; a network value (or anything else) as it is."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def _unsqueezed(b, x, dim: int):
    """``x`` with a new axis of size 1 at ``dim`` (for a network value or a constant)."""
    if not is_sym(x):
        return np.expand_dims(np.asarray(_as_array(x)), b.axis(dim, np.ndim(_as_array(x)) + 1))
    dim = b.axis(dim, x.ndim + 1)
    return b.reshape(x, list(x.shape[:dim]) + [1] + list(x.shape[dim:]))


def _flip(b, a):
    x = a(0, "input")
    key = [slice(None)] * x.ndim
    for d in _dims(b, x, _shape_arg(a, "dims")):
        key[d] = slice(None, None, -1)
    return b.index(x, tuple(key))


def _roll(b, a):
    """roll: each position reads the one ``shift`` before it along ``dims`` (the flattened tensor without dims)."""
    x, shifts, dims = a(0, "input"), a(1, "shifts"), a(2, "dims", None)
    shifts = [int(v) for v in (shifts if isinstance(shifts, (list, tuple)) else [shifts])]
    dims = None if dims in (None, [], ()) else [int(v) for v in (dims if isinstance(dims, (list, tuple)) else [dims])]
    if dims is not None and len(dims) != len(shifts):
        raise b.invalid(f"roll has {len(shifts)} shifts for {len(dims)} dims")
    return b.gather_positions(x, np.roll(b.positions(x.shape), shifts, _dims(b, x, dims) if dims is not None else None))


def _narrow(b, a):
    x, dim, start, length = a(0, "input"), a(1, "dim"), int(a(2, "start")), int(a(3, "length"))
    dim = b.axis(dim, x.ndim)
    start = start + x.shape[dim] if start < 0 else start
    if not 0 <= start <= start + length <= x.shape[dim] or length < 0:
        raise b.invalid(f"narrow of dimension {dim} (size {x.shape[dim]}) from {start} for {length}")
    key = [slice(None)] * x.ndim
    key[dim] = slice(start, start + length)
    return b.index(x, tuple(key))


def _chunk(b, a):
    x, chunks, dim = a(0, "input"), int(a(1, "chunks")), a(2, "dim", 0)
    length = x.shape[b.axis(dim, x.ndim)]
    if chunks < 1:
        raise b.invalid(f"chunk into {chunks} parts")
    part = max(-(-length // chunks), 1)
    sizes = [part] * (length // part) + ([length % part] if length % part else [])
    return b.split(x, sizes, dim)


def _stack(b, a):
    tensors, dim = list(a(0, "tensors")), int(a(1, "dim", 0))
    return b.concat([_unsqueezed(b, t, dim) for t in tensors], dim)


def _movedim(b, a):
    x, source, destination = a(0, "input"), a(1, "source"), a(2, "destination")
    source = _dims(b, x, source if isinstance(source, (list, tuple)) else [source])
    destination = _dims(b, x, destination if isinstance(destination, (list, tuple)) else [destination])
    if len(source) != len(destination) or len(set(source)) != len(source) or len(set(destination)) != len(source):
        raise b.invalid(f"movedim from {list(source)} to {list(destination)}")
    return b.gather_positions(x, np.moveaxis(b.positions(x.shape), source, destination))


def _unflatten(b, a):
    x, dim, sizes = a(0, "input"), a(1, "dim"), [int(v) for v in a(2, "sizes")]
    dim = b.axis(dim, x.ndim)
    return b.reshape(x, list(x.shape[:dim]) + sizes + list(x.shape[dim + 1:]))


def _channel_shuffle(b, a):
    x, groups = a(0, "input"), int(a(1, "groups"))
    if x.ndim < 2 or groups < 1 or x.shape[1] % groups:
        raise b.invalid(f"channel shuffle of shape {x.shape} in {groups} groups")
    grouped = b.reshape(x, [x.shape[0], groups, x.shape[1] // groups] + list(x.shape[2:]))
    perm = [0, 2, 1] + list(range(3, grouped.ndim))
    return b.reshape(b.transpose(grouped, perm), x.shape)


def _diff(b, a):
    """diff: ``x[1:] - x[:-1]`` along ``dim``, ``n`` times, after ``prepend`` / ``append``."""
    x, n, dim = a(0, "input"), int(a(1, "n", 1)), a(2, "dim", -1)
    prepend, append = a(3, "prepend", None), a(4, "append", None)
    dim = b.axis(dim, x.ndim)
    items = [_as_array(v) for v in (prepend, x, append) if v is not None]
    x = b.concat(items, dim) if len(items) > 1 else x
    for _ in range(n):
        head, tail = [slice(None)] * x.ndim, [slice(None)] * x.ndim
        head[dim], tail[dim] = slice(1, None), slice(None, -1)
        x = b.sub(b.index(x, tuple(head)), b.index(x, tuple(tail)))
    return x


def _clamp(b, a):
    """clamp / clip to scalar bounds (one activation) or to tensor bounds (a maximum and a minimum per element)."""
    x, low, high = a(0, "input"), a(1, "min", None), a(2, "max", None)
    if all(v is None or not isinstance(v, torch.Tensor) or v.numel() == 1 for v in (low, high)):
        return b.clip(x, _scalar(low), _scalar(high))
    y = x if low is None else b.maximum(x, _as_array(low))
    return y if high is None else b.minimum(y, _as_array(high))


def _threshold(b, a):
    """threshold: ``x`` above ``threshold``, else ``value``; continuous only when ``value == threshold`` (``max``)."""
    x, threshold, value = a(0, "input"), _scalar(a(1, "threshold")), _scalar(a(2, "value"))
    if value != threshold:
        raise b.unsupported(f"threshold {threshold:g} with value {value:g}", ["value = threshold (max(x, threshold))"],
                            "it jumps at the threshold: it is not continuous in the input")
    return b.maximum(x, threshold)


def _rrelu(b, a):
    """rrelu in evaluation: a leaky ReLU of slope ``(lower + upper) / 2``."""
    if a(3, "training", False):
        raise b.unsupported("rrelu in training mode (random slopes)", ["rrelu in eval mode"], "call model.eval() first")
    return b.leaky_relu(a(0, "input"), (_scalar(a(1, "lower", 1.0 / 8.0)) + _scalar(a(2, "upper", 1.0 / 3.0))) / 2.0)


def _glu(b, a):
    """glu: the first half times the sigmoid of the second half along ``dim`` (a product)."""
    x, dim = a(0, "input"), a(1, "dim", -1)
    length = x.shape[b.axis(dim, x.ndim)]
    if length % 2:
        raise b.invalid(f"glu halves dimension {dim} of odd size {length}")
    first, second = b.split(x, [length // 2, length // 2], dim)
    return b.mul(first, b.smooth(second, "sigmoid"))


def _attention(b, a):
    """scaled_dot_product_attention: ``softmax(q k^T scale + mask) v`` (products of network values, the
    softmax of :meth:`NetworkBuilder.softmax`); a float mask adds, a mask that excludes positions (boolean,
    -inf, causal) is not supported."""
    q, k, v = a(0, "query"), a(1, "key"), a(2, "value")
    mask, causal, scale = a(3, "attn_mask", None), a(5, "is_causal", False), a(6, "scale", None)
    if causal or (mask is not None and (is_sym(mask) or not torch.is_floating_point(mask)
                                        or not bool(torch.isfinite(mask).all()))):
        raise b.unsupported("attention with a mask that excludes positions (causal, boolean or -inf)",
                            ["no mask", "a finite float mask"])
    if float(a(4, "dropout_p", 0.0)) != 0.0:
        raise b.unsupported("attention with dropout", ["dropout_p = 0 (inference)"])
    if a.kwargs.get("enable_gqa", False):
        raise b.unsupported("attention with grouped query heads", ["enable_gqa=False"])
    depth = q.shape[-1]
    scale = 1.0 / math.sqrt(depth) if scale is None else _scalar(scale)
    keys = b.transpose(k, list(range(k.ndim - 2)) + [k.ndim - 1, k.ndim - 2]) if is_sym(k) else \
        np.swapaxes(_as_array(k), -1, -2)
    scores = b.mul(b.matmul(_as_array(q), keys), scale)
    if mask is not None:
        scores = b.add(scores, _as_array(mask))
    return b.matmul(b.softmax(scores, -1), _as_array(v))


def _bilinear(b, a):
    """bilinear: ``y_k = x1^T W_k x2 + b_k``, an einsum of two network values and the weight."""
    x1, x2, weight, bias = a(0, "input1"), a(1, "input2"), a(2, "weight"), a(3, "bias", None)
    y = b.einsum("...i,kij,...j->...k", [_as_array(x1), np.asarray(_as_array(weight)), _as_array(x2)])
    return y if bias is None else b.add(y, np.asarray(_as_array(bias)))


def _gather_dim(b, a):
    x, dim, index = a(0, "input"), a(1, "dim"), b.index_array(a(2, "index"), "gather index")
    return b.gather_positions(x, b.along_axis(x.shape, index, dim))


def _scatter_dim(b, a):
    """scatter(input, dim, index, src or value) without ``reduce``."""
    x, dim, index = _as_array(a(0, "input")), a(1, "dim"), b.index_array(a(2, "index"), "scatter index")
    if a.kwargs.get("reduce") is not None or len(a.args) > 4:
        raise b.unsupported("scatter with reduce", ["scatter without reduce"])
    src = a.kwargs.get("src", a.kwargs.get("value", a.args[3] if len(a.args) > 3 else None))
    if src is None:
        raise b.invalid("scatter needs src or value")
    positions = b.along_axis(np.shape(x), index, dim)
    src, used = _as_array(src), tuple(slice(0, n) for n in index.shape)  # torch reads src where index has values
    if np.ndim(src) and np.shape(src) != index.shape:
        src = b.index(src, used) if is_sym(src) else np.asarray(src)[used]
    return b.scatter(x, positions, src)  # a scalar value broadcasts


def _slice_scatter(b, a):
    x, src = _as_array(a(0, "input")), _as_array(a(1, "src"))
    key = [slice(None)] * np.ndim(x)
    key[b.axis(a(2, "dim", 0), np.ndim(x))] = slice(a(3, "start", None), a(4, "end", None), a(5, "step", 1))
    return b.scatter(x, b.positions(np.shape(x), tuple(key)), src)


def _select_scatter(b, a):
    x, src = _as_array(a(0, "input")), _as_array(a(1, "src"))
    key = [slice(None)] * np.ndim(x)
    key[b.axis(a(2, "dim"), np.ndim(x))] = int(a(3, "index"))
    return b.scatter(x, b.positions(np.shape(x), tuple(key), "select_scatter index"), src)


def _index_put(b, a):
    """index_put (``x[indices] = values``, as torch.export writes an indexed assignment) with constant indices."""
    x, indices, values = _as_array(a(0, "input")), a(1, "indices"), _as_array(a(2, "values"))
    if a(3, "accumulate", False):
        raise b.unsupported("index_put with accumulate", ["index_put without accumulate"])
    key = tuple(slice(None) if i is None else b.index_array(i, "index_put index") for i in indices)
    return b.scatter(x, b.positions(np.shape(x), key, "index_put index"), values)


#: TorchScript's ScalarType codes of the floating dtypes relumilp computes in (float32, float64), and the names
#: of the others a model converts to
_FLOAT_CODES = {6, 7}
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 11: "bool", 15: "bfloat16"}


def _to(b, a):
    """``to`` / ``_to_copy``: a device or float32 / float64 conversion is the identity; a conversion to an
    integer or boolean type truncates (a step, not continuous) and one to float16 / bfloat16 rounds, so both
    are refused."""
    x = a(0, "input")
    if isinstance(x, Step):  # a comparison as 0 / 1 of any type stays the same step
        return x
    script = a.op.where.startswith("TorchScript")  # TorchScript passes a dtype as its ScalarType code
    dtypes = [v for v in list(a.args[1:]) + list(a.kwargs.values())
              if isinstance(v, torch.dtype) or (script and isinstance(v, int) and not isinstance(v, bool))]
    for dtype in dtypes[:1]:
        ok = dtype in (torch.float32, torch.float64) if isinstance(dtype, torch.dtype) else dtype in _FLOAT_CODES
        if not ok:
            name = dtype if isinstance(dtype, torch.dtype) else _SCALAR_TYPES.get(dtype, f"type code {dtype}")
            raise b.unsupported(f"conversion of a network value to {name}", ["float32", "float64"],
                                "a conversion to an integer, boolean or 16-bit type rounds the value: not continuous")
    return x


def _filled(b, x, value):
    """A tensor of ``x``'s shape holding ``value`` (broadcast): copy, fill, zeros_like and the like."""
    if is_sym(value):
        return b.expand(value, list(x.shape))
    return b.add(np.zeros(tuple(x.shape)), np.asarray(_as_array(value), dtype=np.float64))


def _lp_pool(b, a):
    """lp_pool1d/2d: torch's ``(sum x^p)^(1/p)`` over each window (no absolute value, as torch)."""
    d = 1 if "1d" in a.op.name else 2
    kernel = _per_dim(a(2, "kernel_size"), d)
    stride = a(3, "stride", None)
    stride = kernel if stride in (None, [], ()) else _per_dim(stride, d)
    return b.lp_pool(a(0, "input"), _scalar(a(1, "norm_type")), kernel, stride, None, None,
                     bool(a(4, "ceil_mode", False)), absolute=False)


def _normalize(b, a):
    """F.normalize: ``x / max(||x||_p, eps)`` along ``dim``."""
    return b.lp_normalize(a(0, "input"), int(a(2, "dim", 1)), _scalar(a(1, "p", 2.0)), _scalar(a(3, "eps", 1e-12)))


def _vector_norm(b, a):
    """linalg.vector_norm / norm with ``ord`` / ``p`` 1, 2 or inf over ``dim`` (all when absent)."""
    x = a(0, "input")
    order = a(1, "ord" if a.op.name == "linalg_vector_norm" else "p", 2)
    order = 2.0 if order in (None, "fro") else _scalar(order)
    dim, keep = a(2, "dim", None), bool(a(3, "keepdim", False))
    dims = None if dim is None or (isinstance(dim, (list, tuple)) and not dim) else \
        [int(d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    if order == math.inf:
        return b.reduce_max(b.abs(x), dims, keep)
    if order not in (1.0, 2.0):
        raise b.unsupported(f"vector norm of order {order:g}", ["1", "2", "inf"])
    return b.reduce_norm(x, dims, keep, int(order))


def _einsum(b, a):
    """einsum(equation, *operands) or (equation, [operands]) (TorchScript / ATen: a list)."""
    equation = a(0, "equation")
    operands = list(a.args[1:]) if len(a.args) > 1 else list(a.kwargs.get("tensors", a.kwargs.get("operands", ())))
    if operands and isinstance(operands[0], (list, tuple)):  # ATen's einsum(equation, tensors, path)
        operands = list(operands[0])
    return b.einsum(equation, [o if is_sym(o) else np.asarray(_as_array(o)) for o in operands])


def _cumsum(b, a):
    x = a(0, "input")
    return b.cumsum(x if is_sym(x) else np.asarray(_as_array(x)), int(a(1, "dim")))


def _logsumexp(b, a):
    x, dim = a(0, "input"), a(1, "dim")
    dims = [int(d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    return b.reduce_log_sum_exp(x, dims or None, bool(a(2, "keepdim", False)))


def _gelu(b, a):
    return b.gelu(a(0, "input"), a(1, "approximate", "none"))


def _divide(b, a):
    """True division; ``rounding_mode`` "floor" / "trunc" (and ``//``) round to an integer, a discontinuous
    function of the input, which no MILP of relumilp's kinds represents."""
    mode = "floor" if a.op.name == "floor_divide" else a.kwargs.get("rounding_mode", a.args[2] if len(a.args) > 2 else None)
    if mode is not None:
        raise UnsupportedOperatorError(f"division with rounding_mode={mode!r} ({a.op.where})", ["true division"],
                                       "rounding to an integer is not continuous in the input")
    return b.div(a(0, "input"), a(1, "other"))


def _softmax(b, a):
    """softmax / log_softmax along ``dim`` (a dtype argument changes nothing in float64)."""
    x, dim = a(0, "input"), a(1, "dim", None)
    if dim is None:  # torch's legacy implicit dim: 0 for 0-, 1- and 3-D inputs, else 1
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return b.softmax(x, int(dim), log=a.op.name.lstrip("_").startswith("log"))


def _rms_norm(b, a):
    """rms_norm over the trailing ``normalized_shape`` dims, then the optional weight; ``eps`` None is the
    float32 machine epsilon, as torch uses for a float32 input."""
    x, shape, weight, eps = a(0, "input"), a(1, "normalized_shape"), a(2, "weight", None), a(3, "eps", None)
    count = len(shape) if isinstance(shape, (list, tuple, torch.Size)) else 1
    eps = float(torch.finfo(torch.float32).eps) if eps is None else _scalar(eps)
    y = b.rms_norm(x, list(range(x.ndim - count, x.ndim)), eps)
    return y if weight is None else b.mul(y, weight)


def _layer_norm(b, a):
    """layer_norm over the trailing ``normalized_shape`` dims, then the optional weight and bias;
    ``native_layer_norm`` (torch.export) also gives the mean and the inverse deviation."""
    x, shape = a(0, "input"), a(1, "normalized_shape")
    count = len(shape) if isinstance(shape, (list, tuple, torch.Size)) else 1
    y, mean, inverse = b.normalize(x, list(range(x.ndim - count, x.ndim)), _scalar(a(4, "eps", 1e-5)), True)
    weight, bias = a(2, "weight", None), a(3, "bias", None)
    y = y if weight is None else b.mul(y, weight)
    y = y if bias is None else b.add(y, bias)
    return (y, mean, inverse) if a.op.name == "native_layer_norm" else y


def _per_channel(b, y, value, ndim: int, combine):
    """``combine(y, value)`` with a per-channel ``value`` (C,) laid out along axis 1; None leaves ``y``."""
    if value is None:
        return y
    value = b.const(value, "the affine parameter")
    return combine(y, value.reshape((value.size,) + (1,) * (ndim - 2)))


def _group_norm(b, a):
    """group_norm: each sample's channels in ``num_groups`` groups, each group normalised over its channels and
    positions, then per-channel weight and bias. ``native_group_norm`` (torch.export) also gives the mean and
    inverse deviation per group."""
    x = a(0, "input")
    native = a.op.name == "native_group_norm"
    groups = int(a(6, "group") if native else a(1, "num_groups"))
    weight, bias = (a(1, "weight", None), a(2, "bias", None)) if native else (a(2, "weight", None), a(3, "bias", None))
    eps = _scalar(a(7, "eps") if native else a(4, "eps", 1e-5))
    y, mean, inverse = b.group_norm(x, groups, eps)
    y = _per_channel(b, _per_channel(b, y, weight, x.ndim, b.mul), bias, x.ndim, b.add)
    return (y, mean, inverse) if native else y


def _instance_norm(b, a):
    """instance_norm: with the input's statistics, each sample's channel normalised over its positions (then
    weight and bias); with running statistics (``use_input_stats=False``), as batch norm."""
    x = a(0, "input")
    if a.op.call is not None and not inspect.isfunction(a.op.call):  # ATen (torch.export, TorchScript) order
        weight, bias, mean, var = a(1, "weight", None), a(2, "bias", None), a(3, "running_mean", None), a(4, "running_var", None)
    else:  # F.instance_norm's order
        mean, var, weight, bias = a(1, "running_mean", None), a(2, "running_var", None), a(3, "weight", None), a(4, "bias", None)
    eps = _scalar(a(7, "eps", 1e-5))
    if not a(5, "use_input_stats", True):
        return b.batch_norm(x, mean, var, weight, bias, eps)
    y = b.normalize(x, list(range(2, x.ndim)), eps)
    return _per_channel(b, _per_channel(b, y, weight, x.ndim, b.mul), bias, x.ndim, b.add)


def _variance(b, a):
    """var / std over ``dim`` (all when absent) with ``correction`` (or ``unbiased``), ``keepdim``."""
    x, dim = a(0, "input"), a(1, "dim", None)
    unbiased = a.kwargs.get("unbiased", True)
    if isinstance(dim, bool):  # the var(input, unbiased) form: over everything
        dim, unbiased = None, dim
    elif len(a.args) > 2 and isinstance(a.args[2], bool):  # var(input, dim, unbiased, keepdim)
        unbiased = a.args[2]
    dims = list(range(x.ndim)) if dim is None or (isinstance(dim, (list, tuple)) and not dim) else \
        [int(d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    correction = a.kwargs.get("correction")
    if correction is None and len(a.args) > 2 and not isinstance(a.args[2], bool) and a.args[2] is not None:
        correction = a.args[2]  # ATen's var.correction(input, dim, correction, keepdim) (TorchScript)
    correction = (1 if unbiased else 0) if correction is None else float(correction)
    keep = bool(a.kwargs.get("keepdim", a.args[3] if len(a.args) > 3 and isinstance(a.args[3], bool) else False))
    count = math.prod(x.shape[d] for d in b.axes(dims, x.ndim))
    if count - float(correction) <= 0:
        raise b.invalid(f"variance of {count} values with correction {correction}")
    centred = b.sub(x, b.reduce_sum(x, dims, keepdims=True, mean=True))
    var = b.mul(b.reduce_sum(b.square(centred), dims, keepdims=keep), 1.0 / (count - float(correction)))
    return b.sqrt(var) if a.op.name == "std" else var


def _local_response_norm(b, a):
    """torch's local response normalisation: the channel window ``c - size // 2 .. c + (size - 1) // 2``."""
    size = int(a(1, "size"))
    return b.local_response_norm(a(0, "input"), size, _scalar(a(2, "alpha", 1e-4)), _scalar(a(3, "beta", 0.75)),
                                 _scalar(a(4, "k", 1.0)), size // 2, (size - 1) // 2)


def _pow(b, a):
    x, exponent = a(0, "input"), a(1, "exponent")
    if not is_sym(x):
        raise UnsupportedOperatorError(f"pow of a constant base to a network value ({a.op.where})",
                                       ["pow of a network value to a constant exponent"])
    return b.power(x, exponent)


def _dropout(b, a):
    x = a(0, "input")
    return (x, None) if a.op.name == "native_dropout" else x


def _prelu(b, a):
    """torch's PReLU: a weight of 1 or C values, C along dimension 1 (dimension 0 for 1-D input)."""
    x, weight = a(0, "input"), b.const(a(1, "weight"), "the PReLU weight").reshape(-1)
    if weight.size > 1:
        axis = 1 if x.ndim >= 2 else 0
        if x.ndim == 0 or x.shape[axis] != weight.size:
            raise b.invalid(f"PReLU with {weight.size} parameters applied to shape {x.shape}")
        layout = [1] * x.ndim
        layout[axis] = weight.size
        weight = weight.reshape(layout)
    return b.prelu(x, weight)


def _per_dim(value, d: int) -> list[int]:
    """An int or a sequence of ``d`` ints (torch's window arguments) as a list of ``d`` ints."""
    if isinstance(value, (list, tuple, torch.Size)):
        value = [int(v) for v in value]
        return value * d if len(value) == 1 else value
    return [int(value)] * d


def _conv_pads(b, padding, kernel, dilation) -> list[int]:
    """torch conv ``padding`` (ints, ``'valid'`` or ``'same'``) as ONNX-style ``[begins..., ends...]``."""
    d = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return [0] * (2 * d)
        if padding != "same":
            raise b.invalid(f"unknown convolution padding {padding!r}")
        total = [dilation[i] * (kernel[i] - 1) for i in range(d)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    pads = _per_dim(padding, d)
    return pads + pads


def _conv(b, a):
    """conv1d/2d/3d, convolution and _convolution (transposed or not)."""
    x, weight, bias = a(0, "input"), a(1, "weight"), a(2, "bias", None)
    if is_sym(weight) or is_sym(bias):
        raise b._nonlinear("convolution")
    d = weight.ndim - 2
    kernel = list(weight.shape[2:])
    if a.op.name in ("convolution", "_convolution"):
        stride, padding, dilation = a(3, "stride"), a(4, "padding"), a(5, "dilation")
        transposed, output_padding, groups = a(6, "transposed"), a(7, "output_padding"), a(8, "groups")
    elif a.op.name.startswith("conv_transpose"):
        stride, padding, output_padding = a(3, "stride", 1), a(4, "padding", 0), a(5, "output_padding", 0)
        groups, dilation, transposed = a(6, "groups", 1), a(7, "dilation", 1), True
    else:
        stride, padding, dilation, groups = a(3, "stride", 1), a(4, "padding", 0), a(5, "dilation", 1), a(6, "groups", 1)
        transposed, output_padding = False, 0
    stride, dilation = _per_dim(stride, d), _per_dim(dilation, d)
    if transposed:
        pads = _per_dim(padding, d) * 2
        return b.conv_transpose(x, weight, bias, stride, pads, dilation, int(groups), _per_dim(output_padding, d))
    return b.conv(x, weight, bias, stride, _conv_pads(b, padding, kernel, dilation), dilation, int(groups))


def _avg_pool(b, a):
    """avg_pool1d/2d/3d (floor or ceil mode)."""
    x = a(0, "input")
    d = {"avg_pool1d": 1, "avg_pool2d": 2, "avg_pool3d": 3}[a.op.name]
    kernel = _per_dim(a(1, "kernel_size"), d)
    stride = a(2, "stride", None)
    stride = kernel if stride in (None, [], ()) else _per_dim(stride, d)
    pads = _per_dim(a(3, "padding", 0), d)
    ceil_mode, include = a(4, "ceil_mode", False), a(5, "count_include_pad", True)
    divisor = a(6, "divisor_override", None) if d > 1 else None
    if divisor is not None:
        raise b.unsupported("average pooling with divisor_override", ["average pooling without divisor_override"])
    return b.avg_pool(x, kernel, stride, pads + pads, bool(include), ceil_mode=bool(ceil_mode))


def _max_pool(b, a):
    """max_pool1d/2d (floor or ceil mode, no indices)."""
    x = a(0, "input")
    d = 1 if "1d" in a.op.name else 2
    kernel = _per_dim(a(1, "kernel_size"), d)
    stride = a(2, "stride", None)
    stride = kernel if stride in (None, [], ()) else _per_dim(stride, d)
    pads, dilation = _per_dim(a(3, "padding", 0), d), _per_dim(a(4, "dilation", 1), d)
    if a(6, "return_indices", False):
        raise b.unsupported("max pooling with return_indices", ["max pooling without indices"])
    return b.max_pool(x, kernel, stride, pads + pads, dilation, bool(a(5, "ceil_mode", False)))


def _pad(b, a):
    """F.pad / constant_pad_nd: torch lists (before, after) pairs from the last dimension backwards."""
    x, pad = a(0, "input"), [int(p) for p in a(1, "pad")]
    if a.op.name == "constant_pad_nd":
        mode, value = "constant", a(2, "value", 0.0)
    else:
        mode, value = a(2, "mode", "constant"), a(3, "value", None)
    modes = {"constant": "constant", "replicate": "edge", "reflect": "reflect", "circular": "wrap"}
    if mode not in modes:
        raise b.unsupported(f"padding mode {mode!r}", list(modes))
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return b.pad(x, widths, modes[mode], 0.0 if value is None else float(value))


def _squeeze(b, a):
    x, dim = a(0, "input"), a(1, "dim", None)
    dims = range(x.ndim) if dim is None else _dims(b, x, list(dim) if isinstance(dim, (list, tuple)) else [dim])
    return b.reshape(x, [n for i, n in enumerate(x.shape) if not (i in dims and n == 1)])


def _unsqueeze(b, a):
    return _unsqueezed(b, a(0, "input"), int(a(1, "dim")))


def _split(b, a):
    """split (a part size or a list of sizes) and split_with_sizes along ``dim``."""
    x = a.kwargs["tensor"] if "tensor" in a.kwargs else a(0, "input")  # torch.split binds by name
    key = next((k for k in ("split_size_or_sections", "split_size", "split_sizes") if k in a.kwargs), "split_size")
    sizes, dim = a(1, key), a(2, "dim", 0)
    length = x.shape[b.axis(dim, x.ndim)]
    if not isinstance(sizes, (list, tuple)):
        sizes = [int(sizes)] * (length // int(sizes)) + ([length % int(sizes)] if length % int(sizes) else [])
    return b.split(x, [int(s) for s in sizes], dim)


def _reduce(b, a):
    """sum / mean / amax / amin over ``dim`` (all when absent), ``keepdim``; a dtype argument changes nothing
    in float64."""
    x, dim = a(0, "input"), a(1, "dim", None)
    dims = None if dim is None or (isinstance(dim, (list, tuple)) and not dim) else \
        [int(d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
    keep = bool(a(2, "keepdim", False))
    if a.op.name in ("amax", "amin"):
        return b.reduce_max(x, dims, keep, minimum=a.op.name == "amin")
    return b.reduce_sum(x, dims, keep, mean=a.op.name == "mean")


class _ArgIndices:
    """The indices output of ``max`` / ``min`` along a dimension: an argmax, a discontinuous integer function
    of the input that no MILP of relumilp's kinds represents. Loading succeeds while nothing reads it."""


#: what ``max`` / ``min`` along a dimension return (torch's ``torch.return_types.max``)
_Extremum = namedtuple("_Extremum", "values indices")


def _extremum(b, a):
    """``torch.max`` / ``torch.min``: of the whole tensor; of two tensors (``maximum`` / ``minimum``); or
    along ``dim`` (``keepdim``), which gives ``(values, indices)``: the values as ReduceMax's exact ReLU
    trees, the indices only as long as nothing reads them."""
    x = a(0, "input")
    minimum = a.op.name == "min"
    second = a(1, "other", None) if "other" in a.kwargs else a(1, "dim", None)
    if is_sym(second) or isinstance(second, torch.Tensor):
        return b.minimum(x, second) if minimum else b.maximum(x, second)
    if second is None:
        return b.reduce_max(x, None, False, minimum=minimum)
    values = b.reduce_max(x, [int(second)], bool(a(2, "keepdim", False)), minimum=minimum)
    return _Extremum(values, _ArgIndices())


def _expand(b, a):
    """Tensor.expand: ``-1`` keeps a dimension; new leading dimensions are prepended."""
    x, first = a(0, "input"), a(1, "size")
    # a list (ATen, with TorchScript's trailing ``implicit`` flag) or sizes as separate arguments
    sizes = [int(d) for d in first] if isinstance(first, (list, tuple, torch.Size)) else _shape_arg(a, "size")
    lead = len(sizes) - x.ndim
    shape = [x.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes)]
    return b.expand(x, shape)


_INTERPOLATION = {  # torch mode -> (ONNX Resize mode, coordinate transform, nearest rounding)
    "nearest": ("nearest", "asymmetric", "floor"),
    "nearest-exact": ("nearest", "tf_half_pixel_for_nn", "floor"),
    "linear": ("linear", "half_pixel", "floor"),
    "bilinear": ("linear", "half_pixel", "floor"),
    "trilinear": ("linear", "half_pixel", "floor"),
    "bicubic": ("cubic", "half_pixel", "floor"),  # torch does not clamp the coordinate for cubic, nor does ONNX
}


def _resized(b, x, size, scale_factor, mode: str, align_corners, recompute: bool = False):
    """torch's interpolation of the spatial dimensions (all after batch and channel) as a builder resize.

    torch reads the input at ``dst * in / out`` (nearest), ``(dst + 1/2) in / out - 1/2`` clamped at 0
    (linear) or ``dst (in - 1) / (out - 1)`` (``align_corners``), with ``1 / scale_factor`` for
    ``in / out`` when a scale factor is given (and not recomputed): ONNX Resize's transforms with the
    scale ``out / in`` or ``scale_factor``. The output size is ``size``, else ``floor(in * scale_factor)``.
    """
    if mode == "area":  # torch computes it as adaptive average pooling to the output size
        if size is None:
            factors = scale_factor if isinstance(scale_factor, (list, tuple)) else [scale_factor] * (x.ndim - 2)
            size = [int(math.floor(n * float(f))) for n, f in zip(x.shape[2:], factors)]
        return b.adaptive_avg_pool(x, size if isinstance(size, (list, tuple, torch.Size)) else [size] * (x.ndim - 2))
    if mode not in _INTERPOLATION:
        raise b.unsupported(f"interpolation mode {mode!r}", list(_INTERPOLATION) + ["area"])
    resize_mode, transform, rounding = _INTERPOLATION[mode]
    if align_corners and resize_mode in ("linear", "cubic"):
        transform = "align_corners"
    d = x.ndim - 2
    if d < 1:
        raise b.invalid(f"interpolation needs a batch and a channel dimension, got shape {x.shape}")
    spatial = x.shape[2:]
    per_dim = lambda v: list(v) if isinstance(v, (list, tuple, torch.Size)) else [v] * d  # noqa: E731
    factors = [None] * d if scale_factor is None or recompute else per_dim(scale_factor)
    if size is not None:
        out = [int(v) for v in per_dim(size)]
    elif scale_factor is not None and None not in per_dim(scale_factor):
        out = [int(math.floor(n * float(f))) for n, f in zip(spatial, per_dim(scale_factor))]
    else:
        raise b.invalid("interpolation needs a size or a scale factor")
    scales = [o / n if f is None else float(f) for f, o, n in zip(factors, out, spatial)]
    return b.resize(x, list(x.shape[:2]) + out, [1.0, 1.0] + scales, resize_mode, transform, rounding)


def _adaptive_pool(b, a):
    """adaptive_avg_pool1d/2d and adaptive_max_pool1d/2d to ``output_size`` (an int or one entry per
    dimension, None keeps one). ATen's max pools also return indices, which nothing may read."""
    x, size = a(0, "input"), a(1, "output_size")
    d = 1 if "1d" in a.op.name else 2
    size = list(size) if isinstance(size, (list, tuple, torch.Size)) else [size] * d
    if "avg" in a.op.name:
        return b.adaptive_avg_pool(x, size)
    if a(2, "return_indices", False):
        raise b.unsupported("adaptive max pooling with return_indices", ["adaptive max pooling without indices"])
    y = b.adaptive_max_pool(x, size)
    aten = a.op.call is not None and not inspect.isfunction(a.op.call)  # torch.export, TorchScript
    return (y, None) if aten else y


def _interpolate(b, a):
    """F.interpolate (and nn.Upsample)."""
    if a(6, "antialias", False):
        raise b.unsupported("interpolation with antialias", ["antialias=False"])
    return _resized(b, a(0, "input"), a(1, "size", None), a(2, "scale_factor", None), a(3, "mode", "nearest"),
                    a(4, "align_corners", None), bool(a(5, "recompute_scale_factor", None)))


def _upsample(b, a):
    """ATen upsample_nearest/linear/bilinear/trilinear/bicubic (TorchScript, torch.export): ``(input, output_size,
    [align_corners,] scale_factors)`` (``.vec``) or ``(input, output_size, [align_corners,] scale_1, ...)``."""
    name = a.op.name
    mode = ("nearest-exact" if "nearest_exact" in name else "nearest" if "nearest" in name
            else "bilinear" if "bilinear" in name else "trilinear" if "trilinear" in name
            else "bicubic" if "bicubic" in name else "linear")
    rest = list(a.args[1:]) + list(a.kwargs.values())
    size = rest.pop(0) if rest else None
    align = rest.pop(0) if mode in ("linear", "bilinear", "trilinear", "bicubic") and rest else None
    scales = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
    if not scales or all(v is None for v in scales):
        scales = None
    return _resized(b, a(0, "input"), size, scales, mode, align)


def _index_select(b, a):
    x, dim, index = a(0, "input"), a(1, "dim"), a(2, "index")
    return b.take(x, torch.as_tensor(index).cpu().numpy().astype("int64"), dim)


_HANDLERS: dict[str, Callable[[NetworkBuilder, _Args], Any]] = {
    "linear": lambda b, a: b.linear(a(0, "input"), a(1, "weight"), a(2, "bias", None)),
    "addmm": lambda b, a: b.add(
        b.scaled(b.matmul(a(1, "mat1"), a(2, "mat2")), a(4, "alpha", 1)), b.scaled(a(0, "input"), a(3, "beta", 1))
    ),
    "matmul": lambda b, a: b.matmul(a(0, "input"), a(1, "other")),
    "add": lambda b, a: b.add(a(0, "input"), b.scaled(a(1, "other"), a(2, "alpha", 1))),
    "sub": lambda b, a: b.sub(a(0, "input"), b.scaled(a(1, "other"), a(2, "alpha", 1))),
    "rsub": lambda b, a: b.sub(a(1, "other"), b.scaled(a(0, "input"), a(2, "alpha", 1))),
    "mul": lambda b, a: b.mul(a(0, "input"), a(1, "other")),
    "div": _divide,
    "floor_divide": _divide,
    "neg": lambda b, a: b.neg(a(0, "input")),
    "sign": lambda b, a: b.sign(a(0, "input")),
    "expand_as": lambda b, a: b.expand(a(0, "input"), list(a(1, "other").shape)),
    "relu": lambda b, a: b.relu(a(0, "input")),
    "sigmoid": lambda b, a: b.smooth(a(0, "input"), "sigmoid"),
    "tanh": lambda b, a: b.smooth(a(0, "input"), "tanh"),
    "silu": lambda b, a: b.smooth(a(0, "input"), "silu"),
    "softplus": _softplus,
    "elu": _elu,
    "selu": lambda b, a: b.selu(a(0, "input")),
    "celu": lambda b, a: b.celu(a(0, "input"), _scalar(a(1, "alpha", 1.0))),
    "erf": lambda b, a: b.smooth(a(0, "input"), "erf"),
    "special_erf": lambda b, a: b.smooth(a(0, "input"), "erf"),
    "erfc": lambda b, a: b.sub(1.0, b.smooth(a(0, "input"), "erf")),
    "special_erfc": lambda b, a: b.sub(1.0, b.smooth(a(0, "input"), "erf")),
    "softsign": lambda b, a: b.smooth(a(0, "input"), "softsign"),
    "mish": lambda b, a: b.mish(a(0, "input")),
    "tanhshrink": lambda b, a: b.tanh_shrink(a(0, "input")),
    "log_sigmoid": lambda b, a: b.log_sigmoid(a(0, "input")),
    "logsigmoid": lambda b, a: b.log_sigmoid(a(0, "input")),
    "log_sigmoid_forward": lambda b, a: (b.log_sigmoid(a(0, "input")), None),
    "softmin": lambda b, a: _softmax(b, _Args(a.op, (b.neg(a(0, "input")),) + tuple(a.args[1:]),
                                              {k: v for k, v in a.kwargs.items() if k not in ("input", "self")})),
    "softshrink": lambda b, a: b.shrink(a(0, "input"), _scalar(a(1, "lambd", 0.5))),
    "hardshrink": lambda b, a: b.shrink(a(0, "input"), _scalar(a(1, "lambd", 0.5)), 0.0),
    "lp_pool1d": _lp_pool,
    "lp_pool2d": _lp_pool,
    "normalize": _normalize,
    "linalg_vector_norm": _vector_norm,
    "norm": _vector_norm,
    "einsum": _einsum,
    "flip": _flip,
    "roll": _roll,
    "narrow": _narrow,
    "chunk": _chunk,
    "stack": _stack,
    "movedim": _movedim,
    "moveaxis": _movedim,
    "unflatten": _unflatten,
    "channel_shuffle": _channel_shuffle,
    "native_channel_shuffle": _channel_shuffle,
    "diff": _diff,
    "addcmul": lambda b, a: b.add(a(0, "input"), b.scaled(b.mul(a(1, "tensor1"), a(2, "tensor2")), a(3, "value", 1))),
    "addcdiv": lambda b, a: b.add(a(0, "input"), b.scaled(b.div(a(1, "tensor1"), a(2, "tensor2")), a(3, "value", 1))),
    "lerp": lambda b, a: b.add(a(0, "input"), b.mul(b.sub(a(1, "end"), a(0, "input")), _as_array(a(2, "weight")))),
    "threshold": _threshold,
    "rrelu": _rrelu,
    "glu": _glu,
    "scaled_dot_product_attention": _attention,
    "bilinear": _bilinear,
    "gather": _gather_dim,
    "to": _to,
    "_assert_tensor_metadata": lambda b, a: None,  # torch.export's check before a dtype conversion
    "gt": lambda b, a: b.compare(a(0, "input"), _as_array(a(1, "other")), "gt"),
    "ge": lambda b, a: b.compare(a(0, "input"), _as_array(a(1, "other")), "ge"),
    "lt": lambda b, a: b.compare(a(0, "input"), _as_array(a(1, "other")), "lt"),
    "le": lambda b, a: b.compare(a(0, "input"), _as_array(a(1, "other")), "le"),
    "logical_not": lambda b, a: b.negate(a(0, "input")),
    "bitwise_not": lambda b, a: b.negate(a(0, "input")),
    "invert": lambda b, a: b.negate(a(0, "input")),
    "copy": lambda b, a: _filled(b, a(0, "input"), a(1, "src")),
    "clone": lambda b, a: a(0, "input"),
    "fill": lambda b, a: _filled(b, a(0, "input"), a(1, "value")),
    "zero": lambda b, a: _filled(b, a(0, "input"), 0.0),
    "zeros_like": lambda b, a: _filled(b, a(0, "input"), 0.0),
    "ones_like": lambda b, a: _filled(b, a(0, "input"), 1.0),
    "full_like": lambda b, a: _filled(b, a(0, "input"), a(1, "fill_value")),
    "scatter": _scatter_dim,
    "slice_scatter": _slice_scatter,
    "select_scatter": _select_scatter,
    "index_put": _index_put,
    "cumsum": _cumsum,
    "logsumexp": _logsumexp,
    "gelu": _gelu,
    "soft_exponential": lambda b, a: b.smooth(a(0, "input"), "soft_exponential", alpha=_scalar(a(1, "alpha"))),
    "repu": lambda b, a: b.smooth(a(0, "input"), "repu", p=int(a(1, "p"))),
    "leaky_relu": lambda b, a: b.leaky_relu(a(0, "input"), _scalar(a(1, "negative_slope", 0.01))),
    "hardtanh": lambda b, a: b.clip(a(0, "input"), _scalar(a(1, "min_val", -1.0)), _scalar(a(2, "max_val", 1.0))),
    "relu6": lambda b, a: b.clip(a(0, "input"), 0.0, 6.0),
    "clamp": _clamp,
    "clamp_min": lambda b, a: b.clip(a(0, "input"), _scalar(a(1, "min")), None),
    "clamp_max": lambda b, a: b.clip(a(0, "input"), None, _scalar(a(1, "max"))),
    "hardsigmoid": lambda b, a: b.hard_sigmoid(a(0, "input"), 1.0 / 6.0, 0.5),
    "abs": lambda b, a: b.abs(a(0, "input")),
    "prelu": _prelu,
    "_prelu_kernel": lambda b, a: b.prelu(a(0, "input"), a(1, "weight")),  # weight already laid out
    "batch_norm": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm,
    "_native_batch_norm_legit_functional": _batch_norm,
    "flatten": lambda b, a: b.flatten(a(0, "input"), a(1, "start_dim", 0), a(2, "end_dim", -1)),
    "view": _view,
    "cat": lambda b, a: b.concat(a(0, "tensors"), a(1, "dim", 0)),
    "t": _transpose,
    "transpose": _transpose,
    "permute": _transpose,
    "slice": _slice,
    "dropout": _dropout,
    "native_dropout": _dropout,
    "identity": lambda b, a: a(0, "input"),
    "size": _size,
    "sym_size": _size,
    "dim": lambda b, a: a(0, "input").ndim,
    "getattr": _getattr,
    "getitem": _getitem,
    "list": lambda b, a: list(a.args),
    "unpack": lambda b, a: tuple(a(0, "input")),
    "conv1d": _conv,
    "conv2d": _conv,
    "conv3d": _conv,
    "convolution": _conv,
    "_convolution": _conv,
    "conv_transpose1d": _conv,
    "conv_transpose2d": _conv,
    "avg_pool1d": _avg_pool,
    "avg_pool2d": _avg_pool,
    "avg_pool3d": _avg_pool,
    "rms_norm": _rms_norm,
    "pad": _pad,
    "constant_pad_nd": _pad,
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "split": _split,
    "max_pool1d": _max_pool,
    "max_pool2d": _max_pool,
    "maximum": lambda b, a: b.maximum(a(0, "input"), a(1, "other")),
    "minimum": lambda b, a: b.minimum(a(0, "input"), a(1, "other")),
    "split_with_sizes": _split,
    "index_select": _index_select,
    "interpolate": _interpolate,
    "upsample_nearest1d": _upsample,
    "upsample_nearest2d": _upsample,
    "upsample_nearest3d": _upsample,
    "_upsample_nearest_exact1d": _upsample,
    "_upsample_nearest_exact2d": _upsample,
    "upsample_linear1d": _upsample,
    "upsample_bilinear2d": _upsample,
    "upsample_trilinear3d": _upsample,
    "upsample_bicubic2d": _upsample,
    "hardswish": lambda b, a: b.hard_swish(a(0, "input")),
    "pixel_shuffle": lambda b, a: b.depth_to_space(a(0, "input"), int(a(1, "upscale_factor")), "CRD"),
    "pixel_unshuffle": lambda b, a: b.depth_to_space(a(0, "input"), int(a(1, "downscale_factor")), "CRD",
                                                     inverse=True),
    "adaptive_avg_pool1d": _adaptive_pool,
    "adaptive_avg_pool2d": _adaptive_pool,
    "_adaptive_avg_pool2d": _adaptive_pool,
    "adaptive_max_pool1d": _adaptive_pool,
    "adaptive_max_pool2d": _adaptive_pool,
    "sum": _reduce,
    "mean": _reduce,
    "amax": _reduce,
    "amin": _reduce,
    "select": _select,
    "max": _extremum,
    "min": _extremum,
    "expand": _expand,
    "repeat": lambda b, a: b.tile(a(0, "input"), _shape_arg(a, "repeats")),
    "where": lambda b, a: b.select(a(0, "condition"), a(1, "input"), a(2, "other")),
    "bmm": lambda b, a: b.matmul(a(0, "input"), a(1, "mat2")),
    "pow": _pow,
    "square": lambda b, a: b.square(a(0, "input")),
    "sqrt": lambda b, a: b.sqrt(a(0, "input")),
    "rsqrt": lambda b, a: b.power(a(0, "input"), -0.5),
    "exp": lambda b, a: b.exp(a(0, "input")),
    "log": lambda b, a: b.log(a(0, "input")),
    "reciprocal": lambda b, a: b.reciprocal(a(0, "input")),
    "softmax": _softmax,
    "_softmax": _softmax,
    "log_softmax": _softmax,
    "_log_softmax": _softmax,
    "layer_norm": _layer_norm,
    "native_layer_norm": _layer_norm,
    "local_response_norm": _local_response_norm,
    "group_norm": _group_norm,
    "native_group_norm": _group_norm,
    "instance_norm": _instance_norm,
    "var": _variance,
    "std": _variance,
    "log1p": lambda b, a: b.log(b.add(a(0, "input"), 1.0)),
    "expm1": lambda b, a: b.sub(b.exp(a(0, "input")), 1.0),
    "exp2": lambda b, a: b.exp(b.mul(a(0, "input"), math.log(2.0))),
    "log2": lambda b, a: b.mul(b.log(a(0, "input")), 1.0 / math.log(2.0)),
    "log10": lambda b, a: b.mul(b.log(a(0, "input")), 1.0 / math.log(10.0)),
    "sinh": lambda b, a: b.mul(b.sub(b.exp(a(0, "input")), b.exp(b.neg(a(0, "input")))), 0.5),
    "cosh": lambda b, a: b.mul(b.add(b.exp(a(0, "input")), b.exp(b.neg(a(0, "input")))), 0.5),
}

SUPPORTED_OPS = (
    "linear", "addmm", "matmul/mm/bmm", "add", "sub", "mul/div", "pow (constant exponent)", "square", "sqrt",
    "rsqrt", "exp", "log", "log1p", "reciprocal", "erf", "erfc", "selu", "celu", "mish", "softsign",
    "tanhshrink", "logsigmoid", "softmin", "softshrink", "lp_pool1d/2d", "normalize",
    "norm/linalg.vector_norm (p 1, 2, inf)", "einsum", "cumsum", "logsumexp", "softmax", "log_softmax", "layer_norm", "group_norm",
    "instance_norm", "local_response_norm", "var", "std", "relu",
    "leaky_relu", "relu6", "hardtanh/clamp (to [a, b] or [0, inf))", "hardsigmoid", "prelu", "abs",
    "maximum/minimum (of two values, or with a constant)", "sigmoid", "tanh", "silu", "softplus", "elu", "gelu",
    "batch_norm (eval)", "dropout", "interpolate/upsample (nearest, nearest-exact, (bi/tri)linear, bicubic, area)",
    "adaptive_avg/max_pool1d/2d", "pixel_shuffle/unshuffle", "hardswish",
    "x * sigmoid(x) (silu)", "x * hardsigmoid(x), x * relu6(x + 3) (hardswish)", "sum/mean/amax/amin (over dims)",
    "max/min (of all, of two values, or the values along dim)",
    "expand", "repeat", "where (constant condition)",
    "flatten", "view/reshape", "cat", "t/transpose/permute", "slicing", "conv1d/conv2d (convolution)",
    "conv_transpose1d/2d", "avg_pool1d/2d", "pad/constant_pad_nd", "squeeze/unsqueeze", "split",
    "index_select", "max_pool1d/2d",
)  # fmt: skip


def _unsupported_op(op: _Op) -> UnsupportedOperatorError:
    layer = op.where.partition("in layer '")[2].partition("'")[0]  # set for torch.fx / torch.export nodes
    hint = smooth_hint(op.name) or smooth_hint(layer)
    return UnsupportedOperatorError(f"operation '{op.name}' ({op.where})", SUPPORTED_OPS, hint)


# -- the interpreter ------------------------------------------------------------------------------------


def _resolve(value, env):
    if isinstance(value, _Ref):
        return env[value.key]
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, env) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, env) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(_resolve(value.start, env), _resolve(value.stop, env), _resolve(value.step, env))
    return value


def _on_numbers(op: _Op, args: tuple, kwargs: dict):
    """A TorchScript ATen op that failed on constants, called again the way its schema wants: sizes as 0-d
    tensors (``aten::div(embed_dim, num_heads, "trunc")``) and trailing positional arguments bound to the
    schema's keyword-only parameters (div's rounding mode, expand's ``implicit``), for each overload; a
    number again when every operand was one. None when no overload accepts them."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    tensors = tuple(torch.as_tensor(v) if number(v) else v for v in args)
    packet = op.call
    overloads = [getattr(packet, name) for name in packet.overloads()] if hasattr(packet, "overloads") else []
    for overload in overloads:
        schema = overload._schema
        positional = [p for p in schema.arguments if not p.kwarg_only]
        keyword = [p.name for p in schema.arguments if p.kwarg_only]
        if len(args) - len(positional) > len(keyword):
            continue
        bound = dict(kwargs, **dict(zip(keyword, args[len(positional):])))
        for candidate in (args[:len(positional)], tensors[:len(positional)]):
            try:
                result = overload(*candidate, **bound)
            except Exception:
                continue
            if isinstance(result, torch.Tensor) and result.numel() == 1 and args and all(number(v) for v in args):
                return result.item()
            return result
    return None


def _evaluate(op: _Op, args: tuple, kwargs: dict, b: NetworkBuilder):
    # before constant evaluation: Python would compare the indices' placeholder (``i == 0``) as an object
    unpacking = op.name in ("getitem", "getattr") and args and isinstance(args[0], _Extremum)
    if not unpacking and contains((args, kwargs), _ArgIndices):
        raise UnsupportedOperatorError(
            f"use of the indices of max / min along a dimension (an argmax) by '{op.name}' ({op.where})",
            SUPPORTED_OPS, "an argmax is not continuous in the input; use the values only")
    if op.name not in ("mul", "where", "identity", "to", "logical_not", "bitwise_not", "invert",
                       "_assert_tensor_metadata") \
            and contains((args, kwargs), Step):
        raise UnsupportedOperatorError(f"use of a comparison by '{op.name}' ({op.where})", ["where", "mul"], STEP_HINT)
    if op.name != "mul" and contains((args, kwargs), SignOf):
        raise UnsupportedOperatorError(f"use of sign by '{op.name}' ({op.where})", ["sign(x) * |x|"], SIGN_HINT)
    if op.call is not None and not contains_sym((args, kwargs)):
        try:
            return op.call(*args, **kwargs)
        except Exception as exc:  # a constant computation torch itself rejects
            result = _on_numbers(op, args, kwargs)
            if result is not None:
                return result
            message = f"cannot evaluate '{op.name}' on constants ({op.where}): {one_line(exc)}"
            raise InvalidNetworkError(message) from None
    handler = _HANDLERS.get(op.name)
    if handler is None:
        raise _unsupported_op(op)
    return handler(b, _Args(op, args, kwargs))


def _run(ops: list[_Op], env: dict, b: NetworkBuilder, views: dict | None = None, same: dict | None = None) -> None:
    """Evaluate ``ops`` in order into ``env``. ``views`` maps a slicing view's key to its root's key and the
    root positions of its elements, so that an in-place write into the view is scattered into the root;
    ``same`` maps an in-place op's output to the tensor it wrote (and a tensor to every such key)."""
    views = {} if views is None else views
    same = {} if same is None else same
    for op in ops:
        b.where = op.where
        args, kwargs = _resolve(op.args, env), _resolve(op.kwargs, env)
        if op.blocks:
            taken_ops, returns = op.blocks[0 if args[0] else 1]
            _run(taken_ops, env, b, views, same)
            env.update(zip(op.outputs, _resolve(returns, env)))
            continue
        value = _evaluate(op, args, kwargs, b)
        target = _mutated(op)
        if target is not None:
            _write(op, target, value, env, b, views, same)
            continue
        if op.name in _VIEWS and len(op.outputs) == 1 and args and is_sym(args[0]) and is_sym(value):
            _track_view(op, args, kwargs, value, env, views)
        if len(op.outputs) == 1:
            env[op.outputs[0]] = value
        elif op.outputs:
            for key, item in zip(op.outputs, value):
                env[key] = item


def _write(op: _Op, target: str, value, env: dict, b: NetworkBuilder, views: dict, same: dict) -> None:
    """An in-place op's result: every name of the written tensor (its key, and the outputs of earlier in-place
    ops on it) takes the new value, and a write into a slicing view is scattered into its root."""
    target = same.get(target, target)
    for key in op.outputs:
        same[key] = target
    for key in [target] + [k for k, t in same.items() if t == target]:
        env[key] = value
    if target in views:
        root, positions = views[target]
        if positions is None:
            raise UnsupportedOperatorError(
                f"in-place operation '{op.name}_' ({op.where}) on a view whose elements relumilp cannot locate in "
                "its source", SUPPORTED_OPS, "write it out of place, or pass a torch.export program")
        env[root] = b.scatter(env[root], positions.cpu().numpy().astype(np.int64), value)


def _track_view(op: _Op, args: tuple, kwargs: dict, value, env: dict, views: dict) -> None:
    """Record a view's root and the root positions of its elements (the same op applied to its source's
    positions; a root's are ``0 .. n - 1`` in its shape), or None where they are not known (not a slicing
    view, or the op does not apply to an integer tensor): a write through such a view is refused."""
    source = op.args[0].key if isinstance(op.args[0], _Ref) else None
    if source is None or not _writable_view(op):
        if source is not None:
            views[op.outputs[0]] = (views.get(source, (source, None))[0], None)
        return
    if source in views:
        root, positions = views[source]
    else:
        root, positions = source, torch.arange(math.prod(env[source].shape)).reshape(env[source].shape)
    picked = None
    if positions is not None:
        try:
            picked = op.call(positions, *args[1:], **kwargs)
        except Exception:
            picked = None
    if not (isinstance(picked, torch.Tensor) and tuple(picked.shape) == tuple(value.shape)):
        picked = None
    views[op.outputs[0]] = (root, picked)


def _first_linear_width(ops: list[_Op]) -> int | None:
    """``in_features`` of the first linear layer, which fixes the input size when none is given (None when
    a convolution or pooling comes first: its input has a spatial shape no linear layer tells)."""
    constants = {}
    for op in ops:
        if "conv" in op.name or "pool" in op.name:
            return None
        if op.name == "constant":
            constants[op.outputs[0]] = op.call()
        elif op.name == "linear":
            weight = _Args(op, op.args, op.kwargs)(1, "weight", None)
            weight = constants.get(weight.key) if isinstance(weight, _Ref) else weight
            # the first linear layer, or none: a later one's width is not the input's
            return int(weight.shape[1]) if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None
        elif op.call is not None and len(op.outputs) == 1 and all(k in constants for k in _refs_in((op.args, op.kwargs))):
            try:  # a weight computed from parameters (weight * mask, w / w.norm())
                constants[op.outputs[0]] = op.call(*_resolve(op.args, constants), **_resolve(op.kwargs, constants))
            except Exception:
                pass
    return None


def _build(program: _Program, input_shape, name: str | None) -> Network:
    if input_shape is None:
        input_shape = program.input_shape
    if input_shape is None:
        width = _first_linear_width(program.ops)
        if width is None:
            raise InvalidNetworkError(
                f"cannot tell the input shape of {program.name!r} (it does not start with a Linear layer); "
                "pass input_shape, e.g. input_shape=(3, 32, 32) for one 3-channel 32x32 image"
            )
        input_shape = (width,)
    elif isinstance(input_shape, int):
        input_shape = (input_shape,)
    _check_mutations(program.ops, program.output)
    b = NetworkBuilder()
    env = {program.input_key: b.input(input_shape, batched=program.batched)}
    try:
        _run(program.ops, env, b)
    except InvalidNetworkError as exc:
        if program.baked_batch and "reshape" in str(exc):  # a batch size the export baked into a reshape
            raise InvalidNetworkError(f"{one_line(exc)}; the program was exported with a batch of "
                                      f"{program.baked_batch}: export it with a batch of 1 or a dynamic batch "
                                      "dimension") from None
        raise
    b.where = f"the output of {program.name!r}"
    return b.finish(_resolve(program.output, env), name or program.name)


def from_torch(module, input_shape=None, name: str | None = None) -> Network:
    """Convert a PyTorch network to the IR.

    ``module`` is an ``nn.Module`` (traced with torch.fx; ``nn.Sequential`` of any nesting), a
    TorchScript module (``torch.jit.script``/``trace``/``load``) or a ``torch.export`` ExportedProgram.
    ``input_shape`` is the per-sample input shape (no batch dimension); by default it is taken from the
    exported program, or from the first Linear layer's ``in_features``. Batch norm and dropout use
    inference semantics (running statistics; dropout is the identity); a module in training mode that
    has such layers gets a warning, since its outputs differ from the compiled network's.
    """
    _warn_if_training(module)
    _refuse_meta(module)
    if isinstance(module, torch.export.ExportedProgram):
        program = _export_program(module)
    elif isinstance(module, torch.jit.ScriptModule):
        program = _script_program(module)
    elif isinstance(module, nn.Module):
        program = _fx_program(module)
    else:
        raise InvalidNetworkError(
            f"expected a torch.nn.Module, TorchScript module or ExportedProgram, got {type(module).__name__}"
        )
    net = _build(program, input_shape, name)
    _check_against_source(module, program, net)
    return net


#: the compiled network must match the source's own forward pass within this, relative to ``1 + |output|`` per
#: element. Compared with a float64 copy of the source (the IR computes in float64), only summation order
#: differs (about 1e-13): a dropped hook, a masked weight or a misread operation shows far above it
SOURCE_TOLERANCE_FLOAT64 = 1e-5
#: the same for a source that runs only in float32: it differs from the float64 IR by about 1e-6 relative, and
#: ill-conditioned networks amplify that, so only a gross misreading is caught
SOURCE_TOLERANCE = 5e-2
#: a float64 copy is made of modules up to this many parameter and buffer entries (160 MB in float64)
TWIN_MAX_ENTRIES = 20_000_000


def _float64_twin(runner, dtype):
    """A float64 copy of a module source in eval mode (the source itself if it is float64 already), for the
    tight comparison; None when there is none (a TorchScript module, a copy that cannot be made, a module
    too large to copy: :data:`TWIN_MAX_ENTRIES`)."""
    if not isinstance(runner, nn.Module) or isinstance(runner, torch.jit.ScriptModule):
        return None
    if dtype == torch.float64:
        return runner
    if sum(t.numel() for t in list(runner.parameters()) + list(runner.buffers())) > TWIN_MAX_ENTRIES:
        return None
    try:
        import copy

        return copy.deepcopy(runner).double().eval()
    except Exception:  # parameters that cannot be copied or converted: the float32 comparison only
        return None


def _check_against_source(source, program: _Program, net: Network, samples: int = 2) -> None:
    """Run the source itself (in eval mode, on ``samples`` random inputs) and refuse an IR whose forward pass
    differs: a conversion that misread the model (a tracer that lost an in-place ``+=``, a subclass's own
    forward, a hook) must never compile into a different network. The source runs in float64 where a float64
    copy of it runs (:data:`SOURCE_TOLERANCE_FLOAT64`), else as it is (:data:`SOURCE_TOLERANCE`). Skipped when
    the source cannot run on such an input or gives no single tensor."""
    # the IR is one sample's function: the source runs one sample per call (a static export, its own batch)
    batch = (program.baked_batch or 1) if program.batched else 1
    shape = net.input_shape
    runner = source.module() if isinstance(source, torch.export.ExportedProgram) else source
    switch = isinstance(runner, nn.Module) and runner is source  # an export's module has no modes
    dtype = next((t.dtype for t in list(runner.parameters()) + list(runner.buffers()) if t.is_floating_point()),
                 torch.float32) if isinstance(runner, nn.Module) else torch.float32
    twin = _float64_twin(runner, dtype)

    def run(model, x, model_dtype):
        modes = _modes(model) if switch and model is runner else {}
        try:
            if modes:
                model.eval()  # every layer, also a train-mode one under an eval-mode root (MC dropout)
            with torch.no_grad():
                tensor = torch.as_tensor(x, dtype=model_dtype)
                reference = model(tensor.reshape((batch, *shape) if program.batched else tuple(shape)))
        except Exception:  # a source that needs other inputs, or refuses this one: nothing to compare
            return None
        finally:
            _restore_modes(modes)
        if isinstance(reference, (list, tuple)) and len(reference) == 1:
            reference = reference[0]
        if not isinstance(reference, torch.Tensor) or reference.numel() != batch * net.output_size:
            return None
        return reference.detach().to(torch.float64).cpu().numpy().reshape(batch, -1)

    for seed in range(samples):
        x = np.random.default_rng(seed).normal(size=(batch, math.prod(shape)))
        expected, tolerance = (run(twin, x, torch.float64), SOURCE_TOLERANCE_FLOAT64) if twin is not None else (None, 0)
        if expected is None:
            expected, tolerance = run(runner, x, dtype), SOURCE_TOLERANCE
        if expected is None:
            return
        with np.errstate(all="ignore"):
            got = net.forward(x)
        finite = np.isfinite(expected)  # where the float32 source overflowed (exp beyond 88) nothing is compared
        with np.errstate(invalid="ignore"):
            gap = np.where(~finite | (got == expected), 0.0, np.abs(got - expected))
            ratio = np.where(np.isnan(gap), np.inf, gap / (1.0 + np.abs(np.where(finite, expected, 0.0))))
        if ratio.size and float(np.max(ratio)) > tolerance:
            i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
            raise InvalidNetworkError(
                f"the compiled network differs from the model's own forward pass on a random input: output "
                f"{int(i[1])} is {got[i]:.6g} against {expected[i]:.6g}: the conversion misread an operation (an "
                "in-place update traced by torch.fx is a known cause); pass a torch.export program, and please "
                "report the model")


#: layers whose output depends on the training flag (by class name: TorchScript modules keep it only there)
_MODE_DEPENDENT = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
                   "BatchNorm1d", "BatchNorm2d", "BatchNorm3d")


def _modes(module: nn.Module) -> dict:
    """The training flag of ``module`` and each of its layers (``train()`` / ``eval()`` set them all alike)."""
    return {sub: sub.training for sub in module.modules()}


def _restore_modes(modes: dict) -> None:
    for sub, training in modes.items():
        sub.training = training


def _refuse_meta(module) -> None:
    """A model on the meta device has shapes but no weights: nothing to compile."""
    if isinstance(module, torch.export.ExportedProgram):
        tensors = list(module.state_dict.values()) + list(module.constants.values())
    elif isinstance(module, nn.Module):
        tensors = list(module.parameters()) + list(module.buffers())
    else:
        return
    if any(isinstance(t, torch.Tensor) and t.is_meta for t in tensors):
        raise InvalidNetworkError("the model's weights are on the meta device (no values); load or initialise "
                                  "them first, e.g. model.to_empty(device='cpu') and load_state_dict")


def _warn_if_training(module) -> None:
    """Warn when ``module`` is in training mode and has a layer that behaves differently in eval mode."""
    if not isinstance(module, nn.Module):
        return
    for name, sub in module.named_modules():
        kind = getattr(sub, "original_name", type(sub).__name__)
        mode_dependent = kind in _MODE_DEPENDENT or isinstance(sub, (nn.modules.dropout._DropoutNd,
                                                                     nn.modules.batchnorm._BatchNorm))
        if sub.training and mode_dependent:
            warnings.warn(
                f"the model is in training mode (layer {name or 'root'}: {kind}); it is compiled with eval-mode "
                "semantics (dropout off, batch norm with running statistics); call model.eval() first",
                UserWarning, stacklevel=3)
            return


# -- torch.fx -------------------------------------------------------------------------------------------

_LEAF_TYPES = (
    nn.Linear, nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.Hardsigmoid, nn.PReLU, nn.Flatten, nn.Identity,
    nn.modules.dropout._DropoutNd,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d, nn.Upsample, nn.Hardswish, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.PixelShuffle, nn.PixelUnshuffle,
    nn.Softmax, nn.LogSoftmax, nn.LayerNorm, nn.LocalResponseNorm, nn.GroupNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.RMSNorm, nn.Softmax2d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d,
    nn.Softshrink, nn.Hardshrink, nn.LPPool1d, nn.LPPool2d,
)  # fmt: skip


#: torch layers traced through to the functional call they make (F.pad, F.glu, ...), which the converter reads
_TRACED_THROUGH = (nn.Bilinear, nn.Threshold, nn.RReLU, nn.GLU, nn.Unflatten, nn.ChannelShuffle,
                   nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
                   nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d,
                   nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d)


class _Tracer(torch.fx.Tracer):
    """Keeps supported layers (and their subclasses, e.g. ClippedReLU) and smooth custom layers as leaves;
    padding layers, and convolutions that pad other than with zeros, are traced through to their ``F.pad``."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _TRACED_THROUGH):
            return False
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.padding_mode != "zeros":
            return False  # its forward pads (F.pad, reflect / replicate / circular) and then convolves unpadded
        if isinstance(m, _LEAF_TYPES) and not _own_forward(m):
            return True  # a supported layer, or a subclass that only configures it (ClippedReLU)
        # relumilp's training layers by name (a user's copy gets the retraining hint); a user's own GELU, Mish,
        # ... is traced through its forward like any other module
        return type(m).__name__.lower() in _NAMED_LEAVES or super().is_leaf_module(m, qualname)


#: custom smooth layers kept as leaves by class name (relumilp.train.modules'), read by ``_smooth_layer_op``
_NAMED_LEAVES = ("softexponential", "repu")


def _own_forward(m: nn.Module) -> bool:
    """Whether ``m``'s class (a subclass of a supported layer) defines its own ``forward`` outside torch: then its
    forward is traced, never replaced by the base layer's (a masked Linear, a shifted ReLU)."""
    owner = next(c for c in type(m).__mro__ if "forward" in vars(c))
    return not owner.__module__.startswith("torch.")


def _layer_op(module: nn.Module, target: str) -> tuple[str, tuple, str]:
    """A leaf layer as the equivalent functional op: (name, arguments after the input, description)."""
    kind = type(module).__name__
    where = f"layer '{kind}' (module {target})"
    if isinstance(module, nn.Linear):
        return "linear", (module.weight, module.bias), where
    if isinstance(module, nn.ReLU):
        return "relu", (), where
    if isinstance(module, nn.LeakyReLU):
        return "leaky_relu", (module.negative_slope,), where
    if isinstance(module, nn.Hardtanh):
        return "hardtanh", (module.min_val, module.max_val), where
    if isinstance(module, nn.Hardsigmoid):
        return "hardsigmoid", (), where
    if isinstance(module, nn.PReLU):
        return "prelu", (module.weight,), where
    if isinstance(module, nn.Flatten):
        return "flatten", (module.start_dim, module.end_dim), where
    smooth = _smooth_layer_op(module, where)
    if smooth is not None:
        return smooth
    if isinstance(module, (nn.Identity, nn.modules.dropout._DropoutNd)):
        return "identity", (), where
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        name = f"conv_transpose{len(module.kernel_size)}d"
        return name, (module.weight, module.bias, module.stride, module.padding, module.output_padding,
                      module.groups, module.dilation), where
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return f"conv{len(module.kernel_size)}d", (module.weight, module.bias, module.stride, module.padding,
                                                   module.dilation, module.groups), where
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        d = 1 if isinstance(module, nn.AvgPool1d) else 2
        extra = (getattr(module, "divisor_override", None),) if d == 2 else ()
        return f"avg_pool{d}d", (module.kernel_size, module.stride, module.padding, module.ceil_mode,
                                 module.count_include_pad) + extra, where
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        if module.return_indices:
            raise UnsupportedOperatorError(f"layer '{kind}' with return_indices (module {target})", SUPPORTED_LAYERS)
        d = 1 if isinstance(module, nn.MaxPool1d) else 2
        return f"max_pool{d}d", (module.kernel_size, module.stride, module.padding, module.dilation,
                                 module.ceil_mode), where
    if isinstance(module, nn.Upsample):
        return "interpolate", (module.size, module.scale_factor, module.mode, module.align_corners,
                               module.recompute_scale_factor), where
    if isinstance(module, nn.Hardswish):
        return "hardswish", (), where
    if isinstance(module, (nn.Softshrink, nn.Hardshrink)):
        return type(module).__name__.lower(), (module.lambd,), where
    if isinstance(module, (nn.LPPool1d, nn.LPPool2d)):
        d = 1 if isinstance(module, nn.LPPool1d) else 2
        return f"lp_pool{d}d", (module.norm_type, module.kernel_size, module.stride, module.ceil_mode), where
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return ("softmax" if isinstance(module, nn.Softmax) else "log_softmax"), (module.dim,), where
    if isinstance(module, nn.RMSNorm):
        return "rms_norm", (module.normalized_shape, module.weight, module.eps), where
    if isinstance(module, (nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d)):  # its forward branches on rank
        return "pad", (module.padding, "circular"), where
    if isinstance(module, nn.Softmax2d):
        return "softmax", (-3,), where
    if isinstance(module, nn.LayerNorm):
        return "layer_norm", (module.normalized_shape, module.weight, module.bias, module.eps), where
    if isinstance(module, nn.GroupNorm):
        return "group_norm", (module.num_groups, module.weight, module.bias, module.eps), where
    if isinstance(module, (nn.InstanceNorm1d, nn.InstanceNorm2d)):
        stats = not module.track_running_stats or module.running_mean is None
        return "instance_norm", (module.running_mean, module.running_var, module.weight, module.bias, stats,
                                 module.momentum, module.eps), where
    if isinstance(module, nn.LocalResponseNorm):
        return "local_response_norm", (module.size, module.alpha, module.beta, module.k), where
    if isinstance(module, nn.PixelShuffle):
        return "pixel_shuffle", (module.upscale_factor,), where
    if isinstance(module, nn.PixelUnshuffle):
        return "pixel_unshuffle", (module.downscale_factor,), where
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        d = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
        return f"adaptive_avg_pool{d}d", (module.output_size,), where
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
        d = 1 if isinstance(module, nn.AdaptiveMaxPool1d) else 2
        return f"adaptive_max_pool{d}d", (module.output_size, module.return_indices), where
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        stats = (module.weight, module.bias, module.running_mean, module.running_var)
        return "batch_norm", stats + (False, 0.0, module.eps, False), where
    hint = smooth_hint(kind) or ("torch.export.export(model, (example,)) with a batch of 1 decomposes layers into "
                                 "operations, which may all be supported: pass the exported program")
    raise UnsupportedOperatorError(f"layer '{kind}' (module {target})", SUPPORTED_LAYERS, hint)


def _smooth_layer_op(module: nn.Module, where: str):
    """A smooth activation layer as its functional op, or None for any other layer."""
    from ..train.modules import RePU, SoftExponential

    simple = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu", nn.SELU: "selu", nn.Mish: "mish",
              nn.Softsign: "softsign", nn.Tanhshrink: "tanhshrink", nn.LogSigmoid: "log_sigmoid"}
    for cls, name in simple.items():
        if isinstance(module, cls):
            return name, (), where
    if isinstance(module, nn.Softplus):
        return "softplus", (module.beta, module.threshold), where
    if isinstance(module, nn.ELU):
        return "elu", (module.alpha,), where
    if isinstance(module, nn.CELU):
        return "celu", (module.alpha,), where
    if isinstance(module, nn.Softmin):
        return "softmin", (module.dim,), where
    if isinstance(module, nn.GELU):
        return "gelu", (module.approximate,), where
    if isinstance(module, RePU):
        return "repu", (module.p,), where
    if isinstance(module, SoftExponential):
        if module.alpha.numel() != 1 or module.min_arg != 1e-12:
            raise UnsupportedOperatorError(f"{where}: SoftExponential with alpha of shape {tuple(module.alpha.shape)}, "
                                           f"min_arg {module.min_arg:g}", ["one scalar alpha, min_arg 1e-12"])
        return "soft_exponential", (float(module.alpha.detach()),), where
    return None


def _node_where(node) -> str:
    """Where an fx node comes from, by the module stack torch.fx and torch.export record."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, kind = list(stack.values())[-1]
        kind = kind.rsplit(".", 1)[-1] if isinstance(kind, str) else getattr(kind, "__name__", kind)
        return f"node {node.name} in layer '{kind}' (module {path})"
    return f"node {node.name}"


def _target_name(target) -> str:
    """An fx call target's ATen-style name (OpOverloads such as ``aten.linear.default`` included)."""
    if isinstance(target, torch._ops.OpOverload):
        return _canonical(target._opname)
    return _canonical(getattr(target, "__name__", str(target)))


def _fx_refs(value):
    return torch.fx.node.map_arg(value, lambda n: _Ref(n.name))


def _fx_function_args(target, args, kwargs):
    """Python functions (torch.nn.functional) are bound by parameter name, as their order can differ from ATen's."""
    if inspect.isfunction(target):
        try:
            signature = inspect.signature(target)
            bound = signature.bind(*args, **kwargs)
        except (TypeError, ValueError):
            return args, kwargs
        if any(p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()):
            return args, kwargs  # a dispatch wrapper (F.max_pool2d): its real parameters are not named
        bound.apply_defaults()
        return (), dict(bound.arguments)
    return args, kwargs


def _refuse_hooks(module: nn.Module) -> None:
    """torch.fx calls ``forward`` itself, so forward (pre-)hooks never run in its trace: a hooked model (also
    ``torch.nn.utils.weight_norm`` / ``spectral_norm``, which recompute the weight in a pre-hook) would compile
    into a different network, by less than the source check may notice."""
    from torch.nn.modules import module as torch_module

    hooked = [name or "root" for name, sub in module.named_modules() if sub._forward_hooks or sub._forward_pre_hooks]
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        hooked.insert(0, "global (nn.modules.module.register_module_forward_hook)")
    if hooked:
        raise UnsupportedOperatorError(
            f"forward hooks on module {', '.join(hooked[:3])}{', ...' if len(hooked) > 3 else ''} (torch.fx does not "
            "run them)", SUPPORTED_LAYERS,
            "torch.export.export(model, (example,)) and torch.jit.trace run them: pass either; "
            "torch.nn.utils.weight_norm / spectral_norm are such hooks (or use torch.nn.utils.parametrizations)")


def _fx_program(module: nn.Module) -> _Program:
    _refuse_hooks(module)
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:
        raise UnsupportedOperatorError(
            f"module '{type(module).__name__}' (torch.fx cannot trace it: {one_line(exc)})",
            SUPPORTED_LAYERS,
            "use an nn.Sequential of supported layers, or pass the model saved with torch.jit.script or torch.export",
        ) from None
    ref = _fx_refs
    ops, inputs, output = [], [], None
    for node in graph.nodes:
        if node.op == "placeholder" and node.args:  # an optional argument: its default is a constant
            ops.append(_constant(node.name, node.args[0], f"argument {node.name}"))
        elif node.op == "placeholder":
            inputs.append(node.name)
        elif node.op == "get_attr":
            ops.append(_constant(node.name, operator.attrgetter(node.target)(module), f"attribute {node.target}"))
        elif node.op == "call_module":
            layer = module.get_submodule(node.target)
            name, extra, where = _layer_op(layer, node.target)
            source = (tuple(node.args) + tuple(node.kwargs.values()))[0]
            ops.append(_Op(name, (ref(source),) + extra, {}, (node.name,), None, where,
                           mutates=getattr(layer, "inplace", False) is True))
        elif node.op == "call_function":
            args, kwargs = _fx_function_args(node.target, ref(node.args), ref(node.kwargs))
            raw = getattr(node.target, "__name__", str(node.target))
            ops.append(_Op(_target_name(node.target), tuple(args), dict(kwargs), (node.name,), node.target,
                           _node_where(node), mutates=_inplace(raw, kwargs)))
        elif node.op == "call_method":
            call = lambda obj, *a, _m=node.target, **k: getattr(obj, _m)(*a, **k)  # noqa: E731
            ops.append(_Op(_canonical(node.target), ref(node.args), ref(node.kwargs), (node.name,), call,
                           _node_where(node), mutates=_inplace(node.target, node.kwargs)))
        elif node.op == "output":
            output = ref(node.args[0])
    if len(inputs) != 1:
        raise InvalidNetworkError(f"the model's forward takes {len(inputs)} inputs; relumilp needs exactly one")
    return _Program(ops, inputs[0], output, type(module).__name__)


# -- TorchScript ---------------------------------------------------------------------------------------


_PYTHON_CALLS = {"list": lambda *a: list(a), "unpack": tuple, "getitem": operator.getitem}


def _script_refs(values) -> tuple:
    return tuple(_Ref(v.debugName()) for v in values)


def _script_call(kind: str):
    namespace, _, opname = kind.partition("::")
    try:
        return getattr(getattr(torch.ops, namespace), opname)
    except (AttributeError, RuntimeError):
        return None


def _script_where(node) -> str:
    """The op and, when known, the module it came from (trace scope, or the frozen parameters' names)."""
    module = node.scopeName().rsplit("/", 1)[-1].replace("__module.", "")
    if not module:
        owners = {
            v.debugName()[len("self.") :].rsplit(".", 1)[0]
            for v in node.inputs()
            if v.node().kind() == "prim::Constant" and v.debugName().startswith("self.") and "." in v.debugName()[5:]
        }
        module = ", ".join(sorted(owners))
    return f"TorchScript {node.kind()}" + (f" in module {module}" if module else "")


def _script_ops(block) -> list[_Op]:
    ops = []
    for node in block.nodes():
        kind = node.kind()
        outputs = tuple(v.debugName() for v in node.outputs())
        args = _script_refs(node.inputs())
        where = _script_where(node)
        if kind == "prim::Constant":
            ops.append(_constant(outputs[0], node.output().toIValue(), where))
        elif kind == "prim::If":
            blocks = tuple((_script_ops(blk), _script_refs(blk.returnNode().inputs())) for blk in node.blocks())
            ops.append(_Op("if", args, {}, outputs, None, where, blocks))
        elif kind == "prim::RaiseException":
            ops.append(_Op("raise", args, {}, outputs, _raise_script_exception, where))
        elif kind in ("prim::Loop", "prim::CallMethod", "prim::CallFunction", "prim::GetAttr"):
            hint = "loops and unresolved calls cannot be compiled"
            raise UnsupportedOperatorError(f"TorchScript construct {kind} ({where})", SUPPORTED_OPS, hint)
        else:
            raw = kind.partition("::")[2]
            name = _canonical(raw)
            call = _PYTHON_CALLS.get(name) or _script_call(kind)
            ops.append(_Op(name, args, {}, outputs, call, where, mutates=_inplace(raw)))
    return ops


def _raise_script_exception(message, *_):
    raise InvalidNetworkError(f"the TorchScript model raised an error for this input shape: {message}")


def _script_program(module: torch.jit.ScriptModule) -> _Program:
    modes = _modes(module)
    try:
        module.eval()
        # Freezing inlines submodules and parameters as constants and resolves the training flag.
        frozen = torch.jit.freeze(module, optimize_numerics=False)
    except Exception as exc:
        raise UnsupportedOperatorError(
            f"TorchScript module (cannot freeze it: {one_line(exc)})", SUPPORTED_LAYERS
        ) from None
    finally:
        _restore_modes(modes)
    graph = frozen.graph
    values = [v for v in graph.inputs() if not isinstance(v.type(), torch.ClassType)]
    arguments = [a for a in frozen.forward.schema.arguments if not isinstance(a.type, torch.ClassType)]
    # Optional arguments keep their defaults; the others are the network input.
    defaults = [
        _constant(v.debugName(), a.default_value, f"argument {a.name}")
        for v, a in zip(values, arguments) if a.has_default_value()
    ]  # fmt: skip
    inputs = [v for v, a in zip(values, arguments) if not a.has_default_value()]
    if len(inputs) != 1:
        raise InvalidNetworkError(f"the TorchScript model takes {len(inputs)} inputs; relumilp needs exactly one")
    outputs = [_Ref(v.debugName()) for v in graph.outputs()]
    name = getattr(module, "original_name", type(module).__name__)
    output = outputs[0] if len(outputs) == 1 else outputs
    return _Program(defaults + _script_ops(graph), inputs[0].debugName(), output, name)


# -- torch.export -----------------------------------------------------------------------------------------


def _export_program(exported) -> _Program:
    from torch.export.graph_signature import InputKind, OutputKind

    if any(isinstance(n.target, torch._ops.OpOverload) and n.target._schema.is_mutable
           for n in exported.graph_module.graph.nodes if n.op == "call_function"):
        # an indexed assignment (x[:, 0] = y) exports as copy_ into a view: functionalised, slice_scatter
        exported = exported.run_decompositions({})

    signature = exported.graph_signature
    specs = {spec.arg.name: spec for spec in signature.input_specs}
    ops, user_inputs = [], []
    for node in exported.graph_module.graph.nodes:
        spec = specs.get(node.name)
        if node.op == "placeholder" and spec is not None and spec.kind != InputKind.USER_INPUT:
            source = exported.state_dict if spec.target in exported.state_dict else exported.constants
            ops.append(_constant(node.name, source.get(spec.target), f"parameter {spec.target}"))
        elif node.op == "placeholder":
            user_inputs.append(node)
        elif node.op == "call_function":
            args, kwargs = _fx_refs(tuple(node.args)), _fx_refs(dict(node.kwargs))
            mutates = isinstance(node.target, torch._ops.OpOverload) and node.target._schema.is_mutable
            ops.append(_Op(_target_name(node.target), args, kwargs, (node.name,), node.target, _node_where(node),
                           mutates=mutates))
        elif node.op == "output":
            kinds = [spec.kind for spec in signature.output_specs]
            values = [v for v, kind in zip(node.args[0], kinds) if kind == OutputKind.USER_OUTPUT]
            output = [_fx_refs(v) for v in values]
    if len(user_inputs) != 1:
        raise InvalidNetworkError(f"the exported program takes {len(user_inputs)} inputs; relumilp needs exactly one")
    shape, static_batch = _export_input_shape(user_inputs[0])
    batched = len(shape) >= 2
    if batched and static_batch:
        _unbake_batch(ops, static_batch)
    return _Program(
        ops, user_inputs[0].name, output[0] if len(output) == 1 else output, "exported_program",
        tuple(shape[1:]) if batched else tuple(shape), batched, static_batch if batched else None,
    )  # fmt: skip


def _unbake_batch(ops: list[_Op], batch: int) -> None:
    """A static export bakes its example batch size into reshapes; the IR is built for one sample."""
    for op in ops:
        shape = op.args[1] if op.name == "view" and len(op.args) > 1 else None
        if isinstance(shape, (list, tuple)) and list(shape[:1]) == [batch]:
            op.args = (op.args[0], [1, *shape[1:]]) + tuple(op.args[2:])


def _export_input_shape(node) -> tuple[list, int | None]:
    """The example input shape; a symbolic (dynamic) leading dimension is the batch."""
    value = node.meta.get("val")
    if value is None:
        raise InvalidNetworkError("the exported program does not record its input shape; pass input_shape")
    dims = list(value.shape)
    static = [isinstance(d, int) for d in dims]
    if not all(static[1:]):
        raise InvalidNetworkError("the exported program has dynamic feature dimensions; export with a fixed input size")
    batch = int(dims[0]) if dims and static[0] else None
    return [1 if not s else int(d) for d, s in zip(dims, static)], batch if batch and batch > 1 else None


# -- files ---------------------------------------------------------------------------------------------


def _is_state_dict(obj) -> bool:
    """A state dict, or a training checkpoint holding one."""
    return isinstance(obj, dict) and any(isinstance(v, (torch.Tensor, dict)) for v in obj.values())


def load_torchscript(path) -> torch.jit.ScriptModule:
    """Load a TorchScript archive; a state dict or pickled module gets an explanation, never unpickled."""
    try:
        # torch 2.14 deprecates TorchScript with a warning on every load; relumilp reads these archives
        # on purpose (and says so in its docs), so the notice is not the user's to act on
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=Warning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        reason = one_line(exc)
    save = ("save the model with torch.jit.script(model).save(path), torch.export.save or torch.onnx.export, "
            "or pass the nn.Module")
    try:
        # Only to tell a state dict apart: weights_only never runs pickled code. Torch's own warnings
        # (pickle protocol ...) are silenced: the one-line error below says everything needed.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"{path} is a pickled Python object (e.g. torch.save(model)), which relumilp does not "
                             f"unpickle (it could run arbitrary code); {save}") from None
    except Exception:
        obj = None
    if _is_state_dict(obj):
        raise ModelFileError(f"{path} holds a state dict, which has no architecture; {save}")
    raise ModelFileError(f"cannot read {path} as a TorchScript model ({reason}); {save}")


def load_exported(path):
    """Load a ``torch.export`` program saved with ``torch.export.save`` (``.pt2``)."""
    import logging

    # torch.export.load logs the traceback of a failed read as a warning before raising a generic error:
    # keep it off the user's terminal, and report its last line (the cause) instead
    logger, caught = logging.getLogger("torch.export"), []

    class Catch(logging.Handler):
        def emit(self, record):
            caught.append(record)

    handlers, propagate = logger.handlers[:], logger.propagate  # torch installs its own handlers there
    logger.handlers, logger.propagate = [Catch()], False
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        causes = [record.exc_info[1] for record in caught if record.exc_info and record.exc_info[1] is not None]
        cause = one_line(causes[-1] if causes else exc)
        cause = cause if len(cause) <= 160 else cause[:159] + "…"  # torch appends paragraphs of advice
        raise ModelFileError(f"cannot read {path} as a torch.export program (.pt2): {cause}") from None
    finally:
        logger.handlers, logger.propagate = handlers, propagate
