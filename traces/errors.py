"""Errors raised by the trace layer.

Every problem with an input file is reported as one line that names the file,
the row (1-based line number in the file, header lines included) and the field
where they are known, and what was expected. The CLI prints ``str(error)`` and
exits non-zero; nothing is written.
"""

from __future__ import annotations

from pathlib import Path


class TraceError(ValueError):
    """A problem with an input trace file.

    Parameters
    ----------
    path
        File the problem was found in.
    message
        What was wrong and what was expected, e.g.
        ``"expected a timestamp like 2022-01-01 06:00:00, got 'abc'"``.
    line
        1-based line number in the file (title and header lines count), if known.
    field
        Column or key name, if known.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.message = " ".join(message.split())
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [str(self.path)]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ": ".join(parts) + ": " + self.message


class TraceRangeError(LookupError):
    """A request for data outside the span a trace covers (no extrapolation)."""


class ConfigError(ValueError):
    """A problem with a scenario or configuration file or value (one line)."""

    def __init__(self, source: str | Path, message: str, *, key: str | None = None) -> None:
        self.source = str(source)
        self.key = key
        self.message = " ".join(message.split())
        where = f"{self.source}: key '{key}'" if key else self.source
        super().__init__(f"{where}: {self.message}")
