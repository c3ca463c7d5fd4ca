"""Helpers of the fuzz tests (not a test module): run a command on a mutated file, and
random byte edits.

Each fuzz example writes one file into a scratch folder, runs one ``mpc-dc`` command
on it in this process and checks what every bad input must give: exit 0, or exit 2
with exactly one stderr line ``mpc-dc: error: FILE: ...``; never a traceback (an
exception escaping ``main`` fails the test; an internal error is exit 1); nothing
besides the input file written.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import strategies as st

from mpc_dc.cli import main as cli_main


def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder for a module's examples (hypothesis re-runs a test many times)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        yield Path(name)


@dataclass(frozen=True)
class Outcome:
    """What a command did with one file.

    Attributes
    ----------
    code : int
        Exit code (0 or 2).
    message : str
        The line after ``mpc-dc: error: FILE: `` (empty when accepted).
    """

    code: int
    message: str

    @property
    def key(self) -> str | None:
        """The key the message names (``key 'X': ...``), if any."""
        found = re.match(r"key '([^']*)': ", self.message)
        return found[1] if found else None

    @property
    def said(self) -> str:
        """The message after the key."""
        return re.sub(r"^key '[^']*': ", "", self.message)


_count = itertools.count()


def check_command(folder: Path, suffix: str, data: bytes, argv: Callable[[str], list[str]],
                  capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Write ``data`` to a new ``*suffix`` file in ``folder``, run ``mpc-dc argv(FILE)``
    and assert the invariants of the module docstring."""
    path = folder / f"case{next(_count)}{suffix}"
    path.write_bytes(data)
    before = set(os.listdir(folder))
    capsys.readouterr()
    try:
        code = cli_main(argv(str(path)))
        err = capsys.readouterr().err
        assert code in (0, 2), f"exit {code}: {err}"
        assert "Traceback" not in err
        if code == 0:
            assert err == "", err
            return Outcome(0, "")
        lines = err.strip("\n").split("\n")
        assert len(lines) == 1, lines
        prefix = f"mpc-dc: error: {path}: "
        assert lines[0].startswith(prefix), lines[0]
        return Outcome(2, lines[0][len(prefix):])
    finally:
        assert set(os.listdir(folder)) == before, "something was written"
        path.unlink()


def byte_edits(size: int) -> st.SearchStrategy[list[tuple[str, int, bytes]]]:
    """One to four edits of a ``size``-byte file: (``del``/``ins``/``set``, where, bytes)."""
    return st.lists(st.tuples(st.sampled_from(["del", "ins", "set"]), st.integers(0, size - 1),
                              st.binary(min_size=1, max_size=4)), min_size=1, max_size=4)


def edited(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    """``data`` with ``edits`` applied in turn (bytes deleted, inserted or overwritten);
    never empty."""
    raw = bytearray(data)
    for kind, where, blob in edits:
        at = min(where, len(raw) - 1)
        if kind == "del":
            del raw[at : at + len(blob)]
        elif kind == "ins":
            raw[at:at] = blob
        else:
            raw[at : at + len(blob)] = blob
        if not raw:
            raw = bytearray(b"x")
    return bytes(raw)
