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

Methods (every result states ``method`` and whether the count is ``exact``):

* ``exact`` (1-D and 2-D inputs): partition the domain (an interval or polygon, the box clipped by
  ``A x <= b``) into activation regions. Cells are split layer by layer along each neuron's breakpoint
  hyperplanes -- within a cell every pre-activation is affine, so a split is the clip of a convex
  polygon by a half-plane (float64, with a small distance tolerance); cells whose length/area is below
  a tiny threshold are dropped, so only full-dimensional regions remain. Also returns the cells.
* ``mip`` (any input dimension, small networks): a depth-first enumeration of the feasible activation
  patterns, one neuron at a time, with one LP in HiGHS per branch: each LP maximises the radius ``t``
  of a ball inside the partial region (every inequality is normalised and must hold with slack ``t``),
  and a branch is kept only if ``t > min_radius``. This is the same set of patterns a MILP solution
  enumeration with no-good cuts would produce, but each pattern costs a few warm-started LPs instead of
  a MILP re-solve with a growing set of cuts, and the interior requirement (which excludes the
  degenerate boundary patterns a plain MILP enumeration would also return) is part of every LP.
  Neurons that the bounds prove stable are fixed to their piece without any LP; deeper in the tree,
  the bounding box of the current region (2d LPs, every few splits) fixes the neurons that are stable
  on it, and a branch whose piece contains the current inscribed ball needs no LP at all. With a time
  limit the result is "at least N" (``exact`` false).
* ``sample`` (any size): the number of distinct patterns seen at random points of the domain and along
  random lines through it -- a lower bound (``exact`` false).

Where cheap (``exact`` and ``mip``), the result also reports ``distinct_affine_maps``: how many
different affine functions ``x -> M x + m`` the network computes over those regions (regions that
share one map are counted once, so this is at most the region count).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..activations import Activation
from ..domain import InputDomain
from ..errors import InvalidDomainError, RelumilpError
from ..backends.highs import new_highs
from ..ir import ActivationNode, Network

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


def _unique_rows(patterns: np.ndarray) -> set[bytes]:
    if patterns.shape[1] == 0:
        return {b""} if patterns.shape[0] else set()
    view = np.ascontiguousarray(patterns).view(np.dtype((np.void, patterns.shape[1])))
    return {row.tobytes() for row in np.unique(view)}


# -- results -----------------------------------------------------------------------------------


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


# -- exact partition for 1-D and 2-D inputs ------------------------------------------------------


def _measure(vertices: np.ndarray) -> float:
    """Length (1-D) or area (2-D, shoelace) of a cell."""
    if vertices.shape[1] == 1:
        return float(vertices[-1, 0] - vertices[0, 0]) if len(vertices) >= 2 else 0.0
    if len(vertices) < 3:
        return 0.0
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _split(vertices: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a cell by the affine function with values ``s`` at its vertices into (s <= 0, s >= 0) parts.

    ``s`` has already been snapped: values within tolerance of 0 are exactly 0, so a vertex on the line
    belongs to both parts and no near-duplicate vertex is created.
    """
    if vertices.shape[1] == 1:
        (a, b), (sa, sb) = vertices[:, 0], s
        p = a + (b - a) * (sa / (sa - sb))
        lo, hi = np.array([[a], [p]]), np.array([[p], [b]])
        return (lo, hi) if sa < 0 else (hi, lo)
    neg, pos = [], []
    k = len(vertices)
    for i in range(k):
        j = (i + 1) % k
        si, sj = s[i], s[j]
        if si >= 0:
            pos.append(vertices[i])
        if si <= 0:
            neg.append(vertices[i])
        if (si > 0 > sj) or (si < 0 < sj):
            point = vertices[i] + (vertices[j] - vertices[i]) * (si / (si - sj))
            pos.append(point)
            neg.append(point)
    return np.array(neg), np.array(pos)


def _initial_cell(domain: InputDomain, eps: float) -> np.ndarray:
    lo, hi = domain.lower, domain.upper
    if domain.size == 1:
        cell = np.array([[lo[0]], [hi[0]]])
    else:
        cell = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    if domain.A is not None:
        for a, b in zip(domain.A, domain.b):
            norm = float(np.linalg.norm(a))
            if norm == 0.0:
                if b < 0:
                    return cell[:0]
                continue
            s = (b - cell @ a) / norm  # >= 0 inside
            s[np.abs(s) <= eps] = 0.0
            if np.all(s >= 0):
                continue
            if np.all(s <= 0):
                return cell[:0]
            cell = _split(cell, s)[1]
    return cell


def _check_interior(domain: InputDomain) -> None:
    if np.any(domain.upper <= domain.lower):
        raise InvalidDomainError(
            "the input domain has no interior (some lower bound equals its upper bound); "
            "linear regions are counted as full-dimensional sets"
        )


def exact_regions(net: Network, domain: InputDomain, rel_tol: float = 1e-10,
                  rel_min_measure: float = 1e-12) -> RegionCount:
    """Partition a 1-D or 2-D input domain into the network's activation regions (exact up to float64).

    A cell is split by a neuron's breakpoint line only where the line's distance to the cell's vertices
    exceeds ``rel_tol`` times the box diameter on both sides; cells whose length/area is below
    ``rel_min_measure`` times the box's are dropped (they are not full-dimensional up to rounding).
    """
    start = time.perf_counter()
    domain.check_size(net.input_size)
    d = net.input_size
    if d not in (1, 2):
        raise RelumilpError(f"exact region counting needs 1 or 2 inputs (the network has {d}); "
                            "use --regions mip or sample")
    _check_interior(domain)
    diameter = float(np.linalg.norm(domain.upper - domain.lower))
    eps = rel_tol * diameter
    min_measure = rel_min_measure * float(np.prod(domain.upper - domain.lower))
    cell = _initial_cell(domain, eps)
    if len(cell) == 0 or _measure(cell) <= min_measure:
        raise InvalidDomainError("the input domain (box and A x <= b) is empty or has no interior")
    plan = _Plan(net)
    regions: list[Region] = []
    stack = [(0, cell, {net.input.name: (np.eye(d), np.zeros(d))}, ())]
    while stack:
        k, cell, maps, pattern = stack.pop()
        maps = plan.evaluate(k, maps)
        act = plan.chunks[k][1]
        if act is None:
            M, m = maps[net.output]
            regions.append(Region(cell, b"".join(pattern), M, m))
            continue
        M, m = maps[act.inputs[0]]
        table = plan.tables[k]
        plan.prune(k, maps)
        for piece_cell, index in _split_layer(cell, M, m, table, eps, min_measure):
            slope, offset = table.slopes[index], table.offsets[index]
            child = dict(maps)
            child[act.name] = (slope[:, None] * M, slope * m + offset)
            stack.append((k + 1, piece_cell, child, pattern + (index.tobytes(),)))
    regions.reverse()
    maps = {_map_key(r.M, r.m) for r in regions}
    patterns = {r.pattern for r in regions}
    note = ""
    if len(patterns) != len(regions):  # cannot happen for convex cells; kept as a self-check
        note = f"{len(regions)} cells share {len(patterns)} patterns"
    return RegionCount(len(patterns), "exact", True, len(maps), time.perf_counter() - start, note, regions=regions)


def _split_layer(cell, M, m, table: Activation, eps: float, min_measure: float):
    """Split ``cell`` by all breakpoint hyperplanes of one activation layer; yield (sub-cell, pieces)."""
    if not table.breakpoints:
        yield cell, np.zeros(M.shape[0], dtype=np.uint8)
        return
    norms = np.linalg.norm(M, axis=1)
    values = cell @ M.T + m  # (vertices, neurons)
    cuts = []
    for b in table.breakpoints:
        shifted = values - b
        margin = eps * norms
        crossing = (shifted.min(axis=0) < -margin) & (shifted.max(axis=0) > margin)
        cuts.extend((int(j), b) for j in np.flatnonzero(crossing))
    pieces = [cell]
    for j, b in cuts:
        g, h, margin = M[j], m[j] - b, eps * norms[j]
        nxt = []
        for piece in pieces:
            s = piece @ g + h
            if not ((s < -margin).any() and (s > margin).any()):
                nxt.append(piece)
                continue
            s = np.where(np.abs(s) <= margin, 0.0, s)
            for part in _split(piece, s):
                if len(part) and _measure(part) > min_measure:
                    nxt.append(part)
        pieces = nxt
    for piece in pieces:
        center = piece.mean(axis=0)
        yield piece, table.pattern(M @ center + m)


def region_optimum(regions: RegionCount, coefficients=None, sense: str = "max") -> tuple[float, np.ndarray]:
    """The global optimum of ``coefficients @ output`` over an exact partition, by vertex enumeration.

    The network is affine on every cell and the cells cover the domain, so the optimum is attained at a
    cell vertex: an exact answer (up to float64) for 1-D/2-D inputs that is independent of the MILP.
    ``coefficients`` defaults to output 0. Returns ``(value, x)``.
    """
    cells = [r for r in regions.regions if r.vertices is not None and len(r.vertices)]
    if not cells:
        raise RelumilpError("vertex enumeration needs the cells of an exact region count")
    best_value, best_x = None, None
    sign = 1.0 if sense == "max" else -1.0
    for r in cells:
        c = np.zeros(r.M.shape[0]) if coefficients is None else np.asarray(coefficients, dtype=np.float64)
        if coefficients is None:
            c[0] = 1.0
        values = r.vertices @ (c @ r.M) + c @ r.m
        i = int(np.argmax(sign * values))
        if best_value is None or sign * values[i] > sign * best_value:
            best_value, best_x = float(values[i]), r.vertices[i].copy()
    return best_value, best_x


# -- LP enumeration for any input dimension ------------------------------------------------------


class _Stop(Exception):
    pass


def _allowed_pieces(table: Activation, lower: np.ndarray, upper: np.ndarray) -> list[tuple[int, ...]]:
    """Per neuron, the pieces whose open interval meets the bounds ``[lower, upper]`` in more than a point."""
    out = []
    for lo, hi in zip(lower, upper):
        if lo >= hi:
            out.append((int(table.pattern(np.array(lo))),))
            continue
        pieces = tuple(p for p in range(table.num_pieces)
                       if max(lo, table.piece_interval(p)[0]) < min(hi, table.piece_interval(p)[1]))
        out.append(pieces or (int(table.pattern(np.array(0.5 * (lo + hi)))),))
    return out


def mip_regions(
    net: Network,
    domain: InputDomain,
    bounds=None,
    time_limit: float | None = 60.0,
    min_radius: float | None = None,
    bound_method: str = "interval",
    refresh_every: int = 8,
) -> RegionCount:
    """Enumerate the full-dimensional activation regions of ``net`` on ``domain`` with LPs (see module doc).

    ``bounds`` (default: :func:`relumilp.bounds.compute_bounds` with ``bound_method``) fix the neurons
    that are stable on the domain. A pattern is counted when its region contains a ball of radius
    ``min_radius`` (default ``1e-7`` times the box diameter). At ``time_limit`` seconds the count so far
    is returned with ``exact=False``. ``refresh_every``: recompute the current region's bounding box
    after this many neuron decisions along a branch (when more than 2d undecided neurons remain).
    """
    import highspy

    start = time.perf_counter()
    domain.check_size(net.input_size)
    _check_interior(domain)
    d = net.input_size
    if bounds is None:
        from ..bounds import compute_bounds

        bounds = compute_bounds(net, domain, bound_method)
    diameter = float(np.linalg.norm(domain.upper - domain.lower))
    eps = 1e-7 * diameter if min_radius is None else float(min_radius)
    inf = highspy.kHighsInf
    h = new_highs()
    # No "threads" option: HiGHS fixes its thread pool process-wide at the first run, and a later
    # instance asking for another count fails every run (seen after a Pyomo solve in the same process).
    for option, value in (("primal_feasibility_tolerance", 1e-9), ("dual_feasibility_tolerance", 1e-9),
                          ("presolve", "off")):
        h.setOptionValue(option, value)
    # columns: x (d), t (the inscribed-ball radius), objective max t
    h.addVars(d, domain.lower, domain.upper)
    h.addVar(-inf, inf)
    h.changeColCost(d, 1.0)
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    idx_all = np.arange(d + 1, dtype=np.int32)
    for i in range(d):  # x_i - t >= l_i,  x_i + t <= u_i
        h.addRow(domain.lower[i], inf, 2, np.array([i, d], dtype=np.int32), np.array([1.0, -1.0]))
        h.addRow(-inf, domain.upper[i], 2, np.array([i, d], dtype=np.int32), np.array([1.0, 1.0]))
    if domain.A is not None:
        for a, b in zip(domain.A, domain.b):
            norm = float(np.linalg.norm(a))
            if norm > 0:
                h.addRow(-inf, b / norm, d + 1, idx_all, np.append(a / norm, 1.0))
            elif b < 0:
                raise InvalidDomainError("the input domain (box and A x <= b) is empty")

    def solve(check_time: bool = True) -> tuple[float, np.ndarray]:
        if check_time and time_limit is not None and time.perf_counter() - start > time_limit:
            raise _Stop
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return -math.inf, None
        col = np.array(h.getSolution().col_value)
        return float(col[d]), col[:d]

    radius, center = solve(check_time=False)
    if radius <= eps:
        raise InvalidDomainError("the input domain (box and A x <= b) is empty or has no interior")
    plan = _Plan(net)
    allowed = [
        _allowed_pieces(plan.tables[k], *bounds[act.inputs[0]]) for k, (_, act) in enumerate(plan.chunks[:-1])
    ]
    found: dict[bytes, bytes] = {}
    counter = {"lps": 1}
    refresh = int(refresh_every)

    def add_rows(g, hh, lo, hi) -> int:
        """Rows for ``lo <= g x + hh <= hi`` with slack ``t`` (normalised); returns how many were added."""
        norm = float(np.linalg.norm(g))
        n = 0
        if math.isfinite(lo):  # g x / |g| - t >= (lo - hh) / |g|
            h.addRow((lo - hh) / norm, inf, d + 1, idx_all, np.append(g / norm, -1.0))
            n += 1
        if math.isfinite(hi):  # g x / |g| + t <= (hi - hh) / |g|
            h.addRow(-inf, (hi - hh) / norm, d + 1, idx_all, np.append(g / norm, 1.0))
            n += 1
        return n

    objective = np.zeros(d + 1)
    objective[d] = 1.0

    def region_box() -> tuple[np.ndarray, np.ndarray]:
        """An outer box of the current region's closure (LPs with t = 0), widened by a safety margin."""
        h.changeColBounds(d, 0.0, 0.0)
        box = np.empty((2, d))
        for i in range(d):
            for row, sense in ((0, highspy.ObjSense.kMinimize), (1, highspy.ObjSense.kMaximize)):
                cost = np.zeros(d + 1)
                cost[i] = 1.0
                h.changeColsCost(d + 1, idx_all, cost)
                h.changeObjectiveSense(sense)
                counter["lps"] += 1
                h.run()
                ok = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
                box[row, i] = h.getInfo().objective_function_value if ok else (domain.lower, domain.upper)[row][i]
        h.changeColBounds(d, -inf, inf)
        h.changeColsCost(d + 1, idx_all, objective)
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        margin = 1e-7 * diameter
        return np.maximum(box[0] - margin, domain.lower), np.minimum(box[1] + margin, domain.upper)

    def drop_rows(n: int) -> None:
        if n:
            total = h.getNumRow()
            h.deleteRows(n, np.arange(total - n, total, dtype=np.int32))

    def filter_by_box(M, m, table, candidates, layer_allowed):
        """Drop the pieces that the region's bounding box rules out, for the neurons in ``candidates``."""
        box_lo, box_hi = region_box()
        mid, half = 0.5 * (box_lo + box_hi), 0.5 * (box_hi - box_lo)
        rows = M[candidates]
        centre_values = rows @ mid + m[candidates]
        spread = np.abs(rows) @ half
        layer_allowed = list(layer_allowed)
        for j, lo, hi in zip(candidates, centre_values - spread, centre_values + spread):
            kept = tuple(p for p in _allowed_pieces(table, np.array([lo]), np.array([hi]))[0] if p in layer_allowed[j])
            layer_allowed[j] = kept or layer_allowed[j]
        return layer_allowed

    def visit_node(k, maps, pattern, center, radius):
        maps = plan.evaluate(k, maps)
        act = plan.chunks[k][1]
        if act is None:
            found.setdefault(b"".join(pattern), _map_key(*maps[net.output]))
            return
        M, m = maps[act.inputs[0]]
        plan.prune(k, maps)
        table = plan.tables[k]
        index = np.zeros(act.size, dtype=np.uint8)
        todo = []
        for j, pieces in enumerate(allowed[k]):
            if len(pieces) == 1:
                index[j] = pieces[0]
            else:
                todo.append(j)
        # at layer 0 the region is the domain, whose box the bounds already used
        visit_neuron(k, act, table, M, m, todo, 0, index, maps, pattern, center, radius, allowed[k],
                     refresh if k > 0 else 0)

    def visit_neuron(k, act, table, M, m, todo, i, index, maps, pattern, center, radius, layer_allowed, fresh):
        if i == len(todo):
            slope, offset = table.slopes[index], table.offsets[index]
            child = dict(maps)
            child[act.name] = (slope[:, None] * M, slope * m + offset)
            visit_node(k + 1, child, pattern + (index.tobytes(),), center, radius)
            return
        if fresh >= refresh and len(todo) - i > 2 * d:
            # Interval bounds of the pre-activations over the bounding box of the current region (2d LPs)
            # fix the neurons that are stable on it, saving one LP each in every branch below.
            layer_allowed = filter_by_box(M, m, table, todo[i:], layer_allowed)
            fresh = 0
        j = todo[i]
        g, hh = M[j], float(m[j])
        norm = float(np.linalg.norm(g))
        if len(layer_allowed[j]) == 1 or norm == 0.0:  # one piece on this region: no rows, no LP
            index[j] = layer_allowed[j][0] if norm > 0.0 else table.pattern(np.array(hh))
            visit_neuron(k, act, table, M, m, todo, i + 1, index, maps, pattern, center, radius, layer_allowed, fresh)
            return
        value = float(g @ center) + hh
        here = int(table.pattern(np.array(value)))
        distance = min((abs(value - b) / norm for b in table.breakpoints), default=math.inf)
        for p in layer_allowed[j]:
            lo, hi = table.piece_interval(p)
            added = add_rows(g, hh, lo, hi)
            if p == here and min(radius, distance) > eps:
                # the ball around the current centre stays inside this piece: feasible without an LP
                sub_center, sub_radius = center, min(radius, distance)
            else:
                counter["lps"] += 1
                sub_radius, sub_center = solve()
                if sub_radius <= eps:
                    drop_rows(added)
                    continue
            index[j] = p
            visit_neuron(k, act, table, M, m, todo, i + 1, index, maps, pattern, sub_center, sub_radius,
                         layer_allowed, fresh + 1)
            drop_rows(added)

    exact = True
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * sum(a.size for a in net.activations) + 1000))
    try:
        visit_node(0, {net.input.name: (np.eye(d), np.zeros(d))}, (), center, radius)
    except _Stop:
        exact = False
    finally:
        sys.setrecursionlimit(limit)
    regions = [Region(None, pattern, np.zeros(0), np.zeros(0)) for pattern in found]
    note = f"{counter['lps']} LPs"
    if not exact:
        note += f"; stopped at the {time_limit:g} s time limit: at least this many"
    return RegionCount(len(found), "mip", exact, len(set(found.values())), time.perf_counter() - start, note,
                       regions=regions)


# -- sampling estimate ---------------------------------------------------------------------------


def _line_points(domain: InputDomain, n_lines: int, per_line: int, rng: np.random.Generator) -> np.ndarray:
    """``per_line`` equally spaced points on each of ``n_lines`` random chords of the domain."""
    anchors = domain.sample(n_lines, rng)
    out = []
    for p in anchors:
        u = rng.normal(size=p.size)
        u /= np.linalg.norm(u) or 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (domain.lower - p) / u
            t2 = (domain.upper - p) / u
        moving = u != 0
        t_lo = float(np.max(np.minimum(t1, t2)[moving])) if moving.any() else 0.0
        t_hi = float(np.min(np.maximum(t1, t2)[moving])) if moving.any() else 0.0
        if domain.A is not None:
            rate, room = domain.A @ u, domain.b - domain.A @ p
            for r, q in zip(rate, room):
                if r > 0:
                    t_hi = min(t_hi, q / r)
                elif r < 0:
                    t_lo = max(t_lo, q / r)
        if t_hi <= t_lo:
            continue
        t = t_lo + (t_hi - t_lo) * (np.arange(per_line) + rng.uniform()) / per_line
        out.append(p + t[:, None] * u)
    return np.concatenate(out) if out else np.zeros((0, domain.size))


def sample_regions(net: Network, domain: InputDomain, samples: int = 10000, seed: int | None = 0,
                   chunk: int = 4096) -> RegionCount:
    """Distinct activation patterns at ``samples`` points: half uniform in the domain, half on random lines.

    A **lower bound** on the number of regions (small regions are easily missed; lines cross many thin
    ones). Points are drawn with ``seed`` for reproducibility.
    """
    start = time.perf_counter()
    domain.check_size(net.input_size)
    rng = np.random.default_rng(seed)
    n_uniform = max(1, samples // 2)
    per_line = 250
    n_lines = max(1, (samples - n_uniform) // per_line)
    points = np.concatenate([domain.sample(n_uniform, rng), _line_points(domain, n_lines, per_line, rng)])
    seen: set[bytes] = set()
    for first in range(0, len(points), chunk):
        seen |= _unique_rows(activation_patterns(net, points[first:first + chunk]))
    note = f"distinct patterns at {len(points)} points ({n_uniform} uniform, {n_lines} random lines): a lower bound"
    return RegionCount(len(seen), "sample", False, None, time.perf_counter() - start, note, samples=len(points))


def count_regions(net: Network, domain: InputDomain, method: str = "auto", *, bounds=None,
                  time_limit: float | None = 60.0, samples: int = 10000, seed: int | None = 0) -> RegionCount:
    """Count the activation regions of ``net`` on ``domain``.

    ``method`` is ``exact`` (1-D/2-D inputs), ``mip`` (LP enumeration, any dimension, small nets),
    ``sample`` (lower bound) or ``auto`` (exact for at most 2 inputs, else sample). The result says
    which method ran and whether the count is exact. This is the count that matters for optimisation
    over the domain; compare it with :func:`regions_upper_bound` for the architecture's worst case.
    """
    if method == "auto":
        method = "exact" if net.input_size <= 2 else "sample"
    if method == "exact":
        return exact_regions(net, domain)
    if method == "mip":
        return mip_regions(net, domain, bounds=bounds, time_limit=time_limit)
    if method == "sample":
        return sample_regions(net, domain, samples=samples, seed=seed)
    raise RelumilpError(f"unknown region method {method!r}; choose one of auto, {', '.join(METHODS)}")


# -- theoretical upper bound -------------------------------------------------------------------


def serra_bound(n0: int, widths: list[int]) -> int:
    r"""Serra, Tjandraatmadja & Ramalingam (2018), Theorem 1, for a ReLU network.

    With input dimension :math:`n_0` and hidden widths :math:`n_1, \dots, n_L`, the number of linear
    regions over all of :math:`\mathbb{R}^{n_0}` is at most

    .. math::
        \sum_{(j_1, \dots, j_L) \in J} \prod_{l=1}^{L} \binom{n_l}{j_l},\qquad
        J = \{ j \in \mathbb{Z}^L : 0 \le j_l \le \min\{n_0, n_1 - j_1, \dots, n_{l-1} - j_{l-1}, n_l\} \}.

    Computed exactly (Python integers) by dynamic programming over the running minimum
    :math:`\min\{n_0, n_1 - j_1, \dots\}`.
    """
    states = {int(n0): 1}  # running minimum -> number of weighted paths
    for n in widths:
        nxt: dict[int, int] = {}
        for budget, weight in states.items():
            for j in range(min(budget, n) + 1):
                key = min(budget, n - j)
                nxt[key] = nxt.get(key, 0) + weight * math.comb(n, j)
        states = nxt
    return sum(states.values())


def arrangement_bound(n0: int, widths: list[int], hyperplanes: list[int]) -> int:
    r"""A product bound for networks whose layers need not be ReLU.

    Layer :math:`l` cuts each region of the layers before it by :math:`m_l` hyperplanes (one per
    breakpoint: :math:`m_l = n_l` for ReLU/LeakyReLU, :math:`2 n_l` for clipped ReLU, 0 for identity)
    in an image space of dimension at most :math:`d_l = \min(n_0, n_1, \dots, n_{l-1})`; an arrangement
    of :math:`m` hyperplanes in dimension :math:`d` has at most :math:`\sum_{j=0}^{d} \binom{m}{j}`
    regions (Zaslavsky), so the network has at most
    :math:`\prod_{l=1}^{L} \sum_{j=0}^{d_l} \binom{m_l}{j}` regions.
    """
    total, dim = 1, int(n0)
    for n, m in zip(widths, hyperplanes):
        total *= sum(math.comb(m, j) for j in range(min(dim, m) + 1))
        dim = min(dim, n)
    return total


def regions_upper_bound(net: Network) -> tuple[int | None, str]:
    """The architecture's maximum number of linear regions over all of input space, and how it was bounded.

    ReLU MLPs: :func:`serra_bound` (Serra et al. 2018, Theorem 1). MLPs with LeakyReLU, clipped ReLU or
    identity layers: :func:`arrangement_bound`. Non-sequential graphs: ``(None, reason)``. The count on
    the input domain (:func:`count_regions`) is what matters for optimisation; this bound is only the
    worst case of the architecture.
    """
    if not net.is_sequential or len(net.activations) != len(net.affines) - 1:
        return None, "not a plain MLP (no architecture bound implemented)"
    widths = [node.size for node in net.activations]
    if all(node.kind == "relu" for node in net.activations):
        return serra_bound(net.input_size, widths), "Serra et al. 2018, Theorem 1"
    planes = [node.size * len(piece_table(node).breakpoints) for node in net.activations]
    return arrangement_bound(net.input_size, widths, planes), "per-layer hyperplane-arrangement product bound"
