"""The network IR: one float64 graph that every frontend produces and every pass reads.

A :class:`Network` is a directed acyclic graph (a ``networkx.DiGraph``) of three kinds of node, each
producing a flat float64 vector:

* :class:`InputNode` -- the network input (one per network), flattened from ``input_shape``;
* :class:`AffineNode` -- ``y = sum_i W_i @ x_i + b`` over one or more predecessors (a dense layer,
  folded normalisation, a residual sum, a concatenation, a convolution, pooling, slicing are all
  affine); each ``W_i`` is a dense numpy array or a scipy CSR array (:mod:`relumilp.matrices`);
* :class:`ActivationNode` -- an element-wise piecewise-linear activation of one predecessor, an
  :class:`~relumilp.activations.Activation` object of one of the registered kinds
  (:mod:`relumilp.activations`).

The numpy forward pass (:meth:`Network.forward`) is the reference every other part of relumilp is
checked against. Networks are immutable: passes such as scaling or pruning build new ones
(:meth:`Network.replace`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace as dc_replace
from functools import cached_property
from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from . import activations as _activations
from . import matrices
from .activations import Activation
from .errors import InvalidNetworkError, ModelFileError


@dataclass(frozen=True, eq=False)
class Node:
    """A node of the IR; ``size`` is the length of the flat vector it produces."""

    name: str
    size: int
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class InputNode(Node):
    """The network input."""


@dataclass(frozen=True, eq=False)
class AffineNode(Node):
    """``y = sum_i weights[i] @ x_{inputs[i]} + bias``; ``weights[i]`` has shape (size, size of input i).

    Each weight is a dense numpy array or a scipy CSR array (convolutions, pooling, gathers); passes
    read them through :mod:`relumilp.matrices`, which never densifies a large one.
    """

    weights: tuple = ()
    bias: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def weight(self) -> np.ndarray:
        """The dense weight matrix of a single-input affine node (the common dense layer).

        A sparse weight is densified here only up to :data:`relumilp.matrices.DENSE_LIMIT` entries
        (a clear error beyond); use :meth:`dense` to choose the limit or ``weights[0]`` for the stored form.
        """
        if len(self.weights) != 1:
            raise AttributeError(f"affine node {self.name!r} has {len(self.weights)} inputs")
        return self.dense(0)

    def dense(self, i: int = 0, limit: int = matrices.DENSE_LIMIT) -> np.ndarray:
        """``weights[i]`` as a dense array, refused beyond ``limit`` entries."""
        return matrices.densify(self.weights[i], limit, f"weights of {self.name!r}")

    @property
    def is_sparse(self) -> bool:
        """True when some weight is stored sparse."""
        return any(matrices.is_sparse(w) for w in self.weights)


@dataclass(frozen=True, eq=False, init=False)
class ActivationNode(Node):
    """An element-wise activation of its single input.

    Built from an :class:`~relumilp.activations.Activation` (``activation=``) or, as before, from a
    kind name and its parameters: ``ActivationNode("a", 4, ("h",), kind=..., **params)``.
    """

    activation: Activation = None

    def __init__(self, name: str, size: int, inputs: tuple[str, ...] = (), activation: Activation | None = None, **spec):
        if activation is None:
            activation = _activations.from_spec(spec)
        elif spec:
            raise InvalidNetworkError(f"activation node {name!r}: give an activation object or a kind, not both")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "activation", activation)

    @property
    def kind(self) -> str:
        return self.activation.kind

    @property
    def alpha(self) -> float:
        """Compatibility view of the format-1 field: the slope below 0 where the kind has one, else 0."""
        return getattr(self.activation, "alpha", 0.0)

    @property
    def cap(self) -> float:
        """Compatibility view of the format-1 field: the cap where the kind has one, else infinity."""
        return getattr(self.activation, "cap", math.inf)

    @property
    def breakpoints(self) -> tuple[float, ...]:
        """The points where the activation changes slope."""
        return self.activation.breakpoints

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the activation element-wise (numpy, float64)."""
        return self.activation.apply(x)


def _frozen(array: np.ndarray) -> bool:
    """True when ``array`` and every array it is a view of are read-only."""
    while isinstance(array, np.ndarray):
        if array.flags.writeable:
            return False
        array = array.base
    return True


def _as_float_array(value, what: str) -> np.ndarray:
    if matrices.is_sparse(value):
        array = matrices.canonical(value)
        if not np.all(np.isfinite(array.data)):
            raise InvalidNetworkError(f"{what} contains NaN or infinite values; check the trained weights")
        for part in (array.data, array.indices, array.indptr):
            part.setflags(write=False)
        return array
    if isinstance(value, np.ndarray) and value.dtype == np.float64 and _frozen(value):
        array = value  # already read-only down to its base (the frontend builder's): no copy of a large weight
    else:
        array = np.array(value, dtype=np.float64)
    if not np.all(np.isfinite(array)):
        raise InvalidNetworkError(f"{what} contains NaN or infinite values; check the trained weights")
    array.setflags(write=False)
    return array


class Network:
    """An immutable ReLU-network graph with a numpy forward pass.

    Parameters
    ----------
    nodes:
        The nodes, in any order; exactly one must be an :class:`InputNode`.
    output:
        Name of the node whose value is the network output.
    input_shape, output_shape:
        Original tensor shapes (without batch dimension); default to the flat sizes.
    name:
        A label used in reports.
    """

    def __init__(
        self,
        nodes: Iterable[Node],
        output: str,
        input_shape: Sequence[int] | None = None,
        output_shape: Sequence[int] | None = None,
        name: str = "network",
        valid_domain=None,
    ):
        nodes = [self._checked(node) for node in nodes]
        self.name = name
        self.graph = nx.DiGraph()
        for node in nodes:
            if node.name in self.graph:
                raise InvalidNetworkError(f"duplicate node name {node.name!r}")
            self.graph.add_node(node.name, node=node)
        for node in nodes:
            for source in node.inputs:
                if source not in self.graph:
                    raise InvalidNetworkError(f"node {node.name!r} reads unknown node {source!r}")
                self.graph.add_edge(source, node.name)
        if not nx.is_directed_acyclic_graph(self.graph):
            raise InvalidNetworkError("the network graph has a cycle; only feed-forward networks compile")
        inputs = [node for node in nodes if isinstance(node, InputNode)]
        if len(inputs) != 1:
            raise InvalidNetworkError(f"a network needs exactly one input node, got {len(inputs)}")
        if output not in self.graph:
            raise InvalidNetworkError(f"output node {output!r} is not in the network")
        self.input = inputs[0]
        self.output = output
        # Keep only what the output depends on, in a deterministic topological order.
        needed = nx.ancestors(self.graph, output) | {output}
        if self.input.name not in needed:
            raise InvalidNetworkError("the network output does not depend on its input")
        self.graph.remove_nodes_from([n for n in list(self.graph) if n not in needed])
        self.order: tuple[Node, ...] = tuple(
            self.graph.nodes[n]["node"] for n in nx.lexicographical_topological_sort(self.graph, key=self._position(nodes))
        )
        for node in self.order:
            self._check_shapes(node)
        self.input_shape = tuple(input_shape) if input_shape is not None else (self.input.size,)
        self.output_shape = tuple(output_shape) if output_shape is not None else (self.output_size,)
        if math.prod(self.input_shape) != self.input.size:
            raise InvalidNetworkError(f"input shape {self.input_shape} does not hold {self.input.size} values")
        if math.prod(self.output_shape) != self.output_size:
            raise InvalidNetworkError(f"output shape {self.output_shape} does not hold {self.output_size} values")
        #: the input domain (an :class:`~relumilp.domain.InputDomain`: a box, and rows ``A x <= b`` if it had
        #: any) outside which this network no longer equals the one it was derived from (set by
        #: :func:`relumilp.pruning.prune`; None: valid everywhere)
        self.valid_domain = None
        if valid_domain is not None:
            from .domain import InputDomain

            self.valid_domain = InputDomain.of(valid_domain, self.input.size)

    # -- construction helpers -------------------------------------------------------------------

    @staticmethod
    def _position(nodes: list[Node]):
        rank = {node.name: i for i, node in enumerate(nodes)}
        return lambda name: rank[name]

    @staticmethod
    def _checked(node: Node) -> Node:
        if not isinstance(node, (InputNode, AffineNode, ActivationNode)):
            raise InvalidNetworkError(f"{type(node).__name__} is not an IR node")
        if int(node.size) < 1:
            raise InvalidNetworkError(f"node {node.name!r} has size {node.size}; sizes must be positive")
        if isinstance(node, AffineNode):
            weights = tuple(_as_float_array(w, f"weights of {node.name!r}") for w in node.weights)
            bias = _as_float_array(node.bias, f"bias of {node.name!r}")
            return dc_replace(node, weights=weights, bias=bias, inputs=tuple(node.inputs))
        if isinstance(node, ActivationNode):
            if not isinstance(node.activation, Activation):
                raise InvalidNetworkError(f"activation {node.name!r} holds no Activation object")
            if len(node.inputs) != 1:
                raise InvalidNetworkError(f"activation {node.name!r} must have exactly one input")
        return node

    def _check_shapes(self, node: Node) -> None:
        sizes = [self.graph.nodes[s]["node"].size for s in node.inputs]
        if isinstance(node, AffineNode):
            if len(node.weights) != len(node.inputs) or not node.inputs:
                raise InvalidNetworkError(f"affine node {node.name!r} needs one weight matrix per input")
            for w, n_in, source in zip(node.weights, sizes, node.inputs):
                if w.shape != (node.size, n_in):
                    raise InvalidNetworkError(
                        f"weights of {node.name!r} from {source!r} have shape {w.shape}, expected {(node.size, n_in)}"
                    )
            if node.bias.shape != (node.size,):
                raise InvalidNetworkError(f"bias of {node.name!r} has shape {node.bias.shape}, expected ({node.size},)")
        elif isinstance(node, ActivationNode) and sizes[0] != node.size:
            raise InvalidNetworkError(f"activation {node.name!r} has size {node.size} but its input has {sizes[0]}")

    @classmethod
    def sequential(
        cls,
        layers: Sequence[tuple[np.ndarray, np.ndarray]],
        activations: Sequence[str | ActivationNode | dict] | str = "relu",
        name: str = "mlp",
        input_shape: Sequence[int] | None = None,
    ) -> "Network":
        """Build an MLP from ``[(W1, b1), ..., (Wk, bk)]`` with an activation after every layer but the last.

        ``activations`` is one kind for all hidden layers, or one entry per hidden layer: a kind name,
        a dict ``{"kind": ..., **params}``, an Activation or an ActivationNode.
        """
        n_hidden = len(layers) - 1
        if isinstance(activations, (str, ActivationNode, dict, Activation)):
            activations = [activations] * n_hidden
        if len(activations) != n_hidden:
            raise InvalidNetworkError(f"{len(layers)} layers need {n_hidden} activations, got {len(activations)}")
        first = np.asarray(layers[0][0])
        if first.ndim != 2:
            raise InvalidNetworkError("layer weights must be 2-D matrices of shape (out, in)")
        nodes: list[Node] = [InputNode("input", first.shape[1])]
        for k, (w, b) in enumerate(layers):
            w = np.asarray(w, dtype=np.float64)
            nodes.append(AffineNode(f"linear{k}", w.shape[0], (nodes[-1].name,), (w,), np.asarray(b, dtype=np.float64)))
            if k < n_hidden:
                spec = activations[k]
                if isinstance(spec, ActivationNode):
                    spec = spec.activation
                elif isinstance(spec, str):
                    spec = _activations.get(spec)
                elif isinstance(spec, dict):
                    spec = _activations.from_spec(spec)
                nodes.append(ActivationNode(f"act{k}", w.shape[0], (nodes[-1].name,), spec))
        return cls(nodes, nodes[-1].name, input_shape=input_shape, name=name)

    @property
    def valid_rows(self) -> tuple | None:
        """``(A, b)`` of :attr:`valid_domain` when it has rows ``A x <= b``, else None."""
        valid = self.valid_domain
        return None if valid is None or valid.A is None else (valid.A, valid.b)

    def replace(self, nodes: Iterable[Node], **kwargs) -> "Network":
        """A new network with some nodes swapped for new ones of the same name (others kept)."""
        swapped = {node.name: node for node in nodes}
        args = dict(output=self.output, input_shape=self.input_shape, output_shape=self.output_shape, name=self.name,
                    valid_domain=self.valid_domain)
        args.update(kwargs)
        return Network([swapped.get(node.name, node) for node in self.order], **args)

    # -- structure -------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Node:
        return self.graph.nodes[name]["node"]

    def __iter__(self):
        return iter(self.order)

    def __repr__(self) -> str:
        return f"Network({self.name!r}, {self.input.size} -> {self.output_size}, {len(self.order)} nodes)"

    @property
    def input_size(self) -> int:
        return self.input.size

    @property
    def output_size(self) -> int:
        return self[self.output].size

    @property
    def has_smooth(self) -> bool:
        """Whether an activation has no exact MILP (a smooth kind: sigmoid, products' squares, ...)."""
        return any(getattr(node.activation, "smooth", False) for node in self.activations)

    @property
    def activations(self) -> list[ActivationNode]:
        """The activation nodes in topological order."""
        return [node for node in self.order if isinstance(node, ActivationNode)]

    @property
    def affines(self) -> list[AffineNode]:
        """The affine nodes in topological order."""
        return [node for node in self.order if isinstance(node, AffineNode)]

    @cached_property
    def is_sequential(self) -> bool:
        """True when every node reads exactly the node before it (a plain MLP chain)."""
        return all(node.inputs == (prev.name,) for prev, node in zip(self.order, self.order[1:]))

    @property
    def hidden_sizes(self) -> list[int]:
        """Widths of the activation layers."""
        return [node.size for node in self.activations]

    def dense_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W, b), ...]`` of a sequential network whose activations are all between affine layers
        (sparse weights densified up to :data:`relumilp.matrices.DENSE_LIMIT` entries)."""
        if not self.is_sequential:
            raise InvalidNetworkError(f"{self.name!r} is not a sequential network")
        return [(node.weight, node.bias) for node in self.affines]

    @cached_property
    def content_hash(self) -> str:
        """A SHA-256 over structure and weights: equal hashes mean the same function is compiled."""
        digest = hashlib.sha256()
        for node in self.order:
            digest.update(f"{type(node).__name__}|{node.name}|{node.size}|{node.inputs}".encode())
            if isinstance(node, AffineNode):
                for w in node.weights:
                    digest.update(_weight_bytes(w))
                digest.update(np.ascontiguousarray(node.bias).tobytes())
            elif isinstance(node, ActivationNode):
                # the format-1 text (kind|alpha|cap) first, so hashes of older kinds -- and caches -- stay valid
                extra = "".join(f"|{k}={v!r}" for k, v in node.activation.params.items() if k not in ("alpha", "cap"))
                digest.update(f"{node.kind}|{node.alpha!r}|{node.cap!r}{extra}".encode())
        digest.update(f"out={self.output}".encode())
        return digest.hexdigest()

    # -- evaluation ------------------------------------------------------------------------------

    def forward_all(self, x) -> dict[str, np.ndarray]:
        """Values of every node for a batch ``x`` of shape (batch, input_size) (or one flat input)."""
        try:
            x = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidNetworkError(f"the input must be numbers (one flat input or a batch of rows): {exc}") from None
        single = x.ndim == 1
        x = x.reshape(1, -1) if single else x.reshape(x.shape[0], -1)
        if x.shape[1] != self.input_size:
            raise InvalidNetworkError(f"input has {x.shape[1]} values, the network expects {self.input_size}")
        values: dict[str, np.ndarray] = {}
        for node in self.order:
            if isinstance(node, InputNode):
                value = x
            elif isinstance(node, AffineNode):
                value = node.bias + sum(matrices.rmatmul(values[s], w) for s, w in zip(node.inputs, node.weights))
            else:
                value = node.apply(values[node.inputs[0]])
            values[node.name] = value
        if single:
            values = {k: v[0] for k, v in values.items()}
        return values

    def forward(self, x) -> np.ndarray:
        """The network output for one flat input or a batch (rows)."""
        return self.forward_all(x)[self.output]

    __call__ = forward

    # -- persistence -----------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the network to a ``.npz`` file (written whole or not at all)."""
        from ._io import atomic_write

        arrays: dict[str, np.ndarray] = {}
        spec = []
        for i, node in enumerate(self.order):
            entry = {"type": type(node).__name__, "name": node.name, "size": node.size, "inputs": list(node.inputs)}
            if isinstance(node, AffineNode):
                for j, w in enumerate(node.weights):
                    if matrices.is_sparse(w):  # CSR parts; the shape is the node's and its input's sizes
                        arrays[f"w{i}_{j}_data"], arrays[f"w{i}_{j}_indices"] = w.data, w.indices
                        arrays[f"w{i}_{j}_indptr"] = w.indptr
                    else:
                        arrays[f"w{i}_{j}"] = w
                arrays[f"b{i}"] = node.bias
            elif isinstance(node, ActivationNode):
                entry.update(node.activation.to_spec())
            spec.append(entry)
        meta = {
            "format": "relumilp-network-1",
            "name": self.name,
            "output": self.output,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "nodes": spec,
        }
        if self.valid_domain is not None:
            valid = self.valid_domain
            meta["valid_domain"] = {"lower": valid.lower.tolist(), "upper": valid.upper.tolist()}
            if valid.A is not None:
                meta["valid_domain"].update(A=valid.A.tolist(), b=valid.b.tolist())
        import json

        def write(handle):
            np.savez(handle, __meta__=np.array(json.dumps(meta)), **arrays)

        atomic_write(path, write, binary=True)

    @classmethod
    def load(cls, path) -> "Network":
        """Read a network written by :meth:`save` (no pickled objects are loaded)."""
        import json

        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["__meta__"]))
                arrays = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise ModelFileError(f"model file not found: {path}") from None
        except Exception as exc:
            raise ModelFileError(f"cannot read {path} as a relumilp network (.npz): {exc}") from None
        found = meta.get("format") if isinstance(meta, dict) else None
        if isinstance(found, str) and found.startswith("relumilp-network-") and found != "relumilp-network-1":
            raise ModelFileError(f"{path} is a relumilp network file of format {found!r}, newer than this "
                                 "relumilp reads (relumilp-network-1): upgrade relumilp")
        if found != "relumilp-network-1":
            raise ModelFileError(f"{path} is not a relumilp network file")
        nodes: list[Node] = []
        for i, entry in enumerate(meta["nodes"]):
            common = dict(name=entry["name"], size=entry["size"], inputs=tuple(entry["inputs"]))
            if entry["type"] == "InputNode":
                nodes.append(InputNode(**common))
            elif entry["type"] == "AffineNode":
                sizes = {e["name"]: e["size"] for e in meta["nodes"]}
                weights = tuple(_stored_weight(arrays, f"w{i}_{j}", (entry["size"], sizes.get(src, 0)))
                                for j, src in enumerate(entry["inputs"]))
                nodes.append(AffineNode(**common, weights=weights, bias=arrays[f"b{i}"]))
            else:  # format-1 files give kind, alpha and cap for every kind; from_spec reads both
                spec = {k: v for k, v in entry.items() if k not in ("type", "name", "size", "inputs")}
                nodes.append(ActivationNode(**common, activation=_activations.from_spec(spec)))
        return cls(nodes, meta["output"], meta["input_shape"], meta["output_shape"], meta["name"],
                   valid_domain=meta.get("valid_domain"))


def _weight_bytes(w) -> bytes:
    """The bytes hashed for a weight: the dense form's up to :data:`relumilp.matrices.DENSE_LIMIT`
    entries (so a matrix hashes the same dense or sparse), else the canonical CSR parts."""
    if not matrices.is_sparse(w):
        return np.ascontiguousarray(w).tobytes()
    if matrices.entries(w) <= matrices.DENSE_LIMIT:
        return np.ascontiguousarray(w.toarray()).tobytes()
    return b"csr" + str(w.shape).encode() + w.indptr.astype(np.int64).tobytes() + w.indices.astype(np.int64).tobytes() + w.data.tobytes()


def _stored_weight(arrays: dict, key: str, shape: tuple[int, int]):
    """A weight written by :meth:`Network.save`: a dense array, or the three parts of a CSR array."""
    if key in arrays:
        return arrays[key]
    import scipy.sparse as sp

    try:
        return sp.csr_array((arrays[f"{key}_data"], arrays[f"{key}_indices"], arrays[f"{key}_indptr"]), shape=shape)
    except KeyError:
        raise ModelFileError(f"the network file lacks weight {key!r}") from None
    except ValueError as exc:
        raise ModelFileError(f"weight {key!r} in the network file is malformed: {exc}") from None
