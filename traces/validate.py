"""Shared checks used by every reader; each failure is a one-line :class:`TraceError`.

Line numbers are 1-based lines of the file: a data row at position ``i`` (0-based)
of a frame read with ``header_line`` as its header is on line ``header_line + 1 + i``.

:func:`read_csv_checked` checks the shape of a CSV before pandas parses it
(:func:`check_csv_shape`, linear in the file size): a repeated column name, more
than :data:`MAX_COLUMNS` columns, or a row with a different number of fields than
the header (a file cut off mid-row would otherwise load with NaNs) is refused,
naming the line. pandas renames repeated names (``x``, ``x.1`` ...) with a
membership test per name, quadratic in the header length: a 50 MB header line
of repeated names ran for minutes; it is now refused before pandas sees it.
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

MAX_COLUMNS = 10_000
"""Widest CSV accepted [columns] (the public files have at most 79)."""
TIMESTAMP_RANGE = ("1900-01-01", "2200-01-01")
"""Timestamps accepted (a year 0 or 3000 is a corrupt cell; the nanosecond clock ends 2262)."""


def read_text(path: str | Path) -> str:
    """Read a whole text file as UTF-8 (BOM allowed), with one-line errors.

    Raises
    ------
    TraceError
        If the file is missing, empty, or not UTF-8.
    """
    file_path = Path(path)
    if file_path.is_dir():
        raise TraceError(file_path, "is a directory; expected a CSV file")
    if not file_path.is_file():
        raise TraceError(file_path, "file not found")
    try:
        raw = file_path.read_bytes()
    except OSError as err:
        raise TraceError(file_path, f"cannot read ({(err.strerror or str(err)).lower()}); "
                         "expected a readable file") from None
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
    check_csv_shape(text, path, skiprows=skiprows, header_rows=header_rows)
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
    except (OverflowError, MemoryError) as err:
        raise TraceError(path, f"values out of range ({_first_line(str(err))})") from None
    except ValueError as err:
        raise TraceError(path, f"malformed CSV ({_first_line(str(err))})") from None
    if header_rows == 1:
        # Column names are matched stripped (require_columns), so the readers must find
        # them stripped too: "day ,hour" is the column "day". check_csv_shape has already
        # refused names that repeat once stripped.
        frame.columns = pd.Index([str(c).strip() for c in frame.columns])
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


def check_csv_shape(
    text: str, path: str | Path, *, skiprows: int = 0, header_rows: int = 1
) -> None:
    """Refuse repeated column names, too many columns and rows of the wrong width.

    Linear in the size of ``text``; blank lines are left to the readers (they report
    them as empty cells). A quoted field may hold commas and line breaks; without
    quotes in the file the fields are counted with numpy.

    Parameters
    ----------
    text
        The whole file.
    skiprows
        Title lines before the header.
    header_rows
        Header lines (2: the names in the first, e.g. heights in the second).

    Raises
    ------
    TraceError
        Naming the header line and the repeated column, or the first data line whose
        number of fields differs from the header's.
    """
    parts = text.split("\n", skiprows + header_rows)
    if len(parts) <= skiprows:
        return
    header_lines = parts[skiprows : skiprows + header_rows]
    header = [_header_fields(line, path, skiprows + 1 + k) for k, line in enumerate(header_lines)]
    names = list(zip(*header, strict=False)) if header_rows > 1 else [(n,) for n in header[0]]
    seen: dict[tuple[str, ...], int] = {}
    for position, name in enumerate(names, start=1):
        if not any(name):
            continue
        if name in seen:
            shown = " / ".join(name)
            raise TraceError(
                path,
                f"column name repeated in the header (columns {seen[name]} and {position}); "
                "expected unique column names",
                line=skiprows + 1,
                field=shown,
            )
        seen[name] = position
    if len(parts) <= skiprows + header_rows:
        return
    check_row_widths(parts[-1], path, len(header[0]), skiprows + header_rows + 1)


def _header_fields(line: str, path: str | Path, line_no: int) -> list[str]:
    """The names of one header line; refused beyond :data:`MAX_COLUMNS` before a full split."""
    if line.count(",") >= MAX_COLUMNS:
        # Repeated names among the first columns are the likelier mistake: name one.
        head = [c.strip() for c in line.split(",", MAX_COLUMNS)[:MAX_COLUMNS]]
        seen: dict[str, int] = {}
        for position, name in enumerate(head, start=1):
            if name and name in seen:
                raise TraceError(path, f"column name repeated in the header (columns "
                                 f"{seen[name]} and {position}); expected unique column names",
                                 line=line_no, field=name)
            seen[name] = position
        raise TraceError(path, f"more than {MAX_COLUMNS} columns in the header; expected a "
                         "CSV of at most that width", line=line_no)
    try:
        return [c.strip() for c in next(csv.reader([line.rstrip("\r")]), [])]
    except csv.Error as err:  # e.g. a bare carriage return inside the header
        raise TraceError(path, f"malformed CSV header ({_first_line(str(err))}); expected "
                         "comma-separated names on one line", line=line_no) from None


def _wrong_width(path: str | Path, fields: int, width: int, line: int, last: bool) -> TraceError:
    if fields < width:
        how = ("the file ends mid-row (cut off?)" if last
               else "the row is cut short (a missing field or separator)")
        return TraceError(path, f"{fields} fields, expected {width} as in the header; {how}",
                          line=line)
    return TraceError(path, f"{fields} fields, expected {width} as in the header (an extra "
                      "separator, or an unquoted comma inside a value?)", line=line)


def check_row_widths(rest: str, path: str | Path, width: int, first_line: int) -> None:
    """Refuse a line of ``rest`` (data rows, ``first_line`` the file line of its first)
    whose number of fields is not ``width``; a last line without a line end is reported
    as the file ending mid-row. Linear in ``len(rest)`` (for readers that stream a file
    in chunks of whole lines; :func:`check_csv_shape` checks a whole file)."""
    if '"' in rest:
        _check_quoted_rows(rest, path, width, first_line)
    else:
        _check_plain_rows(rest, path, width, first_line)


def _check_plain_rows(rest: str, path: str | Path, width: int, first_line: int) -> None:
    """Count the fields of every line of ``rest`` (no quotes in it) with numpy."""
    data = np.frombuffer(rest.encode("utf-8"), dtype=np.uint8)
    if data.size == 0:
        return
    ends = np.flatnonzero(data == ord("\n"))
    if ends.size == 0 or ends[-1] != data.size - 1:
        ends = np.append(ends, data.size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    commas = np.flatnonzero(data == ord(","))
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    length = ends - starts
    ends_cr = (length > 0) & (data[np.maximum(ends - 1, 0)] == ord("\r"))
    blank = (length - ends_cr) == 0
    bad = np.flatnonzero(~blank & (fields != width))
    if bad.size:
        row = int(bad[0])
        last = row == len(fields) - 1 and not rest.endswith("\n")
        raise _wrong_width(path, int(fields[row]), width, first_line + row, last)


def _check_quoted_rows(rest: str, path: str | Path, width: int, first_line: int) -> None:
    """Field counts of ``rest`` through :mod:`csv` (quoted fields may span lines)."""
    reader = csv.reader(io.StringIO(rest))
    start = 1
    try:
        for record in reader:
            if record and len(record) != width:
                last = next(reader, None) is None and not rest.endswith("\n")
                raise _wrong_width(path, len(record), width, first_line + start - 1, last)
            start = reader.line_num + 1
    except csv.Error as err:
        raise TraceError(path, f"malformed CSV ({err})", line=first_line + start - 1) from None


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
    try:
        parsed = pd.to_datetime(values, format=fmt if fmt else "ISO8601", errors="coerce",
                                utc=utc)
    except (ValueError, OverflowError):
        # Out of the nanosecond range (e.g. year 0): "coerce" does not cover it; find the
        # cell one by one (an error path only).
        parsed = pd.Series([_one_time(v, fmt, utc) for v in values], index=values.index)
    bad = parsed.isna().to_numpy() & values.notna().to_numpy()
    bad |= values.isna().to_numpy()
    low, high = (pd.Timestamp(t, tz="UTC" if utc else None) for t in TIMESTAMP_RANGE)
    outside = np.asarray(parsed.notna() & ((parsed < low) | (parsed >= high)), dtype=bool)
    if bad.any() or outside.any():
        pos = int(np.flatnonzero(bad | outside)[0])
        raw = values.iloc[pos]
        shown = "empty cell (blank line?)" if pd.isna(raw) else f"unparseable timestamp {raw!r}"
        if outside[pos] and not bad[pos]:
            shown = (f"timestamp {raw!r} is outside {TIMESTAMP_RANGE[0][:4]}.."
                     f"{TIMESTAMP_RANGE[1][:4]}")
        raise TraceError(
            path,
            f"{shown}; expected e.g. {'2022-01-01 06:00:00' if fmt is None else fmt}",
            line=first_line + pos,
            field=field,
        )
    # pandas 3 infers s/ms/us units; nanoseconds keep integer arithmetic uniform downstream.
    return pd.DatetimeIndex(parsed).as_unit("ns")


def _one_time(value: object, fmt: str | None, utc: bool) -> pd.Timestamp | None:
    """One timestamp parsed as :func:`parse_timestamps` does; None when it cannot be."""
    try:
        stamp = pd.to_datetime(str(value), format=fmt if fmt else "ISO8601", utc=utc)
    except (ValueError, OverflowError, TypeError):
        return None
    return stamp if isinstance(stamp, pd.Timestamp) and stamp is not pd.NaT else None


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
    """Return ``frame[column]`` as float; the first non-numeric or infinite cell is an error.

    An empty cell (or ``NaN``, which pandas reads as missing) stays NaN: the
    readers bound runs of missing values. ``inf`` and values beyond the float range
    (``1e400``) are refused.
    """
    raw = frame[column]
    numeric = pd.to_numeric(raw, errors="coerce")
    bad = numeric.isna().to_numpy() & raw.notna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise TraceError(
            path, f"expected a number, got {raw.iloc[pos]!r}", line=first_line + pos, field=column
        )
    values = numeric.astype(float)
    infinite = np.isinf(values.to_numpy())
    if infinite.any():
        pos = int(np.flatnonzero(infinite)[0])
        raise TraceError(path, f"expected a finite number, got {cell_text(raw.iloc[pos])}",
                         line=first_line + pos, field=column)
    return values


def check_whole(
    values: pd.Series,
    path: str | Path,
    field: str,
    *,
    first_line: int,
    low: float,
    high: float,
    what: str,
) -> None:
    """Raise on the first value that is not a whole number in ``[low, high]`` (NaN passes).

    For counts, hours, token numbers and clock ticks that are later cast to integers:
    a fraction would be truncated silently and a huge value would overflow the cast.
    """
    array = values.to_numpy(dtype=float)
    bad = ~np.isnan(array) & ((array % 1 != 0) | (array < low) | (array > high))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise TraceError(
            path,
            f"value {array[pos]:g} is not a whole number in [{low:g}, {high:g}]; expected {what}",
            line=first_line + pos,
            field=field,
        )


def cell_text(cell: object) -> str:
    """A cell as shown in a message: numbers as ``%g`` (``inf``, ``1e+300``), text quoted."""
    if isinstance(cell, float | np.floating | int | np.integer) and not isinstance(cell, bool):
        return f"{float(cell):g}"
    return repr(cell)


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
