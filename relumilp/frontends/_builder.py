"""The IR builder every frontend emits into: tensor operations on symbolic values, fused into affine nodes.

A frontend walks its source graph (torch.fx, TorchScript, torch.export, ONNX) in order and calls the
operations here. Each intermediate tensor is a :class:`Sym`: an affine function of IR nodes already
emitted, kept on the tensor's flat (C-order) values with its full shape (batch dimension fixed at 1, so
every reshape, flatten, transpose or concatenation is an exact re-indexing). Affine operations only
compose the pending function; an IR node is emitted when a value must exist as a node -- at an
activation, or the output. So any run of consecutive affine operations (Linear, folded BatchNorm,
normalisation, Flatten, Dropout, residual sums, concatenations) becomes a single :class:`AffineNode`,
and every frontend produces the same IR, with the same node names, for the same network.

The pending functions' matrices are dense or scipy CSR (:mod:`relumilp.matrices`): identities, gathers,
convolutions, pooling, resizing and reductions are built sparse, so no step materialises a dense identity,
and each emitted weight takes the form :func:`relumilp.matrices.tidy` chooses. Maxima (max pooling,
Max / Min, ReduceMax) are exact trees of ReLUs. The activations exporters spell as products of two values
(``x * sigmoid(x)`` is SiLU, ``x * relu6(x + 3) / 6`` HardSwish: :meth:`NetworkBuilder._gated`) are
recognised the same way by every frontend; any other product, quotient, softmax or normalisation is
spelled in one-neuron smooth kinds (square, exp, log, sqrt, reciprocal) and affine maps, so its MILP is a
certified relaxation like sigmoid's.
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np

import scipy.sparse as sp

from .. import matrices
from ..activations import (Abs, Clip, ClippedReLU, HardSigmoid, Identity, PiecewiseLinear, ReLU, Sigmoid,
                           prelu)
from ..errors import InvalidNetworkError, UnsupportedOperatorError
from ..ir import ActivationNode, AffineNode, InputNode, Network, Node


#: integer exponents up to this magnitude are products of squares (valid for any sign of the base; 2 log2 |p|
#: square neurons per element); larger ones are one power neuron of a positive base
MAX_PRODUCT_POWER = 64
#: the longest axis a resize may produce (a sparse map row per position; beyond, a model is not a network)
MAX_RESIZED = 2**24

#: SELU's constants (Klambauer et al. 2017), as torch and ONNX round them
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

SMOOTH = {
    "sigmoid", "tanh", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softmin", "logsigmoid",
    "log_sigmoid", "softsign", "tanhshrink", "hardswish", "erf", "softexponential", "repu",
}  # fmt: skip
"""Lower-cased names of smooth (not piecewise-linear) activations, in torch and ONNX spellings."""

SMOOTH_HINT = (
    "{} is not piecewise-linear, so it cannot be compiled exactly into a MILP; retrain with ReLU, "
    "LeakyReLU or ClippedReLU (relumilp.train.ClippedReLU), or approximate it piecewise-linearly"
)


def smooth_hint(name: str) -> str:
    """The retraining hint for a smooth activation ``name``, or "" for any other operator."""
    return SMOOTH_HINT.format(f"'{name}'") if name.lower().lstrip("_") in SMOOTH else ""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span many lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Sym:
    """A symbolic tensor ``x.flat = sum_n terms[n] @ value(n) + bias``, of shape ``shape``."""

    __slots__ = ("shape", "terms", "bias")

    def __init__(self, shape: Sequence[int], terms: dict[str, np.ndarray], bias: np.ndarray):
        self.shape = tuple(int(d) for d in shape)
        self.terms = terms
        self.bias = bias

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"Sym(shape={self.shape}, over={list(self.terms)})"


def is_sym(value) -> bool:
    return isinstance(value, Sym)


#: one operand's (or the output's) einsum subscripts: ASCII letters around at most one ellipsis
_EINSUM_SUBSCRIPTS = re.compile(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*")


class SignOf:
    """``sign(x)`` of a network value: a discontinuous function, kept only to be multiplied by ``|x|`` (or
    ``relu(|x|)``), which gives ``x`` back -- how torch's lp_pool (and its ONNX export) spells a root of a
    non-negative sum. Any other use is refused (:meth:`NetworkBuilder.mul`, the frontends)."""

    __slots__ = ("value",)

    def __init__(self, value: Sym):
        self.value = value


SIGN_HINT = "sign is not continuous in the input; relumilp only reads sign(x) * |x|, which is x"


class Step:
    """``[value > 0]`` (``above``) or ``[value < 0]`` for a network value: a comparison (``a > b`` is
    ``a - b > 0``), a discontinuous 0/1 function kept only to choose between two values that agree where it
    flips (``where(x > 0, x, 0.1 x)``, ``x * (x > 0)``: :meth:`NetworkBuilder.select`), which is exact and
    continuous. Any other use is refused (the frontends, :meth:`NetworkBuilder.mul`)."""

    __slots__ = ("value", "above")

    def __init__(self, value: Sym, above: bool):
        self.value, self.above = value, above

    @property
    def shape(self):
        return self.value.shape


STEP_HINT = ("a comparison of network values is a step, not continuous in the input; relumilp reads it only "
             "to choose between two values that agree where it flips (where(x > 0, x, 0.1 * x), x * (x > 0))")


def constant_value(x) -> np.ndarray | None:
    """The value of a term-free symbolic tensor (a constant carried as one), else None."""
    return x.bias.reshape(x.shape) if is_sym(x) and not x.terms else None


def _carried(value) -> Sym:
    """A constant computed from network values (``x ** 0``, a softmax over one entry, a product of two
    carried constants), carried as a term-free value: every later operator treats it as the constant it is
    and the frontends do not mistake it for one of the source graph's own tensors."""
    value = np.asarray(value, dtype=np.float64)
    return Sym(value.shape, {}, value.ravel().copy())


def _same_value(x: Sym, y: Sym) -> bool:
    """Whether two symbolic values are the same affine function (same terms, same bias)."""
    if x.shape != y.shape or set(x.terms) != set(y.terms) or not np.array_equal(x.bias, y.bias):
        return False
    for name, matrix in x.terms.items():
        other = y.terms[name]
        if matrix is other:
            continue
        if matrix.shape != other.shape:
            return False
        if matrices.is_sparse(matrix) or matrices.is_sparse(other):
            if (sp.csr_array(matrix) - sp.csr_array(other)).count_nonzero():
                return False
        elif not np.array_equal(matrix, other):
            return False
    return True


def contains(value, kind: type) -> bool:
    """True when ``value`` is, or (in a list, tuple or dict, at any depth) holds, an instance of ``kind``."""
    if isinstance(value, kind):
        return True
    if isinstance(value, (list, tuple)):
        return any(contains(v, kind) for v in value)
    if isinstance(value, dict):
        return any(contains(v, kind) for v in value.values())
    return False


def contains_sym(value) -> bool:
    """True when ``value`` is, or (in a list, tuple or dict) holds, a symbolic tensor (or a sign or step of one)."""
    return contains(value, (Sym, SignOf, Step))


def _sum(a, b):
    """``a + b`` of two pending matrices, in the form :func:`relumilp.matrices.tidy` would choose."""
    if matrices.is_sparse(a) and matrices.is_sparse(b):
        return (a + b).tocsr()
    return np.asarray(a + b) if not (matrices.is_sparse(a) or matrices.is_sparse(b)) else matrices.tidy(a + b)


def _product(a, b):
    """``a @ b`` of a weight and a pending matrix: sparse only when both are (a dense factor gives a dense
    product, which is what a dense layer is)."""
    if matrices.is_identity(b):  # a pending value over a node: the weight itself (the common case)
        return a.tocsr() if matrices.is_sparse(a) else a
    product = a @ b
    return product.tocsr() if matrices.is_sparse(product) else np.asarray(product)


def _divide_rows(m, divisor):
    """``m / divisor[:, None]`` in ``m``'s form (the same division per entry)."""
    if matrices.is_sparse(m):
        out = matrices.canonical(m)
        out.data = out.data / np.repeat(divisor, np.diff(out.indptr))
        return out
    return m / divisor[:, None]


def _cubic_weights(distance, a: float):
    """Keys' cubic convolution kernel (Keys 1981) with coefficient ``a`` at ``|distance|``: ``(a + 2) d^3 -
    (a + 3) d^2 + 1`` within 1, ``a d^3 - 5 a d^2 + 8 a d - 4 a`` within 2, else 0."""
    d = np.abs(distance)
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    return np.where(d <= 1.0, near, np.where(d < 2.0, far, 0.0))


def _resize_axis(n_in: int, n_out: int, scale: float, mode: str, transform: str, nearest_mode: str,
                 cubic_a: float = -0.75, exclude_outside: bool = False):
    """The ``(n_out, n_in)`` CSR matrix of one axis of :meth:`NetworkBuilder.resize` (ONNX Resize's
    coordinate transforms; their "output width" is ``scale * n_in`` as in ONNX, except for
    ``align_corners`` and ``pytorch_half_pixel``, which use ``n_out`` as onnxruntime does)."""
    r = np.arange(n_out, dtype=np.float64)
    if transform == "half_pixel":
        c = (r + 0.5) / scale - 0.5
    elif transform == "pytorch_half_pixel":
        # the spec's (and onnxruntime's) test is on the integer output length; torch's own interpolate,
        # which this mode imitates, has no such case and reads row 0 at 0.5 / scale - 0.5
        c = (r + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    elif transform == "half_pixel_symmetric":
        # ONNX's offset n_in / 2 (1 - n_out / (scale n_in)) in the equal form with fewer roundings: 0.5
        # exactly for n_in 7, n_out 3, scale 0.5, where the spec's form gives 0.5000000000000002 (and
        # nearest_mode "ceil" then picks the wrong input row)
        c = (n_in - n_out / scale) / 2.0 + (r + 0.5) / scale - 0.5
    elif transform == "align_corners":  # the integer output size here, as onnxruntime and torch
        c = r * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(n_out)
    elif transform == "asymmetric":
        c = r / scale
    else:  # tf_half_pixel_for_nn
        c = (r + 0.5) / scale
    if mode == "nearest":
        rounded = {"round_prefer_floor": np.ceil(c - 0.5), "round_prefer_ceil": np.floor(c + 0.5),
                   "floor": np.floor(c), "ceil": np.ceil(c)}[nearest_mode]
        cols = np.clip(rounded, 0, n_in - 1).astype(np.int64)
        return sp.csr_array((np.ones(n_out), (np.arange(n_out), cols)), shape=(n_out, n_in))
    if mode == "cubic":
        # the four inputs around c, read past the edges as the edge values (or, with exclude_outside,
        # dropped and the other weights renormalised), as ONNX's reference and torch's bicubic do
        taps = np.floor(c)[:, None] + np.arange(-1, 3)
        weights = _cubic_weights(c[:, None] - taps, float(cubic_a))
        if exclude_outside:
            weights = np.where((taps < 0) | (taps > n_in - 1), 0.0, weights)
            weights = weights / weights.sum(axis=1, keepdims=True)
        cols = np.clip(taps, 0, n_in - 1).astype(np.int64)
        matrix = sp.csr_array((weights.ravel(), (np.repeat(np.arange(n_out), 4), cols.ravel())), shape=(n_out, n_in))
        matrix.sum_duplicates()
        matrix.eliminate_zeros()
        return matrix
    c = np.clip(c, 0.0, n_in - 1.0)
    low = np.floor(c)
    t = c - low
    low = low.astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    rows = np.concatenate([np.arange(n_out), np.arange(n_out)])
    matrix = sp.csr_array((np.concatenate([1.0 - t, t]), (rows, np.concatenate([low, high]))), shape=(n_out, n_in))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix


class NetworkBuilder:
    """Accumulates IR nodes; frontends set :attr:`where` to the source op being converted (for errors)."""

    def __init__(self):
        self._nodes: list[Node] = []
        self._rank: dict[str, int] = {}
        self._affines = 0
        self._activations = 0
        self._input_shape: tuple[int, ...] = ()
        self._batched = False
        self.where = "the network"

    # -- inputs, constants, errors ------------------------------------------------------------------

    def input(self, shape: Sequence[int], batched: bool = True) -> Sym:
        """The network input of (per-sample) ``shape``; ``batched`` prepends the batch dimension of 1."""
        shape = tuple(int(d) for d in shape)
        if not shape or any(d < 1 for d in shape):
            raise InvalidNetworkError(f"invalid input shape {shape}; give a shape of positive sizes")
        self._input_shape, self._batched = shape, batched
        node = InputNode("input", math.prod(shape))
        self._add(node)
        return self._identity_of(node, ((1,) if batched else ()) + shape)

    def const(self, value, what: str = "a constant") -> np.ndarray:
        """``value`` as a float64 array; non-finite values are reported against the current source op."""
        if isinstance(value, (Step, SignOf)):  # a comparison or sign of a network value used as a number
            hint = STEP_HINT if isinstance(value, Step) else SIGN_HINT
            raise self.unsupported(f"a {'comparison' if isinstance(value, Step) else 'sign'} used as {what}",
                                   ["where(s > 0, a, b)", "x * (x > 0)", "sign(x) * |x|"], hint)
        try:
            array = np.asarray(value.detach().cpu().double().numpy() if hasattr(value, "detach") else value)
            array = array.astype(np.float64)  # a fresh copy, frozen: the IR then keeps it without copying
            array.setflags(write=False)
        except (TypeError, ValueError):
            raise InvalidNetworkError(f"{what} of {self.where} is not numeric: {value!r}") from None
        if not np.all(np.isfinite(array)):
            raise InvalidNetworkError(
                f"{what} of {self.where} contains NaN or infinite values; check the trained weights"
            )
        return array

    def unsupported(self, what: str, supported: Iterable[str], hint: str = "") -> UnsupportedOperatorError:
        return UnsupportedOperatorError(f"{what} ({self.where})", list(supported), hint)

    def axis(self, axis, ndim: int) -> int:
        """``axis`` of a tensor of rank ``ndim`` counted from 0 (a negative one counts from the end, and a scalar
        has axes 0 and -1, as in torch); one out of range is an error, not wrapped around."""
        axis, rank = int(axis), max(int(ndim), 1)
        if not -rank <= axis < rank:
            raise self.invalid(f"axis {axis} is out of range for a tensor of rank {ndim}")
        return axis % rank

    def axes(self, axes, ndim: int) -> list[int]:
        """Sorted :meth:`axis` values (every axis when ``axes`` is None); an axis named twice is an error."""
        chosen = [self.axis(a, ndim) for a in (range(ndim) if axes is None else axes)]
        if len(set(chosen)) != len(chosen):
            raise self.invalid(f"axes {list(axes)} name an axis twice for a tensor of rank {ndim}")
        return sorted(chosen)

    def invalid(self, message: str) -> InvalidNetworkError:
        return InvalidNetworkError(f"{message} ({self.where})")

    # -- node emission ------------------------------------------------------------------------------

    def _add(self, node: Node) -> None:
        self._rank[node.name] = len(self._nodes)
        self._nodes.append(node)

    @staticmethod
    def _identity_of(node: Node, shape) -> Sym:
        return Sym(shape, {node.name: matrices.identity(node.size)}, np.zeros(node.size))

    def node_of(self, x: Sym) -> str:
        """The IR node holding ``x``'s value, emitting one affine node for the pending affine function."""
        if len(x.terms) == 1 and not x.bias.any():
            (name, matrix), = x.terms.items()
            if matrices.is_identity(matrix):
                return name
        if not x.terms:
            raise self.invalid("this value does not depend on the network input")
        inputs = tuple(sorted(x.terms, key=self._rank.__getitem__))
        weights = tuple(matrices.tidy(x.terms[n]) for n in inputs)
        node = AffineNode(f"linear{self._affines}", x.size, inputs, weights, x.bias.copy())
        self._affines += 1
        self._add(node)
        # Later readers of this value then read the new node instead of repeating its function.
        x.terms, x.bias = {node.name: matrices.identity(node.size)}, np.zeros(node.size)
        return node.name

    def _activate(self, x: Sym, activation) -> Sym:
        if not x.terms:  # a constant the builder carries (e.g. a softmax over one entry): evaluated
            return Sym(x.shape, {}, np.asarray(activation.apply(x.bias), dtype=np.float64))
        source = self.node_of(x)
        node = ActivationNode(f"act{self._activations}", x.size, (source,), activation)
        self._activations += 1
        self._add(node)
        return self._identity_of(node, x.shape)

    def finish(self, output, name: str) -> Network:
        """The network computing ``output``; shapes are recorded without the batch dimension."""
        if isinstance(output, (list, tuple)) and len(output) == 1:
            output = output[0]
        if not is_sym(output):
            raise InvalidNetworkError(
                "the network must have exactly one output tensor that depends on its input; "
                f"got {type(output).__name__}"
            )
        out = self.node_of(output)
        shape = output.shape
        if self._batched and len(shape) >= 1 and shape[0] == 1:
            shape = shape[1:]
        return Network(self._nodes, out, self._input_shape, shape or (1,), name=name)

    # -- re-indexing (exact: values are only moved) ------------------------------------------------------

    @staticmethod
    def _gather(x: Sym, index: np.ndarray) -> Sym:
        """``y.flat[i] = x.flat[index.flat[i]]``, of shape ``index.shape``."""
        flat = index.ravel()
        return Sym(index.shape, {n: m[flat] for n, m in x.terms.items()}, x.bias[flat])

    @staticmethod
    def _positions(shape) -> np.ndarray:
        return np.arange(math.prod(shape)).reshape(shape)

    def reshape(self, x: Sym, shape: Sequence[int]) -> Sym:
        """Reshape (one ``-1`` allowed); the flat values are unchanged."""
        shape = [int(d) for d in shape]
        if shape.count(-1) > 1:
            raise self.invalid(f"reshape to {tuple(shape)} has more than one -1")
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            if known == 0 or x.size % known:
                raise self.invalid(f"cannot reshape a tensor of shape {x.shape} to {tuple(shape)}")
            shape[shape.index(-1)] = x.size // known
        if math.prod(shape) != x.size or any(d < 0 for d in shape):
            raise self.invalid(f"cannot reshape a tensor of shape {x.shape} to {tuple(shape)}")
        return Sym(shape, x.terms, x.bias)

    def flatten(self, x: Sym, start: int = 0, end: int = -1) -> Sym:
        """Merge dimensions ``start..end`` (inclusive, negative counts from the end), as torch.flatten."""
        if x.ndim == 0:
            return self.reshape(x, (1,))
        start, end = self.axis(start, x.ndim), self.axis(end, x.ndim)
        if start > end:
            raise self.invalid(f"flatten start_dim {start} is after end_dim {end}")
        return self.reshape(x, x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :])

    def transpose(self, x, perm: Sequence[int] | None = None):
        """Permute dimensions (reverse them when ``perm`` is None), for constants too."""
        if not is_sym(x):
            return np.transpose(np.asarray(x), perm)
        return self._gather(x, np.transpose(self._positions(x.shape), perm))

    def index(self, x: Sym, key) -> Sym:
        """Basic indexing / slicing ``x[key]``."""
        positions = np.asarray(self._positions(x.shape)[key])
        if positions.size == 0:  # the IR has no empty tensors
            raise self.invalid(f"selects no element of a tensor of shape {x.shape}; empty tensors are not supported")
        return self._gather(x, positions)

    def _expand(self, x: Sym, shape) -> Sym:
        if x.shape == tuple(shape):
            return x
        return self._gather(x, np.broadcast_to(self._positions(x.shape), shape))

    def _as_sym(self, value, shape) -> Sym:
        """Broadcast a symbolic or constant value to ``shape``."""
        if is_sym(value):
            return self._expand(value, shape)
        const = self.const(value)
        return Sym(shape, {}, np.broadcast_to(const, shape).astype(np.float64).ravel())

    def concat(self, items: Sequence, axis: int) -> Sym:
        """Concatenate along ``axis`` (constants allowed among the items)."""
        shapes = [tuple(v.shape) if is_sym(v) else np.shape(v) for v in items]
        ndim = len(shapes[0])
        axis = self.axis(axis, ndim)
        if any(len(s) != ndim or s[:axis] + s[axis + 1 :] != shapes[0][:axis] + shapes[0][axis + 1 :] for s in shapes):
            raise self.invalid(f"cannot concatenate shapes {shapes} along axis {axis}")
        syms = [self._as_sym(v, s) for v, s in zip(items, shapes)]
        # Stack all items' flat values, then gather them in concatenated order.
        offsets = np.cumsum([0] + [s.size for s in syms])
        stacked = self._stack(syms)
        index = np.concatenate([self._positions(s.shape) + o for s, o in zip(syms, offsets)], axis=axis)
        return self._gather(stacked, index)

    def _stack(self, syms: Sequence[Sym]) -> Sym:
        names = sorted({n for s in syms for n in s.terms}, key=self._rank.__getitem__)
        offsets = np.cumsum([0] + [s.size for s in syms])
        total = int(offsets[-1])
        parts: dict[str, list] = {name: [] for name in names}
        for s, offset in zip(syms, offsets):
            for name, matrix in s.terms.items():
                parts[name].append((offset, matrix))
        terms = {}
        for name in names:
            width = parts[name][0][1].shape[1]
            if len(parts[name]) == 1 and not matrices.is_sparse(parts[name][0][1]) and len(syms) == 1:
                terms[name] = parts[name][0][1]
                continue
            # one sparse matrix from the nonzeros of every item's block, at the item's row offset
            rows, cols, vals = zip(*((r + offset, c, v) for offset, m in parts[name] for r, c, v in [matrices.triplets(m)]))
            terms[name] = matrices.compact(sp.csr_array(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(total, width)))
        return Sym((sum(s.size for s in syms),), terms, np.concatenate([s.bias for s in syms]))

    # -- affine arithmetic --------------------------------------------------------------------------

    def _broadcast_shape(self, a, b) -> tuple[int, ...]:
        shape_a = a.shape if is_sym(a) else np.shape(a)
        shape_b = b.shape if is_sym(b) else np.shape(b)
        try:
            return tuple(np.broadcast_shapes(shape_a, shape_b))
        except ValueError:
            raise self.invalid(f"shapes {shape_a} and {shape_b} do not broadcast") from None

    def add(self, a, b) -> Sym:
        """``a + b`` (numpy broadcasting); either may be constant."""
        shape = self._broadcast_shape(a, b)
        x, y = self._as_sym(a, shape), self._as_sym(b, shape)
        terms = dict(x.terms)
        for name, matrix in y.terms.items():
            terms[name] = _sum(terms[name], matrix) if name in terms else matrix
        return Sym(shape, terms, x.bias + y.bias)

    def sub(self, a, b) -> Sym:
        return self.add(a, self.neg(b) if is_sym(b) else -self.const(b))

    def scaled(self, value, factor):
        """``value * factor`` for a symbolic or constant value; a factor of None or 1 leaves it as is."""
        if factor is None or float(factor) == 1.0:
            return value
        return self.mul(value, float(factor)) if is_sym(value) else self.const(value) * float(factor)

    def neg(self, x: Sym) -> Sym:
        return Sym(x.shape, {n: -m for n, m in x.terms.items()}, -x.bias)

    def mul(self, a, b) -> Sym:
        """``a * b``: a constant factor scales; two network values make a gated activation ``x * gate(x)``
        (:meth:`_gated`) or a product (:meth:`_product`); ``sign(x) * |x|`` is ``x``."""
        if isinstance(a, Step) or isinstance(b, Step):  # x * (x > 0): a choice between x and 0
            step, other = (a, b) if isinstance(a, Step) else (b, a)
            return self.select(step, other, 0.0)
        if isinstance(a, SignOf) or isinstance(b, SignOf):
            sign, other = (a, b) if isinstance(a, SignOf) else (b, a)
            if not (is_sym(other) and other.shape == sign.value.shape and self._is_magnitude(other, sign.value)):
                raise self.unsupported("Sign", ["sign(x) * |x|"], SIGN_HINT)
            return self._expand(sign.value, self._broadcast_shape(sign.value, other))
        a, b = self._constant_sym(a), self._constant_sym(b)
        if is_sym(a) and is_sym(b):
            return self._gated(a, b) or self._gated(b, a) or self._product(a, b)
        if not is_sym(a) and not is_sym(b):
            return _carried(self.const(a) * self.const(b))
        x, c = (a, b) if is_sym(a) else (b, a)
        shape = self._broadcast_shape(x, c)
        x, scale = self._expand(x, shape), np.broadcast_to(self.const(c), shape).ravel()
        return Sym(shape, {n: matrices.scale(m, rows=scale) for n, m in x.terms.items()}, x.bias * scale)

    def _node_value(self, x: Sym) -> Node | None:
        """The IR node whose value ``x`` is exactly (one identity term, no bias), else None."""
        if len(x.terms) != 1 or x.bias.any():
            return None
        (name, matrix), = x.terms.items()
        return self._nodes[self._rank[name]] if matrices.is_identity(matrix) else None

    def _gated(self, x: Sym, gate: Sym) -> Sym | None:
        """``x * gate`` as one activation when exporters spelled an activation as a product, else None.

        ``x * sigmoid(x)`` is SiLU; ``x * hardsigmoid(x)`` with torch's ``1/6, 1/2`` (compared in float32,
        as ONNX stores it) and ``x * relu6(x + 3)`` (times ``1/6`` later) are HardSwish. The gate's own
        nodes stay in the builder; the network drops them when nothing else reads them.
        """
        source, node = self._node_value(x), self._node_value(gate)
        if not isinstance(node, ActivationNode) or x.shape != gate.shape:
            return None
        act, pre = node.activation, self._nodes[self._rank[node.inputs[0]]]
        if pre is source and isinstance(act, Sigmoid):
            return self.smooth(x, "silu")
        if pre is source and isinstance(act, HardSigmoid) and act.beta == 0.5 \
                and np.float32(act.alpha) == np.float32(1.0 / 6.0):
            return self.hard_swish(x)
        if isinstance(act, ClippedReLU) and act.cap == 6.0 and self._is_shift(pre, x, 3.0):
            return self.mul(self.hard_swish(x), 6.0)
        return None

    def sign(self, x) -> SignOf:
        """``sign(x)``, kept for a later ``* |x|`` (:class:`SignOf`)."""
        return SignOf(x)

    def _is_magnitude(self, value: Sym, x: Sym) -> bool:
        """Whether ``value`` is ``|x|`` or ``relu(|x|)`` (both computed by the builder's own activations)."""
        node = self._node_value(value)
        if isinstance(node, ActivationNode) and isinstance(node.activation, ReLU):
            node = self._nodes[self._rank[node.inputs[0]]]
        if not (isinstance(node, ActivationNode) and isinstance(node.activation, Abs) and node.size == x.size):
            return False
        source = self._nodes[self._rank[node.inputs[0]]]
        return source is self._node_value(x) or self._is_shift(source, x, 0.0)

    @staticmethod
    def _is_shift(node: Node, x: Sym, shift: float) -> bool:
        """Whether affine ``node`` computes exactly ``x + shift`` (``x`` pending or a node's value)."""
        if not isinstance(node, AffineNode) or node.size != x.size:
            return False
        return _same_value(Sym(x.shape, dict(zip(node.inputs, node.weights)), node.bias),
                           Sym(x.shape, x.terms, x.bias + shift))

    def div(self, a, b) -> Sym:
        """``a / b``; a divisor that is a network value is ``a * (1 / b)``, its bounds must be positive."""
        a, b = self._constant_sym(a), self._constant_sym(b)
        if is_sym(b):
            return self.mul(a, self.reciprocal(b))
        if not is_sym(a):
            return _carried(self.const(a) / self.const(b, "the divisor"))
        shape = self._broadcast_shape(a, b)
        x = self._expand(a, shape)
        divisor = np.broadcast_to(self.const(b, "the divisor"), shape).ravel()
        if not np.all(divisor):
            raise self.invalid("division by zero")
        return Sym(shape, {n: _divide_rows(m, divisor) for n, m in x.terms.items()}, x.bias / divisor)

    # -- nonlinear functions of network values, spelled in one-neuron kinds ---------------------------------
    #
    # A product or quotient of two network values, a softmax and a normalisation are not functions of one
    # neuron; they are compiled into affine maps and the one-neuron smooth kinds square, exp, log, sqrt and
    # reciprocal (relumilp.activations.smooth), whose bounds, relaxations and certified MILP bands the rest
    # of relumilp already has. The MILP is then a certified relaxation, as for sigmoid (docs/operators.md).

    @staticmethod
    def _constant_sym(x):
        """A term-free symbolic value (a constant the builder carries as one) as its array; else ``x``."""
        value = constant_value(x)
        return x if value is None else value

    def _product(self, a: Sym, b: Sym) -> Sym:
        """``a * b`` of two network values (broadcasting): ``a^2`` when both are the same value, else the
        polarisation ``((a + b)^2 - (a - b)^2) / 4``, two square neurons per element."""
        shape = self._broadcast_shape(a, b)
        x, y = self._expand(a, shape), self._expand(b, shape)
        if _same_value(x, y):
            return self.square(x)
        return self.mul(self.sub(self.square(self.add(x, y)), self.square(self.sub(x, y))), 0.25)

    def square(self, x: Sym) -> Sym:
        return self.smooth(x, "square")

    def exp(self, x: Sym) -> Sym:
        return self.smooth(x, "exp")

    def log(self, x: Sym) -> Sym:
        """``ln x``; its input's bounds must be positive (checked when bounds are computed)."""
        return self.smooth(x, "log")

    def sqrt(self, x: Sym) -> Sym:
        """``sqrt x``; its input's bounds must be positive (no sandwich exists at 0, where its slope is infinite)."""
        return self.smooth(x, "sqrt")

    def reciprocal(self, x: Sym) -> Sym:
        """``1 / x``; its input's bounds must be positive."""
        return self.smooth(x, "reciprocal")

    def power(self, x: Sym, exponent) -> Sym:
        """``x ** p`` for a constant scalar ``p``: integers from 0 to :data:`MAX_PRODUCT_POWER` by repeated
        products (any sign of ``x``); negative even integers as ``1 / x^-p`` (``x`` away from 0); other
        exponents (``x`` must stay positive) by one ``sqrt`` (``p = 1/2``) or ``power`` neuron (the products'
        loose bounds would take an odd ``x^-p`` below 0 even for a positive ``x``)."""
        exponent = self._constant_sym(exponent)
        if is_sym(exponent):
            raise self.unsupported("Pow with an exponent computed from the input", ["one constant exponent"])
        p = self.const(exponent, "the exponent")
        if p.size != 1 and not np.all(p == p.flat[0]):
            raise self.unsupported("Pow with an exponent that varies over the elements", ["one constant exponent"])
        x = self._expand(x, self._broadcast_shape(x, p))  # an exponent of more dimensions broadcasts the base
        p = float(p.flat[0])
        if p != int(p) or abs(p) > MAX_PRODUCT_POWER:  # x must stay positive for these
            return self.sqrt(x) if p == 0.5 else self.smooth(x, "power", p=p)
        if p < 0:  # 1 / x^2k needs x away from 0 (any sign); an odd power of a positive x, one power neuron
            return self.reciprocal(self.power(x, -p)) if int(p) % 2 == 0 else self.smooth(x, "power", p=p)
        if p == 0:
            return _carried(np.ones(x.shape))
        n, result, base = int(p), None, x  # binary powering: x^13 = x * x^4 * x^8
        while True:
            if n & 1:
                result = base if result is None else self._product(result, base)
            n >>= 1
            if not n:
                return result
            base = self.square(base)

    def softmax(self, x: Sym, axis: int, log: bool = False) -> Sym:
        """Softmax along ``axis`` as ``exp(x_i - logsumexp(x))``, log-softmax as ``x_i - logsumexp(x)``, with one
        :meth:`_log_sum_exp` per vector: ``2n - 1`` neurons where the pairwise ``1 / (1 + sum_{j != i} exp(x_j -
        x_i))`` needs ``n^2`` (7,680 exp neurons fall to 992 in the ViT stand-in, whose symbolic bounds are then
        as tight or tighter and 20% faster; only interval bounds, which cannot cancel ``x_i``, are wider). It
        is finite for any logits, needs no division of two values, and a property comparing two
        log-softmax outputs compares two logits, which the bounds see exactly. Over two entries
        ``sigmoid(x_i - x_j)`` and ``-softplus(x_j - x_i)``."""
        axis = self.axis(axis, x.ndim)
        n = x.shape[axis] if x.ndim else 1
        if n == 1:
            return _carried(np.zeros(x.shape) if log else np.ones(x.shape))
        moved = self.transpose(x, [d for d in range(x.ndim) if d != axis] + [axis])
        if n == 2:
            gap = self.sub(self.take(moved, np.array([1, 0]), -1), moved)  # x_j - x_i
            y = self.neg(self.smooth(gap, "softplus")) if log else self.smooth(self.neg(gap), "sigmoid")
        else:
            y = self.sub(moved, self._log_sum_exp(moved))
            # x_i - logsumexp(x) <= 0 exactly, which interval arithmetic cannot see (it does not cancel x_i):
            # min(., 0) keeps a softmax within [0, 1] for every bound method; log-softmax stays affine in the
            # logsumexp, so that differences of its outputs cancel it
            y = y if log else self.exp(self.minimum(y, 0.0))
        back = np.argsort([d for d in range(x.ndim) if d != axis] + [axis])
        return self.transpose(y, [int(d) for d in back])

    def normalize(self, x: Sym, axes: Sequence[int], eps: float, statistics: bool = False):
        """``(x - mean) / sqrt(var + eps)`` over ``axes`` (layer and instance normalisation before their
        scale and shift): the variance through square neurons, ``1 / sqrt`` through one power neuron,
        and the product of the two values (``eps > 0`` keeps the square root's input positive), clipped to
        ``+-sqrt(d)`` for ``d`` normalised values (an identity on every reachable value, below). With
        ``statistics``: ``(result, mean, 1 / sqrt(var + eps))``, the mean and inverse deviation kept
        along the reduced axes."""
        eps = float(eps)
        if not eps > 0.0:
            raise self.unsupported(f"normalisation with epsilon {eps:g}", ["epsilon > 0"])
        mean = self.reduce_sum(x, axes, keepdims=True, mean=True)
        centred = self.sub(x, mean)
        variance = self.reduce_sum(self.square(centred), axes, keepdims=True, mean=True)
        inverse = self.power(self.add(variance, eps), -0.5)
        # |c_i| <= sqrt((d - 1) var) for d centred values c (they sum to 0; Cauchy-Schwarz), so every exact
        # output lies in [-sqrt(d - 1), sqrt(d - 1)]: a clip to +-sqrt(d) changes no value unless the product's
        # rounding, about 2^-52 / (var + eps), exceeds sqrt(d) - sqrt(d - 1) (only for eps near 2^-52), and
        # gives the product's loose polarisation bounds that range back
        reach = math.sqrt(math.prod(x.shape[a] for a in self.axes(axes, x.ndim)))
        result = self.clip(self.mul(centred, inverse), -reach, reach)
        return (result, mean, inverse) if statistics else result

    def rms_norm(self, x: Sym, axes: Sequence[int], eps: float) -> Sym:
        """``x / sqrt(mean(x^2) + eps)`` over ``axes`` (before its scale): square neurons, a sparse mean and
        one power neuron per normalised vector (``eps > 0`` keeps its input positive), and the product."""
        eps = float(eps)
        if not eps > 0.0:
            raise self.unsupported(f"RMS normalisation with epsilon {eps:g}", ["epsilon > 0"])
        mean_square = self.reduce_sum(self.square(x), axes, keepdims=True, mean=True)
        return self.mul(x, self.power(self.add(mean_square, eps), -0.5))

    def local_response_norm(self, x: Sym, size: int, alpha: float, beta: float, bias: float,
                            before: int, after: int) -> Sym:
        """``x / (bias + alpha / size * sum x^2)^beta`` with the sum over channels ``c - before .. c + after``
        (axis 1, clipped to the channels): square neurons, a banded sparse sum, one power neuron (its input
        is at least ``bias``, which must be positive) and the product."""
        if x.ndim < 2 or int(size) < 1 or not float(bias) > 0.0:
            raise self.unsupported(f"local response normalisation of shape {x.shape}, size {size}, bias {bias:g}",
                                   ["size >= 1 and bias > 0 over a channel axis"])
        channels, inner = x.shape[1], math.prod(x.shape[2:])
        offsets = np.arange(-int(before), int(after) + 1)
        rows = np.repeat(np.arange(channels), offsets.size)
        cols = rows + np.tile(offsets, channels)
        inside = (cols >= 0) & (cols < channels)
        band = sp.csr_array((np.ones(int(inside.sum())), (rows[inside], cols[inside])), shape=(channels, channels))
        block = sp.kron(matrices.identity(x.shape[0]), sp.kron(band, matrices.identity(inner)), format="csr")
        total = self._apply(self.square(x), block, x.shape)
        scale = self.add(self.mul(total, float(alpha) / int(size)), float(bias))
        return self.mul(x, self.power(scale, -float(beta))) if float(beta) != 0.0 else x

    def _matmul_values(self, a: Sym, b: Sym) -> Sym:
        """``a @ b`` of two network values (numpy matmul semantics): the products ``a_ik b_kj``, summed over ``k``."""
        left, right = a.ndim == 1, b.ndim == 1
        a = self.reshape(a, (1, a.shape[0])) if left else a
        b = self.reshape(b, (b.shape[0], 1)) if right else b
        if a.shape[-1] != b.shape[-2]:
            raise self.invalid(f"cannot multiply shapes {a.shape} @ {b.shape}")
        products = self._product(self.reshape(a, a.shape + (1,)), self.reshape(b, b.shape[:-2] + (1,) + b.shape[-2:]))
        out = self.reduce_sum(products, [-2], keepdims=False)
        if left:
            out = self.reshape(out, out.shape[:-2] + out.shape[-1:])
        if right:
            out = self.reshape(out, out.shape[:-1])
        return out

    def _apply(self, x: Sym, matrix, shape) -> Sym:
        """``matrix @ x.flat`` reshaped to ``shape`` (``matrix`` dense or sparse)."""
        return Sym(shape, {n: _product(matrix, m) for n, m in x.terms.items()}, np.asarray(matrix @ x.bias).ravel())

    def matmul(self, a, b) -> Sym:
        """``a @ b`` (numpy matmul semantics): a constant operand makes a sparse or dense affine map; two
        network values their products (:meth:`_matmul_values`)."""
        a, b = self._constant_sym(a), self._constant_sym(b)
        if is_sym(a) and is_sym(b):
            return self._matmul_values(a, b)
        if not is_sym(a) and not is_sym(b):
            return _carried(np.matmul(self.const(a), self.const(b)))
        rank_a, rank_b = (v.ndim if is_sym(v) else np.ndim(v) for v in (a, b))
        if min(rank_a, rank_b) >= 2 and (rank_a if is_sym(b) else rank_b) > 2:
            return self.einsum("...ij,...jk->...ik", [a, b])  # a batched constant: one block per batch entry
        if is_sym(a):
            x, w = a, self.const(b, "the weight")
            if w.ndim > 2 or x.ndim == 0 or x.shape[-1] != w.shape[0]:
                raise self.invalid(f"cannot multiply shapes {x.shape} @ {w.shape}")
            rows = math.prod(x.shape[:-1])
            block = w[None, :] if w.ndim == 1 else w.T
            shape = x.shape[:-1] + w.shape[1:]
            return self._apply(x, block if rows == 1 else sp.kron(matrices.identity(rows), block, format="csr"), shape)
        c, x = self.const(a, "the weight"), b
        if c.ndim > 2 or x.ndim == 0 or c.shape[-1] != x.shape[max(x.ndim - 2, 0)]:
            raise self.invalid(f"cannot multiply shapes {c.shape} @ {x.shape}")
        if x.ndim == 1:
            return self._apply(x, c if c.ndim == 2 else c[None, :], c.shape[:-1])
        cols, batch = x.shape[-1], math.prod(x.shape[:-2])
        block = c if c.ndim == 2 else c[None, :]
        block = block if cols == 1 else sp.kron(block, matrices.identity(cols), format="csr")
        shape = x.shape[:-2] + c.shape[:-1] + (cols,)
        return self._apply(x, block if batch == 1 else sp.kron(matrices.identity(batch), block, format="csr"), shape)

    def linear(self, x: Sym, weight, bias=None) -> Sym:
        """``x @ weight.T + bias`` (torch.nn.Linear)."""
        y = self.matmul(x, self.const(weight, "the weight").T)
        return y if bias is None else self.add(y, self.const(bias, "the bias"))

    def batch_norm(self, x: Sym, mean, var, scale=None, shift=None, eps: float = 1e-5) -> Sym:
        """Inference-mode batch normalisation over the channel axis (1, or 0 for unbatched 1-D input)."""
        var = self.const(var, "the running variance")
        channels = var.shape[0]
        scale = np.ones(channels) if scale is None else self.const(scale, "the scale")
        shift = np.zeros(channels) if shift is None else self.const(shift, "the shift")
        if not np.all(var + float(eps) > 0.0):
            raise self.invalid(f"batch norm running variance plus epsilon must be positive, got a minimum of "
                               f"{float(np.min(var + float(eps))):.6g}")
        factor = scale / np.sqrt(var + float(eps))
        offset = shift - self.const(mean, "the running mean") * factor
        axis = 1 if x.ndim >= 2 else 0
        if x.ndim == 0 or x.shape[axis] != channels:
            raise self.invalid(f"batch norm over {channels} channels applied to shape {x.shape}")
        layout = [1] * x.ndim
        layout[axis] = channels
        return self.add(self.mul(x, factor.reshape(layout)), offset.reshape(layout))

    # -- more re-indexing: padding, gathers, splits ---------------------------------------------------

    def pad(self, x: Sym, widths: Sequence[tuple[int, int]], mode: str = "constant", value: float = 0.0) -> Sym:
        """Pad each dimension by ``widths[d] = (before, after)`` (negative crops): ``constant`` (``value``),
        ``edge``, ``reflect`` or ``wrap`` (numpy's modes, which ONNX and torch share; torch calls wrap circular)."""
        widths = [(int(a), int(b)) for a, b in widths]
        if len(widths) != x.ndim:
            raise self.invalid(f"padding of {len(widths)} dimensions given for a tensor of shape {x.shape}")
        crop = tuple(slice(max(-a, 0), d - max(-b, 0)) for (a, b), d in zip(widths, x.shape))
        positions = self._positions(x.shape)[crop]
        grow = [(max(a, 0), max(b, 0)) for a, b in widths]
        if mode not in ("constant", "edge", "reflect", "wrap"):
            raise self.unsupported(f"padding mode {mode!r}", ["constant", "edge", "reflect", "wrap"])
        if mode == "wrap" and any(a > d or b > d for (a, b), d in zip(grow, positions.shape)):
            raise self.invalid("circular padding must be at most the padded dimension")
        if mode == "reflect" and any(a >= d or b >= d for (a, b), d in zip(grow, positions.shape)):
            raise self.invalid("reflect padding must be smaller than the padded dimension")
        if mode != "constant":
            return self._gather(x, np.pad(positions, grow, mode=mode))
        index = np.pad(positions, grow, mode="constant", constant_values=-1)
        return self._select(x, index, float(value))

    def _select(self, x: Sym, index: np.ndarray, fill: float) -> Sym:
        """``y.flat[i] = x.flat[index.flat[i]]``, or ``fill`` where the index is -1."""
        flat = index.ravel()
        inside = np.flatnonzero(flat >= 0)
        select = matrices.compact(sp.csr_array((np.ones(inside.size), (inside, flat[inside])), shape=(flat.size, x.size)))
        y = self._apply(x, select, index.shape)
        y.bias = y.bias + np.where(flat < 0, fill, 0.0)
        return y

    def positions(self, shape, key=None, what: str = "index") -> np.ndarray:
        """The flat positions of a tensor of ``shape`` (indexed by ``key``: numpy basic or advanced indexing
        with constant indices, negative ones counting from the end); an index out of range is an error."""
        try:
            return self._positions(shape) if key is None else np.asarray(self._positions(shape)[key])
        except IndexError as exc:
            raise self.invalid(f"{what} out of range for shape {tuple(shape)}: {one_line(exc)}") from None

    def index_array(self, value, what: str) -> np.ndarray:
        """Constant integer indices (of a gather or scatter); indices computed from the input are refused."""
        if contains_sym(value):
            raise self.unsupported(f"{what} computed from the network input", [f"constant {what}"])
        return np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value).astype(np.int64)

    def along_axis(self, shape, indices: np.ndarray, axis: int) -> np.ndarray:
        """The flat positions that GatherElements / ScatterElements (torch's gather / scatter along ``dim``)
        address in a tensor of ``shape``: each index's own coordinates with ``axis`` replaced by the index
        (negative ones counting from the end)."""
        axis = self.axis(axis, len(shape))
        if indices.ndim != len(shape) or np.any(indices < -shape[axis]) or np.any(indices >= shape[axis]):
            raise self.invalid(f"indices of shape {indices.shape} out of range for axis {axis} of shape {tuple(shape)}")
        coords = list(np.indices(indices.shape))
        coords[axis] = np.where(indices < 0, indices + shape[axis], indices)
        if any(np.any(c >= d) for c, d in zip(coords, shape)):
            raise self.invalid(f"indices of shape {indices.shape} do not fit data of shape {tuple(shape)}")
        return self.positions(shape)[tuple(coords)]

    def gather_positions(self, x: Sym, positions) -> Sym:
        """``y.flat[i] = x.flat[positions.flat[i]]``, of ``positions``'s shape (GatherElements, GatherND, roll)."""
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= x.size):
            raise self.invalid(f"gather position out of range for a tensor of {x.size} values")
        return self._gather(x, positions)

    def scatter(self, x, positions, updates) -> Sym:
        """``x`` with its elements at flat ``positions`` replaced by ``updates`` (broadcast to ``positions``'s
        shape; either may be constant): a gather from both (ScatterND, ScatterElements, slice / select
        scatter, index_put). A position written twice keeps the last update, as numpy assigns."""
        positions = np.asarray(positions, dtype=np.int64)
        shape = tuple(x.shape) if is_sym(x) else np.shape(x)
        size = math.prod(shape)
        if positions.size and (positions.min() < 0 or positions.max() >= size):
            raise self.invalid(f"scatter position out of range for a tensor of {size} values")
        base = self._as_sym(x, shape)
        new = self._as_sym(updates, positions.shape)
        index = np.arange(size)
        index[positions.ravel()] = size + np.arange(positions.size)
        stacked = self._stack([self.reshape(base, (size,)), self.reshape(new, (positions.size,))])
        return self._gather(stacked, index.reshape(shape))

    def take(self, x: Sym, indices, axis: int) -> Sym:
        """``numpy.take(x, indices, axis)`` with constant integer indices (negative ones count from the end)."""
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise self.invalid(f"gather indices must be integers, got {indices.dtype}")
        axis = self.axis(axis, x.ndim)
        size = x.shape[axis]
        if np.any(indices < -size) or np.any(indices >= size):
            raise self.invalid(f"gather index out of range for dimension {axis} of size {size}")
        return self._gather(x, np.take(self._positions(x.shape), np.where(indices < 0, indices + size, indices), axis))

    def split(self, x: Sym, sizes: Sequence[int], axis: int) -> tuple[Sym, ...]:
        """Consecutive parts of ``sizes`` along ``axis``."""
        axis = self.axis(axis, x.ndim)
        sizes = [int(s) for s in sizes]
        if sum(sizes) != x.shape[axis] or any(s < 0 for s in sizes):
            raise self.invalid(f"split sizes {sizes} do not add up to dimension {axis} of shape {x.shape}")
        bounds = np.cumsum([0] + sizes)
        key = [slice(None)] * x.ndim
        parts = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            key[axis] = slice(int(start), int(stop))
            parts.append(self.index(x, tuple(key)))
        return tuple(parts)

    # -- convolution and pooling (sparse affine maps) -------------------------------------------------

    def _spatial(self, x: Sym, channels: int | None, d: int, what: str) -> tuple[bool, tuple[int, ...]]:
        """Whether ``x`` has a batch dimension, and its shape ``(C, *spatial)`` with ``d`` spatial dims."""
        if x.ndim == d + 2 and x.shape[0] == 1:
            batched, shape = True, x.shape[1:]
        elif x.ndim == d + 1:
            batched, shape = False, x.shape
        else:
            raise self.invalid(f"{what} with {d} spatial dimensions applied to a tensor of shape {x.shape}")
        if channels is not None and shape[0] != channels:
            raise self.invalid(f"{what} expects {channels} input channels, the tensor has shape {x.shape}")
        return batched, tuple(shape)

    @staticmethod
    def _window(size, kernel, stride, begin, dilation, out) -> tuple[np.ndarray, np.ndarray]:
        """For output position ``p`` and kernel offset ``k`` (both flat), the flat input position
        ``o * stride - begin + k * dilation`` per dimension (P, K) and whether it lies inside the input."""
        outs = np.indices(out).reshape(len(out), -1).T  # (P, d)
        offsets = np.indices(kernel).reshape(len(kernel), -1).T  # (K, d)
        coords = outs[:, None, :] * np.asarray(stride) - np.asarray(begin) + offsets[None, :, :] * np.asarray(dilation)
        valid = np.all((coords >= 0) & (coords < np.asarray(size)), axis=2)
        flat = np.ravel_multi_index(tuple(np.clip(coords, 0, np.asarray(size) - 1).transpose(2, 0, 1)), size)
        return flat, valid

    def _window_args(self, what: str, kernel, stride, pads, dilation) -> tuple[tuple[int, ...], ...]:
        """``(kernel, stride, pads, dilation)`` of a ``len(kernel)``-d window operator as int tuples (stride
        defaults to 1 here; pooling passes its kernel), refusing what ONNX and torch refuse: a kernel,
        stride or dilation below 1, a negative pad, or a length that does not match the dimensions."""
        d = len(kernel)
        kernel = tuple(int(k) for k in kernel)
        stride = tuple(int(v) for v in (stride if stride is not None and len(stride) else (1,) * d))
        dilation = tuple(int(v) for v in (dilation if dilation is not None and len(dilation) else (1,) * d))
        pads = tuple(int(v) for v in (pads if pads is not None and len(pads) else (0,) * (2 * d)))
        for name, values, size, least in (("kernel", kernel, d, 1), ("strides", stride, d, 1),
                                          ("dilations", dilation, d, 1), ("pads", pads, 2 * d, 0)):
            if len(values) != size:
                raise self.invalid(f"{what} {name} {values} must have {size} values for {d} spatial dimensions")
            if any(v < least for v in values):
                raise self.invalid(f"{what} {name} {values} must all be at least {least}")
        return kernel, stride, pads, dilation

    def _out_size(self, size, kernel, stride, pads, dilation, ceil_mode: bool = False) -> tuple[int, ...]:
        """Window positions per dimension: ``floor`` (or ``ceil``) of ``(size + pads - dilation (kernel - 1)
        - 1) / stride`` plus one. In ceil mode a last window that would start past the input and its
        begin padding is dropped (torch's rule, which ONNX adopted): every window then starts at a real
        or begin-padding position."""
        d = len(size)
        out = []
        for i in range(d):
            span = size[i] + pads[i] + pads[d + i] - dilation[i] * (kernel[i] - 1) - 1
            n = (-(-span // stride[i]) if ceil_mode else span // stride[i]) + 1
            if ceil_mode and (n - 1) * stride[i] >= size[i] + pads[i]:
                n -= 1
            out.append(n)
        out = tuple(out)
        if any(o < 1 for o in out):
            raise self.invalid(f"a window of {tuple(kernel)} does not fit the input of spatial size {tuple(size)}")
        return out

    def conv(self, x: Sym, weight, bias=None, stride=None, pads=None, dilation=None, groups: int = 1) -> Sym:
        """N-d convolution (cross-correlation, as ONNX Conv and torch.nn.ConvNd) as one sparse affine map.

        ``weight`` has shape ``(C_out, C_in / groups, *kernel)``; ``pads`` is ONNX's
        ``[begin_1..begin_d, end_1..end_d]`` (zero padding). Output ``y[o, p] = b[o] + sum_{c, k}
        W[o, c, k] x[g(o) C_in/groups + c, p * stride - begin + k * dilation]`` over positions inside the input.
        """
        w = self.const(weight, "the convolution weight")
        d = w.ndim - 2
        if d < 1:
            raise self.invalid(f"convolution weight of shape {w.shape} has no spatial dimensions")
        groups = int(groups)
        c_out, c_in_g, kernel = w.shape[0], w.shape[1], w.shape[2:]
        if groups < 1 or c_out % groups:
            raise self.invalid(f"{c_out} output channels cannot form {groups} groups")
        batched, (c_in, *size) = self._spatial(x, c_in_g * groups, d, "a convolution")
        kernel, stride, pads, dilation = self._window_args("convolution", kernel, stride, pads, dilation)
        out = self._out_size(size, kernel, stride, pads, dilation)
        flat, valid = self._window(tuple(size), kernel, stride, pads[:d], dilation, out)  # (P, K)
        P, K, S = flat.shape[0], flat.shape[1], math.prod(size)
        o = np.arange(c_out)[:, None, None, None]
        c = (o // (c_out // groups)) * c_in_g + np.arange(c_in_g)[None, :, None, None]  # input channel
        rows = np.broadcast_to(o * P + np.arange(P)[None, None, :, None], (c_out, c_in_g, P, K))
        cols = c * S + flat[None, None, :, :]
        vals = np.broadcast_to(w.reshape(c_out, c_in_g, 1, K), (c_out, c_in_g, P, K))
        keep = np.broadcast_to(valid[None, None], (c_out, c_in_g, P, K)) & (vals != 0.0)
        matrix = sp.csr_array((vals[keep], (rows[keep], cols[keep])), shape=(c_out * P, c_in * S))
        shape = ((1,) if batched else ()) + (c_out, *out)
        y = self._apply(x, matrix, shape)
        if bias is not None:
            y.bias = y.bias + np.repeat(self.const(bias, "the convolution bias"), P)
        return y

    def conv_transpose(self, x: Sym, weight, bias=None, stride=None, pads=None, dilation=None, groups: int = 1,
                       output_padding=None) -> Sym:
        """N-d transposed convolution (ONNX ConvTranspose, torch.nn.ConvTransposeNd) as one sparse affine map.

        ``weight`` has shape ``(C_in, C_out / groups, *kernel)``: input ``x[c, i]`` adds ``W[c, o, k] x[c, i]``
        to output ``y[g(c) C_out/groups + o, i * stride - begin + k * dilation]``; the output size is
        ``(in - 1) stride - begin - end + dilation (kernel - 1) + output_padding + 1``.
        """
        w = self.const(weight, "the transposed-convolution weight")
        d = w.ndim - 2
        groups = int(groups)
        c_in, c_out_g, kernel = w.shape[0], w.shape[1], w.shape[2:]
        if groups < 1 or c_in % groups:
            raise self.invalid(f"{c_in} input channels cannot form {groups} groups")
        batched, (_, *size) = self._spatial(x, c_in, d, "a transposed convolution")
        kernel, stride, pads, dilation = self._window_args("transposed convolution", kernel, stride, pads, dilation)
        extra = tuple(int(v) for v in (output_padding if output_padding is not None and len(output_padding)
                                       else (0,) * d))
        # torch's rule: output padding only adds the positions that a stride or dilation step leaves
        # between the last window and the end
        if len(extra) != d or any(not 0 <= e < max(s, t) for e, s, t in zip(extra, stride, dilation)):
            raise self.invalid(f"transposed convolution output_padding {extra} must have {d} values, each at "
                               f"least 0 and smaller than its stride {stride} or dilation {dilation}")
        out = tuple((size[i] - 1) * stride[i] - pads[i] - pads[d + i] + dilation[i] * (kernel[i] - 1) + extra[i] + 1
                    for i in range(d))
        if any(v < 1 for v in out):
            raise self.invalid(f"transposed convolution output size {out} is empty")
        # the output position of input i and kernel offset k: i * stride - begin + k * dilation
        flat, valid = self._window(tuple(out), kernel, stride, pads[:d], dilation, tuple(size))  # (P_in, K)
        P, K, S = flat.shape[0], flat.shape[1], math.prod(out)
        c = np.arange(c_in)[:, None, None, None]
        o = (c // (c_in // groups)) * c_out_g + np.arange(c_out_g)[None, :, None, None]  # output channel
        cols = np.broadcast_to(c * P + np.arange(P)[None, None, :, None], (c_in, c_out_g, P, K))
        rows = o * S + flat[None, None, :, :]
        vals = np.broadcast_to(w.reshape(c_in, c_out_g, 1, K), (c_in, c_out_g, P, K))
        keep = np.broadcast_to(valid[None, None], (c_in, c_out_g, P, K)) & (vals != 0.0)
        c_out = c_out_g * groups
        matrix = sp.csr_array((vals[keep], (rows[keep], cols[keep])), shape=(c_out * S, c_in * P))
        y = self._apply(x, matrix, ((1,) if batched else ()) + (c_out, *out))
        if bias is not None:
            y.bias = y.bias + np.repeat(self.const(bias, "the transposed-convolution bias"), S)
        return y

    def avg_pool(self, x: Sym, kernel, stride=None, pads=None, count_include_pad: bool = False,
                 dilation=None, ceil_mode: bool = False, summed: bool = False) -> Sym:
        """Average pooling per channel: the sum of each window's values inside the input, divided by the
        count of those values, or (``count_include_pad``) of the window's positions inside the padded
        input (the whole window, except a ceil-mode window that reaches past the end padding). With
        ``summed``, the sum itself (zero padding adds nothing)."""
        d = len(kernel)
        batched, (channels, *size) = self._spatial(x, None, d, "average pooling")
        kernel, stride, pads, dilation = self._window_args("average pooling", kernel, stride or kernel, pads,
                                                           dilation)
        # a window of padding only would divide by a count of 0 (ONNX Runtime refuses these pads too)
        if any(pads[i] >= kernel[i] or pads[d + i] >= kernel[i] for i in range(d)):
            raise self.invalid(f"average pooling pads {pads} must be smaller than the kernel {kernel}")
        out = self._out_size(size, kernel, stride, pads, dilation, ceil_mode)
        flat, valid = self._window(tuple(size), kernel, stride, pads[:d], dilation, out)
        P, K, S = flat.shape[0], flat.shape[1], math.prod(size)
        if count_include_pad:
            padded = tuple(size[i] + pads[i] + pads[d + i] for i in range(d))
            _, in_padded = self._window(padded, kernel, stride, (0,) * d, dilation, out)
            count = in_padded.sum(axis=1).astype(np.float64)
        else:
            count = valid.sum(axis=1).astype(np.float64)
        if summed:
            count = np.ones_like(count)
        c = np.arange(channels)[:, None, None]
        rows = np.broadcast_to(c * P + np.arange(P)[None, :, None], (channels, P, K))
        cols = c * S + flat[None]
        vals = np.broadcast_to((1.0 / count)[None, :, None], (channels, P, K))
        keep = np.broadcast_to(valid[None], (channels, P, K))
        matrix = sp.csr_array((vals[keep], (rows[keep], cols[keep])), shape=(channels * P, channels * S))
        return self._apply(x, matrix, ((1,) if batched else ()) + (channels, *out))

    def maximum(self, a, b) -> Sym:
        """``max(a, b)`` element-wise (broadcasting). Of a network value and a constant: a ReLU-type kind
        (``relu`` at 0, else a shifted one; one per distinct value). Of two network values:
        ``b + relu(a - b)``, exact, one ReLU per element."""
        a, b = (a, b) if is_sym(a) else (b, a)
        if not is_sym(b):
            return self._per_element(a, b, lambda v: ReLU() if v == 0.0 else PiecewiseLinear.maximum(v), "the bound")
        return self.add(b, self.relu(self.sub(a, b)))

    def minimum(self, a, b) -> Sym:
        """``min(a, b)`` element-wise (broadcasting): with a constant, a clip-type kind per distinct value;
        of two network values ``a - relu(a - b)``, exact, one ReLU per element."""
        a, b = (a, b) if is_sym(a) else (b, a)
        if not is_sym(b):
            return self._per_element(a, b, PiecewiseLinear.minimum, "the bound")
        return self.sub(a, self.relu(self.sub(a, b)))

    def max_pool(self, x: Sym, kernel, stride=None, pads=None, dilation=None, ceil_mode: bool = False) -> Sym:
        """Max pooling per channel over the window values inside the input (padding never wins).

        Lowered exactly to ReLUs: the ``K`` candidates of every window are reduced by a balanced tree of
        ``max(a, b) = b + relu(a - b)``, one ReLU node per tree level (``ceil(log2 K)`` of them,
        ``K - 1`` ReLUs per window). A window position that falls in the padding repeats the window's
        first inside value (``max`` is idempotent), so every window has ``K`` candidates.
        """
        d = len(kernel)
        batched, (channels, *size) = self._spatial(x, None, d, "max pooling")
        kernel, stride, pads, dilation = self._window_args("max pooling", kernel, stride or kernel, pads, dilation)
        if any(pads[i] >= kernel[i] or pads[d + i] >= kernel[i] for i in range(d)):
            raise self.invalid(f"max pooling pads {pads} must be smaller than the kernel {kernel}")
        out = self._out_size(size, kernel, stride, pads, dilation, ceil_mode)
        flat, valid = self._window(tuple(size), kernel, stride, pads[:d], dilation, out)  # (P, K)
        if not valid.any(axis=1).all():
            raise self.invalid(f"a max pooling window of {kernel} (dilation {dilation}) covers only padding")
        first = flat[np.arange(flat.shape[0]), np.argmax(valid, axis=1)]
        flat = np.where(valid, flat, first[:, None])
        S = math.prod(size)
        # candidates: (K, C, P) positions in x.flat
        positions = np.arange(channels)[None, :, None] * S + flat.T[:, None, :]
        if batched:
            x = self.reshape(x, x.shape[1:])
        best = self._max_tree(self._gather(self.reshape(x, (x.size,)), positions))
        return self.reshape(best, ((1,) if batched else ()) + (channels, *out))

    def _max_tree(self, level: Sym) -> Sym:
        """The maximum over the first axis of ``level`` ``(K, ...)``, shape ``(...)``: a balanced tree of
        ``max(a, b) = b + relu(a - b)``, one ReLU node per level (``ceil(log2 K)``), ``K - 1`` ReLUs per
        output."""
        while level.shape[0] > 1:
            k = level.shape[0]
            half = k // 2
            a, b = self.index(level, slice(0, half)), self.index(level, slice(half, 2 * half))
            merged = self.maximum(a, b)
            level = self.concat([merged, self.index(level, slice(2 * half, k))], 0) if k % 2 else merged
        return self.reshape(level, level.shape[1:])

    def adaptive_max_pool(self, x: Sym, out: Sequence[int | None]) -> Sym:
        """torch's adaptive max pooling: output ``o`` of an axis of length ``n`` takes the maximum of inputs
        ``floor(o n / m)`` to ``ceil((o + 1) n / m) - 1`` (windows as :meth:`adaptive_avg_pool`), lowered
        like max pooling; a window shorter than the longest repeats its last value (``max`` is idempotent)."""
        d = len(out)
        batched, (channels, *size) = self._spatial(x, None, d, "adaptive max pooling")
        out = [n if m is None else int(m) for m, n in zip(out, size)]
        if any(m < 1 for m in out):
            raise self.invalid(f"adaptive pooling to an empty output {tuple(out)}")
        flat = np.zeros((1, 1), dtype=np.int64)  # (outputs so far, candidates so far) flat input positions
        for m, n in zip(out, size):
            o = np.arange(m)
            start, stop = (o * n) // m, -((-(o + 1) * n) // m)
            k = np.arange(int((stop - start).max()))
            index = start[:, None] + np.minimum(k[None, :], (stop - start - 1)[:, None])  # (m, K_axis)
            flat = (flat[:, None, :, None] * n + index[None, :, None, :]).reshape(flat.shape[0] * m, -1)
        S = math.prod(size)
        positions = np.arange(channels)[None, :, None] * S + flat.T[:, None, :]  # (K, C, P)
        if batched:
            x = self.reshape(x, x.shape[1:])
        best = self._max_tree(self._gather(self.reshape(x, (x.size,)), positions))
        return self.reshape(best, ((1,) if batched else ()) + (channels, *out))

    def reduce_max(self, x: Sym, axes: Sequence[int] | None, keepdims: bool = True, minimum: bool = False) -> Sym:
        """Maximum (or minimum, ``-max(-x)``) over ``axes`` (all when None), lowered exactly like max pooling."""
        if x.ndim == 0:
            return x
        axes = self.axes(axes, x.ndim)
        rest = [i for i in range(x.ndim) if i not in axes]
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        # candidates (K, outputs): the reduced axes first, then the kept ones in order
        positions = np.transpose(self._positions(x.shape), axes + rest).reshape(
            math.prod(x.shape[i] for i in axes), -1)
        source = self.neg(x) if minimum else x
        best = self._max_tree(self._gather(source, positions))
        best = self.neg(best) if minimum else best
        shape = kept if keepdims else tuple(x.shape[i] for i in rest)
        return self.reshape(best, shape)

    # -- resizing, reductions, selections (fixed linear maps) --------------------------------------------

    RESIZE_MODES = ("nearest", "linear", "cubic")
    RESIZE_TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                         "asymmetric", "tf_half_pixel_for_nn")
    NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")

    def resize(self, x: Sym, shape: Sequence[int], scales: Sequence[float], mode: str = "nearest",
               transform: str = "half_pixel", nearest_mode: str = "round_prefer_floor", cubic_a: float = -0.75,
               exclude_outside: bool = False) -> Sym:
        """Nearest-neighbour, (multi-)linear or (multi-)cubic resizing to ``shape`` (ONNX Resize semantics).

        Each output coordinate ``r`` of an axis maps to an input coordinate ``c(r)`` by the coordinate
        transform (``half_pixel``: ``(r + 1/2) / scale - 1/2``, ``asymmetric``: ``r / scale``,
        ``align_corners``: ``r (n_in - 1) / (n_out - 1)``, ...); ``nearest`` reads the input at
        ``c`` rounded by ``nearest_mode``, ``linear`` at ``floor(c)`` and ``floor(c) + 1`` with weights
        ``1 - t`` and ``t`` (``t = c - floor(c)``), with ``c`` clamped to the input (edge values repeat);
        ``cubic`` at ``floor(c) - 1 .. floor(c) + 2`` with Keys' kernel of coefficient ``cubic_a`` (indices
        past the edges read the edge values, or with ``exclude_outside`` are dropped and the weights renormalised).
        Where runtimes round a coordinate that falls exactly on a rounding tie differently (float32 scales),
        this float64 map follows the exact value. The map is the Kronecker product of the per-axis ``(n_out, n_in)`` matrices: a sparse affine map
        with one (nearest), ``2^d`` (``d`` linear axes) or up to ``4^d`` (cubic) nonzeros per row.
        """
        shape = tuple(int(n) for n in shape)
        if len(shape) != x.ndim or len(scales) != x.ndim or any(n < 1 for n in shape):
            raise self.invalid(f"cannot resize a tensor of shape {x.shape} to {shape}")
        if mode not in self.RESIZE_MODES:
            raise self.unsupported(f"resize mode {mode!r}", self.RESIZE_MODES)
        if transform not in self.RESIZE_TRANSFORMS:
            raise self.unsupported(f"resize coordinate transformation {transform!r}", self.RESIZE_TRANSFORMS)
        if nearest_mode not in self.NEAREST_MODES:
            raise self.unsupported(f"resize nearest_mode {nearest_mode!r}", self.NEAREST_MODES)
        matrix = None
        for n_in, n_out, scale in zip(x.shape, shape, scales):
            scale = float(scale)
            if not (scale > 0.0 and math.isfinite(scale)):
                raise self.invalid(f"resize scale {scale} is not a positive finite number")
            if n_out > MAX_RESIZED:
                raise self.invalid(f"resize to {n_out} positions along an axis (at most {MAX_RESIZED})")
            m = (matrices.identity(n_in) if n_in == n_out and scale == 1.0
                 else _resize_axis(n_in, n_out, scale, mode, transform, nearest_mode, cubic_a, exclude_outside))
            matrix = m if matrix is None else sp.kron(matrix, m, format="csr")
        return self._apply(x, matrices.compact(matrix), shape)

    def adaptive_avg_pool(self, x: Sym, out: Sequence[int | None]) -> Sym:
        """torch's adaptive average pooling (and ``interpolate(mode="area")``) of the ``len(out)`` spatial
        dimensions: output ``o`` of an axis of length ``n`` averages inputs ``floor(o n / m)`` to
        ``ceil((o + 1) n / m) - 1`` (``m`` outputs; None keeps ``n``). A box average is the product of the
        per-axis averages, so the map is the Kronecker product of per-axis ``(m, n)`` matrices."""
        d = len(out)
        batched, (channels, *size) = self._spatial(x, None, d, "adaptive average pooling")
        out = [n if m is None else int(m) for m, n in zip(out, size)]
        if any(m < 1 for m in out):
            raise self.invalid(f"adaptive pooling to an empty output {tuple(out)}")
        matrix = matrices.identity(channels)
        for m, n in zip(out, size):
            o = np.arange(m)
            start, stop = (o * n) // m, -((-(o + 1) * n) // m)
            counts = stop - start
            rows = np.repeat(o, counts)
            cols = np.concatenate([np.arange(a, b) for a, b in zip(start, stop)])
            axis = sp.csr_array((np.repeat(1.0 / counts, counts), (rows, cols)), shape=(m, n))
            matrix = sp.kron(matrix, axis, format="csr")
        return self._apply(x, matrices.compact(matrix), ((1,) if batched else ()) + (channels, *out))

    def reduce_sum(self, x: Sym, axes: Sequence[int] | None, keepdims: bool = True, mean: bool = False) -> Sym:
        """Sum (or mean) over ``axes`` (all when None): one sparse row of ones (or ``1/count``) per output."""
        if x.ndim == 0:
            return x
        axes = self.axes(axes, x.ndim)
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        # every input position adds to the output position with its reduced coordinates set to 0
        coords = np.indices(x.shape).reshape(x.ndim, -1)
        coords[axes] = 0
        rows = np.ravel_multi_index(tuple(coords), kept)
        value = 1.0 / math.prod(x.shape[i] for i in axes) if mean else 1.0
        matrix = sp.csr_array((np.full(x.size, value), (rows, np.arange(x.size))), shape=(math.prod(kept), x.size))
        shape = kept if keepdims else tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return self._apply(x, matrices.compact(matrix), shape)

    def reduce_norm(self, x: Sym, axes: Sequence[int] | None, keepdims: bool = True, p: int = 2,
                    root: bool = True) -> Sym:
        """ONNX ReduceL1 (``p = 1``: the sum of ``|x|``), ReduceSumSquare (``p = 2``, no root) and ReduceL2
        (``sqrt`` of the sum of squares: its bounds must stay above 0)."""
        if p == 1:
            return self.reduce_sum(self.abs(x), axes, keepdims)
        total = self.reduce_sum(self.square(x), axes, keepdims)
        return self.sqrt(total) if root else total

    def reduce_log_sum_exp(self, x: Sym, axes: Sequence[int] | None, keepdims: bool = True) -> Sym:
        """``log sum exp(x)`` over ``axes`` (:meth:`_log_sum_exp` over the reduced values moved last)."""
        if x.ndim == 0:
            return x
        axes = self.axes(axes, x.ndim)
        rest = [i for i in range(x.ndim) if i not in axes]
        moved = self.transpose(x, rest + axes)
        flat = self.reshape(moved, [x.shape[i] for i in rest] + [math.prod(x.shape[i] for i in axes)])
        kept = [1 if i in axes else d for i, d in enumerate(x.shape)] if keepdims else [x.shape[i] for i in rest]
        return self.reshape(self._log_sum_exp(flat), kept)

    def _log_sum_exp(self, x: Sym) -> Sym:
        """``log sum_j exp(x_j)`` over the last axis (kept, of size 1), as a balanced tree of
        ``LSE(a, b) = a + softplus(b - a)``: ``n - 1`` softplus neurons in ``ceil(log2 n)`` layers, exact and
        finite for any logits (softplus never overflows), where ``exp`` alone would beyond 709."""
        level = x
        while level.shape[-1] > 1:
            m = level.shape[-1]
            pairs = m // 2
            first = self.take(level, np.arange(0, 2 * pairs, 2), -1)
            second = self.take(level, np.arange(1, 2 * pairs, 2), -1)
            merged = self.add(first, self.smooth(self.sub(second, first), "softplus"))
            level = merged if m % 2 == 0 else self.concat([merged, self.take(level, np.array([m - 1]), -1)], -1)
        return level

    def lp_normalize(self, x: Sym, axis: int, p: float = 2.0, eps: float = 0.0) -> Sym:
        """``x / max(||x||_p, eps)`` along ``axis`` (ONNX LpNormalization with ``eps = 0``, torch's
        ``F.normalize``): ``x`` times ``max(sum |x|^p, eps^p)^(-1/p)``, one power neuron per vector (the sum's
        bounds must stay above 0 when ``eps`` is 0)."""
        p, eps = float(p), float(eps)
        if not 0.0 < p < math.inf or not eps >= 0.0:
            raise self.unsupported(f"Lp normalisation with p {p:g}, eps {eps:g}", ["p > 0 and eps >= 0"])
        axis = self.axis(axis, x.ndim)
        base = x if p == int(p) and int(p) % 2 == 0 else self.abs(x)
        total = self.reduce_sum(self.power(base, p), [axis], keepdims=True)
        if eps > 0.0 and eps**p > 0.0:
            total = self.maximum(total, eps**p)
        return self.mul(x, self.power(total, -1.0 / p))

    def lp_pool(self, x: Sym, p: float, kernel, stride=None, pads=None, dilation=None, ceil_mode: bool = False,
                absolute: bool = True) -> Sym:
        """Lp pooling, ``(sum_window |x|^p)^(1/p)`` (ONNX LpPool; zero padding adds nothing). torch's lp_pool
        (``absolute=False``) sums ``x^p`` without the absolute value and scales its average pool by the
        kernel size, which differs from the sum only in a ceil-mode window cut by the input's end. The
        root needs sums whose bounds stay above 0 (for ``p != 1``)."""
        p = float(p)
        if not 0.0 < p <= MAX_PRODUCT_POWER:
            raise self.unsupported(f"Lp pooling with p {p:g}", [f"0 < p <= {MAX_PRODUCT_POWER}"])
        even = p == int(p) and int(p) % 2 == 0
        powered = self.power(self.abs(x) if absolute and not even else x, p)
        if absolute:
            total = self.avg_pool(powered, kernel, stride, pads, dilation=dilation, ceil_mode=ceil_mode, summed=True)
        else:
            total = self.mul(self.avg_pool(powered, kernel, stride, pads, True, dilation, ceil_mode),
                             float(math.prod(int(k) for k in kernel)))
        return self.power(total, 1.0 / p)

    def group_norm(self, x: Sym, groups: int, eps: float) -> tuple[Sym, Sym, Sym]:
        """Group normalisation before its scale and shift: each sample's channels (axis 1) in ``groups``
        consecutive groups, each normalised over its channels and positions. Gives ``(y, mean, 1 / sqrt(var +
        eps))``, the last two of shape ``(N, groups)``."""
        groups = int(groups)
        if x.ndim < 2 or groups < 1 or x.shape[1] % groups or x.size // (x.shape[0] * groups) < 2:
            raise self.invalid(f"group normalisation of shape {x.shape} into {groups} groups (each needs more "
                               "than one value)")
        grouped = self.reshape(x, (x.shape[0], groups, -1))
        y, mean, inverse = self.normalize(grouped, [2], eps, True)
        return (self.reshape(y, x.shape), self.reshape(mean, (x.shape[0], groups)),
                self.reshape(inverse, (x.shape[0], groups)))

    def cumsum(self, x, axis: int, exclusive: bool = False, reverse: bool = False):
        """Cumulative sum along ``axis`` (ONNX CumSum's ``exclusive`` and ``reverse``): a triangular sparse map."""
        if not is_sym(x):
            value = self.const(x)
            return (self._cumsum_matrix(value.shape, axis, exclusive, reverse) @ value.ravel()).reshape(value.shape)
        return self._apply(x, self._cumsum_matrix(x.shape, axis, exclusive, reverse), x.shape)

    def _cumsum_matrix(self, shape, axis: int, exclusive: bool, reverse: bool):
        if not shape:
            shape, axis = (1,), 0
        axis = self.axis(axis, len(shape))
        n = shape[axis]
        offset = (1 if exclusive else 0) * (1 if reverse else -1)
        band = sp.triu(np.ones((n, n)), offset) if reverse else sp.tril(np.ones((n, n)), offset)
        outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
        return sp.kron(matrices.identity(outer), sp.kron(band, matrices.identity(inner)), format="csr")

    def einsum(self, equation: str, operands: Sequence):
        """``numpy.einsum(equation, *operands)`` (torch and ONNX Einsum, ``...`` included): repeated indices
        of an operand are its diagonal (a gather), indices no other operand or the output has are summed
        first, and operands are contracted pairwise as batched matrix products (:meth:`_batched_matmul`:
        a sparse block-diagonal map when one side is constant, products when both are network values)."""
        operands = [self._constant_sym(v) for v in operands]
        text = str(equation).replace(" ", "")
        inputs, arrow, output = text.partition("->")
        specs = inputs.split(",")
        if not all(_EINSUM_SUBSCRIPTS.fullmatch(spec) for spec in specs + [output]):
            raise self.invalid(f"einsum {equation!r}: subscripts are letters a-z, A-Z with at most one '...' each")
        if len(specs) != len(operands):
            raise self.invalid(f"einsum {equation!r} names {len(specs)} operands, got {len(operands)}")
        if not any(is_sym(v) for v in operands):
            try:
                return _carried(np.einsum(text, *[self.const(v) for v in operands]))
            except ValueError as exc:
                raise self.invalid(f"einsum {equation!r}: {one_line(exc)}") from None
        shapes = [v.shape if is_sym(v) else np.shape(v) for v in operands]
        letters = sorted(set(c for c in text if c.isalpha()))
        spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in letters]
        spans = [len(shape) - (len(spec) - 3) for spec, shape in zip(specs, shapes) if "..." in spec]
        if any(n < 0 for n in spans) or len(spare) < max(spans, default=0):
            raise self.invalid(f"einsum {equation!r} does not fit operands of shapes {shapes}")
        ellipsis = "".join(spare[: max(spans, default=0)])
        specs = [spec.replace("...", ellipsis[len(ellipsis) - (len(shape) - (len(spec) - 3)):]) for spec, shape in
                 zip(specs, shapes)]
        if not arrow:  # numpy's implicit output: the ellipsis, then the indices that appear once, sorted
            counts = "".join(specs)
            output = ellipsis + "".join(c for c in letters if counts.count(c) == 1)
        output = output.replace("...", ellipsis)
        sizes: dict[str, int] = {}
        for spec, shape in zip(specs, shapes):
            if len(spec) != len(shape) or not all(c.isalpha() for c in spec):
                raise self.invalid(f"einsum {equation!r}: subscripts {spec!r} do not fit an operand of shape {shape}")
            for c, d in zip(spec, shape):
                known = sizes.get(c, d)
                if known != d and 1 not in (known, d):  # size 1 broadcasts, as in numpy and torch
                    raise self.invalid(f"einsum {equation!r}: index {c!r} has sizes {known} and {d}")
                sizes[c] = max(known, d)
        if len(set(output)) != len(output) or any(c not in sizes for c in output):
            raise self.invalid(f"einsum {equation!r}: bad output subscripts {output!r}")
        terms = [self._einsum_operand(v, spec, [sizes[c] for c in spec]) for v, spec in zip(operands, specs)]
        while True:
            # sum out the indices that neither the output nor another operand has
            terms = [(self._einsum_sum(v, spec, [c for c in spec if c not in output and
                                                  not any(c in t for j, (_, t) in enumerate(terms) if j != i)]))
                     for i, (v, spec) in enumerate(terms)]
            if len(terms) == 1:
                break
            (a, sa), (b, sb), rest = terms[0], terms[1], terms[2:]
            needed = set(output) | {c for _, t in rest for c in t}
            batch = [c for c in sa if c in sb and c in needed]
            contracted = [c for c in sa if c in sb and c not in needed]
            free_a, free_b = [c for c in sa if c not in sb], [c for c in sb if c not in sa]
            dims = [math.prod(sizes[c] for c in group) for group in (batch, free_a, contracted, free_b)]
            left = self._einsum_arrange(a, sa, batch + free_a + contracted, (dims[0], dims[1], dims[2]))
            right = self._einsum_arrange(b, sb, batch + contracted + free_b, (dims[0], dims[2], dims[3]))
            product = self._batched_matmul(left, right)
            spec = "".join(batch + free_a + free_b)
            shape = [sizes[c] for c in spec]
            terms = [(self.reshape(product, shape) if is_sym(product) else np.reshape(product, shape), spec)] + rest
        value, spec = terms[0]
        return self._einsum_arrange(value, spec, list(output), [sizes[c] for c in output])

    def _einsum_operand(self, value, spec: str, shape):
        """An operand with its repeated indices reduced to their diagonal, its size-1 dimensions broadcast to the
        sizes ``shape`` of its indices."""
        unique = "".join(dict.fromkeys(spec))
        if unique != spec:
            grid = np.indices([value.shape[spec.index(c)] for c in unique])
            pick = tuple(grid[unique.index(c)] for c in spec)
            value = self._gather(value, self._positions(value.shape)[pick]) if is_sym(value) else np.asarray(value)[pick]
        full = tuple(shape[spec.index(c)] for c in unique)
        if tuple(value.shape) != full:
            value = self._expand(value, full) if is_sym(value) else np.broadcast_to(value, full)
        return value, unique

    def _einsum_sum(self, value, spec: str, letters):
        if not letters:
            return value, spec
        axes = [spec.index(c) for c in letters]
        kept = "".join(c for c in spec if c not in letters)
        summed = self.reduce_sum(value, axes, keepdims=False) if is_sym(value) else np.sum(value, axis=tuple(axes))
        return summed, kept

    def _einsum_arrange(self, value, spec: str, order, shape):
        """``value`` (indices ``spec``) transposed to ``order`` and reshaped to ``shape``."""
        perm = [spec.index(c) for c in order]
        moved = self.transpose(value, perm) if perm != list(range(len(perm))) else value
        return self.reshape(moved, shape) if is_sym(moved) else np.reshape(moved, shape)

    def _batched_matmul(self, a, b):
        """``a @ b`` of ``(B, M, K)`` and ``(B, K, N)`` values: products when both are network values, else a
        block-diagonal sparse map (one block per batch entry) of the constant one."""
        if is_sym(a) and is_sym(b):
            return self._matmul_values(a, b)
        if not is_sym(a) and not is_sym(b):
            return np.matmul(a, b)
        batch, m, n = a.shape[0], a.shape[1], b.shape[2]
        if is_sym(a):  # out[i] = a[i] @ W[i]: rows of a[i] times W[i], kron(I_M, W[i]^T)
            weight = self.const(b, "the einsum operand")
            blocks = [sp.kron(matrices.identity(m), sp.csr_array(weight[i].T)) for i in range(batch)]
            x = a
        else:  # out[i] = W[i] @ x[i]: kron(W[i], I_N)
            weight = self.const(a, "the einsum operand")
            blocks = [sp.kron(sp.csr_array(weight[i]), matrices.identity(n)) for i in range(batch)]
            x = b
        matrix = blocks[0].tocsr() if batch == 1 else sp.block_diag(blocks, format="csr")
        return self._apply(x, matrices.tidy(matrix), (batch, m, n))

    def depth_to_space(self, x: Sym, block: int, mode: str = "DCR", inverse: bool = False) -> Sym:
        """Move channels into ``block x block`` spatial blocks (ONNX DepthToSpace; ``mode`` "CRD" is torch's
        pixel_shuffle) or back (``inverse``: ONNX SpaceToDepth with "DCR", torch's pixel_unshuffle with
        "CRD"); re-indexing of a ``(1, C, H, W)`` or ``(C, H, W)`` tensor."""
        batched, (c, h, w) = self._spatial(x, None, 2, "depth-to-space")
        b = int(block)
        if mode not in ("DCR", "CRD"):
            raise self.unsupported(f"depth-to-space mode {mode!r}", ["DCR", "CRD"])
        lead = (1,) if batched else ()
        if not inverse:
            if b < 1 or c % (b * b):
                raise self.invalid(f"{c} channels do not split into {b} x {b} blocks")
            k = c // (b * b)
            split, perm = ((b, b, k), (2, 3, 0, 4, 1)) if mode == "DCR" else ((k, b, b), (0, 3, 1, 4, 2))
            y = self.transpose(self.reshape(x, split + (h, w)), perm)
            return self.reshape(y, lead + (k, h * b, w * b))
        if b < 1 or h % b or w % b:
            raise self.invalid(f"spatial size {(h, w)} does not split into {b} x {b} blocks")
        perm = (2, 4, 0, 1, 3) if mode == "DCR" else (0, 2, 4, 1, 3)
        y = self.transpose(self.reshape(x, (c, h // b, b, w // b, b)), perm)
        return self.reshape(y, lead + (c * b * b, h // b, w // b))

    def tile(self, x: Sym, repeats: Sequence[int]) -> Sym:
        """``numpy.tile(x, repeats)`` with one repeat count per dimension (ONNX Tile, torch ``repeat``)."""
        if len(repeats) != x.ndim or any(int(r) < 0 for r in repeats):
            raise self.invalid(f"tile repeats {tuple(repeats)} do not fit a tensor of shape {x.shape}")
        return self._gather(x, np.tile(self._positions(x.shape), [int(r) for r in repeats]))

    def expand(self, x, shape: Sequence[int]) -> Sym:
        """Broadcast ``x`` with ``shape`` (numpy rules both ways, as ONNX Expand; torch's -1 resolved first)."""
        return self._as_sym(x, self._broadcast_shape(x, np.empty(tuple(int(d) for d in shape), dtype=bool)))

    def compare(self, a, b, op: str):
        """``a > b`` (``op`` "gt", also "ge") or ``a < b`` ("lt", "le") with a network value on either side: a
        :class:`Step` (equality at the threshold does not matter to what it may select), or the boolean
        array when both sides are constant."""
        if op not in ("gt", "ge", "lt", "le"):
            raise self.unsupported(f"comparison {op!r} of network values", ["gt", "ge", "lt", "le"], STEP_HINT)
        difference = self.sub(a, b) if is_sym(a) or is_sym(b) else None
        if difference is None or not difference.terms:
            value = np.asarray(self.const(a)) - np.asarray(self.const(b)) if difference is None else \
                constant_value(difference)
            return value > 0 if op in ("gt", "ge") else value < 0
        return Step(difference, op in ("gt", "ge"))

    def negate(self, step):
        """``not step``: the other side of the same threshold (a boolean array stays one)."""
        if isinstance(step, Step):
            return Step(step.value, not step.above)
        return ~np.asarray(self.const(step)).astype(bool)

    def select(self, condition, a, b) -> Sym:
        """``a`` where ``condition`` holds, else ``b`` (broadcast): for a constant condition a gather of both;
        for a :class:`Step` on ``s`` (``s > 0``), ``b + k relu(s)`` when ``a - b = k s`` for a constant ``k``
        per element (``s < 0``: ``b - k relu(-s)``), exact, and refused when ``a`` and ``b`` differ where
        the step flips (the choice is then not continuous)."""
        if isinstance(condition, Step):
            return self._piecewise(condition, a, b)
        if is_sym(condition):
            raise self.unsupported("a selection whose condition depends on the network input",
                                   ["a constant condition"], "it is not a fixed linear map")
        cond = np.asarray(condition).astype(bool)
        shape = self._broadcast_shape(np.empty(self._broadcast_shape(a, b), dtype=bool), cond)
        x, y = self._as_sym(a, shape), self._as_sym(b, shape)
        positions = self._positions(shape)
        pick = np.where(np.broadcast_to(cond, shape), positions, positions + x.size)
        return self._gather(self._stack([x, y]), pick)

    def _piecewise(self, step: Step, a, b) -> Sym:
        shape = self._broadcast_shape(np.empty(self._broadcast_shape(a, b)), np.empty(step.shape))
        s = self._expand(step.value, shape)
        on, off = self._as_sym(a, shape), self._as_sym(b, shape)
        k = self._proportion(self.sub(on, off), s)
        if k is None:
            raise self.unsupported("a choice by a comparison between two values that differ where it flips",
                                   ["where(s > 0, a, b) with a - b = k s"], STEP_HINT)
        if not k.any():
            return off
        ramp = self.relu(s) if step.above else self.neg(self.relu(self.neg(s)))
        return self.add(off, self.mul(ramp, k.reshape(shape)))

    def _inlined(self, x: Sym) -> Sym:
        """``x`` with every term over an emitted affine node replaced by that node's own function, so that two
        spellings of one value (pending over a layer's input, or over the node emitted for it) compare equal."""
        terms, bias = dict(x.terms), x.bias.copy()
        while True:
            affine = [n for n in terms if isinstance(self._nodes[self._rank[n]], AffineNode)]
            if not affine:
                return Sym(x.shape, terms, bias)
            for name in affine:
                matrix, node = terms.pop(name), self._nodes[self._rank[name]]
                bias = bias + np.asarray(matrix @ node.bias).ravel()
                for source, weight in zip(node.inputs, node.weights):
                    part = _product(matrix, weight) if not matrices.is_identity(weight) else matrix
                    terms[source] = _sum(terms[source], part) if source in terms else part

    def _proportion(self, d: Sym, s: Sym, limit: int = 20_000_000) -> np.ndarray | None:
        """The constant ``k`` with ``d = k s`` element-wise (as affine functions of the same inputs and activations,
        within 1e-9 relative), or None."""
        d, s = self._inlined(d), self._inlined(s)
        names = sorted(set(d.terms) | set(s.terms), key=self._rank.__getitem__)
        width = sum(self._nodes[self._rank[n]].size for n in names) + 1
        if d.size * width > limit:
            raise self.unsupported(f"a choice by a comparison over {d.size} values of {width} inputs",
                                   [f"at most {limit} coefficients"], STEP_HINT)

        def table(x: Sym) -> np.ndarray:
            blocks = [matrices.densify(x.terms[n]) if n in x.terms else
                      np.zeros((x.size, self._nodes[self._rank[n]].size)) for n in names]
            return np.hstack(blocks + [x.bias[:, None]])

        D, T = table(d), table(s)
        rows = np.arange(d.size)
        pivot = np.argmax(np.abs(T), axis=1)
        t = T[rows, pivot]
        k = np.divide(D[rows, pivot], t, out=np.zeros(d.size), where=t != 0)
        # coefficient by coefficient (a large coefficient elsewhere in the row must not hide a jump)
        scaled = k[:, None] * T
        return k if np.all(np.abs(D - scaled) <= 1e-9 * np.maximum(np.abs(D), np.abs(scaled))) else None

    # -- activations --------------------------------------------------------------------------------

    def relu(self, x: Sym) -> Sym:
        return self._activate(x, ReLU())

    def leaky_relu(self, x: Sym, alpha: float) -> Sym:
        """``x if x >= 0 else alpha x`` for any finite slope: a ReLU (0), a leaky ReLU (below 1), the identity (1)
        or, for a slope above 1, the concave piecewise-linear kind, exactly as PReLU with that one slope."""
        return self.prelu(x, float(alpha))

    def smooth(self, x: Sym, kind: str, **params) -> Sym:
        """A smooth activation of ``kind`` (:mod:`relumilp.activations.smooth`), compiled through
        certified piecewise-linear sandwiches."""
        from ..activations import get

        return self._activate(x, get(kind, **params))

    def elu(self, x: Sym, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0) -> Sym:
        """``scale x`` for ``x > 0``, else ``scale alpha (exp(input_scale x) - 1)`` (ATen's ``elu``, which SELU
        and CELU also spell). With ``t = input_scale x`` it is ``scale / input_scale`` times ``ELU_a(t)``,
        ``a = alpha input_scale``; the kind is convex ELU (``0 < a <= 1``), and any other ``a`` is the exact sum
        ``a ELU_1(t) + (1 - a) relu(t)`` (SELU's ``a`` is 1.67)."""
        alpha, scale, input_scale = float(alpha), float(scale), float(input_scale)
        if not input_scale > 0.0 or not math.isfinite(alpha * scale * input_scale):
            raise self.unsupported(f"ELU with alpha {alpha:g}, scale {scale:g}, input scale {input_scale:g}",
                                   ["finite alpha and scale, input scale > 0"])
        t = self.mul(x, input_scale) if input_scale != 1.0 else x
        a = alpha * input_scale
        if a == 0.0:
            y = self.relu(t)
        elif 0.0 < a <= 1.0:
            y = self.smooth(t, "elu", alpha=a)
        else:
            y = self.add(self.mul(self.smooth(t, "elu", alpha=1.0), a), self.mul(self.relu(t), 1.0 - a))
        return self.scaled(y, scale / input_scale)

    def selu(self, x: Sym, alpha: float = SELU_ALPHA, scale: float = SELU_SCALE) -> Sym:
        return self.elu(x, alpha, scale)

    def celu(self, x: Sym, alpha: float = 1.0) -> Sym:
        """``max(0, x) + min(0, alpha (exp(x / alpha) - 1))`` = ``alpha ELU_1(x / alpha)``, ``alpha > 0``."""
        alpha = float(alpha)
        if not 0.0 < alpha < math.inf:
            raise self.unsupported(f"CELU alpha {alpha:g}", ["alpha > 0"])
        return self.elu(x, alpha, 1.0, 1.0 / alpha)

    def gelu(self, x: Sym, approximate: str = "none") -> Sym:
        """GELU: the smooth kind ``gelu`` (``x Phi(x)``), or with ``approximate="tanh"`` the formula
        ``x sigmoid(2 sqrt(2 / pi) (x + 0.044715 x^3))`` (``= 0.5 x (1 + tanh(...))``), spelled in a cube (products),
        a sigmoid and the product with ``x``."""
        if approximate == "none":
            return self.smooth(x, "gelu")
        if approximate != "tanh":
            raise self.unsupported(f"GELU approximate={approximate!r}", ["'none'", "'tanh'"])
        inner = self.add(x, self.mul(self.power(x, 3), 0.044715))
        return self.mul(x, self.smooth(self.mul(inner, 2.0 * math.sqrt(2.0 / math.pi)), "sigmoid"))

    def mish(self, x: Sym) -> Sym:
        """``x tanh(softplus(x))``: the product of ``x`` and its gate (:meth:`_product`)."""
        return self.mul(x, self.smooth(self.smooth(x, "softplus"), "tanh"))

    def tanh_shrink(self, x: Sym) -> Sym:
        return self.sub(x, self.smooth(x, "tanh"))

    def log_sigmoid(self, x: Sym) -> Sym:
        """``log sigmoid(x) = -softplus(-x)``."""
        return self.neg(self.smooth(self.neg(x), "softplus"))

    def shrink(self, x: Sym, lambd: float = 0.5, bias: float | None = None) -> Sym:
        """ONNX Shrink / torch softshrink: ``x - bias`` above ``lambd``, ``x + bias`` below ``-lambd``, else 0, i.e.
        ``relu(x - lambd) - relu(-x - lambd)`` when ``bias = lambd`` (softshrink). Any other bias (torch's
        hardshrink is ``bias = 0``) jumps at ``+-lambd``: not continuous, so no MILP of relumilp's kinds."""
        lambd = float(lambd)
        bias = lambd if bias is None else float(bias)
        if not lambd >= 0.0 or bias != lambd:
            raise self.unsupported(f"Shrink with lambd {lambd:g}, bias {bias:g}", ["bias = lambd >= 0 (softshrink)"],
                                   "any other shrink jumps at +-lambd: it is not continuous in the input")
        return self.sub(self.relu(self.sub(x, lambd)), self.relu(self.sub(self.neg(x), lambd)))

    def hard_swish(self, x: Sym) -> Sym:
        """``x relu6(x + 3) / 6``: piecewise quadratic, a certified sandwich like the smooth kinds
        (:class:`relumilp.activations.HardSwish`)."""
        return self.smooth(x, "hard_swish")

    def clip(self, x: Sym, low=None, high=None) -> Sym:
        """``min(max(x, low), high)``: ReLU for [0, inf), clipped ReLU for [0, c], clip for a finite
        [a, b], ``max(x, a)`` / ``min(x, b)`` for one side; None means unbounded."""
        low = -math.inf if low is None else float(low)
        high = math.inf if high is None else float(high)
        if low == -math.inf and high == math.inf:
            return x
        if low == 0.0 and high == math.inf:
            return self.relu(x)
        if low == 0.0 and 0.0 < high < math.inf:
            return self._activate(x, ClippedReLU(high))
        if -math.inf < low < high < math.inf:
            return self._activate(x, Clip(low, high))
        if -math.inf < low and high == math.inf:  # one-sided: max(x, low), a shifted ReLU
            return self.maximum(x, low)
        if low == -math.inf and high < math.inf:
            return self.minimum(x, high)
        raise self.unsupported(
            f"clip range [{low:g}, {high:g}]",
            ["[0, inf) (ReLU)", "[a, inf), (-inf, b], [a, b] with finite a < b (clip)"],
            "Clip needs low < high; an empty or reversed range is not a network",
        )

    def hard_sigmoid(self, x: Sym, alpha: float = 0.2, beta: float = 0.5) -> Sym:
        """``max(0, min(1, alpha x + beta))`` (ONNX HardSigmoid; torch's Hardsigmoid is alpha = 1/6, beta = 1/2)."""
        return self._activate(x, HardSigmoid(alpha, beta))

    def abs(self, x: Sym) -> Sym:
        return self._activate(x, Abs())

    def prelu(self, x: Sym, slope) -> Sym:
        """PReLU ``x if x >= 0 else slope x`` with ``slope`` broadcast to ``x`` (numpy rules; frontends lay a
        per-channel slope out along the channel axis first)."""
        return self._per_element(x, slope, prelu, "the PReLU slope")

    def _per_element(self, x: Sym, values, make, what: str) -> Sym:
        """Apply ``make(v)`` to each element whose parameter (``values`` broadcast to ``x``) is ``v``.

        An activation kind has one piece table, so a parameter that varies over the elements (PReLU's
        per-channel slope, a tensor bound) splits the tensor: one activation node per distinct value,
        over the gathered elements, and the results gathered back in place. Gathers only move values,
        so each node's pre-activation is the rows of the pending affine function (no extra node) and
        every element is computed exactly as by the single-parameter kind. An identity kind emits no node.
        """
        shape = self._broadcast_shape(x, values)
        x = self._expand(x, shape)
        flat = np.broadcast_to(self.const(values, what), shape).ravel()
        distinct = np.unique(flat)
        if distinct.size == 1:
            act = make(float(distinct[0]))
            return x if isinstance(act, Identity) else self._activate(x, act)
        parts, order = [], []
        for value in distinct:
            index = np.flatnonzero(flat == value)
            part = self._gather(x, index)
            act = make(float(value))
            parts.append(part if isinstance(act, Identity) else self._activate(part, act))
            order.append(index)
        inverse = np.argsort(np.concatenate(order), kind="stable")
        return self._gather(self._stack(parts), inverse.reshape(shape))


class ConstantBuilder(NetworkBuilder):
    """A builder that evaluates: its values are constants, held as symbolic tensors without terms, so a
    frontend's own conversion of an operator computes that operator on a constant (what a source graph's
    constant-only node needs, e.g. ONNX's folding). Activations apply to the values; the maximum and minimum
    of two values are numpy's, exact (the network's ``b + relu(a - b)`` loses a small value beside a huge
    one)."""

    @staticmethod
    def constant(value) -> Sym:
        return _carried(value)

    value = staticmethod(constant_value)

    def _extreme(self, a, b, pick):
        values = [self.value(v) if is_sym(v) else np.asarray(v, dtype=np.float64) for v in (a, b)]
        return None if any(v is None for v in values) else self.constant(pick(*values))

    def maximum(self, a, b) -> Sym:
        return self._extreme(a, b, np.maximum) or super().maximum(a, b)

    def minimum(self, a, b) -> Sym:
        return self._extreme(a, b, np.minimum) or super().minimum(a, b)
