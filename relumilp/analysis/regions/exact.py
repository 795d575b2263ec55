"""Exact activation regions for 1-D and 2-D inputs, and the optimum over them by vertex enumeration.

``exact`` method: partition the domain (an interval or polygon, the box clipped by ``A x <= b``) into
activation regions. Cells are split layer by layer along each neuron's breakpoint hyperplanes -- within
a cell every pre-activation is affine, so a split is the clip of a convex polygon by a half-plane
(float64, with a small distance tolerance); cells whose length/area is below a tiny threshold are
dropped, so only full-dimensional regions remain. Also returns the cells, on which
:func:`region_optimum` finds the network's optimum independently of the MILP.
"""

from __future__ import annotations

import time

import numpy as np

from ..._progress import progress_bar
from ...activations import Activation
from ...domain import InputDomain
from ...errors import InvalidDomainError, RelumilpError
from ...ir import Network
from . import Region, RegionCount, _check_interior, _map_key, _measure, _Plan


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


def exact_regions(net: Network, domain: InputDomain, rel_tol: float = 1e-10,
                  rel_min_measure: float = 1e-12, progress: bool = False) -> RegionCount:
    """Partition a 1-D or 2-D input domain into the network's activation regions (exact up to float64).

    A cell is split by a neuron's breakpoint line only where the line's distance to the cell's vertices
    exceeds ``rel_tol`` times the box diameter on both sides; cells whose length/area is below
    ``rel_min_measure`` times the box's are dropped (they are not full-dimensional up to rounding).
    ``progress`` shows the cells split so far and the regions found on stderr.
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
    with progress_bar(progress, "regions (exact)", " cells") as bar:
        while stack:
            k, cell, maps, pattern = stack.pop()
            bar.update()
            maps = plan.evaluate(k, maps)
            act = plan.chunks[k][1]
            if act is None:
                M, m = maps[net.output]
                regions.append(Region(cell, b"".join(pattern), M, m))
                if len(regions) % 64 == 0:
                    bar.set_postfix_str(f"{len(regions)} regions", refresh=False)
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
