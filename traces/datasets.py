"""The real series of ``../shared/data`` on the 15-min UTC grid, by explicit rules.

Every loader takes ``data_dir`` (the ``shared/data`` folder), reads the file(s) with
the format reader, reindexes to a complete source-resolution range (missing rows
become NaN, never dropped), moves the series onto the grid with a named
:class:`~traces.grid.Resample` rule and fills gaps only by the named
:class:`~traces.grid.GapPolicy` (default ``LEAVE``: NaN stays NaN). The returned
metadata lists the grid gaps *before* filling and records the rule and policy in
``extra``.

Rules used: prices, power and carbon intensity are intensive -> ``HOLD`` (hourly
value held over its four quarter-hours; an hourly-average MW series keeps its
MWh). 5-min utilization -> ``MEAN``. Request counts per hour are rates
[requests/h] -> ``HOLD`` (the count in a 15-min interval is rate x 0.25 h).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from traces.burstgpt import DEFAULT_HOURLY_ORIGIN, read_burstgpt_hourly
from traces.eia import read_eia_lmp
from traces.eia930 import NY_INSTALLED_WIND_MW_2022, read_eia930_fuel_mix
from traces.errors import TraceError, TraceRangeError
from traces.google_power import read_google_pdus
from traces.greendcc import read_electricitymaps_carbon, read_standardized_prices
from traces.grid import (
    NYISO_DA_RELEASE,
    STEP,
    Gap,
    GapPolicy,
    Resample,
    TraceMetadata,
    fill_gaps,
    nan_runs,
    to_grid,
)

NYISO_RT_FILES: dict[int, str] = {
    2021: "nyiso_lbmp/nyiso_lmp_rt_hr_zones_2021.csv",
    2022: "nyiso_lbmp/nyiso_lmp_rt_hr_zones_2022.csv",
}
NYISO_DA_FILE = "nyiso_lbmp/US-NY-NYIS_electricity_prices_2022.csv"
NY_WIND_FILE = "wind/NYIS_NG_&_avgCI.csv"
GOOGLE_PDUS: tuple[str, ...] = tuple(f"google_power/cella_pdu{n}.csv" for n in range(6, 11))
BURSTGPT_HOURLY_FILE = "burstgpt/burstgpt_hourly.csv"
CAISO_RT_FILES: dict[int, tuple[str, ...]] = {
    2021: tuple(f"caiso_lmp/caiso_lmp_rt_15min_zones_2021Q{q}.csv" for q in range(1, 5)),
}
CAISO_CARBON_FILE = "carbon/US-CAL-CISO_2021_hourly.csv"
NY_CARBON_FILE = "carbon/US-NY-NYIS_2022_hourly.csv"
DEFAULT_MAX_GAP = 4
"""Longest run [15-min intervals] that the HOLD / INTERPOLATE gap policies fill."""


def _file(data_dir: Path, relative: str) -> Path:
    path = Path(data_dir) / relative
    if not path.is_file():
        raise TraceError(path, f"file not found; expected it under the data folder {data_dir}")
    return path


def _complete(frame: pd.DataFrame, freq: pd.Timedelta) -> pd.DataFrame:
    """Reindex to every step from the first to the last row (missing rows -> NaN)."""
    full = pd.date_range(frame.index[0], frame.index[-1], freq=freq, name="interval_start_utc")
    return frame.reindex(full)


def _grid_gaps(frame: pd.DataFrame) -> tuple[Gap, ...]:
    """Runs of grid intervals where every column is NaN."""
    missing = frame.isna().all(axis=1).to_numpy()
    if not missing.any():
        return ()
    gaps = []
    for first, length in zip(*nan_runs(missing), strict=True):
        start = frame.index[first]
        gaps.append(Gap(start=start, end=start + length * STEP, n_intervals=int(length)))
    return tuple(gaps)


def _on_grid(
    frame: pd.DataFrame,
    meta: TraceMetadata,
    rules: Resample | Mapping[str, Resample],
    *,
    gap_policy: GapPolicy,
    max_gap: int,
    name: str,
    extra: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, TraceMetadata]:
    freq = meta.resolution if meta.resolution is not None else STEP
    complete = _complete(frame, freq)
    grid = to_grid(complete, rules, source_freq=freq, source=meta.source)
    gaps = _grid_gaps(grid)
    filled = fill_gaps(grid, gap_policy, max_gap=max_gap, source=meta.source)
    rule_text = str(rules) if isinstance(rules, Resample) else {k: str(v) for k, v in rules.items()}
    out_meta = TraceMetadata(
        source=meta.source,
        format=f"{name}@15min",
        rows_read=meta.rows_read,
        rows_kept=meta.rows_kept,
        dropped=meta.dropped,
        gaps=gaps,
        resolution=STEP,
        units={c: meta.units.get(c, "") for c in filled.columns},
        time_convention=meta.time_convention,
        extra={
            **meta.extra,
            **(extra or {}),
            "source_resolution": freq,
            "resample": rule_text,
            "gap_policy": str(gap_policy),
            "max_gap": max_gap,
        },
    )
    return filled, out_meta


def _zone_columns(frame: pd.DataFrame, zones: Sequence[str] | None, source: Path) -> list[str]:
    if zones is None:
        return [c for c in frame.columns if c.startswith("lmp_usd_per_mwh[")]
    columns = []
    for zone in zones:
        column = f"lmp_usd_per_mwh[{zone}]"
        if column not in frame.columns:
            known = [c.split("[")[1].rstrip("]") for c in frame.columns if c.startswith("lmp_")]
            raise TraceError(source, f"no zone {zone!r}; expected one of {known}")
        columns.append(column)
    return columns


def nyiso_rt_lmp(
    data_dir: Path,
    year: int = 2022,
    zones: Sequence[str] | None = None,
    gap_policy: GapPolicy = GapPolicy.LEAVE,
    max_gap: int = DEFAULT_MAX_GAP,
) -> tuple[pd.DataFrame, TraceMetadata]:
    """NYISO hourly real-time zonal LMP (EIA file) on the 15-min grid.

    Parameters
    ----------
    data_dir
        The ``shared/data`` folder.
    year
        2021 or 2022.
    zones
        Zone keys ``"A"``..``"K"`` (default all 11).
    gap_policy, max_gap
        How grid gaps are filled (``max_gap`` in 15-min intervals).

    Returns
    -------
    frame : DataFrame
        ``lmp_usd_per_mwh[Z]`` [$/MWh], rule ``HOLD``, from the first interval of the
        file (local midnight of 1 January) to the end of the last.
    metadata : TraceMetadata
        ``gaps`` on the grid (2022: 53 h = 212 intervals).
    """
    if year not in NYISO_RT_FILES:
        raise TraceRangeError(f"{data_dir}: no NYISO real-time LMP file for {year}; the data "
                              f"hold the years {sorted(NYISO_RT_FILES)}")
    frame, meta = read_eia_lmp(_file(data_dir, NYISO_RT_FILES[year]))
    columns = _zone_columns(frame, zones, meta.source)
    return _on_grid(
        frame[columns],
        meta,
        Resample.HOLD,
        gap_policy=gap_policy,
        max_gap=max_gap,
        name="nyiso_rt_lmp",
    )


def nyiso_da_lmp(
    data_dir: Path, gap_policy: GapPolicy = GapPolicy.LEAVE, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[pd.DataFrame, TraceMetadata]:
    """NYISO day-ahead hourly LBMP 2022, zone CAPITL (= F), from green-dcc; ``HOLD``.

    Returns
    -------
    frame : DataFrame
        ``lmp_da_usd_per_mwh[F]`` [$/MWh] on the 15-min grid, 2022 UTC year.
    metadata : TraceMetadata
        ``extra["release"]``: :data:`traces.grid.NYISO_DA_RELEASE` (each delivery
        day published at 11:00 Eastern the day before).
    """
    frame, meta = read_standardized_prices(_file(data_dir, NYISO_DA_FILE))
    renamed = frame.rename(columns={"price_usd_per_mwh": "lmp_da_usd_per_mwh[F]"})
    meta_units = replace(meta, units={"lmp_da_usd_per_mwh[F]": "$/MWh"})
    return _on_grid(
        renamed,
        meta_units,
        Resample.HOLD,
        gap_policy=gap_policy,
        max_gap=max_gap,
        name="nyiso_da_lmp",
        extra={"zone": "F - Capital (CAPITL)", "market": "day-ahead", "release": NYISO_DA_RELEASE},
    )


def ny_wind_cf(
    data_dir: Path,
    installed_wind_mw: float = NY_INSTALLED_WIND_MW_2022,
    gap_policy: GapPolicy = GapPolicy.LEAVE,
    max_gap: int = DEFAULT_MAX_GAP,
) -> tuple[pd.DataFrame, TraceMetadata]:
    """New York wind 2022 (EIA-930 NYIS hourly) as capacity factor on the 15-min grid.

    Returns
    -------
    frame : DataFrame
        ``wind_cf`` [-] = ``wind_mw`` / ``installed_wind_mw`` and ``wind_mw`` [MW],
        rule ``HOLD`` (hourly averages; MWh conserved).
    metadata : TraceMetadata
    """
    frame, meta = read_eia930_fuel_mix(_file(data_dir, NY_WIND_FILE), installed_wind_mw)
    return _on_grid(
        frame[["wind_cf", "wind_mw"]],
        meta,
        Resample.HOLD,
        gap_policy=gap_policy,
        max_gap=max_gap,
        name="ny_wind_cf",
    )


def google_load_shape(
    data_dir: Path, gap_policy: GapPolicy = GapPolicy.LEAVE, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Google cell-a facility power shape (mean of PDUs 6-10, May 2019) on the 15-min grid.

    Returns
    -------
    frame : DataFrame
        ``power_util`` [-]: the PDU-averaged utilization as published (power / PDU
        limit), 5-min readings averaged (``MEAN``) to 15 min; ``load_shape`` [-]:
        ``power_util`` divided by its mean over the whole month, so its mean is 1
        (scale it by a facility's mean power to get MW).
    metadata : TraceMetadata
    """
    frame, meta = read_google_pdus([_file(data_dir, p) for p in GOOGLE_PDUS])
    out, out_meta = _on_grid(
        frame[["power_util"]],
        meta,
        Resample.MEAN,
        gap_policy=gap_policy,
        max_gap=max_gap,
        name="google_load_shape",
    )
    out["load_shape"] = out["power_util"] / out["power_util"].mean()
    return out, out_meta


def burstgpt_hourly_counts(
    data_dir: Path, origin: pd.Timestamp | str = DEFAULT_HOURLY_ORIGIN
) -> tuple[pd.DataFrame, TraceMetadata]:
    """BurstGPT hourly request rates placed at ``origin`` on the 15-min grid (``HOLD``).

    Returns
    -------
    frame : DataFrame
        ``requests_per_h`` (all logs), ``requests_conversation_per_h``,
        ``requests_api_per_h`` [requests/h]; a 15-min interval carries
        ``rate x 0.25 h`` requests, so the 1,429,737 total is conserved.
    metadata : TraceMetadata
    """
    frame, meta = read_burstgpt_hourly(_file(data_dir, BURSTGPT_HOURLY_FILE), origin)
    frame = frame.rename(columns={"requests_all_per_h": "requests_per_h"})
    meta = replace(meta, units={c: "requests/h" for c in frame.columns})
    return _on_grid(
        frame, meta, Resample.HOLD, gap_policy=GapPolicy.LEAVE, max_gap=0, name="burstgpt_hourly"
    )


def caiso_rt_lmp(
    data_dir: Path,
    year: int = 2021,
    zones: Sequence[str] | None = None,
    gap_policy: GapPolicy = GapPolicy.LEAVE,
    max_gap: int = DEFAULT_MAX_GAP,
) -> tuple[pd.DataFrame, TraceMetadata]:
    """CAISO 15-min real-time hub LMP (the four quarterly EIA files concatenated).

    Parameters
    ----------
    zones
        Hub keys ``"NP15"``, ``"SP15"``, ``"ZP26"`` (default all).

    Returns
    -------
    frame : DataFrame
        ``lmp_usd_per_mwh[Z]`` [$/MWh], already 15-min (no resampling).
    metadata : TraceMetadata
        Rows summed over the quarters; ``gaps`` on the grid (74 intervals in 2021).
    """
    if year not in CAISO_RT_FILES:
        raise TraceRangeError(f"{data_dir}: no CAISO real-time LMP files for {year}; the data "
                              f"hold the years {sorted(CAISO_RT_FILES)}")
    frames: list[pd.DataFrame] = []
    metas: list[TraceMetadata] = []
    for relative in CAISO_RT_FILES[year]:
        frame, meta = read_eia_lmp(_file(data_dir, relative))
        frames.append(frame[_zone_columns(frame, zones, meta.source)])
        metas.append(meta)
    for before, after, meta in zip(frames, frames[1:], metas[1:], strict=False):
        if after.index[0] <= before.index[-1]:
            raise TraceError(
                meta.source,
                f"first interval {after.index[0]} overlaps the previous quarter "
                f"(ends {before.index[-1]}); expected consecutive quarters",
            )
    joined = pd.concat(frames)
    rows = sum(m.rows_read for m in metas)
    combined = TraceMetadata(
        source=Path(data_dir) / "caiso_lmp",
        format="eia_lmp",
        rows_read=rows,
        rows_kept=rows,
        resolution=STEP,
        units={c: "$/MWh" for c in joined.columns},
        time_convention=metas[0].time_convention,
        extra={"files": [str(m.source) for m in metas], "zones": metas[0].extra["zones"]},
    )
    return _on_grid(
        joined, combined, Resample.HOLD, gap_policy=gap_policy, max_gap=max_gap, name="caiso_rt_lmp"
    )


def _carbon(
    data_dir: Path, relative: str, gap_policy: GapPolicy, max_gap: int, name: str
) -> tuple[pd.DataFrame, TraceMetadata]:
    frame, meta = read_electricitymaps_carbon(_file(data_dir, relative))
    numeric = frame.drop(columns=["estimated"])
    out, out_meta = _on_grid(
        numeric, meta, Resample.HOLD, gap_policy=gap_policy, max_gap=max_gap, name=name
    )
    held = frame["estimated"].astype(float).reindex(out.index, method="ffill", limit=3)
    out["estimated"] = held.fillna(0.0).astype(bool)
    return out, out_meta


def caiso_carbon(
    data_dir: Path, gap_policy: GapPolicy = GapPolicy.LEAVE, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Electricity Maps US-CAL-CISO 2021 hourly carbon intensity on the 15-min grid (``HOLD``).

    Returns
    -------
    frame : DataFrame
        ``carbon_gco2_per_kwh`` (direct) and ``carbon_lca_gco2_per_kwh`` [gCO2eq/kWh],
        ``low_carbon_pct``, ``renewable_pct`` [%], ``estimated`` (bool).
    metadata : TraceMetadata
    """
    return _carbon(data_dir, CAISO_CARBON_FILE, gap_policy, max_gap, "caiso_carbon")


def ny_carbon(
    data_dir: Path, gap_policy: GapPolicy = GapPolicy.LEAVE, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[pd.DataFrame, TraceMetadata]:
    """Electricity Maps US-NY-NYIS 2022 hourly carbon intensity on the 15-min grid (``HOLD``).

    Returns
    -------
    frame : DataFrame
        Same columns as :func:`caiso_carbon`.
    metadata : TraceMetadata
    """
    return _carbon(data_dir, NY_CARBON_FILE, gap_policy, max_gap, "ny_carbon")
