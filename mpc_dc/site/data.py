"""The run's exogenous data for the one site model: per campus node and zone, real or synthetic.

:func:`check_data` reads (``data.source = "real"``) or generates (``"synthetic"``)
every series a scenario needs over history + run + tail (the tail is one
controller horizon after the run: forecasts and the Oracle look there, the plant
never does) and refuses, with one line naming the scenario key, what a run would
refuse; ``mpc-dc scenario check`` calls it. :func:`build_site_exogenous` starts
with it and adds the LLM requests and their demand truth, giving the run's
:class:`~mpc_dc.sim.exogenous.SiteExogenous`.

Series per campus (frame column names carry the campus name ``C``)
-----------------------------------------------------------------
``price_usd_per_mwh[C]`` [$/MWh]
    The market price the campus tariff is built on, at its ``price_node``. Real:
    NYISO zones ``A``..``K`` (or their NYISO names, :data:`NYISO_ZONE_NAMES`):
    hourly real-time LMP (EIA files, every year the period touches) under the
    wholesale tariff, day-ahead LMP (zone F, CAPITL, 2022) under the retail tariff;
    CAISO hubs (:data:`CAISO_HUBS`): 15-min real-time LMP 2021 (gaps of up to 1 h
    interpolated), wholesale only. Synthetic: the calibrated LMP model
    (:func:`traces.synthetic.synth_lmp`), one seeded series per distinct node
    (:func:`synthetic_prices`); the node is a label there.
``carbon_gco2_per_kwh[C]`` [gCO2/kWh]
    Real: the Electricity Maps hourly file of the campus ``carbon_zone``
    (:data:`CARBON_SOURCES`). Synthetic: the zone's mean profile by local hour
    (:data:`SYNTHETIC_CARBON`) times seeded hourly noise (:func:`synthetic_carbon`).
``renewable_cf[C]`` [-] (campuses with a renewable block)
    ``real``: New York system wind 2022 (EIA-930 NYIS, ÷ installed capacity,
    clipped to [0, 1]); NYISO nodes only. ``windpowerlib``: the windpowerlib
    example weather (a German site, 2010) through a turbine power curve, moved by
    whole years onto the run's calendar (:func:`windpowerlib_cf`). ``synthetic``:
    :func:`traces.synthetic.synth_wind_cf`.
``workload_wu[C]`` [WU per interval] (campuses with other IT)
    ``W = Δ · F(u · P_max)`` of a utilisation shape ``u``: ``real``, Google
    powerdata_2019 cell a placed by :func:`align_google` (local midnight of the
    run start's day in ``run.local_tz``); ``synthetic``,
    :func:`traces.synthetic.synth_load`.
``dr_event[C]`` [0/1]
    DR event intervals (``[dr]`` days and hours, local time ``run.local_tz``).
``gpus_available[C]`` [GPUs] (campuses with an ``[[outages]]`` entry)
    The campus's GPUs, fewer during each outage (known ahead, as the DR events).

Per model ``M`` (with a ``[fleet]``): ``tokens_per_s[M]`` [tokens/s] (response
tokens arriving in the interval / 900 s) and ``requests_per_h[M]`` [requests/h],
the demand truth of history + run + tail from the requests themselves; and the mean
prompt and response lengths of each model's history requests
(:attr:`~mpc_dc.sim.exogenous.SiteExogenous.request_mix`: the workload a planner
sizes its instances on, :func:`mpc_dc.sim.serving.workload_capacity`).

Seeds: the synthetic series of campus ``i`` (prices: of the first campus with its
node) use the run seed ``+ 17 i``; carbon is seeded by run seed and zone (so a
one-campus site draws what the RCDC scenario of the schemas before drew, and a fleet
what the fleet scenario drew).

Requests: the calibrated generator (``synthetic``) or BurstGPT (``burstgpt``),
placed with its day 0, hour 0 at the run start (:func:`request_stream`); the
history before it comes from the generator's ``conversation`` stream, drawn on its
calibration's clock (:func:`calibration_clock`); the tail on
a seed of its own, so the run's requests do not depend on the horizon.

Gaps: a source must cover history + run + tail; inside that span missing
intervals are refused in the run and the tail and left NaN in the history
(forecasters treat them as unobserved) — :func:`require_coverage`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
import pandas as pd

from mpc_dc.sim.arrivals import (
    STEP_S,
    ArrivalConfig,
    ArrivalStats,
    RequestArrays,
    build_arrivals,
)
from mpc_dc.sim.bursts import window_late_share
from mpc_dc.sim.exogenous import SiteExogenous
from mpc_dc.sim.serving import RequestMix
from mpc_dc.site.config import Campus, OtherIT
from traces.burstgpt import DEFAULT_HOURLY_ORIGIN
from traces.datasets import caiso_carbon, ny_carbon
from traces.eia import NYISO_ZONES
from traces.errors import ConfigError
from traces.grid import (
    STEP,
    STEPS_PER_DAY,
    GapPolicy,
    Publication,
    TraceMetadata,
    fill_gaps,
    nan_runs,
)

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from mpc_dc.site.scenario import Scenario

SOURCE = "<scenario>"
"""Placeholder source of the errors raised before the scenario's file is known;
:func:`errors_name` replaces it with the file."""

# ----------------------------------------------------------------------------- registries

NYISO_ZONE_NAMES: Mapping[str, str] = {
    "WEST": "A", "GENESE": "B", "CENTRL": "C", "NORTH": "D", "MHK VL": "E", "CAPITL": "F",
    "HUD VL": "G", "MILLWD": "H", "DUNWOD": "I", "N.Y.C.": "J", "LONGIL": "K",
}
"""NYISO's own zone names → the zone letter (a ``price_node`` may be either)."""

NYISO_DA_ZONES: tuple[str, ...] = ("F",)
"""NYISO zones with day-ahead prices in the data (the retail tariff's price)."""

CAISO_HUBS: tuple[str, ...] = ("NP15", "SP15", "ZP26")
"""CAISO price nodes: the hubs of the CAISO 2021 RT files."""

CAISO_YEAR = 2021
"""Year of the CAISO RT price files (:data:`traces.datasets.CAISO_RT_FILES`)."""

CARBON_SOURCES: Mapping[str, Callable[[Path], tuple[pd.DataFrame, TraceMetadata]]] = {
    "US-CAL-CISO": caiso_carbon,
    "US-NY-NYIS": ny_carbon,
}
"""Carbon zones of real data and the reader of each zone's Electricity Maps hourly file
(US-CAL-CISO 2021, US-NY-NYIS 2022; the file must cover history + run + tail)."""

BURSTGPT_FIRST400_FILE = "burstgpt/burstgpt_v1_first400.csv"
"""The first 400 BurstGPT v1 request rows (trace seconds 5 to 37,274)."""

HISTORY_COUNT_STREAMS: tuple[str, ...] = ("conversation",)
"""Calibrated count streams of the request history before BurstGPT's day 0 (BurstGPT's
first week is conversation traffic; docs/fleet_closed_loop.md)."""

WINDPOWERLIB_WEATHER_FILE = "wind/windpowerlib/weather.csv"
WINDPOWERLIB_CURVES_FILE = "wind/windpowerlib/power_curves.csv"
WINDPOWERLIB_SPEED_COLUMN = "wind_speed_m_per_s[80m]"
"""Hub-height wind speed of the windpowerlib weather file (its highest level)."""

SEED_STRIDE = 17
"""Synthetic series of campus ``i`` use the run seed + ``SEED_STRIDE × i``."""


@dataclass(frozen=True)
class SyntheticCarbonZone:
    """Synthetic carbon intensity of one zone.

    Parameters
    ----------
    tz : str
        The zone's clock (its daily profile is read on it).
    hour_profile_gco2_per_kwh : tuple of float [gCO2/kWh]
        Mean intensity by local hour 0..23 of the zone's Electricity Maps file
        (:data:`CARBON_SOURCES`), rounded to 1 gCO2/kWh (``carbon_hour_profile`` of
        tests/test_fleet_sources.py recomputes it).
    """

    tz: str
    hour_profile_gco2_per_kwh: tuple[float, ...]


SYNTHETIC_CARBON: Mapping[str, SyntheticCarbonZone] = {
    # carbon_hour_profile(data_dir, "US-CAL-CISO"): US-CAL-CISO 2021, solar dip at noon.
    "US-CAL-CISO": SyntheticCarbonZone("America/Los_Angeles", (
        245, 243, 242, 243, 244, 244, 238, 212, 171, 150, 142, 140,
        139, 141, 145, 157, 178, 200, 222, 238, 243, 246, 249, 247)),
    # carbon_hour_profile(data_dir, "US-NY-NYIS"): US-NY-NYIS 2022, evening peak.
    "US-NY-NYIS": SyntheticCarbonZone("America/New_York", (
        207, 205, 203, 202, 203, 205, 209, 212, 215, 216, 214, 214,
        214, 214, 214, 217, 220, 223, 225, 226, 224, 221, 215, 212)),
}
"""Carbon zones of synthetic data (tests/test_fleet_sources.py recomputes the
profiles from the files)."""


@dataclass(frozen=True)
class PriceNode:
    """Where a campus price comes from with real data.

    Attributes
    ----------
    market : {"nyiso", "caiso"}
    key : str
        NYISO zone letter or CAISO hub.
    """

    market: Literal["nyiso", "caiso"]
    key: str


def price_node(node: str) -> PriceNode | None:
    """The market and key of a ``price_node`` (None: no real series has it)."""
    if node in NYISO_ZONES:
        return PriceNode("nyiso", node)
    if node in NYISO_ZONE_NAMES:
        return PriceNode("nyiso", NYISO_ZONE_NAMES[node])
    if node in CAISO_HUBS:
        return PriceNode("caiso", node)
    return None



# ----------------------------------------------------------------------------- errors


@contextmanager
def errors_name(source: str | Path, placeholders: Collection[str] = (SOURCE,)) -> Iterator[None]:
    """A :class:`ConfigError` raised in the block with a placeholder source (checks that
    need more than the table: the data, overrides) names ``source`` (the file) instead."""
    try:
        yield
    except ConfigError as err:
        if str(err.source) in placeholders:
            raise ConfigError(source, err.message, key=err.key) from None
        raise


def data_folder(configured: str | Path, key: str, reason: str) -> Path:
    """The public data folder: ``MPC_DC_DATA`` when set, else ``configured``; it must exist.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`) naming ``key`` when the folder does not exist;
        ``reason`` says what reads it.
    """
    path = Path(os.environ.get("MPC_DC_DATA") or configured)
    if not path.is_dir():
        raise ConfigError(SOURCE, f"data folder {path} not found; {reason} reads it (or set "
                          "MPC_DC_DATA)", key=key)
    return path


def _span(index: pd.DatetimeIndex) -> str:
    """``first to end`` of a grid [UTC], the end being the last interval's end."""
    return f"{index[0]:%Y-%m-%d %H:%M} to {index[-1] + STEP:%Y-%m-%d %H:%M} UTC"


def require_coverage(series: pd.Series, index: pd.DatetimeIndex, what: str, key: str, *,
                     history_steps: int = 0, max_gap_steps: int = 0) -> np.ndarray:
    """``series`` (a source on the 15-min grid) on ``index`` [its unit].

    The source must span ``index`` (history + run + tail); inside it, missing
    intervals are refused after the first ``history_steps`` (the history, where
    they stay NaN: forecasters treat them as unobserved), except when every run of
    them is at most ``max_gap_steps`` [15-min intervals] long: then they are
    interpolated (with a warning). Only the DR programme's lead-in
    (:func:`mpc_dc.runner.with_meter_history`), a stand-in for the meter history
    that is never settled, passes ``max_gap_steps > 0``: it runs on data whose short
    gaps the reported run refuses.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`) naming ``key``: what the source covers and what is
        needed, or where its gap is.
    """
    on_grid = series.reindex(index)
    missing = on_grid.isna().to_numpy()
    have = pd.DatetimeIndex(series.dropna().index)
    if not len(have) or have[0] > index[0] or have[-1] < index[-1]:
        covers = _span(have) if len(have) else "nothing"
        raise ConfigError(SOURCE, f"{what} covers {covers}; history + run + horizon need "
                          f"{_span(index)} ({int(missing.sum())} intervals missing)", key=key)
    gaps = missing[history_steps:]
    if gaps.any() and 0 < nan_runs(gaps)[1].max() <= max_gap_steps:
        first = index[history_steps + int(np.argmax(gaps))]
        logger.warning("%s misses %d intervals of the run + horizon (first at %s UTC); "
                       "interpolated (gaps of at most %d intervals bridged)", what,
                       int(gaps.sum()), f"{first:%Y-%m-%d %H:%M}", max_gap_steps)
        filled = fill_gaps(on_grid.iloc[history_steps:].to_frame(), GapPolicy.INTERPOLATE,
                           max_gap=max_gap_steps, source=what)
        on_grid = pd.concat([on_grid.iloc[:history_steps], filled.iloc[:, 0]])
        gaps = np.zeros_like(gaps)
    if gaps.any():
        first = index[history_steps + int(np.argmax(gaps))]
        part = "run + horizon" if history_steps else "history + run + horizon"
        raise ConfigError(SOURCE, f"{what} misses {int(gaps.sum())} intervals of the {part} "
                          f"(first at {first:%Y-%m-%d %H:%M} UTC); choose a period without "
                          "gaps", key=key)
    return on_grid.to_numpy(dtype=float)


# ----------------------------------------------------------------------------- synthetic


def _synthetic_span(index: pd.DatetimeIndex) -> tuple[pd.Timestamp, int]:
    """First UTC midnight and whole days the generator draws to cover ``index``."""
    return index[0].floor("D"), math.ceil(len(index) / STEPS_PER_DAY) + 1


def synthetic_prices(nodes: Sequence[str], seed: int, index: pd.DatetimeIndex
                     ) -> dict[str, np.ndarray]:
    """One seeded series of the calibrated LMP model per distinct node [$/MWh].

    ``nodes`` are the campuses' nodes in site order; node ``n`` takes the seed
    ``seed + 17 i`` of the first campus ``i`` at it.
    """
    from traces import synthetic

    day0, days = _synthetic_span(index)
    prices: dict[str, np.ndarray] = {}
    for i, node in enumerate(nodes):
        if node not in prices:
            lmp = synthetic.synth_lmp(day0, days, seed + SEED_STRIDE * i)
            prices[node] = lmp.iloc[:, 0].reindex(index).to_numpy(dtype=float)
    return prices


def synthetic_carbon(zones: Sequence[str], seed: int, index: pd.DatetimeIndex
                     ) -> dict[str, np.ndarray]:
    """Per zone: its :data:`SYNTHETIC_CARBON` profile on its clock × hourly noise
    U(0.95, 1.05), seeded by ``seed`` and the zone [gCO2/kWh]."""
    hours, position = np.unique(np.asarray(index.floor("h")), return_inverse=True)
    carbon: dict[str, np.ndarray] = {}
    for zone in zones:
        if zone in carbon:
            continue
        spec = SYNTHETIC_CARBON[zone]
        profile = np.asarray(spec.hour_profile_gco2_per_kwh, dtype=float)
        local_hour = np.asarray(index.tz_convert(spec.tz).hour)
        rng = np.random.default_rng(np.random.SeedSequence(
            [seed, 23, list(SYNTHETIC_CARBON).index(zone)]))
        noise = 1.0 + 0.05 * rng.uniform(-1.0, 1.0, hours.size)
        carbon[zone] = profile[local_hour] * noise[position]
    return carbon


def _synthetic_wind_cf(seed: int, index: pd.DatetimeIndex) -> np.ndarray:
    """The calibrated NY wind capacity-factor model on ``index`` [-]."""
    from traces import synthetic

    day0, days = _synthetic_span(index)
    return synthetic.synth_wind_cf(day0, days, seed)["wind_cf"].reindex(index).to_numpy()


def _synthetic_utilisation(seed: int, index: pd.DatetimeIndex) -> np.ndarray:
    """The calibrated data-center utilisation model on ``index`` [-]."""
    from traces import synthetic

    day0, days = _synthetic_span(index)
    return synthetic.synth_load(day0, days, seed)["power_util"].reindex(index).to_numpy()


# ----------------------------------------------------------------------------- real


_Read = TypeVar("_Read")


class DataFiles:
    """Data files read once: each reader's result by reader and arguments.

    :func:`check_data` of two scenarios on the same data given one ``DataFiles`` (a run
    and its DR lead-in, :func:`mpc_dc.runner.with_meter_history`) reads each file once;
    the second only places the series on its own grid. The frames are shared, so no
    caller modifies one (every series is reindexed onto the run's grid, a copy).

    Attributes
    ----------
    reads : int
        Reader calls made (files read), not counting the ones answered from memory.
    """

    def __init__(self) -> None:
        self._results: dict[tuple[object, ...], object] = {}
        self.reads = 0

    def read(self, reader: Callable[..., _Read], *args: Any, **kwargs: Any) -> _Read:
        """``reader(*args, **kwargs)``, called on the first request only; the arguments
        must be hashable (a reader's folder, year, zones as a tuple)."""
        key = (reader, args, tuple(sorted(kwargs.items())))
        if key not in self._results:
            self._results[key] = reader(*args, **kwargs)
            self.reads += 1
        return cast(_Read, self._results[key])


def caiso_prices(nodes: Sequence[str], data_dir: Path, index: pd.DatetimeIndex, *,
                 history_steps: int = 0, max_gap_steps: int = 0,
                 files: DataFiles | None = None
                 ) -> tuple[dict[str, np.ndarray], Publication]:
    """CAISO RT LMP at each hub in ``nodes`` [$/MWh] (gaps of up to 1 h interpolated),
    and when it is observable (the reader's metadata); ``history_steps`` and
    ``max_gap_steps`` as :func:`require_coverage`'s; the file read through ``files``
    when given."""
    from traces.datasets import caiso_rt_lmp

    lmp, meta = (files or DataFiles()).read(caiso_rt_lmp, data_dir, CAISO_YEAR,
                                            gap_policy=GapPolicy.INTERPOLATE)
    prices: dict[str, np.ndarray] = {}
    for node in nodes:
        if node not in prices:
            prices[node] = require_coverage(
                lmp[f"lmp_usd_per_mwh[{node}]"], index,
                f"CAISO RT prices at {node} ({meta.source})", "run.start",
                history_steps=history_steps, max_gap_steps=max_gap_steps)
    return prices, meta.publication


def real_carbon(zones: Sequence[str], keys: Sequence[str], data_dir: Path,
                index: pd.DatetimeIndex, *, history_steps: int = 0, max_gap_steps: int = 0,
                files: DataFiles | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, Publication]]:
    """Each zone's Electricity Maps carbon intensity [gCO2/kWh] and when it is observable.

    ``keys[i]`` is the scenario key named when zone ``zones[i]`` does not cover
    ``index``; ``history_steps`` and ``max_gap_steps`` as :func:`require_coverage`'s;
    the files read through ``files`` when given.
    """
    files = files or DataFiles()
    carbon: dict[str, np.ndarray] = {}
    publication: dict[str, Publication] = {}
    for zone, key in zip(zones, keys, strict=True):
        if zone in carbon:
            continue
        frame, meta = files.read(CARBON_SOURCES[zone], data_dir)
        carbon[zone] = require_coverage(frame["carbon_gco2_per_kwh"], index,
                                        f"{zone} carbon intensity ({meta.source})", key,
                                        history_steps=history_steps,
                                        max_gap_steps=max_gap_steps)
        publication[zone] = meta.publication
    return carbon, publication


def _nyiso_rt(data_dir: Path, zones: Sequence[str], index: pd.DatetimeIndex,
              files: DataFiles) -> tuple[pd.DataFrame, TraceMetadata]:
    """NYISO RT LMP of ``zones`` from every yearly file the span of ``index`` touches."""
    from traces.datasets import NYISO_RT_FILES, nyiso_rt_lmp

    years = [y for y in range(index[0].year, index[-1].year + 1) if y in NYISO_RT_FILES]
    # A span outside every file still reads one, so the coverage error names it.
    years = years or [min(NYISO_RT_FILES, key=lambda y: abs(y - index[0].year))]
    parts = [files.read(nyiso_rt_lmp, data_dir, year=y, zones=tuple(sorted(set(zones))))
             for y in years]
    frame = pd.concat([p[0] for p in parts])
    return frame[~frame.index.duplicated(keep="first")].sort_index(), parts[0][1]


def windpowerlib_cf(data_dir: Path, turbine_type: str, index: pd.DatetimeIndex,
                    files: DataFiles | None = None) -> tuple[pd.Series, TraceMetadata]:
    """Capacity factor [-] of ``turbine_type`` in the windpowerlib example weather.

    The hub-height (80 m) wind speed of ``wind/windpowerlib/weather.csv`` (a German
    site, 2010, hourly) through the turbine's OEDB power curve
    (:func:`traces.windpowerlib.capacity_factor`); the file's year is moved by whole
    years onto every year ``index`` touches (same month, day and UTC hour; a 29
    February has no value), and each hourly value is held over its quarters
    (``HOLD``, as the readers put hourly series on the grid).

    The files are read through ``files`` when given.

    Raises
    ------
    KeyError
        ``turbine_type`` is not a row of the power curves.
    """
    from traces.windpowerlib import capacity_factor, read_power_curves, read_weather

    files = files or DataFiles()
    weather, meta = files.read(read_weather, Path(data_dir) / WINDPOWERLIB_WEATHER_FILE)
    curves = files.read(read_power_curves, Path(data_dir) / WINDPOWERLIB_CURVES_FILE)
    cf = pd.Series(capacity_factor(weather[WINDPOWERLIB_SPEED_COLUMN], turbine_type, curves),
                   index=weather.index)
    year0 = int(cf.index[len(cf) // 2].year)
    moved = [cf.set_axis(pd.DatetimeIndex(cf.index + pd.DateOffset(years=y - year0)))
             for y in range(index[0].year - 1, index[-1].year + 2)]
    hourly = pd.concat(moved)
    hourly = hourly[~hourly.index.duplicated(keep="first")].sort_index()
    full = pd.date_range(hourly.index[0], hourly.index[-1] + 3 * STEP, freq=STEP,
                         name="interval_start_utc")
    return hourly.reindex(full, method="ffill", limit=3, tolerance=pd.Timedelta(hours=1)), meta


def align_google(shape: pd.DataFrame, index: pd.DatetimeIndex,
                 start: pd.Timestamp | None = None, tz: str = "America/New_York") -> np.ndarray:
    """Google utilisation placed on ``index`` by local time of day and day number.

    Google's trace starts at local (Pacific) midnight; interval k of it is put on
    the local (``tz``) midnight of ``start``'s day plus k intervals, wrapping
    around the 31-day trace (intervals before that midnight take the trace's end).

    Parameters
    ----------
    shape : DataFrame
        Column ``power_util`` [-] on the trace's 15-min grid.
    index : DatetimeIndex (UTC interval starts)
    start : Timestamp, optional
        The run (or study) start: the placement depends on it only, not on how much
        history ``index`` carries before it. Default ``index[0]``.
    tz : str
        The clock whose midnight the trace starts at.
    """
    util = shape["power_util"].to_numpy(dtype=float)
    anchor = index[0] if start is None else start
    local_start = anchor.tz_convert(tz).normalize()
    offset = int((index[0] - local_start.tz_convert("UTC")) / pd.Timedelta(minutes=15))
    positions = (np.arange(len(index)) + offset) % util.size
    return util[positions]


def work_from_utilisation(utilisation: np.ndarray, other_it: OtherIT) -> np.ndarray:
    """Work per interval [WU] of other IT running at utilisation ``u`` [-] of its capacity.

    ``W = Δ · F(u · P_max)``: the work it would do running the observed profile.
    """
    cap = other_it.it_capacity_mw
    it_mw = np.clip(np.asarray(utilisation, dtype=float), 0.0, 1.0) * cap
    return 0.25 * other_it.processing.rate_wu_per_h(it_mw, cap)


# ----------------------------------------------------------------------------- requests


def derived_stream(arrival: ArrivalConfig, tag: int) -> ArrivalConfig:
    """``arrival`` with a seed of its own for one part of the requests (101: the
    tail after the run; 102: the history before BurstGPT's day 0)."""
    seed = int(np.random.SeedSequence([arrival.seed, tag]).generate_state(1)[0])
    return replace(arrival, seed=seed)


def concat_requests(first: RequestArrays, then: RequestArrays, at_s: float,
                    stats: ArrivalStats | None = None) -> RequestArrays:
    """``first`` followed by ``then`` shifted by ``at_s`` [s]; arrival ``stats``
    (default ``first``'s)."""
    return RequestArrays(
        np.concatenate([first.arrival_s, then.arrival_s + at_s]),
        np.concatenate([first.model, then.model]),
        np.concatenate([first.request_tokens, then.request_tokens]),
        np.concatenate([first.response_tokens, then.response_tokens]),
        np.concatenate([first.source, then.source]),
        first.models, first.stats if stats is None else stats)


def window_requests(req: RequestArrays, from_s: float, length_s: float) -> RequestArrays:
    """Requests in ``[from_s, from_s + length_s)``, re-timed to start at 0.

    Copies: a slice would keep ``req``'s arrays alive for as long as the window lives,
    i.e. the history's and the tail's requests through the whole simulation (21 B a
    request; on a lead-in whose 24-h tail is a BurstGPT burst day, 40 M of them).
    """
    lo, hi = np.searchsorted(req.arrival_s, [from_s, from_s + length_s], side="left")
    sl = slice(int(lo), int(hi))
    return RequestArrays(req.arrival_s[sl] - from_s, req.model[sl].copy(),
                         req.request_tokens[sl].copy(), req.response_tokens[sl].copy(),
                         req.source[sl].copy(), req.models, req.stats)


def burstgpt_counts(data_dir: Path, run_start: pd.Timestamp, ahead: pd.DatetimeIndex,
                    first_day: int = 0, files: DataFiles | None = None) -> pd.DataFrame:
    """BurstGPT's real hourly request rates, its day ``first_day``, hour 0 at ``run_start``
    (day 0 as the DR study places it; negative: day 0 that many days after it);
    ``ahead`` (run + tail from BurstGPT's day 0 on) must lie inside them. The file is
    read through ``files`` when given.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`, key ``run.days``) when run + tail go beyond its 61 days.
    """
    from traces.datasets import burstgpt_hourly_counts

    origin = run_start - pd.Timedelta(days=first_day)
    counts, meta = (files or DataFiles()).read(burstgpt_hourly_counts, data_dir,
                                               origin=origin)
    rate = counts["requests_per_h"].reindex(ahead)
    if rate.isna().any():
        days = len(counts) / STEPS_PER_DAY - first_day
        need = (ahead[-1] - run_start) / pd.Timedelta(days=1) + 1 / STEPS_PER_DAY
        raise ConfigError(SOURCE, f"BurstGPT ({meta.source}) has {days:g} days of hourly "
                          f"counts from the run start (its day {first_day}); run + horizon "
                          f"need {need:g}", key="run.days")
    return counts


def burstgpt_rows(data_dir: Path, files: DataFiles | None = None) -> pd.DataFrame:
    """BurstGPT's first request rows (both row policies ``KEEP``), to replay from day 0
    (the file read through ``files`` when given)."""
    from traces.burstgpt import read_burstgpt_requests

    rows, _ = (files or DataFiles()).read(read_burstgpt_requests,
                                          Path(data_dir) / BURSTGPT_FIRST400_FILE)
    return rows.reset_index(drop=True)


def trace_delay_steps(first_day: int) -> int:
    """Intervals [-] from the run start to BurstGPT's day 0 when ``first_day`` (its day
    at the run start) is negative, i.e. the trace starts ``-first_day`` days into the
    run; else 0."""
    return max(0, -first_day) * STEPS_PER_DAY


def calibration_clock(at: pd.Timestamp, day0: pd.Timestamp) -> pd.Timestamp:
    """The instant [UTC] of the request generator's calibration that stands where ``at``
    stands to BurstGPT's day 0 placed at ``day0``: as far before (or after) a whole
    number of weeks from :data:`~traces.burstgpt.DEFAULT_HOURLY_ORIGIN`, in [0, 7) days
    after it.

    The generator's request profiles (hour of day, weekday) are fitted with BurstGPT's
    day 0 at that origin (midnight, Friday 2022-04-01, New York; no DST change in the
    following seven months) and read on its clock (:func:`traces.calibrate.fit_requests`).
    Generated from this instant, a stream keeps BurstGPT's hours and weekdays where the
    run places them, whatever ``day0``'s time zone or weekday: drawn on the run's own
    clock it would put them where the calibration did (``dr_caiso``: 3 h early and
    three weekdays late, so the pre-run conversation stream peaked at 13:00
    Pacific where BurstGPT peaks at 15:00, and had its quiet days on Monday-Tuesday).
    """
    week = pd.Timedelta(days=7)
    return DEFAULT_HOURLY_ORIGIN.tz_convert("UTC") + (at - day0) % week


def burstgpt_arrivals(index: pd.DatetimeIndex, pre_steps: int, arrival: ArrivalConfig,
                      counts: pd.DataFrame, rows: pd.DataFrame | None,
                      models: tuple[str, ...]) -> RequestArrays:
    """BurstGPT's requests over ``index`` (history + run): its first ``pre_steps``
    intervals (the history, and the run's days before BurstGPT's day 0 when it starts
    later) from the generator's calibrated conversation stream, the site's ordinary
    pre-run workload (nothing of BurstGPT precedes its day 0); from there the real
    ``rows`` (None: none) and the generator on ``counts``."""
    pre_s = min(pre_steps, len(index)) * STEP_S
    parts = []
    if pre_s > 0:
        # Generated on the calibration's clock, where its profiles place BurstGPT's hours.
        day0 = index[0] + pd.Timedelta(seconds=pre_steps * STEP_S)
        parts.append(build_arrivals(calibration_clock(index[0], day0), pre_s,
                                    derived_stream(arrival, 102), models=models,
                                    count_streams=HISTORY_COUNT_STREAMS))
    if pre_s < len(index) * STEP_S:
        parts.append(build_arrivals(index[0] + pd.Timedelta(seconds=pre_s),
                                    len(index) * STEP_S - pre_s, arrival, trace=rows,
                                    hourly_counts=counts, models=models))
    if len(parts) == 1:
        return parts[0]
    return concat_requests(parts[0], parts[1], pre_s, stats=parts[1].stats)


def request_stream(index: pd.DatetimeIndex, history_steps: int, run_steps: int,
                   arrival: ArrivalConfig, models: tuple[str, ...], *,
                   counts: pd.DataFrame | None = None, rows: pd.DataFrame | None = None,
                   trace_delay: int = 0) -> RequestArrays:
    """Every request of history + run + tail (``index``), seconds from ``index[0]``.

    History + run come from the generator, or from BurstGPT when ``counts`` are
    given (its first request ``rows`` too when given, :func:`burstgpt_arrivals`;
    BurstGPT's day 0 ``trace_delay`` intervals after the run start,
    :func:`trace_delay_steps`); the
    tail (seen only by forecasts and the Oracle) on its own seed, so the run's
    requests do not depend on the horizon (a horizon sweep compares controllers on one
    request stream).
    """
    upto = history_steps + run_steps
    upto_s = upto * STEP_S
    tail = build_arrivals(index[upto], (len(index) - upto) * STEP_S,
                          derived_stream(arrival, 101), models=models, hourly_counts=counts)
    if counts is None:
        first = build_arrivals(index[0], upto_s, arrival, models=models)
    else:
        first = burstgpt_arrivals(index[:upto], history_steps + trace_delay, arrival,
                                  counts, rows, models)
    return concat_requests(first, tail, upto_s)


# ----------------------------------------------------------------------------- DR


def dr_event_flags(index: pd.DatetimeIndex, days: Sequence[str], start_hour: int,
                   end_hour: int, tz: str) -> np.ndarray:
    """1.0 in the intervals of ``index`` on local (``tz``) ``days`` in hours
    ``[start_hour, end_hour)``, else 0.0 [-]."""
    local = index.tz_convert(tz)
    day = local.tz_localize(None).normalize()
    wanted = pd.DatetimeIndex([pd.Timestamp(d) for d in days])
    hour = np.asarray(local.hour)
    on = np.asarray(day.isin(wanted)) & (hour >= start_hour) & (hour < end_hour)
    return on.astype(float)


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class SiteSources:
    """A scenario's exogenous series over history + run + tail, before the requests.

    Attributes
    ----------
    index : DatetimeIndex
        The 15-min UTC grid of history + run + tail.
    history_steps, run_steps : int
        Intervals of the history and of the run (the tail is the rest).
    columns : dict[str, ndarray]
        Frame columns (module docstring) except the request truth.
    publication : dict[str, Publication]
        When each column is observable (the readers' metadata; the generator's
        hourly series at the end of their hour); absent for the DR event flags.
    origin : dict[str, str]
        Where each column comes from (for ``scenario check`` and logs).
    counts, rows : DataFrame or None
        BurstGPT's hourly rates placed with ``workload.requests.first_day`` at the run
        start, and its first request rows when its day 0 is in the run (requests from
        BurstGPT only).
    """

    index: pd.DatetimeIndex
    history_steps: int
    run_steps: int
    columns: dict[str, np.ndarray]
    publication: dict[str, Publication]
    origin: dict[str, str]
    counts: pd.DataFrame | None = None
    rows: pd.DataFrame | None = None


def site_index(scenario: Scenario) -> pd.DatetimeIndex:
    """The 15-min grid of history + run + one controller horizon after the run (UTC)."""
    run = scenario.run
    hist = run.history_days * STEPS_PER_DAY
    return pd.date_range(run.start_ts - hist * STEP,
                         periods=hist + run.n_steps + scenario.controller.horizon_steps,
                         freq=STEP, name="interval_start_utc")


def resolved_source(block_source: str, scenario: Scenario) -> str:
    """A block's series source with ``auto`` resolved by ``data.source``."""
    if block_source != "auto":
        return block_source
    return "real" if scenario.data.source == "real" else "synthetic"


def requests_source(scenario: Scenario) -> str:
    """``synthetic`` or ``burstgpt``: where the requests come from (``auto`` resolved)."""
    source = scenario.workload.requests.source
    if source != "auto":
        return source
    return "burstgpt" if scenario.data.source == "real" else "synthetic"


class _Collector:
    """Fills the columns of :class:`SiteSources`, reading each real file once (through
    ``files``)."""

    def __init__(self, scenario: Scenario, max_gap_steps: int, files: DataFiles) -> None:
        self.scenario = scenario
        self.index = site_index(scenario)
        self.hist = scenario.run.history_days * STEPS_PER_DAY
        self.max_gap = max_gap_steps
        self.files = files
        self.columns: dict[str, np.ndarray] = {}
        self.publication: dict[str, Publication] = {}
        self.origin: dict[str, str] = {}
        self._folder: Path | None = None

    @property
    def seed(self) -> int:
        return self.scenario.run.seed

    def folder(self, reason: str) -> Path:
        if self._folder is None:
            self._folder = data_folder(self.scenario.data.dir, "data.dir", reason)
        return self._folder

    def add(self, column: str, values: np.ndarray, publication: Publication | None,
            origin: str) -> None:
        """Add a frame column; ``publication`` None: no rule of its own (observable at
        the end of its interval, or known ahead as the DR events are)."""
        self.columns[column] = np.asarray(values, dtype=float)
        if publication is not None:
            self.publication[column] = publication
        self.origin[column] = origin

    def cover(self, series: pd.Series, what: str, key: str) -> np.ndarray:
        return require_coverage(series, self.index, what, key, history_steps=self.hist,
                                max_gap_steps=self.max_gap)

    # -- prices
    def prices(self) -> None:
        from traces import synthetic

        campuses = self.scenario.site.campuses
        if self.scenario.data.source == "synthetic":
            series = synthetic_prices([c.price_node for c in campuses], self.seed, self.index)
            for c in campuses:
                first = next(j for j, d in enumerate(campuses) if d.price_node == c.price_node)
                self.add(f"price_usd_per_mwh[{c.name}]", series[c.price_node],
                         synthetic.PUBLICATION["lmp"],
                         f"synthetic LMP, node {c.price_node} (seed "
                         f"{self.seed + SEED_STRIDE * first})")
            return
        folder = self.folder('data.source "real"')
        for i, c in enumerate(campuses):
            node = price_node(c.price_node)
            if node is None:  # refused when the scenario is read; kept for replace()
                raise ConfigError(SOURCE, f"unknown price node {c.price_node!r}",
                                  key=f"site.campuses[{i}].price_node")
            column = f"price_usd_per_mwh[{c.name}]"
            if node.market == "caiso":
                prices, pub = caiso_prices([node.key], folder, self.index,
                                           history_steps=self.hist, max_gap_steps=self.max_gap,
                                           files=self.files)
                self.add(column, prices[node.key], pub, f"CAISO RT LMP {node.key}")
            elif c.grid.tariff.kind == "retail":
                self._nyiso_da(column, folder)
            else:
                self._nyiso_rt(node.key, column, folder)

    def _nyiso_rt(self, zone: str, column: str, folder: Path) -> None:
        zones = sorted({z.key for c in self.scenario.site.campuses
                        if (z := price_node(c.price_node)) is not None and z.market == "nyiso"})
        frame, meta = _nyiso_rt(folder, zones, self.index, self.files)
        values = self.cover(frame[f"lmp_usd_per_mwh[{zone}]"],
                            f"NYISO RT prices at zone {zone} ({meta.source})", "run.start")
        self.add(column, values, meta.publication, f"NYISO RT LMP zone {zone}")

    def _nyiso_da(self, column: str, folder: Path) -> None:
        from traces.datasets import nyiso_da_lmp

        frame, meta = self.files.read(nyiso_da_lmp, folder)
        values = self.cover(frame.iloc[:, 0], f"NYISO day-ahead prices at zone F "
                            f"({meta.source})", "run.start")
        self.add(column, values, meta.publication, "NYISO DA LMP zone F (CAPITL)")

    # -- carbon
    def carbon(self) -> None:
        campuses = self.scenario.site.campuses
        zones = [c.carbon_zone for c in campuses]
        column = "carbon_gco2_per_kwh[{}]"
        if self.scenario.data.source == "synthetic":
            series = synthetic_carbon(zones, self.seed, self.index)
            for c in campuses:
                # The generator's hourly noise stands for an hourly source: observable
                # at the end of its hour.
                self.add(column.format(c.name), series[c.carbon_zone],
                         Publication(pd.Timedelta(hours=1)), f"synthetic {c.carbon_zone}")
            return
        keys = [f"site.campuses[{i}].carbon_zone" for i in range(len(campuses))]
        values, pubs = real_carbon(zones, keys, self.folder('data.source "real"'), self.index,
                                   history_steps=self.hist, max_gap_steps=self.max_gap,
                                   files=self.files)
        for c in campuses:
            self.add(column.format(c.name), values[c.carbon_zone], pubs[c.carbon_zone],
                     f"Electricity Maps {c.carbon_zone}")

    # -- renewable
    def renewable(self) -> None:
        from traces import synthetic

        for i, c in enumerate(self.scenario.site.campuses):
            if c.renewable is None:
                continue
            column = f"renewable_cf[{c.name}]"
            source = resolved_source(c.renewable.source, self.scenario)
            if source == "synthetic":
                seed = self.seed + SEED_STRIDE * i
                self.add(column, _synthetic_wind_cf(seed, self.index),
                         synthetic.PUBLICATION["wind_cf"], f"synthetic wind (seed {seed})")
            elif source == "windpowerlib":
                self._windpowerlib(i, c, column)
            else:
                self._ny_wind(column)

    def _ny_wind(self, column: str) -> None:
        from traces.datasets import ny_wind_cf

        wind, meta = self.files.read(ny_wind_cf, self.folder("renewable source 'real'"))
        values = self.cover(wind["wind_cf"].clip(0.0, 1.0),
                            f"NY wind capacity factor ({meta.source})", "run.start")
        self.add(column, values, meta.publication, "NY wind 2022 (EIA-930 NYIS)")

    def _windpowerlib(self, i: int, campus: Campus, column: str) -> None:
        assert campus.renewable is not None
        turbine = campus.renewable.turbine_type
        try:
            cf, meta = windpowerlib_cf(self.folder("renewable source 'windpowerlib'"),
                                       turbine, self.index, self.files)
        except KeyError:
            raise ConfigError(SOURCE, f"unknown turbine type {turbine!r}; expected a row of "
                              f"{WINDPOWERLIB_CURVES_FILE}",
                              key=f"site.campuses[{i}].renewable.turbine_type") from None
        values = self.cover(cf, f"windpowerlib {turbine} capacity factor ({meta.source})",
                            "run.start")
        self.add(column, values, meta.publication, f"windpowerlib {turbine} (weather 2010)")

    # -- other IT
    def other_it(self) -> None:
        from traces import synthetic

        for i, c in enumerate(self.scenario.site.campuses):
            if c.other_it is None:
                continue
            column = f"workload_wu[{c.name}]"
            if resolved_source(c.other_it.source, self.scenario) == "synthetic":
                seed = self.seed + SEED_STRIDE * i
                util = _synthetic_utilisation(seed, self.index)
                pub, origin = synthetic.PUBLICATION["load"], f"synthetic load (seed {seed})"
            else:
                from traces.datasets import google_load_shape

                shape, meta = self.files.read(google_load_shape,
                                              self.folder("other_it source 'real'"))
                run = self.scenario.run
                util = align_google(shape, self.index, run.start_ts, run.local_tz)
                pub, origin = meta.publication, "Google powerdata_2019 cell a (PDUs 6-10)"
            self.add(column, work_from_utilisation(util, c.other_it), pub, origin)

    # -- DR
    def dr(self) -> None:
        spec, run = self.scenario.dr, self.scenario.run
        if not spec.days:
            return
        flags = dr_event_flags(self.index, spec.days, spec.start_hour, spec.end_hour,
                               run.local_tz)
        for c in self.scenario.site.campuses:
            enrolled = not spec.campuses or c.name in spec.campuses
            self.add(f"dr_event[{c.name}]", flags if enrolled else np.zeros_like(flags),
                     None, "[dr] event days")


    # -- GPU outages
    def outages(self) -> None:
        """``gpus_available[C]`` of every campus with an outage: its GPUs, fewer during
        each outage."""
        for c in self.scenario.site.campuses:
            mine = [o for o in self.scenario.outages if o.campus == c.name]
            if not mine:
                continue
            gpus = np.full(len(self.index), float(c.gpus))
            for outage in mine:
                first, last = outage.span
                gpus[(self.index >= first) & (self.index < last)] = outage.gpus_available
            self.add(f"gpus_available[{c.name}]", gpus, None, "[[outages]]")


def check_data(scenario: Scenario, *, source: str | Path = SOURCE,
               max_gap_steps: int = 0, files: DataFiles | None = None) -> SiteSources:
    """Read or generate every exogenous series of ``scenario``; refuse what a run refuses.

    Reads every file a run reads (BurstGPT's rows too), so ``scenario check``
    refuses what ``run`` would: a missing data folder, a series that does not
    cover history + run + tail, a gap in the run or the tail, run + tail beyond
    BurstGPT's 61 days, an unknown windpowerlib turbine.

    Parameters
    ----------
    scenario : Scenario
    source : str or Path
        Named in the errors (the scenario file).
    max_gap_steps : int
        Longest run of missing intervals [15-min intervals] interpolated in the run
        and the tail instead of refused (:func:`require_coverage`); 0, the default,
        refuses every gap there.
    files : DataFiles, optional
        Files already read (by another scenario on the same data) and where to keep
        the ones read now; None: read afresh.

    Raises
    ------
    ConfigError
        One line naming ``source`` and the scenario key.
    TraceError
        A data file missing or malformed (named, with the line).
    """
    with errors_name(source):
        collect = _Collector(scenario, max_gap_steps, files or DataFiles())
        collect.prices()
        collect.carbon()
        collect.renewable()
        collect.other_it()
        collect.dr()
        collect.outages()
        counts = rows = None
        if scenario.site.fleet is not None and requests_source(scenario) == "burstgpt":
            folder = collect.folder("workload.requests source 'burstgpt'")
            first_day = scenario.workload.requests.first_day
            # Its request rows are day 0's: replayed only when day 0 is in the run
            # (at its start, or later: the run's days before it are pre-run workload).
            rows = (burstgpt_rows(folder, collect.files)
                    if -scenario.run.days < first_day <= 0 else None)
            counts = burstgpt_counts(folder, scenario.run.start_ts, collect.index[
                collect.hist + trace_delay_steps(first_day):], first_day, collect.files)
        return SiteSources(collect.index, collect.hist, scenario.run.n_steps, collect.columns,
                           collect.publication, collect.origin, counts, rows)


def tpot_target_s(scenario: Scenario, model: str) -> float:
    """The TPOT target of ``model`` [s/token]: ``serving.tpot_slo_s`` of the model, else
    the shortest ITL SLO of its precisions in the table."""
    fleet = scenario.site.fleet
    assert fleet is not None  # callers read a fleet's models
    tau = scenario.serving.tpot_slo_s.get(model)
    if tau is not None:
        return float(tau)
    return min(fleet.table.get(model, q).itl_slo_p90_ms / 1e3 for q in fleet.precisions(model))


def site_request_stream(scenario: Scenario, sources: SiteSources) -> RequestArrays:
    """Every request of the fleet scenario ``scenario`` over history, run and horizon
    (:func:`request_stream` with the scenario's ``[workload.requests]``), on the series
    of :func:`check_data`."""
    fleet = scenario.site.fleet
    assert fleet is not None  # only a fleet has a request stream
    spec = scenario.workload.requests
    arrival = ArrivalConfig(rate_multiplier=spec.rate_multiplier,
                            model_map=dict(spec.model_map), seed=scenario.run.seed)
    return request_stream(sources.index, sources.history_steps, sources.run_steps, arrival,
                          fleet.models, counts=sources.counts, rows=sources.rows,
                          trace_delay=trace_delay_steps(spec.first_day))


def history_burst_late_share(scenario: Scenario, every: RequestArrays,
                             history_steps: int, mix: Mapping[str, RequestMix]
                             ) -> dict[str, np.ndarray]:
    """Per model, :func:`~mpc_dc.sim.bursts.window_late_share` of its requests over the
    history (the ``history_steps`` intervals before the run) [-], on windows of its
    decode time at the TPOT target, ``n̄ τ`` [s]: ``n̄`` its history's mean response
    tokens, τ ``serving.tpot_slo_s`` of the model, else the shortest ITL SLO of its
    precisions in the table. Empty without a fleet or history; a model without history
    requests is left out."""
    fleet = scenario.site.fleet
    if fleet is None or history_steps <= 0:
        return {}
    end = int(np.searchsorted(every.arrival_s, history_steps * STEP_S, side="left"))
    out: dict[str, np.ndarray] = {}
    for m, model in enumerate(fleet.models):
        if model not in mix:
            continue
        tau = tpot_target_s(scenario, model)
        mine = every.model[:end] == m
        out[model] = window_late_share(every.arrival_s[:end][mine],
                                       every.response_tokens[:end][mine],
                                       history_steps * STEP_S,
                                       mix[model].response_tokens * tau,
                                       fleet.utilization_cap)
    return out


def build_site_exogenous(scenario: Scenario, *, sources: SiteSources | None = None,
                         source: str | Path = SOURCE, max_gap_steps: int = 0,
                         files: DataFiles | None = None) -> SiteExogenous:
    """The run's :class:`SiteExogenous`: series of :func:`check_data` plus the requests.

    Parameters
    ----------
    scenario : Scenario
    sources : SiteSources, optional
        :func:`check_data` of ``scenario`` when already read.
    source : str or Path
        Named in the errors (the scenario file).
    max_gap_steps : int
        As :func:`check_data`'s (when ``sources`` is not given).
    files : DataFiles, optional
        As :func:`check_data`'s (when ``sources`` is not given).
    """
    sources = sources if sources is not None else check_data(
        scenario, source=source, max_gap_steps=max_gap_steps, files=files)
    index = sources.index
    frame = pd.DataFrame(sources.columns, index=index)
    requests = None
    mix: dict[str, RequestMix] = {}
    bursts: dict[str, np.ndarray] = {}
    fleet = scenario.site.fleet
    if fleet is not None:
        every = site_request_stream(scenario, sources)
        agg = every.per_interval(len(index))
        truth = {}
        hist = sources.history_steps
        for m, model in enumerate(fleet.models):
            truth[f"tokens_per_s[{model}]"] = agg["response_tokens"][:, m] / STEP_S
            truth[f"requests_per_h[{model}]"] = agg["requests"][:, m] * (3600.0 / STEP_S)
            found = RequestMix.from_sums(*(float(agg[k][:hist, m].sum()) for k in (
                "requests", "request_tokens", "response_tokens", "response_tokens_sq")))
            if found is not None:
                mix[model] = found
        if scenario.controller.congestion_calibration != "share":
            # Only the plan's history calibration reads them (``auto`` or ``history``;
            # 0.5 s on the DR week).
            bursts = history_burst_late_share(scenario, every, hist, mix)
        frame = pd.concat([frame, pd.DataFrame(truth, index=index)], axis=1)
        requests = window_requests(every, sources.history_steps * STEP_S,
                                   sources.run_steps * STEP_S)
    run = scenario.run
    return SiteExogenous(site=scenario.site, frame=frame, run_start=run.start_ts,
                         n_steps=run.n_steps, requests=requests,
                         publication=dict(sources.publication), local_tz=run.local_tz,
                         name=scenario.name, request_mix=mix, burst_late_share=bursts)
