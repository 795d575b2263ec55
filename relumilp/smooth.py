r"""Certified optimisation over networks with smooth activations: a certified *interval* on the optimum.

A network with smooth activations (:mod:`relumilp.activations.smooth`) has no exact MILP. Replacing every
smooth neuron ``y = f(x)`` on its bound interval ``[L, U]`` by its certified band
``lower(x) <= y <= upper(x)`` (the incremental encoding of :mod:`relumilp.formulation.pwl`) gives a MILP
whose feasible set contains the graph of the network, so for ``max c^T net(x)``:

* the MILP's (margin-widened) dual bound ``B`` is an upper bound on the true optimum ``v*``;
* any input ``x`` evaluated by the real float64 forward pass gives ``c^T net(x) <= v*``.

:func:`optimize_smooth` (``optimize(..., method="milp")``; on few inputs ``optimize`` prefers input-box
branch and bound, :mod:`relumilp.bab`, whose bounds come from the activations' linear relaxations and
whose status :func:`certified_interval` maps the same way) reports both -- ``objective`` (the best
forward value: the MILP's input, the best of a few samples, each polished by a bounded local optimiser)
and ``bound`` -- with ``gap = |B - obj| / max(1, |obj|)``, the same relative gap as
:func:`relumilp.optimization.certify`. The status is ``optimal`` only when the gap is at most the
tolerance, otherwise ``feasible`` (a certified interval that is wider than asked: the time ran out or
the segment cap was reached).

**Refinement.** While the gap is too large and time remains, the neurons that matter most get twice as
many segments and the MILP is solved again: neuron ``i`` of node ``k`` scores ``w_i * (hi_i(x) -
lo_i(x))``, its band width at the MILP's last point times a bound ``w_i`` on how much one unit of its
output can move the objective (``|c|`` propagated back through ``|W|`` and the activations' slope
bounds over their intervals). The top :data:`REFINE_FRACTION` of the neurons by score (at least one) are
refined. Every round's bound is valid, so the best bound over the rounds is kept.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .errors import RelumilpError
from .limits import Deadline

#: default relative gap for networks with smooth activations (an exact 1e-6 would need huge bands)
SMOOTH_GAP = 1e-3
#: first sandwich tolerance (band width) per neuron, relative to nothing: the outputs of smooth kinds
#: are O(1) on typical bounds
INITIAL_TOLERANCE = 2e-2
#: share of the smooth neurons refined per round
REFINE_FRACTION = 0.25


def certified_interval(result, gap: float, net, domain, coefficients, sense: str):
    """A branch-and-bound answer over a smooth network in this module's terms: its point is polished by
    the local optimiser (the forward pass decides), and an answer with a bound and a point that the time
    limit or the search's own limits left above the gap is a certified interval, status ``feasible``."""
    sign = 1.0 if sense == "max" else -1.0
    if result.x is not None and result.bound is not None:
        x = _polish(net, domain, coefficients, sign, result.x, Deadline())
        value = float(coefficients @ net.forward(x))
        if sign * value > sign * result.objective and sign * (value - result.bound) <= 0.0:
            result.x, result.y, result.objective = x, net.forward(x), value
            result.gap = abs(result.bound - value) / max(1.0, abs(value))
            if result.status == "time_limit" and result.gap <= gap:
                result.status = "optimal"
    if result.status in ("time_limit", "unknown") and result.bound is not None and result.objective is not None:
        cause = "the time limit stopped the search" if result.status == "time_limit" else "the search ended"
        result.status = "feasible"
        result.notes.append(f"{cause} with a gap of {result.gap:.3g} (asked: {gap:g})")
    return result


def _band_rows_factory(segments: dict):
    """Activation rows for :func:`relumilp.formulation.bigm._assemble`: smooth nodes get their bands with
    ``segments[node]`` per neuron, piecewise-linear nodes their exact big-M rows."""
    from .formulation.bigm import _activation_rows

    def rows(asm, node, columns, L, U):
        if node.name not in segments:
            return _activation_rows(asm, node, columns, L, U)
        x, y = columns[node.inputs[0]], columns[node.name]
        return node.activation.band_rows(asm, node.name, x, y, L, U, segments[node.name])

    return rows


def build_sandwich_milp(net, bounds, domain, segments: dict):
    """The MILP of ``net`` with every smooth node's neurons replaced by their bands
    (``segments[node name]`` per neuron); piecewise-linear nodes keep their exact encoding."""
    from .formulation.bigm import _assemble

    return _assemble(net, bounds, domain, None, _band_rows_factory(segments))


def sensitivity(net, bounds, coefficients: np.ndarray) -> dict:
    """``{activation node: w}``: a bound on ``|d objective / d y_i|`` for each output ``y_i`` of the node
    (``|c|`` back through ``|W|`` and the slope bounds of later activations over their intervals)."""
    from .ir import ActivationNode, AffineNode

    weight = {net.output: np.abs(coefficients)}
    out = {}
    for node in reversed(net.order):
        w = weight.get(node.name)
        if w is None:
            continue
        if isinstance(node, ActivationNode):
            out[node.name] = w
            L, U = bounds[node.inputs[0]]
            act = node.activation
            slope = act.slope_bound(L, U) if hasattr(act, "slope_bound") else np.full(L.shape, act.lipschitz)
            weight[node.inputs[0]] = weight.get(node.inputs[0], 0.0) + slope * w
        elif isinstance(node, AffineNode):
            for source, W in zip(node.inputs, node.weights):
                weight[source] = weight.get(source, 0.0) + np.abs(W).T @ w
    return out


def _polish(net, domain, coefficients, sign, x0, deadline):
    """A bounded local optimiser (L-BFGS-B with finite differences) from ``x0`` on box domains: only ever
    a better feasible point, checked by the forward pass."""
    from scipy.optimize import minimize

    if domain.A is not None or deadline.expired():
        return x0
    fun = lambda x: -sign * float(coefficients @ net.forward(np.clip(x, domain.lower, domain.upper)))
    try:
        res = minimize(fun, x0, method="L-BFGS-B", bounds=list(zip(domain.lower, domain.upper)),
                       options={"maxiter": 200})
    except (ValueError, FloatingPointError):  # pragma: no cover - a failed local search is no answer
        return x0
    x = np.clip(res.x, domain.lower, domain.upper)
    return x if fun(x) < fun(x0) else x0


def optimize_smooth(net, domain, coefficients, sense: str, *, gap: float = SMOOTH_GAP, deadline=None,
                    bounds=None, tighten: str = "symbolic", initial_tolerance: float = INITIAL_TOLERANCE,
                    max_rounds: int = 20, samples: int = 256, polish: bool = True, threads=None,
                    log: bool = False, seed: int = 0):
    """Certified interval on ``max``/``min coefficients @ net(x)`` over ``domain`` (module docstring).

    Returns a :class:`relumilp.optimization.SolveResult`; ``stats["rounds"]`` lists, per round, the
    segments and binaries of the MILP, its solve time, and the objective, bound and gap after it.
    """
    from .backends.highs import solve_milp
    from .bounds import compute_bounds
    from .formulation.bigm import start_vector

    started = time.perf_counter()
    deadline = Deadline.of(deadline)
    sign = 1.0 if sense == "max" else -1.0
    if bounds is None:
        bounds = compute_bounds(net, domain, tighten, time_limit=deadline)
    bounded = time.perf_counter()
    smooth_nodes = [node for node in net.activations if getattr(node.activation, "smooth", False)]
    if not smooth_nodes:
        raise RelumilpError("optimize_smooth needs a network with smooth activations")
    for node in smooth_nodes:
        node.activation.check_domain(*bounds[node.inputs[0]], node.name)

    rng = np.random.default_rng(seed)
    points = np.vstack([(domain.lower + domain.upper) / 2, domain.sample(samples, rng)])
    if domain.A is not None:
        points = points[domain.contains(points, tol=0.0)]
    best_x, best = None, -math.inf  # in "maximise sign * objective" terms

    def consider(x):
        nonlocal best_x, best
        if x is None or not domain.contains(x, tol=0.0)[0]:
            return
        value = sign * float(coefficients @ net.forward(x))
        if value > best:
            best_x, best = np.array(x, dtype=np.float64), value

    for x in points[np.argsort(-sign * (net.forward(points) @ coefficients))[:1]] if len(points) else []:
        consider(x)
        if polish:
            consider(_polish(net, domain, coefficients, sign, x, deadline))

    weights = sensitivity(net, bounds, coefficients)
    segments = {node.name: node.activation.segments_for(*bounds[node.inputs[0]], initial_tolerance)
                for node in smooth_nodes}
    bound = math.inf  # best (smallest) bound on sign * optimum
    rounds, notes, status = [], [], None
    for _ in range(max_rounds):
        if deadline.expired():
            notes.append("the time limit stopped the refinement")
            break
        milp = build_sandwich_milp(net, bounds, domain, segments).with_objective(coefficients, sense)
        start = start_vector(net, milp, best_x) if best_x is not None else None
        run = solve_milp(milp, deadline=deadline, mip_rel_gap=0.25 * gap, threads=threads, log=log, start=start)
        if run.bound is not None and math.isfinite(run.bound):
            bound = min(bound, sign * run.bound)
        if run.x is not None:
            x = np.clip(run.x[milp.input_columns], domain.lower, domain.upper)
            consider(x)
            if polish:
                consider(_polish(net, domain, coefficients, sign, x, deadline))
        objective = sign * best if best_x is not None else None
        current_gap = _gap(bound, best, objective)
        rounds.append({"segments": int(sum(int(np.sum(k)) for k in segments.values())),
                       "binaries": int(milp.num_binaries), "status": run.status, "seconds": run.seconds,
                       "objective": objective, "bound": sign * bound if math.isfinite(bound) else None,
                       "gap": current_gap})
        if run.status in ("infeasible", "unbounded", "error", "interrupted"):
            status = run.status
            break
        if current_gap is not None and current_gap <= gap:
            break
        if run.x is None or not _refine(net, milp, run.x, bounds, segments, weights, smooth_nodes):
            notes.append("every band has reached the segment cap" if run.x is not None
                         else "no MILP solution to refine at")
            break
    else:
        notes.append(f"stopped after {max_rounds} refinement rounds")
    return _result(net, sign, best_x, best, bound, gap, status, rounds, notes, started, bounded, bounds)


def _gap(bound, best, objective):
    if objective is None or not math.isfinite(bound):
        return None
    return abs(bound - best) / max(1.0, abs(objective))


def _refine(net, milp, solution, bounds, segments, weights, smooth_nodes) -> bool:
    """Double the segments of the top-scoring neurons (module docstring); False when none can grow."""
    from .activations.smooth import MAX_SEGMENTS

    scores, owners = [], []
    for node in smooth_nodes:
        act, name = node.activation, node.name
        L, U = bounds[node.inputs[0]]
        x = solution[milp.node_columns[node.inputs[0]]]
        t, lo, hi, _ = act.sandwich(L, U, segments[name])
        width = np.array([float(np.interp(v, ti, h) - np.interp(v, ti, l)) for v, ti, l, h in zip(x, t, lo, hi)])
        score = np.where(segments[name] >= MAX_SEGMENTS, -1.0, width * weights[name])
        scores.append(score)
        owners.extend((name, i) for i in range(score.size))
    scores = np.concatenate(scores)
    if not np.any(scores > 0):
        return False
    count = max(1, int(REFINE_FRACTION * scores.size))
    for j in np.argsort(-scores)[:count]:
        if scores[j] <= 0:
            break
        name, i = owners[j]
        segments[name][i] = min(2 * segments[name][i], MAX_SEGMENTS)
    return True


def _result(net, sign, best_x, best, bound, gap, status, rounds, notes, started, bounded, bounds):
    from .optimization import SolveResult

    result = SolveResult(status=status or "feasible", notes=notes)
    if best_x is not None:
        result.x, result.y = best_x, net.forward(best_x)
        result.objective = sign * best
    if math.isfinite(bound):
        if best_x is not None and best > bound:
            notes.append(f"the MILP bound {sign * bound:.17g} is beaten by the forward pass ({result.objective:.17g}): "
                         "numerically unsafe model, no certificate")
            status = "unknown"
        else:
            result.bound = sign * bound
            result.gap = _gap(bound, best, result.objective)
    if status is None:
        if result.gap is not None and result.gap <= gap:
            result.status = "optimal"
        elif result.bound is None:
            result.status = "time_limit" if best_x is not None else "unknown"
    else:
        result.status = status
    total = time.perf_counter() - started
    solve = sum(r["seconds"] for r in rounds)
    result.times = {"bounds": bounded - started, "build": total - (bounded - started) - solve, "solve": solve,
                    "total": total}
    result.stats = {"method": "smooth", "rounds": rounds, "bounds_complete": bounds.complete}
    return result
