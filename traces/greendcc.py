"""Readers for the HPE green-dcc data files: standardized prices and Electricity Maps carbon.

Both formats stamp each hourly row with ``Datetime (UTC)``, the UTC start of the
hour (interval beginning).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata, find_gaps, infer_resolution
from traces.validate import check_column, check_times, parse_timestamps, read_csv_checked

FIRST_DATA_LINE = 2
MAX_NAN_RUN = 4
"""Longest run of empty value cells [rows] accepted."""
MAX_ABS_PRICE_USD_PER_MWH = 10_000.0
"""Prices beyond this magnitude [$/MWh] are treated as corrupt."""
MAX_CARBON_GCO2_PER_KWH = 3_000.0
"""Upper bound of a plausible grid carbon intensity [gCO2/kWh] (pure lignite ~1,200)."""

UTC_COLUMN = "Datetime (UTC)"
LOCAL_COLUMN = "Datetime (Local)"

PRICE_VARIABLES: dict[str, str] = {"Price (USD/MWh)": "price_usd_per_mwh"}
"""Variable map of the green-dcc standardized price file."""

CARBON_VARIABLES: dict[str, str] = {
    "Carbon Intensity gCO\u2082eq/kWh (direct)": "carbon_gco2_per_kwh",
    "Carbon Intensity gCO\u2082eq/kWh (LCA)": "carbon_lca_gco2_per_kwh",
    "Low Carbon Percentage": "low_carbon_pct",
    "Renewable Percentage": "renewable_pct",
    "Data Estimated": "estimated",
}
"""Variable map of the Electricity Maps hourly file (source column -> canonical)."""

_CARBON_RANGES: dict[str, tuple[float, float]] = {
    "carbon_gco2_per_kwh": (0.0, MAX_CARBON_GCO2_PER_KWH),
    "carbon_lca_gco2_per_kwh": (0.0, MAX_CARBON_GCO2_PER_KWH),
    "low_carbon_pct": (0.0, 100.0),
    "renewable_pct": (0.0, 100.0),
}


def _utc_index(
    frame: pd.DataFrame, source: Path, now: pd.Timestamp | None
) -> tuple[pd.DatetimeIndex, pd.Timedelta]:
    index = parse_timestamps(frame[UTC_COLUMN], source, UTC_COLUMN, first_line=FIRST_DATA_LINE)
    check_times(index, source, UTC_COLUMN, first_line=FIRST_DATA_LINE, now=now)
    return pd.DatetimeIndex(index, name="interval_start_utc"), infer_resolution(index, source)


def read_standardized_prices(
    path: str | Path, *, now: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read a green-dcc ``electricity_prices/standardized`` CSV (hourly day-ahead prices).

    Parameters
    ----------
    path
        CSV with ``Datetime (UTC),Datetime (Local),Price (USD/MWh)``.
    now
        Rows stamped after this instant are rejected (default: wall clock).

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc``; column ``price_usd_per_mwh`` [$/MWh].
    metadata : TraceMetadata
        ``gaps``, ``resolution`` (1 h for the shipped files).

    Raises
    ------
    TraceError
        Missing columns, bad/duplicated/unsorted/future timestamps, a local time
        that is not the same instant as the UTC one, |price| > 10,000 $/MWh.
    """
    source = Path(path)
    frame = read_csv_checked(
        source,
        required=(UTC_COLUMN, LOCAL_COLUMN, *PRICE_VARIABLES),
        expected="a green-dcc standardized price CSV",
    )
    index, resolution = _utc_index(frame, source, now)
    local = parse_timestamps(frame[LOCAL_COLUMN], source, LOCAL_COLUMN, first_line=FIRST_DATA_LINE)
    mismatch = np.flatnonzero(local.asi8 != index.asi8)
    if mismatch.size:
        pos = int(mismatch[0])
        raise TraceError(
            source,
            f"local time {frame[LOCAL_COLUMN].iloc[pos]!r} is not the same instant as "
            f"'{UTC_COLUMN}' {index[pos]}; expected an ISO time with its UTC offset",
            line=FIRST_DATA_LINE + pos,
            field=LOCAL_COLUMN,
        )
    columns: dict[str, np.ndarray] = {}
    for raw, name in PRICE_VARIABLES.items():
        values = check_column(
            frame,
            raw,
            source,
            first_line=FIRST_DATA_LINE,
            max_run=MAX_NAN_RUN,
            low=-MAX_ABS_PRICE_USD_PER_MWH,
            high=MAX_ABS_PRICE_USD_PER_MWH,
            what=f"|price| <= {MAX_ABS_PRICE_USD_PER_MWH:,.0f} $/MWh",
        )
        columns[name] = values.to_numpy()
    out = pd.DataFrame(columns, index=index)
    metadata = TraceMetadata(
        source=source,
        format="greendcc_prices",
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(index, resolution)),
        resolution=resolution,
        units={"price_usd_per_mwh": "$/MWh"},
        time_convention="'Datetime (UTC)' is the interval start",
    )
    return out, metadata


def read_electricitymaps_carbon(
    path: str | Path, *, now: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read an Electricity Maps hourly carbon-intensity CSV (as shipped in green-dcc).

    Parameters
    ----------
    path
        CSV with ``Datetime (UTC)``, ``Carbon Intensity gCO₂eq/kWh (direct)``, ...
    now
        Rows stamped after this instant are rejected (default: wall clock).

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc``. Columns ``carbon_gco2_per_kwh`` (direct,
        operational) [gCO2eq/kWh], ``carbon_lca_gco2_per_kwh`` (life-cycle)
        [gCO2eq/kWh], ``low_carbon_pct`` [%], ``renewable_pct`` [%], ``estimated``
        (bool: Electricity Maps filled the hour by estimation).
    metadata : TraceMetadata
        ``extra["zone_id"]``, ``extra["estimated_rows"]``, ``gaps``.

    Raises
    ------
    TraceError
        Missing columns, bad timestamps, values outside [0, 3000] gCO2/kWh or
        [0, 100] %, an ``estimated`` cell that is not true/false.
    """
    source = Path(path)
    frame = read_csv_checked(
        source,
        required=(UTC_COLUMN, *CARBON_VARIABLES),
        expected="an Electricity Maps hourly carbon CSV",
    )
    index, resolution = _utc_index(frame, source, now)
    columns: dict[str, np.ndarray] = {}
    for raw, name in CARBON_VARIABLES.items():
        if name == "estimated":
            columns[name] = _parse_bool(frame[raw], source, raw)
            continue
        low, high = _CARBON_RANGES[name]
        values = check_column(
            frame, raw, source, first_line=FIRST_DATA_LINE, max_run=MAX_NAN_RUN, low=low, high=high
        )
        columns[name] = values.to_numpy()
    out = pd.DataFrame(columns, index=index)
    zone: list[str] = (
        [str(z) for z in frame["Zone Id"].dropna().unique()] if "Zone Id" in frame.columns else []
    )
    metadata = TraceMetadata(
        source=source,
        format="electricitymaps_carbon",
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(index, resolution)),
        resolution=resolution,
        units={
            "carbon_gco2_per_kwh": "gCO2eq/kWh",
            "carbon_lca_gco2_per_kwh": "gCO2eq/kWh",
            "low_carbon_pct": "%",
            "renewable_pct": "%",
            "estimated": "bool",
        },
        time_convention="'Datetime (UTC)' is the interval start",
        extra={
            "zone_id": zone[0] if zone else "",
            "estimated_rows": int(out["estimated"].sum()),
        },
    )
    return out, metadata


def _parse_bool(raw: pd.Series, source: Path, field: str) -> np.ndarray:
    text = raw.astype("string").str.strip().str.lower()
    result = text.map({"true": True, "false": False})
    bad = result.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise TraceError(
            source,
            f"expected true or false, got {raw.iloc[pos]!r}",
            line=FIRST_DATA_LINE + pos,
            field=field,
        )
    return result.to_numpy(dtype=bool)
