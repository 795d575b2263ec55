r"""Linear (activation) regions of a network restricted to its input domain.

An *activation pattern* assigns every neuron the piece of its activation it is on (the pieces of its
piece table: ReLU and LeakyReLU 2, clip kinds 3 -- below, linear, saturated; identity 1). The set of
domain points that share one pattern is a convex polyhedron on which the network is affine: an
*activation region* in the sense of Serra, Tjandraatmadja & Ramalingam (2018). Only full-dimensional
regions (nonempty interior) are counted; patterns that occur only on a boundary are not.

**What matters for optimisation is the count on the input domain**, not the architecture's worst case:
a MILP over the domain only has to separate the regions that exist there, and the binaries it needs are
those of the neurons that are unstable on the domain. :func:`regions_upper_bound` gives the theoretical
maximum over all of input space for comparison; trained networks on a bounded domain are typically far
below it.

One module per job; :func:`count_regions` dispatches between the methods (every result states
``method`` and whether the count is ``exact``):

* :mod:`.exact` -- ``exact`` (1-D and 2-D inputs): partition the domain into the regions' cells
  (:func:`exact_regions`), and the vertex-enumeration optimum over those cells (:func:`region_optimum`);
* :mod:`.enumeration` -- ``mip`` (any input dimension, small networks): LP-based depth-first
  enumeration of the feasible activation patterns (:func:`mip_regions`);
* :mod:`.sampling` -- ``sample`` (any size): distinct patterns at sampled points, a lower bound
  (:func:`sample_regions`);
* :mod:`.theory` -- the architecture's theoretical upper bound over all of input space
  (:func:`regions_upper_bound`, :func:`serra_bound`, :func:`arrangement_bound`).

This module keeps what they share: the piece tables and :func:`activation_patterns`, the result types
:class:`Region` and :class:`RegionCount`, and the network cut into a chain of activation nodes.

Where cheap (``exact`` and ``mip``), the result also reports ``distinct_affine_maps``: how many
different affine functions ``x -> M x + m`` the network computes over those regions (regions that
share one map are counted once, so this is at most the region count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...activations import Activation
from ...domain import InputDomain
from ...errors import InvalidDomainError, RelumilpError
from ...ir import ActivationNode, Network

METHODS = ("exact", "mip", "sample")


# -- activation pieces ---------------------------------------------------------------------------


def piece_table(node: ActivationNode) -> Activation:
    """The piece table of an activation node: its :class:`~relumilp.activations.Activation` (breakpoints,
    and on piece ``p`` the map ``slopes[p] x + offsets[p]``; a point on a breakpoint is on the piece above)."""
    return node.activation


def activation_patterns(net: Network, x: np.ndarray) -> np.ndarray:
    """The activation pattern of every row of ``x``: a uint8 array (batch, total neurons) of piece indices."""
    values = net.forward_all(np.atleast_2d(x))
    parts = [piece_table(node).pattern(values[node.inputs[0]]) for node in net.activations]
    if not parts:
        return np.zeros((np.atleast_2d(x).shape[0], 0), dtype=np.uint8)
    return np.concatenate(parts, axis=1)


# -- results -----------------------------------------------------------------------------------


def _measure(vertices: np.ndarray) -> float:
    """Length (1-D) or area (2-D, shoelace) of a cell."""
    if vertices.shape[1] == 1:
        return float(vertices[-1, 0] - vertices[0, 0]) if len(vertices) >= 2 else 0.0
    if len(vertices) < 3:
        return 0.0
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass
class Region:
    """One activation region: its cell (``vertices``, (k, d); 2-D: a convex polygon in order), its pattern
    (piece index per neuron, all activation nodes concatenated) and the affine output map ``M x + m``."""

    vertices: np.ndarray | None
    pattern: bytes
    M: np.ndarray
    m: np.ndarray

    @property
    def measure(self) -> float:
        return _measure(self.vertices) if self.vertices is not None else float("nan")


@dataclass
class RegionCount:
    """A count of activation regions on an input domain.

    ``count`` is exact when ``exact`` is true; otherwise it is a lower bound (``sample``, or ``mip``
    stopped by its time limit: "at least ``count``"). ``distinct_affine_maps`` is the number of
    different affine maps over the regions found (None where not computed). ``regions`` holds the
    cells for ``exact`` (for plotting) and the patterns for ``mip``.
    """

    count: int
    method: str
    exact: bool
    distinct_affine_maps: int | None = None
    time: float = 0.0
    note: str = ""
    samples: int | None = None
    regions: list[Region] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        """``"N"`` or ``"at least N"``, with the method."""
        return f"{'' if self.exact else 'at least '}{self.count} ({self.method})"

    def to_json(self) -> dict:
        data = {
            "count": int(self.count),
            "method": self.method,
            "exact": bool(self.exact),
            "distinct_affine_maps": None if self.distinct_affine_maps is None else int(self.distinct_affine_maps),
            "time": round(float(self.time), 6),
            "note": self.note,
        }
        if self.samples is not None:
            data["samples"] = int(self.samples)
        return data


# -- the network as a chain of activation nodes --------------------------------------------------


class _Plan:
    """The topological order cut after every activation node: ``chunks[k]`` = (affine nodes to evaluate,
    activation node k or None for the final chunk). Works for any DAG, not only sequential MLPs."""

    def __init__(self, net: Network):
        self.net = net
        chunks, pending = [], []
        for node in net.order[1:]:
            if isinstance(node, ActivationNode):
                chunks.append((pending, node))
                pending = []
            else:
                pending.append(node)
        chunks.append((pending, None))
        self.chunks = chunks
        self.tables = [piece_table(act) for _, act in chunks[:-1]]
        # index of the last chunk that reads each node (so cells do not carry maps they no longer need)
        last: dict[str, int] = {}
        for k, (affines, act) in enumerate(chunks):
            for node in affines + ([act] if act is not None else []):
                for source in node.inputs:
                    last[source] = k
        last[net.output] = len(chunks)
        self.last_use = last

    def evaluate(self, k: int, maps: dict) -> dict:
        """Copy of ``maps`` plus the affine maps ``(M, m)`` of chunk ``k``'s affine nodes."""
        maps = dict(maps)
        for node in self.chunks[k][0]:
            M = sum(w @ maps[s][0] for s, w in zip(node.inputs, node.weights))
            m = node.bias + sum(w @ maps[s][1] for s, w in zip(node.inputs, node.weights))
            maps[node.name] = (M, m)
        return maps

    def prune(self, k: int, maps: dict) -> None:
        for name in [n for n in maps if self.last_use.get(n, -1) <= k]:
            del maps[name]


def _map_key(M: np.ndarray, m: np.ndarray) -> bytes:
    """A hashable key of an affine map, rounded to ~9 significant digits of its scale."""
    flat = np.concatenate([M.ravel(), m.ravel()])
    scale = max(1.0, float(np.max(np.abs(flat)))) if flat.size else 1.0
    return np.round(flat / scale, 9).tobytes()


def _check_interior(domain: InputDomain) -> None:
    if np.any(domain.upper <= domain.lower):
        raise InvalidDomainError(
            "the input domain has no interior (some lower bound equals its upper bound); "
            "linear regions are counted as full-dimensional sets"
        )


# -- the methods (imported after the shared definitions above, which they import) ----------------

from .enumeration import mip_regions  # noqa: E402
from .exact import exact_regions, region_optimum  # noqa: E402
from .sampling import sample_regions  # noqa: E402
from .theory import arrangement_bound, regions_upper_bound, serra_bound  # noqa: E402


def count_regions(net: Network, domain: InputDomain, method: str = "auto", *, bounds=None,
                  time_limit: float | None = 60.0, samples: int = 10000, seed: int | None = 0,
                  progress: bool = False) -> RegionCount:
    """Count the activation regions of ``net`` on ``domain``.

    ``method`` is ``exact`` (1-D/2-D inputs), ``mip`` (LP enumeration, any dimension, small nets),
    ``sample`` (lower bound) or ``auto`` (exact for at most 2 inputs, else sample). The result says
    which method ran and whether the count is exact. This is the count that matters for optimisation
    over the domain; compare it with :func:`regions_upper_bound` for the architecture's worst case.
    ``progress`` shows the counting on stderr. ``time_limit`` bounds ``mip`` and ``sample``.
    """
    if method == "auto":
        method = "exact" if net.input_size <= 2 else "sample"
    if method == "exact":
        return exact_regions(net, domain, progress=progress)
    if method == "mip":
        return mip_regions(net, domain, bounds=bounds, time_limit=time_limit, progress=progress)
    if method == "sample":
        return sample_regions(net, domain, samples=samples, seed=seed, progress=progress, time_limit=time_limit)
    raise RelumilpError(f"unknown region method {method!r}; choose one of auto, {', '.join(METHODS)}")


__all__ = [
    "METHODS", "Region", "RegionCount", "activation_patterns", "arrangement_bound", "count_regions",
    "exact_regions", "mip_regions", "piece_table", "region_optimum", "regions_upper_bound", "sample_regions",
    "serra_bound",
]
