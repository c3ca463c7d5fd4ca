"""Reader for Google ``powerdata_2019`` PDU utilization CSVs (cell a, May 2019).

``time`` is microseconds since the trace start, where ``t = 600 s`` is
2019-05-01 00:00 US/Pacific (PDT, UTC-7) per Google's cluster-data documentation,
so ``UTC = 2019-05-01 07:00Z + (time - 600 s)``.

Interval convention (a modelling decision): the reading stamped ``t`` is taken as
the mean utilization over ``[t, t + 5 min)``. The shipped files hold exactly
31 x 288 = 8,928 readings from ``t = 600 s``, which under this reading tile May
2019 (Pacific) exactly; under the window-ending reading the first value would
describe 2019-04-30 23:55-24:00, outside the published trace period.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata, find_gaps, infer_resolution
from traces.validate import (
    cell_text,
    check_column,
    check_numeric,
    check_times,
    read_csv_checked,
)

FIRST_DATA_LINE = 2
TIME_COLUMN = "time"
VALUE_COLUMN = "measured_power_util"
TRACE_PERIOD_START_UTC = pd.Timestamp("2019-05-01 07:00", tz="UTC")
"""2019-05-01 00:00 PDT, the instant of ``time = 600 s``."""
TRACE_PERIOD_OFFSET_US = 600_000_000
"""``time`` value [µs] of the trace-period start."""
MAX_NAN_RUN = 3
"""Longest run of missing readings [5-min rows] accepted."""
MAX_TRACE_US = 10 * 366 * 86_400 * 1_000_000
"""Latest accepted ``time`` [µs since trace start]: ten years (the 2019 trace spans a month);
beyond it a value is corrupt (and would overflow the nanosecond clock)."""
MAX_POWER_UTIL = 1.5
"""Utilization above this [-] is treated as corrupt (PDU limits are rarely exceeded)."""


def read_google_pdu(
    path: str | Path, *, now: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read one Google PDU power-utilization CSV (with or without a ``pdu`` column).

    Parameters
    ----------
    path
        CSV with at least ``time`` [µs] and ``measured_power_util`` [-].
    now
        Rows stamped after this instant are rejected (default: wall clock).

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc`` (5-min interval starts); column ``power_util``
        [-] = measured power / PDU power limit.
    metadata : TraceMetadata
        ``extra["pdu"]`` (from the ``pdu`` column or the file name), ``gaps``.

    Raises
    ------
    TraceError
        Missing columns, non-integer or unsorted times, utilization outside [0, 1.5].
    """
    source = Path(path)
    frame = read_csv_checked(
        source,
        required=(TIME_COLUMN, VALUE_COLUMN),
        expected="a Google powerdata_2019 PDU CSV (time, measured_power_util)",
    )
    micros = check_numeric(frame, TIME_COLUMN, source, first_line=FIRST_DATA_LINE)
    values = micros.to_numpy()
    bad = micros.isna().to_numpy() | (values % 1 != 0) | (values < 0) | (values > MAX_TRACE_US)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise TraceError(
            source,
            "expected integer microseconds since trace start in [0, "
            f"{MAX_TRACE_US:.3g}] (ten years), got {cell_text(frame[TIME_COLUMN].iloc[pos])}",
            line=FIRST_DATA_LINE + pos,
            field=TIME_COLUMN,
        )
    offset = pd.to_timedelta(micros.to_numpy(dtype=np.int64) - TRACE_PERIOD_OFFSET_US, unit="us")
    index = pd.DatetimeIndex(TRACE_PERIOD_START_UTC + offset, name="interval_start_utc").as_unit(
        "ns"
    )
    check_times(index, source, TIME_COLUMN, first_line=FIRST_DATA_LINE, now=now)
    resolution = infer_resolution(index, source)
    util = check_column(
        frame,
        VALUE_COLUMN,
        source,
        first_line=FIRST_DATA_LINE,
        max_run=MAX_NAN_RUN,
        low=0.0,
        high=MAX_POWER_UTIL,
        what="a utilization (power / PDU limit) in [0, 1.5]",
    )
    out = pd.DataFrame({"power_util": util.to_numpy()}, index=index)
    if "pdu" in frame.columns and frame["pdu"].notna().any():
        pdu = str(frame["pdu"].dropna().iloc[0])
    else:
        pdu = source.stem.split("_")[-1]
    metadata = TraceMetadata(
        source=source,
        format="google_pdu",
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(index, resolution)),
        resolution=resolution,
        units={"power_util": "-"},
        time_convention="reading at t covers [t, t + 5 min); t=600 s is 2019-05-01 00:00 PDT",
        extra={"pdu": pdu},
    )
    return out, metadata


def read_google_pdus(
    paths: Sequence[str | Path], *, now: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Average the utilization of several PDUs on their common timestamps.

    Parameters
    ----------
    paths
        PDU CSVs (see :func:`read_google_pdu`).
    now
        Passed to :func:`read_google_pdu`.

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc`` (union of the inputs); ``power_util`` [-] is
        the unweighted mean over the PDUs that have a reading (NaN only where all
        are missing), ``n_pdus`` how many contributed.
    metadata : TraceMetadata
        Sums of rows over the files; ``extra["pdus"]``.
    """
    if not paths:
        raise ValueError("read_google_pdus needs at least one path")
    frames: list[pd.Series] = []
    metas: list[TraceMetadata] = []
    for path in paths:
        frame, meta = read_google_pdu(path, now=now)
        frames.append(frame["power_util"].rename(str(meta.extra["pdu"])))
        metas.append(meta)
    wide = pd.concat(frames, axis=1).sort_index()
    out = pd.DataFrame(
        {"power_util": wide.mean(axis=1), "n_pdus": wide.notna().sum(axis=1)}, index=wide.index
    )
    out.index.name = "interval_start_utc"
    resolution = metas[0].resolution
    assert resolution is not None  # read_google_pdu always infers it
    rows_read = sum(m.rows_read for m in metas)
    metadata = TraceMetadata(
        source=Path(paths[0]).parent,
        format="google_pdu_mean",
        rows_read=rows_read,
        rows_kept=rows_read,
        gaps=tuple(find_gaps(pd.DatetimeIndex(out.index), resolution)),
        resolution=resolution,
        units={"power_util": "-", "n_pdus": "count"},
        time_convention=metas[0].time_convention,
        extra={"pdus": [m.extra["pdu"] for m in metas], "files": [str(m.source) for m in metas]},
    )
    return out, metadata
