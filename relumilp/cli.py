"""The ``relumilp`` command line: one sub-command per module in :mod:`relumilp.commands`.

User errors (bad files, bad bounds, unsupported layers) print one line on stderr and exit with status 2,
never a traceback. Ctrl-C and SIGTERM stop a command cleanly (workers stopped, no partial files) with
status 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from .errors import RelumilpError
from .limits import Deadline, terminate_as_interrupt

#: sub-command modules under relumilp.commands, in the order ``--help`` lists them
COMMANDS = ("solve", "compile", "stats", "bounds", "verify")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (argparse prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"relumilp: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="relumilp",
        description="Compile trained ReLU networks into MILPs and solve them to certified global optimality.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"relumilp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f".commands.{name}", __package__).register(subparsers)
    return parser


def _attach_box_values(argv: list[str]) -> list[str]:
    """``--box -1:1`` -> ``--box=-1:1``: argparse would otherwise read ``-1:1`` as an option."""
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--box":
            value = next(tokens, None)
            out.append(token if value is None else f"--box={value}")
        else:
            out.append(token)
    return out


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_box_values(list(sys.argv[1:] if argv is None else argv)))
    from .commands.common import convert_options, show_warning

    try:
        with terminate_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = show_warning  # warnings print as one line, like errors
            convert_options(args)  # before any numerical import: a bad option fails in a blink
            if argv is None:  # the console entry point is guarded, so spawned worker processes are safe
                from .parallel import set_default_workers

                set_default_workers(os.cpu_count() or 1)
            if getattr(args, "time_limit", None) is not None:
                # the user's clock starts with the command: imports and start-up count too
                args.time_limit = Deadline.since_process_start(args.time_limit)
            return int(args.run(args) or 0)
    except RelumilpError as exc:
        print(f"relumilp: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("relumilp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
