"""Options shared by several sub-commands: the model, its input domain, bound tightening, output."""

from __future__ import annotations

import argparse
import json
import sys

from ..bounds import METHODS
from ..domain import InputDomain, box_from_cli
from ..errors import RelumilpError
from ..ir import Network


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL",
                        help="network file: .onnx, TorchScript (.pt/.pth/.ts), torch.export (.pt2) or relumilp .npz")
    parser.add_argument("--example", metavar="NAME",
                        help="use a built-in example network instead of MODEL (see relumilp.examples)")


def add_domain_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--input-bounds", metavar="FILE.json",
                       help='input box as JSON {"lower": [...], "upper": [...]} (optional "A", "b" rows A x <= b)')
    group.add_argument("--box", metavar="LO:HI", action="append",
                       help="input interval; once for every input, or once per input in input order")


def add_tighten_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tighten", choices=METHODS, default="interval",
                        help="bound method; each implies the cheaper ones before it (default: interval)")
    parser.add_argument("--scale", action="store_true",
                        help="a-posteriori ReLU scaling: normalise every neuron's big-M (function unchanged)")


def load_model(args) -> tuple[Network, InputDomain | None]:
    """The network named by MODEL or --example, and the example's default domain (else None)."""
    if args.example and args.model:
        raise RelumilpError("give either MODEL or --example, not both")
    if args.example:
        from ..examples import load_example

        example = load_example(args.example)
        return example.network, example.domain
    if not args.model:
        raise RelumilpError("no model given: pass a MODEL file or --example NAME")
    from ..frontends import load_network

    return load_network(args.model), None


def load_domain(args, net: Network, default: InputDomain | None = None) -> InputDomain:
    """The input domain from --input-bounds or --box (falling back to ``default``)."""
    if getattr(args, "input_bounds", None):
        return InputDomain.from_json(args.input_bounds).check_size(net.input_size)
    if getattr(args, "box", None):
        return box_from_cli(args.box, net.input_size)
    if default is not None:
        return default
    raise RelumilpError("no input domain: give --box LO:HI (once, or once per input) or --input-bounds FILE.json")


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--maximize", type=int, metavar="K", help="maximise output K (flat index)")
    group.add_argument("--minimize", type=int, metavar="K", help="minimise output K (flat index)")


def objective_choice(args, required: bool) -> dict:
    if args.maximize is None and args.minimize is None:
        if required:
            raise RelumilpError("choose an objective: --maximize K or --minimize K")
        return {}
    return {"maximize": args.maximize} if args.maximize is not None else {"minimize": args.minimize}


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL/--example, the input domain, the objective and the bound options (solve, compile)."""
    add_model_arguments(parser)
    add_domain_arguments(parser)
    add_objective_arguments(parser)
    add_tighten_arguments(parser)
