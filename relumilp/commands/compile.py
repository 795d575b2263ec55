"""``relumilp compile``: write a network's MILP as an MPS or LP file (whole or not at all)."""

from __future__ import annotations

from .._io import check_writable
from .common import add_problem_arguments, check_separate_outputs, load_domain, load_model, objective_choice, print_warning


def register(subparsers) -> None:
    parser = subparsers.add_parser("compile", help="write the MILP as .mps or .lp",
                                   description="Compile a network over an input box into a big-M MILP file.")
    add_problem_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.mps|OUT.lp", help="file to write")
    parser.add_argument("--names", metavar="NAMES.json",
                        help="also write the map of column and row names (x[i], y[j], node[i], node.z[i]) as JSON")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..optimization import output_objective
    from ..pipeline import compile_network

    check_separate_outputs(args, args.output, args.names)
    check_writable(args.output)  # refuse bad paths before compiling
    if args.names:
        check_writable(args.names)
    net, default_domain = load_model(args)
    domain = load_domain(args, net, default_domain)
    compiled = compile_network(net, domain, tighten=args.tighten, scale=args.scale)
    choice = objective_choice(args, required=False)
    objective, sense = output_objective(net.output_size, **choice) if choice else (None, "min")
    if not choice:
        print_warning("no objective given (--maximize K / --minimize K): the model is written without one")
    path = compiled.write(args.output, objective, sense, args.names)
    size = compiled.milp.size_report()
    print(f"wrote {path}: {size['binaries']} binaries, {size['continuous']} continuous, "
          f"{size['constraints']} constraints, {size['nonzeros']} nonzeros")
    return 0
