r"""Optimisation-based bound tightening (OBBT): LP- and MILP-based bounds, layer by layer.

For each affine node ``t`` in topological order, models of the sub-network computing ``t``, built from
the bounds already tightened for earlier nodes and with the input domain's rows ``A x <= b``, give
valid bounds ``min / max x_j`` on each neuron ``x_j`` of ``t``:

* **LP-OBBT** minimises and maximises ``x_j = w_j . v + b_j`` over the LP relaxation of the layers
  *before* ``t`` (:func:`~relumilp.formulation.bigm.build_lp_relaxation` with ``include_upto=False``:
  each unstable neuron as the convex hull of its graph -- for ReLU the "triangle", which equals the LP
  relaxation of its big-M rows -- and no binary columns). The LP is loaded into one ``highspy.Highs``
  per chunk of solves; only the objective changes between solves (``changeColsCost``), so each solve
  warm-starts from the previous optimal basis (presolve off). The solves are ordered by
  :func:`warm_start_order` so that consecutive objectives point the same way. The default is primal
  simplex, which keeps the previous basis primal feasible and was measured fastest for this sequence
  (see ``benchmarks/obbt_throughput.py``). With ``simplex_strategy=1`` (dual simplex, whose objective
  is a valid lower bound throughout) solves also stop early once decided: when minimising ``x_j`` the
  option ``objective_bound`` ends the solve as soon as the dual objective exceeds the largest
  breakpoint of the activation fed by ``x_j`` (the neuron is proven stable on that side); the safe
  dual bound below is then computed from the dual iterate at that point, so an early stop is as sound
  as an optimal one. On the ACAS Xu / Peaks nets few neurons are decided that way, which is why the
  early stop does not pay for dual simplex there.
* **MILP-OBBT** runs on the neurons still unstable after LP: the big-M model up to ``t``
  (:func:`~relumilp.formulation.bigm.build_milp`) with integer binaries, a time limit per solve, and
  an early stop (MIP-interrupt callback) once the dual bound proves the neuron stable. The result is
  always HiGHS's *dual* bound (``mip_dual_bound``), valid at optimality, at the time limit and at an
  interrupt -- never the incumbent. Over a box, a neuron whose cone of influence (:mod:`.cones`: its
  receptive field in a convolutional network) holds at most half the model's binaries is solved over
  that cone alone: the same bound from a smaller MILP.
* **Cone MILPs alone** (:func:`cone_bounds`, the ``cones`` bound method): no LP stage, and only the
  neurons whose cones hold at most ``max_binaries`` binaries, each over its cone -- exact bounds for
  the early layers of a convolutional network (oval21 ``cifar_wide`` img9214: 169 neurons in 37 s on two
  processes).

Only neurons that feed an activation and that the cheaper bounds leave unstable are tightened (the
network output is also tightened by LP when ``tighten_outputs``); the others keep their
interval/symbolic bounds, which are sound.

Soundness margins (a solver objective is not a proof):

* **LP -- safe dual bound.** For ``min c^T v`` s.t. ``r_l <= A v <= r_u`` and ``l <= v <= u`` (all
  columns are boxed), *any* row multipliers ``y`` give, by weak duality, the lower bound
  ``sum_i min(y_i r_l_i, y_i r_u_i) + sum_j min(d_j l_j, d_j u_j)`` with ``d = c - A^T y``
  (multipliers whose sign would meet an infinite row bound are set to 0 first). We take ``y`` from
  HiGHS's row duals and evaluate this formula ourselves in float64, so solver tolerances
  (infeasible duals, early termination) can only make the bound weaker, never invalid. The float64
  evaluation is widened by Higham's summation bound ``(n + 2) 2^-52 * S`` where ``n`` is the number of
  terms and ``S`` the sum of their magnitudes (including ``|A|^T |y|`` for the rounding in ``d``).
  The bias ``b_j`` is added to that bound afterwards and the sum widened by ``2 * 2^-52`` relative.
* **MILP -- dual bound margin.** ``bound = mip_dual_bound - (1e-6 |mip_dual_bound| + 1e-8 d + 1e-7)``
  (and mirrored for maxima), where ``d`` is the neuron's column scale. HiGHS's dual bound comes from
  LP relaxations solved to feasibility tolerances and from integrality decisions up to
  ``mip_feasibility_tolerance``. The MILP is handed to HiGHS exactly equilibrated
  (:mod:`relumilp.formulation.numerics`: powers of two, so every column and row term is about 1 and no
  entry falls under HiGHS's ``small_matrix_value``), with HiGHS's default feasibility tolerance (1e-7)
  and an integrality tolerance of 1e-7 (default 1e-6);
  on such a model the deciding LPs are far more accurate than those tolerances. (Forcing the
  tolerances to 1e-9 on an unscaled model, as earlier versions did, let HiGHS drop small weights and
  cut off reachable values on badly scaled networks.) A dual bound
  is used only from a run that ended optimal, at a limit, or by our own early-stop interrupt (a
  failed run reports stale numbers). The MILP bound is finally intersected with the rigorous LP
  bound.
* Tightening never produces ``lower > upper``: where the intersection would cross numerically, the
  looser of the two bounds is kept.

Parallelism: the neurons of one layer are independent. The layer's model (a picklable
:class:`LayerProblem`) and a chunk of the solve sequence go to the top-level :func:`solve_chunk`, which
builds its own HiGHS model. The sequence and its split into near-equal contiguous chunks of at most
``2 * chunk_size`` solves depend on the layer alone, so the serial run, a local process pool
(:func:`relumilp.parallel.shared_process_pool`) and a ``dask.distributed`` executor perform the same solves in the same
order and return bitwise identical bounds.

Time limits and interruption: ``deadline`` (a :class:`relumilp.limits.Deadline` for the whole call)
caps every solve's time limit and is checked before each solve; when it passes, the remaining solves
are skipped -- those neurons keep their cheaper (interval/symbolic, or LP) bounds, which are sound --
and the result has ``complete = False``. Workers get the deadline as a wall-clock time (their
``perf_counter`` need not share the parent's epoch, e.g. on dask workers). Worker processes of the
local pool ignore SIGINT and die with their parent (Linux); on Ctrl-C the parent cancels pending
tasks, terminates the pool's processes and forgets the pool, so a later call starts a fresh one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import Executor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp

from .. import matrices
from .._progress import progress_bar
from ..domain import InputDomain
from ..errors import RelumilpError
from ..formulation.bigm import build_lp_relaxation, build_milp
from ..backends.highs import run as run_highs
from ..backends.highs import set_run_time_limit, to_highs
from ..formulation.milp import MILP
from ..formulation.numerics import equilibrate
from ..ir import ActivationNode, AffineNode, Network
from ..limits import Deadline
from .base import Bounds, intersect, phases
from .interval import interval_bounds
from .rounding import envelope
from ..parallel import default_workers, shared_process_pool
from ..parallel import kill_pool

#: relative and absolute margins applied to MILP dual bounds (see module docstring)
MILP_REL_MARGIN = 1e-6
MILP_ABS_MARGIN = 1e-7
#: ... and relative to the objective column's equilibration scale (HiGHS's tolerances act on the scaled
#: column; its node LPs are solved far more accurately than the 1e-7 feasibility tolerance)
MILP_SCALE_MARGIN = 1e-8
#: integrality tolerance of the MILP-OBBT solves (HiGHS's default 1e-6; its primal tolerance is 1e-7)
MILP_INTEGRALITY = 1e-7
#: slack added to an early-stop threshold so a stopped solve's safe bound clears the breakpoint
EARLY_STOP_SLACK = 1e-7
#: seconds a layer's chunks may come back after the deadline before they are abandoned
DEADLINE_GRACE = 0.5
#: objectives chained at a time by :func:`warm_start_order`
ORDER_BLOCK = 2048

_EPS = 2.0**-52
_ONE = np.ones(1)


@dataclass
class OBBTOptions:
    """Tuning knobs of OBBT (all have sound defaults)."""

    #: neurons per task; fixed (not derived from the worker count) so all executors agree bitwise
    chunk_size: int = 32
    #: stop LP/MILP solves once the neuron is proven stable on that side
    early_stop: bool = True
    #: also tighten the network output by LP (it feeds no activation)
    tighten_outputs: bool = True
    #: per-solve time limit of MILP-OBBT (seconds)
    milp_time_limit: float = 10.0
    #: per-solve time limit of LP-OBBT (seconds): a solve that hits it keeps the neuron's cheaper bound
    #: (seen: HiGHS's dual simplex cycling for >12 minutes on one LP of a pruned 3x64 network)
    lp_time_limit: float = 30.0
    #: relative MIP gap at which a MILP-OBBT solve stops (its dual bound is used either way)
    mip_rel_gap: float = 1e-6
    #: HiGHS simplex strategy for LP-OBBT: 4 = primal (measured fastest for warm-started OBBT on
    #: ACAS Xu / Peaks nets, see benchmarks/obbt_throughput.py), 1 = dual (the LP early stop via
    #: ``objective_bound`` acts only in dual simplex, whose objective is a lower bound throughout)
    simplex_strategy: int = 4
    #: LP-OBBT solve sequence from :func:`warm_start_order` (else all minimisations, then all
    #: maximisations, in neuron order). Measured: 13% fewer simplex iterations and ~10% less time on
    #: ACAS Xu 1_1; on Peaks 2-64x3 35% fewer iterations but ~15% *more* time (0.59 vs 0.50 s)
    warm_start_order: bool = True
    #: HiGHS ``simplex_scale_strategy`` for LP-OBBT: 0 = off measured 10-17% fewer iterations and
    #: seconds than HiGHS's default (2) on ACAS Xu 1_1, Peaks 2-64x2 / 2-64x3 and a random 5-64x4 net,
    #: with identical bounds (the safe dual bound does not depend on the solver's accuracy)
    simplex_scale_strategy: int = 0


@dataclass
class LayerProblem:
    """Everything a worker needs to tighten some neurons of one node (picklable)."""

    milp: MILP
    #: neuron ``j`` is ``v[columns[j]]`` (``weights`` is None: the model contains the node), or
    #: ``weights[j] @ v[columns] + constant[j]`` (the model stops before the node: its affine map)
    columns: np.ndarray
    #: early-stop thresholds: a minimisation proving ``x_j >= min_stop[j]`` (a maximisation proving
    #: ``x_j <= max_stop[j]``) has decided the neuron's phase on that side
    min_stop: np.ndarray
    max_stop: np.ndarray
    mode: str  # "lp" | "milp"
    options: OBBTOptions = field(default_factory=OBBTOptions)
    weights: np.ndarray | None = None
    constant: np.ndarray | None = None
    #: the call's deadline as a ``time.time()`` value (``inf``: none), shared by every worker
    stop_at: float = math.inf

    def deadline(self) -> Deadline:
        """:attr:`stop_at` on this process's ``perf_counter`` clock."""
        if math.isinf(self.stop_at):
            return Deadline()
        return Deadline(time.perf_counter() + (self.stop_at - time.time()))

    def objective(self, j: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Neuron ``j`` as ``(columns, coefficients, constant)``."""
        if self.weights is None:
            return self.columns[j : j + 1], _ONE, 0.0
        return self.columns, self.weights[j], float(self.constant[j])

    def __post_init__(self):
        self.columns = np.asarray(self.columns, dtype=np.int32)  # highspy's index type, converted once


@dataclass
class ChunkResult:
    neurons: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    solves: int = 0
    iterations: int = 0
    early: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    #: False when the deadline passed before every solve of the chunk was run
    complete: bool = True


# -- the rigorous LP bound --------------------------------------------------------------------------


def safe_dual_bound(milp: MILP, At, columns, coefficients, y: np.ndarray, abs_At=None) -> float:
    """A valid lower bound of ``min coefficients @ v[columns]`` over the LP ``milp`` from any row
    multipliers ``y``.

    ``At`` is ``milp.A.T`` in CSR form (``abs_At`` its elementwise absolute value, computed when not
    given). See the module docstring for the formula and its round-off
    widening. Returns ``-inf`` when the multipliers prove nothing (an unbounded term).
    """
    y = np.array(y, dtype=np.float64)
    rl, ru = milp.row_lower, milp.row_upper
    y[(y > 0) & ~np.isfinite(rl)] = 0.0
    y[(y < 0) & ~np.isfinite(ru)] = 0.0
    d = -(At @ y)
    cost = np.zeros_like(d)
    np.add.at(cost, np.asarray(columns), np.asarray(coefficients, dtype=np.float64))
    d += cost
    row_terms = np.where(y > 0, y * np.where(np.isfinite(rl), rl, 0.0), y * np.where(np.isfinite(ru), ru, 0.0))
    cl, cu = milp.col_lower, milp.col_upper
    col_terms = np.where(d > 0, d * cl, np.where(d < 0, d * cu, 0.0))
    if not np.all(np.isfinite(col_terms)):
        return -math.inf
    magnitude = np.abs(row_terms).sum() + (
        (np.abs(d) + np.abs(cost) + (abs(At) if abs_At is None else abs_At) @ np.abs(y))
        * np.maximum(np.abs(cl), np.abs(cu))
    ).sum()
    n = row_terms.size + col_terms.size
    return float(row_terms.sum() + col_terms.sum() - (n + 2) * _EPS * (1.0 + magnitude))


# -- the worker -------------------------------------------------------------------------------------


def _new_highs(problem: LayerProblem) -> tuple[highspy.Highs, np.ndarray]:
    """The chunk's HiGHS model and its column scales (original column = scale * HiGHS column).

    MILPs are handed over exactly equilibrated (:func:`relumilp.formulation.numerics.equilibrate`),
    so HiGHS's default absolute tolerances mean the same on every layer and no entry is dropped; LPs
    are passed as they are, since their bounds come from our own float64 weak-duality evaluation.
    """
    # No explicit "threads": HiGHS rejects a run (kError) whose thread count differs from the
    # process-wide scheduler that the first run fixed; the default (0) fits any scheduler.
    if problem.mode == "lp":
        h = to_highs(problem.milp)
        h.setOptionValue("presolve", "off")  # keep the basis between solves
        h.setOptionValue("solver", "simplex")
        h.setOptionValue("simplex_strategy", int(problem.options.simplex_strategy))
        h.setOptionValue("simplex_scale_strategy", int(problem.options.simplex_scale_strategy))
        return h, np.ones(problem.milp.num_columns)
    scaled = equilibrate(problem.milp)
    h = to_highs(scaled.milp)
    h.setOptionValue("mip_rel_gap", float(problem.options.mip_rel_gap))
    h.setOptionValue("mip_abs_gap", 0.0)
    # integrality to the primal tolerance (HiGHS: 1e-6): a binary at 1e-6 lets a big-M row move the
    # neuron by 1e-6 of its scale, more than the bound's margin; 1e-7 is safe on an equilibrated model
    h.setOptionValue("mip_feasibility_tolerance", MILP_INTEGRALITY)
    return h, scaled.col_scale


def solve_chunk(problem: LayerProblem, neurons, signs=None) -> ChunkResult:
    """Tighten ``neurons`` of one node: returns valid lower/upper bounds for each (top-level, picklable).

    ``signs`` (one per entry of ``neurons``: +1 minimise, -1 maximise) gives the solve sequence; by
    default every neuron is minimised, then every neuron maximised. Bounds that a solve could not
    improve, or that the sequence does not ask for, come back as ``-inf`` / ``+inf``; the caller
    intersects.
    """
    start = time.perf_counter()
    neurons = np.asarray(neurons, dtype=np.int64)
    if signs is None:
        neurons, signs = _min_then_max(neurons)
    signs = np.asarray(signs, dtype=np.float64)
    if problem.mode == "milp" and problem.milp.num_binaries == 0:
        # no binaries: the "MILP" is an LP (HiGHS then reports no MIP dual bound); solve it as one
        problem = dataclasses.replace(problem, mode="lp")
    h, col_scale = _new_highs(problem)
    unique, position = np.unique(neurons, return_inverse=True)
    result = ChunkResult(unique, np.full(unique.size, -np.inf), np.full(unique.size, np.inf))
    At = problem.milp.A.T.tocsr() if problem.mode == "lp" else None
    abs_At = abs(At) if At is not None else None
    stop_state = {"threshold": math.inf, "fired": False, "fresh": True}
    if problem.mode == "milp" and problem.options.early_stop:

        def interrupt(event):
            # HiGHS keeps a raised interrupt flag across runs of the same model, which would stop
            # every later solve at once: lower it at a run's first check only. Otherwise only ever
            # raise it, so a cancellation requested by backends.highs.run (Ctrl-C) is never undone.
            if stop_state["fresh"]:
                stop_state["fresh"] = False
                event.data_in.user_interrupt = False
            if event.data_out.mip_dual_bound >= stop_state["threshold"]:
                event.data_in.user_interrupt = True
                stop_state["fired"] = True

        h.cbMipInterrupt.subscribe(interrupt)
    previous = None
    deadline = problem.deadline()
    for i, j, sign in zip(position, neurons, signs):
        if deadline.expired():
            result.complete = False  # the rest keep their -inf / +inf: the caller's cheaper bounds
            break
        columns, coefficients, constant = problem.objective(j)
        if problem.weights is None:
            if previous is not None:
                h.changeColCost(previous, 0.0)
            previous = int(columns[0])
        h.changeColsCost(columns.size, columns, sign * coefficients * col_scale[columns])
        # the solve minimises sign * (x_j - constant)
        threshold = problem.min_stop[j] if sign > 0 else -problem.max_stop[j]
        threshold = threshold - sign * constant
        threshold = threshold + EARLY_STOP_SLACK * (1.0 + abs(threshold)) if np.isfinite(threshold) else math.inf
        if not problem.options.early_stop:
            threshold = math.inf
        if problem.mode == "lp":
            bound, early = _solve_lp(h, problem, At, abs_At, columns, sign * coefficients, threshold, result,
                                     deadline)
        else:
            stop_state.update(threshold=threshold, fired=False, fresh=True)
            bound, early = _solve_milp(h, problem, stop_state, result, deadline, float(np.max(col_scale[columns])))
        if constant != 0.0 and math.isfinite(bound):
            bound = bound + sign * constant
            bound -= 2 * _EPS * abs(bound)  # the rounding of that addition
        result.solves += 1
        result.early += int(early)
        if sign > 0:
            result.lower[i] = max(result.lower[i], bound)
        else:
            result.upper[i] = min(result.upper[i], -bound)
    result.seconds = time.perf_counter() - start
    return result


def _min_then_max(neurons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plain solve sequence: every neuron minimised, then every neuron maximised."""
    return np.concatenate([neurons, neurons]), np.repeat([1.0, -1.0], neurons.size)


def warm_start_order(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A solve sequence ``(rows, signs)`` for minimising (+1) and maximising (-1) ``directions @ v``.

    A warm-started simplex needs fewer iterations when consecutive objectives point the same way, so
    the ``2 n`` objectives ``+d_j`` and ``-d_j`` are chained greedily, each followed by the unvisited
    one of largest cosine (blocks of :data:`ORDER_BLOCK` objectives keep this O(n) in memory).
    Deterministic: it depends on ``directions`` only, so every executor gets the same chunks.
    """
    n = directions.shape[0]
    objectives = np.vstack([directions, -directions])
    norms = np.linalg.norm(objectives, axis=1, keepdims=True)
    unit = np.divide(objectives, norms, out=np.zeros_like(objectives), where=norms > 0)
    order: list[int] = []
    for first in range(0, 2 * n, ORDER_BLOCK):
        block = np.arange(first, min(first + ORDER_BLOCK, 2 * n))
        cosine = unit[block] @ unit[block].T
        unvisited = np.ones(block.size, dtype=bool)
        current = 0
        for _ in range(block.size):
            unvisited[current] = False
            order.append(int(block[current]))
            if unvisited.any():
                current = int(np.argmax(np.where(unvisited, cosine[current], -np.inf)))
    order_array = np.asarray(order, dtype=np.int64)
    return order_array % n, np.where(order_array < n, 1.0, -1.0)


def _solve_lp(h, problem: LayerProblem, At, abs_At, columns, coefficients, threshold: float, result: ChunkResult,
              deadline: Deadline):
    """One warm-started LP; returns (valid lower bound of ``coefficients @ v[columns]``, stopped early?).

    A plain ``h.run()`` (not the interruptible :func:`relumilp.backends.highs.run`): these LPs take
    milliseconds, Ctrl-C is seen when one returns, and the helper thread and interrupt callback would
    cost throughput."""
    h.setOptionValue("objective_bound", float(threshold))
    set_run_time_limit(h, deadline.cap(problem.options.lp_time_limit), mip=False)
    run_status = h.run()
    status = h.getModelStatus()
    result.iterations += int(h.getInfo().simplex_iteration_count)
    early = status == highspy.HighsModelStatus.kObjectiveBound
    if status == highspy.HighsModelStatus.kInfeasible:
        return -math.inf, False  # not a proof (tolerances); an empty domain is caught up front
    solution = h.getSolution()
    if (
        run_status == highspy.HighsStatus.kError
        or not (status == highspy.HighsModelStatus.kOptimal or early)
        or not solution.dual_valid
    ):
        # Any multipliers still give a valid bound, but without duals there is nothing to evaluate.
        h.clearSolver()
        return -math.inf, False
    return safe_dual_bound(problem.milp, At, columns, coefficients, np.asarray(solution.row_dual), abs_At), early


def _solve_milp(h, problem: LayerProblem, stop_state: dict, result: ChunkResult, deadline: Deadline,
                scale: float):
    """One MILP with a time limit; returns (dual bound minus the margin, stopped early?).

    ``scale`` is the objective column's equilibration scale: HiGHS's tolerances act on the scaled
    column, so part of the margin is relative to it."""
    seconds = deadline.cap(problem.options.milp_time_limit)
    if seconds <= 0.0:
        result.complete = False
        return -math.inf, False  # out of time: the neuron keeps its cheaper bound
    # interruptible: Ctrl-C stops the solve at once (raised here; the chunk is dropped)
    name = run_highs(h, seconds, mip=True)
    run_status = highspy.HighsStatus.kError if name == "error" else highspy.HighsStatus.kOk
    status = h.getModelStatus()
    info = h.getInfo()
    if status == highspy.HighsModelStatus.kInfeasible:
        return -math.inf, False  # not a proof (tolerances); an empty domain is caught up front
    result.timeouts += int(status == highspy.HighsModelStatus.kTimeLimit)
    limit = problem.options.milp_time_limit
    if status == highspy.HighsModelStatus.kTimeLimit and (limit is None or seconds < limit):
        result.complete = False  # cut short by the caller's deadline, not by its own limit
    trusted = (
        highspy.HighsModelStatus.kOptimal,
        highspy.HighsModelStatus.kTimeLimit,
        highspy.HighsModelStatus.kInterrupt,
        highspy.HighsModelStatus.kSolutionLimit,
        highspy.HighsModelStatus.kIterationLimit,
    )
    early = status == highspy.HighsModelStatus.kInterrupt
    if run_status == highspy.HighsStatus.kError or status not in trusted or (early and not stop_state["fired"]):
        return -math.inf, False  # a failed or foreign-interrupted run may report a stale dual bound
    dual = float(info.mip_dual_bound)
    if not math.isfinite(dual):
        return -math.inf, False
    return dual - (MILP_REL_MARGIN * abs(dual) + MILP_SCALE_MARGIN * scale + MILP_ABS_MARGIN), early


# -- the driver -------------------------------------------------------------------------------------


def _thresholds(net: Network, node: AffineNode, lower, upper, outputs: bool):
    """Neurons of ``node`` to tighten, and their early-stop thresholds ``(min_stop, max_stop)``."""
    n = node.size
    mask = np.zeros(n, dtype=bool)
    points: list[float] = []
    for name in net.graph.successors(node.name):
        act = net[name]
        if isinstance(act, ActivationNode) and act.activation.breakpoints:
            mask |= phases(act, lower, upper).unstable
            points.extend(act.breakpoints)
    # minimising x_j is decided once x_j >= the largest breakpoint, maximising once x_j <= the smallest
    min_stop = np.full(n, max(points) if points else np.inf)
    max_stop = np.full(n, min(points) if points else -np.inf)
    if outputs and node.name == net.output:
        mask[:] = True
        min_stop[:], max_stop[:] = np.inf, -np.inf  # the full range is wanted: never stop early
    return np.flatnonzero(mask), min_stop, max_stop


def _affine_objectives(node: AffineNode, milp: MILP) -> tuple[np.ndarray, np.ndarray]:
    """``(columns, weights)`` with ``x = weights @ v[columns] + node.bias`` (distinct columns: a
    source read twice has its weights summed)."""
    sources = np.concatenate([milp.node_columns[src] for src in node.inputs])
    columns, position = np.unique(sources, return_inverse=True)
    if any(matrices.is_sparse(w) for w in node.weights):
        # sum duplicate columns sparsely; the objective rows are dense (one solve each), within the limit
        merge = sp.csr_array((np.ones(sources.size), (np.arange(sources.size), position)),
                             shape=(sources.size, columns.size))
        summed = matrices.hstack(node.weights) @ merge
        return columns, matrices.densify(summed, what=f"the OBBT objectives of {node.name!r}")
    weights = np.zeros((node.size, columns.size))
    np.add.at(weights.T, position, np.hstack(node.weights).T)
    return columns, weights


def _layer_tasks(problem: LayerProblem, neurons: np.ndarray, signs: np.ndarray) -> list:
    """The sequence ``(neurons, signs)`` in near-equal contiguous chunks of at most ``2 * chunk_size``
    solves (fixed by the sequence alone, so every executor does the same solves), as
    :func:`_run_tasks` tasks."""
    pieces = max(1, math.ceil(neurons.size / (2 * max(1, int(problem.options.chunk_size)))))
    return [(solve_chunk, (problem, chunk, chunk_signs), chunk)
            for chunk, chunk_signs in zip(np.array_split(neurons, pieces), np.array_split(signs, pieces))]


def _run_tasks(tasks: list, executor, workers: int, bar, deadline: Deadline) -> list[ChunkResult]:
    """Run ``(function, args, neurons)`` tasks, each returning a :class:`ChunkResult` for ``neurons``.
    Without ``executor``, ``workers > 1`` spreads two or more tasks over the local process pool.

    Past the deadline (plus :data:`DEADLINE_GRACE`) results are no longer awaited: tasks not back by
    then count as unimproved (their neurons keep their cheaper bounds), and a local pool is stopped,
    since its workers may still be starting up or busy."""
    local = executor is None and workers > 1 and len(tasks) > 1
    if local:
        executor = shared_process_pool(workers)
    if executor is None:
        results = []
        for function, args, neurons in tasks:
            results.append(function(*args))
            bar.update(neurons.size)
        return results
    futures = {executor.submit(function, *args): k for k, (function, args, _) in enumerate(tasks)}
    results: list = [None] * len(tasks)
    wait = None if not deadline.limited else deadline.remaining() + DEADLINE_GRACE
    try:
        for future in as_completed(futures, timeout=wait):
            k = futures[future]
            results[k] = future.result()
            bar.update(tasks[k][2].size)
    except FuturesTimeout:
        for future in futures:
            future.cancel()
        if local:
            kill_pool(workers)
        for k, (_, _, neurons) in enumerate(tasks):
            if results[k] is None:
                unique = np.unique(neurons)
                results[k] = ChunkResult(unique, np.full(unique.size, -np.inf), np.full(unique.size, np.inf),
                                         complete=False)
    except BrokenProcessPool as exc:
        raise RelumilpError(
            "a bound-tightening worker process died; when a script starts worker processes "
            "(workers > 1), its code must run under `if __name__ == \"__main__\":`, or pass workers=1"
        ) from exc
    except BaseException:  # KeyboardInterrupt (also SIGTERM in the CLI): leave nothing running
        for future in futures:
            future.cancel()
        if local:
            kill_pool(workers)
        raise
    return results


def obbt_bounds(
    net: Network,
    domain: InputDomain,
    start: Bounds,
    method: str = "lp",
    executor: Executor | None = None,
    workers: int | None = None,
    progress: bool = False,
    stats: dict | None = None,
    deadline: Deadline | float | None = None,
    **options,
) -> Bounds:
    """LP-based (``method="lp"``) or LP- then MILP-based (``"milp"``) OBBT, starting from ``start``.

    ``executor`` (any ``concurrent.futures.Executor``, e.g. ``dask.distributed.Client.get_executor()``)
    runs the chunks of one layer in parallel. Without it, ``workers`` local processes do
    (:func:`shared_process_pool`; ``None`` = :func:`default_workers`, ``1`` = this process only); a
    layer with a single chunk of work always runs in this process. ``progress`` shows a tqdm bar per layer and stage.
    ``options`` are :class:`OBBTOptions` fields (``milp_time_limit``, ``chunk_size``, ...). Per-stage
    solver statistics are added to ``stats`` when a dict is given. ``bounds.times`` gets ``"lp"`` (and
    ``"milp"``) seconds. ``deadline`` (a :class:`~relumilp.limits.Deadline` or seconds) ends the pass
    early with the sound bounds it has and ``complete = False`` (also ``stats["complete"]``).
    """
    if method not in ("lp", "milp"):
        raise RelumilpError(f"OBBT method must be 'lp' or 'milp', got {method!r}")
    unknown = set(options) - set(OBBTOptions.__dataclass_fields__)
    if unknown:
        raise RelumilpError(f"unknown bound option(s): {', '.join(sorted(unknown))}")
    opts = OBBTOptions(**options)
    deadline = Deadline.of(deadline)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise RelumilpError(f"workers must be at least 1, got {workers}")
    domain.check_not_empty(deadline)
    return _obbt(net, domain, start, method, opts, executor, workers, progress, stats if stats is not None else {},
                 deadline)


#: :func:`cone_bounds` tightens a neuron only when its cone holds at most this many unstable neurons
#: (binaries): oval21 ``cifar_base`` / ``cifar_wide`` second-layer cones hold 20-63, and their MILPs
#: take 0.05-1 s each; the dense layers after them depend on every unstable neuron
CONE_BINARIES = 64
#: per-solve time limit of :func:`cone_bounds` (seconds; the dual bound is used at the limit)
CONE_TIME_LIMIT = 2.0


def solve_cones(net: Network, bounds: Bounds, domain: InputDomain, node: str, neurons: np.ndarray,
                min_stop: np.ndarray, max_stop: np.ndarray, options: OBBTOptions, stop_at: float) -> ChunkResult:
    """Minimise and maximise each of ``neurons`` of ``node`` over the MILP of its cone of influence
    (:mod:`.cones`; top-level, picklable). Bounds not improved come back as ``-inf`` / ``+inf``."""
    from .cones import cone, restrict

    start = time.perf_counter()
    result = ChunkResult(np.asarray(neurons), np.full(len(neurons), -np.inf), np.full(len(neurons), np.inf))
    for k, j in enumerate(neurons):
        restricted = restrict(net, cone(net, node, int(j)), bounds, domain)
        if restricted is None:
            continue
        sub, sub_bounds, sub_domain = restricted
        milp = build_milp(sub, sub_bounds, sub_domain, upto=node)
        problem = LayerProblem(milp, milp.node_columns[node], min_stop[[j]], max_stop[[j]], "milp", options,
                               stop_at=stop_at)
        if problem.deadline().expired():
            result.complete = False
            break
        solved = solve_chunk(problem, np.zeros(2, dtype=np.int64), np.array([1.0, -1.0]))
        result.lower[k], result.upper[k] = solved.lower[0], solved.upper[0]
        result.complete &= solved.complete
        for key in ("solves", "iterations", "early", "timeouts"):
            setattr(result, key, getattr(result, key) + getattr(solved, key))
    result.seconds = time.perf_counter() - start
    return result


def _cone_sizes(net: Network, node: AffineNode, targets: np.ndarray, bounds: Bounds, limit: int,
                deadline: Deadline | None = None) -> np.ndarray:
    """The binaries in each target neuron's cone of influence (any count above ``limit`` stands for all;
    once ``deadline`` has passed, the targets not yet walked count ``limit + 1``: not solved over a cone)."""
    from .cones import cone

    sizes = np.full(targets.size, limit + 1, dtype=np.int64)
    for k, j in enumerate(targets):
        if deadline is not None and deadline.expired():
            break
        sizes[k] = cone(net, node.name, int(j), bounds, limit=limit).binaries
    return sizes


def _cone_tasks(net, bounds, domain, node: AffineNode, targets: np.ndarray, min_stop, max_stop, options: OBBTOptions,
                stop_at: float) -> list:
    """:func:`solve_cones` over ``targets`` in chunks of ``chunk_size`` neurons, as :func:`_run_tasks` tasks."""
    pieces = max(1, math.ceil(targets.size / max(1, int(options.chunk_size))))
    return [(solve_cones, (net, bounds, domain, node.name, chunk, min_stop, max_stop, options, stop_at), chunk)
            for chunk in np.array_split(targets, pieces)]


def cone_bounds(net: Network, domain: InputDomain, start: Bounds, max_binaries: int = CONE_BINARIES,
                executor: Executor | None = None, workers: int | None = None, progress: bool = False,
                stats: dict | None = None, deadline: Deadline | float | None = None, **options) -> Bounds:
    """MILP bound tightening over cones of influence, starting from ``start`` (:mod:`.cones`).

    Node by node in topological order, each neuron that feeds an activation and is unstable under the
    bounds so far, and whose cone holds at most ``max_binaries`` unstable neurons, is minimised and
    maximised over the big-M MILP of its cone alone (with HiGHS's dual bound and the margins of
    MILP-OBBT above; per-solve limit ``milp_time_limit``, default :data:`CONE_TIME_LIMIT`); the
    tightened bounds feed the cones of later nodes. Neurons with larger cones (the dense layers of a
    convolutional network, every layer of a dense one) keep their bounds: run
    :func:`relumilp.bounds.symbolic.alpha_bounds` from the result to carry the gain to them.
    ``executor`` / ``workers`` / ``progress`` / ``deadline`` / ``stats`` as for :func:`obbt_bounds`;
    ``stats["cones"]`` counts the neurons tightened and the solves, and lists under ``"exact"`` the
    nodes whose unstable neurons all got their range over the box to the MILP's tolerance (every cone
    small enough, every solve optimal within the default gap; a failed solve leaves its neuron's bound
    as it was): optimised slopes cannot tighten those, so a later ``alpha`` pass can leave them out.
    Neurons of a node whose early-stop threshold was reached are only proven stable, which is all a
    relaxation needs of them.
    """
    unknown = set(options) - set(OBBTOptions.__dataclass_fields__)
    if unknown:
        raise RelumilpError(f"unknown bound option(s): {', '.join(sorted(unknown))}")
    options.setdefault("milp_time_limit", CONE_TIME_LIMIT)
    opts = OBBTOptions(**options)
    deadline = Deadline.of(deadline)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise RelumilpError(f"workers must be at least 1, got {workers}")
    if int(max_binaries) < 1:
        raise RelumilpError(f"max_binaries must be at least 1, got {max_binaries!r}")
    domain.check_not_empty(deadline)
    stats = stats if stats is not None else {}
    counts = stats.setdefault("cones", {"solves": 0, "iterations": 0, "early": 0, "timeouts": 0, "neurons": 0})
    counts["exact"] = exact = []  # this call's
    # a neuron whose cone holds no binary is exact only once back-substitution has bounded it, and a
    # smooth kind's MILP rows are only a relaxation
    exact_start = start.complete and start.method != "interval" and not net.has_smooth
    bounds = start.copy()
    clock = time.perf_counter()
    stop_at = time.time() + deadline.remaining()
    for node in net.affines:
        targets, min_stop, max_stop = _thresholds(net, node, *bounds[node.name], outputs=False)
        if targets.size == 0:
            continue
        if deadline.expired():
            bounds.complete = False
            break
        sizes = _cone_sizes(net, node, targets, bounds, int(max_binaries), deadline)
        if deadline.expired():  # targets not walked were left out as if their cones were too large
            bounds.complete = False
        all_small = exact_start and bool(np.all(sizes <= int(max_binaries)))
        targets = targets[(sizes >= 1) & (sizes <= int(max_binaries))]  # no binary: symbolic bounds are exact
        if targets.size == 0:
            if all_small:
                exact.append(node.name)
            continue
        tasks = _cone_tasks(net, bounds, domain, node, targets, min_stop, max_stop, opts, stop_at)
        with progress_bar(progress, f"cones {node.name}", " neurons", total=targets.size) as bar:
            results = _run_tasks(tasks, executor, workers, bar, deadline)
        counts["neurons"] += int(targets.size)
        bounds = _merge(net, domain, bounds, node, results, counts)
        optimal = all(r.complete and not r.timeouts and np.isfinite(r.lower).all() and np.isfinite(r.upper).all()
                      for r in results)
        if all_small and optimal and opts.mip_rel_gap <= OBBTOptions.mip_rel_gap:
            exact.append(node.name)
    bounds.times = {**bounds.times, "cones": time.perf_counter() - clock}
    stats["complete"] = bounds.complete
    return bounds


# -- local process pools ----------------------------------------------------------------------------

def _obbt(net, domain, start, method, opts, executor, workers, progress, stats, deadline: Deadline) -> Bounds:

    bounds = start.copy()
    times = {"lp": 0.0, "milp": 0.0}
    for key in ("lp", "milp"):
        stats.setdefault(key, {"solves": 0, "iterations": 0, "early": 0, "timeouts": 0, "neurons": 0})
    stages = ("lp", "milp") if method == "milp" else ("lp",)
    stop_at = time.time() + deadline.remaining()  # wall clock: workers' perf_counter may differ
    for node in net.affines:
        reads_input_only = all(src == net.input.name for src in node.inputs)
        for stage in stages:
            if stage == "lp" and reads_input_only and domain.is_box:
                continue  # the LP over a box equals interval arithmetic for the first layer
            outputs = opts.tighten_outputs and stage == "lp"
            targets, min_stop, max_stop = _thresholds(net, node, *bounds[node.name], outputs)
            if targets.size == 0:
                continue
            if deadline.expired():
                bounds.complete = False  # the later nodes keep their cheaper (sound) bounds
                break
            clock = time.perf_counter()
            local = np.zeros(targets.size, dtype=bool)  # the neurons solved over their cones (below)
            if stage == "lp":
                # the model of the node's ancestors; each neuron is an objective over its inputs
                milp = build_lp_relaxation(net, bounds, domain, upto=node.name, include_upto=False)
                columns, weights = _affine_objectives(node, milp)
                problem = LayerProblem(milp, columns, min_stop, max_stop, stage, opts, weights, node.bias, stop_at)
                if opts.warm_start_order:
                    rows, signs = warm_start_order(weights[targets])
                    neurons = targets[rows]
                else:
                    neurons, signs = _min_then_max(targets)
            else:
                milp = build_milp(net, bounds, domain, upto=node.name)
                if milp.num_binaries == 0:
                    continue  # nothing is integer: the LP stage already gave these bounds
                # over a box, a neuron whose cone of influence holds at most half the model's binaries is
                # solved over its cone alone: the same bound from a smaller MILP (module .cones)
                if domain.is_box:
                    half = milp.num_binaries // 2
                    local = _cone_sizes(net, node, targets, bounds, half, deadline) <= half
                neurons, signs = _min_then_max(targets[~local])
                problem = LayerProblem(milp, milp.node_columns[node.name], min_stop, max_stop, stage, opts,
                                       stop_at=stop_at)
            tasks = _layer_tasks(problem, neurons, signs) if neurons.size else []
            if local.any():
                tasks += _cone_tasks(net, bounds, domain, node, targets[local], min_stop, max_stop, opts, stop_at)
            with progress_bar(progress, f"{stage} {node.name}", " solves", total=sum(t[2].size for t in tasks)) as bar:
                results = _run_tasks(tasks, executor, workers, bar, deadline)
            stats[stage]["neurons"] += int(targets.size)
            bounds = _merge(net, domain, bounds, node, results, stats[stage])
            times[stage] += time.perf_counter() - clock
    bounds.times.update({k: v for k, v in times.items() if k in stages})
    bounds.method = method
    stats["complete"] = bounds.complete
    return bounds


def _merge(net: Network, domain: InputDomain, bounds: Bounds, node: AffineNode, results: list[ChunkResult],
           stats: dict) -> Bounds:
    """``bounds`` with node ``node`` intersected with the solves' ``results`` (widened for the float64
    forward pass) and pushed forward by interval arithmetic; solver counts are added to ``stats``."""
    lower, upper = bounds[node.name]
    new_lower, new_upper = np.full(node.size, -np.inf), np.full(node.size, np.inf)
    for r in results:
        bounds.complete &= r.complete
        new_lower[r.neurons] = np.maximum(new_lower[r.neurons], r.lower)
        new_upper[r.neurons] = np.minimum(new_upper[r.neurons], r.upper)
        for key in ("solves", "iterations", "early", "timeouts"):
            stats[key] += getattr(r, key)
    # the solves bound the exact value; the float64 forward pass may differ by its rounding
    slack = 2.0 * envelope(net, bounds.lower, bounds.upper, node.name)
    new_lower = np.nextafter(new_lower - slack, -np.inf)
    new_upper = np.nextafter(new_upper + slack, np.inf)
    bounds.lower[node.name], bounds.upper[node.name] = intersect(lower, upper, new_lower, new_upper)
    # push the tightened bounds forward (activation outputs, later nodes) by interval arithmetic
    return _forward(net, domain, bounds)


def _forward(net: Network, domain: InputDomain, bounds: Bounds) -> Bounds:
    """Intersect ``bounds`` with interval arithmetic from them (never crossing), keeping ``times``."""
    pushed = interval_bounds(net, domain, start=bounds)
    for name in pushed.lower:
        pushed.lower[name], pushed.upper[name] = intersect(
            bounds.lower[name], bounds.upper[name], pushed.lower[name], pushed.upper[name]
        )
    pushed.times = bounds.times
    pushed.method = bounds.method
    pushed.complete = bounds.complete
    return pushed
