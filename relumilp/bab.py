r"""Best-first branch and bound over input boxes and neuron splits: the certified optimum of a network output.

:func:`branch_and_bound` maximises ``f(x) = s c @ net(x)`` (``s = +1`` to maximise, ``-1`` to minimise)
over an input box. The big-M MILP of a whole network stalls beyond ~50 unstable ReLUs; branch and
bound splits the problem until the pieces are easy. The algorithm:

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
   :mod:`relumilp.bounds.engine`), warm-started from the parent's.
3. **Incumbents** are float64 forward passes: the centre of every popped box, the corner maximising
   ``f``'s linear upper bound (``Λ``) and ``samples`` random points in it (chosen in a batch, then
   re-evaluated one point at a time, as :func:`certify` does). An improved incumbent is polished by the
   LP over its activation region (binaries fixed at its pattern, the best input of that linear piece),
   re-evaluated by the forward pass.
4. **Pruning.** A node whose upper bound is at most ``incumbent + gap max(1, |incumbent|)`` is closed
   (its bound still counts towards the reported global bound).
5. **Leaves.** A node with at most ``leaf_unstable`` open neurons (an LP when none is left: the network
   is affine on the region), or one that cannot be split (``max_depth`` reached, or a box width at
   float64 resolution), is decided by the big-M MILP over the box, compiled with the node's bounds
   (split neurons clamped) and solved by HiGHS with the incumbent (or the box's centre) as MIP start.
   Its dual bound closes the node only if no forward pass at a point of the node's region beats it
   (else the node keeps its engine bound); its point is an incumbent candidate.
6. **Branching** (``branching``): ``"input"`` halves the box along the input whose worse half has the
   lowest bound, found by bounding both halves along every input in one batch (strong branching; ties:
   the largest ``|Λ_i| width_i``, then the largest width relative to the domain's); ``"relu"`` splits the open
   neuron with the largest BaBSR-style score (the engine's ``scores``: its coefficient in the optimised
   bound times its relaxation gap; Bunel et al. 2020); a node with no splittable neuron open is a
   leaf (its MILP decides neurons of other kinds). ``"auto"`` picks input splitting up to
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
from .limits import Deadline

#: ``branching="auto"``: split input boxes up to this many inputs, neurons beyond (benchmarks/bab_benchmark.py)
INPUT_BRANCHING_MAX_INPUTS = 8
BRANCHING = ("auto", "input", "relu")
#: optimised-slope (alpha-CROWN) steps per node bound, by branching mode (benchmarks/bab_benchmark.py)
ALPHA_STEPS = {"input": 6, "relu": 8}


def objective_network(net: Network, coefficients: np.ndarray, sign: float) -> Network:
    """``x -> -sign * coefficients @ net(x)``: the loss that branch and bound minimises (see module docstring)."""
    from .verify import spec_network

    return spec_network(net, -sign * np.asarray(coefficients, dtype=np.float64)[None, :], np.zeros(1))


def _engine(fnet: Network):
    """The batched bound engine for the objective network (:class:`relumilp.bounds.engine.BoundEngine`)."""
    from .bounds.engine import BoundEngine

    return BoundEngine.for_network(fnet)


def _bound_boxes(engine, L: np.ndarray, U: np.ndarray, start: dict, splits: dict | None = None,
                 slopes: dict | None = None, steps: int = 0, deadline: Deadline | None = None):
    """Sound bounds of every node of the objective network on each node ``[L_b, U_b]`` (B, n) with its
    neuron ``splits`` (``{activation: (B, size)}`` of -1/0/+1, or None).

    ``start`` maps node names to ``(lower, upper)`` (B, size) arrays already valid on each box (its
    parent's). With ``steps > 0`` the loss's lower bound uses optimised slopes (alpha-CROWN), warm-started
    from ``slopes`` (the parents'). Returns ``(bounds, lam)``: the engine's
    :class:`~relumilp.bounds.engine.EngineBounds` (dicts of (B, size) arrays that contain every float64
    forward value on the node, ``empty`` flags, ``slopes`` and branching ``scores``), and (B, n) input
    coefficients ``Λ`` of ``f``'s linear upper bound (for input branching and the corner incumbent).
    With :func:`_engine`, the only code that knows the engine: switching engines changes these two.
    Past ``deadline`` the engine stops refining: the bounds are looser but still sound.
    """
    result = engine.bounds(L, U, start, refine="undecided", splits=splits,
                           optimise={"steps": steps, "sense": "lower", "slopes": slopes}, deadline=deadline)
    lam = -engine.input_coefficients(result.lower, result.upper)[:, 0, :]  # the loss -f: its lower bound's Λ, negated
    return result, lam


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


def _stack(a, b):
    """Rows of ``b`` after those of ``a`` (arrays, or pairs of arrays: a node's ``start`` bounds)."""
    if isinstance(a, tuple):
        return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    return np.concatenate([a, b])


def _rows(value, mask):
    """Rows ``mask`` of an array or of each array of a pair (a node's ``start`` bounds)."""
    return (value[0][mask], value[1][mask]) if isinstance(value, tuple) else value[mask]


class _Search:
    """State of one branch and bound: open nodes, incumbent, closed bounds, statistics.

    The open list is a set of parallel arrays, one row per node: the box ``L``, ``U``, its inherited
    upper bound ``ub``, ``depth``, the parent's bounds ``start`` of the kept nodes, the neuron
    ``splits`` (-1/0/+1 per neuron of each splittable activation) and the parent's optimised
    ``slopes`` (warm starts).
    """

    def __init__(self, net, fnet, coefficients, sign, domain, gap, deadline, options):
        self.net, self.fnet, self.coefficients, self.sign = net, fnet, coefficients, sign
        self.domain, self.gap, self.deadline, self.options = domain, gap, deadline, options
        self.engine = _engine(fnet)
        self.rng = np.random.default_rng(options["seed"])
        self.width0 = np.where(domain.upper > domain.lower, domain.upper - domain.lower, 1.0)
        # nodes whose parent bounds children inherit: pre-activations and the loss (activation
        # bounds follow from them)
        self.kept = [node.inputs[0] for node in fnet.activations] + [fnet.output]
        #: activations whose neurons can be split (the engine clamps splits at a kink at 0)
        self.splittable = [node.name for node in fnet.activations if node.activation.breakpoints == (0.0,)]
        self.mode = options["branching"]
        self.nodes: dict = {"L": np.empty((0, domain.size)), "U": np.empty((0, domain.size)), "ub": np.empty(0),
                            "depth": np.empty(0, dtype=np.int64)}
        self.best_x: np.ndarray | None = None
        self.best = -math.inf
        self.closed = -math.inf  # max bound over pruned nodes and closed leaves
        self.in_flight = -math.inf  # bound of the popped batch until it is fully processed
        self.notes: list[str] = []
        self.stats = {"boxes": 0, "leaves": 0, "pruned": 0, "max_depth": 0, "leaf_milp_time": 0.0,
                      "leaf_milp_failed": 0, "polished": 0, "open": 0, "branching": self.mode,
                      "input_splits": 0, "neuron_splits": 0, "empty": 0, "boxes_scored": 0}
        self._polish_model = None

    @property
    def ub(self) -> np.ndarray:
        return self.nodes["ub"]

    # -- values ----------------------------------------------------------------------------------

    def value(self, x: np.ndarray) -> float:
        """``f(x)`` from the single-point float64 forward pass, computed as :func:`certify` computes it."""
        return self.sign * float(self.coefficients @ self.net.forward(x))

    def offer(self, x: np.ndarray) -> bool:
        """Make ``x`` (a point of the domain) the incumbent if it is better; True if it was."""
        v = self.value(x)
        if v > self.best:
            self.best, self.best_x = v, np.array(x, dtype=np.float64)
            return True
        return False

    def threshold(self) -> float:
        """Nodes whose upper bound is at most this cannot beat the incumbent by the gap."""
        return self.best + self.gap * max(1.0, abs(self.best)) if self.best_x is not None else -math.inf

    def bound(self) -> float:
        open_ub = float(self.ub.max()) if self.ub.size else -math.inf
        return max(open_ub, self.closed, self.in_flight, self.best)

    # -- the open list ---------------------------------------------------------------------------

    def push(self, rows: dict) -> None:
        """Append nodes: ``rows`` has the keys of the open list (arrays, or dicts of arrays)."""
        for key, value in rows.items():
            if isinstance(value, dict):
                old = self.nodes.setdefault(key, {})
                for name, v in value.items():
                    old[name] = v if name not in old else _stack(old[name], v)
            else:
                self.nodes[key] = _stack(self.nodes[key], value) if key in self.nodes else value

    def take(self, keep: np.ndarray) -> dict:
        """Remove the nodes not in ``keep`` (bool) and return them (same layout as :meth:`push`)."""
        gone = ~keep
        split = lambda v, m: {k: _rows(a, m) for k, a in v.items()} if isinstance(v, dict) else _rows(v, m)
        taken = {key: split(value, gone) for key, value in self.nodes.items()}
        self.nodes = {key: split(value, keep) for key, value in self.nodes.items()}
        return taken

    def prune_open(self) -> None:
        dead = self.ub <= self.threshold()
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
        result, lam = _bound_boxes(self.engine, L, U, batch["start"], splits or None, batch.get("slopes"), steps,
                                   self.deadline)
        lo, hi = result.lower, result.upper
        self.sample(L, U, lam)
        upper = np.minimum(-lo[self.fnet.output][:, 0], ub)  # the parent's bound holds on the child too
        empty = np.asarray(result.empty, dtype=bool)
        self.stats["empty"] += int(empty.sum())
        upper[empty] = -math.inf  # no input of the node satisfies its splits
        alive = upper > self.threshold()
        dead = ~alive & ~empty
        if dead.any():
            self.closed = max(self.closed, float(upper[dead].max()))
            self.stats["pruned"] += int(dead.sum())
        mid = (L + U) / 2
        halvable = (L < mid) & (mid < U)
        open_ = _unstable(self.fnet, lo, hi, splits)
        count = sum(m.sum(axis=1) for m in open_.values()) if open_ else np.zeros(L.shape[0], dtype=np.int64)
        leaf = alive & ((count <= self.options["leaf_unstable"]) | (depth >= self.options["max_depth"]))
        if self.mode == "relu":
            # the open neurons left are of kinds that cannot be split (e.g. clip): the MILP decides them
            neuron_open = np.zeros(L.shape[0], dtype=bool)
            for name in self.splittable:
                neuron_open |= open_[name].any(axis=1)
            leaf |= alive & ~neuron_open
        else:
            leaf |= alive & ~halvable.any(axis=1)  # never dropped: a box at float64 resolution is a leaf
        for i in np.flatnonzero(leaf):
            if self.deadline.expired():
                return  # the batch stays in flight: its bound still counts
            # the incumbent may have improved meanwhile: then the node is pruned, its bound kept
            bound = self.leaf(L[i], U[i], upper[i], lo, hi, i, splits) if upper[i] > self.threshold() else upper[i]
            self.closed = max(self.closed, bound)
        branch = np.flatnonzero(alive & ~leaf)
        if branch.size:
            if self.mode == "relu":
                self.branch_neurons(branch, self.choose_neurons(branch, open_, result.scores), batch, lo, hi,
                                    upper, result.slopes)
            else:
                self.branch_inputs(branch, batch, lo, hi, upper, lam, halvable, result.slopes)
        self.in_flight = -math.inf
        self.prune_open()

    def children(self, rows, batch, lo, hi, upper, slopes, splits) -> dict:
        """The two children of each node in ``rows`` (parents' bounds, slopes and splits, depth + 1)."""
        two = lambda a: np.concatenate([a[rows], a[rows]])
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
        start = {name: (np.repeat(lo[name][rows], 2 * n, axis=0), np.repeat(hi[name][rows], 2 * n, axis=0))
                 for name in self.kept}
        result, _ = _bound_boxes(self.engine, cand_L.reshape(-1, n), cand_U.reshape(-1, n), start,
                                 deadline=self.deadline)
        child_ub = np.minimum(-result.lower[self.fnet.output][:, 0], np.repeat(upper[rows], 2 * n)).reshape(r, n, 2)
        worse = np.where(halvable[rows], child_ub.max(axis=2), np.inf)
        first_order = np.abs(lam[rows]) * (U - L) + 1e-12 * (U - L) / self.width0
        dim = np.lexsort((-first_order, worse), axis=1)[:, 0]
        k = np.arange(r)
        pick = lambda a, side: a.reshape(r, 2 * n, *a.shape[1:])[k, 2 * dim + side]
        both = lambda a: np.concatenate([pick(a, 0), pick(a, 1)])
        kids = self.children(rows, batch, lo, hi, upper, slopes, batch.get("splits") or self.no_splits(len(batch["L"])))
        kids["ub"] = np.concatenate([child_ub[k, dim, 0], child_ub[k, dim, 1]])
        kids["start"] = {name: (both(result.lower[name]), both(result.upper[name])) for name in self.kept}
        self.push({"L": both(cand_L.reshape(-1, n)), "U": both(cand_U.reshape(-1, n)), **kids})
        self.stats["input_splits"] += int(rows.size)
        self.stats["boxes_scored"] += 2 * n * r

    def no_splits(self, n: int) -> dict:
        return {name: np.zeros((n, self.fnet[name].size), dtype=np.int8) for name in self.splittable}

    def choose_neurons(self, rows, open_, scores):
        """Per node in ``rows`` (each has an open splittable neuron): ``(layer index into
        self.splittable, neuron)`` of the open splittable neuron with the largest score."""
        best = np.full(rows.size, -np.inf)
        layer = np.full(rows.size, -1)
        neuron = np.zeros(rows.size, dtype=np.int64)
        for k, name in enumerate(self.splittable):
            mask = open_[name][rows]
            s = scores[name][rows] if scores and name in scores else np.zeros(mask.shape)
            s = np.where(mask, s + 1e-12, -np.inf)  # open neurons with zero score still beat none
            j = np.argmax(s, axis=1)
            v = s[np.arange(rows.size), j]
            better = v > best
            best[better], layer[better], neuron[better] = v[better], k, j[better]
        return layer, neuron

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
        """Incumbent candidates: every box's centre, the corner maximising ``f``'s linear upper bound
        (``Λ``) and a few random points (batched, then the best re-evaluated one at a time)."""
        k = self.options["samples"]
        points = [(L + U) / 2, np.where(lam > 0, U, L)]
        if k > 0:
            r = self.rng.random((k, *L.shape))
            points.append(np.clip(L + r * (U - L), L, U).reshape(-1, L.shape[1]))
        X = np.vstack(points)
        values = self.sign * (self.net.forward(X) @ self.coefficients)
        # batched products may round differently: the best few are re-evaluated one at a time
        improved = False
        for i in np.argsort(-values)[:4]:
            improved |= self.offer(X[i])
        if improved and self.options["polish"]:
            self.polish()

    # -- LP polishing and leaf MILPs ---------------------------------------------------------------

    def polish(self) -> None:
        """The best point of the incumbent's linear piece: the root MILP with its binaries fixed (an LP)."""
        from .backends.highs import solve_milp
        from .formulation.bigm import start_vector
        from .formulation.milp import MILP
        from .pipeline import compile_network

        if self._polish_model is None:
            compiled = compile_network(self.fnet, self.domain, tighten="interval")
            self._polish_model = compiled.milp.with_objective(np.ones(1), "min")
        milp = self._polish_model
        pattern = start_vector(self.fnet, milp, self.best_x)[milp.integrality]
        lower, upper = milp.col_lower.copy(), milp.col_upper.copy()
        lower[milp.integrality] = upper[milp.integrality] = pattern
        lp = MILP(**{**milp.__dict__, "col_lower": lower, "col_upper": upper,
                     "integrality": np.zeros_like(milp.integrality)})
        run = solve_milp(lp, deadline=self.deadline, threads=self.options["threads"], on_interrupt="raise")
        if run.x is not None and self.offer(np.clip(run.x[milp.input_columns], self.domain.lower, self.domain.upper)):
            self.stats["polished"] += 1

    def in_node(self, x: np.ndarray, lower, upper, splits: dict) -> bool:
        """Whether ``x`` lies in the node: in its box, with every split neuron's pre-activation (float64
        forward pass) on the split's side of the kink."""
        if not bool(np.all((lower <= x) & (x <= upper))):
            return False
        fixed = {name: s for name, s in splits.items() if s.any()}
        if not fixed:
            return True
        values = self.fnet.forward_all(x[None])
        return all(bool(np.all(((s <= 0) | (values[self.fnet[name].inputs[0]][0] >= 0))
                               & ((s >= 0) | (values[self.fnet[name].inputs[0]][0] <= 0)))) for name, s in fixed.items())

    def leaf(self, lower, upper, engine_ub: float, lo: dict, hi: dict, i: int, splits: dict) -> float:
        """Decide node ``i`` by its MILP; returns the node's bound (the MILP's when the forward pass supports it).

        The MILP is compiled with the node's bounds, in which split neurons' pre-activations are clamped
        at the kink: it relaxes ``f`` over the node's region, so only forward values at points of the
        region (:meth:`in_node`) can contradict its bound. In neuron branching a region can be empty:
        HiGHS's ``infeasible`` then closes the node (in input branching a box is never empty, so there
        it is a failure and the node keeps its engine bound).
        """
        from .backends.highs import solve_milp
        from .bounds.base import Bounds
        from .formulation.bigm import start_vector
        from .pipeline import compile_network

        self.stats["leaves"] += 1
        box = InputDomain(lower, upper)
        compiled = compile_network(self.fnet, box, bounds=Bounds({k: v[i] for k, v in lo.items()},
                                                                  {k: v[i] for k, v in hi.items()}, "symbolic"))
        milp = compiled.milp.with_objective(np.ones(1), "min")
        row = {name: s[i] for name, s in splits.items()}
        first = self.best_x if self.best_x is not None and self.in_node(self.best_x, lower, upper, row) else (lower + upper) / 2
        run = solve_milp(milp, deadline=self.deadline, mip_rel_gap=self.gap, threads=self.options["threads"],
                         log=self.options["log"], start=start_vector(self.fnet, milp, first), on_interrupt="raise")
        self.stats["leaf_milp_time"] += run.seconds
        seen = [self.value(first)] if self.in_node(first, lower, upper, row) else []
        if run.x is not None:
            x = np.clip(run.x[milp.input_columns], lower, upper)
            self.offer(x)
            if self.in_node(x, lower, upper, row):
                seen.append(self.value(x))
        if run.status == "infeasible" and any(s.any() for s in row.values()) and not seen:
            self.stats["leaf_empty"] = self.stats.get("leaf_empty", 0) + 1
            return -math.inf
        if run.bound is None:
            self.stats["leaf_milp_failed"] += 1
            return engine_ub
        bound = -run.bound
        if seen and max(seen) > bound:
            self.stats["leaf_milp_failed"] += 1
            self.notes.append(f"a leaf MILP's bound {bound:.17g} is beaten by the forward pass ({max(seen):.17g}): "
                              "the node keeps its engine bound")
            return engine_ub
        return min(bound, engine_ub)


def branch_and_bound(net: Network, domain: InputDomain, coefficients: np.ndarray, sense: str, *,
                     gap: float, deadline: Deadline, root_bounds=None, batch_size: int = 64,
                     leaf_unstable: int = 14, max_depth: int = 60, samples: int = 4, polish: bool = True,
                     threads: int | None = None, log: bool = False, progress: bool = False, seed: int = 0,
                     branching: str = "auto", alpha_steps: int | None = None):
    """Maximise (``sense="max"``) or minimise ``coefficients @ net(x)`` over the box ``domain``.

    ``root_bounds`` (a :class:`~relumilp.bounds.base.Bounds` of ``net`` on ``domain``, e.g. from LP
    tightening) seed every box. Returns ``(solution, x, stats, notes)``: ``solution`` a
    :class:`~relumilp.backends.highs.MilpSolution`-like record (status and bound in the caller's sense)
    and ``x`` the incumbent (None only when interrupted before the first forward pass).
    """
    from .backends.highs import MilpSolution

    if domain.A is not None:
        raise RelumilpError("branch and bound needs a box domain (no rows A x <= b): use method='milp'")
    sign = 1.0 if sense == "max" else -1.0
    coefficients = np.asarray(coefficients, dtype=np.float64)
    fnet = objective_network(net, coefficients, sign)
    if branching not in BRANCHING:
        raise RelumilpError(f"branching must be one of {', '.join(BRANCHING)}, got {branching!r}")
    if branching == "auto":
        branching = "input" if domain.size <= INPUT_BRANCHING_MAX_INPUTS else "relu"
    if alpha_steps is None:
        alpha_steps = ALPHA_STEPS[branching]
    options = {"leaf_unstable": int(leaf_unstable), "max_depth": int(max_depth), "samples": int(samples),
               "polish": bool(polish), "threads": threads, "log": log, "seed": seed, "branching": branching,
               "alpha_steps": int(alpha_steps)}
    search = _Search(net, fnet, coefficients, sign, domain, gap, deadline, options)
    start = {name: (np.full((1, node.size), -np.inf), np.full((1, node.size), np.inf))
             for name, node in ((name, fnet[name]) for name in search.kept)}
    if root_bounds is not None:
        start.update({name: (root_bounds.lower[name][None], root_bounds.upper[name][None])
                      for name in search.kept if name in root_bounds.lower})
    search.push({"L": domain.lower[None], "U": domain.upper[None], "ub": np.full(1, np.inf),
                 "depth": np.zeros(1, dtype=np.int64), "start": start, "splits": search.no_splits(1)})
    status = "optimal"
    clock = time.perf_counter()
    bar = progress_bar(progress, "branch and bound", " boxes")
    try:
        search.offer((domain.lower + domain.upper) / 2)
        while search.ub.size:
            if deadline.expired() and search.stats["boxes"]:  # the root is always bounded: a finite bound
                status = "time_limit"
                break
            before = search.stats["boxes"]
            search.round(max(1, int(batch_size)))
            _show(bar, search, search.stats["boxes"] - before)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        bar.close()
    if status == "optimal" and deadline.expired() and search.in_flight > -math.inf:
        status = "time_limit"  # a leaf was cut short: its batch is still open
    bound = search.bound()
    if status == "optimal" and bound > search.threshold():
        status = "unknown"  # closed by leaves whose MILP failed: no certificate
        search.notes.append("some leaf MILPs gave no usable bound: the global bound stays above the gap")
    search.stats.update(open=int(search.ub.size), seconds=time.perf_counter() - clock)
    finite = math.isfinite(bound)
    solution = MilpSolution(status, bound=sign * bound if finite else None, notes=search.notes)
    return solution, search.best_x, search.stats


def _show(bar, search: _Search, boxes: int) -> None:
    if bar.disable:
        return
    bound = search.bound()
    gap = (bound - search.best) / max(1.0, abs(search.best)) if math.isfinite(bound) else math.inf
    bar.set_postfix(open=int(search.ub.size), incumbent=f"{search.sign * search.best:.6g}",
                    bound=f"{search.sign * bound:.6g}", gap=f"{gap:.2g}", refresh=False)
    bar.update(boxes)


def certified(net: Network, domain: InputDomain, solution, x, coefficients, sense: str, gap: float, check: str):
    """The :class:`~relumilp.optimization.SolveResult` of a branch and bound, through the MILP path's
    :func:`~relumilp.optimization.certify` (the forward pass at ``x`` is the objective)."""
    from .optimization import certify

    compiled = SimpleNamespace(original=None, network=net, domain=domain)
    return certify(compiled, solution, coefficients, sense, gap, [] if x is None else [x], check)
