"""Readers for the BurstGPT LLM request trace (HPMLL/BurstGPT, CC-BY-4.0).

Two formats:

* raw request rows (``BurstGPT_*.csv``): v1 has ``Timestamp, Model, Request
  tokens, Response tokens, Total tokens, Log Type``; v3 adds a session id and an
  elapsed time. Columns are read by name, so their order is free.
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

from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata, find_gaps
from traces.validate import check_numeric, check_range, check_whole, read_csv_checked

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


def read_burstgpt_requests(
    path: str | Path,
    origin: pd.Timestamp | str | None = None,
    *,
    zero_request: RowPolicy = RowPolicy.KEEP,
    failed: RowPolicy = RowPolicy.KEEP,
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
    frame = read_csv_checked(
        source, required=tuple(REQUEST_VARIABLES), expected="a BurstGPT request CSV"
    )
    arrival = check_numeric(frame, "Timestamp", source, first_line=FIRST_DATA_LINE)
    _no_missing(arrival, source, "Timestamp", "a number of seconds since trace start")
    check_range(
        arrival,
        source,
        "Timestamp",
        first_line=FIRST_DATA_LINE,
        low=0.0,
        high=MAX_TRACE_S,
        what="seconds since trace start, at most ten years",
    )
    back = np.flatnonzero(np.diff(arrival.to_numpy()) < 0)
    if back.size:
        pos = int(back[0]) + 1
        raise TraceError(
            source,
            f"timestamp {arrival.iloc[pos]:g} is earlier than the row before "
            f"({arrival.iloc[pos - 1]:g}); expected rows sorted by arrival time",
            line=FIRST_DATA_LINE + pos,
            field="Timestamp",
        )
    tokens: dict[str, pd.Series] = {}
    for column in _TOKEN_COLUMNS:
        tokens[column] = _non_negative(frame, column, source, "token count", MAX_TOKENS)
    total = tokens["Total tokens"].to_numpy()
    parts = tokens["Request tokens"].to_numpy() + tokens["Response tokens"].to_numpy()
    wrong = np.flatnonzero(total != parts)
    if wrong.size:
        pos = int(wrong[0])
        raise TraceError(
            source,
            f"Total tokens {total[pos]:g} != Request tokens + Response tokens = {parts[pos]:g}; "
            "expected the sum",
            line=FIRST_DATA_LINE + pos,
            field="Total tokens",
        )

    out = pd.DataFrame(
        {
            "arrival_s": arrival.to_numpy(),
            "model": frame["Model"].astype("string").to_numpy(),
            "request_tokens": tokens["Request tokens"].to_numpy(dtype=np.int64),
            "response_tokens": tokens["Response tokens"].to_numpy(dtype=np.int64),
            "total_tokens": tokens["Total tokens"].to_numpy(dtype=np.int64),
            "log_type": frame["Log Type"].astype("string").to_numpy(),
        }
    )
    version = "v1"
    for raw, name in V3_EXTRA_VARIABLES.items():
        if raw not in frame.columns:
            continue
        version = "v3"
        if name == "elapsed_s":
            out[name] = check_numeric(frame, raw, source, first_line=FIRST_DATA_LINE).to_numpy()
        else:
            out[name] = frame[raw].astype("string").to_numpy()

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
        rows_read=len(frame),
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
                  high: float) -> pd.Series:
    """``frame[column]`` as float; every cell present, a whole number in ``[0, high]``."""
    values = check_numeric(frame, column, source, first_line=FIRST_DATA_LINE)
    _no_missing(values, source, column, f"a {noun}")
    check_range(
        values,
        source,
        column,
        first_line=FIRST_DATA_LINE,
        low=0.0,
        what=f"a non-negative {noun}",
    )
    check_whole(values, source, column, first_line=FIRST_DATA_LINE, low=0.0, high=high,
                what=f"a {noun}")
    return values


def _no_missing(values: pd.Series, source: Path, field: str, what: str) -> None:
    missing = np.flatnonzero(values.isna().to_numpy())
    if missing.size:
        raise TraceError(
            source,
            f"empty cell; expected {what}",
            line=FIRST_DATA_LINE + int(missing[0]),
            field=field,
        )
