"""The project's user-error types: bad input, named in one line.

An error of one of these types is the user's to fix (a file, row, key or option named
with what was expected), not a bug and not a failure a retry could mend: the CLI ends
with it as exit code 2 (:mod:`mpc_dc.cli`), and a sweep reports a run refused with it
as bad input (:func:`mpc_dc.sweep.execute_run`). Defined here, in the library, so that
neither depends on the other.
"""

from __future__ import annotations

from mpc_dc.rundir import RunDirExistsError, RunDirNotWritableError
from mpc_dc.sim.invariants import InvariantError
from traces.errors import ConfigError, TraceError, TraceRangeError

USER_ERRORS: tuple[type[BaseException], ...] = (
    TraceError,
    ConfigError,
    TraceRangeError,
    RunDirExistsError,
    RunDirNotWritableError,
    InvariantError,
)
"""Project error types: their message is one line naming the culprit (bad input).

``InvariantError`` counts as bad input: a book that does not close names the
interval and the scenario that produced it."""
