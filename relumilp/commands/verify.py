"""``relumilp verify``: check a VNN-LIB property on a network (holds / violated / unknown)."""

from __future__ import annotations

from .._io import atomic_write_text, check_writable, vnncomp_result
from ..choices import BOUND_METHODS, FORMULATIONS
from ..errors import RelumilpError
from .common import (add_quiet_argument, check_separate_outputs, parallel_count, print_json, print_warning,
                     quiet_stdout, seconds, show_progress)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a VNN-LIB property: holds, violated (with a counterexample) or unknown",
        description="Verify a VNN-LIB property on a network. Prints holds, violated (with a counterexample "
                    "checked by the float64 forward pass) or unknown (time limit). Exit status 0 for any "
                    "of the three answers, 2 for bad input.",
    )
    parser.add_argument("model", metavar="MODEL", help="network file: .onnx, TorchScript, .pt2 or relumilp .npz")
    parser.add_argument("property", metavar="PROP.vnnlib", help="VNN-LIB property file")
    parser.add_argument("--time-limit", type=seconds, metavar="S", help="wall-clock limit in seconds (whole run)")
    parser.add_argument("--tighten", choices=BOUND_METHODS, default=None,
                        help="bound method per input region (default: lp for a single MILP; with branch and "
                             "bound, cones when it splits neurons, symbolic when it splits inputs)")
    parser.add_argument("--disjunction", choices=("split", "bigm"), default="split",
                        help="encoding of a disjunctive unsafe set: one MILP per disjunct (default) or one "
                             "MILP with a binary per disjunct")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--input-split", dest="input_split", action="store_true", default=None,
                       help="branch and bound before the MILP (the default)")
    split.add_argument("--no-input-split", dest="input_split", action="store_false",
                       help="solve each input region as one MILP")
    parser.add_argument("--branching", choices=("auto", "input", "relu"), default=None,
                        help="what branch and bound splits: input boxes, unstable ReLUs, or auto (the default: "
                             "input boxes for few inputs, ReLUs beyond)")
    parser.add_argument("--formulation", choices=FORMULATIONS, default="ideal_cuts",
                        help="a region's MILP: big-M strengthened by root rounds of ideal ReLU cuts (default), "
                             "or bigm as compiled; from 3 threads both run beside the branch and bound")
    parser.add_argument("--threads", type=parallel_count, metavar="N",
                        help="threads (default: all); with 2 or more, the root MILP runs beside the branch and bound "
                             "over neurons on N-1 HiGHS threads, with 1 they take turns")
    parser.add_argument("--log", action="store_true", help="show the HiGHS log (on stderr with --json)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="tell how the answer was reached: per input region, the attack, the bounds, the "
                             "branch and bound and every MILP (with --json: the full details object)")
    parser.add_argument("--json", action="store_true",
                        help='print {"result", "counterexample": {"x", "y"} or null, "time"}')
    add_quiet_argument(parser)
    parser.add_argument("--result-file", metavar="FILE",
                        help="also write the answer in the VNN-COMP format (unsat / sat + assignment / timeout)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..frontends import load_network
    from ..frontends.vnnlib import read_vnnlib
    from ..verify import verify

    if args.input_split is False and args.branching is not None:
        raise RelumilpError("--branching chooses what branch and bound splits, and --no-input-split turns branch "
                            "and bound off: give one of them")
    check_separate_outputs(args, args.result_file)
    if args.result_file:
        check_writable(args.result_file, ours=vnncomp_result)
    net = load_network(args.model)
    prop = read_vnnlib(args.property, net.input_size, net.output_size)
    with quiet_stdout(args):
        result = verify(net, prop, time_limit=args.time_limit, tighten=args.tighten, disjunction=args.disjunction,
                        input_split=args.input_split, branching=args.branching or "auto", threads=args.threads, log=args.log,
                        progress=show_progress(args), formulation=args.formulation)
    for note in result.details.get("notes", ()):  # e.g. an empty input region: the answer may be vacuous
        print_warning(note)
    interrupted = bool(result.details.get("interrupted"))
    if args.result_file and not interrupted:  # an interrupted run has no answer to record
        atomic_write_text(args.result_file, result.vnncomp_text(), ours=vnncomp_result)
    code = 130 if interrupted else 0
    if args.json:
        data = result.to_json()
        if args.verbose:
            data["details"] = result.details
        print_json(data)
        return code
    print(result.result + (" (interrupted)" if interrupted else ""))
    if result.counterexample is not None:
        print("x    " + " ".join(f"{v:.17g}" for v in result.counterexample["x"]))
        print("y    " + " ".join(f"{v:.17g}" for v in result.counterexample["y"]))
    print(f"time {result.time:.3f}s")
    if args.verbose:
        for line in explain(result.details):
            print(line)
    return code


def explain(details: dict) -> list[str]:
    """How a verification answer was reached, one line per input region and per MILP."""
    lines = [f"bounds: {details.get('tighten')}; branch and bound: "
             f"{details.get('branching', 'auto') if details.get('input_split') else 'off'}; "
             f"disjunction encoding: {details.get('disjunction')}"]
    for region in details.get("regions", ()):
        head = (f"region {region.get('region')}: decided by {region.get('decided_by', 'nothing (not reached)')}"
                f" ({region.get('disjuncts')} unsafe conjunction(s)")
        if "unstable" in region:
            head += f", {region['unstable']} unstable neurons, {region.get('binaries')} binaries at the root"
        if "pruned_by_bounds" in region:
            head += f", {region['pruned_by_bounds']} conjunction(s) ruled out by bounds"
        lines.append(head + ")")
        times = [f"{key[:-5].replace('_', ' ')} {region[key]:.3f}s"
                 for key in ("attack_time", "bounds_time", "bab_time", "root_milp_time") if key in region]
        if times:
            lines.append("  time: " + ", ".join(times))
        if "bab" in region:
            bab = region["bab"]
            lines.append(f"  branch and bound ({bab.get('branching')} splits): {bab.get('boxes')} nodes, "
                         f"{bab.get('pruned')} closed by bounds, {bab.get('leaves')} decided by MILP, "
                         f"depth {bab.get('max_depth')}")
        for run in region.get("milp", ()):
            bound = run.get("bound")
            cuts = run.get("cuts")
            if cuts:
                before, after = cuts.get("root_bound_before"), cuts.get("root_bound_after")
                lines.append(f"  ideal cuts for conjunction(s) {run.get('disjuncts')}: {cuts['added']} in "
                             f"{cuts['rounds']} rounds, {cuts['seconds']:.3f}s"
                             + ("" if before is None or after is None
                                else f", LP bound on the max violation {before:.3g} -> {after:.3g}"))
            lines.append(f"  MILP over conjunction(s) {run.get('disjuncts')}: {run.get('status')} in "
                         f"{run.get('time', 0.0):.3f}s, {run.get('nodes')} nodes, {run.get('binaries')} binaries"
                         + ("" if bound is None else f", bound on the max violation {bound:.3g}")
                         + (", stopped at its first solution" if run.get("first_only") else "")
                         + ("; branch and bound proved them meanwhile" if run.get("proven_elsewhere") else ""))
        proven = region.get("proven_by") or {}
        if proven:
            by = {who: sorted(int(j) for j, w in proven.items() if w == who) for who in ("bab", "milp")}
            lines.append("  conjunctions proven unreachable: " + "; ".join(
                f"{by[who]} by {name}" for who, name in (("bab", "branch and bound"), ("milp", "the root MILP"))
                if by[who]))
    return lines
