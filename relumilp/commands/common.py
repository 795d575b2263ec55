"""Options shared by several sub-commands: the model, its input domain, bound tightening, output.

Numeric options are typed with the converters below (:func:`seconds`, :func:`positive_int` ...).
argparse only records the text; :func:`convert_options` converts it after parsing, so a bad value is
a :class:`~relumilp.errors.RelumilpError` -- one line, exit status 2 -- instead of argparse's usage
block, and every command checks the same option the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys

from typing import TYPE_CHECKING

from .._io import stdout_to_stderr
from ..choices import BOUND_METHODS
from ..errors import RelumilpError
from ..parallel import max_parallel, parallel_rule

if TYPE_CHECKING:  # numerical modules load when a command runs, not for --help
    from ..domain import InputDomain
    from ..ir import Network


def check_separate_outputs(args, *outputs) -> None:
    """Refuse an output path that is also one of the command's inputs (model, property, input bounds,
    bound cache) or another of its outputs: writing it would destroy what the run reads or writes."""
    from pathlib import Path

    def same(a, b) -> bool:
        a, b = Path(a), Path(b)
        try:
            return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
        except OSError:
            return False

    roles = [(getattr(args, name, None), role) for name, role in
             (("model", "the model"), ("property", "the property"), ("input_bounds", "the input bounds"),
              ("cache", "the bound cache"))]
    for path in (path for path in outputs if path is not None):
        for other, role in roles:
            if other is not None and same(path, other):
                raise RelumilpError(f"output {path} is also {role}; give each output its own new file")
        roles.append((path, "another output"))


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
    parser.add_argument("--tighten", choices=BOUND_METHODS, default="interval",
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
    from ..domain import InputDomain, box_from_cli

    if getattr(args, "input_bounds", None):
        return InputDomain.from_json(args.input_bounds).check_size(net.input_size)
    if getattr(args, "box", None):
        return box_from_cli(args.box, net.input_size)
    if default is not None:
        return default
    raise RelumilpError("no input domain: give --box LO:HI (once, or once per input) or --input-bounds FILE.json")


# -- numeric options ---------------------------------------------------------------------------------


class _Text:
    """An option's text awaiting conversion by :func:`convert_options`."""

    def __init__(self, convert, text: str):
        self.convert, self.text = convert, text


def _number(text: str, what: str, kind: type, rule: str, ok) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):  # ``ok`` is False for NaN, which compares false with everything
        raise RelumilpError(f"{what} must be {rule}, got {text!r}")
    return value


def _option_type(convert):
    """An argparse ``type=`` that defers ``convert(text, option name)`` to :func:`convert_options`."""
    return lambda text: _Text(convert, text)


def _seconds(text, what):
    from ..limits import check_time_limit

    return check_time_limit(text, what)


#: a time limit: a positive number of seconds
seconds = _option_type(_seconds)
#: a time limit where 0 means "skip this step"
seconds_or_zero = _option_type(
    lambda text, what: _number(text, what, float, "a number of seconds >= 0 (0 skips it)", lambda v: 0 <= v < math.inf))
#: a relative tolerance such as a MIP gap
fraction = _option_type(lambda text, what: _number(text, what, float, "a number >= 0", lambda v: 0 <= v < math.inf))
#: a count of threads, workers ...
positive_int = _option_type(lambda text, what: _number(text, what, int, "a whole number >= 1", lambda v: v >= 1))


#: a count of threads or worker processes: the range :func:`relumilp.parallel.check_parallel` allows
parallel_count = _option_type(lambda text, what: _number(text, what, int, parallel_rule(),
                                                         lambda v: 1 <= v <= max_parallel()))
#: a count that may be zero
count = _option_type(lambda text, what: _number(text, what, int, "a whole number >= 0", lambda v: v >= 0))
#: any whole number (a seed, an output index)
integer = _option_type(lambda text, what: _number(text, what, int, "a whole number", lambda v: True))


def convert_options(args: argparse.Namespace) -> None:
    """Convert the options typed with the converters above; raises a one-line error for a bad value."""
    for dest, value in vars(args).items():
        if isinstance(value, _Text):
            setattr(args, dest, value.convert(value.text, "--" + dest.replace("_", "-")))


# -- output ----------------------------------------------------------------------------------------------


def print_warning(message: str) -> None:
    """A warning as one stderr line (the CLI's counterpart of ``relumilp: error: ...``)."""
    print(f"relumilp: warning: {' '.join(str(message).split())}", file=sys.stderr)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the CLI: the message only, on one line, no source location."""
    print_warning(message)


def quiet_stdout(args):
    """With ``--json``, the run's own output (solver logs) goes to stderr so stdout stays pure JSON."""
    return stdout_to_stderr() if getattr(args, "json", False) else contextlib.nullcontext()


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--maximize", type=integer, metavar="K", help="maximise output K (flat index)")
    group.add_argument("--minimize", type=integer, metavar="K", help="minimise output K (flat index)")


def objective_choice(args, required: bool) -> dict:
    if args.maximize is None and args.minimize is None:
        if required:
            raise RelumilpError("choose an objective: --maximize K or --minimize K")
        return {}
    return {"maximize": args.maximize} if args.maximize is not None else {"minimize": args.minimize}


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress display (it is shown on stderr only when stderr is a terminal)."""
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress display on stderr")


def show_progress(args) -> bool:
    """Whether to draw progress: stderr is a terminal and ``--quiet`` was not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL/--example, the input domain, the objective and the bound options (solve, compile)."""
    add_model_arguments(parser)
    add_domain_arguments(parser)
    add_objective_arguments(parser)
    add_tighten_arguments(parser)
