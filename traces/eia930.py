"""Reader for EIA-930 hourly generation by fuel as shipped in HPE dc-rl (``*_NG_&_avgCI.csv``).

Columns ``timestamp, WND, SUN, WAT, OIL, NG, COL, NUC, OTH`` are hourly net
generation [MW] by EIA-930 fuel code; ``avg_CI`` is dc-rl's average carbon
intensity of the mix [gCO2/kWh]. ``timestamp`` (with ``+00:00``) is taken as the
UTC start of the hour.

Fully blank rows (timestamp only, as in ``CISO_NG_&_avgCI.csv``) are kept as NaN
rows and counted in ``metadata.extra["blank_rows"]``; they are never dropped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from traces.grid import TraceMetadata, find_gaps, infer_resolution
from traces.validate import (
    check_column,
    check_range,
    check_times,
    parse_timestamps,
    read_csv_checked,
)

FIRST_DATA_LINE = 2
TIME_COLUMN = "timestamp"
MAX_NAN_RUN = 6
"""Longest run of blank rows [h] accepted (the CISO 2022 file has isolated single blanks)."""

FUEL_VARIABLES: dict[str, str] = {
    "WND": "wind_mw",
    "SUN": "solar_mw",
    "WAT": "hydro_mw",
    "OIL": "oil_mw",
    "NG": "gas_mw",
    "COL": "coal_mw",
    "NUC": "nuclear_mw",
    "OTH": "other_mw",
    "avg_CI": "avg_ci_gco2_per_kwh",
}
"""Variable map: EIA-930 fuel code / dc-rl column -> canonical column."""

NY_INSTALLED_WIND_MW_2022 = 2192.0
"""Installed (nameplate) wind capacity in New York State in 2022 [MW].

2,192 MW, the 2022 figure of NYISO's *Load & Capacity Data* report ("Gold Book")
as quoted by the Wikipedia article "Wind power in New York" ("New York has
2,192 MW of installed wind power capacity as of 2022"). Capacity grew during the
year, so a single constant slightly overstates the capacity factor early in 2022.
The hourly maximum of the 2022 EIA-930 NYIS series is 1,869 MW (CF 0.853).
"""


def read_eia930_fuel_mix(
    path: str | Path,
    installed_wind_mw: float | None = None,
    *,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read a dc-rl EIA-930 fuel-mix CSV.

    Parameters
    ----------
    path
        CSV with ``timestamp,WND,SUN,WAT,OIL,NG,COL,NUC,OTH,avg_CI``.
    installed_wind_mw
        Installed wind capacity [MW]; when given, ``wind_cf = wind_mw /
        installed_wind_mw`` is added (e.g. :data:`NY_INSTALLED_WIND_MW_2022`).
    now
        Rows stamped after this instant are rejected (default: wall clock).

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc``; ``wind_mw``, ``solar_mw``, ``hydro_mw``,
        ``oil_mw``, ``gas_mw``, ``coal_mw``, ``nuclear_mw``, ``other_mw`` [MW],
        ``avg_ci_gco2_per_kwh`` [gCO2/kWh] and optionally ``wind_cf`` [-].
    metadata : TraceMetadata
        ``extra["blank_rows"]`` (count of all-NaN rows, kept as NaN) and
        ``extra["blank_row_times"]``.

    Raises
    ------
    TraceError
        Bad timestamps, non-numeric cells, more than ``MAX_NAN_RUN`` consecutive
        blanks, or a wind capacity factor outside [0, 1] (an hour above the
        stated installed capacity means the capacity is wrong for that file).
    """
    source = Path(path)
    frame = read_csv_checked(
        source,
        required=(TIME_COLUMN, *FUEL_VARIABLES),
        expected="a dc-rl EIA-930 fuel-mix CSV (timestamp,WND,SUN,...)",
    )
    index = parse_timestamps(frame[TIME_COLUMN], source, TIME_COLUMN, first_line=FIRST_DATA_LINE)
    check_times(index, source, TIME_COLUMN, first_line=FIRST_DATA_LINE, now=now)
    index = pd.DatetimeIndex(index, name="interval_start_utc")
    resolution = infer_resolution(index, source)

    out = pd.DataFrame(index=index)
    for raw, name in FUEL_VARIABLES.items():
        values = check_column(
            frame, raw, source, first_line=FIRST_DATA_LINE, max_run=MAX_NAN_RUN
        )
        out[name] = values.to_numpy()
    if installed_wind_mw is not None:
        if not installed_wind_mw > 0:
            raise ValueError(f"installed_wind_mw must be > 0, got {installed_wind_mw}")
        cf = out["wind_mw"] / installed_wind_mw
        check_range(
            cf,
            source,
            "WND",
            first_line=FIRST_DATA_LINE,
            low=0.0,
            high=1.0,
            what=f"wind capacity factor in [0, 1] with {installed_wind_mw:g} MW installed",
        )
        out["wind_cf"] = cf
    blank = out[list(FUEL_VARIABLES.values())].isna().all(axis=1)
    units = {name: "MW" for name in FUEL_VARIABLES.values() if name.endswith("_mw")}
    units["avg_ci_gco2_per_kwh"] = "gCO2/kWh"
    if installed_wind_mw is not None:
        units["wind_cf"] = "-"
    metadata = TraceMetadata(
        source=source,
        format="eia930_fuel_mix",
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(index, resolution)),
        resolution=resolution,
        units=units,
        time_convention="'timestamp' taken as the UTC start of the hour",
        extra={
            "blank_rows": int(blank.sum()),
            "blank_row_times": tuple(out.index[blank.to_numpy()]),
            "installed_wind_mw": installed_wind_mw,
        },
    )
    return out, metadata
