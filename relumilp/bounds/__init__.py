"""Bound passes: sound lower/upper bounds on every node of a network over an input domain.

``compute_bounds(net, domain, method)`` runs the named method after all cheaper ones
(interval -> symbolic -> alpha -> LP-based OBBT -> MILP-based OBBT), each starting from the last one's bounds:

* ``interval`` -- interval arithmetic (:mod:`.interval`);
* ``symbolic`` -- CROWN/DeepPoly-style back-substitution, intersected with interval (:mod:`.symbolic`);
* ``alpha`` -- back-substitution with optimised lower-line slopes (alpha-CROWN), layer by layer
  (:func:`.symbolic.alpha_bounds`);
* ``lp`` -- LP-based OBBT on the neurons symbolic bounds leave unstable (:mod:`.obbt`);
* ``milp`` -- MILP-based OBBT on the neurons still unstable after LP, with a per-neuron time limit;
* ``cones`` -- beside ``lp``, after ``alpha``: MILP-based OBBT of each neuron over its cone of influence
  (receptive field, :mod:`.cones`) where that cone holds at most ``max_binaries`` unstable neurons --
  exact bounds for the early layers of a convolutional network at the cost of many small MILPs -- then
  ``alpha`` again from them, which carries the gain to the later layers (:func:`.obbt.cone_bounds`).

Interval and symbolic bounds use the domain's box; LP and MILP also use its rows ``A x <= b``.
"""

from __future__ import annotations

import time

from ..domain import InputDomain
from ..errors import RelumilpError
from ..ir import Network
from ..limits import Deadline
from .base import METHODS, Bounds, big_m_values, phases, stability_counts
from .interval import interval_bounds

__all__ = ["METHODS", "Bounds", "big_m_values", "compute_bounds", "interval_bounds", "phases", "stability_counts"]

#: options that change the bounds OBBT computes (and so belong to the cache key)
_RESULT_OPTIONS = ("milp_time_limit", "lp_time_limit", "mip_rel_gap", "tighten_outputs", "steps", "lr", "max_binaries")


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
      before ``cones`` / ``lp`` / ``milp``), defaults :data:`.symbolic.ALPHA_STEPS`, :data:`.symbolic.ALPHA_LR`;
    * ``max_binaries`` -- ``cones`` only: the most unstable neurons a tightened neuron's cone may hold
      (default :data:`.obbt.CONE_BINARIES`);
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
    cache = options.pop("cache", None)
    key = None
    if cache is not None:
        from .cache import cache_key, cache_path, load_bounds

        key = cache_key(net, domain, method, {k: options[k] for k in _RESULT_OPTIONS if k in options})
        cached = load_bounds(cache_path(cache, key), key)
        if cached is not None:
            return cached
    bounds = _compute(net, domain, method, **options)
    if cache is not None:
        from .cache import save_bounds

        if bounds.complete:  # bounds cut short by a time limit would be reused as if final
            save_bounds(cache_path(cache, key), bounds, key)
    return bounds


def _compute(net, domain, method, executor=None, workers=None, progress=False, stats=None, device=None,
             time_limit=None, **options):
    deadline = Deadline.of(time_limit)
    alpha = {k: options.pop(k) for k in ("steps", "lr") if k in options}
    if alpha and method in ("interval", "symbolic"):
        raise RelumilpError(f"option(s) {', '.join(sorted(alpha))} only apply to the alpha, lp and milp methods")
    if "max_binaries" in options and method != "cones":
        raise RelumilpError("option max_binaries only applies to the cones method")
    if method in ("interval", "symbolic", "alpha") and options:
        raise RelumilpError(f"option(s) {', '.join(sorted(options))} only apply to the cones, lp and milp methods")
    start = time.perf_counter()
    bounds = interval_bounds(net, domain)
    times = {"interval": time.perf_counter() - start}
    if method != "interval":
        from .symbolic import symbolic_bounds

        start = time.perf_counter()
        bounds = symbolic_bounds(net, domain, start=bounds, device=device, deadline=deadline)
        times["symbolic"] = time.perf_counter() - start
    if method not in ("interval", "symbolic"):
        from .symbolic import alpha_bounds

        start = time.perf_counter()
        bounds = alpha_bounds(net, domain, start=bounds, device=device, deadline=deadline, **alpha)
        times["alpha"] = time.perf_counter() - start
    bounds.times = times
    if method == "cones":
        from .obbt import cone_bounds
        from .symbolic import alpha_bounds

        bounds = cone_bounds(net, domain, bounds, executor=executor, workers=workers, progress=progress, stats=stats,
                             deadline=deadline, **options)
        start, complete, cone_time = time.perf_counter(), bounds.complete, bounds.times.get("cones", 0.0)
        bounds = alpha_bounds(net, domain, start=bounds, device=device, deadline=deadline, **alpha)
        bounds.complete &= complete
        bounds.times = {**times, "cones": cone_time, "alpha": times["alpha"] + time.perf_counter() - start}
    if method in ("lp", "milp"):
        from .obbt import obbt_bounds

        bounds = obbt_bounds(
            net, domain, bounds, method, executor=executor, workers=workers, progress=progress, stats=stats,
            deadline=deadline, **options
        )
    bounds.method = method
    return bounds
