"""Bound passes: sound lower/upper bounds on every node of a network over an input domain.

``compute_bounds(net, domain, method)`` runs the named method after all cheaper ones
(interval -> symbolic -> alpha -> LP-based OBBT -> MILP-based OBBT; ``cones``: interval -> symbolic ->
cones -> alpha), each starting from the last one's bounds:

* ``interval`` -- interval arithmetic (:mod:`.interval`);
* ``symbolic`` -- CROWN/DeepPoly-style back-substitution, intersected with interval (:mod:`.symbolic`);
* ``alpha`` -- back-substitution with optimised lower-line slopes (alpha-CROWN), layer by layer
  (:func:`.symbolic.alpha_bounds`);
* ``lp`` -- LP-based OBBT on the neurons symbolic bounds leave unstable (:mod:`.obbt`);
* ``milp`` -- MILP-based OBBT on the neurons still unstable after LP, with a per-neuron time limit;
* ``cones`` -- beside ``lp``, after ``symbolic``: MILP-based OBBT of each neuron over its cone of
  influence (receptive field, :mod:`.cones`) where that cone holds at most ``max_binaries`` unstable
  neurons -- exact bounds for the early layers of a convolutional network at the cost of many small
  MILPs, each layer's feeding the next one's cones (:func:`.obbt.cone_bounds`) -- then ``alpha`` on the
  nodes it did not bound exactly, which carries the gain to the later layers. Cones before slopes:
  slopes cannot tighten an exact range, and through verivital's lowered max-pool trees the cone MILPs
  (0-15 binaries each) took 50 s where ``alpha`` took 537 s.

Interval and symbolic bounds use the domain's box; LP and MILP also use its rows ``A x <= b``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..domain import InputDomain
from ..errors import RelumilpError
from ..ir import Network
from ..limits import Deadline
from .base import METHODS, Bounds, big_m_values, phases, stability_counts
from .interval import interval_bounds

__all__ = ["METHODS", "Bounds", "big_m_values", "compute_bounds", "interval_bounds", "phases", "stability_counts"]

#: options that change the bounds OBBT computes (and so belong to the cache key)
_RESULT_OPTIONS = ("milp_time_limit", "lp_time_limit", "mip_rel_gap", "tighten_outputs", "steps", "lr", "max_binaries")


def check_valid_domain(net: Network, domain: InputDomain) -> None:
    """A pruned network equals its original only on the domain it was pruned over (its box, and the rows
    ``A x <= b`` it had): refuse a domain beyond it, in one line (any other network: nothing to check)."""
    valid = net.valid_domain
    if valid is None:
        return
    outside = np.flatnonzero((domain.lower < valid.lower) | (domain.upper > valid.upper))
    if outside.size:
        i = int(outside[0])
        raise RelumilpError(
            f"{net.name!r} was pruned over an input box and equals the original network only there, but this "
            f"domain reaches outside it at {outside.size} input(s) (input {i}: [{domain.lower[i]:g}, "
            f"{domain.upper[i]:g}] against [{valid.lower[i]:g}, {valid.upper[i]:g}]): prune over this domain, or "
            "use the original network")
    if valid.A is not None:
        missing = [i for i, (a, b) in enumerate(zip(valid.A, valid.b)) if not _implied(a, b, domain)]
        if missing:
            raise RelumilpError(
                f"{net.name!r} was pruned over a domain with rows A x <= b and equals the original network only "
                f"where they hold, but this domain does not keep {len(missing)} of them (give the same rows, or a "
                "box inside them), or use the original network")


def _implied(a: np.ndarray, b: float, domain: InputDomain) -> bool:
    """Whether ``a x <= b`` holds on all of ``domain``: one of its rows says so (the same coefficients, a
    right-hand side no larger), or the largest ``a x`` over its box stays below ``b`` (with a margin for
    the sum's rounding)."""
    if domain.A is not None and np.any(np.all(domain.A == a, axis=1) & (domain.b <= b)):
        return True
    terms = np.maximum(a * domain.lower, a * domain.upper)
    total = float(np.sum(terms))
    return math.isfinite(total) and total + 1e-12 * (float(np.sum(np.abs(terms))) + 1.0) <= b


def compute_bounds(net: Network, domain, method: str = "interval", **options) -> Bounds:
    """Bounds of every node of ``net`` over ``domain`` by ``method`` (and every cheaper method first).

    ``domain`` is an :class:`~relumilp.domain.InputDomain`, a ``(lower, upper)`` pair or a dict with
    ``lower``/``upper`` (and optional ``A``/``b``), as for :func:`relumilp.optimize`.

    Options (all keyword):

    * ``executor`` -- a ``concurrent.futures.Executor`` (e.g. ``dask.distributed.Client.get_executor()``)
      for the independent neurons of each layer in LP/MILP OBBT;
    * ``workers`` -- without ``executor``: local worker processes (1 = serial; ``None`` =
      :func:`relumilp.parallel.default_workers`, every core unless called from a plain script);
    * ``progress`` -- tqdm progress bars per layer;
    * ``milp_time_limit`` -- seconds per MILP-OBBT solve (the dual bound is used at the limit);
    * ``cache`` -- a directory or ``.npz``/``.json`` file: reuse bounds computed before for the same
      network, domain, method and options, and store new ones;
    * ``stats`` -- a dict that receives OBBT solver statistics;
    * ``steps``, ``lr`` -- projected Adam steps and step size of the ``alpha`` pass (also when it runs
      after ``cones`` or before ``lp`` / ``milp``), defaults :data:`.symbolic.ALPHA_STEPS`, :data:`.symbolic.ALPHA_LR`;
    * ``max_binaries`` -- ``cones`` only: the most unstable neurons a tightened neuron's cone may hold
      (default :data:`.obbt.CONE_BINARIES`);
    * ``shares`` -- a dict from step names (``symbolic``, ``alpha``, ``cones``, ``lp``, ``milp``: those
      the method runs after interval arithmetic) to the fraction of the time left that the step may take
      when it starts; the others run to the deadline;
    * ``stop_when`` -- a predicate on the bounds, checked before each step: once it holds, the remaining
      steps are skipped (e.g. once the bounds prove what they are wanted for); the bounds are then labelled
      with the last step run and have ``complete = False``;
    * ``time_limit`` -- seconds (or a :class:`relumilp.limits.Deadline`) for the whole call. Symbolic
      back-substitution and LP/MILP OBBT stop when it runs out and returns the sound bounds it has (neurons not yet tightened keep
      their interval/symbolic bounds) with ``bounds.complete = False``; such bounds are not cached;
    * further :class:`relumilp.bounds.obbt.OBBTOptions` fields (``chunk_size``, ``early_stop``,
      ``tighten_outputs``, ``mip_rel_gap``, ``simplex_strategy``).

    Ctrl-C (``KeyboardInterrupt``) stops the call promptly: OBBT worker processes are stopped and
    pending tasks cancelled, then the ``KeyboardInterrupt`` is re-raised (no partial bounds).
    """
    if method not in METHODS:
        raise RelumilpError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
    domain = InputDomain.of(domain, net.input_size)
    check_valid_domain(net, domain)
    cache = options.pop("cache", None)
    key = None
    if cache is not None:
        from .cache import cache_key, cache_path, load_bounds

        key = cache_key(net, domain, method, {k: options[k] for k in _RESULT_OPTIONS if k in options})
        cached = load_bounds(cache_path(cache, key), key)
        if cached is not None:
            return _with_domain(cached, domain)
    bounds = _compute(net, domain, method, **options)
    if cache is not None:
        from .cache import save_bounds

        if bounds.complete:  # bounds cut short by a time limit would be reused as if final
            save_bounds(cache_path(cache, key), bounds, key)
    return _with_domain(bounds, domain)


def _with_domain(bounds: Bounds, domain: InputDomain) -> Bounds:
    """``bounds`` marked with the domain they hold on (pruning keeps it, rows included)."""
    bounds.domain = domain
    return bounds


#: the steps of each method after interval arithmetic (``milp``'s OBBT runs an LP stage first)
_STEPS = {"interval": (), "symbolic": ("symbolic",), "alpha": ("symbolic", "alpha"),
          "cones": ("symbolic", "cones", "alpha"), "lp": ("symbolic", "alpha", "lp"), "milp": ("symbolic", "alpha", "milp")}


def _compute(net, domain, method, executor=None, workers=None, progress=False, stats=None, device=None,
             time_limit=None, shares=None, stop_when=None, **options):
    deadline = Deadline.of(time_limit)
    alpha = {k: options.pop(k) for k in ("steps", "lr") if k in options}
    if alpha and method in ("interval", "symbolic"):
        raise RelumilpError(f"option(s) {', '.join(sorted(alpha))} only apply to the alpha, lp and milp methods")
    if "max_binaries" in options and method != "cones":
        raise RelumilpError("option max_binaries only applies to the cones method")
    if method in ("interval", "symbolic", "alpha") and options:
        raise RelumilpError(f"option(s) {', '.join(sorted(options))} only apply to the cones, lp and milp methods")
    shares = _step_shares(shares, method)
    times: dict[str, float] = {}

    def step(name, bounds, run):
        """``run(bounds, deadline)`` within the step's share of the time left; never complete after an
        incomplete start."""
        clock = time.perf_counter()
        result = run(bounds, deadline.share(shares[name]) if name in shares else deadline)
        if bounds is not None:
            result.complete &= bounds.complete
        if name in ("lp", "milp"):  # OBBT times its own stages (``milp`` runs the LP stage first)
            times.update({k: v for k, v in result.times.items() if k in ("lp", "milp")})
        else:
            times[name] = times.get(name, 0.0) + time.perf_counter() - clock
        result.times, result.method = dict(times), name
        return result

    def done(bounds) -> bool:
        """True once ``stop_when`` holds: later steps are skipped and the bounds are not the method's own."""
        if stop_when is None or not stop_when(bounds):
            return False
        bounds.complete = False
        return True

    from .symbolic import alpha_bounds, symbolic_bounds

    bounds = step("interval", None, lambda _, until: interval_bounds(net, domain))
    reached = "interval"  # the last step run: the bounds' label when ``stop_when`` cut the method short
    exact: set = set()  # nodes the cone pass bounded exactly: slopes cannot tighten them
    for name in _STEPS[method]:
        if done(bounds):
            break
        reached = name
        if name == "symbolic":
            bounds = step(name, bounds, lambda b, until: symbolic_bounds(net, domain, start=b, device=device,
                                                                         deadline=until))
        elif name == "alpha":
            nodes = [node.name for node in net.affines if node.name not in exact] if exact else None
            bounds = step(name, bounds, lambda b, until: alpha_bounds(net, domain, start=b, device=device,
                                                                      deadline=until, nodes=nodes, **alpha))
        elif name == "cones":
            from .obbt import cone_bounds

            counts: dict = {} if stats is None else stats
            bounds = step(name, bounds, lambda b, until: cone_bounds(
                net, domain, b, executor=executor, workers=workers, progress=progress, stats=counts,
                deadline=until, **options))
            exact = set(counts["cones"]["exact"])
        else:  # lp, milp
            from .obbt import obbt_bounds

            bounds = step(name, bounds, lambda b, until: obbt_bounds(
                net, domain, b, method, executor=executor, workers=workers, progress=progress, stats=stats,
                deadline=until, **options))
    else:
        reached = method
    bounds.method = reached
    return bounds


def _step_shares(shares, method: str) -> dict:
    """``shares`` checked: each named step of ``method`` may take that fraction of the time left when it starts."""
    shares = dict(shares or {})
    steps = _STEPS[method]
    for name, fraction in shares.items():
        if name not in steps:
            raise RelumilpError(f"shares: {name!r} is not a step of the {method} method "
                                f"(steps: {', '.join(steps) or 'none'})")
        if not 0.0 < float(fraction) <= 1.0:
            raise RelumilpError(f"shares: the {name} step's share must be in (0, 1], got {fraction!r}")
    return {name: float(fraction) for name, fraction in shares.items()}
