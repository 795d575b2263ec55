"""``relumilp stats``: stable neurons, linear regions, big-M coefficients and MILP size of a network.

The linear-region count is taken on the input domain -- the number that matters for optimisation --
and printed beside the architecture's theoretical maximum over all of input space.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .._io import atomic_write_text, check_writable, make_folder
from ..errors import RelumilpError
from ..limits import Deadline
from .common import (add_domain_arguments, add_model_arguments, add_quiet_argument, add_tighten_arguments,
                     check_separate_outputs, count, load_domain, load_model, print_json, seconds, seconds_or_zero,
                     show_progress)


#: seconds per MILP for the --html optima when no exact regions give them and --solve-time-limit is 0
_HTML_SOLVE_LIMIT = 60.0


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
                        help="time limit of --regions mip or sample in seconds; reports 'at least N' when reached (default 60)")
    parser.add_argument("--samples", type=count, default=10000, metavar="N",
                        help="random domain points for the empirical census (0 skips it) and for --regions sample "
                             "(at least 1000 there) (default 10000)")
    parser.add_argument("--seed", type=count, default=0, help="random seed of the samples (default 0)")
    parser.add_argument("--plot", metavar="DIR",
                        help="write PNG figures into DIR (created if missing): regions (1-2 inputs, exact), stability "
                             "bars, big-M histogram")
    parser.add_argument("--html", metavar="FILE",
                        help="write the report as one self-contained HTML page (tables, figures, the optimum of "
                             "output 0)")
    parser.add_argument("--solve-time-limit", type=seconds_or_zero, default=0.0, metavar="S",
                        help="cross-check the optima marked on the region figure with MILP solves of at most S "
                             "seconds each; by default (0) the exact regions' vertex enumeration marks them, "
                             "which is exact and fast. Without exact regions, --html solves for the optima with "
                             f"at most S seconds each ({_HTML_SOLVE_LIMIT:g} when 0)")
    parser.add_argument("--time-limit", type=seconds, metavar="S",
                        help="seconds for bounds, region counting and the figure's MILPs together")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_quiet_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..analysis import analyze_network

    deadline = Deadline.of(args.time_limit)
    net, default_domain = load_model(args)
    domain = load_domain(args, net, default_domain)
    if args.regions == "exact" and net.input_size > 2:
        raise RelumilpError(f"--regions exact needs 1 or 2 inputs (the network has {net.input_size}); "
                            "use --regions mip or sample")
    check_separate_outputs(args, args.html, args.plot)
    if args.html:
        check_writable(args.html)  # refuse a bad path before minutes of analysis
    if args.plot:  # only once every other output is known to be fine: an error leaves no folder behind
        make_folder(args.plot, "--plot")
    report = analyze_network(net, domain, tighten=args.tighten, scale=args.scale, regions=args.regions,
                             region_time_limit=args.region_time_limit, samples=args.samples, seed=args.seed,
                             time_limit=deadline, progress=show_progress(args))
    figures = []
    optima = None
    if args.html or (args.plot and _exact_cells(report.regions)):
        optima = _optima(net, domain, args, report.regions, deadline)
    if args.plot:
        figures = _figures(args, report, net, optima)
    page = _html(args, report, net, optima) if args.html else None
    if args.json:
        data = report.to_json()
        data["figures"] = [str(p) for p in figures]
        if page is not None:
            data["html"] = str(page)
        print_json(data)
        return 0
    print(report.to_text())
    for path in figures + ([page] if page is not None else []):
        print(f"wrote {path}")
    return 0


def _exact_cells(regions) -> bool:
    return regions is not None and any(r.vertices is not None for r in regions.regions)


def _figures(args, report, net, optima) -> list:
    import time

    from ..analysis.plots import write_figures

    start = time.perf_counter()
    marks = None if optima is None else [(o.label, o.x) for o in optima if o.x is not None]
    paths = write_figures(report, args.plot, _prefix(args), network=net, optima=marks, progress=show_progress(args))
    report.times["plots"] = time.perf_counter() - start
    return paths


def _prefix(args) -> str:
    return args.example or Path(args.model).stem


def _html(args, report, net, optima) -> Path:
    from ..analysis.html import html_report

    return atomic_write_text(args.html, html_report(report, network=net, optima=optima, title=_prefix(args)))


def _optima(net, domain, args, regions, deadline) -> list:
    """Global max and min of output 0 (:class:`~relumilp.analysis.html.Optimum`), for the region figure
    and the HTML page.

    With exact regions: the vertex enumeration of the cells (the network is affine on each cell, so its
    optimum over the domain is at a cell vertex), cross-checked by :func:`relumilp.optimize` when
    ``--solve-time-limit`` is set; when the MILP does not prove optimality in time, the vertex optimum
    is kept, and ``how`` says so. Without them: :func:`relumilp.optimize` alone, each solve within
    ``--solve-time-limit`` (or ``_HTML_SOLVE_LIMIT``) and ``--time-limit``.
    """
    import warnings

    from ..analysis.html import Optimum
    from ..analysis.regions import region_optimum
    from ..optimization import optimize

    exact = _exact_cells(regions)
    limit = args.solve_time_limit if exact or args.solve_time_limit > 0 else _HTML_SOLVE_LIMIT
    marks = []
    for sense, word in (("max", "max"), ("min", "min")):
        exact_value, exact_x = region_optimum(regions, sense=sense) if exact else (None, None)
        result = None
        if limit > 0 and not deadline.expired():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = optimize(net, domain, **{f"{sense}imize": 0}, tighten=args.tighten,
                                      time_limit=deadline.earlier(limit), progress=show_progress(args))
            except RelumilpError as exc:
                print(f"relumilp: note: MILP {word} not solved ({exc})", file=sys.stderr)
            if result is not None and result.status == "interrupted":
                # optimize turns Ctrl-C into a status; here it must stop the whole command (the next
                # solve would otherwise start afresh, and the report be written as if nothing happened)
                raise KeyboardInterrupt
        why = "MILP not run" if result is None else f"MILP {result.status}"
        if result is not None and result.status == "optimal" and result.x is not None:
            check = ""
            if exact:
                agree = abs(result.objective - exact_value) <= 1e-6 * (1.0 + abs(exact_value))
                if not agree:
                    print(f"relumilp: warning: MILP {word} {result.objective:.10g} differs from the vertex "
                          f"enumeration of the regions ({exact_value:.10g})", file=sys.stderr)
                check = ", = vertex enumeration" if agree else f", vertex enumeration {exact_value:.6g}"
            marks.append(Optimum(word, result.objective, result.x, f"MILP optimal{check}"))
        elif exact:
            marks.append(Optimum(word, exact_value, exact_x, f"vertex enumeration; {why}"))
        elif result is not None and result.x is not None:
            marks.append(Optimum(word, result.objective, result.x, f"{why}: best found, not proven optimal",
                                 bound=result.bound))
        else:
            marks.append(Optimum(word, None, None, f"{why}: no solution found"))
    return marks
