"""``relumilp bounds``: compute sound bounds on every layer of a network and report neuron stability.

Writes ``{"method": ..., "times": ..., "layers": [{"name", "lower", "upper"}, ...]}`` (one entry per
affine node; for an MLP entry k holds the k-th layer's pre-activation bounds and the last entry is the
output) with ``-o``, and prints one table row per layer: stable-active / stable-inactive / unstable
neurons and the mean bound width.
"""

from __future__ import annotations

import json

from .._io import atomic_write_text, check_writable, marked_json
from ..choices import SOLVER_BOUND_METHODS
from ..errors import RelumilpError
from .common import (add_domain_arguments, add_model_arguments, add_quiet_argument, add_tighten_arguments,
                     check_separate_outputs, load_domain, load_model, parallel_count, print_json, seconds,
                     show_progress)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bounds", help="compute layer bounds (interval, symbolic, LP or MILP) and neuron stability",
        description="Compute sound lower/upper bounds of every layer over an input domain.")
    add_model_arguments(parser)
    add_domain_arguments(parser)
    add_tighten_arguments(parser)
    parser.add_argument("-o", "--output", metavar="BOUNDS.json", help="write the bounds as JSON")
    parser.add_argument("--workers", type=parallel_count, metavar="N",
                        help="parallel processes for LP/MILP tightening (default: every core)")
    parser.add_argument("--milp-time-limit", type=seconds, metavar="S",
                        help="seconds per neuron for --tighten milp or cones (the solver's dual bound is used at the limit)")
    parser.add_argument("--time-limit", type=seconds, metavar="S",
                        help="seconds for the whole run; LP/MILP tightening then stops with the sound bounds "
                             "it has (\"complete\": false)")
    parser.add_argument("--cache", metavar="PATH", help="bound cache: a directory or a .npz/.json file")
    parser.add_argument("--progress", action="store_true",
                        help="progress bars per layer on stderr even when it is not a terminal")
    add_quiet_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the bounds JSON instead of the table")
    parser.set_defaults(run=run)


def layer_table(net, bounds) -> list[dict]:
    """One row per affine node: size, stability counts of the activation it feeds, mean bound width."""
    import numpy as np

    from ..bounds import phases
    from ..ir import ActivationNode

    rows = []
    for node in net.affines:
        lower, upper = bounds[node.name]
        acts = [net[n] for n in net.graph.successors(node.name) if isinstance(net[n], ActivationNode)]
        row = {"name": node.name, "size": node.size, "stable_active": None, "stable_inactive": None,
               "unstable": None, "mean_width": float(np.mean(upper - lower))}
        if acts:
            ph = phases(acts[0], lower, upper)
            row.update(stable_active=int(ph.stable_active.sum()), stable_inactive=int(ph.stable_inactive.sum()),
                       unstable=int(ph.unstable.sum()))
        rows.append(row)
    return rows


def run(args) -> int:
    from ..bounds import compute_bounds
    from ..bounds.cache import check_cache

    check_separate_outputs(args, args.output)
    if args.output:  # refuse a bad path before the (possibly long) computation
        check_writable(args.output)
    if args.cache:
        check_cache(args.cache)
    net, default_domain = load_model(args)
    domain = load_domain(args, net, default_domain)
    options = {}
    if args.tighten in SOLVER_BOUND_METHODS:
        options.update(workers=args.workers, progress=args.progress or show_progress(args))
        if args.milp_time_limit is not None:
            options["milp_time_limit"] = args.milp_time_limit
    elif args.workers is not None or args.milp_time_limit is not None:
        raise RelumilpError("--workers and --milp-time-limit apply to --tighten cones, lp or milp only")
    if args.cache:
        options["cache"] = args.cache
    if args.time_limit is not None:
        options["time_limit"] = args.time_limit
    bounds = compute_bounds(net, domain, args.tighten, **options)
    if args.scale:
        from ..scaling import scale_network

        net, bounds = scale_network(net, bounds)
    data = bounds.to_json(net)
    data["scaled"] = bool(args.scale)
    if args.output:
        atomic_write_text(args.output, json.dumps(marked_json(data), allow_nan=False))
    if args.json:
        print_json(data)
        return 0
    print(f"bounds      {bounds.method}" + (" (scaled network)" if args.scale else "")
          + ("" if bounds.complete else " (stopped at the time limit: partly tightened, sound)"))
    print(f"{'layer':<16} {'size':>5} {'active':>7} {'inactive':>8} {'unstable':>8} {'mean width':>12}")
    show = lambda v: "-" if v is None else str(v)
    for row in layer_table(net, bounds):
        print(f"{row['name']:<16} {row['size']:>5} {show(row['stable_active']):>7} {show(row['stable_inactive']):>8} "
              f"{show(row['unstable']):>8} {row['mean_width']:>12.6g}")
    print("times       " + ", ".join(f"{k} {v:.3f}s" for k, v in bounds.times.items()))
    if args.output:
        print(f"wrote       {args.output}")
    return 0
