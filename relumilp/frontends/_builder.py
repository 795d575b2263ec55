"""The IR builder every frontend emits into: tensor operations on symbolic values, fused into affine nodes.

A frontend walks its source graph (torch.fx, TorchScript, torch.export, ONNX) in order and calls the
operations here. Each intermediate tensor is a :class:`Sym`: an affine function of IR nodes already
emitted, kept on the tensor's flat (C-order) values with its full shape (batch dimension fixed at 1, so
every reshape, flatten, transpose or concatenation is an exact re-indexing). Affine operations only
compose the pending function; an IR node is emitted when a value must exist as a node -- at an
activation, or the output. So any run of consecutive affine operations (Linear, folded BatchNorm,
normalisation, Flatten, Dropout, residual sums, concatenations) becomes a single :class:`AffineNode`,
and every frontend produces the same IR, with the same node names, for the same network.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from ..activations import Abs, Clip, ClippedReLU, HardSigmoid, Identity, LeakyReLU, PiecewiseLinear, ReLU, prelu
from ..errors import InvalidNetworkError, UnsupportedOperatorError
from ..ir import ActivationNode, AffineNode, InputNode, Network, Node


SMOOTH = {
    "sigmoid", "tanh", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softmax", "softmin",
    "logsoftmax", "log_softmax", "_softmax", "_log_softmax", "logsigmoid", "log_sigmoid", "softsign",
    "tanhshrink", "hardswish", "exp", "log", "erf", "softexponential", "repu",
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


def contains_sym(value) -> bool:
    """True when ``value`` is, or (in a list, tuple or dict) holds, a symbolic tensor."""
    if isinstance(value, Sym):
        return True
    if isinstance(value, (list, tuple)):
        return any(contains_sym(v) for v in value)
    if isinstance(value, dict):
        return any(contains_sym(v) for v in value.values())
    return False


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
        try:
            array = np.asarray(value.detach().cpu().double().numpy() if hasattr(value, "detach") else value)
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise InvalidNetworkError(f"{what} of {self.where} is not numeric: {value!r}") from None
        if not np.all(np.isfinite(array)):
            raise InvalidNetworkError(
                f"{what} of {self.where} contains NaN or infinite values; check the trained weights"
            )
        return array

    def unsupported(self, what: str, supported: Iterable[str], hint: str = "") -> UnsupportedOperatorError:
        return UnsupportedOperatorError(f"{what} ({self.where})", list(supported), hint)

    def invalid(self, message: str) -> InvalidNetworkError:
        return InvalidNetworkError(f"{message} ({self.where})")

    # -- node emission ------------------------------------------------------------------------------

    def _add(self, node: Node) -> None:
        self._rank[node.name] = len(self._nodes)
        self._nodes.append(node)

    @staticmethod
    def _identity_of(node: Node, shape) -> Sym:
        return Sym(shape, {node.name: np.eye(node.size)}, np.zeros(node.size))

    def node_of(self, x: Sym) -> str:
        """The IR node holding ``x``'s value, emitting one affine node for the pending affine function."""
        if len(x.terms) == 1 and not x.bias.any():
            (name, matrix), = x.terms.items()
            if matrix.shape[0] == matrix.shape[1] and np.array_equal(matrix, np.eye(matrix.shape[0])):
                return name
        if not x.terms:
            raise self.invalid("this value does not depend on the network input")
        inputs = tuple(sorted(x.terms, key=self._rank.__getitem__))
        node = AffineNode(f"linear{self._affines}", x.size, inputs, tuple(x.terms[n] for n in inputs), x.bias.copy())
        self._affines += 1
        self._add(node)
        # Later readers of this value then read the new node instead of repeating its function.
        x.terms, x.bias = {node.name: np.eye(node.size)}, np.zeros(node.size)
        return node.name

    def _activate(self, x: Sym, activation) -> Sym:
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
        start, end = start % x.ndim, end % x.ndim
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
        return self._gather(x, np.asarray(self._positions(x.shape)[key]))

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
        axis = axis % ndim
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
        terms = {}
        for name in names:
            width = next(s.terms[name].shape[1] for s in syms if name in s.terms)
            terms[name] = np.vstack([s.terms.get(name, np.zeros((s.size, width))) for s in syms])
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
            terms[name] = terms[name] + matrix if name in terms else matrix
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
        """``a * b`` where one factor is constant."""
        if is_sym(a) and is_sym(b):
            raise self._nonlinear("product")
        x, c = (a, b) if is_sym(a) else (b, a)
        shape = self._broadcast_shape(x, c)
        x, scale = self._expand(x, shape), np.broadcast_to(self.const(c), shape).ravel()
        return Sym(shape, {n: m * scale[:, None] for n, m in x.terms.items()}, x.bias * scale)

    def div(self, a, b) -> Sym:
        """``a / b`` with a constant divisor."""
        if is_sym(b):
            raise self._nonlinear("division")
        shape = self._broadcast_shape(a, b)
        x = self._expand(a, shape)
        divisor = np.broadcast_to(self.const(b, "the divisor"), shape).ravel()
        if not np.all(divisor):
            raise self.invalid("division by zero")
        return Sym(shape, {n: m / divisor[:, None] for n, m in x.terms.items()}, x.bias / divisor)

    def _nonlinear(self, what: str) -> UnsupportedOperatorError:
        return self.unsupported(
            f"{what} of two network values",
            ["products and divisions by constants"],
            "it is not linear, so it cannot be compiled exactly into a MILP",
        )

    def _apply(self, x: Sym, matrix: np.ndarray, shape) -> Sym:
        """``matrix @ x.flat`` reshaped to ``shape``."""
        return Sym(shape, {n: matrix @ m for n, m in x.terms.items()}, matrix @ x.bias)

    def matmul(self, a, b) -> Sym:
        """``a @ b`` (numpy matmul semantics) where one operand is a constant vector or matrix."""
        if is_sym(a) and is_sym(b):
            raise self._nonlinear("matrix product")
        if is_sym(a):
            x, w = a, self.const(b, "the weight")
            if w.ndim > 2 or x.ndim == 0 or x.shape[-1] != w.shape[0]:
                raise self.invalid(f"cannot multiply shapes {x.shape} @ {w.shape}")
            rows = math.prod(x.shape[:-1])
            block = w[None, :] if w.ndim == 1 else w.T
            shape = x.shape[:-1] + w.shape[1:]
            return self._apply(x, block if rows == 1 else np.kron(np.eye(rows), block), shape)
        c, x = self.const(a, "the weight"), b
        if c.ndim > 2 or x.ndim == 0 or c.shape[-1] != x.shape[max(x.ndim - 2, 0)]:
            raise self.invalid(f"cannot multiply shapes {c.shape} @ {x.shape}")
        if x.ndim == 1:
            return self._apply(x, c if c.ndim == 2 else c[None, :], c.shape[:-1])
        cols, batch = x.shape[-1], math.prod(x.shape[:-2])
        block = np.kron(c if c.ndim == 2 else c[None, :], np.eye(cols))
        shape = x.shape[:-2] + c.shape[:-1] + (cols,)
        return self._apply(x, block if batch == 1 else np.kron(np.eye(batch), block), shape)

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
        factor = scale / np.sqrt(var + float(eps))
        offset = shift - self.const(mean, "the running mean") * factor
        axis = 1 if x.ndim >= 2 else 0
        if x.ndim == 0 or x.shape[axis] != channels:
            raise self.invalid(f"batch norm over {channels} channels applied to shape {x.shape}")
        layout = [1] * x.ndim
        layout[axis] = channels
        return self.add(self.mul(x, factor.reshape(layout)), offset.reshape(layout))

    # -- activations --------------------------------------------------------------------------------

    def relu(self, x: Sym) -> Sym:
        return self._activate(x, ReLU())

    def leaky_relu(self, x: Sym, alpha: float) -> Sym:
        alpha = float(alpha)
        if alpha == 0.0:
            return self.relu(x)
        if not alpha < 1.0:
            raise self.unsupported(f"LeakyReLU slope {alpha}", ["negative slopes below 1"])
        return self._activate(x, LeakyReLU(alpha))

    def smooth(self, x: Sym, kind: str, **params) -> Sym:
        """A smooth activation of ``kind`` (:mod:`relumilp.activations.smooth`), compiled through
        certified piecewise-linear sandwiches."""
        from ..activations import get

        return self._activate(x, get(kind, **params))

    def clip(self, x: Sym, low=None, high=None) -> Sym:
        """``min(max(x, low), high)``: ReLU for [0, inf), clipped ReLU for [0, c], clip for a finite
        [a, b]; None means unbounded."""
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
        raise self.unsupported(
            f"clip range [{low:g}, {high:g}]",
            ["[0, inf) (ReLU)", "[a, b] with finite a < b (clip)"],
            "One-sided clipping compiles only from below at 0; use ReLU, ReLU6 or Hardtanh(a, b)",
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

    def maximum(self, x: Sym, c) -> Sym:
        """``max(x, c)`` for a constant ``c`` (broadcast): ReLU at ``c = 0``, else a shifted ReLU."""
        return self._per_element(x, c, lambda v: ReLU() if v == 0.0 else PiecewiseLinear.maximum(v), "the bound")

    def minimum(self, x: Sym, c) -> Sym:
        """``min(x, c)`` for a constant ``c`` (broadcast)."""
        return self._per_element(x, c, PiecewiseLinear.minimum, "the bound")

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
