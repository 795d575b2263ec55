r"""Verify VNN-LIB properties: does any input of a region reach the property's unsafe output set?

:func:`verify` answers ``holds`` (no input of any region reaches an unsafe set), ``violated`` (with a
counterexample re-checked by the float64 forward pass) or ``unknown`` (time limit, or a candidate that
failed the re-check and could not be repaired). Each input region of the property is handled in turn:

1. **Falsification by sampling.** The box centre, its corners (up to 10 inputs) and ``attack_samples``
   uniform points are pushed through :meth:`Network.forward`; a point in an unsafe set answers
   ``violated`` at once (``attack_samples=0`` switches this off).
2. **Specification layer and bounds.** All rows of the region's unsafe conjunctions ``C_j y <= d_j``
   are stacked (duplicates once) into ``G y - h``, and this affine map is appended to the network as one
   more affine node, so the network's outputs become the *margins* ``g = G y - h`` (``g_r <= 0`` for
   every row of conjunction ``j``: ``y`` is in unsafe set ``j``). Bounds (``tighten``) are then computed
   on the margins directly, which is much tighter than bounding ``y`` and combining. A conjunction with
   ``max_r lower(g_r) > 0`` is unreachable and is dropped; when none is left the region holds.
3. **MILP.** The big-M model of the margin network (:func:`~relumilp.pipeline.compile_network`) is
   extended in matrix form with a variable ``t``, the max-violation, and solved with HiGHS::

       min t   s.t.  g_r <= t  for r in rows(j)           (one conjunction j)
                     t_lo <= t <= 0

   Several conjunctions are either solved one MILP each (``disjunction="split"``, the default: most
   promising first, i.e. smallest ``max_r lower(g_r)``, stopping at a violation) or encoded in one MILP
   (``disjunction="bigm"``): binaries ``delta_j`` pick one, ``sum_j delta_j = 1``, and
   ``g_r - t <= M_r (1 - delta_j)`` with ``M_r = upper(g_r) - t_lo`` -- a valid big-M because the
   margin bounds are sound and ``t >= t_lo``, where ``t_lo = min_j max_{r in j} lower(g_r)`` is a
   lower bound on the optimum. Measured on 12 random 4-24-24-6 networks with a 5-way disjunction and
   on the leaf MILPs of ACAS Xu properties 5 and 9, splitting took less than half the total MILP time
   (bigm was faster on 3 of the 12 networks and timed out on one).
   The column bound ``t <= 0`` makes any feasible point a candidate counterexample (HiGHS stops at the
   first one, ``mip_max_improving_sols = 1``) and an *infeasible* MILP a proof that
   ``min max_r g_r > 0`` (up to HiGHS's feasibility tolerances, 1e-6 by default): the region holds.
   Minimising ``t`` (rather than a zero objective) steers the search to the most violating points and
   gives, at a time limit, a dual bound on the margin (reported in ``details``).
4. **Input splitting** (``input_split``, default on for networks with at most 16 inputs, such as ACAS
   Xu's 5). A single big-M MILP over a whole ACAS Xu region can run for minutes (the unsafe margins
   are ~1e-2 while the root bounds are ~1e1). Instead, the region's box is split branch-and-bound
   style: batches of sub-boxes get sound symbolic bounds (:class:`_BoxBounds`, intersected with their
   parent's); a box is closed when every conjunction has a row with a positive lower bound, its centre
   is tried as a counterexample, and a box with at most ``leaf_binaries`` unstable neurons (or
   ``max_depth`` halvings deep) is decided by the MILP of step 3 over that box -- small and fast.
   Boxes are split in half along the input with the largest ``|Λ_i| * width_i``, where ``Λ`` are the
   input coefficients of the weakest conjunction's linear lower bound. The root bounds of step 2 seed
   every box; with splitting the default ``tighten`` is ``symbolic`` (LP-OBBT at the root costs more
   than it saves, see the ACAS Xu measurements in ``benchmarks/results``), without it ``lp``.
5. **Re-check.** A candidate's input is clipped into the box and the float64 forward pass of the
   *original* network (one point, :meth:`Network.forward`) must satisfy some unsafe conjunction exactly
   (and the input rows ``A x <= b`` exactly). If a MILP candidate does not (big-M round-off,
   integrality tolerance), the LP with the binaries fixed at the candidate's values is solved for the
   most violating point of that activation pattern and checked again; if that fails too the answer is
   ``unknown``, never a false ``violated``.

``holds`` rests on sound bounds (interval/symbolic/LP bounds carry float64 round-off margins) and on
HiGHS reporting a MILP infeasible, which is exact only up to its feasibility tolerances: a violation
smaller than about 1e-6 of the model's scale can be missed. ``time_limit`` covers the whole call:
bound computation stops at the deadline with the sound bounds it has, and a region not decided by then
is ``unknown``. Ctrl-C stops the call promptly with ``unknown`` and ``details["interrupted"]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .domain import InputDomain
from .errors import RelumilpError
from .backends.highs import swallow_banner
from .bounds.rounding import widen
from .formulation.milp import MILP
from .ir import AffineNode, Network
from .limits import Deadline

RESULTS = ("holds", "violated", "unknown")
DISJUNCTIONS = ("bigm", "split")


@dataclass
class VerificationResult:
    """The answer of :func:`verify`.

    ``result`` is ``holds``, ``violated`` or ``unknown``; ``counterexample`` is ``{"x": [...], "y": [...]}``
    (``y`` = float64 forward pass at ``x``) for ``violated``, else None; ``time`` the wall time in
    seconds; ``details`` per-region diagnostics (how each region was decided, bound and MILP times,
    model sizes, MILP status and dual bound).
    """

    result: str
    counterexample: dict | None
    time: float
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        cex = None
        if self.counterexample is not None:
            cex = {k: [float(v) for v in self.counterexample[k]] for k in ("x", "y")}
        out = {"result": self.result, "counterexample": cex, "time": round(self.time, 6)}
        if self.details.get("interrupted"):
            out["interrupted"] = True
        return out

    def vnncomp_text(self) -> str:
        """The VNN-COMP result-file text: ``unsat`` / ``sat`` + assignment / ``timeout`` (for unknown)."""
        if self.result == "holds":
            return "unsat\n"
        if self.result == "violated":
            x, y = self.counterexample["x"], self.counterexample["y"]
            parts = [f"(X_{i} {_number(v)})" for i, v in enumerate(x)]
            parts += [f"(Y_{j} {_number(v)})" for j, v in enumerate(y)]
            return "sat\n(" + "\n ".join(parts) + ")\n"
        return "timeout\n"


# -- helpers ----------------------------------------------------------------------------------------


def _number(value) -> str:
    """A float in positional notation that reads back exactly (VNN-LIB has no exponent syntax)."""
    return np.format_float_positional(float(value), unique=True, trim="0")

def spec_network(net: Network, G: np.ndarray, h: np.ndarray) -> Network:
    """The network ``x -> G net(x) - h``: the spec rows appended as one more affine node.

    Appended, not folded into the last layer: the margins must be computed from the very outputs the
    float64 forward pass produces, so that bounds on them (which hold for this network's forward
    pass, rounding included) also decide the property's own check ``C y <= d`` at exact equality.
    Back-substitution composes ``G`` with the last layer, so symbolic bounds lose nothing.
    """
    G = np.asarray(G, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    spec = AffineNode("spec_margin", G.shape[0], (net.output,), (G,), -h)
    return Network([*net.order, spec], spec.name, input_shape=net.input_shape, name=f"{net.name}+spec")


def _stack_rows(outputs) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Unique rows ``G, h`` over all conjunctions and each conjunction's row indices.

    A conjunction without rows (every output is unsafe) gets the always-true row ``0 <= 0``.
    """
    index: dict[bytes, int] = {}
    rows, rhs, members = [], [], []
    m = outputs[0].C.shape[1]
    for out in outputs:
        C, d = out.C, out.d
        if out.num_rows == 0:
            C, d = np.zeros((1, m)), np.zeros(1)
        mine = []
        for c, v in zip(C, d):
            key = np.append(c, v).tobytes()
            if key not in index:
                index[key] = len(rows)
                rows.append(c)
                rhs.append(v)
            mine.append(index[key])
        members.append(sorted(set(mine)))
    return np.array(rows), np.array(rhs), members


def _check_candidate(net: Network, domain: InputDomain, outputs, x) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x, y)`` when ``x`` (clipped into the box) is in the region and ``net(x)`` in an unsafe set, exactly."""
    x = np.clip(np.asarray(x, dtype=np.float64).ravel(), domain.lower, domain.upper)
    if domain.A is not None and np.any(domain.A @ x > domain.b):
        return None
    y = net.forward(x)
    if any(out.contains(y)[0] for out in outputs):
        return x, y
    return None


def _attack(net: Network, domain: InputDomain, outputs, samples: int, rng) -> tuple | None:
    """A counterexample among the centre, the corners (<= 10 inputs) and ``samples`` random points.

    ``samples <= 0`` switches the search off entirely.
    """
    if samples <= 0:
        return None
    points = [(domain.lower + domain.upper) / 2]
    n = domain.size
    if n <= 10:
        corners = np.array(np.meshgrid(*[[0.0, 1.0]] * n, indexing="ij")).reshape(n, -1).T
        points.append(domain.lower + corners * (domain.upper - domain.lower))
    if samples > 0:
        points.append(domain.sample(samples, rng))
    X = np.vstack(points)
    return _first_counterexample(net, domain, outputs, X)


def _first_counterexample(net: Network, domain: InputDomain, outputs, X: np.ndarray) -> tuple | None:
    """The first row of ``X`` that is a counterexample, confirmed by the single-point forward pass."""
    X = X[domain.contains(X, tol=0.0)]
    if X.shape[0] == 0:
        return None
    Y = net.forward(X)
    hit = np.zeros(X.shape[0], dtype=bool)
    for out in outputs:
        hit |= out.violation(Y) <= 1e-9  # batched products may round differently: confirm below
    for i in np.flatnonzero(hit)[:32]:
        checked = _check_candidate(net, domain, outputs, X[i])
        if checked is not None:
            return checked
    return None


def _extend(milp: MILP, lower, upper, integer, rows: list[tuple[dict, float, float]]) -> MILP:
    """``milp`` plus new columns (bounds, integrality) and rows ``lo <= sum coef * v <= hi``.

    Each row is ``({column: coefficient}, lo, hi)``; new columns are numbered after the old ones.
    """
    n_old, m_old = milp.num_columns, milp.num_rows
    n_new = len(lower)
    r_idx, c_idx, vals = [], [], []
    for i, (coefs, _, _) in enumerate(rows):
        for c, v in coefs.items():
            r_idx.append(i)
            c_idx.append(c)
            vals.append(v)
    extra = sp.csr_array((vals, (r_idx, c_idx)), shape=(len(rows), n_old + n_new))
    A = sp.vstack([sp.hstack([milp.A, sp.csr_array((m_old, n_new))]), extra]).tocsr()
    return MILP(**{
        **milp.__dict__,
        "col_lower": np.concatenate([milp.col_lower, lower]),
        "col_upper": np.concatenate([milp.col_upper, upper]),
        "integrality": np.concatenate([milp.integrality, np.asarray(integer, dtype=bool)]),
        "A": A,
        "row_lower": np.concatenate([milp.row_lower, [r[1] for r in rows]]),
        "row_upper": np.concatenate([milp.row_upper, [r[2] for r in rows]]),
    })


#: what the solver's word on ``min t`` is worth, relative to the magnitudes that make up the margins
#: (:func:`decision_slack`): ten times the feasibility tolerance of the equilibrated model, per layer
UNSAFE_SLACK = 1e-8


def decision_slack(compiled) -> float:
    """The smallest ``min t`` a MILP may claim and still decide ``holds``.

    Every row of the equilibrated model holds to its feasibility tolerance relative to its largest
    term, and errors pass through the layers; so the slack is :data:`UNSAFE_SLACK` times the number
    of affine layers times the largest term of any layer (``|W| max|x| + |b|`` from the bounds).
    """
    net, bounds = compiled.network, compiled.bounds
    largest = 0.0
    for node in net.affines:
        terms = np.abs(node.bias) + sum(
            np.maximum(np.abs(bounds.lower[s]), np.abs(bounds.upper[s])) @ np.abs(w).T
            for s, w in zip(node.inputs, node.weights))
        largest = max(largest, float(np.max(terms, initial=0.0)))
    return UNSAFE_SLACK * len(net.affines) * max(largest, np.finfo(float).tiny)


def unsafe_milp(milp: MILP, g_lower, g_upper, members: list[list[int]], t_upper: float | None = None) -> tuple[MILP, int]:
    """The max-violation MILP of the union of conjunctions ``members`` (rows of the margin outputs).

    Returns the extended MILP (objective ``min t``) and the column of ``t``. See the module docstring.
    """
    g = milp.output_columns
    n = milp.num_columns
    t = n
    t_lo = min(max(g_lower[r] for r in rows) for rows in members)
    if t_upper is None:
        t_upper = 0.0
    t_hi = min(t_upper, max(max(g_upper[r] for r in rows) for rows in members))
    t_hi = max(t_hi, t_lo)
    rows: list[tuple[dict, float, float]] = []
    if len(members) == 1:
        lower, upper, integer = [t_lo], [t_hi], [False]
        for r in members[0]:
            rows.append(({int(g[r]): 1.0, t: -1.0}, -np.inf, 0.0))
    else:
        k = len(members)
        lower, upper, integer = [t_lo] + [0.0] * k, [t_hi] + [1.0] * k, [False] + [True] * k
        for j, member in enumerate(members):
            delta = n + 1 + j
            for r in member:
                big_m = g_upper[r] - t_lo
                if big_m <= 0.0:  # g_r <= upper(g_r) <= t_lo <= t always
                    continue
                rows.append(({int(g[r]): 1.0, t: -1.0, delta: big_m}, -np.inf, big_m))
        rows.append(({n + 1 + j: 1.0 for j in range(k)}, 1.0, 1.0))
    extended = _extend(milp, lower, upper, integer, rows)
    objective = np.zeros(extended.num_columns)
    objective[t] = 1.0
    extended.objective = objective
    extended.sense = "min"
    return extended, t


def _solve_unsafe(milp: MILP, t: int, deadline, threads, log, highs_options, first_only: bool) -> dict:
    """Run HiGHS (the equilibrated session) on an unsafe-set MILP.

    Returns ``{"status", "solution", "objective", "bound", "nodes", "time", "numerics"}``; ``bound`` is a
    lower bound on ``min t`` already widened by the session's margin. With ``first_only`` HiGHS stops at
    its first feasible point (a candidate counterexample).
    """
    from .backends.highs import solve_milp

    run = solve_milp(milp, deadline=deadline, threads=threads, log=log, options=highs_options,
                     stop_at_first_solution=first_only, on_interrupt="raise")
    return {"status": run.status, "time": run.seconds, "nodes": run.nodes, "bound": run.bound,
            "solution": run.x, "objective": run.objective, "numerics": run.numerics, "notes": run.notes}


def _repair(milp: MILP, t: int, solution: np.ndarray, deadline, threads) -> np.ndarray | None:
    """The most violating point of the candidate's activation pattern (binaries fixed; an LP)."""
    from .backends.highs import solve_milp

    lower, upper = milp.col_lower.copy(), milp.col_upper.copy()
    fixed = np.round(solution[milp.integrality])
    lower[milp.integrality] = upper[milp.integrality] = fixed
    upper[t] = np.inf
    lp = MILP(**{**milp.__dict__, "col_lower": lower, "col_upper": upper,
                 "integrality": np.zeros_like(milp.integrality)})
    run = solve_milp(lp, deadline=deadline, threads=threads, on_interrupt="raise")
    return run.x if run.status == "optimal" else None


# -- input splitting (branch and bound over input boxes) ---------------------------------------------


class _BoxBounds:
    """Sound bounds of the margin network over a batch of sub-boxes of the input (torch, float64).

    The same relaxations as :mod:`relumilp.bounds.symbolic` (CROWN-style back-substitution, intersected
    with interval arithmetic and with bounds already valid on each box -- its parent's), specialised
    for branch and bound: back-substitution is run only for the neurons whose phase the box's current
    bounds leave undecided (and for every margin output), gathered per box and padded to the batch's
    largest count. Deep in the tree most neurons are stable, so this is several times cheaper than
    bounding every neuron. As in :func:`relumilp.bounds.symbolic.symbolic_bounds`, back-substituted
    bounds carry the round-off margin, interval steps are rounded outward, and the result is widened
    for the forward pass's rounding, so every bound holds for the float64 forward pass.
    """

    def __init__(self, net: Network):
        import torch

        from .bounds.symbolic import network_ops, roundoff_margin

        self.torch = torch
        self.net = net
        self.roundoff = roundoff_margin(net)
        self.ops = network_ops(net)
        kinds = {op.name: op.kind for op in self.ops}
        feeds_activation = {node.inputs[0] for node in net.activations}
        self.refine = {
            op.name: ("all" if op.name == net.output else "unstable")
            for op in self.ops
            if op.kind == "affine" and (op.name == net.output or op.name in feeds_activation)
            and not all(kinds[src] == "input" for src in op.inputs)
        }
        self.acts_of = {node.inputs[0]: node for node in net.activations}

    def __call__(self, L: np.ndarray, U: np.ndarray, start: dict[str, tuple[np.ndarray, np.ndarray]]):
        from .bounds.base import phases
        from .bounds.symbolic import affine_interval

        torch = self.torch
        lo: dict = {}
        hi: dict = {}
        relax: dict = {}
        with torch.no_grad():
            for index, op in enumerate(self.ops):
                if op.kind == "input":
                    l, u = torch.from_numpy(L), torch.from_numpy(U)
                elif op.kind == "affine":
                    l, u = affine_interval(op, lo, hi, outward=True)
                    l, u = self._intersect(l, u, start.get(op.name))
                    mode = self.refine.get(op.name)
                    if mode is not None:
                        if mode == "all":
                            mask = torch.ones_like(l, dtype=torch.bool)
                        else:
                            ph = phases(self.acts_of[op.name], l.numpy(), u.numpy())
                            mask = torch.from_numpy(~ph.stable_inactive)  # off the identity piece: no bound needed
                        l, u = self._refine(index, l, u, mask, lo, hi, relax)
                else:
                    src = op.inputs[0]
                    l, u = op.act.interval_torch(lo[src], hi[src])
                    l, u = self._intersect(l, u, start.get(op.name))
                    relax[op.name] = op.act.linear_relaxation(lo[src], hi[src])
                lo[op.name], hi[op.name] = l, u
        return widen(self.net, {k: v.numpy() for k, v in lo.items()}, {k: v.numpy() for k, v in hi.items()})

    def _intersect(self, l, u, given):
        if given is None:
            return l, u
        torch = self.torch
        gl, gu = torch.from_numpy(given[0]), torch.from_numpy(given[1])
        nl, nu = torch.maximum(l, gl), torch.minimum(u, gu)
        crossed = nl > nu  # only by round-off: keep the looser bound there
        return torch.where(crossed, torch.minimum(l, gl), nl), torch.where(crossed, torch.maximum(u, gu), nu)

    def _refine(self, index, l, u, mask, lo, hi, relax):
        """Intersect ``[l, u]`` with back-substituted bounds on the masked neurons (per box)."""
        from .bounds.symbolic import back_substitute

        torch = self.torch
        batch, m = l.shape
        count = int(mask.sum(dim=1).max()) if mask.numel() else 0
        if count == 0:
            return l, u
        # per box, the masked neurons first (padding with unmasked ones is harmless: still valid bounds)
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :count]  # (B, r)
        eye = torch.nn.functional.one_hot(order, m).to(l.dtype)  # (B, r, m)
        upper, mag = back_substitute(self.ops, index, lo, hi, relax, coefficients=torch.cat([eye, -eye], dim=1))
        su = upper[:, :count] + self.roundoff * (1.0 + mag[:, :count])
        sl = -upper[:, count:] - self.roundoff * (1.0 + mag[:, count:])
        cur_l, cur_u = l.gather(1, order), u.gather(1, order)
        new_l, new_u = torch.maximum(cur_l, sl), torch.minimum(cur_u, su)
        crossed = new_l > new_u
        new_l, new_u = torch.where(crossed, cur_l, new_l), torch.where(crossed, cur_u, new_u)
        return l.scatter(1, order, new_l), u.scatter(1, order, new_u)

    def input_coefficients(self, lo: dict, hi: dict) -> np.ndarray:
        """``Λ`` of shape (B, k, n): the margins' lower bounds are ``Λ x + const`` minimised over the box."""
        from .bounds.symbolic import back_substitute

        torch = self.torch
        with torch.no_grad():
            lo_t = {k: torch.from_numpy(v) for k, v in lo.items()}
            hi_t = {k: torch.from_numpy(v) for k, v in hi.items()}
            relax = {op.name: op.act.linear_relaxation(lo_t[op.inputs[0]], hi_t[op.inputs[0]])
                     for op in self.ops if op.kind == "act"}
            index = next(i for i, op in enumerate(self.ops) if op.name == self.net.output)
            k = self.ops[index].size
            batch = lo[self.net.output].shape[0]
            minus_eye = -torch.eye(k, dtype=torch.float64).expand(batch, k, k)
            return -back_substitute(self.ops, index, lo_t, hi_t, relax, coefficients=minus_eye,
                                   input_coefficients=True).numpy()


def _box_outside_rows(domain: InputDomain, L: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Boxes that provably miss ``A x <= b`` (some row's minimum over the box exceeds ``b``)."""
    if domain.A is None:
        return np.zeros(L.shape[0], dtype=bool)
    A = domain.A
    low = np.clip(A, 0, None) @ L.T + np.clip(A, None, 0) @ U.T  # (rows, B)
    return np.any(low > domain.b[:, None] + 1e-9 * (1.0 + np.abs(domain.b[:, None])), axis=0)


# -- MILP on one (sub-)domain ---------------------------------------------------------------------------


def _milp_decide(net, compiled, domain, outputs, members, alive, settings: "_Settings", records):
    """Decide one domain by MILP: ``("holds", None)``, ``("violated", (x, y))`` or ``(None, None)``.

    Per group of conjunctions, the max-violation MILP (``min t``, ``t <= δ``) is solved twice at most:

    1. stopping at the first feasible point, a candidate counterexample that the float64 forward pass
       must confirm (directly, or after the LP repair over its activation pattern);
    2. if that candidate fails, to optimality (or the deadline), for a dual bound.

    ``holds`` needs a proof that ``min t > 0``: HiGHS finds the model infeasible although ``t`` may go
    up to ``δ =`` :func:`decision_slack` (well above what the feasibility tolerances of the
    equilibrated model can hide, so "infeasible" cannot hide a point with ``t <= 0``), or its
    margin-widened dual bound on ``min t`` exceeds ``δ``. Anything else is ``unknown``.
    """
    g_lower, g_upper = compiled.bounds[compiled.network.output]
    slack = decision_slack(compiled)
    groups = [list(alive)] if settings.disjunction == "bigm" else [[j] for j in alive]
    unknown = False
    for group in groups:
        if settings.deadline.expired():
            return None, None
        milp, t = unsafe_milp(compiled.milp, g_lower, g_upper, [members[j] for j in group], t_upper=slack)
        decided = False
        for first_only in (True, False):
            run = _solve_unsafe(milp, t, settings.deadline, settings.threads, settings.log, settings.highs_options,
                                first_only)
            record = {k: run[k] for k in ("status", "time", "nodes", "bound")}
            record.update(disjuncts=[int(j) for j in group], binaries=int(milp.num_binaries), first_only=first_only)
            records.append(record)
            if run["status"] == "infeasible" or (run["bound"] is not None and run["bound"] > slack):
                decided = True  # holds for this group
                break
            if run["solution"] is not None:
                record["candidate_max_violation"] = run.get("objective")
                checked = _check_candidate(net, domain, outputs, run["solution"][compiled.milp.input_columns])
                if checked is None:
                    repaired = _repair(milp, t, run["solution"], settings.deadline, settings.threads)
                    if repaired is not None:
                        checked = _check_candidate(net, domain, outputs, repaired[compiled.milp.input_columns])
                    record["repaired"] = checked is not None
                if checked is not None:
                    return "violated", checked
            if run["status"] in ("time_limit", "interrupted", "error"):
                break
        unknown |= not decided
    return (None, None) if unknown else ("holds", None)


# -- the verifier ------------------------------------------------------------------------------------


@dataclass
class _Settings:
    deadline: Deadline
    tighten: str
    disjunction: str
    input_split: bool | None
    attack_samples: int
    leaf_binaries: int
    batch_size: int
    max_depth: int
    threads: int | None
    log: bool
    highs_options: dict | None
    bound_options: dict


def verify(
    network,
    prop,
    time_limit: float | None = None,
    tighten: str | None = None,
    disjunction: str = "split",
    input_split: bool | None = None,
    attack_samples: int = 1000,
    leaf_binaries: int = 16,
    batch_size: int = 256,
    max_depth: int = 60,
    threads: int | None = None,
    log: bool = False,
    highs_options: dict | None = None,
    seed: int = 0,
    **bound_options,
) -> VerificationResult:
    """Verify VNN-LIB property ``prop`` (a :class:`~relumilp.frontends.vnnlib.Property` or a path) on ``network``.

    ``network`` is an IR :class:`Network` or anything :func:`relumilp.frontends.load_network` reads.
    ``time_limit`` (seconds) covers the whole call. ``tighten`` is the bound method for each input
    region (and so for the MILP's big-M coefficients; default ``symbolic`` with input splitting, ``lp``
    without); ``disjunction`` the encoding of several unsafe conjunctions (``split``, the default: one
    MILP per conjunction; ``bigm``: one MILP with binaries). ``attack_samples`` random points (plus the
    box centre and corners) are tried first; 0 switches this off.
    ``input_split`` (default: on for networks with at most 16 inputs) branches on input boxes with
    batched symbolic bounds (``batch_size`` boxes at a time, at most ``max_depth`` halvings) and hands a
    box to the MILP once it has at most ``leaf_binaries`` unstable neurons; off, each region is one MILP.
    Remaining keyword arguments go to :func:`relumilp.bounds.compute_bounds`.
    """
    from .bounds import METHODS
    from .frontends import load_network
    from .frontends.vnnlib import Property, read_vnnlib

    start = time.perf_counter()
    if disjunction not in DISJUNCTIONS:
        raise RelumilpError(f"unknown disjunction encoding {disjunction!r}; choose one of {', '.join(DISJUNCTIONS)}")
    if tighten is not None and tighten not in METHODS:
        raise RelumilpError(f"unknown bound method {tighten!r}; choose one of {', '.join(METHODS)}")
    deadline = Deadline.of(time_limit)  # also rejects a negative, zero or NaN limit
    net = load_network(network)
    if not isinstance(prop, Property):
        prop = read_vnnlib(Path(prop), net.input_size, net.output_size)
    if (prop.num_inputs, prop.num_outputs) != (net.input_size, net.output_size):
        raise RelumilpError(
            f"the property has {prop.num_inputs} inputs and {prop.num_outputs} outputs but the network has "
            f"{net.input_size} and {net.output_size}"
        )
    split = (net.input_size <= 16) if input_split is None else bool(input_split)
    if tighten is None:
        tighten = "symbolic" if split else "lp"
    settings = _Settings(
        deadline=deadline,
        tighten=tighten, disjunction=disjunction, input_split=split,
        attack_samples=int(attack_samples), leaf_binaries=int(leaf_binaries), batch_size=max(1, int(batch_size)),
        max_depth=int(max_depth), threads=threads, log=log, highs_options=highs_options, bound_options=bound_options,
    )
    swallow_banner()  # keep HiGHS's start-up banner off stdout (--json)
    rng = np.random.default_rng(seed)
    regions: list[dict] = []
    details = {"regions": regions, "tighten": tighten, "disjunction": disjunction,
               "input_split": settings.input_split, "notes": list(prop.notes)}
    answer = "holds"
    for index, (domain, outputs) in enumerate(prop.regions()):
        info = {"region": index, "disjuncts": len(outputs)}
        regions.append(info)
        if settings.deadline.expired():
            info["decided_by"] = "time_limit"
            answer = "unknown"
            break
        try:
            verdict, found = _verify_region(net, domain, outputs, settings, rng, info)
        except KeyboardInterrupt:  # Ctrl-C: solvers and workers are stopped by now
            info["decided_by"], details["interrupted"] = "interrupted", True
            return VerificationResult("unknown", None, time.perf_counter() - start, details)
        if verdict == "violated":
            x, y = found
            return VerificationResult("violated", {"x": x, "y": y}, time.perf_counter() - start, details)
        if verdict is None:
            answer = "unknown"
    return VerificationResult(answer, None, time.perf_counter() - start, details)


def _verify_region(net, domain, outputs, settings: _Settings, rng, info):
    """``("holds", None)``, ``("violated", (x, y))`` or ``(None, None)`` (unknown) for one input region."""
    from .pipeline import compile_network

    clock = time.perf_counter()
    found = _attack(net, domain, outputs, settings.attack_samples, rng)
    info["attack_time"] = time.perf_counter() - clock
    if found is not None:
        info["decided_by"] = "attack"
        return "violated", found
    G, h, members = _stack_rows(outputs)
    margin_net = spec_network(net, G, h)
    clock = time.perf_counter()
    compiled = compile_network(margin_net, domain, tighten=settings.tighten, time_limit=settings.deadline,
                               **settings.bound_options)
    info["bounds_time"] = time.perf_counter() - clock
    g_lower, _ = compiled.bounds[margin_net.output]
    stats = compiled.stats()
    info.update(binaries=stats["binaries"], unstable=stats["unstable"])
    lower_by = np.array([max(g_lower[r] for r in rows) for rows in members])
    alive = [int(j) for j in np.argsort(lower_by, kind="stable") if lower_by[j] <= 0.0]
    info["pruned_by_bounds"] = len(members) - len(alive)
    if not alive:
        info["decided_by"] = "bounds"
        return "holds", None
    if settings.deadline.expired():
        info["decided_by"] = "time_limit"
        return None, None
    info["milp"] = records = []
    if not settings.input_split:
        verdict, found = _milp_decide(net, compiled, domain, outputs, members, alive, settings, records)
        info["decided_by"] = "milp" if verdict is not None else "unknown"
        return verdict, found
    return _branch_and_bound(net, margin_net, compiled, domain, outputs, members, alive, settings, info, records)


def _branch_and_bound(net, margin_net, compiled, domain, outputs, members, alive, settings: _Settings, info, records):
    """Split the region's box until every sub-box is proven safe by bounds or decided by a small MILP."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small batched products: one thread is much faster (and shares the machine)
    try:
        return _bab(net, margin_net, compiled, domain, outputs, members, alive, settings, info, records)
    finally:
        torch.set_num_threads(threads)


def _bab(net, margin_net, compiled, domain, outputs, members, alive, settings: _Settings, info, records):
    from .bounds.base import Bounds, phases
    from .pipeline import compile_network

    clock = time.perf_counter()
    bounder = _BoxBounds(margin_net)
    out = margin_net.output
    width0 = np.where(domain.upper > domain.lower, domain.upper - domain.lower, 1.0)
    acts = margin_net.activations
    alive_members = [members[j] for j in alive]
    # the queue of open boxes: corners, depth, and bounds valid on each box (its parent's)
    L, U = domain.lower[None].copy(), domain.upper[None].copy()
    depth = np.zeros(1, dtype=np.int64)
    names = [name for name in compiled.bounds.lower if name in margin_net.graph]
    PL = {name: compiled.bounds.lower[name][None].copy() for name in names}
    PU = {name: compiled.bounds.upper[name][None].copy() for name in names}
    stats = {"boxes": 0, "leaves": 0, "max_depth": 0, "pruned": 0}
    info["bab"] = stats
    unknown = False
    while L.shape[0]:
        if settings.deadline.expired():
            unknown = True
            break
        B = settings.batch_size
        Lb, Ub, db = L[-B:], U[-B:], depth[-B:]
        start = {name: (PL[name][-B:], PU[name][-B:]) for name in names}
        L, U, depth = L[:-B], U[:-B], depth[:-B]
        PL = {name: v[:-B] for name, v in PL.items()}
        PU = {name: v[:-B] for name, v in PU.items()}
        stats["boxes"] += Lb.shape[0]
        stats["max_depth"] = max(stats["max_depth"], int(db.max()))
        # a cheap counterexample search: the centre of every box
        found = _first_counterexample(net, domain, outputs, (Lb + Ub) / 2)
        if found is not None:
            info["decided_by"] = "bab"
            info["bab_time"] = time.perf_counter() - clock
            return "violated", found
        lo, hi = bounder(Lb, Ub, start)
        gl = lo[out]
        lbd = np.stack([gl[:, rows].max(axis=1) for rows in alive_members], axis=1)  # (B, alive)
        open_ = (lbd <= 0.0).any(axis=1) & ~_box_outside_rows(domain, Lb, Ub)
        stats["pruned"] += int((~open_).sum())
        if not open_.any():
            continue
        unstable = np.zeros(Lb.shape[0], dtype=np.int64)
        for node in acts:
            src = node.inputs[0]
            unstable += phases(node, lo[src], hi[src]).unstable.sum(axis=1)
        splittable = (Ub - Lb > 0).any(axis=1) & (db < settings.max_depth)
        leaf = open_ & ((unstable <= settings.leaf_binaries) | ~splittable)
        for i in np.flatnonzero(leaf):
            if settings.deadline.expired():
                unknown = True
                break
            stats["leaves"] += 1
            box_bounds = Bounds({k: v[i].copy() for k, v in lo.items()}, {k: v[i].copy() for k, v in hi.items()},
                                "symbolic")
            leaf_domain = InputDomain(Lb[i], Ub[i], domain.A, domain.b)
            leaf_alive = [alive[j] for j in np.flatnonzero(lbd[i] <= 0.0)]
            leaf_compiled = compile_network(margin_net, leaf_domain, bounds=box_bounds)
            verdict, found = _milp_decide(net, leaf_compiled, leaf_domain, outputs, members, leaf_alive, settings,
                                          records)
            if verdict == "violated":
                info["decided_by"] = "bab+milp"
                info["bab_time"] = time.perf_counter() - clock
                return verdict, found
            if verdict is None:
                unknown = True
                if settings.deadline.expired():
                    break
        split = open_ & ~leaf
        if not split.any():
            continue
        Lb, Ub, db = Lb[split], Ub[split], db[split]
        lo = {k: v[split] for k, v in lo.items()}
        hi = {k: v[split] for k, v in hi.items()}
        # branch on the input that most influences the weakest conjunction's bound (|Λ_i| * width_i)
        lam = bounder.input_coefficients(lo, hi)
        weakest = np.argmin(lbd[split], axis=1)
        influence = np.zeros_like(Lb)
        for a, rows in enumerate(alive_members):
            sel = weakest == a
            if sel.any():
                influence[sel] = np.abs(lam[sel][:, rows, :]).sum(axis=1)
        score = influence * (Ub - Lb)
        score += 1e-12 * (Ub - Lb) / width0  # ties (zero influence): widest relative side
        dim = np.argmax(score, axis=1)
        rows_idx = np.arange(Lb.shape[0])
        mid = (Lb[rows_idx, dim] + Ub[rows_idx, dim]) / 2
        U1 = Ub.copy()
        U1[rows_idx, dim] = mid
        L2 = Lb.copy()
        L2[rows_idx, dim] = mid
        L = np.vstack([L, Lb, L2])
        U = np.vstack([U, U1, Ub])
        depth = np.concatenate([depth, db + 1, db + 1])
        PL = {name: np.concatenate([PL[name], lo[name], lo[name]]) for name in names}
        PU = {name: np.concatenate([PU[name], hi[name], hi[name]]) for name in names}
    info["bab_time"] = time.perf_counter() - clock
    if unknown or L.shape[0]:
        info["decided_by"] = "unknown"
        return None, None
    info["decided_by"] = "bab"
    return "holds", None
