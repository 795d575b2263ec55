"""Enumeration of the full-dimensional activation patterns with LPs, for any input dimension.

``mip`` method (small networks): a depth-first enumeration of the feasible activation patterns, one
neuron at a time, with one LP in HiGHS per branch: each LP maximises the radius ``t`` of a ball inside
the partial region (every inequality is normalised and must hold with slack ``t``), and a branch is kept
only if ``t > min_radius``. This is the same set of patterns a MILP solution enumeration with no-good
cuts would produce, but each pattern costs a few warm-started LPs instead of a MILP re-solve with a
growing set of cuts, and the interior requirement (which excludes the degenerate boundary patterns a
plain MILP enumeration would also return) is part of every LP. Neurons that the bounds prove stable are
fixed to their piece without any LP; deeper in the tree, the bounding box of the current region (2d LPs,
every few splits) fixes the neurons that are stable on it, and a branch whose piece contains the current
inscribed ball needs no LP at all. With a time limit the result is "at least N" (``exact`` false).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from ..._progress import progress_bar
from ...activations import Activation
from ...backends.highs import new_highs
from ...domain import InputDomain
from ...errors import InvalidDomainError
from ...ir import Network
from ...limits import Deadline
from . import Region, RegionCount, _check_interior, _map_key, _Plan


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
    time_limit: "float | Deadline | None" = 60.0,
    min_radius: float | None = None,
    bound_method: str = "interval",
    refresh_every: int = 8,
    progress: bool = False,
) -> RegionCount:
    """Enumerate the full-dimensional activation regions of ``net`` on ``domain`` with LPs (see module doc).

    ``bounds`` (default: :func:`relumilp.bounds.compute_bounds` with ``bound_method``) fix the neurons
    that are stable on the domain. A pattern is counted when its region contains a ball of radius
    ``min_radius`` (default ``1e-7`` times the box diameter). At ``time_limit`` (seconds or a Deadline) the count so far
    is returned with ``exact=False``. ``refresh_every``: recompute the current region's bounding box
    after this many neuron decisions along a branch (when more than 2d undecided neurons remain).
    ``progress`` shows the LPs solved and the patterns found on stderr.
    """
    import highspy

    start = time.perf_counter()
    deadline = Deadline.of(time_limit)
    domain.check_size(net.input_size)
    _check_interior(domain)
    d = net.input_size
    if bounds is None:
        from ...bounds import compute_bounds

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
        if check_time and deadline.expired():
            raise _Stop
        bar.update()
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return -math.inf, None
        col = np.array(h.getSolution().col_value)
        return float(col[d]), col[:d]

    bar = progress_bar(progress, "regions (LP enumeration)", " LPs")
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
            bar.set_postfix_str(f"{len(found)} regions", refresh=False)
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
        bar.close()
    regions = [Region(None, pattern, np.zeros(0), np.zeros(0)) for pattern in found]
    note = f"{counter['lps']} LPs"
    if not exact:
        note += "; stopped at the time limit: at least this many"
    return RegionCount(len(found), "mip", exact, len(set(found.values())), time.perf_counter() - start, note,
                       regions=regions)
