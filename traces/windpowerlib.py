"""Readers for windpowerlib example data (weather file, OEDB power curves) and a CF helper.

The weather file has two header rows (``variable_name`` and ``height`` [m]) and
hourly ISO timestamps with a ``+01:00`` offset (CET, no DST); each timestamp is
taken as the start of its hour. The data are a German site in 2010: a fallback
wind source, not New York.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traces.errors import TraceError
from traces.grid import TraceMetadata, find_gaps, infer_resolution
from traces.validate import (
    check_numeric,
    check_range,
    check_sorted_unique,
    parse_timestamps,
    read_csv_checked,
)

WEATHER_UNITS: dict[str, str] = {
    "pressure": "pa",
    "temperature": "k",
    "wind_speed": "m_per_s",
    "roughness_length": "m",
}
"""Variable map: windpowerlib variable -> unit suffix; column ``wind_speed`` at 10 m
becomes ``wind_speed_m_per_s[10m]``."""

FIRST_WEATHER_LINE = 3


def read_weather(path: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """Read a windpowerlib weather CSV (two header rows: variable_name, height).

    Parameters
    ----------
    path
        Weather CSV.

    Returns
    -------
    frame : DataFrame
        Index ``interval_start_utc``; columns ``<variable>_<unit>[<height>m]``:
        ``pressure_pa`` [Pa], ``temperature_k`` [K], ``wind_speed_m_per_s`` [m/s],
        ``roughness_length_m`` [m].
    metadata : TraceMetadata
        ``resolution``, ``gaps``, ``extra["heights_m"]``.
    """
    source = Path(path)
    frame = read_csv_checked(source, header_rows=2, expected="a windpowerlib weather CSV")
    first = frame.columns[0]
    if str(first[0]).strip() != "variable_name" or str(first[1]).strip() != "height":
        raise TraceError(
            source,
            f"header starts {first[0]!r}/{first[1]!r}; expected 2 header rows starting "
            "'variable_name' and 'height'",
            line=1,
        )
    index = parse_timestamps(frame[first], source, "variable_name", first_line=FIRST_WEATHER_LINE)
    check_sorted_unique(index, source, "variable_name", first_line=FIRST_WEATHER_LINE)
    index = pd.DatetimeIndex(index, name="interval_start_utc")
    columns: dict[str, np.ndarray] = {}
    heights: dict[str, float] = {}
    for column in frame.columns[1:]:
        variable = str(column[0]).split(".")[0].strip()
        try:
            height = float(str(column[1]).strip())
        except ValueError:
            height = float("nan")
        if not np.isfinite(height):
            raise TraceError(
                source,
                f"height {column[1]!r}; expected a finite height [m] in the second header row",
                line=2,
                field=variable,
            )
        unit = WEATHER_UNITS.get(variable)
        if unit is None:
            raise TraceError(
                source,
                f"unknown variable; expected one of {sorted(WEATHER_UNITS)}",
                line=1,
                field=variable,
            )
        name = f"{variable}_{unit}[{height:g}m]"
        flat = frame[column].rename(name).to_frame()
        values = check_numeric(flat, name, source, first_line=FIRST_WEATHER_LINE)
        if variable == "wind_speed":
            check_range(
                values,
                source,
                name,
                first_line=FIRST_WEATHER_LINE,
                low=0.0,
                high=100.0,
                what="a wind speed in [0, 100] m/s",
            )
        columns[name] = values.to_numpy()
        heights[name] = height
    out = pd.DataFrame(columns, index=index)
    resolution = infer_resolution(index, source)
    metadata = TraceMetadata(
        source=source,
        format="windpowerlib_weather",
        rows_read=len(frame),
        rows_kept=len(out),
        gaps=tuple(find_gaps(index, resolution)),
        resolution=resolution,
        units={name: name.split("_")[-1].split("[")[0] for name in out.columns},
        time_convention="timestamp (with offset) taken as the interval start",
        extra={"heights_m": heights},
    )
    return out, metadata


def read_power_curves(path: str | Path) -> pd.DataFrame:
    """Read windpowerlib's OEDB ``power_curves.csv``.

    Parameters
    ----------
    path
        CSV with ``turbine_type`` then one column per wind speed [m/s].

    Returns
    -------
    DataFrame
        Index ``turbine_type``; float columns = wind speed [m/s]; values = electrical
        power [W] (NaN where the curve has no point at that speed).
    """
    source = Path(path)
    frame = read_csv_checked(
        source, required=("turbine_type",), expected="a windpowerlib power_curves.csv"
    )
    frame = frame.set_index("turbine_type")
    speeds: list[float] = []
    for column in frame.columns:
        try:
            speeds.append(float(column))
        except ValueError:
            raise TraceError(
                source, "expected a wind speed [m/s] as column name", line=1, field=str(column)
            ) from None
    curves = pd.DataFrame(
        {
            speed: check_numeric(frame, str(col), source, first_line=2).to_numpy()
            for speed, col in zip(speeds, frame.columns, strict=True)
        },
        index=frame.index,
    )
    return curves


def read_power_curves_table(path: str | Path) -> tuple[pd.DataFrame, TraceMetadata]:
    """:func:`read_power_curves` with metadata, for :func:`traces.formats.read_any`."""
    curves = read_power_curves(path)
    metadata = TraceMetadata(
        source=Path(path),
        format="windpowerlib_power_curves",
        rows_read=len(curves),
        rows_kept=len(curves),
        units={"power": "W", "columns": "wind speed m/s"},
    )
    return curves, metadata


def capacity_factor(
    wind_speed_m_per_s: np.ndarray | pd.Series,
    turbine_type: str,
    curves: pd.DataFrame,
    *,
    nominal_power_w: float | None = None,
) -> np.ndarray:
    """Capacity factor [-] of one turbine from hub-height wind speed.

    ``cf = P(v) / P_nom`` with ``P`` linearly interpolated on the power curve's
    defined points; speeds below the first or above the last point (cut-out) give 0.

    Parameters
    ----------
    wind_speed_m_per_s
        Hub-height wind speed [m/s].
    turbine_type
        Row of ``curves``, e.g. ``"E-101/3050"``.
    curves
        From :func:`read_power_curves`.
    nominal_power_w
        Rated power [W]; default the curve maximum.

    Returns
    -------
    ndarray
        Capacity factor in [0, 1].
    """
    if turbine_type not in curves.index:
        raise KeyError(f"turbine type {turbine_type!r} not in power curves")
    curve = curves.loc[turbine_type].dropna()
    speed = curve.index.to_numpy(dtype=float)
    power = curve.to_numpy(dtype=float)
    rated = float(power.max()) if nominal_power_w is None else float(nominal_power_w)
    if rated <= 0:
        raise ValueError(f"turbine {turbine_type!r}: nominal power must be > 0")
    if power.max() > rated * (1 + 1e-9) or power.min() < 0:
        raise ValueError(
            f"turbine {turbine_type!r}: power curve outside [0, {rated:g}] W; "
            "expected 0 <= P(v) <= nominal power"
        )
    v = np.asarray(wind_speed_m_per_s, dtype=float)
    result: np.ndarray = np.interp(v, speed, power, left=0.0, right=0.0) / rated
    return result
