r"""Best-first branch and bound over input boxes: the certified optimum of a network output.

:func:`branch_and_bound` maximises ``f(x) = s c @ net(x)`` (``s = +1`` to maximise, ``-1`` to minimise)
over an input box. The big-M MILP of a whole network stalls beyond ~50 unstable ReLUs, but on a few
inputs the input space itself is cheap to split: a small box has few unstable neurons, and its MILP
is tiny. The algorithm:

1. **The objective as a node.** ``-f`` is appended to the network as one affine node (the *loss*,
   :func:`relumilp.verify.spec_network`), so the same bound engine bounds it with everything else:
   an upper bound of ``f`` on a box is minus the loss's lower bound, and the loss's linear lower bound
   has input coefficients ``-Λ``, ``Λ`` those of ``f``'s linear upper bound.
2. **Nodes** are input boxes, each with bounds inherited from its parent (intersected with its own),
   kept with their upper bound on ``f``. Each round pops the ``batch_size`` open boxes with the largest
   upper bounds (best first) and bounds them in one batched call (:func:`_bound_boxes`, the single
   adapter to the bound engine: its bounds contain every float64 forward value on the box).
3. **Incumbents** are float64 forward passes: the centre of every popped box and ``samples`` random
   points in it (chosen in a batch, then re-evaluated one point at a time, as :func:`certify` does).
   An improved incumbent is polished by the LP over its activation region (binaries fixed at its
   pattern, the best input of that linear piece), re-evaluated by the forward pass.
4. **Pruning.** A box whose upper bound is at most ``incumbent + gap max(1, |incumbent|)`` is closed
   (its bound still counts towards the reported global bound).
5. **Leaves.** A box with at most ``leaf_unstable`` unstable neurons, or one that cannot be halved
   (``max_depth`` reached, or a width at float64 resolution), is decided by the big-M MILP over the box,
   compiled with the box's bounds and solved by HiGHS with the incumbent (or the box's best point) as
   MIP start. Its dual bound closes the box only if no forward pass on the box beats it (else the box
   keeps its engine bound); its point is an incumbent candidate.
6. **Branching.** A box is halved along the input maximising ``|Λ_i| width_i`` (ties: the largest width
   relative to the domain's).

The global bound is the maximum over open boxes, boxes in flight, pruned boxes and closed leaves; the
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
from .ir import Network
from .limits import Deadline

def objective_network(net: Network, coefficients: np.ndarray, sign: float) -> Network:
    """``x -> -sign * coefficients @ net(x)``: the loss that branch and bound minimises (see module docstring)."""
    from .verify import spec_network

    return spec_network(net, -sign * np.asarray(coefficients, dtype=np.float64)[None, :], np.zeros(1))


def _engine(fnet: Network):
    """The batched bound engine for the objective network (:class:`relumilp.bounds.engine.BoundEngine`)."""
    from .bounds.engine import BoundEngine

    return BoundEngine.for_network(fnet)


def _bound_boxes(engine, L: np.ndarray, U: np.ndarray, start: dict):
    """Sound bounds of every node of the objective network on each box ``[L_b, U_b]`` (B, n).

    ``start`` maps node names to ``(lower, upper)`` (B, size) arrays already valid on each box (its
    parent's). Returns ``(lo, hi, lam)``: dicts of (B, size) arrays that contain every float64 forward
    value on the box, and (B, n) input coefficients ``Λ`` of ``f``'s linear upper bound (for branching).
    With :func:`_engine`, the only code that knows the engine: switching engines changes these two.
    """
    lo, hi = engine.bounds(L, U, start, refine="undecided")
    lam = -engine.input_coefficients(lo, hi)[:, 0, :]  # the loss -f: its lower bound's Λ, negated
    return lo, hi, lam


def _unstable_counts(fnet: Network, lo: dict, hi: dict) -> np.ndarray:
    from .bounds.base import phases

    count = np.zeros(lo[fnet.input.name].shape[0], dtype=np.int64)
    for node in fnet.activations:
        count += phases(node, lo[node.inputs[0]], hi[node.inputs[0]]).unstable.sum(axis=1)
    return count


class _Search:
    """State of one branch and bound: open boxes, incumbent, closed bounds, statistics."""

    def __init__(self, net, fnet, coefficients, sign, domain, gap, deadline, options):
        self.net, self.fnet, self.coefficients, self.sign = net, fnet, coefficients, sign
        self.domain, self.gap, self.deadline, self.options = domain, gap, deadline, options
        self.engine = _engine(fnet)
        self.rng = np.random.default_rng(options["seed"])
        self.width0 = np.where(domain.upper > domain.lower, domain.upper - domain.lower, 1.0)
        # nodes whose parent bounds children inherit: pre-activations and the loss (activation
        # bounds follow from them)
        self.kept = [node.inputs[0] for node in fnet.activations] + [fnet.output]
        self.L = np.empty((0, domain.size))
        self.U = np.empty((0, domain.size))
        self.ub = np.empty(0)
        self.depth = np.empty(0, dtype=np.int64)
        self.start: dict = {}
        self.best_x: np.ndarray | None = None
        self.best = -math.inf
        self.closed = -math.inf  # max bound over pruned boxes and closed leaves
        self.in_flight = -math.inf  # bound of the popped batch until it is fully processed
        self.notes: list[str] = []
        self.stats = {"boxes": 0, "leaves": 0, "pruned": 0, "max_depth": 0, "leaf_milp_time": 0.0,
                      "leaf_milp_failed": 0, "polished": 0, "open": 0}
        self._polish_model = None

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
        """Boxes whose upper bound is at most this cannot beat the incumbent by the gap."""
        return self.best + self.gap * max(1.0, abs(self.best)) if self.best_x is not None else -math.inf

    def bound(self) -> float:
        open_ub = float(self.ub.max()) if self.ub.size else -math.inf
        return max(open_ub, self.closed, self.in_flight, self.best)

    # -- the open list ---------------------------------------------------------------------------

    def push(self, L, U, ub, depth, start) -> None:
        self.L, self.U = np.vstack([self.L, L]), np.vstack([self.U, U])
        self.ub, self.depth = np.concatenate([self.ub, ub]), np.concatenate([self.depth, depth])
        for name in self.kept:
            lo, hi = start[name]
            old = self.start.get(name)
            self.start[name] = (lo, hi) if old is None else (np.vstack([old[0], lo]), np.vstack([old[1], hi]))

    def take(self, keep: np.ndarray):
        """Remove the boxes not in ``keep`` (bool) and return them as ``(L, U, ub, depth, start)``."""
        gone = ~keep
        taken = (self.L[gone], self.U[gone], self.ub[gone], self.depth[gone],
                 {k: (lo[gone], hi[gone]) for k, (lo, hi) in self.start.items()})
        self.L, self.U, self.ub, self.depth = self.L[keep], self.U[keep], self.ub[keep], self.depth[keep]
        self.start = {k: (lo[keep], hi[keep]) for k, (lo, hi) in self.start.items()}
        return taken

    def prune_open(self) -> None:
        dead = self.ub <= self.threshold()
        if dead.any():
            self.closed = max(self.closed, float(self.ub[dead].max()))
            self.stats["pruned"] += int(dead.sum())
            self.take(~dead)

    def pop_best(self, B: int):
        if self.ub.size > B:
            chosen = np.zeros(self.ub.size, dtype=bool)
            chosen[np.argpartition(-self.ub, B - 1)[:B]] = True
        else:
            chosen = np.ones(self.ub.size, dtype=bool)
        return self.take(~chosen)

    # -- one round -------------------------------------------------------------------------------

    def round(self, B: int) -> None:
        L, U, ub, depth, start = self.pop_best(B)
        self.in_flight = float(ub.max())
        self.stats["boxes"] += L.shape[0]
        self.stats["max_depth"] = max(self.stats["max_depth"], int(depth.max()))
        self.sample(L, U)
        lo, hi, lam = _bound_boxes(self.engine, L, U, start)
        upper = np.minimum(-lo[self.fnet.output][:, 0], ub)  # the parent's bound holds on the child too
        alive = upper > self.threshold()
        if (~alive).any():
            self.closed = max(self.closed, float(upper[~alive].max()))
            self.stats["pruned"] += int((~alive).sum())
        mid = (L + U) / 2
        halvable = (L < mid) & (mid < U)
        leaf = alive & ((_unstable_counts(self.fnet, lo, hi) <= self.options["leaf_unstable"])
                        | ~halvable.any(axis=1) | (depth >= self.options["max_depth"]))
        for i in np.flatnonzero(leaf):
            if self.deadline.expired():
                return  # the batch stays in flight: its bound still counts
            # the incumbent may have improved meanwhile: then the box is pruned, its bound kept
            bound = self.leaf(L[i], U[i], upper[i], lo, hi, i) if upper[i] > self.threshold() else upper[i]
            self.closed = max(self.closed, bound)
        split = np.flatnonzero(alive & ~leaf)
        if split.size:
            score = np.where(halvable[split], np.abs(lam[split]) * (U[split] - L[split]), -np.inf)
            score += 1e-12 * (U[split] - L[split]) / self.width0  # ties (zero influence): widest relative side
            dim = np.argmax(score, axis=1)
            rows = np.arange(split.size)
            cut = mid[split, dim]
            L1, U1 = L[split], U[split].copy()
            U1[rows, dim] = cut
            L2 = L[split].copy()
            L2[rows, dim] = cut
            kids = {name: (np.vstack([lo[name][split]] * 2), np.vstack([hi[name][split]] * 2)) for name in self.kept}
            self.push(np.vstack([L1, L2]), np.vstack([U1, U[split]]), np.tile(upper[split], 2),
                      np.tile(depth[split] + 1, 2), kids)
        self.in_flight = -math.inf
        self.prune_open()

    def sample(self, L: np.ndarray, U: np.ndarray) -> None:
        """Incumbent candidates: every box's centre and a few random points (batched, then re-evaluated)."""
        k = self.options["samples"]
        points = [(L + U) / 2]
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

    def leaf(self, lower, upper, engine_ub: float, lo: dict, hi: dict, i: int) -> float:
        """Decide box ``i`` by its MILP; returns the box's bound (the MILP's when the forward pass supports it)."""
        from .backends.highs import solve_milp
        from .bounds.base import Bounds
        from .formulation.bigm import start_vector
        from .pipeline import compile_network

        self.stats["leaves"] += 1
        box = InputDomain(lower, upper)
        compiled = compile_network(self.fnet, box, bounds=Bounds({k: v[i] for k, v in lo.items()},
                                                                  {k: v[i] for k, v in hi.items()}, "symbolic"))
        milp = compiled.milp.with_objective(np.ones(1), "min")
        inside = self.best_x is not None and bool(np.all((lower <= self.best_x) & (self.best_x <= upper)))
        first = self.best_x if inside else (lower + upper) / 2
        run = solve_milp(milp, deadline=self.deadline, mip_rel_gap=self.gap, threads=self.options["threads"],
                         log=self.options["log"], start=start_vector(self.fnet, milp, first), on_interrupt="raise")
        self.stats["leaf_milp_time"] += run.seconds
        seen = [self.value(first)]
        if run.x is not None:
            x = np.clip(run.x[milp.input_columns], lower, upper)
            self.offer(x)
            seen.append(self.value(x))
        if run.bound is None:
            self.stats["leaf_milp_failed"] += 1
            return engine_ub
        bound = -run.bound
        if max(seen) > bound:
            self.stats["leaf_milp_failed"] += 1
            self.notes.append(f"a leaf MILP's bound {bound:.17g} is beaten by the forward pass ({max(seen):.17g}): "
                              "the box keeps its engine bound")
            return engine_ub
        return min(bound, engine_ub)


def branch_and_bound(net: Network, domain: InputDomain, coefficients: np.ndarray, sense: str, *,
                     gap: float, deadline: Deadline, root_bounds=None, batch_size: int = 64,
                     leaf_unstable: int = 14, max_depth: int = 60, samples: int = 4, polish: bool = True,
                     threads: int | None = None, log: bool = False, progress: bool = False, seed: int = 0):
    """Maximise (``sense="max"``) or minimise ``coefficients @ net(x)`` over the box ``domain``.

    ``root_bounds`` (a :class:`~relumilp.bounds.base.Bounds` of ``net`` on ``domain``, e.g. from LP
    tightening) seed every box. Returns ``(solution, x, stats, notes)``: ``solution`` a
    :class:`~relumilp.backends.highs.MilpSolution`-like record (status and bound in the caller's sense)
    and ``x`` the incumbent (None only when interrupted before the first forward pass).
    """
    import torch

    from .backends.highs import MilpSolution

    if domain.A is not None:
        from .errors import RelumilpError

        raise RelumilpError("branch and bound needs a box domain (no rows A x <= b): use method='milp'")
    sign = 1.0 if sense == "max" else -1.0
    coefficients = np.asarray(coefficients, dtype=np.float64)
    fnet = objective_network(net, coefficients, sign)
    options = {"leaf_unstable": int(leaf_unstable), "max_depth": int(max_depth), "samples": int(samples),
               "polish": bool(polish), "threads": threads, "log": log, "seed": seed}
    search = _Search(net, fnet, coefficients, sign, domain, gap, deadline, options)
    start = {name: (np.full((1, node.size), -np.inf), np.full((1, node.size), np.inf))
             for name, node in ((name, fnet[name]) for name in search.kept)}
    if root_bounds is not None:
        start.update({name: (root_bounds.lower[name][None], root_bounds.upper[name][None])
                      for name in search.kept if name in root_bounds.lower})
    search.push(domain.lower[None], domain.upper[None], np.full(1, np.inf), np.zeros(1, dtype=np.int64), start)
    status = "optimal"
    clock = time.perf_counter()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # many small batched products: one thread is much faster (and shares the machine)
    bar = _progress_bar(progress)
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
        torch.set_num_threads(threads_before)
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


def _progress_bar(progress: bool):
    return progress_bar(progress, "branch and bound", " boxes")


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
