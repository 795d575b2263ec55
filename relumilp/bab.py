r"""Best-first branch and bound over input boxes and neuron splits: the one engine of ``optimize`` and ``verify``.

:func:`search` maximises an *objective* over an input box. The big-M MILP of a whole network stalls
beyond ~50 unstable ReLUs; branch and bound splits the problem until the pieces are easy. The objective
is a small strategy object that says what is maximised, how a node's upper bound is read off the
engine's bounds, how points are valued by the float64 forward pass, which input coefficients guide
input branching, when a node closes, and what a leaf does:

* :class:`LinearObjective` -- ``f(x) = s c @ net(x)`` (``s = +1`` to maximise, ``-1`` to minimise), for
  :func:`relumilp.optimization.optimize` (:func:`branch_and_bound`); nodes close within the gap of the
  incumbent, leaves are the node's big-M MILP;
* :class:`relumilp.verify.bab.RegionObjective` -- the violation ``max_j min_{r in j} -g_r(x)`` of one
  input region of a property (margins ``g`` of the unsafe rows), for :func:`relumilp.verify.verify`;
  nodes close when their bound is strictly below 0, the search stops at the first counterexample the
  forward pass confirms, leaves are :func:`relumilp.verify.decide.milp_decide`.

For the linear objective, the algorithm:

1. **The objective as a node.** ``-f`` is appended to the network as one affine node (the *loss*,
   :func:`relumilp.verify.spec_network`), so the same bound engine bounds it with everything else:
   an upper bound of ``f`` on a node is minus the loss's lower bound, and the loss's linear lower bound
   has input coefficients ``-Λ``, ``Λ`` those of ``f``'s linear upper bound.
2. **Nodes** are an input box plus a set of fixed neuron phases (``splits``: +1 active, -1 inactive,
   per neuron of every activation with one kink at 0), each with bounds inherited from its parent
   (intersected with its own) and kept with their upper bound on ``f``. Each round pops the
   ``batch_size`` open nodes with the largest upper bounds (best first) and bounds them in one batched
   call (:func:`_bound_boxes`, the single adapter to the bound engine: its bounds contain every float64
   forward value of the node's region; the engine clamps split neurons at the kink and flags regions
   it proves empty). With ``alpha_steps > 0`` the loss's bound uses optimised slopes (alpha-CROWN,
   :mod:`relumilp.bounds.engine`) and, for split neurons, optimised split multipliers (beta-CROWN),
   both warm-started from the parent's, on the output rows that the objective says still matter
   (:meth:`open_rows`). Which intermediate neurons are back-substituted again (:data:`REFINE`): over
   input boxes every undecided one (a smaller box tightens every layer); over neurons none -- the
   intermediate bounds stay the parent's (clamped at the splits), as in beta-CROWN, and the splits
   reach the output through the multipliers (on oval21's CIFAR networks re-refining them was 85% of a
   node's time; ``docs/benchmarks.md``).
3. **Incumbents** are float64 forward passes: the centre of every popped box, the corner maximising
   ``f``'s linear upper bound (``Λ``) and ``samples`` random points in it (over neurons, where every
   node has the domain's box, the centre and the random points once per batch; chosen in a batch, then
   re-evaluated one point at a time, as :func:`certify` does). An improved incumbent is polished by the
   LP over its activation region (binaries fixed at its pattern, the best input of that linear piece),
   re-evaluated by the forward pass.
4. **Pruning.** A node whose upper bound is at most ``incumbent + gap max(1, |incumbent|)`` is closed
   (its bound still counts towards the reported global bound).
5. **Leaves.** A node with at most ``leaf_unstable`` open neurons (an LP when none is left: the network
   is affine on the region; over input boxes of a network with smooth kinds, whose leaf MILP is only
   another relaxation, this rule is off and boxes are split on), or one that cannot be split (``max_depth`` reached, or a box width at
   float64 resolution), is decided by the big-M MILP over the box, compiled with the node's bounds
   (split neurons clamped) and solved by HiGHS with the incumbent (or the box's centre) as MIP start.
   Its dual bound closes the node only if no forward pass at a point of the node's region beats it
   (else the node keeps its engine bound); its point is an incumbent candidate. The leaves of a batch
   are set up from one state and applied in order (:meth:`_Search.decide_leaves`), so they can be
   solved at once on the pool or executor that bounds node batches, with the serial run's results
   (when no time limit cuts a leaf short: then timing decides, as it does serially).
6. **Branching** (``branching``): ``"input"`` halves the box along the input whose worse half has the
   lowest bound, found by bounding both halves along every input in one batch (strong branching; ties:
   the largest ``|Λ_i| width_i``, then the largest width relative to the domain's); ``"relu"`` splits an
   open neuron: the :data:`STRONG_CANDIDATES` with the largest BaBSR-style scores (the engine's
   ``scores``: a neuron's coefficient in the optimised bound times its relaxation gap; Bunel et al.
   2020) are compared by their two children's estimated bounds (one back-substitution each with the
   parent's slopes and multipliers: filtered smart branching, De Palma et al. 2021), and the one whose
   worse child is best wins (oval21 ``cifar_base`` img2908: 117 nodes, 22 s, against 1,687 nodes by the
   score alone); a node with no splittable neuron open is a leaf (its MILP decides neurons of other kinds). ``"auto"`` picks input splitting up to
   :data:`INPUT_BRANCHING_MAX_INPUTS` inputs -- measured in ``benchmarks/bab_benchmark.py``
   (``docs/benchmarks.md``): on ACAS Xu (5 inputs) and the random 8-input net input splitting reached a
   far tighter bound in 60 s than neuron splitting.

The global bound is the maximum over open nodes, nodes in flight, pruned nodes and closed leaves; the
answer is ``optimal`` when it is within the gap of the incumbent, ``time_limit`` at the deadline and
``interrupted`` on Ctrl-C (both with the incumbent and the global bound known then). The final answer
goes through :func:`relumilp.optimization.certify`, like the MILP path's.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np

from ._progress import progress_bar
from .domain import InputDomain
from .errors import RelumilpError
from .ir import Network
from .bounds.base import phases
from .limits import Deadline

#: ``branching="auto"``: split input boxes up to this many inputs, neurons beyond (benchmarks/bab_benchmark.py)
INPUT_BRANCHING_MAX_INPUTS = 8
BRANCHING = ("auto", "input", "relu")
#: optimised-slope (alpha-CROWN) steps per node bound, by branching mode (benchmarks/bab_benchmark.py)
ALPHA_STEPS = {"input": 6, "relu": 8}
#: Adam step sizes of a neuron-branching node warm-started from its parent's slopes and split multipliers.
#: Adam's first steps move every parameter by about its step size whatever its gradient, so the cold
#: start's sizes (the engine's 0.25 and ``BETA_LR``) throw the parent's optimum away: on oval21
#: ``cifar_base`` img4631 the children's bounds then stayed worse than their parents' and the global bound
#: stuck at 0.0775 from depth 3 on (60 s); with these it falls to 0.063. Input branching keeps the cold
#: sizes: with these, ACAS Xu 1_1 property 3 takes 3,519 boxes instead of 866 (benchmarks/bab_benchmark.py)
NEURON_WARM_STEP = {"lr": 0.01, "beta_lr": 0.05}
#: which nodes the engine back-substitutes per node bound, by branching mode (the engine's ``refine``)
REFINE = {"input": "undecided", "relu": "output"}
#: neuron branching: how many of the best-scored open neurons per node are compared by their children's
#: estimated bounds (:meth:`_Search.choose_neurons`; 1: the score alone). oval21 ``cifar_base`` img2908,
#: nodes to ``holds``: 1,687 with 1, 823 with 3, 139 with 6, 117 with 8, 71 with 12, 97 with 24
STRONG_CANDIDATES = 8
#: input branching: a worse half below its parent's bound by less than this (relative to max(1, |bound|))
#: does not count as a gain, so the first-order score decides among such inputs (:meth:`_Search.branch_inputs`)
STRONG_GAIN_TOL = 1e-7
#: input branching: an input narrower than the widest one (relative to the domain) by more than 2**THIN_LEAD
#: is split only when no other input can be
THIN_LEAD = 8
#: the estimates of a batch may take at most this multiple of the time its bounds took (then the nodes
#: not reached choose by score): 0.24 on oval21, but a deep lowered max-pool tree makes every
#: back-substitution slow
STRONG_BUDGET = 1.0


def resolve_branching(branching: str, inputs: int) -> str:
    """``"input"`` or ``"relu"``: ``branching`` itself, or for ``"auto"`` the measured rule (input boxes up
    to :data:`INPUT_BRANCHING_MAX_INPUTS` inputs, neurons beyond)."""
    if branching not in BRANCHING:
        raise RelumilpError(f"branching must be one of {', '.join(BRANCHING)}, got {branching!r}")
    if branching == "auto":
        return "input" if inputs <= INPUT_BRANCHING_MAX_INPUTS else "relu"
    return branching


def objective_network(net: Network, coefficients: np.ndarray, sign: float) -> Network:
    """``x -> -sign * coefficients @ net(x)``: the loss that branch and bound minimises (see module docstring)."""
    from .verify import spec_network

    return spec_network(net, -sign * np.asarray(coefficients, dtype=np.float64)[None, :], np.zeros(1))


#: nodes per engine call: fixed (never derived from the number of workers), so a serial run, a local
#: pool and any executor bound the same chunks and get the same bounds, bit for bit
CHUNK_NODES = 128
#: seconds a chunk may come back after the deadline before it is bounded here without refinement
CHUNK_GRACE = 0.5


def _engine(fnet: Network, executor=None, workers: int = 1):
    """The bound engine for the objective network, bounding nodes in chunks (:class:`NodeEngine`)."""
    return NodeEngine(fnet, executor, workers)


def _chunks(count: int, size: int = CHUNK_NODES) -> list[slice]:
    """The node chunks of a batch of ``count`` nodes (``size`` each, the last one shorter)."""
    size = max(1, int(size))
    return [slice(i, i + size) for i in range(0, count, size)]


def _join(parts: list):
    """One :class:`~relumilp.bounds.engine.EngineBounds` from the chunks' (rows in order)."""
    from .bounds.engine import EngineBounds

    # a chunk bounded past the deadline may lack slopes and scores: then the batch has none (both optional)
    join = lambda dicts: (None if any(d is None for d in dicts)
                          else {k: np.concatenate([d[k] for d in dicts]) for k in dicts[0]})
    lams = [r.input_coefficients for r in parts]
    return EngineBounds(join([r.lower for r in parts]), join([r.upper for r in parts]),
                        np.concatenate([np.asarray(r.empty) for r in parts]), join([r.slopes for r in parts]),
                        join([r.scores for r in parts]),
                        None if any(lam is None for lam in lams) else np.concatenate(lams),
                        all(r.complete for r in parts))


_WORKER_ENGINES: dict = {}


def _ship(deadline: Deadline):
    """A deadline as a worker receives it: ``(seconds left, wall-clock time of sending)``, or None without
    a limit (``perf_counter`` is not shared across processes or machines)."""
    return (deadline.remaining(), time.time()) if deadline.limited else None


def _receive(shipped) -> Deadline:
    """The worker's :class:`~relumilp.limits.Deadline` from :func:`_ship`'s value (the time the task waited
    in the queue is taken off)."""
    if shipped is None:
        return Deadline()
    seconds, sent = shipped
    return Deadline.after(max(seconds - max(0.0, time.time() - sent), 1e-9))


def bound_chunk(token: str, fnet: Network, L, U, start, splits, optimise, refine, shipped):
    """One chunk of nodes in a worker process: the engine's bounds (built once per process and search)."""
    from .bounds.engine import BoundEngine

    engine = _WORKER_ENGINES.get(token)
    if engine is None:
        _WORKER_ENGINES.clear()  # one search at a time per worker
        engine = _WORKER_ENGINES[token] = BoundEngine.for_network(fnet)
    deadline = _receive(shipped)
    return engine.bounds(L, U, start, refine=refine, splits=splits, optimise=optimise, deadline=deadline)


class NodeEngine:
    """The batched bound engine of the objective network, node batches cut into chunks of
    :data:`CHUNK_NODES`.

    Serially the chunks are bounded one after another; with ``workers > 1`` on the shared local pool
    (:func:`relumilp.parallel.shared_process_pool`), or on ``executor`` (any
    ``concurrent.futures.Executor``, e.g. ``dask.distributed.Client.get_executor()``). The chunks are
    the same either way, so the results are identical to a serial run. A chunk not back by the deadline
    (plus :data:`CHUNK_GRACE`) is bounded here past the deadline: the engine then skips refinement and
    returns sound interval-strength bounds. Ctrl-C cancels the chunks and stops a local pool.
    """

    def __init__(self, fnet: Network, executor=None, workers: int = 1):
        import uuid

        from .bounds.engine import BoundEngine

        if workers is not None and int(workers) < 1:
            raise RelumilpError(f"workers must be at least 1, got {workers}")
        self.fnet, self.executor, self.workers = fnet, executor, int(workers or 1)
        self.engine = BoundEngine.for_network(fnet)
        self.token = uuid.uuid4().hex

    def bounds(self, L, U, start=None, refine="undecided", splits=None, optimise=None, deadline=None):
        deadline = Deadline() if deadline is None else deadline
        parts = _chunks(L.shape[0])
        task = lambda part: (L[part], U[part], _rows(start, part), _rows(splits, part),
                             None if optimise is None else {k: _rows(v, part) if k in ("slopes", "rows") else v
                                                               for k, v in optimise.items()},
                             _rows(refine, part) if isinstance(refine, dict) else refine)
        here = lambda args, limit=deadline: self.engine.bounds(args[0], args[1], args[2], refine=args[5],
                                                               splits=args[3], optimise=args[4], deadline=limit)
        if self.executor is None and (self.workers == 1 or len(parts) == 1):
            return _join([here(task(part)) for part in parts])
        return _join(self._spread([task(part) for part in parts], here, deadline))

    def _spread(self, tasks, here, deadline) -> list:
        from concurrent.futures import TimeoutError as FuturesTimeout
        from concurrent.futures import as_completed

        pool = self._pool()
        futures = {pool.submit(bound_chunk, self.token, self.fnet, *args, _ship(deadline)): k
                   for k, args in enumerate(tasks)}
        results: list = [None] * len(tasks)
        try:
            for future in as_completed(futures, timeout=deadline.remaining() + CHUNK_GRACE if deadline.limited else None):
                results[futures[future]] = future.result()
        except FuturesTimeout:
            self.cancel(futures, force=True)
            spent = Deadline.after(1e-9)
            results = [r if r is not None else here(tasks[k], spent) for k, r in enumerate(results)]
        except BaseException:  # Ctrl-C (and SIGTERM in the CLI): leave nothing running
            self.cancel(futures, force=True)
            raise
        return results

    # -- leaf tasks on the same pool or executor --------------------------------------------------

    def _pool(self):
        """Where leaf tasks run: ``executor``, the shared local pool (``workers > 1``), or None (here)."""
        if self.executor is not None:
            return self.executor
        if self.workers > 1:
            from .parallel import shared_process_pool

            return shared_process_pool(self.workers)
        return None

    def submit(self, runner, function, args, deadline: Deadline):
        """Start ``runner(function, args, seconds left)`` (:func:`run_leaf`) on the pool; None when tasks
        run here (serial)."""
        pool = self._pool()
        if pool is None:
            return None
        return pool.submit(runner, function, args, _ship(deadline))

    def result(self, future, deadline: Deadline):
        """The future's result, or None if it is not back by the deadline (plus :data:`CHUNK_GRACE`).
        Ctrl-C stops a local pool and is raised again."""
        from concurrent.futures import TimeoutError as FuturesTimeout

        try:
            return future.result(timeout=deadline.remaining() + CHUNK_GRACE if deadline.limited else None)
        except FuturesTimeout:
            return None
        except BaseException:
            self.cancel([future], force=True)
            raise

    def cancel(self, futures, stop: bool = True, force: bool = False) -> None:
        """Cancel the futures not started; with ``stop``, a local pool still running one of them (or any,
        with ``force``) is stopped, so nothing keeps computing after the search has ended."""
        running = False
        for future in futures:
            running |= not future.cancel() and not future.done()
        if ((running and stop) or force) and self.executor is None and self.workers > 1:
            from .parallel import kill_pool

            kill_pool(self.workers)

    def split_bounds(self, lower: dict, upper: dict, splits: dict, params: dict, names: list, layer, neuron, rows=None,
                     deadline: Deadline | None = None):
        """The engine's estimates for candidate neuron splits
        (:meth:`~relumilp.bounds.engine.BoundEngine.split_bounds`), here, in chunks of at most
        :data:`CHUNK_NODES` children (one back-substitution each: cheap next to a node's bound); the
        chunks not started by ``deadline`` are NaN."""
        deadline = Deadline() if deadline is None else deadline
        B, k = layer.shape
        estimates = np.full((B, k, 2, self.fnet.output_size), np.nan)
        for part in _chunks(B, CHUNK_NODES // (2 * k)):
            if deadline.expired():
                break
            estimates[part] = self.engine.split_bounds(_rows(lower, part), _rows(upper, part), _rows(splits, part),
                                                       _rows(params, part), names, layer[part], neuron[part],
                                                       None if rows is None else rows[part])
        return estimates

    def input_coefficients(self, lower: dict, upper: dict):
        """The engine's input coefficients (:meth:`~relumilp.bounds.engine.BoundEngine.input_coefficients`),
        chunk by chunk like :meth:`bounds`, here (one back-substitution of the output: cheap)."""
        return np.concatenate([self.engine.input_coefficients(_rows(lower, part), _rows(upper, part))
                               for part in _chunks(next(iter(lower.values())).shape[0])])


def _bound_boxes(engine, L: np.ndarray, U: np.ndarray, start: dict, splits: dict | None = None,
                 slopes: dict | None = None, steps: int = 0, deadline: Deadline | None = None,
                 refine: str = "undecided", rows=None):
    """Sound bounds of every node of the objective network on each node ``[L_b, U_b]`` (B, n) with its
    neuron ``splits`` (``{activation: (B, size)}`` of -1/0/+1, or None).

    ``start`` maps node names to ``(lower, upper)`` (B, size) arrays already valid on each box (its
    parent's). With ``steps > 0`` the loss's lower bound uses optimised slopes (alpha-CROWN), warm-started
    from ``slopes`` (the parents'). Returns ``(bounds, lam)``: the engine's
    :class:`~relumilp.bounds.engine.EngineBounds` (dicts of (B, size) arrays that contain every float64
    forward value on the node, ``empty`` flags, ``slopes`` and branching ``scores``), and (B, n) input
    coefficients ``Λ`` of ``f``'s linear upper bound (for input branching and the corner incumbent).
    With :func:`_engine`, :func:`engine_bounds` and :func:`lower_coefficients`, the only code that
    knows the engine: switching engines changes these three. Past ``deadline`` the engine stops
    refining: the bounds are looser but still sound.
    """
    result = engine_bounds(engine, L, U, start, splits, slopes, steps, deadline, refine=refine, rows=rows)
    lam = -lower_coefficients(engine, result, splits is not None)[:, 0, :]  # the loss -f: its lower bound's Λ, negated
    return result, lam


def engine_bounds(engine, L: np.ndarray, U: np.ndarray, start: dict, splits: dict | None = None,
                  slopes: dict | None = None, steps: int = 0, deadline: Deadline | None = None,
                  optimise: bool = True, refine: str = "undecided", rows=None):
    """The engine's :class:`~relumilp.bounds.engine.EngineBounds` of each node (see :func:`_bound_boxes`),
    the lower bounds of the output's rows optimised with ``steps`` alpha-CROWN steps (with neuron ``splits``
    and the parents' ``slopes``, the gentler :data:`NEURON_WARM_STEP` sizes; ``optimise=False``:
    the plain back-substituted bounds, no slopes and no branching scores -- one back-substitution of the
    output less per node). ``refine``: which nodes are back-substituted (the engine's ``"undecided"`` or
    ``"output"``: :data:`REFINE`); ``rows`` ((B, m) bool or None) the output rows whose optimised bound matters
    on each node (the objective's :meth:`open_rows`). Past ``deadline`` the engine stops refining and returns
    the sound (looser) bounds it has: a round ends promptly."""
    options = {"steps": steps, "sense": "lower", "slopes": slopes, "rows": rows} if optimise else None
    if options is not None and splits is not None and slopes is not None:
        options.update(NEURON_WARM_STEP)
    if refine == "output" and rows is not None:  # of the output too, only the rows that matter
        refine = {engine.fnet.output: rows}
    return engine.bounds(L, U, start, refine=refine, splits=splits, optimise=options, deadline=deadline)


def lower_coefficients(engine, result, neurons: bool = False) -> np.ndarray:
    """(B, m, n): ``Λ`` of the linear lower bound of each of the output's ``m`` rows on each node (for
    branching scores and corner points). With ``neurons`` (neuron branching, where ``Λ`` only places the
    corner point) those of the optimised bounds when ``result`` has them (zero on the rows not
    optimised: closed ones): one back-substitution less per node. Otherwise one back-substitution with
    the plain relaxation from the node's bounds: input branching breaks ties and places its corners by
    it, and the optimised ``Λ`` made it far worse (ACAS Xu 1_1 property 3: ``holds`` in 10 s and 866
    boxes with the plain one, ``unknown`` after 300 s and 50,639 boxes with the optimised one). Zero
    when the deadline cut ``result`` short: the round ends without branching, and one more
    back-substitution would only delay it."""
    if not result.complete:
        batch, m = result.lower[engine.fnet.output].shape
        return np.zeros((batch, m, engine.fnet.input_size))
    if neurons and result.input_coefficients is not None:
        return result.input_coefficients
    return engine.input_coefficients(result.lower, result.upper)


def _unstable(fnet: Network, lo: dict, hi: dict, splits: dict) -> dict:
    """Per activation, (B, size) masks of the neurons whose phase is open: unstable by the bounds and
    not split (a split neuron's widened bounds may straddle its kink by a rounding envelope)."""
    from .bounds.base import phases

    masks = {}
    for node in fnet.activations:
        open_ = phases(node, lo[node.inputs[0]], hi[node.inputs[0]]).unstable
        if node.name in splits:
            open_ = open_ & (splits[node.name] == 0)
        masks[node.name] = open_
    return masks


class OpenNodes:
    """The open list: one row per node in parallel arrays (the box ``L``, ``U``, its upper bound ``ub``,
    ``depth``, and the dicts ``start`` of (lower, upper) pairs, ``splits`` and ``slopes``), kept in
    buffers that grow by doubling, removal filling the holes from the tail.

    A round pushes its children and pops a batch; re-stacking every array each time (the old layout)
    cost time linear in the open list per round: on oval21, with ~5,000 open nodes each holding its
    parent's bounds and slopes (~280 kB), 12% of branch and bound's time went into copying them. Here
    push and removal cost only the rows they move. ``slopes`` (warm starts) are optional: a push
    without them, into a list that has them or the other way round, drops them all (never misaligned).

    A column can be stored narrowed (:meth:`narrow`): only some positions of its last axis are kept, and
    a removed row has the value ``fill`` elsewhere. The search keeps the warm starts this way, at the
    neurons still unstable when they were first stored: on oval21 ``cifar_wide`` (6,244 neurons, 528
    unstable) a node's slopes and split multipliers for 9 margin rows took 900 kB of its 1 MB in full,
    and thousands of open nodes took 10 GB. Over neurons the parents' pre-activation bounds are kept
    the same way (:meth:`_Search._narrow`)."""

    OPTIONAL = "slopes"

    def __init__(self):
        self.size = 0
        self._columns: dict = {}  # path (key, name, side) -> buffer with capacity rows
        self._narrowed: dict = {}  # path -> (positions kept on the last axis, full length, fill value)
        self._guards: dict = {}  # narrowed pair of bounds -> what its pushed rows may not cross (_check_fill)

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def _flatten(rows: dict) -> dict:
        flat = {}
        for key, value in rows.items():
            if isinstance(value, dict):
                for name, v in value.items():
                    if isinstance(v, tuple):
                        flat.update({(key, name, side): part for side, part in enumerate(v)})
                    else:
                        flat[(key, name, None)] = v
            else:
                flat[(key, None, None)] = value
        return flat

    @staticmethod
    def _unflatten(flat: dict) -> dict:
        rows: dict = {}
        for (key, name, side), v in flat.items():
            if name is None:
                rows[key] = v
                continue
            group = rows.setdefault(key, {})
            if side is None:
                group[name] = v
            else:
                pair = list(group.get(name, (None, None)))
                pair[side] = v
                group[name] = tuple(pair)
        return rows

    @property
    def ub(self) -> np.ndarray:
        column = self.column("ub")
        return np.empty(0) if column is None else column

    def narrow(self, key: str, name, keep: np.ndarray, size: int, fill=0.0, side: int | None = None) -> None:
        """Store the column ``(key, name)`` (``side`` of a pair) from now on at the positions ``keep`` of its
        last axis (of length ``size``) only; rows come back with ``fill`` (a number, or one value per
        position) elsewhere. Only before anything is stored under that path."""
        path = (key, name, side)
        if path in self._columns and self.size:
            raise RelumilpError("internal: an open-list column can only be narrowed before it is filled")
        self._narrowed[path] = (np.asarray(keep, dtype=np.int64), int(size), fill)

    def narrowed(self, key: str) -> bool:
        """Whether any column under ``key`` is stored narrowed."""
        return any(path[0] == key for path in self._narrowed)

    def column(self, key: str, name: str | None = None, side: int | None = None) -> np.ndarray | None:
        """The open nodes' rows of one stored array (a view), e.g. ``column("start", output, 0)``: their
        parents' lower bounds of the output; None when nothing is stored under that path."""
        column = self._columns.get((key, name, side))
        return None if column is None else column[: self.size]

    def push(self, rows: dict) -> None:
        flat = self._flatten(rows)
        count = len(flat[("ub", None, None)])
        if self.size and set(flat) != set(self._columns):
            optional = lambda paths: {p for p in paths if p[0] == self.OPTIONAL}
            if set(flat) - optional(flat) != set(self._columns) - optional(self._columns):
                raise RelumilpError("internal: open nodes pushed with different fields")
            flat = {p: v for p, v in flat.items() if p[0] != self.OPTIONAL}
            self._columns = {p: v for p, v in self._columns.items() if p[0] != self.OPTIONAL}
        if not self.size:
            self._columns = {p: self._columns[p] for p in flat if p in self._columns}
        end = self.size + count
        for path, value in flat.items():
            value = np.asarray(value)
            if path in self._narrowed:
                self._check_fill(path, value)
                value = value[..., self._narrowed[path][0]]
            column = self._columns.get(path)
            if column is None or column.shape[1:] != value.shape[1:] or column.dtype != value.dtype:
                column = np.empty((max(end, 16), *value.shape[1:]), dtype=value.dtype)
            elif column.shape[0] < end:
                grown = np.empty((max(end, 2 * column.shape[0]), *column.shape[1:]), dtype=column.dtype)
                grown[: self.size] = column[: self.size]
                column = grown
            column[self.size : end] = value
            self._columns[path] = column
        self.size = end

    def _check_fill(self, path, value: np.ndarray) -> None:
        """A narrowed pair of bounds (``side`` 0: lower, 1: upper) comes back as its fill where it is not
        stored, so the fill must contain what is dropped: rows outside it (beyond round-off) would get a
        tighter bound than their own, which need not hold on them."""
        key, _, side = path
        if side is None:
            return
        guard = self._guards.get(path)
        if guard is None:  # the fill less round-off where dropped, no limit where kept (one compare per push)
            keep, size, fill = self._narrowed[path]
            fill = np.array(np.broadcast_to(np.asarray(fill, dtype=np.float64), (size,)))
            sign = -1.0 if side == 0 else 1.0
            guard = fill + sign * 1e-9 * (1.0 + np.abs(fill))
            guard[keep] = sign * np.inf
            self._guards[path] = guard
        if (value < guard).any() if side == 0 else (value > guard).any():
            raise RelumilpError(f"internal: open-list {key!r} bounds pushed outside the stored fill")

    def remove(self, gone: np.ndarray) -> dict:
        """Remove the nodes ``gone`` (a bool mask over the open nodes) and return them (the layout of
        :meth:`push`); the last nodes move into the holes."""
        index = np.flatnonzero(gone)
        taken = {path: self._widened(path, column[index]) for path, column in self._columns.items()}
        keep = self.size - index.size
        holes = index[index < keep]
        movers = np.setdiff1d(np.arange(keep, self.size), index, assume_unique=True)
        for column in self._columns.values():
            column[holes] = column[movers]
        self.size = keep
        return self._unflatten(taken)

    def _widened(self, path, rows: np.ndarray) -> np.ndarray:
        if path not in self._narrowed:
            return rows
        keep, size, fill = self._narrowed[path]
        full = np.full((*rows.shape[:-1], size), fill, dtype=rows.dtype)
        full[..., keep] = rows
        return full


def _rows(value, rows):
    """Rows ``rows`` (a mask or a slice) of an array, of each array of a pair (a node's ``start`` bounds)
    or of each entry of a dict of either; None stays None."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {key: _rows(v, rows) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(v[rows] for v in value)
    return value[rows]


class _Search:
    """State of one branch and bound: open nodes, incumbent, closed bounds, statistics.

    What is maximised, and what a node's bound, a point's value and a leaf are, is the ``objective``'s
    (:class:`LinearObjective`, :class:`relumilp.verify.bab.RegionObjective`); the search only keeps
    the numbers. The open list (:class:`OpenNodes`) is a set of parallel arrays, one row per node: the box ``L``, ``U``, its
    inherited upper bound ``ub``, ``depth``, the parent's bounds ``start`` of the kept nodes, the neuron
    ``splits`` (-1/0/+1 per neuron of each splittable activation) and the parent's optimised ``slopes``
    (warm starts).
    """

    def __init__(self, objective, domain, deadline, options):
        self.objective, self.fnet = objective, objective.fnet
        self.domain, self.deadline, self.options = domain, deadline, options
        self.engine = _engine(self.fnet, options.get("executor"), options.get("workers", 1))
        self.rng = np.random.default_rng(options["seed"])
        self.width0 = np.where(domain.upper > domain.lower, domain.upper - domain.lower, 1.0)
        # nodes whose parent bounds children inherit: pre-activations and the objective's output
        # (activation bounds follow from them)
        self.kept = [node.inputs[0] for node in self.fnet.activations] + [self.fnet.output]
        #: activations whose neurons can be split (the engine clamps splits at a kink at 0)
        self.splittable = [node.name for node in self.fnet.activations if node.activation.breakpoints == (0.0,)]
        self.mode = options["branching"]
        # a smooth kind's leaf MILP is one more relaxation (its bands), not the exact answer on the node:
        # over input boxes such a node is split further rather than closed at a gap (relumilp.smooth)
        self.exact_leaves = not self.fnet.has_smooth
        self.nodes = OpenNodes()
        if self.mode == "relu":  # every node keeps the domain's box: no need to store it per node
            for key, box in (("L", domain.lower), ("U", domain.upper)):
                self.nodes.narrow(key, None, np.zeros(0, dtype=np.int64), domain.size, fill=np.array(box, dtype=np.float64))
        self.best_x: np.ndarray | None = None
        self.best = -math.inf
        self.closed = -math.inf  # max bound over pruned nodes and closed leaves
        self.in_flight = -math.inf  # bound of the popped batch until it is fully processed
        self.bounding_time = math.inf  # seconds the last batch's bounds took (the strong branching's budget)
        self.notes: list[str] = []
        self.stats = {"boxes": 0, "leaves": 0, "pruned": 0, "max_depth": 0, "leaf_milp_time": 0.0,
                      "leaf_milp_failed": 0, "polished": 0, "open": 0, "branching": self.mode,
                      "input_splits": 0, "neuron_splits": 0, "empty": 0, "boxes_scored": 0, "candidates_scored": 0}

    @property
    def ub(self) -> np.ndarray:
        return self.nodes.ub

    # -- values ----------------------------------------------------------------------------------

    def offer(self, x: np.ndarray) -> bool:
        """Make ``x`` (a point of the domain) the incumbent if the objective's single-point value is
        better; True if it was."""
        v = self.objective.value(x)
        if v > self.best:
            self.best, self.best_x = v, np.array(x, dtype=np.float64)
            return True
        return False

    def closes(self, upper: np.ndarray) -> np.ndarray:
        """Which node bounds close their node (the objective's rule: the gap, or a threshold)."""
        return self.objective.closes(np.asarray(upper, dtype=np.float64), self)

    def threshold(self) -> float:
        """Nodes whose upper bound is at most this cannot beat the incumbent by the gap."""
        return self.best + self.gap * max(1.0, abs(self.best)) if self.best_x is not None else -math.inf

    @property
    def gap(self) -> float:
        return self.options["gap"]

    def bound(self) -> float:
        open_ub = float(self.ub.max()) if self.ub.size else -math.inf
        return max(open_ub, self.closed, self.in_flight, self.best)

    # -- the open list ---------------------------------------------------------------------------

    def push(self, rows: dict) -> None:
        """Append nodes: ``rows`` has the keys of the open list (arrays, or dicts of arrays)."""
        if rows.get("slopes") and not self.nodes.narrowed("slopes"):
            self._narrow(rows)
        self.nodes.push(rows)

    def _narrow(self, rows: dict) -> None:
        """Keep the open list's arrays per neuron only where a neuron can still be unstable: those of the
        union of the bounds of every node, open or pushed now (every later node descends from these, and
        bounds only tighten downwards, so elsewhere a neuron keeps the union's phase in every node).

        * the warm starts (slopes and split multipliers): elsewhere a lower-line parameter is unused and a
          split multiplier has no split (both come back as 0, a valid value of either);
        * over neurons, when nothing is open yet (the root's children), also the parents' pre-activation
          bounds: elsewhere they come back as the union, valid on every node, from which the engine's
          interval pass gives each node its own again (its splits are all at unstable neurons). On oval21
          ``cifar_wide`` these were 100 kB of each open node, and copying them 8% of a round."""
        stored = lambda name, side: np.concatenate(
            [rows["start"][name][side], *(() if not self.nodes.size else (self.nodes.column("start", name, side),))])
        unstable: dict = {}  # per activation
        union: dict = {}  # per pre-activation node: (lower, upper) over the nodes, and its unstable positions
        for node in self.fnet.activations:
            source = node.inputs[0]
            if source not in rows["start"]:
                continue
            if source not in union:
                lower, upper = stored(source, 0).min(axis=0), stored(source, 1).max(axis=0)
                union[source] = (lower, upper, np.zeros(lower.size, dtype=bool))
            lower, upper, open_ = union[source]
            mask = phases(node, lower[None], upper[None]).unstable[0]
            open_ |= mask
            unstable[node.name] = np.flatnonzero(mask)
        for key, value in rows["slopes"].items():
            name = key[1] if isinstance(key, tuple) else key
            if name in unstable:
                self.nodes.narrow("slopes", key, unstable[name], np.shape(value)[-1])
        if self.mode == "relu" and not self.nodes.size:
            for source, (lower, upper, open_) in union.items():
                if source == self.fnet.output:
                    continue
                for side, fill in enumerate((lower, upper)):
                    self.nodes.narrow("start", source, np.flatnonzero(open_), lower.size, fill=fill, side=side)

    def take(self, keep: np.ndarray) -> dict:
        """Remove the nodes not in ``keep`` (bool) and return them (same layout as :meth:`push`)."""
        return self.nodes.remove(~keep)

    def prune_open(self) -> None:
        dead = self.closes(self.ub)
        if dead.any():
            self.closed = max(self.closed, float(self.ub[dead].max()))
            self.stats["pruned"] += int(dead.sum())
            self.take(~dead)

    def pop_best(self, B: int) -> dict:
        if self.ub.size > B:
            chosen = np.zeros(self.ub.size, dtype=bool)
            chosen[np.argpartition(-self.ub, B - 1)[:B]] = True
        else:
            chosen = np.ones(self.ub.size, dtype=bool)
        return self.take(~chosen)

    # -- one round -------------------------------------------------------------------------------

    def round(self, B: int) -> None:
        batch = self.pop_best(B)
        L, U, ub, depth = batch["L"], batch["U"], batch["ub"], batch["depth"]
        splits = batch.get("splits") or {}
        self.in_flight = float(ub.max())
        self.stats["boxes"] += L.shape[0]
        self.stats["max_depth"] = max(self.stats["max_depth"], int(depth.max()))
        steps = self.options["alpha_steps"]
        # input branching never splits a neuron: no splits, so no split multipliers to carry
        clock = time.perf_counter()
        result, lam = self.objective.bound_boxes(self.engine, L, U, batch["start"],
                                                 (splits or None) if self.mode == "relu" else None,
                                                 batch.get("slopes"), steps, self.deadline,
                                                 steps > 0 or self.mode == "relu", self.options["refine"],
                                                 self.objective.open_rows(batch["start"][self.fnet.output][0]))
        lo, hi = result.lower, result.upper
        self.bounding_time = time.perf_counter() - clock
        self.sample(L, U, lam)
        if self.objective.finished:
            return  # e.g. a confirmed counterexample: the answer is known
        upper = np.minimum(self.objective.node_upper(lo, L, U), ub)  # the parent's bound holds on the child too
        empty = np.asarray(result.empty, dtype=bool)
        self.stats["empty"] += int(empty.sum())
        upper[empty] = -math.inf  # no input of the node satisfies its splits
        if not result.complete:  # the deadline cut the bounds short (still sound): the batch stays in flight
            self.in_flight = float(upper.max())
            return
        alive = ~self.closes(upper)
        dead = ~alive & ~empty
        if dead.any():
            self.closed = max(self.closed, float(upper[dead].max()))
            self.stats["pruned"] += int(dead.sum())
        mid = (L + U) / 2
        halvable = (L < mid) & (mid < U)
        open_ = _unstable(self.fnet, lo, hi, splits)
        count = sum(m.sum(axis=1) for m in open_.values()) if open_ else np.zeros(L.shape[0], dtype=np.int64)
        few = count <= self.options["leaf_unstable"]
        if self.mode == "input" and not self.exact_leaves:
            few = np.zeros_like(few)
        leaf = alive & (few | (depth >= self.options["max_depth"]))
        if self.mode == "relu":
            # the open neurons left are of kinds that cannot be split (e.g. clip): the MILP decides them
            neuron_open = np.zeros(L.shape[0], dtype=bool)
            for name in self.splittable:
                neuron_open |= open_[name].any(axis=1)
            leaf |= alive & ~neuron_open
        else:
            leaf |= alive & ~halvable.any(axis=1)  # never dropped: a box at float64 resolution is a leaf
        if leaf.any() and not self.decide_leaves(np.flatnonzero(leaf), L, U, upper, lo, hi, splits):
            return  # the deadline or the objective's end stopped it: the batch stays in flight, its bound counts
        branch = np.flatnonzero(alive & ~leaf)
        if branch.size:
            if self.mode == "relu":
                self.branch_neurons(branch, self.choose_neurons(branch, open_, result, splits), batch, lo, hi,
                                    upper, result.slopes)
            else:
                self.branch_inputs(branch, batch, lo, hi, upper, lam, halvable, result.slopes)
        self.in_flight = -math.inf
        self.prune_open()

    def decide_leaves(self, rows, L, U, upper, lo, hi, splits) -> bool:
        """Decide the leaves ``rows`` of the batch by the objective's MILPs; False if the deadline (or the
        objective's end, e.g. a counterexample) stopped it first.

        Every leaf's MILP is set up from the state at the start of this phase (e.g. the incumbent as
        its MIP start), solved here one after another or, with ``workers``/``executor``, all at once
        on the pool (:meth:`NodeEngine.submit`), and its outcome applied in the leaves' order, where a
        leaf that the incumbent improved by the earlier ones now prunes keeps its engine bound (its
        outcome unused). Serial and parallel runs are therefore the same search."""
        tasks = {i: self.objective.leaf_task(self, L[i], U[i], lo, hi, i, splits) for i in rows}
        futures: dict = {}
        finished = False
        try:
            for i, (function, args, _) in tasks.items():
                futures[i] = self.engine.submit(run_leaf, function, args, self.deadline)
            for i in rows:
                if self.deadline.expired():
                    return False
                closes = bool(self.closes(upper[i : i + 1])[0])
                self.stats["leaves"] += not closes
                if closes:
                    bound = upper[i]
                else:
                    function, args, context = tasks[i]
                    outcome = (run_leaf(function, args, self.deadline) if futures[i] is None
                               else self.engine.result(futures[i], self.deadline))
                    if outcome is None:  # not back by the deadline
                        return False
                    bound = self.objective.leaf_result(self, upper[i], context, outcome)
                self.closed = max(self.closed, math.inf if math.isnan(bound) else bound)  # NaN proves nothing
                if self.objective.finished:
                    return False
            finished = True
            return True
        finally:
            # a leaf pruned by the earlier ones' incumbent may still be running: it ends on its own (the
            # pool is kept); on an early exit (deadline, answer, error) the pool is stopped
            self.engine.cancel([f for f in futures.values() if f is not None], stop=not finished)

    def children(self, rows, batch, lo, hi, upper, slopes, splits) -> dict:
        """The two children of each node in ``rows`` (parents' bounds, slopes and splits, depth + 1)."""
        both = np.concatenate([rows, rows])
        two = lambda a: a[both]  # one gather: a fancy index and a concatenation copied each array twice
        kids = {"ub": two(upper), "depth": two(batch["depth"]) + 1,
                "start": {name: (two(lo[name]), two(hi[name])) for name in self.kept},
                "splits": {name: two(v) for name, v in splits.items()}}
        if slopes is not None and self.options["alpha_steps"] > 0:
            kids["slopes"] = {name: two(v) for name, v in slopes.items()}
        return kids

    def branch_inputs(self, rows, batch, lo, hi, upper, lam, halvable, slopes) -> None:
        """Halve each node's box along the input whose worse half has the lowest bound (strong branching).

        All ``2 n`` halves of every node (both halves along each input) are bounded in one batched engine
        call, each from its parent's bounds. The input whose worse half keeps the smaller upper bound on
        ``f`` wins (ties: the larger ``|Λ_i| width_i``); its two halves are pushed with the bounds just
        computed (valid on each half, so they tighten the children's start and upper bound). The
        first-order score ``|Λ_i| width_i`` alone misses inputs along which ``f`` is curved but its linear
        bound is flat: on a Rosenbrock surrogate it never split two of its four inputs, and on ACAS Xu 1_1
        (max y0 over property 1's box) strong branching reached a bound within 1.1e-3 of the incumbent
        in 30 s where the first-order rule was still 1.4 away.
        """
        if not rows.size:
            return
        L, U = batch["L"][rows], batch["U"][rows]
        r, n = L.shape
        mid = (L + U) / 2
        dims = np.arange(n)
        cand_L, cand_U = np.repeat(L[:, None, :], 2 * n, axis=1), np.repeat(U[:, None, :], 2 * n, axis=1)
        cand_U[:, 2 * dims, dims] = mid  # candidate 2d: the lower half along input d; 2d + 1: the upper half
        cand_L[:, 2 * dims + 1, dims] = mid
        # the halves, then each parent box itself: bounded alike, so a gain is what halving buys
        flat_L, flat_U = np.concatenate([cand_L.reshape(-1, n), L]), np.concatenate([cand_U.reshape(-1, n), U])
        start = {name: tuple(np.concatenate([np.repeat(bound[name][rows], 2 * n, axis=0), bound[name][rows]])
                             for bound in (lo, hi)) for name in self.kept}
        result, _ = self.objective.bound_boxes(self.engine, flat_L, flat_U, start, None, None, 0, self.deadline, False)
        bound = self.objective.node_upper(result.lower, flat_L, flat_U)
        child_ub = np.minimum(bound[: 2 * n * r], np.repeat(upper[rows], 2 * n)).reshape(r, n, 2)
        worse = np.where(halvable[rows], child_ub.max(axis=2), np.inf)
        # The halves are bounded without optimised slopes, so against the parent's own (optimised) bound most
        # inputs tied, and a rounding-level gain made one input win every round until its width hit float64
        # resolution while the others never split. The gain is measured against the parent box bounded the
        # same way, and one below STRONG_GAIN_TOL is no gain: the first-order score decides among those.
        parent = np.minimum(bound[2 * n * r:], upper[rows])[:, None]
        gain = parent - np.minimum(worse, parent)
        gain = np.where(gain > STRONG_GAIN_TOL * np.maximum(1.0, np.abs(parent)), gain, 0.0)
        gain = np.where(np.isfinite(worse), gain, -np.inf)
        # and no input is halved more than THIN_LEAD times beyond the widest one (relative to the domain): a
        # steep input can keep a small real gain round after round while the others are never split
        relative = (U - L) / self.width0
        thin = relative * 2.0 ** THIN_LEAD < relative.max(axis=1, keepdims=True)
        gain = np.where(thin & np.isfinite(gain), -1.0, gain)
        first_order = np.abs(lam[rows]) * (U - L) + 1e-12 * (U - L) / self.width0
        dim = np.lexsort((-first_order, -gain), axis=1)[:, 0]
        k = np.arange(r)
        pick = lambda a, side: a[: 2 * n * r].reshape(r, 2 * n, *a.shape[1:])[k, 2 * dim + side]
        both = lambda a: np.concatenate([pick(a, 0), pick(a, 1)])
        kids = self.children(rows, batch, lo, hi, upper, slopes, batch.get("splits") or self.no_splits(len(batch["L"])))
        kids["ub"] = np.concatenate([child_ub[k, dim, 0], child_ub[k, dim, 1]])
        kids["start"] = {name: (both(result.lower[name]), both(result.upper[name])) for name in self.kept}
        self.push({"L": both(cand_L.reshape(-1, n)), "U": both(cand_U.reshape(-1, n)), **kids})
        self.stats["input_splits"] += int(rows.size)
        self.stats["boxes_scored"] += 2 * n * r

    def no_splits(self, n: int) -> dict:
        return {name: np.zeros((n, self.fnet[name].size), dtype=np.int8) for name in self.splittable}

    def candidates(self, rows, open_, scores, k: int):
        """Per node in ``rows``: ``(layer, neuron)``, each (rows.size, k), the ``k`` open splittable neurons
        with the largest scores, best first (layer index into ``self.splittable``; -1 where a node has
        fewer open neurons)."""
        sizes = [self.fnet[name].size for name in self.splittable]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        # open neurons with zero score still beat none
        flat = np.concatenate([np.where(open_[name][rows], (scores[name][rows] if scores and name in scores
                                                            else np.zeros((rows.size, size))) + 1e-12, -np.inf)
                               for name, size in zip(self.splittable, sizes)], axis=1)
        k = min(k, flat.shape[1])
        top = np.argpartition(-flat, k - 1, axis=1)[:, :k] if k < flat.shape[1] else np.tile(np.arange(k), (rows.size, 1))
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(flat, top, axis=1), axis=1, kind="stable"), axis=1)
        layer = np.searchsorted(offsets, top, side="right") - 1
        neuron = top - offsets[layer]
        layer[np.take_along_axis(flat, top, axis=1) == -np.inf] = -1
        return layer, neuron

    def choose_neurons(self, rows, open_, result, splits):
        """Per node in ``rows`` (each has an open splittable neuron): ``(layer index into
        self.splittable, neuron)`` of the neuron to split. Among the :data:`STRONG_CANDIDATES` open
        neurons with the largest BaBSR-style scores, the one whose worse child has the lowest estimated
        bound (:meth:`~relumilp.bounds.engine.BoundEngine.split_bounds`: one back-substitution per child
        with the parent's parameters); ties and the score-only choice (no optimised parameters, or one
        candidate) go to the largest score."""
        k = self.options["candidates"]
        layer, neuron = self.candidates(rows, open_, result.scores, k)
        if layer.shape[1] > 1 and result.slopes is not None:
            fnet = self.fnet
            sub = lambda d: {name: v[rows] for name, v in d.items()}
            every = splits or self.no_splits(result.lower[fnet.output].shape[0])
            budget = self.deadline.earlier(STRONG_BUDGET * self.bounding_time)
            estimates = self.engine.split_bounds(sub(result.lower), sub(result.upper), sub(every), sub(result.slopes),
                                                 self.splittable, layer, neuron,
                                                 self.objective.open_rows(result.lower[fnet.output][rows]), budget)
            r, k = layer.shape
            # the nodes branched on meet the input rows (else their bound would have closed them)
            upper = self.objective.node_upper({fnet.output: estimates.reshape(r * k * 2, -1)}, None, None).reshape(r, k, 2)
            reached = ~np.isnan(estimates).any(axis=(1, 2, 3))  # the nodes whose estimates came in time
            worse = np.where(layer >= 0, upper.max(axis=2), np.inf)
            pick = np.where(reached, np.argmin(worse, axis=1), 0)  # the first (largest score) among equals
            self.stats["candidates_scored"] += int((layer[reached] >= 0).sum())
            layer, neuron = layer[np.arange(r), pick], neuron[np.arange(r), pick]
            return layer, neuron
        return layer[:, 0], neuron[:, 0]

    def branch_neurons(self, rows, choice, batch, lo, hi, upper, slopes) -> None:
        """Split the chosen neuron of each node: one child active (+1), one inactive (-1)."""
        layer, neuron = choice
        assert (layer >= 0).all()
        n = len(batch["L"])
        splits = batch.get("splits") or self.no_splits(n)
        kids = self.children(rows, batch, lo, hi, upper, slopes, splits)
        k = np.arange(rows.size)
        for index, name in enumerate(self.splittable):
            here = layer == index
            s = kids["splits"][name]
            s[k[here], neuron[here]] = 1
            s[rows.size + k[here], neuron[here]] = -1
        L, U = batch["L"][rows], batch["U"][rows]
        self.push({"L": np.vstack([L, L]), "U": np.vstack([U, U]), **kids})
        self.stats["neuron_splits"] += int(rows.size)

    def sample(self, L: np.ndarray, U: np.ndarray, lam: np.ndarray) -> None:
        """Incumbent candidates: every box's centre, the corner maximising the objective's linear upper
        bound (``Λ``) and a few random points, handed to the objective as one batch. Over neurons every
        node has the same box: its centre and ``samples`` random points once per batch, and the distinct
        corners (which differ by node), not one of each per node (the forward passes of those were 10%
        of a round on oval21 ``cifar_wide``)."""
        k = self.options["samples"]
        corners = np.where(lam > 0, U, L)
        if self.mode == "relu":
            L, U, corners = L[:1], U[:1], np.unique(corners, axis=0)
        points = [(L + U) / 2, corners]
        if k > 0:
            r = self.rng.random((k, *L.shape))
            points.append(np.clip(L + r * (U - L), L, U).reshape(-1, L.shape[1]))
        self.objective.consider(self, np.vstack(points))

class LinearObjective:
    r"""Maximise ``f(x) = s c @ net(x)`` (``s = +1`` to maximise, ``-1`` to minimise): :func:`optimize`'s
    objective.

    The engine bounds the loss network ``x -> -f(x)`` (:func:`objective_network`); a node's upper bound
    is minus the loss's lower bound; a node closes when its bound cannot beat the incumbent by the gap;
    points are valued by the single-point float64 forward pass (as :func:`certify` values them); an
    improved incumbent is polished by the LP of its activation region; a leaf is the node's big-M MILP.
    """

    #: the search stops only when no node is open (or at the deadline)
    finished = False

    def __init__(self, net: Network, coefficients: np.ndarray, sign: float, polish: bool = True):
        self.net, self.sign = net, float(sign)
        self.coefficients = np.asarray(coefficients, dtype=np.float64)
        self.fnet = objective_network(net, self.coefficients, self.sign)
        self.polish_incumbents = bool(polish)
        self._polish_model = None

    def bound_boxes(self, engine, L, U, start, splits, slopes, steps, deadline=None, optimise=True,
                    refine="undecided", rows=None):
        """The engine's bounds of each node and ``Λ``, ``f``'s input coefficients (:func:`_bound_boxes`;
        always with the optimise pass, whose slopes at ``steps = 0`` can tighten the bound: the
        optimum's measured behaviour)."""
        return _bound_boxes(engine, L, U, start, splits, slopes, steps, deadline, refine, rows)

    def open_rows(self, lower: np.ndarray):
        """None: the loss has one row, always bounded."""
        return None

    def node_upper(self, lo: dict, L: np.ndarray | None, U: np.ndarray | None) -> np.ndarray:
        """``f <= -lower(loss)`` on each node (the boxes play no part)."""
        return -lo[self.fnet.output][:, 0]

    def value(self, x: np.ndarray) -> float:
        """``f(x)`` from the single-point float64 forward pass, computed as :func:`certify` computes it."""
        return self.sign * float(self.coefficients @ self.net.forward(x))

    def closes(self, upper: np.ndarray, search: "_Search") -> np.ndarray:
        """A node closes when its bound is at most ``incumbent + gap max(1, |incumbent|)``."""
        return upper <= search.threshold()

    def shown(self, value: float) -> float:
        """A value in the caller's sense (progress display)."""
        return self.sign * value

    def between_rounds(self, search: "_Search") -> None:
        """Nothing: the objective does not change during the search."""

    def start(self, search: "_Search") -> None:
        search.offer((search.domain.lower + search.domain.upper) / 2)

    def consider(self, search: "_Search", X: np.ndarray) -> None:
        """Candidate points: valued in a batch, the best few re-evaluated one at a time (batched products
        may round differently), an improved incumbent polished."""
        values = self.sign * (self.net.forward(X) @ self.coefficients)
        improved = False
        for i in np.argsort(-values)[:4]:
            improved |= search.offer(X[i])
        if improved and self.polish_incumbents:
            self.polish(search)

    # -- LP polishing and leaf MILPs ---------------------------------------------------------------

    def polish(self, search: "_Search") -> None:
        """The best point of the incumbent's linear piece: the root MILP with its binaries fixed (an LP)."""
        from .backends.highs import solve_milp
        from .formulation.bigm import start_vector
        from .formulation.milp import MILP
        from .pipeline import compile_network

        domain = search.domain
        if self._polish_model is None:
            compiled = compile_network(self.fnet, domain, tighten="interval")
            self._polish_model = compiled.milp.with_objective(np.ones(1), "min")
        milp = self._polish_model
        pattern = start_vector(self.fnet, milp, search.best_x)[milp.integrality]
        lower, upper = milp.col_lower.copy(), milp.col_upper.copy()
        lower[milp.integrality] = upper[milp.integrality] = pattern
        lp = MILP(**{**milp.__dict__, "col_lower": lower, "col_upper": upper,
                     "integrality": np.zeros_like(milp.integrality)})
        run = solve_milp(lp, deadline=search.deadline, threads=search.options["threads"], on_interrupt="raise")
        if run.x is not None and search.offer(np.clip(run.x[milp.input_columns], domain.lower, domain.upper)):
            search.stats["polished"] += 1

    def in_node(self, x: np.ndarray, lower, upper, splits: dict) -> bool:
        """Whether ``x`` lies in the node: in its box, with every split neuron's pre-activation (float64
        forward pass) on the split's side of the kink."""
        return in_node(self.fnet, x, lower, upper, splits)

    def leaf_task(self, search: "_Search", lower, upper, lo: dict, hi: dict, i: int, splits: dict):
        """Node ``i``'s leaf MILP as ``(function, args, context)`` for :func:`run_leaf`: the node's big-M
        MILP (compiled with its bounds, split neurons clamped at the kink: it relaxes ``f`` over the
        node's region), started from the incumbent if it lies in the node, else the box's centre."""
        row = {name: s[i] for name, s in splits.items()}
        best_x = search.best_x
        first = best_x if best_x is not None and self.in_node(best_x, lower, upper, row) else (lower + upper) / 2
        args = (self.fnet, lower, upper, node_bounds(lo, hi, i), first, search.gap, search.options["threads"], search.options["log"])
        return solve_linear_leaf, args, (lower, upper, row, first)

    def leaf_result(self, search: "_Search", engine_ub: float, context, run) -> float:
        """The node's bound from its leaf MILP's outcome (the MILP's when the forward pass supports it).

        Only forward values at points of the node's region (:meth:`in_node`) can contradict the MILP's
        bound. In neuron branching a region can be empty: HiGHS's ``infeasible`` then closes the node
        (in input branching a box is never empty, so there it is a failure and the node keeps its
        engine bound).
        """
        lower, upper, row, first = context
        search.stats["leaf_milp_time"] += run.seconds
        if run.status in ("time_limit", "interrupted"):  # cut short: its bound (if any) is HiGHS's dual bound
            search.stats["leaf_milp_cut_short"] = search.stats.get("leaf_milp_cut_short", 0) + 1
        seen = [self.value(first)] if self.in_node(first, lower, upper, row) else []
        if run.x is not None:
            x = np.clip(run.x, lower, upper)
            search.offer(x)
            if self.in_node(x, lower, upper, row):
                seen.append(self.value(x))
        if run.status == "infeasible" and any(s.any() for s in row.values()) and not seen:
            search.stats["leaf_empty"] = search.stats.get("leaf_empty", 0) + 1
            return -math.inf
        if run.bound is None:
            search.stats["leaf_milp_failed"] += 1
            return engine_ub
        bound = -run.bound
        if seen and max(seen) > bound:
            search.stats["leaf_milp_failed"] += 1
            search.notes.append(f"a leaf MILP's bound {bound:.17g} is beaten by the forward pass ({max(seen):.17g}): "
                                "the node keeps its engine bound")
            return engine_ub
        return min(bound, engine_ub)


def run_leaf(function, args, deadline):
    """Run a leaf task ``function(*args, deadline=...)``, here (``deadline`` a
    :class:`~relumilp.limits.Deadline`) or in a worker process (``deadline`` as :func:`_ship` sent it)."""
    return function(*args, deadline=deadline if isinstance(deadline, Deadline) else _receive(deadline))


def solve_linear_leaf(fnet: Network, lower, upper, bounds, first, gap, threads, log, *, deadline):
    """A :class:`LinearObjective` leaf: the node's big-M MILP (``min`` of the loss) solved by HiGHS from
    the MIP start ``first``; returns ``status``, ``bound``, ``x`` (its input part) and ``seconds``."""
    from .backends.highs import solve_milp
    from .formulation.bigm import start_vector

    milp = node_compiled(fnet, lower, upper, bounds).milp.with_objective(np.ones(1), "min")
    run = solve_milp(milp, deadline=deadline, mip_rel_gap=gap, threads=threads, log=log,
                     start=start_vector(fnet, milp, first), on_interrupt="raise")
    x = None if run.x is None else np.asarray(run.x[milp.input_columns])
    return SimpleNamespace(status=run.status, bound=run.bound, x=x, seconds=run.seconds)


def in_node(fnet: Network, x: np.ndarray, lower, upper, splits: dict) -> bool:
    """Whether ``x`` lies in a node of ``fnet``'s search: in the box ``[lower, upper]``, with every split
    neuron's pre-activation (float64 forward pass) on the split's side of the kink."""
    if not bool(np.all((lower <= x) & (x <= upper))):
        return False
    fixed = {name: s for name, s in splits.items() if s.any()}
    if not fixed:
        return True
    values = fnet.forward_all(x[None])
    return all(bool(np.all(((s <= 0) | (values[fnet[name].inputs[0]][0] >= 0))
                           & ((s >= 0) | (values[fnet[name].inputs[0]][0] <= 0)))) for name, s in fixed.items())


def node_bounds(lo: dict, hi: dict, i: int) -> tuple[dict, dict]:
    """Node ``i``'s rows of the batch's engine bounds: ``(lower, upper)`` dicts of (size,) arrays."""
    return {k: v[i].copy() for k, v in lo.items()}, {k: v[i].copy() for k, v in hi.items()}


def node_compiled(fnet: Network, lower, upper, bounds: tuple[dict, dict], A=None, b=None):
    """The big-M MILP of ``fnet`` over a node's box (with the domain's rows ``A x <= b``, if any),
    compiled with the node's engine ``bounds`` (:func:`node_bounds`): split neurons are clamped at their
    kink there, so it relaxes the network over the node's region (a leaf's model)."""
    from .bounds.base import Bounds
    from .pipeline import compile_with_bounds

    return compile_with_bounds(fnet, InputDomain(lower, upper, A, b), Bounds(*bounds, "symbolic"))


def search(objective, domain: InputDomain, *, deadline: Deadline, gap: float = 0.0, root_bounds=None,
           batch_size: int = 64, leaf_unstable: int = 14, max_depth: int = 60, samples: int = 4,
           threads: int | None = None, log: bool = False, progress: bool = False, seed: int = 0,
           branching: str = "auto", alpha_steps: int | None = None, label: str = "branch and bound",
           workers: int = 1, executor=None, refine: str | None = None, candidates: int | None = None):
    """Run the best-first branch and bound of ``objective`` over the box of ``domain`` (module docstring).

    ``root_bounds`` (a :class:`~relumilp.bounds.base.Bounds` whose names match ``objective.fnet``'s,
    e.g. from LP tightening) seed every node. ``workers > 1`` bounds node batches on that many local
    processes, ``executor`` on any ``concurrent.futures.Executor`` (:class:`NodeEngine`: same results as
    serial). ``refine`` overrides :data:`REFINE` (``"undecided"`` or ``"output"``), ``candidates``
    :data:`STRONG_CANDIDATES` (neurons compared per node; 1: by score alone). Returns
    ``(search, status)``: the :class:`_Search` (open
    nodes, incumbent, closed bounds, statistics) and ``"done"`` (no node open, or the objective
    ``finished``), ``"time_limit"`` or ``"interrupted"`` (Ctrl-C).
    """
    branching = resolve_branching(branching, domain.size)
    if alpha_steps is None:
        alpha_steps = ALPHA_STEPS[branching]
    if refine is None:
        refine = REFINE[branching]
    if refine not in ("undecided", "output"):
        raise RelumilpError(f"refine must be 'undecided' or 'output', got {refine!r}")
    candidates = STRONG_CANDIDATES if candidates is None else int(candidates)
    if candidates < 1:
        raise RelumilpError(f"candidates must be at least 1, got {candidates}")
    options = {"refine": refine, "candidates": candidates, "leaf_unstable": int(leaf_unstable), "max_depth": int(max_depth),
               "samples": int(samples), "threads": threads, "log": log, "seed": seed, "branching": branching,
               "alpha_steps": int(alpha_steps), "gap": float(gap), "workers": workers, "executor": executor}
    state = _Search(objective, domain, deadline, options)
    fnet = objective.fnet
    start = {name: (np.full((1, node.size), -np.inf), np.full((1, node.size), np.inf))
             for name, node in ((name, fnet[name]) for name in state.kept)}
    if root_bounds is not None:
        start.update({name: (root_bounds.lower[name][None], root_bounds.upper[name][None])
                      for name in state.kept if name in root_bounds.lower})
    state.push({"L": domain.lower[None], "U": domain.upper[None], "ub": np.full(1, np.inf),
                "depth": np.zeros(1, dtype=np.int64), "start": start, "splits": state.no_splits(1)})
    status = "done"
    clock = time.perf_counter()
    bar = progress_bar(progress, label, " boxes")
    try:
        objective.start(state)
        while state.ub.size and not objective.finished:
            if deadline.expired() and state.stats["boxes"]:  # the root is always bounded: a finite bound
                status = "time_limit"
                break
            before = state.stats["boxes"]
            state.round(max(1, int(batch_size)))
            objective.between_rounds(state)
            _show(bar, state, state.stats["boxes"] - before)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()
    if status == "done" and not objective.finished and deadline.expired() and state.in_flight > -math.inf:
        status = "time_limit"  # a leaf was cut short: its batch is still open
    state.stats.update(open=int(state.ub.size), seconds=time.perf_counter() - clock, bound=state.bound())
    return state, status


def branch_and_bound(net: Network, domain: InputDomain, coefficients: np.ndarray, sense: str, *,
                     gap: float, deadline: Deadline, root_bounds=None, batch_size: int = 64,
                     leaf_unstable: int = 14, max_depth: int = 60, samples: int = 4, polish: bool = True,
                     threads: int | None = None, log: bool = False, progress: bool = False, seed: int = 0,
                     branching: str = "auto", alpha_steps: int | None = None, workers: int = 1, executor=None,
                     candidates: int | None = None):
    """Maximise (``sense="max"``) or minimise ``coefficients @ net(x)`` over the box ``domain``
    (:func:`search` with a :class:`LinearObjective`; ``workers`` / ``executor`` as there).

    ``root_bounds`` (a :class:`~relumilp.bounds.base.Bounds` of ``net`` on ``domain``, e.g. from LP
    tightening) seed every box; ``candidates`` as in :func:`search`. Returns ``(solution, x, stats)``: ``solution`` a
    :class:`~relumilp.backends.highs.MilpSolution`-like record (status and bound in the caller's sense)
    and ``x`` the incumbent (None only when interrupted before the first forward pass).
    """
    from .backends.highs import MilpSolution

    if domain.A is not None:
        raise RelumilpError("branch and bound needs a box domain (no rows A x <= b): use method='milp' (--method milp)")
    sign = 1.0 if sense == "max" else -1.0
    objective = LinearObjective(net, coefficients, sign, polish=polish)
    state, status = search(objective, domain, deadline=deadline, gap=gap, root_bounds=root_bounds,
                           batch_size=batch_size, leaf_unstable=leaf_unstable, max_depth=max_depth, samples=samples,
                           threads=threads, log=log, progress=progress, seed=seed, branching=branching,
                           alpha_steps=alpha_steps, workers=workers, executor=executor, candidates=candidates)
    status = "optimal" if status == "done" else status
    bound = state.bound()
    if status == "optimal" and bound > state.threshold():
        if state.stats.get("leaf_milp_cut_short") and deadline.expired():
            status = "time_limit"  # leaves the deadline cut short closed their nodes at their dual bounds
        else:
            status = "unknown"  # closed by leaves whose MILP failed: no certificate
            state.notes.append("some leaf MILPs gave no usable bound: the global bound stays above the gap")
    finite = math.isfinite(bound)
    solution = MilpSolution(status, bound=sign * bound if finite else None, notes=state.notes)
    return solution, state.best_x, state.stats


def _show(bar, search: _Search, boxes: int) -> None:
    if bar.disable:
        return
    bound = search.bound()
    shown = search.objective.shown
    gap = (bound - search.best) / max(1.0, abs(search.best)) if math.isfinite(bound) else math.inf
    bar.set_postfix(open=int(search.ub.size), incumbent=f"{shown(search.best):.6g}",
                    bound=f"{shown(bound):.6g}", gap=f"{gap:.2g}", refresh=False)
    bar.update(boxes)


def certified(net: Network, domain: InputDomain, solution, x, coefficients, sense: str, gap: float, check: str):
    """The :class:`~relumilp.optimization.SolveResult` of a branch and bound, through the MILP path's
    :func:`~relumilp.optimization.certify` (the forward pass at ``x`` is the objective)."""
    from .optimization import certify

    compiled = SimpleNamespace(original=None, network=net, domain=domain)
    return certify(compiled, solution, coefficients, sense, gap, [] if x is None else [x], check)
