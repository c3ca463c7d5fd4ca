"""Command-line entry point ``mpc-dc``.

Each sub-command lives in its own module under :mod:`mpc_dc.commands` and exposes
``register(subparsers)``; modules are discovered, so adding a command never
touches this file.

How an error ends (one line on stderr, never a traceback unless ``-vv``):

* bad input — a project error naming the file, row, key or option
  (:data:`mpc_dc.errors.USER_ERRORS`; among them an output folder that cannot be
  written, found before the run), an option refused at parse time, or an
  :class:`OSError` on a path the user gave (it names the path): exit code 2, nothing
  written;
* a failed write (e.g. a full disk, :class:`~mpc_dc.rundir.RunWriteError`): exit 3,
  earlier results intact;
* Ctrl-C, SIGTERM, SIGHUP: ``mpc-dc: interrupted (SIGTERM)``, exit 128 + signal
  (130, 143, 129), temporary folders removed;
* anything else is a bug, not bad input: ``mpc-dc: internal error: ... (run with
  -vv for the traceback)``, exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from mpc_dc import __version__
from mpc_dc import commands as commands_pkg
from mpc_dc.errors import USER_ERRORS
from mpc_dc.interrupt import exit_code, handle_signals, signal_name
from mpc_dc.rundir import RunWriteError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_WRITE_FAILED = 3


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``mpc-dc: error: <message> (see '<prog> --help')`` and exit 2."""
        text = " ".join(message.split())
        self.exit(EXIT_BAD_INPUT, f"mpc-dc: error: {text} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """Parser with every discovered sub-command registered."""
    parser = Parser(
        prog="mpc-dc",
        description="Receding-horizon MPC simulator for AI data-center energy management.",
    )
    parser.add_argument("--version", action="version", version=f"mpc-dc {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="-v: info log; -vv: debug log, and a traceback with any error",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module_info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands_pkg.__name__}.{module_info.name}")
        module.register(subparsers)
    _verbose_everywhere(parser)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept ``-v``/``-vv`` after the command too (``mpc-dc run ... -vv``).

    The sub-commands' ``-v`` counts on top of a global one (no default of its own).
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for sub in dict.fromkeys(action.choices.values()):
            if "-v" not in sub._option_string_actions:
                sub.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                                 help="-v: info log; -vv: debug log and tracebacks")
            _verbose_everywhere(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or an option refused (one line printed)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    verbose = min(int(args.verbose), 2)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][verbose],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    from mpc_dc.fastpath import silence_highs_banner

    silence_highs_banner()
    with handle_signals():
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM/SIGHUP (interrupt.Terminated)
            return _fail(f"interrupted ({signal_name(err)})", exit_code(err), verbose)
        except USER_ERRORS as err:
            return _fail(f"error: {err}", EXIT_BAD_INPUT, verbose)
        except RunWriteError as err:
            # A full disk or a lost mount: the output was not written, earlier results stand.
            return _fail(f"error: {err}", EXIT_WRITE_FAILED, verbose)
        except BrokenPipeError:
            # Output piped into a reader that stopped (`mpc-dc data list | head`): not an error
            # worth a message; stdout is pointed at /dev/null so the exit flush stays quiet.
            _silence_stdout()
            return EXIT_INTERNAL
        except OSError as err:
            if err.filename is not None:
                return _fail(f"error: {_os_error_line(err)}", EXIT_BAD_INPUT, verbose)
            return _internal(err, verbose)
        except Exception as err:  # a bug: say so, do not dress it up as bad input
            return _internal(err, verbose)


def _os_error_line(err: OSError) -> str:
    """``PATH: what went wrong`` for an OSError on a path (e.g. permission denied)."""
    reason = err.strerror or type(err).__name__
    if err.filename2 is not None:
        return f"{err.filename} -> {err.filename2}: {reason.lower()}"
    return f"{err.filename}: {reason.lower()}"


def _internal(err: BaseException, verbose: int) -> int:
    message = " ".join(str(err).split()) or "(no message)"
    hint = "" if verbose >= 2 else " (run with -vv for the traceback)"
    return _fail(f"internal error: {type(err).__name__}: {message}{hint}", EXIT_INTERNAL,
                 verbose)


def _fail(line: str, code: int, verbose: int) -> int:
    """Print the traceback (``-vv`` only) and the one error line; return ``code``."""
    if verbose >= 2:
        traceback.print_exc(file=sys.stderr)
    print(f"mpc-dc: {' '.join(line.split())}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
