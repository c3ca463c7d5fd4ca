"""Command-line entry point ``mpc-dc``.

Each sub-command lives in its own module under :mod:`mpc_dc.commands` and exposes
``register(subparsers)``; modules are discovered, so adding a command never
touches this file. Bad input ends with one line on stderr and exit code 2, and so
does a simulation book that does not close (:class:`InvariantError`, naming the
interval); a failed write (e.g. a full disk) with one line and exit code 3.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from mpc_dc import __version__
from mpc_dc import commands as commands_pkg
from mpc_dc.rundir import RunDirExistsError, RunWriteError
from mpc_dc.sim.invariants import InvariantError
from traces.errors import ConfigError, TraceError, TraceRangeError

EXIT_BAD_INPUT = 2
EXIT_WRITE_FAILED = 3


def build_parser() -> argparse.ArgumentParser:
    """Parser with every discovered sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="mpc-dc",
        description="Receding-horizon MPC simulator for AI data-center energy management.",
    )
    parser.add_argument("--version", action="version", version=f"mpc-dc {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands_pkg.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except (TraceError, ConfigError, TraceRangeError, RunDirExistsError, InvariantError) as err:
        print(f"mpc-dc: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunWriteError as err:
        # A full disk or a lost mount: the output was not written, earlier results stand.
        print(f"mpc-dc: error: {err}", file=sys.stderr)
        return EXIT_WRITE_FAILED


if __name__ == "__main__":
    sys.exit(main())
