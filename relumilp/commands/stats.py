"""``relumilp stats``: stable neurons, linear regions, big-M coefficients and MILP size of a network.

The linear-region count is taken on the input domain -- the number that matters for optimisation --
and printed beside the architecture's theoretical maximum over all of input space.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .._io import make_folder
from ..errors import RelumilpError
from ..limits import Deadline
from .common import (add_domain_arguments, add_model_arguments, add_tighten_arguments, count, load_domain,
                     load_model, print_json, seconds, seconds_or_zero)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stats", help="stable neurons, linear regions, big-M and model size of a network",
        description="Analyse a network over an input domain: proven stable neurons per layer (and an empirical "
                    "census from samples), linear regions on the domain, big-M coefficients before/after "
                    "tightening, and the MILP size.")
    add_model_arguments(parser)
    add_domain_arguments(parser)
    add_tighten_arguments(parser)
    parser.add_argument("--regions", choices=("auto", "exact", "mip", "sample", "none"), default="auto",
                        help="how to count linear regions on the domain: exact (1-2 inputs), mip (LP enumeration, "
                             "small nets), sample (lower bound), none; default auto = exact for <= 2 inputs, "
                             "else sample")
    parser.add_argument("--region-time-limit", type=seconds, default=60.0, metavar="S",
                        help="time limit of --regions mip in seconds; reports 'at least N' when reached (default 60)")
    parser.add_argument("--samples", type=count, default=10000, metavar="N",
                        help="random domain points for the empirical census (0 skips it) and for --regions sample "
                             "(at least 1000 there) (default 10000)")
    parser.add_argument("--seed", type=count, default=0, help="random seed of the samples (default 0)")
    parser.add_argument("--plot", metavar="DIR",
                        help="write PNG figures into DIR (created if missing): regions (1-2 inputs, exact), stability "
                             "bars, big-M histogram")
    parser.add_argument("--solve-time-limit", type=seconds_or_zero, default=0.0, metavar="S",
                        help="cross-check the optima marked on the region figure with MILP solves of at most S "
                             "seconds each; by default (0) the exact regions' vertex enumeration marks them, "
                             "which is exact and fast")
    parser.add_argument("--time-limit", type=seconds, metavar="S",
                        help="seconds for bounds, region counting and the figure's MILPs together")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..analysis import analyze_network

    deadline = Deadline.of(args.time_limit)
    net, default_domain = load_model(args)
    domain = load_domain(args, net, default_domain)
    if args.regions == "exact" and net.input_size > 2:
        raise RelumilpError(f"--regions exact needs 1 or 2 inputs (the network has {net.input_size}); "
                            "use --regions mip or sample")
    if args.plot:
        make_folder(args.plot, "--plot")
    report = analyze_network(net, domain, tighten=args.tighten, scale=args.scale, regions=args.regions,
                             region_time_limit=args.region_time_limit, samples=args.samples, seed=args.seed,
                             time_limit=deadline)
    figures = []
    if args.plot:
        figures = _figures(args, report, net, domain, deadline)
    if args.json:
        data = report.to_json()
        data["figures"] = [str(p) for p in figures]
        print_json(data)
        return 0
    print(report.to_text())
    for path in figures:
        print(f"wrote {path}")
    return 0


def _figures(args, report, net, domain, deadline) -> list:
    import time

    from ..analysis.plots import write_figures

    start = time.perf_counter()
    prefix = args.example or Path(args.model).stem
    optima = None
    if report.regions is not None and any(r.vertices is not None for r in report.regions.regions):
        optima = _optima(net, domain, args, report.regions, deadline)
    paths = write_figures(report, args.plot, prefix, network=net, optima=optima)
    report.times["plots"] = time.perf_counter() - start
    return paths


def _optima(net, domain, args, regions, deadline) -> list:
    """Global max and min of output 0 to mark on the region figure.

    Solved with :func:`relumilp.optimize` (time limit ``--solve-time-limit``) and cross-checked against
    the vertex enumeration of the exact regions (the network is affine on each cell, so its optimum over
    the domain is at a cell vertex). When the MILP does not prove optimality in time, the vertex
    optimum is marked instead, and the label says so.
    """
    import warnings

    from ..analysis.regions import region_optimum
    from ..optimization import optimize

    marks = []
    for sense, word in (("max", "max"), ("min", "min")):
        exact_value, exact_x = region_optimum(regions, sense=sense)
        result = None
        if args.solve_time_limit > 0 and not deadline.expired():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = optimize(net, domain, **{f"{sense}imize": 0}, tighten=args.tighten,
                                      time_limit=deadline.earlier(args.solve_time_limit))
            except RelumilpError as exc:
                print(f"relumilp: note: MILP {word} not solved ({exc})", file=sys.stderr)
        where = lambda x: ", ".join(f"{v:.3g}" for v in x)
        if result is not None and result.status == "optimal" and result.x is not None:
            agree = abs(result.objective - exact_value) <= 1e-6 * (1.0 + abs(exact_value))
            if not agree:
                print(f"relumilp: warning: MILP {word} {result.objective:.10g} differs from the vertex "
                      f"enumeration of the regions ({exact_value:.10g})", file=sys.stderr)
            check = "= vertex enumeration" if agree else f"vertex enumeration {exact_value:.6g}"
            marks.append((f"global {word} {result.objective:.6g} at ({where(result.x)}) (MILP optimal, {check})",
                          result.x))
        else:
            why = "MILP not run" if result is None else f"MILP {result.status}"
            marks.append((f"global {word} {exact_value:.6g} at ({where(exact_x)}) (vertex enumeration; {why})",
                          exact_x))
    return marks
