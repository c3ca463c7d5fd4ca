"""One scenario schema: a TOML file (read with :mod:`tomllib`) into frozen dataclasses.

A scenario names the run period (``[run]``), where the data come from (``[data]``),
the site (``[site]`` with ``[[site.campuses]]``, :class:`mpc_dc.site.config.Site`),
the inference fleet the campuses with GPUs serve (``[fleet]``, optional), the LLM
requests (``[workload.requests]``), demand-response events (``[dr]``), the serving
fidelity (``[serving]``), the controller (``[controller]``) and the faults injected
(``[faults]``, :mod:`mpc_dc.sim.faults`). Every key is
documented in ``docs/scenario.md``; an unknown key is refused naming the nearest
valid key, and a key of the two schemas before this one (``kind``,
``site.datacenter``, ``fleet.campuses``, ``data.source = "nyiso"`` ...) is refused
naming its new key (:data:`OLD_KEYS`, :data:`OLD_VALUES`); a key of this schema since
removed, naming what replaces it (:data:`REMOVED_KEYS`).

Every check a run makes happens here when the file is read (keys, ranges, price
nodes and carbon zones the data source has, the tariff's price series, model maps,
DR days inside the run) or in :func:`mpc_dc.site.data.check_data` when the data are
read (coverage of history + run + horizon by every series, BurstGPT's span).

The renewable-colocated data center is one campus without GPUs; the
demand-response fleet is campuses with GPUs, no renewable and no export; the
product scenario (``nyiso_wind_fleet``) has both.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from mpc_dc.config import RunPeriod, from_mapping, grid_start, positive, to_mapping
from mpc_dc.sim.arrivals import DEFAULT_MODEL_MAP
from mpc_dc.sim.fast_layer import FastLayerConfig
from mpc_dc.sim.faults import FaultSpec
from mpc_dc.site.config import SCENARIOS, Fleet, Site, quarter_hours
from mpc_dc.site.data import (
    CARBON_SOURCES,
    NYISO_DA_ZONES,
    SOURCE,
    SYNTHETIC_CARBON,
    errors_name,
    price_node,
    resolved_source,
)
from traces.errors import ConfigError
from traces.grid import STEPS_PER_DAY

if TYPE_CHECKING:
    from mpc_dc.sim.serving import ServingConfig

ControllerKind = Literal["baseline", "mpc", "perfect", "offline"]
FidelityName = Literal["request", "fluid"]

MAX_RUN_DAYS = 366.0
"""Longest run [d]: one year of 15-min steps (35 136 intervals)."""
MAX_HISTORY_DAYS = 366
"""Longest forecaster-fitting history [d]."""
BURSTGPT_LAST_DAY = 60
"""Last day of BurstGPT's 61 days of hourly counts."""
MAX_ERROR_LEVEL = 10.0
"""Largest ``noisy_oracle`` error level [-] (std at 24 h lead / series std), also the
largest size of its bias [-] (a fraction of the series std)."""

CHANNEL_GROUPS = ("price", "renewable", "demand", "other_load", "carbon")
"""Groups of forecast channels (``[controller.channels.<group>]``): the market price of
every campus, the renewable capacity factor, the token demand of every model, the
other-IT (training) workload and the carbon intensity
(:data:`mpc_dc.control.forecasting.GROUP_OF`)."""

FORECASTER_ALIASES: Mapping[str, str] = {"seasonal_naive": "seasonal_naive_daily"}
"""Short names accepted by ``compare`` and ``run --controller``."""


def at_most(key: str, value: float, bound: float, unit: str, source: str = SOURCE) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``value`` > ``bound`` [``unit``]."""
    if value > bound:
        raise ConfigError(source, f"expected a value <= {bound:g} {unit}, got {value!r}",
                          key=key)


def check_run_period(run: RunPeriod, history_days: int, source: str = SOURCE) -> None:
    """The ``[run]`` checks every schema shares: ``days`` in (0, 366] and a whole number
    of 15-min intervals, ``history_days`` in [0, 366], ``start`` a UTC time on the 15-min
    grid."""
    positive(source, "run.days", run.days)
    positive(source, "run.history_days", history_days, allow_zero=True)
    at_most("run.days", run.days, MAX_RUN_DAYS, "d", source)
    whole_intervals(run.days, source)
    at_most("run.history_days", history_days, MAX_HISTORY_DAYS, "d", source)
    grid_start(source, "run.start", run.start)


def whole_intervals(days: float, source: str = SOURCE) -> None:
    """Raise :class:`ConfigError` naming ``run.days`` unless ``days`` [d] is a whole number
    of 15-min intervals (a multiple of 1/96 d): the run would otherwise be rounded to
    another length than the one asked for (0.1 d ran 10 intervals, 0.104 d)."""
    steps = days * STEPS_PER_DAY
    # Within 1e-6 intervals (0.9 ms): a fraction written in decimals (1/3 d as
    # 0.3333333333) still counts, and no length a run could tell apart is rounded.
    if math.isfinite(steps) and abs(steps - round(steps)) <= 1e-6:
        return
    raise ConfigError(source, f"expected a whole number of 15-minute intervals (a multiple "
                      f"of 1/96 d = 0.25 h), got {days!r} d = {steps:.10g} intervals",
                      key="run.days")


def check_in_unit_interval(values: Mapping[str, float], *, closed: bool,
                           source: str = SOURCE) -> None:
    """Raise naming the key unless each value is in [0, 1] (``closed``) or [0, 1)."""
    for key, value in values.items():
        if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
            bound = "[0, 1]" if closed else "[0, 1)"
            raise ConfigError(source, f"expected a value in {bound}, got {value}", key=key)


@functools.cache
def _request_model_names() -> tuple[str, ...]:
    """Model names of the requests (the packaged calibrated figures), read once."""
    from traces.synthetic import load_figures

    return tuple(load_figures().tokens.model_names)


def check_trace_model_names(model_map: Mapping[str, str], key: str,
                            source: str = SOURCE) -> None:
    """Raise naming ``key`` unless every trace model name of ``model_map`` is one of the
    requests' (BurstGPT's, which the generator uses)."""
    names = _request_model_names()
    for trace_name in model_map:
        if trace_name not in names:
            raise ConfigError(source, f"{trace_name!r} is not a model name of the requests; "
                              f"expected one of {', '.join(names)}", key=key)


def check_horizon_tiers(spec: Any, source: str = SOURCE) -> None:
    """The multi-resolution horizon keys of ``spec`` (``fine_horizon_h``, ``coarse_step_h``,
    ``far_horizon_h``, ``far_step_h``) are multiples of 0.25 h, at least 0.25 h."""
    for key in ("fine_horizon_h", "coarse_step_h", "far_horizon_h", "far_step_h"):
        value = getattr(spec, key)
        if value < 0.25 or not quarter_hours(value):
            raise ConfigError(source, f"expected a multiple of 0.25 h, >= 0.25, got {value}",
                              key=f"controller.{key}")


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class RunSpec(RunPeriod):
    """The run period.

    Parameters
    ----------
    start : str
        First interval start, ISO 8601 in UTC on the 15-min grid.
    days : float [d]
        Length of the run.
    history_days : int [d]
        Data before ``start`` the forecasters are fitted on.
    seed : int
        Seed of every generator (synthetic series, requests) and random error.
    local_tz : str
        IANA time zone of the billing calendar, the DR event days and displays.
    """

    start: str = "2022-04-01T04:00:00Z"
    days: float = 7.0
    history_days: int = 14
    seed: int = 2
    local_tz: str = "America/New_York"

    def __post_init__(self) -> None:
        check_run_period(self, self.history_days)
        # numpy's generators take any whole number >= 0 as a seed; a negative one
        # would only fail at the first draw, deep in the run.
        positive(SOURCE, "run.seed", self.seed, allow_zero=True)
        try:
            ZoneInfo(self.local_tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(SOURCE, f"expected an IANA time zone (e.g. America/New_York), "
                              f"got {self.local_tz!r}", key="run.local_tz") from None


@dataclass(frozen=True)
class DataSpec:
    """Where the exogenous series come from.

    Parameters
    ----------
    source : {"synthetic", "real"}
        ``synthetic``: the seeded generators (no data folder). ``real``: the public
        data of ``dir`` at each campus's price node and carbon zone
        (:mod:`mpc_dc.site.data`).
    dir : str
        The public data folder, relative to the working directory; the environment
        variable ``MPC_DC_DATA``, when set, replaces it.
    """

    source: Literal["synthetic", "real"] = "synthetic"
    dir: str = "../shared/data"


@dataclass(frozen=True)
class RequestsSpec:
    """The LLM requests the fleet serves.

    Parameters
    ----------
    source : {"auto", "synthetic", "burstgpt"}
        ``burstgpt``: BurstGPT placed with its day 0 at the run start (its first
        request rows, then the generator on its hourly counts); ``synthetic``: the
        calibrated generator; ``auto`` follows ``data.source``.
    rate_multiplier : float [-]
        Superposes this many independent request streams (thinning below 1;
        :mod:`mpc_dc.sim.arrivals`, rule 4).
    model_map : Mapping[str, str]
        Trace model name (``ChatGPT``, ``GPT-4``) to served model family.
    first_day : int [d]
        ``burstgpt``: the BurstGPT day placed at the run start (up to 60); days after 0
        come from the generator on BurstGPT's hourly counts alone (its request rows
        are day 0's). Negative: BurstGPT's day 0 falls ``-first_day`` days into the run
        (at most ``run.days``), and the run's days before it carry the site's ordinary
        pre-run workload, the generator's conversation stream of the history (the DR
        lead-in's placement, :func:`mpc_dc.runner.lead_in_scenario`).
    """

    source: Literal["auto", "synthetic", "burstgpt"] = "auto"
    rate_multiplier: float = 1.0
    model_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))
    first_day: int = 0

    def __post_init__(self) -> None:
        positive(SOURCE, "workload.requests.rate_multiplier", self.rate_multiplier)
        if self.first_day > BURSTGPT_LAST_DAY:
            raise ConfigError(SOURCE, f"expected a BurstGPT day up to {BURSTGPT_LAST_DAY}, "
                              f"got {self.first_day}", key="workload.requests.first_day")
        check_trace_model_names(self.model_map, "workload.requests.model_map")


@dataclass(frozen=True)
class WorkloadSpec:
    """Workloads given as traces rather than per campus (other IT is per campus).

    Parameters
    ----------
    requests : RequestsSpec
    """

    requests: RequestsSpec = field(default_factory=RequestsSpec)


def check_event_days(days: tuple[str, ...], start_hour: int, end_hour: int,
                     prefix: str, source: str = SOURCE) -> None:
    """Raise :class:`ConfigError` unless ``days`` are ``YYYY-MM-DD`` dates and
    ``0 <= start_hour < end_hour <= 24`` (keys ``{prefix}.days`` ...)."""
    for day in days:
        try:  # fromisoformat alone also takes 20210709
            valid = len(day) == 10 and bool(date.fromisoformat(day))
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(source, f"expected a date YYYY-MM-DD, got {day!r}",
                              key=f"{prefix}.days")
    if not 0 <= start_hour < 24:
        raise ConfigError(source, f"expected an hour 0..23, got {start_hour}",
                          key=f"{prefix}.start_hour")
    if not start_hour < end_hour <= 24:
        raise ConfigError(source, f"expected an hour after start_hour ({start_hour}) and "
                          f"<= 24, got {end_hour}", key=f"{prefix}.end_hour")


def local_day_spans(days: tuple[str, ...], tz: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Start and end [UTC] of each local (``tz``) day ``YYYY-MM-DD``: midnight to midnight
    (23 or 25 h on daylight-saving days)."""
    out = []
    for day in days:
        first = pd.Timestamp(day)
        out.append((first.tz_localize(tz).tz_convert("UTC"),
                    (first + pd.Timedelta(days=1)).tz_localize(tz).tz_convert("UTC")))
    return out


@dataclass(frozen=True)
class DrSpec:
    """Demand-response events (the programme's terms are ``[site.dr]``).

    Parameters
    ----------
    days : tuple of str
        Local (``run.local_tz``) days with an event, ``YYYY-MM-DD``; each a whole
        day of the run.
    start_hour, end_hour : int [h, local]
        Event hours ``[start_hour, end_hour)``, ``0 <= start_hour < end_hour <= 24``.
    campuses : tuple of str
        Campuses enrolled (empty: every campus).
    """

    days: tuple[str, ...] = ()
    start_hour: int = 16
    end_hour: int = 21
    campuses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_event_days(self.days, self.start_hour, self.end_hour, "dr")

    def local_days(self, tz: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Start and end of each event day [UTC]: local midnight to midnight."""
        return local_day_spans(self.days, tz)


@dataclass(frozen=True)
class OutageSpec:
    """A GPU outage announced before the run: a campus has fewer GPUs for a while.

    Parameters
    ----------
    campus : str
        The campus (its ``name``).
    start : str
        First interval of the outage, ISO 8601 in UTC on the 15-min grid, inside the run.
    hours : float [h]
        Length, a multiple of 0.25 h.
    gpus_available : int [GPUs]
        GPUs the campus has during the outage, ``0 <= gpus_available <= gpus``.
    """

    campus: str
    start: str
    hours: float
    gpus_available: int

    def __post_init__(self) -> None:
        # ValueError "field: ..." so that from_mapping names the entry (outages[i].field).
        try:
            grid_start(SOURCE, "start", self.start)
        except ConfigError as err:
            raise ValueError(f"start: {err.message}") from None
        if not (self.hours >= 0.25 and quarter_hours(self.hours)):
            raise ValueError(f"hours: expected a multiple of 0.25 h, >= 0.25, got {self.hours}")
        if self.gpus_available < 0:
            raise ValueError(f"gpus_available: expected a value >= 0, got {self.gpus_available}")

    @property
    def span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """Start and end [UTC] of the outage."""
        first = pd.Timestamp(self.start)
        return first, first + pd.Timedelta(hours=self.hours)


@dataclass(frozen=True)
class ServingSpec:
    """Serving fidelity and SLO (the fleet's requests).

    Parameters
    ----------
    fidelity : {"request", "fluid"}
        Request-level queues or per-interval aggregates.
    default_ttft_slo_s : float [s]
        Time-to-first-token target of every model.
    ttft_slo_s : Mapping[str, float] [s]
        Per-model TTFT targets.
    tpot_slo_s : Mapping[str, float] [s/token]
        Per-model targets on the time per output token after the first; the pool's
        quantization-table ITL SLO otherwise.
    request_samples : int
        Per-request rows written to ``requests.parquet`` (seeded uniform sample).
    late_usd_per_request : float [$/request]
        Price of every request that misses its TTFT or TPOT target
        (:mod:`mpc_dc.sim.lateness`; default: the revenue of a mean request, refunded;
        docs/scenario.md).
    late_usd_per_s : float [$/s]
        Price of every second a request is late beyond its target (default: one more
        request's revenue per 100 s late).
    """

    fidelity: FidelityName = "request"
    default_ttft_slo_s: float = 2.0
    ttft_slo_s: Mapping[str, float] = field(default_factory=dict)
    tpot_slo_s: Mapping[str, float] = field(default_factory=dict)
    request_samples: int = 200_000
    late_usd_per_request: float = 0.001
    late_usd_per_s: float = 1e-5

    def __post_init__(self) -> None:
        # A target <= 0 makes every request late (TTFT) or divides by zero (TPOT windows).
        positive(SOURCE, "serving.default_ttft_slo_s", self.default_ttft_slo_s)
        for table in ("ttft_slo_s", "tpot_slo_s"):
            for model, target_s in getattr(self, table).items():
                positive(SOURCE, f"serving.{table}.{model}", target_s)
        positive(SOURCE, "serving.request_samples", self.request_samples, allow_zero=True)
        for key in ("late_usd_per_request", "late_usd_per_s"):
            value = getattr(self, key)
            if not 0.0 <= value < float("inf"):  # also refuses NaN
                raise ConfigError(SOURCE, f"expected a finite value >= 0, got {value!r}",
                                  key=f"serving.{key}")

    def config(self) -> ServingConfig:
        """The simulator's :class:`~mpc_dc.sim.serving.ServingConfig`."""
        from mpc_dc.sim.serving import ServingConfig

        return ServingConfig(fidelity=self.fidelity, ttft_slo_s=dict(self.ttft_slo_s),
                             default_ttft_slo_s=self.default_ttft_slo_s,
                             tpot_slo_s=dict(self.tpot_slo_s),
                             request_samples=self.request_samples,
                             late_usd_per_request=self.late_usd_per_request,
                             late_usd_per_s=self.late_usd_per_s)


DAY_AHEAD_HINT = ("day_ahead_known is not a forecaster of every channel; set "
                  "controller.price_known_ahead = true (retail tariff) and name the forecaster "
                  "of the rest here")


def check_forecaster(name: str, key: str, source: str = SOURCE, *,
                     day_ahead_hint: str = DAY_AHEAD_HINT) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a forecaster of every channel
    (``day_ahead_hint``: the message for ``day_ahead_known``)."""
    from forecasters.base import forecaster_names

    names = forecaster_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(names)}"
        raise ConfigError(source, f"unknown forecaster {name!r}; {hint}", key=key)
    if name == "day_ahead_known":
        # A wrapper of one channel around another forecaster, not a forecaster of
        # every channel (it needs the published day-ahead prices as its truth).
        raise ConfigError(source, day_ahead_hint, key=key)


@dataclass(frozen=True)
class ChannelSpec:
    """The forecaster of one group of channels (``[controller.channels.<group>]``).

    Every key left out takes the ``[controller]`` key of the same name.

    Parameters
    ----------
    forecaster : str, optional
        Forecaster of the group's channels (``oracle``: perfect foresight on them).
    error_level : float [-], optional
        ``noisy_oracle``: error std at 24 h lead as a fraction of the series std.
    bias : float [-], optional
        ``noisy_oracle``: constant error at every lead as a fraction of the series
        std (signed).
    autocorrelation : float [-], optional
        ``noisy_oracle``: correlation of the errors of neighbouring leads in [0, 1]
        (1: a random walk along the lead, 0: white noise).
    """

    forecaster: str | None = None
    error_level: float | None = None
    bias: float | None = None
    autocorrelation: float | None = None


def check_noise(error_level: float, bias: float, autocorrelation: float, prefix: str) -> None:
    """Raise naming ``{prefix}.<key>`` unless the ``noisy_oracle`` error settings are in
    range: ``error_level`` in [0, 10], ``|bias|`` <= 10, ``autocorrelation`` in [0, 1]."""
    positive(SOURCE, f"{prefix}.error_level", error_level, allow_zero=True)
    at_most(f"{prefix}.error_level", error_level, MAX_ERROR_LEVEL, "(fraction of the std)")
    if abs(bias) > MAX_ERROR_LEVEL:
        raise ConfigError(SOURCE, f"expected a value in [-{MAX_ERROR_LEVEL:g}, "
                          f"{MAX_ERROR_LEVEL:g}] (fraction of the std), got {bias!r}",
                          key=f"{prefix}.bias")
    check_in_unit_interval({f"{prefix}.autocorrelation": autocorrelation}, closed=True)


MAX_MIP_NODES = 2_147_483_647
"""Largest ``controller.*mip_max_nodes`` (HiGHS's integer options are 32-bit; its
``kHighsIInf``, :data:`mpc_dc.fastpath.NO_NODE_LIMIT`, is no limit)."""

DEFAULT_MIP_MAX_NODES = 500
"""Default ``controller.mip_max_nodes``: the deterministic stop of an MPC step's MIP runs
(a committed interval's binaries, a round-and-fix chunk MIP), so a step gives the same
plan on any machine and load (docs/benchmark.md, "Reproducible results")."""

DEFAULT_TIME_LIMIT_S = 60.0
"""Default ``controller.time_limit_s`` [s]: only a safety net, far above what an MPC
step's HiGHS run takes. With a 5-s clock, round-and-fix chunk MIPs that take 1-4.5 s
(mostly the root node, which no node limit bounds) stopped there on a loaded machine in
some runs and not in others: the same dr_caiso command gave 681.40 $ and 749.50 $
(docs/fleet_closed_loop.md)."""


@dataclass(frozen=True)
class ControllerSpec:
    """The controller (one spec for every site: the union of the two seeds' controllers).

    Parameters
    ----------
    kind : {"baseline", "mpc", "perfect", "offline"}
        ``baseline``: the rule (deferrable work as soon as possible, BF16 pools sized
        on a persistence forecast, no battery). ``mpc``: receding horizon on
        forecasts. ``perfect``: MPC with Oracle forecasts. ``offline``: the
        whole-period optimum on the truth, replayed.
    forecaster : str
        Forecaster of every channel for ``mpc`` (``forecasters.make_forecaster``)
        that ``channels`` does not set.
    error_level : float [-]
        ``noisy_oracle``: error std at 24 h lead as a fraction of the series std.
    bias : float [-]
        ``noisy_oracle``: constant error at every lead as a fraction of the series std.
    autocorrelation : float [-]
        ``noisy_oracle``: correlation of the errors of neighbouring leads, in [0, 1].
    channels : Mapping[str, ChannelSpec]
        Forecaster (and ``noisy_oracle`` error) of a group of channels
        (:data:`CHANNEL_GROUPS`), instead of the keys above.
    price_known_ahead : bool
        Retail tariff: day-ahead prices are published before delivery, so the price
        forecaster is wrapped in :class:`~forecasters.known_ahead.KnownAhead`.
    horizon_h : float [h]
        MPC horizon (also the data tail after the run).
    horizon_to_end : bool
        The horizon always reaches the run end (Oracle-equivalence checks).
    fine_horizon_h, coarse_step_h, far_horizon_h, far_step_h : float [h]
        Multi-resolution horizon: 15-min intervals up to ``fine_horizon_h``,
        ``coarse_step_h`` intervals beyond, ``far_step_h`` intervals from
        ``far_horizon_h`` (taken as at least ``fine_horizon_h``); multiples of 0.25 h.
    time_limit_s : float [s]
        HiGHS wall-clock limit per run of an MPC solve: a safety net far above what a
        run takes (:data:`DEFAULT_TIME_LIMIT_S`), since a run it stops depends on the
        machine and its load.
    mip_rel_gap : float [-]
        HiGHS relative MIP gap per MPC solve.
    mip_max_nodes : int or None
        HiGHS branch-and-bound node limit per MIP run of an MPC solve
        (:data:`DEFAULT_MIP_MAX_NODES`; None: none, which no TOML value gives, but
        :data:`MAX_MIP_NODES` is HiGHS's own "no limit"); deterministic, unlike
        ``time_limit_s``: a run it stops ends at the same plan on any machine.
    repair_token_share : float [-]
        A committed interval whose rounding lost at most this share of its demanded
        tokens (against the LP relaxation) is kept as rounded instead of repaired by a
        chunk MIP (``SolverOptions.repair_token_share``); 0: every loss is repaired.
        The offline solve always repairs.
    offline_time_limit_s : float [s]
        HiGHS wall-clock limit of the one whole-run solve of ``offline``.
    offline_mip_rel_gap : float [-]
        HiGHS relative MIP gap of that solve.
    offline_mip_max_nodes : int or None
        HiGHS node limit per MIP run of that solve (None: none).
    integer_intervals : int
        Leading intervals whose integer decisions (instance counts; processing and
        exclusivity binaries when the prices make the LP inexact) stay integer.
    demand_quantile : float [-]
        The MPC provisions for this quantile of the token-demand forecast (0: the
        point forecast).
    min_instances_per_model : int [instances]
        Warm floor: instances kept per model so that it stays routable.
    deadline_margin_h : float [h]
        Forecast-driven MPC plans deferrable work this long before each deadline
        (not ``perfect``, nor when the other-load forecaster is the ``oracle``).
    work_nd_quantile : float [-]
        The MPC reserves IT capacity for this quantile of the non-deferrable other-IT
        work forecast (0: the point forecast): the hedge against under-forecast
        non-deferrable work taking the capacity the deferrable work was planned in
        (not ``perfect``, nor with the ``oracle`` on ``other_load``).
    curtail_confidence : float [-]
        The MPC commits a planned curtailment of renewable output while importing only
        where the forecast distribution puts the interval's import price below zero
        with at least this probability (0.5: the median, i.e. the point forecast).
    nowcast_tau_h : float or None [h]
        Time constant with which the demand observed in the last interval is blended
        into the demand forecast (:mod:`forecasters.nowcast`; 0: none; never for
        ``perfect``); None (the default): the forecaster's, chosen by the BurstGPT
        backtest (:data:`forecasters.nowcast.BACKTEST_TAU_H`, docs/forecasters.md).
    price_nowcast_tau_h, renewable_nowcast_tau_h : float or None [h]
        The same for the last published market price of each campus and for its
        renewable capacity factor (never for an ``oracle`` on the group, nor for prices
        known ahead); None: the forecaster's, chosen by the NYISO April 2022 backtest
        (:data:`forecasters.nowcast.BACKTEST_TAU_H_OF`).
    backlog_drain_h : float [h]
        The MPC plans to serve the requests queued now within this time, on top of the
        forecast arrivals (> 0).
    lateness_weight : float [-]
        Weight of the price of lateness (``[serving]`` late prices) in the plan's
        objective (:mod:`mpc_dc.blocks.lateness`); 0: the plan carries no backlog and
        pays nothing for it (the controller before issue 16).
    congestion_share : float [-]
        The share of a model's late price per token that each congestion knee adds
        to the plan's price of a pool's tokens beyond it
        (:func:`mpc_dc.blocks.lateness.define_congestion`): the plan splits a model's
        tokens across its pools at even utilisation; 0: no congestion cost (the
        controller before); only with the lateness block (``lateness_weight`` > 0).
    congestion_calibration : {"auto", "share", "history"}
        ``share``: the congestion knees' weights are ``congestion_share`` for every
        model; ``history``: per model, from the share of its history's tokens that
        arrive in bursts beyond the capacity of a pool planned at each utilisation
        (:mod:`mpc_dc.sim.bursts`, :func:`mpc_dc.blocks.lateness.calibrated_knee_weights`;
        ``congestion_share`` is then unused): the queueing inside an interval that
        the 15-min mean hides, priced alike for every controller; a model without
        history requests is then a ConfigError. ``auto`` (the default): ``history``
        where the history holds requests of every model, else ``share``, logged at
        INFO with the models missing (:func:`mpc_dc.runner.congestion_calibration`).
        Without the burst prices the perfect-foresight reference provisions at the
        15-min mean, a weak reference (docs/fleet_closed_loop.md).
    warmup_lateness : bool
        Price, in the plan, the tokens a pool is offered beyond what its ready
        instances serve while the instances it starts load
        (:func:`mpc_dc.blocks.lateness.define_warmup_overload`); only with the lateness
        block. On by default (since session 14).
    fast_layer : FastLayerConfig
        The plant-side fast layer inside the interval (``[controller.fast_layer]``:
        ``enabled``, ``period_s``, ``lookback_s``, ``drain_s``;
        :mod:`mpc_dc.sim.fast_layer`), for every controller kind.
    scenarios : int
        Forecast scenarios a scenario-based (stochastic) policy plans on, e.g. the
        example ``example-smpc`` (docs/policies.md); our MPC ignores it.
    """

    kind: ControllerKind = "mpc"
    forecaster: str = "sarimax"
    error_level: float = 0.0
    bias: float = 0.0
    autocorrelation: float = 1.0
    channels: Mapping[str, ChannelSpec] = field(default_factory=dict)
    price_known_ahead: bool = False
    horizon_h: float = 24.0
    horizon_to_end: bool = False
    fine_horizon_h: float = 8.0
    coarse_step_h: float = 1.0
    far_horizon_h: float = 24.0
    far_step_h: float = 4.0
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    mip_rel_gap: float = 1e-4
    mip_max_nodes: int | None = DEFAULT_MIP_MAX_NODES
    repair_token_share: float = 1e-3
    offline_time_limit_s: float = 600.0
    offline_mip_rel_gap: float = 1e-6
    offline_mip_max_nodes: int | None = None
    integer_intervals: int = 1
    demand_quantile: float = 0.9
    min_instances_per_model: int = 1
    deadline_margin_h: float = 0.0
    work_nd_quantile: float = 0.9
    curtail_confidence: float = 0.8
    nowcast_tau_h: float | None = None
    price_nowcast_tau_h: float | None = None
    renewable_nowcast_tau_h: float | None = None
    backlog_drain_h: float = 0.25
    lateness_weight: float = 1.0
    congestion_share: float = 0.01
    congestion_calibration: Literal["auto", "share", "history"] = "auto"
    warmup_lateness: bool = True
    fast_layer: FastLayerConfig = field(default_factory=FastLayerConfig)
    scenarios: int = 5

    def __post_init__(self) -> None:
        positive(SOURCE, "controller.horizon_h", self.horizon_h)
        check_horizon_tiers(self)
        positive(SOURCE, "controller.time_limit_s", self.time_limit_s)
        positive(SOURCE, "controller.offline_time_limit_s", self.offline_time_limit_s)
        positive(SOURCE, "controller.deadline_margin_h", self.deadline_margin_h,
                 allow_zero=True)
        check_noise(self.error_level, self.bias, self.autocorrelation, "controller")
        for key in ("nowcast_tau_h", "price_nowcast_tau_h", "renewable_nowcast_tau_h"):
            if getattr(self, key) is not None:
                positive(SOURCE, f"controller.{key}", getattr(self, key), allow_zero=True)
        positive(SOURCE, "controller.backlog_drain_h", self.backlog_drain_h)
        positive(SOURCE, "controller.lateness_weight", self.lateness_weight, allow_zero=True)
        positive(SOURCE, "controller.congestion_share", self.congestion_share, allow_zero=True)
        positive(SOURCE, "controller.min_instances_per_model", self.min_instances_per_model,
                 allow_zero=True)
        if self.integer_intervals < 1:
            raise ConfigError(SOURCE, f"expected an integer >= 1, got "
                              f"{self.integer_intervals}", key="controller.integer_intervals")
        if self.scenarios < 1:
            raise ConfigError(SOURCE, f"expected an integer >= 1, got {self.scenarios}",
                              key="controller.scenarios")
        for key in ("mip_max_nodes", "offline_mip_max_nodes"):
            nodes = getattr(self, key)
            if nodes is not None and not 1 <= nodes <= MAX_MIP_NODES:
                raise ConfigError(SOURCE, f"expected an integer in [1, {MAX_MIP_NODES}] "
                                  f"(branch-and-bound nodes), got {nodes}",
                                  key=f"controller.{key}")
        check_in_unit_interval({f"controller.{k}": getattr(self, k) for k in (
            "mip_rel_gap", "offline_mip_rel_gap", "repair_token_share", "demand_quantile",
            "work_nd_quantile")},
            closed=False)
        if not 0.5 <= self.curtail_confidence < 1.0:
            raise ConfigError(SOURCE, f"expected a probability in [0.5, 1), got "
                              f"{self.curtail_confidence}", key="controller.curtail_confidence")
        check_forecaster(self.forecaster, "controller.forecaster")
        self._check_channels()

    def _check_channels(self) -> None:
        """Group names of :data:`CHANNEL_GROUPS`, known forecasters, errors in range."""
        for group, spec in self.channels.items():
            key = f"controller.channels.{group}"
            if group not in CHANNEL_GROUPS:
                close = difflib.get_close_matches(group, CHANNEL_GROUPS, n=1, cutoff=0.5)
                hint = (f"did you mean '{close[0]}'?" if close
                        else f"expected one of {', '.join(CHANNEL_GROUPS)}")
                raise ConfigError(SOURCE, f"unknown channel group; {hint}", key=key)
            if spec.forecaster is not None:
                check_forecaster(spec.forecaster, f"{key}.forecaster")
            check_noise(*self.noise(group), key)

    def group_forecaster(self, group: str) -> str:
        """The forecaster of channel group ``group`` (``oracle`` for ``perfect``)."""
        if self.kind == "perfect":
            return "oracle"
        spec = self.channels.get(group)
        return spec.forecaster if spec is not None and spec.forecaster is not None \
            else self.forecaster

    def noise(self, group: str) -> tuple[float, float, float]:
        """``(error_level, bias, autocorrelation)`` of a ``noisy_oracle`` on ``group``."""
        spec = self.channels.get(group, ChannelSpec())

        def pick(own: float | None, default: float) -> float:
            return default if own is None else own

        return (pick(spec.error_level, self.error_level), pick(spec.bias, self.bias),
                pick(spec.autocorrelation, self.autocorrelation))

    @property
    def prices_bursts(self) -> bool:
        """Whether the plan prices the queueing inside an interval beyond the 15-min
        mean (the lateness block with ``warmup_lateness`` or a calibration other than
        ``share``): the MPC then also tries rounding every pool up
        (``SolverOptions.round_up_trial``). ``auto`` counts even where it falls back to
        ``share``: whether it does is known only with the history."""
        return self.lateness_weight > 0 and (
            self.warmup_lateness or self.congestion_calibration != "share")

    @property
    def horizon_steps(self) -> int:
        """H [intervals] (at least 1)."""
        return max(1, round(self.horizon_h * 4))

    @property
    def fine_steps(self) -> int:
        """15-min model columns at the head of the horizon [intervals]."""
        return round(self.fine_horizon_h * 4)

    @property
    def coarse_block_steps(self) -> int:
        """Intervals per column beyond ``fine_steps``."""
        return round(self.coarse_step_h * 4)

    @property
    def far_start_steps(self) -> int:
        """Interval from which the far tier starts (at least ``fine_steps``)."""
        return round(max(self.far_horizon_h, self.fine_horizon_h) * 4)

    @property
    def far_block_steps(self) -> int:
        """Intervals per column of the far tier."""
        return round(self.far_step_h * 4)

    def group_nowcast_tau_steps(self, group: str) -> float:
        """Nowcast time constant of channel group ``group`` (``demand``, ``price`` or
        ``renewable``) [intervals]: its key (``nowcast_tau_h``, ``price_nowcast_tau_h``,
        ``renewable_nowcast_tau_h``), else the group's forecaster's backtest choice
        (:data:`forecasters.nowcast.BACKTEST_TAU_H_OF`); 0 when the group's forecast
        is exact (``perfect``, or the ``oracle`` on the group: an Oracle needs none, and
        the regret attribution counts the nowcast with the group's channel) and for
        prices known ahead (the published day-ahead price is no forecast to correct)."""
        from forecasters.nowcast import BACKTEST_TAU_H_OF

        name = self.group_forecaster(group)
        if name == "oracle" or (group == "price" and self.price_known_ahead):
            return 0.0
        own = {"demand": self.nowcast_tau_h, "price": self.price_nowcast_tau_h,
               "renewable": self.renewable_nowcast_tau_h}[group]
        tau = BACKTEST_TAU_H_OF[group].get(name, 0.0) if own is None else own
        return 4 * tau

    @property
    def nowcast_taus_steps(self) -> dict[str, float]:
        """Nowcast time constant per channel group that has one [intervals]
        (:data:`mpc_dc.control.mpc.NOWCAST_GROUPS`)."""
        return {g: self.group_nowcast_tau_steps(g) for g in ("demand", "price", "renewable")}

    @property
    def backlog_drain_steps(self) -> float:
        """Target time to drain an observed queue [intervals]."""
        return self.backlog_drain_h * 4

    @property
    def deadline_margin_steps(self) -> int:
        """Deadline margin [intervals]: 0 when the other-load forecast is exact (``perfect``,
        or the ``oracle`` on the ``other_load`` group). The margin hedges against
        under-forecast non-deferrable work; it belongs to that channel, so that the
        regret attribution (:mod:`mpc_dc.attribution`) counts it there."""
        if self.group_forecaster("other_load") == "oracle":
            return 0
        return round(self.deadline_margin_h * 4)

    @property
    def work_nd_level(self) -> float | None:
        """Quantile of the non-deferrable work the MPC reserves capacity for; None (the
        point forecast) at 0 or when the other-load forecast is exact (as
        :attr:`deadline_margin_steps`: the hedge belongs to that channel)."""
        if self.group_forecaster("other_load") == "oracle" or self.work_nd_quantile == 0:
            return None
        return self.work_nd_quantile


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A whole scenario file.

    Parameters
    ----------
    name : str
        Scenario name (run directories, reports).
    run, data : see their classes
    site : Site
        The campuses (:class:`mpc_dc.site.config.Site`); its ``fleet`` is
        :attr:`fleet`, attached here (the TOML has it as the top-level ``[fleet]``).
    fleet : Fleet or None
        The inference fleet; None: no LLM requests anywhere.
    workload, dr, serving, controller : see their classes
    faults : FaultSpec
        Faults injected into the run (:mod:`mpc_dc.sim.faults`; none by default).
    outages : tuple of OutageSpec
        GPU outages announced before the run (``[[outages]]``).
    """

    name: str = "default"
    run: RunSpec = field(default_factory=RunSpec)
    data: DataSpec = field(default_factory=DataSpec)
    site: Site = field(metadata={
        "expected": "a [site] table with at least one [[site.campuses]] (name, price_node)"})
    fleet: Fleet | None = None
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    dr: DrSpec = field(default_factory=DrSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    controller: ControllerSpec = field(default_factory=ControllerSpec)
    faults: FaultSpec = field(default_factory=FaultSpec)
    outages: tuple[OutageSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.site.fleet is not self.fleet:
            try:
                object.__setattr__(self, "site", replace(self.site, fleet=self.fleet))
            except ValueError as err:
                raise _refined(ConfigError(SOURCE, str(err))) from None
        self._check_gpus()
        self._check_sources()
        self._check_requests()
        self._check_dr()
        self._check_outages()

    def _check_gpus(self) -> None:
        if self.fleet is not None:
            return
        for i, c in enumerate(self.site.campuses):
            if c.gpus > 0:
                raise ConfigError(SOURCE, f"campus {c.name!r} has {c.gpus} GPUs but the "
                                  "scenario has no [fleet] to serve on them; add [fleet] or "
                                  "set gpus = 0", key=f"site.campuses[{i}].gpus")

    def _check_sources(self) -> None:
        """Every price node, carbon zone and series source must exist in the data."""
        real = self.data.source == "real"
        zones = CARBON_SOURCES if real else SYNTHETIC_CARBON
        for i, c in enumerate(self.site.campuses):
            key = f"site.campuses[{i}]"
            if c.carbon_zone not in zones:
                raise ConfigError(SOURCE, f"unknown carbon zone {c.carbon_zone!r} for "
                                  f"data.source {self.data.source!r}; expected one of "
                                  f"{', '.join(zones)}", key=f"{key}.carbon_zone")
            node = price_node(c.price_node)
            if real and node is None:
                raise ConfigError(SOURCE, f"unknown price node {c.price_node!r} for "
                                  "data.source 'real'; expected a NYISO zone (A..K, or its "
                                  "NYISO name such as CAPITL) or a CAISO hub (NP15, SP15, "
                                  "ZP26)", key=f"{key}.price_node")
            if real and node is not None and c.grid.tariff.kind == "retail" and (
                    node.market != "nyiso" or node.key not in NYISO_DA_ZONES):
                raise ConfigError(SOURCE, f"the retail tariff is built on day-ahead prices, "
                                  f"which the data have for NYISO zone "
                                  f"{', '.join(NYISO_DA_ZONES)} (CAPITL) only, not at "
                                  f"{c.price_node!r}", key=f"{key}.grid.tariff.kind")
            if c.renewable is not None and resolved_source(c.renewable.source, self) == "real" \
                    and (node is None or node.market != "nyiso"):
                raise ConfigError(SOURCE, f"real renewable data are New York wind (EIA-930), "
                                  f"for NYISO price nodes only, not {c.price_node!r}; use "
                                  "'synthetic' or 'windpowerlib'",
                                  key=f"{key}.renewable.source")

    def _check_requests(self) -> None:
        fleet = self.fleet
        if fleet is None:
            return
        if -self.workload.requests.first_day > self.run.days:
            raise ConfigError(SOURCE, f"BurstGPT's day 0 {-self.workload.requests.first_day} "
                              f"days into the run is after its end ({self.run.days} days); "
                              f"expected first_day >= {-self.run.days}",
                              key="workload.requests.first_day")
        for trace_name, model in self.workload.requests.model_map.items():
            if model not in fleet.models:
                raise ConfigError(SOURCE, f"{trace_name} maps to {model!r}, which the fleet "
                                  f"does not serve ({', '.join(fleet.models)})",
                                  key="workload.requests.model_map")
        for model in self.serving.ttft_slo_s:
            if model not in fleet.models:
                raise ConfigError(SOURCE, f"{model!r} is not served by the fleet; expected "
                                  f"one of {', '.join(fleet.models)}", key="serving.ttft_slo_s")

    def _check_dr(self) -> None:
        """Enrolled campuses exist; every DR day is a whole local day of the run."""
        names = self.site.campus_names
        for name in self.dr.campuses:
            if name not in names:
                raise ConfigError(SOURCE, f"no campus {name!r}; campuses: {', '.join(names)}",
                                  key="dr.campuses")
        start = self.run.start_ts
        end = start + pd.Timedelta(days=self.run.days)
        tz = self.run.local_tz
        for day, (first, last) in zip(self.dr.days, self.dr.local_days(tz), strict=True):
            if first < start or last > end:
                raise ConfigError(SOURCE, f"DR day {day} ({tz}, {first:%Y-%m-%d %H:%M} to "
                                  f"{last:%Y-%m-%d %H:%M} UTC) is not a whole day of the run "
                                  f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)",
                                  key="dr.days")


    def _check_outages(self) -> None:
        """Each outage names a campus with GPUs, keeps at most its GPUs and starts and
        ends inside the run."""
        start = self.run.start_ts
        end = start + pd.Timedelta(days=self.run.days)
        for i, outage in enumerate(self.outages):
            key = f"outages[{i}]"
            names = self.site.campus_names
            if outage.campus not in names:
                raise ConfigError(SOURCE, f"no campus {outage.campus!r}; campuses: "
                                  f"{', '.join(names)}", key=f"{key}.campus")
            gpus = self.site.campus(outage.campus).gpus
            if outage.gpus_available > gpus:
                raise ConfigError(SOURCE, f"expected at most the campus's {gpus} GPUs, got "
                                  f"{outage.gpus_available}", key=f"{key}.gpus_available")
            first, last = outage.span
            if first < start or last > end:
                raise ConfigError(SOURCE, f"the outage ({first:%Y-%m-%d %H:%M} to "
                                  f"{last:%Y-%m-%d %H:%M} UTC) is not inside the run "
                                  f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)",
                                  key=f"{key}.start")


# ----------------------------------------------------------------------------- old keys


OLD_KEYS: Mapping[str, str] = {
    "kind": "remove it: there is one schema (a scenario with a [fleet] table serves LLM "
            "requests)",
    "flexibility": "now fleet.flexibility",
    "dr_events": "now [dr] (days, start_hour, end_hour, in run.local_tz)",
    "site.datacenter": "now [site.campuses.other_it] (it_capacity_mw, processing) and "
                       "site.campuses[i].pue",
    "site.renewable": "now site.campuses[i].renewable (per campus)",
    "site.grid": "now site.campuses[i].grid (per campus)",
    "site.battery": "now site.campuses[i].battery (per campus)",
    "site.fleet": "now the top-level [fleet] table",
    "fleet.campuses": "now [[site.campuses]] (name, price_node, carbon_zone, gpus, pue)",
    "fleet.carbon_price_usd_per_t": "now site.carbon_price_usd_per_t",
    "fleet.dr": "now [site.dr] (reward_usd_per_kwh, penalty_usd_per_kwh, "
                "cap_fraction_of_baseline)",
    "fleet.table": "not a scenario key (the quantization table is "
                   "mpc_dc/params/quant_power_table.csv)",
    "data.zone": "now site.campuses[i].price_node",
    "data.data_dir": "now data.dir",
    "data.price_known_ahead": "now controller.price_known_ahead",
    "data.rate_multiplier": "now workload.requests.rate_multiplier",
    "data.model_map": "now workload.requests.model_map",
    "run.deferrable_share": "now site.campuses[i].other_it.deferrable_share",
    "run.window_h": "now site.campuses[i].other_it.window_h",
    "run.deferrable_release": "now site.campuses[i].other_it.release",
    "controller.fault_rate": "now faults.main_solve (the [faults] table: a rate per fault "
                             "class)",
}
"""Keys of the two schemas before the one schema → their new key (docs/scenario.md,
migration table)."""

OLD_VALUES: Mapping[tuple[str, str], str] = {
    ("data.source", "nyiso"): 'now data.source = "real"; the zone is '
                              "site.campuses[i].price_node",
    ("data.source", "caiso"): 'now data.source = "real"; the hub is '
                              "site.campuses[i].price_node",
    ("controller.kind", "rule"): 'now controller.kind = "baseline"',
}
"""Values of the schemas before the one schema → the new value."""


REMOVED_KEYS: Mapping[str, str] = {
    "site.campuses.grid.curtail_on_price":
        "removed: the plant curtailed on the realized price of the running interval, "
        "not known then (an hourly price is published at the end of its hour); it now "
        "executes the curtailment the controller commits (the MPC's: "
        "controller.curtail_confidence)",
}
"""Keys of the one schema since removed → what replaces them (docs/scenario.md,
migration table); list entries (``[i]``, ``[name]``) are not part of the match."""


def old_key_error(dotted: str, value: Any, source: str | Path) -> ConfigError | None:
    """The error for an old or removed key (or old value) at ``dotted``, or None for a
    current one."""
    for old, new in OLD_KEYS.items():
        if dotted == old or dotted.startswith(old + "."):
            return ConfigError(source, f"a key of the schema before the one schema; {new}",
                               key=old)
    bare = re.sub(r"\[[^\]]*\]", "", dotted)
    for removed, instead in REMOVED_KEYS.items():
        if bare == removed or bare.startswith(removed + "."):
            return ConfigError(source, instead, key=dotted)
    if isinstance(value, str) and (dotted, value) in OLD_VALUES:
        return ConfigError(source, f"{value!r} is a value of the schema before the one "
                           f"schema; {OLD_VALUES[dotted, value]}", key=dotted)
    return None


def _walk(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key of ``table`` (tables too) as ``(dotted key, value)``, in file order."""
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        yield dotted, value
        if isinstance(value, Mapping):
            yield from _walk(value, f"{dotted}.")
        elif isinstance(value, list):  # an array of tables: [[site.campuses]]
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _walk(item, f"{dotted}[{i}].")


def check_old_keys(table: Mapping[str, Any], source: str | Path) -> None:
    """Refuse the first key (or value) of the schemas before the one schema, in file
    order, naming the new key."""
    for dotted, value in _walk(table):
        err = old_key_error(dotted, value, source)
        if err is not None:
            raise err


# ----------------------------------------------------------------------------- load


def read_toml(path: str | Path, what: str = "scenario") -> dict[str, Any]:
    """Read a TOML file into a table, with one-line errors naming the file.

    Parameters
    ----------
    path : str or Path
    what : str
        What the file is (``"scenario"``, ``"sweep"``), for the messages.

    Raises
    ------
    ConfigError
        Missing, empty or non-UTF-8 file, or a TOML syntax error (with its line).
    """
    file = Path(path)
    if file.is_dir():
        raise ConfigError(file, f"is a directory; expected a {what} TOML file")
    if not file.is_file():
        raise ConfigError(file, f"{what} file not found")
    raw = file.read_bytes()
    if not raw.strip():
        raise ConfigError(file, f"{what} file is empty")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(
            file, f"not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
            "expected a TOML file"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(file, f"invalid TOML: {err}") from None


_FIELD_HEAD = re.compile(r"[a-z_][a-z_.]*")


def _refined(err: ConfigError, source: str | Path | None = None) -> ConfigError:
    """``err`` with the field a dataclass check names (``"gpus: expected ..."``) moved
    into the key (``site.campuses[1].gpus``) and the placeholder source replaced."""
    key, message = err.key, err.message
    head, sep, rest = message.partition(": ")
    if sep and _FIELD_HEAD.fullmatch(head):
        parts = head.split(".")
        if key:
            last = re.sub(r"\[[^\]]*\]$", "", key.rsplit(".", 1)[-1])
            if parts[0] == last:
                parts = parts[1:]
            key = ".".join([key, *parts])
        else:
            key = head
        message = rest
    named = source if source is not None and err.source == SOURCE else err.source
    return ConfigError(named, message, key=key)


def scenario_from_table(table: Mapping[str, Any], source: str | Path) -> Scenario:
    """Build and validate a :class:`Scenario` from a parsed TOML table.

    Raises
    ------
    ConfigError
        One line naming ``source`` and the key: old, unknown, missing or mistyped keys,
        out-of-range values, sources the data do not have.
    """
    check_old_keys(table, source)
    try:
        return from_mapping(Scenario, table, source)
    except ConfigError as err:
        raise _refined(err, source) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file (:func:`scenario_from_table`)."""
    file = Path(path)
    table = read_toml(file)
    if "sweep" in table:
        raise ConfigError(file, "a sweep file (mpc-dc sweep reads it), not a scenario",
                          key="sweep")
    return scenario_from_table(table, file)


def example_path(name: str) -> Path:
    """Path of a packaged example scenario (``mpc_dc/scenarios/<name>.toml``:
    ``default``, ``nyiso_wind_fleet``, ``rcdc_nyiso_wholesale`` ...)."""
    return Path(str(resources.files("mpc_dc") / "scenarios" / f"{name}.toml"))


def default_scenario() -> Scenario:
    """The embedded default (``default.toml``): the synthetic ``nyiso_wind_fleet``."""
    return load_scenario(example_path("default"))


# ----------------------------------------------------------------------------- dump, edit


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def scenario_to_mapping(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as a table (every default filled in; absent blocks left
    out), which :func:`scenario_from_table` reads back to an equal scenario."""
    table = to_mapping(scenario)
    table["site"].pop("fleet", None)
    if table.get("fleet") is not None:
        table["fleet"].pop("table", None)
    out: dict[str, Any] = _without_none(table)
    return out


_TOKEN = re.compile(r"\[([^\]]*)\]|([^.\[\]]+)")


def _index(node: list[Any], inside: str, dotted: str, source: str | Path) -> int:
    """Position in a list of tables: a number, or the ``name`` of a table in it."""
    names = [item.get("name") for item in node if isinstance(item, dict)]
    expected = (f"expected a position 0..{len(node) - 1} or a name "
                f"({', '.join(repr(n) for n in names)})" if node else "the list is empty")
    if inside.isdigit():
        if int(inside) < len(node):
            return int(inside)
        entries = "entry" if len(node) == 1 else "entries"
        raise ConfigError(source, f"no entry [{inside}]: the list has {len(node)} {entries}; "
                          f"{expected}", key=dotted)
    if inside in names:
        return names.index(inside)
    raise ConfigError(source, f"no entry named {inside!r}; {expected}", key=dotted)


def _not_a_table(node: Any, tokens: Sequence[tuple[str, str]], j: int) -> str:
    """Why the dotted key of ``tokens`` cannot go on at ``node`` (reached by
    ``tokens[:j]``; ``tokens[j]`` is a name), and the key that was likely meant."""
    def joined(part: Sequence[tuple[str, str]]) -> str:
        return "".join(f"[{b}]" if b else f".{n}" for b, n in part)

    where = joined(tokens[:j]).lstrip(".")
    if isinstance(node, list):
        meant = f"{where}[{tokens[j][1]}]{joined(tokens[j + 1:])}"
        return (f"not a table in the scenario: '{where}' is a list of tables; expected an "
                f"entry by position or name in brackets, e.g. {meant}")
    return (f"not a table in the scenario: '{where}' is a value ({node!r}); expected "
            f"'{where}' itself as the key")


def with_overrides(scenario: Scenario, overrides: Mapping[str, Any],
                   source: str | Path) -> Scenario:
    """``scenario`` with dotted-key overrides applied and validated.

    Keys as in the file, list entries by position or by name:
    ``{"controller.forecaster": "ets", "site.campuses[0].other_it.deferrable_share": 0.6,
    "site.campuses[north].renewable.nameplate_mw": 40}``. Giving a key of an absent
    optional block (``battery``) adds the block with its defaults. An old key is
    refused naming its new key.
    """
    table = scenario_to_mapping(scenario)
    for dotted, value in overrides.items():
        err = old_key_error(dotted, value, source)
        if err is not None:
            raise err
        tokens = _TOKEN.findall(dotted)
        if not tokens or "".join(f"[{b}]" if b else f".{n}" for b, n in tokens).lstrip(".") \
                != dotted:
            raise ConfigError(source, "expected a dotted key such as controller.horizon_h or "
                              "site.campuses[0].pue", key=dotted)
        node: Any = table
        for j, (bracket, name) in enumerate(tokens):
            last = j == len(tokens) - 1
            if bracket:
                if not isinstance(node, list):
                    raise ConfigError(source, "not a list of tables in the scenario",
                                      key=dotted)
                pos = _index(node, bracket, dotted, source)
                if last:
                    node[pos] = copy.deepcopy(value)
                else:
                    node = node[pos]
                continue
            if not isinstance(node, dict):
                raise ConfigError(source, _not_a_table(node, tokens, j), key=dotted)
            if last:
                node[name] = copy.deepcopy(value)
            else:
                if node.get(name) is None:
                    node[name] = {}  # an absent optional block; unknown names are refused
                node = node[name]
    return scenario_from_table(table, source)


CONTROLLER_LABELS: tuple[str, ...] = ("baseline", "rule", "mpc", "perfect", "oracle", "offline",
                                      *SCENARIOS, "fluid", "request", "fast", "nofast")
"""Labels of :func:`controller_variant` besides forecaster names (and their aliases)."""


def label_parts(label: str) -> list[str]:
    """The ``+``-separated parts of a ``compare`` / ``run --controller`` label, checked.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`, no key) an empty part, or a part that is neither one of
        :data:`CONTROLLER_LABELS` nor a forecaster name, with the nearest label.
    """
    from forecasters.base import forecaster_names

    parts = [p.strip() for p in label.split("+")]
    if not all(parts):
        raise ConfigError(SOURCE, f"expected labels joined by +, like S4+fluid, got {label!r}")
    forecasters = forecaster_names()
    for part in parts:
        if part in forecasters:
            check_forecaster(part, "controller.forecaster", day_ahead_hint=(
                "day_ahead_known is not a forecaster of every channel; set "
                "controller.price_known_ahead = true in the scenario (retail tariff) and give "
                "the label of another forecaster"))
            continue
        if part in CONTROLLER_LABELS or part in FORECASTER_ALIASES:
            continue
        known = [*CONTROLLER_LABELS, *FORECASTER_ALIASES, *forecasters]
        close = difflib.get_close_matches(part, known, n=1, cutoff=0.6)
        hint = (f"did you mean '{close[0]}'?" if close else
                f"expected one of baseline, mpc, perfect, offline, S1..S6, fluid, request, fast, "
                f"nofast or "
                f"a forecaster ({', '.join(f for f in forecasters if f != 'day_ahead_known')})"
                ", joined by + (e.g. S4+fluid)")
        where = f" in {label!r}" if part != label else ""
        raise ConfigError(SOURCE, f"unknown label {part!r}{where}; {hint}")
    return parts


def controller_variant(scenario: Scenario, label: str) -> Scenario:
    """The scenario changed by one ``compare`` / ``run --controller`` label.

    Labels: ``baseline`` (also ``rule``), ``mpc``, ``perfect`` (also ``oracle``),
    ``offline``, a forecaster name (MPC with it), ``S1``..``S6`` (fleet
    flexibility), ``fluid``/``request`` (serving fidelity), ``fast``/``nofast`` (the
    fast layer on or off); combine with ``+``, e.g. ``S4+fluid``, ``sarimax+nofast``.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`) an unknown label (:func:`label_parts`), or a flexibility
        label for a scenario without a fleet.
    """
    out = scenario
    for part in label_parts(label):
        ctl = out.controller
        if part in SCENARIOS:
            if out.fleet is None:
                raise ConfigError(SOURCE, f"flexibility {part} needs a [fleet] (inference "
                                  "pools); this scenario has none", key="fleet.flexibility")
            out = replace(out, fleet=replace(out.fleet, flexibility=part))
        elif part in ("fluid", "request"):
            fidelity: FidelityName = "fluid" if part == "fluid" else "request"
            out = replace(out, serving=replace(out.serving, fidelity=fidelity))
        elif part in ("fast", "nofast"):
            out = replace(out, controller=replace(ctl, fast_layer=replace(
                ctl.fast_layer, enabled=part == "fast")))
        elif part in ("baseline", "rule"):
            out = replace(out, controller=replace(ctl, kind="baseline"))
        elif part in ("perfect", "oracle"):
            out = replace(out, controller=replace(ctl, kind="perfect"))
        elif part in ("offline", "mpc"):
            kind: ControllerKind = "offline" if part == "offline" else "mpc"
            out = replace(out, controller=replace(ctl, kind=kind))
        else:
            forecaster = FORECASTER_ALIASES.get(part, part)
            out = replace(out, controller=replace(ctl, kind="mpc", forecaster=forecaster))
    return out


__all__ = [
    "CHANNEL_GROUPS",
    "CONTROLLER_LABELS",
    "OLD_KEYS",
    "OLD_VALUES",
    "REMOVED_KEYS",
    "SOURCE",
    "ChannelSpec",
    "ControllerSpec",
    "DataSpec",
    "DrSpec",
    "OutageSpec",
    "RequestsSpec",
    "RunSpec",
    "Scenario",
    "ServingSpec",
    "WorkloadSpec",
    "check_old_keys",
    "controller_variant",
    "default_scenario",
    "errors_name",
    "example_path",
    "label_parts",
    "load_scenario",
    "read_toml",
    "scenario_from_table",
    "scenario_to_mapping",
    "with_overrides",
]
