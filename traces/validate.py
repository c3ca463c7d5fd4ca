"""Shared checks used by every reader; each failure is a one-line :class:`TraceError`.

Line numbers are 1-based lines of the file: a data row at position ``i`` (0-based)
of a frame read with ``header_line`` as its header is on line ``header_line + 1 + i``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import nan_runs


def read_text(path: str | Path) -> str:
    """Read a whole text file as UTF-8 (BOM allowed), with one-line errors.

    Raises
    ------
    TraceError
        If the file is missing, empty, or not UTF-8.
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise TraceError(file_path, "file not found")
    raw = file_path.read_bytes()
    if not raw.strip():
        raise TraceError(file_path, "file is empty; expected a header line and data rows")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise TraceError(
            file_path,
            f"not UTF-8 text (byte 0x{raw[err.start]:02x}); expected a UTF-8 CSV file",
            line=line,
        ) from None


def read_csv_checked(
    path: str | Path,
    *,
    skiprows: int = 0,
    required: Sequence[str] = (),
    dtype: dict[str, str] | None = None,
    header_rows: int = 1,
    expected: str = "",
    text: str | None = None,
) -> pd.DataFrame:
    """Read a CSV with one-line errors for empty, non-UTF-8 and malformed files.

    Parameters
    ----------
    path
        CSV file.
    skiprows
        Title lines before the header line.
    required
        Columns that must be present (checked by name, so column order is free).
    dtype
        Passed to :func:`pandas.read_csv`.
    header_rows
        Number of header lines (2 for windpowerlib's weather file).
    expected
        Name of the format, used in the missing-column message.
    text
        Contents of ``path`` when the caller has already read it (with
        :func:`read_text`); the file is read only when ``None``.
    """
    if text is None:
        text = read_text(path)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            skiprows=skiprows,
            dtype=dtype,
            header=list(range(header_rows)) if header_rows > 1 else 0,
            # A blank line must surface as a bad row, not vanish (and shift line numbers).
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError:
        raise TraceError(path, "no header line found; expected a CSV header") from None
    except (pd.errors.ParserError, csv.Error) as err:
        raise TraceError(path, f"malformed CSV ({_first_line(str(err))})") from None
    except ValueError as err:
        raise TraceError(path, f"malformed CSV ({_first_line(str(err))})") from None
    require_columns(frame.columns, required, path, line=skiprows + 1, expected=expected)
    if frame.empty:
        raise TraceError(
            path,
            "header found but no data rows; expected at least one data row",
            line=skiprows + header_rows + 1,
        )
    return frame


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown parser error"


def require_columns(
    columns: Iterable[object],
    required: Sequence[str],
    path: str | Path,
    *,
    line: int = 1,
    expected: str = "",
) -> None:
    """Raise if any of ``required`` is not among ``columns``.

    ``expected`` names the format (e.g. ``"an Electricity Maps hourly CSV"``) so a
    file of the wrong format is reported as such.
    """
    present = [str(c).strip() for c in columns]
    for name in required:
        if name not in present:
            hint = f"expected {expected}; " if expected else ""
            raise TraceError(
                path,
                f"missing column; {hint}header starts {present[:4]}",
                line=line,
                field=name,
            )


def parse_timestamps(
    values: pd.Series,
    path: str | Path,
    field: str,
    *,
    first_line: int,
    fmt: str | None = None,
    utc: bool = True,
) -> pd.DatetimeIndex:
    """Parse a column of timestamps; the first bad one is reported with its line.

    Parameters
    ----------
    values
        Raw column.
    first_line
        File line of ``values.iloc[0]``.
    fmt
        ``strptime`` format; ISO 8601 (with or without offset) when omitted.
    utc
        Convert (aware) or localize (naive) to UTC.
    """
    parsed = pd.to_datetime(values, format=fmt if fmt else "ISO8601", errors="coerce", utc=utc)
    bad = parsed.isna().to_numpy() & values.notna().to_numpy()
    bad |= values.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raw = values.iloc[pos]
        shown = "empty cell (blank line?)" if pd.isna(raw) else f"unparseable timestamp {raw!r}"
        raise TraceError(
            path,
            f"{shown}; expected e.g. {'2022-01-01 06:00:00' if fmt is None else fmt}",
            line=first_line + pos,
            field=field,
        )
    # pandas 3 infers s/ms/us units; nanoseconds keep integer arithmetic uniform downstream.
    return pd.DatetimeIndex(parsed).as_unit("ns")


def check_sorted_unique(
    index: pd.DatetimeIndex, path: str | Path, field: str, *, first_line: int
) -> None:
    """Raise on the first duplicated or decreasing timestamp."""
    values = index.asi8
    diffs = np.diff(values)
    dup = np.flatnonzero(diffs == 0)
    if dup.size:
        pos = int(dup[0]) + 1
        raise TraceError(
            path,
            f"duplicated timestamp {index[pos]}; expected strictly increasing times "
            f"(a repeated daylight-saving hour must be given in UTC)",
            line=first_line + pos,
            field=field,
        )
    back = np.flatnonzero(diffs < 0)
    if back.size:
        pos = int(back[0]) + 1
        raise TraceError(
            path,
            f"timestamp {index[pos]} is earlier than the row before ({index[pos - 1]}); "
            "expected rows sorted by time",
            line=first_line + pos,
            field=field,
        )


def check_numeric(
    frame: pd.DataFrame, column: str, path: str | Path, *, first_line: int
) -> pd.Series:
    """Return ``frame[column]`` as float; the first non-numeric cell is an error."""
    raw = frame[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    bad = numeric.isna().to_numpy() & raw.notna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise TraceError(
            path, f"expected a number, got {raw.iloc[pos]!r}", line=first_line + pos, field=column
        )
    return numeric.astype(float)


def check_column(
    frame: pd.DataFrame,
    column: str,
    path: str | Path,
    *,
    first_line: int,
    max_run: int,
    low: float = -np.inf,
    high: float = np.inf,
    what: str = "",
) -> pd.Series:
    """:func:`check_numeric`, :func:`check_nan_runs` and :func:`check_range` on one column.

    Returns
    -------
    ``frame[column]`` as float (NaN where the cell is empty).
    """
    values = check_numeric(frame, column, path, first_line=first_line)
    check_nan_runs(values, path, column, first_line=first_line, max_run=max_run)
    check_range(values, path, column, first_line=first_line, low=low, high=high, what=what)
    return values


def check_range(
    values: pd.Series,
    path: str | Path,
    field: str,
    *,
    first_line: int,
    low: float = -np.inf,
    high: float = np.inf,
    what: str = "",
) -> None:
    """Raise on the first value outside ``[low, high]`` (NaN passes)."""
    array = values.to_numpy(dtype=float)
    bad = (array < low) | (array > high)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise TraceError(
            path,
            f"value {array[pos]:g} is outside [{low:g}, {high:g}]"
            + (f"; expected {what}" if what else ""),
            line=first_line + pos,
            field=field,
        )


def check_nan_runs(
    values: pd.Series, path: str | Path, field: str, *, first_line: int, max_run: int
) -> int:
    """Raise if more than ``max_run`` consecutive values are NaN; return the NaN count."""
    isnan = values.isna().to_numpy()
    if not isnan.any():
        return 0
    starts, lengths = nan_runs(isnan)
    worst = int(np.argmax(lengths))
    if lengths[worst] > max_run:
        raise TraceError(
            path,
            f"{int(lengths[worst])} consecutive missing values; at most {max_run} allowed",
            line=first_line + int(starts[worst]),
            field=field,
        )
    return int(isnan.sum())


def check_times(
    index: pd.DatetimeIndex,
    path: str | Path,
    field: str,
    *,
    first_line: int,
    now: pd.Timestamp | None = None,
) -> None:
    """:func:`check_sorted_unique` then :func:`reject_future`."""
    check_sorted_unique(index, path, field, first_line=first_line)
    reject_future(index, path, field, first_line=first_line, now=now)


def reject_future(
    index: pd.DatetimeIndex,
    path: str | Path,
    field: str,
    *,
    first_line: int,
    now: pd.Timestamp | None = None,
) -> None:
    """Raise on a timestamp after ``now`` (default: the wall clock, UTC)."""
    limit = now if now is not None else pd.Timestamp.now(tz="UTC")
    late = np.flatnonzero(index > limit)
    if late.size:
        pos = int(late[0])
        raise TraceError(
            path,
            f"timestamp {index[pos]} is in the future (after {limit:%Y-%m-%d %H:%M}Z)",
            line=first_line + pos,
            field=field,
        )
