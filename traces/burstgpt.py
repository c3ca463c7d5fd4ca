"""Readers for the BurstGPT LLM request trace (HPMLL/BurstGPT, CC-BY-4.0).

Two formats:

* raw request rows (``BurstGPT_*.csv``): v1 has ``Timestamp, Model, Request
  tokens, Response tokens, Total tokens, Log Type``; v3 adds a session id and an
  elapsed time. Columns are read by name, so their order is free. The full trace
  (millions of rows) is read in chunks of constant memory
  (:func:`iter_burstgpt_requests`, :func:`read_burstgpt_window`), every chunk
  checked as the whole file is.
* the hourly aggregate ``burstgpt_hourly.csv`` (``day, hour, conversation, api,
  all``) derived from ``BurstGPT_1.csv``.

BurstGPT publishes no absolute dates ("calibrated to the local time zone"): the
calendar origin is a modelling choice taken as a parameter.

Row policies. A *zero-request* row has ``Request tokens == 0``; a *failed* row has
``Response tokens == 0`` (the README: failures "that Response tokens are 0s").
Each is handled by a named :class:`RowPolicy`; dropped rows are counted in
``metadata.dropped`` under ``"zero_request_tokens"`` or ``"failed_zero_response"``
(a row that is both counts under the first). ``Total tokens != Request + Response``
is an error, not a drop: it means the file is corrupt or not BurstGPT, and a
silently repaired token count would bias every energy figure downstream.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special

from traces.errors import TraceError
from traces.grid import TraceMetadata, find_gaps
from traces.validate import (
    check_numeric,
    check_range,
    check_row_widths,
    check_whole,
    read_csv_checked,
    require_columns,
)

FIRST_DATA_LINE = 2
MAX_TRACE_S = 10 * 366 * 86_400
"""Latest accepted arrival [s since trace start]: ten years (BurstGPT spans months)."""
MAX_TOKENS = 10_000_000
"""Largest accepted token count of one request [tokens] (contexts hold ~1e6 at most)."""
MAX_REQUESTS_PER_H = 1_000_000_000
"""Largest accepted hourly request count [requests/h] (BurstGPT's peak is ~1e4)."""
MAX_DAY = 10 * 366
"""Largest accepted day number of the hourly file (ten years)."""

REQUEST_VARIABLES: dict[str, str] = {
    "Timestamp": "arrival_s",
    "Model": "model",
    "Request tokens": "request_tokens",
    "Response tokens": "response_tokens",
    "Total tokens": "total_tokens",
    "Log Type": "log_type",
}
"""Variable map of the v1 request file (source column -> canonical column)."""

V3_EXTRA_VARIABLES: dict[str, str] = {
    "Session ID": "session_id",
    "SessionID": "session_id",
    "Elapsed time": "elapsed_s",
}
"""Extra v3 columns (the BurstGPT README announces ``SessionID`` and ``Elapsed time``;
both spellings of the session column are accepted)."""

HOURLY_VARIABLES: dict[str, str] = {
    "conversation": "requests_conversation_per_h",
    "api": "requests_api_per_h",
    "all": "requests_all_per_h",
}
"""Variable map of ``burstgpt_hourly.csv``."""

DEFAULT_HOURLY_ORIGIN = pd.Timestamp("2022-04-01 00:00", tz="America/New_York")
"""Default calendar origin of BurstGPT day 0, hour 0: local midnight starting
2022-04-01 in New York. The 61 trace days then cover April and May 2022, months
where the NYISO 2022 real-time LMP file is complete and with no DST change (so
trace-local hours map one-to-one onto UTC hours)."""

_TOKEN_COLUMNS = ("Request tokens", "Response tokens", "Total tokens")


class RowPolicy(StrEnum):
    """What to do with a class of suspicious request rows: ``KEEP`` or ``DROP`` (counted)."""

    KEEP = "keep"
    DROP = "drop"


#: Rows per chunk of the streaming reader.
CHUNK_ROWS = 250_000


def _check_rows(
    frame: pd.DataFrame, source: Path, first_line: int, previous_ts: float
) -> pd.DataFrame:
    """Validate raw rows (numbers, order, ``Total = Request + Response``) and return
    them with canonical columns; ``first_line`` is the file line of the first row and
    ``previous_ts`` the timestamp of the row before it (``-inf`` at the start)."""
    arrival = check_numeric(frame, "Timestamp", source, first_line=first_line)
    _no_missing(arrival, source, "Timestamp", "a number of seconds since trace start",
                first_line)
    check_range(arrival, source, "Timestamp", first_line=first_line, low=0.0,
                high=MAX_TRACE_S, what="seconds since trace start, at most ten years")
    values = arrival.to_numpy()
    back = np.flatnonzero(np.diff(np.concatenate([[previous_ts], values])) < 0)
    if back.size:
        pos = int(back[0])
        before = previous_ts if pos == 0 else values[pos - 1]
        raise TraceError(
            source,
            f"timestamp {values[pos]:g} is earlier than the row before "
            f"({before:g}); expected rows sorted by arrival time",
            line=first_line + pos,
            field="Timestamp",
        )
    tokens: dict[str, pd.Series] = {}
    for column in _TOKEN_COLUMNS:
        tokens[column] = _non_negative(frame, column, source, "token count", MAX_TOKENS,
                                       first_line)
    total = tokens["Total tokens"].to_numpy()
    parts = tokens["Request tokens"].to_numpy() + tokens["Response tokens"].to_numpy()
    wrong = np.flatnonzero(total != parts)
    if wrong.size:
        pos = int(wrong[0])
        raise TraceError(
            source,
            f"Total tokens {total[pos]:g} != Request tokens + Response tokens = {parts[pos]:g}; "
            "expected the sum",
            line=first_line + pos,
            field="Total tokens",
        )
    out = pd.DataFrame(
        {
            "arrival_s": values,
            "model": frame["Model"].astype("string").to_numpy(),
            "request_tokens": tokens["Request tokens"].to_numpy(dtype=np.int64),
            "response_tokens": tokens["Response tokens"].to_numpy(dtype=np.int64),
            "total_tokens": tokens["Total tokens"].to_numpy(dtype=np.int64),
            "log_type": frame["Log Type"].astype("string").to_numpy(),
        }
    )
    for raw, name in V3_EXTRA_VARIABLES.items():
        if raw not in frame.columns:
            continue
        if name == "elapsed_s":
            out[name] = check_numeric(frame, raw, source, first_line=first_line).to_numpy()
        else:
            out[name] = frame[raw].astype("string").to_numpy()
    return out


def iter_burstgpt_requests(
    path: str | Path, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream raw BurstGPT request rows in chunks of ``chunk_rows`` (constant memory).

    Every chunk is checked as :func:`read_burstgpt_requests` checks the whole file
    (line numbers are file lines; the order check spans chunk boundaries).

    Yields
    ------
    DataFrame
        Canonical columns (``arrival_s`` [s since trace start], ``model``,
        ``request_tokens``, ``response_tokens``, ``total_tokens`` [tokens],
        ``log_type``; v3: ``session_id``, ``elapsed_s`` [s]), a default index.

    Raises
    ------
    TraceError
        Missing file or columns, empty file, malformed CSV, bad values (as
        :func:`read_burstgpt_requests`).
    """
    source = Path(path)
    # the messages of traces.validate.read_text, without reading the whole file
    if not source.is_file():
        raise TraceError(source, "file not found")
    try:
        with source.open(encoding="utf-8-sig", newline="") as handle:
            header_line = handle.readline()
            header = next(csv.reader([header_line]), None) if header_line.strip() else None
            if not header:
                raise TraceError(source,
                                 "file is empty; expected a header line and data rows")
            names = [c.strip() for c in header]
            seen: dict[str, int] = {}
            for position, name in enumerate(names, start=1):
                # pandas renames repeated names quadratically; refuse them first (linear).
                if name and name in seen:
                    raise TraceError(source, f"column name repeated in the header (columns "
                                     f"{seen[name]} and {position}); expected unique column "
                                     "names", line=1, field=name)
                seen[name] = position
            require_columns(pd.Index(names), tuple(REQUEST_VARIABLES), source, line=1,
                            expected="a BurstGPT request CSV")
            line = FIRST_DATA_LINE
            previous = -np.inf
            rows = 0
            while True:
                # Whole lines only, so every chunk's rows are checked for their width
                # (a file cut mid-row) before pandas reads them (it pads short rows).
                lines = list(itertools.islice(handle, chunk_rows))
                if not lines:
                    break
                text = "".join(lines)
                check_row_widths(text, source, len(names), line)
                try:
                    frame = pd.read_csv(io.StringIO(header_line + text),
                                        skip_blank_lines=False)
                except (pd.errors.ParserError, csv.Error) as err:
                    raise TraceError(source, f"malformed CSV ({str(err).strip().splitlines()[0]})",
                                     line=line) from None
                if len(frame.columns) == len(names):
                    frame.columns = pd.Index(names)  # matched stripped above: read stripped
                chunk = _check_rows(frame, source, line, previous)
                line += len(frame)
                rows += len(frame)
                previous = float(chunk["arrival_s"].iloc[-1])
                yield chunk
    except UnicodeDecodeError:
        raise TraceError(source, "not UTF-8 text; expected a UTF-8 CSV file", line=1) from None
    if rows == 0:
        raise TraceError(source, "header found but no data rows; expected at least one data row",
                         line=FIRST_DATA_LINE)


def read_burstgpt_window(
    path: str | Path, start_s: float, end_s: float, chunk_rows: int = CHUNK_ROWS
) -> pd.DataFrame:
    """The rows with ``start_s <= Timestamp < end_s`` of a (large) BurstGPT CSV, read in
    chunks: memory holds one chunk and the window, never the whole trace.

    Returns
    -------
    DataFrame
        As :func:`iter_burstgpt_requests`, the window's rows only.
    """
    kept: list[pd.DataFrame] = []
    for chunk in iter_burstgpt_requests(path, chunk_rows):
        t = chunk["arrival_s"].to_numpy()
        if t[0] >= end_s:
            break  # rows are sorted: nothing further is in the window
        sel = (t >= start_s) & (t < end_s)
        if sel.any():
            kept.append(chunk.loc[sel])
    if not kept:
        return pd.DataFrame(columns=list(REQUEST_VARIABLES.values()))
    return pd.concat(kept, ignore_index=True)


def read_burstgpt_requests(
    path: str | Path,
    origin: pd.Timestamp | str | None = None,
    *,
    zero_request: RowPolicy = RowPolicy.KEEP,
    failed: RowPolicy = RowPolicy.KEEP,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read raw BurstGPT request rows (v1 or v3 layout).

    Parameters
    ----------
    path
        BurstGPT CSV.
    origin
        Calendar instant of trace second 0 (tz-aware or UTC). When omitted the
        index is relative: a ``TimedeltaIndex`` named ``arrival_since_start``.
    zero_request
        Policy for rows with 0 request tokens.
    failed
        Policy for failed rows (0 response tokens).
    chunk_rows
        Rows per chunk of the streaming read (:func:`iter_burstgpt_requests`).

    Returns
    -------
    frame : DataFrame
        Index ``arrival_utc`` (UTC arrival instants) if ``origin`` is given, else
        ``arrival_since_start``. Columns ``arrival_s`` [s since trace start],
        ``model``, ``request_tokens``, ``response_tokens``, ``total_tokens``
        [tokens], ``log_type``; v3 adds ``session_id`` and ``elapsed_s`` [s].
    metadata : TraceMetadata
        ``dropped`` by reason, ``extra["version"]`` (``"v1"``/``"v3"``),
        ``extra["zero_request_rows"]`` and ``extra["failed_rows"]`` (counted before
        any drop).

    Raises
    ------
    TraceError
        Missing columns, non-numeric or negative token counts or timestamps,
        decreasing timestamps, ``Total != Request + Response``.
    """
    source = Path(path)
    out = pd.concat(list(iter_burstgpt_requests(source, chunk_rows)), ignore_index=True)
    version = "v3" if ("session_id" in out.columns or "elapsed_s" in out.columns) else "v1"

    zero_mask = out["request_tokens"].to_numpy() == 0
    failed_mask = out["response_tokens"].to_numpy() == 0
    drop_zero = zero_mask if zero_request is RowPolicy.DROP else np.zeros(len(out), dtype=bool)
    drop_failed = (
        (failed_mask & ~drop_zero) if failed is RowPolicy.DROP else np.zeros(len(out), dtype=bool)
    )
    dropped: dict[str, int] = {}
    if zero_request is RowPolicy.DROP:
        dropped["zero_request_tokens"] = int(drop_zero.sum())
    if failed is RowPolicy.DROP:
        dropped["failed_zero_response"] = int(drop_failed.sum())
    kept = out.loc[~(drop_zero | drop_failed)].reset_index(drop=True)

    seconds = pd.to_timedelta(kept["arrival_s"].to_numpy(), unit="s")
    if origin is None:
        kept.index = pd.TimedeltaIndex(seconds, name="arrival_since_start")
        convention = "relative: index = Timestamp seconds since trace start"
    else:
        start = _as_utc(origin)
        kept.index = pd.DatetimeIndex(start + seconds, name="arrival_utc").as_unit("ns")
        convention = f"index = origin {start:%Y-%m-%d %H:%M}Z + Timestamp seconds"
    metadata = TraceMetadata(
        source=source,
        format="burstgpt_requests",
        rows_read=len(out),
        rows_kept=len(kept),
        dropped=dropped,
        units={
            "arrival_s": "s",
            "request_tokens": "tokens",
            "response_tokens": "tokens",
            "total_tokens": "tokens",
            **({"elapsed_s": "s"} if "elapsed_s" in kept.columns else {}),
        },
        time_convention=convention,
        extra={
            "version": version,
            "zero_request_rows": int(zero_mask.sum()),
            "failed_rows": int(failed_mask.sum()),
            "policies": {"zero_request": str(zero_request), "failed": str(failed)},
        },
    )
    return kept, metadata


def read_burstgpt_hourly(
    path: str | Path, origin: pd.Timestamp | str = DEFAULT_HOURLY_ORIGIN
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read ``burstgpt_hourly.csv`` (hourly request counts per log type).

    Parameters
    ----------
    path
        CSV with ``day, hour, conversation, api, all``.
    origin
        Calendar instant of day 0, hour 0 (tz-aware, or naive = UTC). Default
        :data:`DEFAULT_HOURLY_ORIGIN`. Hour ``h`` of day ``d`` starts at
        ``origin + 24 d + h`` hours (elapsed time, so a DST change of the origin's
        zone shifts local clock hours, never the count per hour).

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc`` (hourly); ``requests_conversation_per_h``,
        ``requests_api_per_h``, ``requests_all_per_h`` [requests/h].
    metadata : TraceMetadata
        ``gaps`` (missing (day, hour) rows), ``extra["total_requests"]``.

    Raises
    ------
    TraceError
        Missing columns, hour outside 0..23, negative counts, duplicated or
        unsorted (day, hour), ``all != conversation + api``.
    """
    source = Path(path)
    frame = read_csv_checked(
        source,
        required=("day", "hour", *HOURLY_VARIABLES),
        expected="burstgpt_hourly.csv (day,hour,conversation,api,all)",
    )
    day = check_numeric(frame, "day", source, first_line=FIRST_DATA_LINE)
    hour = check_numeric(frame, "hour", source, first_line=FIRST_DATA_LINE)
    _no_missing(day, source, "day", "a day number")
    _no_missing(hour, source, "hour", "an hour 0..23")
    check_whole(day, source, "day", first_line=FIRST_DATA_LINE, low=0.0, high=MAX_DAY,
                what="a day number (at most ten years)")
    check_whole(hour, source, "hour", first_line=FIRST_DATA_LINE, low=0.0, high=23.0,
                what="an hour of day 0..23")
    counts: dict[str, pd.Series] = {}
    for raw in HOURLY_VARIABLES:
        counts[raw] = _non_negative(frame, raw, source, "request count", MAX_REQUESTS_PER_H)
    both = counts["conversation"].to_numpy() + counts["api"].to_numpy()
    wrong = np.flatnonzero(counts["all"].to_numpy() != both)
    if wrong.size:
        pos = int(wrong[0])
        raise TraceError(
            source,
            f"all = {counts['all'].iloc[pos]:g} but conversation + api = {both[pos]:g}; "
            "expected all == conversation + api",
            line=FIRST_DATA_LINE + pos,
            field="all",
        )
    hours = (day.to_numpy() * 24 + hour.to_numpy()).astype(np.int64)
    steps = np.diff(hours)
    for bad_steps, what in ((steps == 0, "duplicated"), (steps < 0, "unsorted")):
        if bad_steps.any():
            pos = int(np.flatnonzero(bad_steps)[0]) + 1
            raise TraceError(
                source,
                f"{what} (day, hour) = ({int(day.iloc[pos])}, {int(hour.iloc[pos])}); "
                "expected strictly increasing hours",
                line=FIRST_DATA_LINE + pos,
                field="hour",
            )
    start = _as_utc(origin)
    index = pd.DatetimeIndex(
        start + pd.to_timedelta(hours, unit="h"), name="interval_start_utc"
    ).as_unit("ns")
    out = pd.DataFrame(
        {name: counts[raw].to_numpy() for raw, name in HOURLY_VARIABLES.items()}, index=index
    )
    metadata = TraceMetadata(
        source=source,
        format="burstgpt_hourly",
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(index, pd.Timedelta(hours=1))),
        resolution=pd.Timedelta(hours=1),
        units={name: "requests/h" for name in HOURLY_VARIABLES.values()},
        time_convention=(
            f"hour h of day d starts at origin {start:%Y-%m-%d %H:%M}Z + (24 d + h) h "
            "(origin is a modelling choice)"
        ),
        extra={"total_requests": int(counts["all"].sum()), "origin_utc": start},
    )
    return out, metadata


def _as_utc(origin: pd.Timestamp | str) -> pd.Timestamp:
    stamp = pd.Timestamp(origin)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _non_negative(frame: pd.DataFrame, column: str, source: Path, noun: str,
                  high: float, first_line: int = FIRST_DATA_LINE) -> pd.Series:
    """``frame[column]`` as float; every cell present, a whole number in ``[0, high]``."""
    values = check_numeric(frame, column, source, first_line=first_line)
    _no_missing(values, source, column, f"a {noun}", first_line)
    check_range(
        values,
        source,
        column,
        first_line=first_line,
        low=0.0,
        what=f"a non-negative {noun}",
    )
    check_whole(values, source, column, first_line=first_line, low=0.0, high=high,
                what=f"a {noun}")
    return values


def _no_missing(values: pd.Series, source: Path, field: str, what: str,
                first_line: int = FIRST_DATA_LINE) -> None:
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise TraceError(
            source,
            f"empty cell; expected {what}",
            line=first_line + int(missing[0]),
            field=field,
        )


# --------------------------------------------------------------------------- burst model


@dataclass(frozen=True)
class BurstModel:
    """Arrivals within an hour and token lengths per model label, fitted on raw rows.

    BurstGPT's authors (Wang et al., KDD 2025) describe the request inter-arrival
    times of each service as Gamma distributed; here the Gamma *shape* ``k`` of each
    label is fitted on the gaps between consecutive same-label rows of one clock
    hour, each gap divided by its hour's mean gap (the hourly rate is the counts'
    business, the shape is what remains: ``k < 1`` burstier than Poisson, ``k = 1``
    Poisson). ``N`` requests of a label in an hour are then placed at the points of a
    Gamma(k) renewal process rescaled to the hour: the ``N + 1`` spacings are
    Dirichlet(k, ..., k) (:func:`burst_times`). Token pairs are drawn from the label's
    own rows (the labels' lengths differ).

    Attributes
    ----------
    labels : tuple of str
        Model labels (``ChatGPT``, ``GPT-4``).
    shape : tuple of float [-]
        Gamma shape of within-hour inter-arrival times, per label.
    share : tuple of float [-]
        Share of the rows, per label.
    gaps : tuple of int
        Gaps the shape was fitted on, per label.
    request_tokens, response_tokens : tuple of ndarray [tokens]
        The label's rows.
    """

    labels: tuple[str, ...]
    shape: tuple[float, ...]
    share: tuple[float, ...]
    gaps: tuple[int, ...]
    request_tokens: tuple[np.ndarray, ...]
    response_tokens: tuple[np.ndarray, ...]

    def shape_of(self, label: str) -> float:
        """Gamma shape of ``label`` (1: Poisson, for a label the rows do not have)."""
        return self.shape[self.labels.index(label)] if label in self.labels else 1.0


def fit_gamma_shape(normalised_gaps: np.ndarray) -> float:
    """Maximum-likelihood Gamma shape ``k`` of gaps with mean 1 (scale ``1/k``) [-]."""
    x = np.asarray(normalised_gaps, dtype=float)
    logs = np.log(x)

    def nll(log_k: float) -> float:
        k = float(np.exp(log_k))
        return -float(np.sum((k - 1) * logs - k * x + k * np.log(k) - special.gammaln(k)))

    res = optimize.minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded")
    return float(np.exp(res.x))


def fit_burst_model(
    rows: pd.DataFrame, *, min_gaps_per_hour: int = 3, resolution_s: float = 1.0
) -> BurstModel:
    """Fit the :class:`BurstModel` on raw rows (``arrival_s``, ``model``,
    ``request_tokens``, ``response_tokens``).

    Parameters
    ----------
    rows : DataFrame
    min_gaps_per_hour : int
        Hours with fewer same-label gaps are left out of the shape fit.
    resolution_s : float [s]
        Timestamp resolution: a zero gap is taken as half of it.
    """
    t_all = rows["arrival_s"].to_numpy(dtype=float)
    names = rows["model"].astype(str).to_numpy()
    labels = tuple(dict.fromkeys(names.tolist()))
    shapes: list[float] = []
    gaps_used: list[int] = []
    for label in labels:
        t = t_all[names == label]
        gaps = np.maximum(np.diff(t), resolution_s / 2)
        hour = np.floor(t[1:] / 3600.0)
        parts = []
        for h in np.unique(hour):
            g = gaps[hour == h]
            if g.size >= min_gaps_per_hour:
                parts.append(g / g.mean())
        if parts:
            x = np.concatenate(parts)
            shapes.append(fit_gamma_shape(x))
            gaps_used.append(int(x.size))
        else:
            shapes.append(1.0)  # too few rows: Poisson
            gaps_used.append(0)
    req = rows["request_tokens"].to_numpy(dtype=np.int64)
    resp = rows["response_tokens"].to_numpy(dtype=np.int64)
    return BurstModel(
        labels=labels,
        shape=tuple(shapes),
        share=tuple(float((names == lab).mean()) for lab in labels),
        gaps=tuple(gaps_used),
        request_tokens=tuple(req[names == lab] for lab in labels),
        response_tokens=tuple(resp[names == lab] for lab in labels),
    )


def burst_times(
    counts: np.ndarray, shape: np.ndarray, lo: np.ndarray, hi: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times of groups of requests, each group a Gamma renewal process rescaled
    to its window: group ``g`` puts ``counts[g]`` arrivals in ``[lo[g], hi[g])`` with
    Dirichlet(``shape[g]``) spacings (vectorised over groups).

    Returns
    -------
    times : ndarray [s]
        Arrivals, group by group, increasing within a group.
    group : ndarray of int64
        Group of each arrival.
    """
    counts = np.asarray(counts, dtype=np.int64)
    k = np.repeat(np.asarray(shape, dtype=float), counts + 1)
    gaps = rng.gamma(k, 1.0)
    ends = np.cumsum(counts + 1)
    starts = ends - (counts + 1)
    total = np.add.reduceat(gaps, starts) if gaps.size else np.zeros(0)
    cum = np.cumsum(gaps)
    offset = np.repeat(cum[starts] - gaps[starts], counts + 1)
    frac = (cum - offset) / np.repeat(total, counts + 1)
    last = np.zeros(gaps.size, dtype=bool)
    last[ends - 1] = True  # the (N+1)-th spacing closes the window: no arrival
    group = np.repeat(np.arange(counts.size), counts + 1)[~last]
    span = (np.asarray(hi, dtype=float) - np.asarray(lo, dtype=float))[group]
    return np.asarray(lo, dtype=float)[group] + span * frac[~last], group
