"""Reader for the EIA "Wholesale Electricity Market Data" LMP files.

The EIA republishes ISO real-time prices as CSV files with three title lines and a
header on line 4, e.g. "NYISO Hourly Real-Time Locational Based Marginal Prices
($/megawatt) for Zones" (hourly, 11 load zones) and "CAISO 15-Minute Real-Time
Locational Marginal Prices ($/megawatt) for Zones" (15 min, trading hubs NP-15,
SP-15, ZP-26).

Time convention: the ``UTC Timestamp (Interval Ending)`` column is the end of the
price interval; the interval start is ``UTC end - resolution`` where the resolution
is the most common step of that column (1 h NYISO, 15 min CAISO). The local
interval-beginning column (prevailing time, DST-shifting, repeated hour in
November) is only used as a cross-check: UTC start converted to local time must
equal it on every row.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata, find_gaps, infer_resolution
from traces.validate import (
    check_column,
    check_sorted_unique,
    parse_timestamps,
    read_csv_checked,
    read_text,
    reject_future,
)

FORMAT = "eia_lmp"
UTC_END_COLUMN = "UTC Timestamp (Interval Ending)"
TITLE_LINES = 3
HEADER_LINE = TITLE_LINES + 1
FIRST_DATA_LINE = HEADER_LINE + 1
MAX_ABS_LMP_USD_PER_MWH = 10_000.0
"""Prices beyond this magnitude [$/MWh] are treated as corrupt (ISO caps are lower)."""
MAX_NAN_RUN = 4
"""Longest run of empty price cells [rows] accepted inside a file."""

COMPONENTS: dict[str, str] = {
    "LMP": "lmp_usd_per_mwh",
    "(Congestion)": "congestion_usd_per_mwh",
    "(Loss)": "loss_usd_per_mwh",
    "(Energy)": "energy_usd_per_mwh",
}
"""Variable map: the suffix of an EIA value column -> canonical quantity."""

LOCAL_TIME_ZONES: dict[str, str] = {
    "Eastern Time": "America/New_York",
    "Central Time": "America/Chicago",
    "Mountain Time": "America/Denver",
    "Pacific Time": "America/Los_Angeles",
}
"""Local-time label in the EIA header -> IANA time zone (prevailing time)."""

NYISO_ZONES: dict[str, str] = {
    "A": "A - West",
    "B": "B - Genessee",
    "C": "C - Central",
    "D": "D - North",
    "E": "E - Mohawk Valley",
    "F": "F - Capital",
    "G": "G - Hudson Valley",
    "H": "H - Millwood",
    "I": "I - Dunwoodie",
    "J": "J - New York City",
    "K": "K - Long Island",
}
"""NYISO load-zone key -> the name used in the EIA header (spelling as published)."""

_VALUE_COLUMN = re.compile(r"^(?P<zone>.+?) (?P<component>LMP|\((?:Congestion|Loss|Energy)\))$")


def zone_key(zone: str) -> str:
    """Canonical key of an EIA zone name.

    ``"J - New York City"`` -> ``"J"``; ``"NP-15"`` -> ``"NP15"``.
    """
    if " - " in zone:
        return zone.split(" - ", 1)[0].strip()
    return zone.replace("-", "").replace(" ", "")


def read_eia_lmp(
    path: str | Path,
    *,
    max_abs_lmp_usd_per_mwh: float = MAX_ABS_LMP_USD_PER_MWH,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read an EIA wholesale real-time LMP file (NYISO hourly, CAISO 15-min, ...).

    Parameters
    ----------
    path
        EIA CSV: 3 title lines, header on line 4.
    max_abs_lmp_usd_per_mwh
        Largest accepted magnitude of any price column [$/MWh].
    now
        Rows stamped after this instant are rejected (default: wall clock).

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc`` (UTC interval starts, gaps not filled). Columns
        ``lmp_usd_per_mwh[Z]``, ``congestion_usd_per_mwh[Z]``, ``loss_usd_per_mwh[Z]``
        and, where published, ``energy_usd_per_mwh[Z]`` [$/MWh] for every zone key
        ``Z`` (NYISO ``A``..``K``, CAISO ``NP15``, ``SP15``, ``ZP26``).
    metadata : TraceMetadata
        ``resolution`` inferred from the file, ``gaps`` (missing intervals),
        ``extra["zones"]`` (key -> published zone name), ``extra["title"]`` and
        ``extra["local_tz"]``.

    Raises
    ------
    TraceError
        Wrong format, unparseable/duplicated/unsorted/future timestamps, a local
        timestamp that disagrees with the UTC one, non-numeric or absurd prices.
    """
    source = Path(path)
    text = read_text(source)
    lines = text.splitlines()
    title = lines[0].strip() if lines else ""
    if "," in title or "Marginal Prices" not in title:
        raise TraceError(
            source,
            f"title line {title[:60]!r} is not an EIA wholesale LMP title; expected 3 title "
            "lines like 'NYISO Hourly Real-Time Locational Based Marginal Prices ...' then "
            f"a header starting '{UTC_END_COLUMN}'",
            line=1,
        )
    frame = read_csv_checked(
        source,
        skiprows=TITLE_LINES,
        required=(UTC_END_COLUMN,),
        expected="an EIA wholesale LMP header",
        text=text,
    )
    frame.columns = [str(c).strip() for c in frame.columns]

    end = parse_timestamps(
        frame[UTC_END_COLUMN], source, UTC_END_COLUMN, first_line=FIRST_DATA_LINE
    )
    check_sorted_unique(end, source, UTC_END_COLUMN, first_line=FIRST_DATA_LINE)
    resolution = infer_resolution(end, source)
    start = pd.DatetimeIndex(end - resolution, name="interval_start_utc")
    reject_future(end, source, UTC_END_COLUMN, first_line=FIRST_DATA_LINE, now=now)

    local_tz = _check_local_begin(frame, start, source)

    values: dict[str, pd.Series] = {}
    zones: dict[str, str] = {}
    for column in frame.columns:
        match = _VALUE_COLUMN.match(column)
        if match is None:
            continue
        zone = match["zone"].strip()
        key = zone_key(zone)
        zones[key] = zone
        numeric = check_column(
            frame,
            column,
            source,
            first_line=FIRST_DATA_LINE,
            max_run=MAX_NAN_RUN,
            low=-max_abs_lmp_usd_per_mwh,
            high=max_abs_lmp_usd_per_mwh,
            what=f"|price| <= {max_abs_lmp_usd_per_mwh:,.0f} $/MWh",
        )
        values[f"{COMPONENTS[match['component']]}[{key}]"] = numeric
    if not values:
        raise TraceError(
            source,
            "no price columns; expected columns like 'J - New York City LMP' or 'NP-15 LMP'",
            line=HEADER_LINE,
        )
    out = pd.DataFrame({name: series.to_numpy() for name, series in values.items()}, index=start)
    out.index.name = "interval_start_utc"
    metadata = TraceMetadata(
        source=source,
        format=FORMAT,
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(start, resolution)),
        resolution=resolution,
        units={name: "$/MWh" for name in out.columns},
        time_convention=(
            f"source '{UTC_END_COLUMN}' is the interval end; index = end - {resolution}"
        ),
        extra={"title": title, "zones": zones, "local_tz": local_tz},
    )
    return out, metadata


def _check_local_begin(frame: pd.DataFrame, start: pd.DatetimeIndex, source: Path) -> str | None:
    """Cross-check the local interval-beginning column against the UTC start."""
    local_columns = [
        c for c in frame.columns if c.startswith("Local Timestamp") and "(Interval Beginning)" in c
    ]
    if not local_columns:
        return None
    column = local_columns[0]
    tz = next((zone for label, zone in LOCAL_TIME_ZONES.items() if label in column), None)
    if tz is None:
        return None
    local = parse_timestamps(frame[column], source, column, first_line=FIRST_DATA_LINE, utc=False)
    expected = start.tz_convert(tz).tz_localize(None)
    mismatch = np.flatnonzero(local.as_unit("ns").asi8 != expected.as_unit("ns").asi8)
    if mismatch.size:
        pos = int(mismatch[0])
        raise TraceError(
            source,
            f"local interval beginning {local[pos]} disagrees with '{UTC_END_COLUMN}' minus the "
            f"resolution; expected {expected[pos]} ({tz})",
            line=FIRST_DATA_LINE + pos,
            field=column,
        )
    return tz
