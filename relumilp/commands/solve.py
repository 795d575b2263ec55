"""``relumilp solve``: globally optimise one network output over an input box, with HiGHS."""

from __future__ import annotations

import math

from ..choices import BAB_MAX_INPUTS, FORMULATIONS, SOLVE_METHODS
from .common import (add_problem_arguments, add_quiet_argument, fraction, load_domain, load_model, objective_choice,
                     parallel_count, print_json, quiet_stdout, seconds, show_progress)


def register(subparsers) -> None:
    parser = subparsers.add_parser("solve", help="minimise or maximise a network output to global optimality",
                                   description="Minimise or maximise one output of a network over an input box.")
    add_problem_arguments(parser)
    parser.add_argument("--time-limit", type=seconds, metavar="S",
                        help="time limit in seconds for the whole run (bounds, build and solve)")
    parser.add_argument("--formulation", choices=FORMULATIONS, default="bigm",
                        help="bigm (default), or bigm strengthened by root rounds of ideal ReLU cuts "
                             "(Anderson et al. 2020) before the MILP solve")
    parser.add_argument("--mip-gap", type=fraction, metavar="G", help="relative MIP gap to stop at")
    parser.add_argument("--threads", type=parallel_count, metavar="N", help="HiGHS threads")
    parser.add_argument("--log", action="store_true", help="show the HiGHS log (on stderr with --json)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_quiet_argument(parser)
    parser.add_argument("--method", choices=SOLVE_METHODS, default="auto",
                        help="bab: branch and bound over input boxes; milp: one big-M MILP; "
                             f"auto (default): bab up to {BAB_MAX_INPUTS} inputs over a box, else milp")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..optimization import optimize

    net, default_domain = load_model(args)
    domain = load_domain(args, net, default_domain)
    with quiet_stdout(args):
        result = optimize(net, domain, **objective_choice(args, required=True), tighten=args.tighten,
                          scale=args.scale, time_limit=args.time_limit, mip_gap=args.mip_gap, threads=args.threads,
                          log=args.log, method=args.method, progress=show_progress(args),
                          formulation=args.formulation)
    # Ctrl-C: the best incumbent and bound so far are printed, then the usual interrupt exit status
    code = 130 if result.status == "interrupted" else 0
    if args.json:
        print_json(result.to_json())
        return code
    fmt = lambda v: "-" if v is None or not math.isfinite(v) else f"{v:.10g}"
    print(f"status      {result.status}")
    print(f"objective   {fmt(result.objective)}")
    print(f"bound       {fmt(result.bound)}")
    if result.gap is not None:
        print(f"gap         {result.gap:.3g}")
    for note in result.notes:
        print(f"note        {note}")
    if result.x is not None:
        print(f"x           {' '.join(f'{v:.8g}' for v in result.x)}")
        print(f"y (forward) {' '.join(f'{v:.8g}' for v in result.y)}")
        if result.discrepancy is not None:  # bab has no single MILP whose outputs could differ
            print(f"discrepancy {result.discrepancy:.3g}")
    s = result.stats
    if s.get("method") == "bab":
        print(f"bab         {s['boxes']} boxes, {s['leaves']} leaf MILPs ({s['leaf_milp_time']:.3f}s), "
              f"{s['pruned']} pruned, {s['open']} open, depth {s['max_depth']}")
    if not s:  # interrupted before the model was built
        return code
    if "binaries" in s:  # one model (milp)
        print(f"model       {s['binaries']} binaries, {s['continuous']} continuous, {s['constraints']} constraints, "
              f"{s['nonzeros']} nonzeros")
        print(f"neurons     {s['stable_active']} stable active, {s['stable_inactive']} stable inactive, "
              f"{s['unstable']} unstable")
    if "cuts" in s:
        c = s["cuts"]
        print(f"cuts        {c['added']} ideal cuts in {c['rounds']} rounds; root LP bound "
              f"{fmt(c['root_bound_before'])} -> {fmt(c['root_bound_after'])}")
    print("times       " + ", ".join(f"{k} {v:.3f}s" for k, v in result.times.items()))
    return code
