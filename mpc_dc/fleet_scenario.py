"""Fleet scenarios: a TOML file (``kind = "fleet"``) into frozen dataclasses, then a closed loop.

A fleet scenario names the run period, the data source, the inference fleet
(campuses, models, costs: :mod:`mpc_dc.params.fleet`), the flexibility scenario
S1..S6, the serving fidelity and the controller. :func:`run_fleet_scenario`
builds the exogenous series and the requests, runs the controller closed-loop
through :func:`mpc_dc.sim.fleet_engine.simulate_fleet` and writes a run
directory; :func:`compare_fleet` runs one scenario under several labels
(controllers, flexibility scenarios, fidelities) on identical data.

Data sources
------------
Each campus's price is its ``price_node``'s and its carbon intensity its
``carbon_zone``'s; a node or zone the source does not have is refused when the
scenario is read (``mpc-dc scenario check`` says so), and a series that does not
cover history + run + horizon when the data are read (``scenario check`` reads
them too). DR days must be whole local days of the run.

``synthetic``
    Requests from the calibrated generator (:func:`traces.synthetic.synth_requests`
    through :func:`mpc_dc.sim.arrivals.build_arrivals`); prices from
    :func:`traces.synthetic.synth_lmp` (the calibrated NYISO zone-J model, one seed
    per distinct ``price_node``, which is only a label here); carbon intensity per
    zone of :data:`SYNTHETIC_CARBON`: the zone's mean intensity by local hour of the
    day in its Electricity Maps file (:func:`carbon_hour_profile`) times seeded
    hourly noise (±5 %, uniform); runs without ``../shared``.
``caiso``
    CAISO 2021 15-min RT LMP at each campus's hub (:data:`CAISO_HUBS`), Electricity
    Maps hourly carbon intensity of each campus's zone (:data:`CARBON_SOURCES`: a zone
    whose file does not cover the period is refused), BurstGPT placed as the DR
    study places it (:func:`mpc_dc.studies.dr.load_dr_data`): its day 0, hour 0 at
    the run start, so the run's day ``k`` is BurstGPT's day ``k``. The real v1 rows
    (trace seconds 5 to 37,274) are replayed from the run start, then the generator
    on BurstGPT's real hourly counts; run + horizon must lie within BurstGPT's 61
    days. No BurstGPT request precedes its day 0: the forecaster history before the
    run comes from the generator's calibrated ``conversation`` stream, because
    BurstGPT's first week is conversation traffic; the calibrated API stream, fitted
    on all 61 days, would show the forecasters a history at several times the run's
    rate (figures: docs/fleet_closed_loop.md).

KPIs beyond the simulator's (:func:`mpc_dc.sim.fleet_engine.fleet_kpis`): cost
components as in the optimizer's objective, realized: switching (start cost ×
GPUs of every instance increase), quality (points × tokens decoded), DR reward
and penalty settled on metered campus power against the baseline, unserved
tokens at the unserved price; ``total_usd`` is their sum (reward subtracted).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mpc_dc.config import RunPeriod, from_mapping, grid_start, positive
from mpc_dc.fleet_controller import FleetMpcPolicy, FleetObservation, RuleFleetPolicy, solve_day
from mpc_dc.fleet_problem import FleetInputs, FleetProblem, FleetSolverOptions
from mpc_dc.params.fleet import (
    SCENARIOS,
    CampusParams,
    DemandResponseParams,
    FleetConfig,
)
from mpc_dc.sim.arrivals import (
    DEFAULT_MODEL_MAP,
    STEP_S,
    ArrivalConfig,
    ArrivalStats,
    RequestArrays,
    build_arrivals,
)
from mpc_dc.sim.fleet_engine import (
    FleetExogenous,
    FleetRunResult,
    ServingConfig,
    simulate_fleet,
    slo_by_pool_interval,
)
from traces.datasets import caiso_carbon, ny_carbon
from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY, GapPolicy, Publication, TraceMetadata

logger = logging.getLogger(__name__)

TZ = "America/Los_Angeles"
SOURCE = "<fleet scenario>"
FidelityName = Literal["request", "fluid"]
FleetControllerKind = Literal["rule", "mpc", "perfect"]

CAISO_HUBS: tuple[str, ...] = ("NP15", "SP15", "ZP26")
"""Price nodes of ``data.source = "caiso"``: the hubs of the CAISO 2021 RT files."""

CAISO_YEAR = 2021
"""Year of the CAISO RT price files (:data:`traces.datasets.CAISO_RT_FILES`)."""

CARBON_SOURCES: Mapping[str, Callable[[Path], tuple[pd.DataFrame, TraceMetadata]]] = {
    "US-CAL-CISO": caiso_carbon,
    "US-NY-NYIS": ny_carbon,
}
"""Carbon zones of ``data.source = "caiso"`` and the reader of each zone's Electricity
Maps hourly file (US-CAL-CISO 2021, US-NY-NYIS 2022; the file must cover the run's
history + run + horizon)."""

BURSTGPT_FIRST400_FILE = "burstgpt/burstgpt_v1_first400.csv"
"""The first 400 BurstGPT v1 request rows (trace seconds 5 to 37,274)."""

HISTORY_COUNT_STREAMS: tuple[str, ...] = ("conversation",)
"""Calibrated count streams of the ``caiso`` history before BurstGPT's day 0
(module docstring)."""


@dataclass(frozen=True)
class SyntheticCarbonZone:
    """Synthetic carbon intensity of one zone.

    Parameters
    ----------
    tz : str
        The zone's clock (its daily profile is read on it).
    hour_profile_gco2_per_kwh : tuple of float [gCO2/kWh]
        Mean intensity by local hour 0..23 (:func:`carbon_hour_profile` of the
        zone's file, rounded to 1 gCO2/kWh).
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
"""Carbon zones of ``data.source = "synthetic"`` (tests/test_fleet_scenario_sources.py
recomputes the profiles from the files)."""


def carbon_hour_profile(data_dir: Path, zone: str) -> tuple[float, ...]:
    """Mean carbon intensity of ``zone`` by local hour of the day over its file [gCO2/kWh].

    How :data:`SYNTHETIC_CARBON` was made: the hourly values of the zone's
    Electricity Maps file (:data:`CARBON_SOURCES`) averaged per hour 0..23 of the
    zone's clock, rounded to 1 gCO2/kWh.
    """
    frame, _ = CARBON_SOURCES[zone](data_dir)
    hourly = frame["carbon_gco2_per_kwh"].iloc[::4]  # HOLD: one value per hour
    local = pd.DatetimeIndex(hourly.index).tz_convert(SYNTHETIC_CARBON[zone].tz)
    means = hourly.groupby(local.hour).mean()
    return tuple(float(round(means[h])) for h in range(24))


@dataclass(frozen=True)
class FleetRunSpec(RunPeriod):
    """The run period.

    Parameters
    ----------
    start : str
        First interval start, ISO 8601 UTC on the 15-min grid.
    days : float [d]
    history_days : int [d]
        Data before ``start`` the forecasters are fitted on.
    seed : int
        Seed of the generators (arrivals, synthetic prices and carbon).
    """

    start: str = "2022-04-04T07:00:00Z"
    days: float = 2.0
    history_days: int = 7
    seed: int = 2

    def __post_init__(self) -> None:
        positive(SOURCE, "run.days", self.days)
        positive(SOURCE, "run.history_days", self.history_days, allow_zero=True)
        if self.days > 366 or self.history_days > 366:
            raise ConfigError(SOURCE, "expected at most 366 days", key="run.days")
        grid_start(SOURCE, "run.start", self.start)
        if self.start_ts.minute:
            # Carbon (both sources) and the synthetic LMP are hourly, published at the
            # end of each hour: a history ending inside an hour would hold unpublished
            # quarters (FleetExogenous refuses it too).
            raise ConfigError(SOURCE, f"expected a start on the hour (hourly series are "
                              f"published at the end of each hour), got {self.start!r}",
                              key="run.start")


@dataclass(frozen=True)
class FleetDataSpec:
    """Exogenous series and requests.

    Parameters
    ----------
    source : {"synthetic", "caiso"}
        Module docstring, "Data sources".
    data_dir : str
        Public data folder (``caiso``); ``MPC_DC_DATA`` replaces it when set.
    rate_multiplier : float [-]
        Superposes this many independent request streams (thinning below 1; see
        :mod:`mpc_dc.sim.arrivals`, rule 4).
    model_map : Mapping[str, str]
        Trace model name (``ChatGPT``, ``GPT-4``) to served model family.
    """

    source: Literal["synthetic", "caiso"] = "synthetic"
    data_dir: str = "../shared/data"
    rate_multiplier: float = 1.0
    model_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODEL_MAP))

    def __post_init__(self) -> None:
        positive(SOURCE, "data.rate_multiplier", self.rate_multiplier)
        from traces.synthetic import load_figures

        names = load_figures().tokens.model_names  # BurstGPT's, which the generator uses
        for trace_name in self.model_map:
            if trace_name not in names:
                raise ConfigError(SOURCE, f"{trace_name!r} is not a model name of the "
                                  f"requests; expected one of {', '.join(names)}",
                                  key="data.model_map")


@dataclass(frozen=True)
class FleetSpec:
    """The fleet (see :class:`mpc_dc.params.fleet.FleetConfig`; levers set by ``flexibility``).

    Parameters
    ----------
    campuses : tuple of CampusParams
    models : tuple of str
    utilization_cap : float [-]
    start_cost_usd_per_gpu : float [$/GPU start]
    quality_budget_pct_points : float [points]
    quality_cost_usd_per_point_mtok : float [$/(point · Mtoken)]
    carbon_price_usd_per_t : float [$/tCO2]
    unserved_penalty_usd_per_mtok : float [$/Mtoken]
    dr : DemandResponseParams
    """

    campuses: tuple[CampusParams, ...] = FleetConfig.campuses
    models: tuple[str, ...] = ("qwen3-32b", "qwen3-235b-a22b")
    utilization_cap: float = 0.85
    start_cost_usd_per_gpu: float = 0.05
    quality_budget_pct_points: float = 0.2
    quality_cost_usd_per_point_mtok: float = 0.001
    carbon_price_usd_per_t: float = FleetConfig.carbon_price_usd_per_t
    unserved_penalty_usd_per_mtok: float = 1000.0
    dr: DemandResponseParams = field(default_factory=DemandResponseParams)

    def config(self, flexibility: str) -> FleetConfig:
        """The :class:`FleetConfig` with the levers of scenario ``flexibility``."""
        kwargs = {f: getattr(self, f) for f in self.__dataclass_fields__}
        return FleetConfig(flexibility=SCENARIOS[flexibility], **kwargs)


@dataclass(frozen=True)
class DrEventSpec:
    """Demand-response events (settled against the S1 business-as-usual day plan).

    Parameters
    ----------
    days : tuple of str
        Local (Pacific) days with an event, ``YYYY-MM-DD``; each a whole day of the run
        (checked by :class:`FleetScenario`).
    start_hour, end_hour : int [h, Pacific]
        Event hours ``[start_hour, end_hour)``, ``0 <= start_hour < end_hour <= 24``.
    """

    days: tuple[str, ...] = ()
    start_hour: int = 16
    end_hour: int = 21

    def __post_init__(self) -> None:
        for day in self.days:
            try:  # fromisoformat alone also takes 20210709
                valid = len(day) == 10 and bool(date.fromisoformat(day))
            except ValueError:
                valid = False
            if not valid:
                raise ConfigError(SOURCE, f"expected a date YYYY-MM-DD, got {day!r}",
                                  key="dr_events.days")
        if not 0 <= self.start_hour < 24:
            raise ConfigError(SOURCE, f"expected an hour 0..23, got {self.start_hour}",
                              key="dr_events.start_hour")
        if not self.start_hour < self.end_hour <= 24:
            raise ConfigError(SOURCE, f"expected an hour after start_hour "
                              f"({self.start_hour}) and <= 24, got {self.end_hour}",
                              key="dr_events.end_hour")

    def local_days(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Start and end of each event day [UTC]: Pacific midnight to midnight."""
        out = []
        for day in self.days:
            first = pd.Timestamp(day)
            out.append((first.tz_localize(TZ).tz_convert("UTC"),
                        (first + pd.Timedelta(days=1)).tz_localize(TZ).tz_convert("UTC")))
        return out


@dataclass(frozen=True)
class FleetServingSpec:
    """Serving fidelity and SLO.

    Parameters
    ----------
    fidelity : {"request", "fluid"}
    default_ttft_slo_s : float [s]
    ttft_slo_s : Mapping[str, float] [s]
        Per-model TTFT targets.
    tpot_slo_s : Mapping[str, float] [s/token]
        Per-model targets on the time per output token after the first; the pool's
        quantization-table ITL SLO otherwise.
    request_samples : int
        Per-request rows written to ``requests.parquet`` (seeded uniform sample).
    """

    fidelity: FidelityName = "request"
    default_ttft_slo_s: float = 2.0
    ttft_slo_s: Mapping[str, float] = field(default_factory=dict)
    tpot_slo_s: Mapping[str, float] = field(default_factory=dict)
    request_samples: int = 200_000

    def config(self) -> ServingConfig:
        """The simulator's :class:`ServingConfig`."""
        return ServingConfig(fidelity=self.fidelity, ttft_slo_s=dict(self.ttft_slo_s),
                             default_ttft_slo_s=self.default_ttft_slo_s,
                             tpot_slo_s=dict(self.tpot_slo_s),
                             request_samples=self.request_samples)


def _quarter_hours(hours: float) -> bool:
    """Whether ``hours`` is a whole number of 15-min intervals."""
    return abs(hours * 4 - round(hours * 4)) <= 1e-9


@dataclass(frozen=True)
class FleetControllerSpec:
    """The fleet controller.

    Parameters
    ----------
    kind : {"rule", "mpc", "perfect"}
        ``rule``: BF16 at fixed shares sized for a persistence forecast; ``mpc``:
        :class:`FleetMpcPolicy` with ``forecaster``; ``perfect``: the MPC with Oracle
        forecasts.
    forecaster : str
        Forecaster of demand, prices and carbon (``forecasters.presets.make_for``).
    horizon_h : float [h]
    min_instances_per_model : int [instances]
        Warm floor per model.
    time_limit_s : float [s]
        HiGHS limit per solve.
    demand_quantile : float [-]
        The MPC provisions for this quantile of the demand forecast (0 = the point
        forecast); hedges against bursts between the forecaster's view and reality.
    fine_horizon_h : float [h]
        Multi-resolution horizon: 15-min intervals up to this lead (default 8 h),
        coarser ones (``coarse_step_h``) beyond; at least ``horizon_h``: 15 min
        throughout. Speed and cost: docs/performance.md.
    coarse_step_h : float [h]
        Interval length beyond ``fine_horizon_h``; a multiple of 0.25 h.
    far_horizon_h : float [h]
        Lead from which ``far_step_h`` intervals are used (default 24 h; taken as at
        least ``fine_horizon_h``); at least ``horizon_h``: no far tier.
    far_step_h : float [h]
        Interval length beyond ``far_horizon_h`` (default 4 h); a multiple of 0.25 h.
    """

    kind: FleetControllerKind = "mpc"
    forecaster: str = "seasonal_naive_daily"
    horizon_h: float = 24.0
    min_instances_per_model: int = 1
    time_limit_s: float = 5.0
    demand_quantile: float = 0.9
    fine_horizon_h: float = 8.0
    coarse_step_h: float = 1.0
    far_horizon_h: float = 24.0
    far_step_h: float = 4.0

    def __post_init__(self) -> None:
        positive(SOURCE, "controller.horizon_h", self.horizon_h)
        for key in ("fine_horizon_h", "coarse_step_h", "far_horizon_h", "far_step_h"):
            value = getattr(self, key)
            if value < 0.25 or not _quarter_hours(value):
                raise ConfigError(SOURCE, f"expected a multiple of 0.25 h, >= 0.25, got "
                                  f"{value}", key=f"controller.{key}")
        if not 0.0 <= self.demand_quantile < 1.0:
            raise ConfigError(SOURCE, f"expected a value in [0, 1), got {self.demand_quantile}",
                              key="controller.demand_quantile")
        positive(SOURCE, "controller.time_limit_s", self.time_limit_s)
        from forecasters.base import forecaster_names

        if self.forecaster not in forecaster_names():
            raise ConfigError(SOURCE, f"unknown forecaster {self.forecaster!r}; known: "
                              f"{', '.join(forecaster_names())}", key="controller.forecaster")
        if self.forecaster == "day_ahead_known":
            raise ConfigError(SOURCE, "day_ahead_known needs published day-ahead prices, which "
                              "the fleet data do not have; choose another forecaster",
                              key="controller.forecaster")

    @property
    def horizon_steps(self) -> int:
        """H [intervals]."""
        return max(1, round(self.horizon_h * 4))

    def solver_options(self) -> FleetSolverOptions:
        """HiGHS limit and horizon resolution of the fleet problem."""
        return FleetSolverOptions(
            time_limit_s=self.time_limit_s,
            fine_steps=max(1, round(self.fine_horizon_h * 4)),
            coarse_block_steps=max(1, round(self.coarse_step_h * 4)),
            far_start_steps=round(max(self.far_horizon_h, self.fine_horizon_h) * 4),
            far_block_steps=max(1, round(self.far_step_h * 4)))


@dataclass(frozen=True)
class FleetScenario:
    """A whole fleet scenario file.

    Parameters
    ----------
    kind : str
        Always ``"fleet"`` (what ``mpc-dc run`` dispatches on).
    name : str
    flexibility : str
        ``S1`` .. ``S6`` (:data:`mpc_dc.params.fleet.SCENARIOS`).
    run, data, fleet, dr_events, serving, controller : see their classes
    """

    kind: Literal["fleet"] = "fleet"
    name: str = "fleet"
    flexibility: str = "S6"
    run: FleetRunSpec = field(default_factory=FleetRunSpec)
    data: FleetDataSpec = field(default_factory=FleetDataSpec)
    fleet: FleetSpec = field(default_factory=FleetSpec)
    dr_events: DrEventSpec = field(default_factory=DrEventSpec)
    serving: FleetServingSpec = field(default_factory=FleetServingSpec)
    controller: FleetControllerSpec = field(default_factory=FleetControllerSpec)

    def __post_init__(self) -> None:
        if self.flexibility not in SCENARIOS:
            raise ConfigError(SOURCE, f"expected one of {sorted(SCENARIOS)}, got "
                              f"{self.flexibility!r}", key="flexibility")
        models = set(self.fleet.models)
        for trace_name, model in self.data.model_map.items():
            if model not in models:
                raise ConfigError(SOURCE, f"{trace_name} maps to {model!r}, which the fleet "
                                  f"does not serve ({', '.join(self.fleet.models)})",
                                  key="data.model_map")
        self._check_gpu_limits()
        self._check_sources()
        self._check_dr_days()

    def _check_sources(self) -> None:
        """Every campus's price node and carbon zone must exist in the data source."""
        caiso = self.data.source == "caiso"
        zones = CARBON_SOURCES if caiso else SYNTHETIC_CARBON
        for i, c in enumerate(self.fleet.campuses):
            if caiso and c.price_node not in CAISO_HUBS:
                raise ConfigError(SOURCE, f"unknown price node {c.price_node!r} for data.source "
                                  f"'caiso'; expected one of {', '.join(CAISO_HUBS)}",
                                  key=f"fleet.campuses[{i}].price_node")
            if c.carbon_zone not in zones:
                raise ConfigError(SOURCE, f"unknown carbon zone {c.carbon_zone!r} for "
                                  f"data.source {self.data.source!r}; expected one of "
                                  f"{', '.join(zones)}", key=f"fleet.campuses[{i}].carbon_zone")

    def _check_dr_days(self) -> None:
        """Every DR day must be a whole local day of the run (its baseline is a day plan)."""
        start = self.run.start_ts
        end = start + pd.Timedelta(days=self.run.days)
        for day, (first, last) in zip(self.dr_events.days, self.dr_events.local_days(),
                                      strict=True):
            if first < start or last > end:
                raise ConfigError(SOURCE, f"DR day {day} (Pacific, {first:%Y-%m-%d %H:%M} to "
                                  f"{last:%Y-%m-%d %H:%M} UTC) is not a whole day of the run "
                                  f"({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC)",
                                  key="dr_events.days")

    def _check_gpu_limits(self) -> None:
        """Every served model must fit on some campus in at least one allowed precision."""
        cfg = self.config
        largest = max((c.gpus for c in cfg.campuses), default=0)
        for model in cfg.models:
            need = min(cfg.table.get(model, q).gpus_per_instance for q in cfg.precisions(model))
            if need > largest:
                raise ConfigError(
                    SOURCE,
                    f"model {model} needs at least {need} GPUs per instance in the allowed "
                    f"precisions ({', '.join(cfg.precisions(model))}) but the largest campus "
                    f"has {largest}; no schedule can serve it",
                    key="fleet.campuses",
                )

    @property
    def config(self) -> FleetConfig:
        """The fleet configuration with this scenario's levers."""
        return self.fleet.config(self.flexibility)


def fleet_scenario_from_table(table: Mapping[str, Any], source: str | Path) -> FleetScenario:
    """Build and validate a :class:`FleetScenario` (unknown keys rejected, named)."""
    with errors_name(source):
        try:
            return from_mapping(FleetScenario, table, source)
        except KeyError as err:  # an unknown model of the quantization table
            raise ConfigError(source, str(err).strip("'\""), key="fleet.models") from None


@contextmanager
def errors_name(source: str | Path) -> Iterator[None]:
    """A scenario's :class:`ConfigError` inside the block names ``source`` (its file).

    Checks that need more than the table (the data, in :func:`fleet_sources`;
    overrides through ``dataclasses.replace``) raise with the placeholder
    :data:`SOURCE`; the commands that read the file name it.
    """
    try:
        yield
    except ConfigError as err:
        if str(err.source) == SOURCE:
            raise ConfigError(source, err.message, key=err.key) from None
        raise


def load_fleet_scenario(path: str | Path) -> FleetScenario:
    """Read and validate a fleet scenario TOML file (``kind = "fleet"``)."""
    from mpc_dc.scenario import read_toml

    file = Path(path)
    return fleet_scenario_from_table(read_toml(file), file)


def fleet_example_path(name: str) -> Path:
    """Path of a packaged example (``fleet_default``, ``dr_caiso``)."""
    from importlib import resources

    return Path(str(resources.files("mpc_dc") / "scenarios" / f"{name}.toml"))


# ----------------------------------------------------------------------------- build a run


@dataclass(frozen=True)
class FleetData:
    """Everything a run needs besides the policy.

    Attributes
    ----------
    exo : FleetExogenous
        Realized prices and carbon of the run.
    requests : RequestArrays
        The run's requests (seconds from the run start).
    history : DataFrame
        Forecaster history: ``demand_tokens_per_s[M]``, ``lmp_usd_per_mwh[NODE]``,
        ``carbon_gco2_per_kwh[CAMPUS]`` before the run.
    truth : DataFrame
        The same columns over history, run and one horizon after (Oracle truth).
    dr_event : DataFrame or None
        1 in event intervals, one column per campus.
    """

    exo: FleetExogenous
    requests: RequestArrays
    history: pd.DataFrame
    truth: pd.DataFrame
    dr_event: pd.DataFrame | None


@dataclass(frozen=True)
class FleetSources:
    """The exogenous series of a scenario over history + run + horizon.

    Attributes
    ----------
    index : DatetimeIndex
        The 15-min grid of history + run + horizon (UTC).
    prices : dict[str, ndarray] [$/MWh]
        Per price node.
    carbon : dict[str, ndarray] [gCO2/kWh]
        Per carbon zone.
    publication : dict[str, Publication]
        When each kind of series (``"lmp"``, ``"carbon"``) is observable: the readers'
        metadata, or for the synthetic generator the end of its hour.
    counts : DataFrame or None
        ``caiso``: BurstGPT's hourly request rates placed from the run start
        (:func:`traces.datasets.burstgpt_hourly_counts`).
    rows : DataFrame or None
        ``caiso``: BurstGPT's first request rows
        (:func:`traces.burstgpt.read_burstgpt_requests`, both policies ``KEEP``).
    """

    index: pd.DatetimeIndex
    prices: dict[str, np.ndarray]
    carbon: dict[str, np.ndarray]
    publication: dict[str, Publication]
    counts: pd.DataFrame | None = None
    rows: pd.DataFrame | None = None


def fleet_index(scenario: FleetScenario) -> pd.DatetimeIndex:
    """The 15-min grid of history + run + one horizon after the run (UTC)."""
    run = scenario.run
    hist = run.history_days * STEPS_PER_DAY
    return pd.date_range(run.start_ts - hist * STEP,
                         periods=hist + run.n_steps + scenario.controller.horizon_steps,
                         freq=STEP, name="interval_start_utc")


def fleet_sources(scenario: FleetScenario) -> FleetSources:
    """Read (``caiso``) or generate (``synthetic``) the scenario's exogenous series.

    :func:`build_fleet_data` starts with it, and ``mpc-dc scenario check`` runs it, so
    the check refuses what a run would refuse for its data.

    Raises
    ------
    ConfigError
        (source :data:`SOURCE`) naming the scenario key when a series does not cover
        history + run + horizon: ``data.data_dir`` (no data folder), ``run.start``
        (prices), ``fleet.campuses[i].carbon_zone`` (the zone's carbon file),
        ``run.days`` (BurstGPT's 61 days from the run start).
    TraceError
        A data file missing or malformed (named, with the line).
    """
    from traces.burstgpt import read_burstgpt_requests

    index = fleet_index(scenario)
    if scenario.data.source == "synthetic":
        from traces import synthetic

        # The generator's LMP and the hourly-noise carbon stand for hourly sources:
        # observable at the end of their hour.
        return FleetSources(index, _synthetic_prices(scenario, index),
                            _synthetic_carbon(scenario, index),
                            {"lmp": synthetic.PUBLICATION["lmp"],
                             "carbon": Publication(pd.Timedelta(hours=1))})
    data_dir = _data_dir(scenario)
    rows, _ = read_burstgpt_requests(data_dir / BURSTGPT_FIRST400_FILE)
    prices, price_publication = _caiso_prices(scenario, data_dir, index)
    carbon, carbon_publication = _real_carbon(scenario, data_dir, index)
    return FleetSources(index, prices, carbon,
                        {"lmp": price_publication, "carbon": carbon_publication},
                        _burstgpt_counts(scenario, data_dir, index),
                        rows.reset_index(drop=True))


def build_fleet_data(scenario: FleetScenario) -> FleetData:
    """Exogenous series, requests, history and truth of a scenario."""
    run, cfg = scenario.run, scenario.config
    H = scenario.controller.horizon_steps
    hist = run.history_days * STEPS_PER_DAY
    sources = fleet_sources(scenario)
    index = sources.index
    total = len(index)
    arrival = ArrivalConfig(rate_multiplier=scenario.data.rate_multiplier,
                            model_map=dict(scenario.data.model_map), seed=run.seed)
    # The requests of history + run do not depend on the horizon (a horizon sweep
    # compares controllers on one request stream); the horizon after the run, seen
    # only by forecasts and the Oracle, is generated on its own seed.
    upto_s = (hist + run.n_steps) * STEP_S
    tail = build_arrivals(index[hist + run.n_steps], H * STEP_S, _stream(arrival, 101),
                          models=cfg.models, hourly_counts=sources.counts)
    if sources.counts is None or sources.rows is None:
        upto = build_arrivals(index[0], upto_s, arrival, models=cfg.models)
    else:
        upto = _burstgpt_requests(scenario, index[: hist + run.n_steps], arrival,
                                  sources.counts, sources.rows)
    all_requests = _concat_requests(upto, tail, upto_s)
    exo_cols: dict[str, np.ndarray] = {}
    truth_cols: dict[str, np.ndarray] = {}
    publication: dict[str, Publication] = {}
    for c in cfg.campuses:
        exo_cols[f"lmp_usd_per_mwh[{c.price_node}]"] = sources.prices[c.price_node]
        exo_cols[f"carbon_gco2_per_kwh[{c.carbon_zone}]"] = sources.carbon[c.carbon_zone]
        publication[f"lmp_usd_per_mwh[{c.price_node}]"] = sources.publication["lmp"]
        publication[f"carbon_gco2_per_kwh[{c.carbon_zone}]"] = sources.publication["carbon"]
        truth_cols[f"lmp_usd_per_mwh[{c.price_node}]"] = sources.prices[c.price_node]
        truth_cols[f"carbon_gco2_per_kwh[{c.name}]"] = sources.carbon[c.carbon_zone]
    agg = all_requests.per_interval(total)
    for m, model in enumerate(cfg.models):
        truth_cols[f"demand_tokens_per_s[{model}]"] = agg["response_tokens"][:, m] / STEP_S
    truth = pd.DataFrame(truth_cols, index=index)
    frame = pd.DataFrame(exo_cols, index=index).iloc[hist: hist + run.n_steps]
    requests = _window(all_requests, hist * STEP_S, run.n_steps * STEP_S)
    return FleetData(FleetExogenous(frame, publication), requests, truth.iloc[:hist], truth,
                     _dr_events(scenario, index))


def _stream(arrival: ArrivalConfig, tag: int) -> ArrivalConfig:
    """``arrival`` with a seed of its own for one part of the requests (101: the
    horizon after the run; 102: the ``caiso`` history before BurstGPT's day 0)."""
    seed = int(np.random.SeedSequence([arrival.seed, tag]).generate_state(1)[0])
    return replace(arrival, seed=seed)


def _concat_requests(first: RequestArrays, then: RequestArrays, at_s: float,
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


def _window(req: RequestArrays, from_s: float, length_s: float) -> RequestArrays:
    """Requests in ``[from_s, from_s + length_s)``, re-timed to start at 0."""
    lo, hi = np.searchsorted(req.arrival_s, [from_s, from_s + length_s], side="left")
    sl = slice(int(lo), int(hi))
    return RequestArrays(req.arrival_s[sl] - from_s, req.model[sl], req.request_tokens[sl],
                         req.response_tokens[sl], req.source[sl], req.models, req.stats)


def _synthetic_prices(scenario: FleetScenario, index: pd.DatetimeIndex
                      ) -> dict[str, np.ndarray]:
    """One seeded series of the calibrated LMP model per distinct price node [$/MWh]."""
    from traces import synthetic

    days = math.ceil(len(index) / STEPS_PER_DAY) + 1
    day0 = index[0].floor("D")
    seed = scenario.run.seed
    prices: dict[str, np.ndarray] = {}
    for i, c in enumerate(scenario.fleet.campuses):
        if c.price_node not in prices:
            lmp = synthetic.synth_lmp(day0, days, seed + 17 * i)
            prices[c.price_node] = lmp.iloc[:, 0].reindex(index).to_numpy(dtype=float)
    return prices


def _synthetic_carbon(scenario: FleetScenario, index: pd.DatetimeIndex
                      ) -> dict[str, np.ndarray]:
    """Per zone: its :data:`SYNTHETIC_CARBON` profile on its clock × hourly noise
    U(0.95, 1.05), seeded by the run seed and the zone [gCO2/kWh]."""
    hours, position = np.unique(np.asarray(index.floor("h")), return_inverse=True)
    carbon: dict[str, np.ndarray] = {}
    for c in scenario.fleet.campuses:
        zone = c.carbon_zone
        if zone in carbon:
            continue
        spec = SYNTHETIC_CARBON[zone]
        profile = np.asarray(spec.hour_profile_gco2_per_kwh, dtype=float)
        local_hour = np.asarray(index.tz_convert(spec.tz).hour)
        rng = np.random.default_rng(np.random.SeedSequence(
            [scenario.run.seed, 23, list(SYNTHETIC_CARBON).index(zone)]))
        noise = 1.0 + 0.05 * rng.uniform(-1.0, 1.0, hours.size)
        carbon[zone] = profile[local_hour] * noise[position]
    return carbon


def _data_dir(scenario: FleetScenario) -> Path:
    """The data folder (``MPC_DC_DATA`` or ``data.data_dir``); it must exist."""
    path = Path(os.environ.get("MPC_DC_DATA") or scenario.data.data_dir)
    if not path.is_dir():
        raise ConfigError(SOURCE, f"data folder {path} not found; data.source "
                          f"{scenario.data.source!r} reads it (or set MPC_DC_DATA)",
                          key="data.data_dir")
    return path


def _span(index: pd.DatetimeIndex) -> str:
    """``first to end`` of a grid [UTC], the end being the last interval's end."""
    return f"{index[0]:%Y-%m-%d %H:%M} to {index[-1] + STEP:%Y-%m-%d %H:%M} UTC"


def _missing(series: pd.Series, index: pd.DatetimeIndex, what: str, key: str) -> None:
    """Raise naming ``key`` when ``series`` (a source on the grid) misses part of ``index``."""
    on_grid = series.reindex(index)
    if on_grid.isna().any():
        have = series.dropna().index
        covers = _span(pd.DatetimeIndex(have)) if len(have) else "nothing"
        raise ConfigError(SOURCE, f"{what} covers {covers}; history + run + horizon need "
                          f"{_span(index)} ({int(on_grid.isna().sum())} intervals missing)",
                          key=key)


def _caiso_prices(scenario: FleetScenario, data_dir: Path, index: pd.DatetimeIndex
                  ) -> tuple[dict[str, np.ndarray], Publication]:
    """CAISO RT LMP at each campus's hub [$/MWh] (gaps of up to 1 h interpolated), and
    when it is observable (the reader's metadata)."""
    from traces.datasets import caiso_rt_lmp

    lmp, meta = caiso_rt_lmp(data_dir, CAISO_YEAR, gap_policy=GapPolicy.INTERPOLATE)
    prices: dict[str, np.ndarray] = {}
    for c in scenario.fleet.campuses:
        series = lmp[f"lmp_usd_per_mwh[{c.price_node}]"]
        _missing(series, index, f"CAISO RT prices at {c.price_node} ({meta.source})",
                 "run.start")
        prices[c.price_node] = series.reindex(index).to_numpy(dtype=float)
    return prices, meta.publication


def _real_carbon(scenario: FleetScenario, data_dir: Path, index: pd.DatetimeIndex
                 ) -> tuple[dict[str, np.ndarray], Publication]:
    """Each campus zone's Electricity Maps carbon intensity [gCO2/kWh], and when it is
    observable (the latest publication of the zones' readers)."""
    carbon: dict[str, np.ndarray] = {}
    publication = Publication()
    for i, c in enumerate(scenario.fleet.campuses):
        if c.carbon_zone in carbon:
            continue
        frame, meta = CARBON_SOURCES[c.carbon_zone](data_dir)
        kappa = frame["carbon_gco2_per_kwh"]
        _missing(kappa, index, f"{c.carbon_zone} carbon intensity ({meta.source})",
                 f"fleet.campuses[{i}].carbon_zone")
        carbon[c.carbon_zone] = kappa.reindex(index).to_numpy(dtype=float)
        publication = max(publication, meta.publication,
                          key=lambda p: p.source_step + p.lag)
    return carbon, publication


def _burstgpt_counts(scenario: FleetScenario, data_dir: Path, index: pd.DatetimeIndex
                     ) -> pd.DataFrame:
    """BurstGPT's real hourly request rates, its day 0, hour 0 at the run start (as the
    DR study places it); run + horizon must lie inside them."""
    from traces.datasets import burstgpt_hourly_counts

    counts, meta = burstgpt_hourly_counts(data_dir, origin=scenario.run.start_ts)
    ahead = index[scenario.run.history_days * STEPS_PER_DAY:]
    rate = counts["requests_per_h"].reindex(ahead)
    if rate.isna().any():
        days = len(counts) / STEPS_PER_DAY
        raise ConfigError(SOURCE, f"BurstGPT ({meta.source}) has {days:g} days of hourly "
                          f"counts from the run start (its day 0); run + horizon need "
                          f"{len(ahead) / STEPS_PER_DAY:g}", key="run.days")
    return counts


def _burstgpt_requests(scenario: FleetScenario, index: pd.DatetimeIndex,
                       arrival: ArrivalConfig, counts: pd.DataFrame, rows: pd.DataFrame
                       ) -> RequestArrays:
    """BurstGPT's requests over history + run (``index``): the history from the
    generator's calibrated conversation stream (nothing of BurstGPT precedes its day 0),
    then from the run start the real ``rows`` and the generator on ``counts``."""
    models = scenario.config.models
    hist_s = scenario.run.history_days * STEPS_PER_DAY * STEP_S
    run = build_arrivals(index[0] + pd.Timedelta(seconds=hist_s), len(index) * STEP_S - hist_s,
                         arrival, trace=rows, hourly_counts=counts, models=models)
    if hist_s <= 0:
        return run
    before = build_arrivals(index[0], hist_s, _stream(arrival, 102), models=models,
                            count_streams=HISTORY_COUNT_STREAMS)
    return _concat_requests(before, run, hist_s, stats=run.stats)


def _dr_events(scenario: FleetScenario, index: pd.DatetimeIndex) -> pd.DataFrame | None:
    spec = scenario.dr_events
    if not spec.days:
        return None
    local = index.tz_convert(TZ)
    days = {pd.Timestamp(d).date() for d in spec.days}
    on = np.array([(t.date() in days) and spec.start_hour <= t.hour < spec.end_hour
                   for t in local], dtype=float)
    return pd.DataFrame({c.name: on for c in scenario.fleet.campuses}, index=index)


def dr_baseline(scenario: FleetScenario, data: FleetData) -> pd.DataFrame | None:
    """DR baseline [MW] per campus: S1's offline day plan (no DR) of each event day.

    As in :mod:`mpc_dc.studies.dr`: the business-as-usual facility power, common to
    all flexibility scenarios, planned with the realized demand of the day.
    """
    if data.dr_event is None:
        return None
    cfg = scenario.fleet.config("S1")
    problem = FleetProblem(cfg, STEPS_PER_DAY)
    truth = data.truth
    out = pd.DataFrame(0.0, index=truth.index, columns=list(cfg.campus_names))
    local = pd.DatetimeIndex(truth.index).tz_convert(TZ)
    for day in scenario.dr_events.days:
        first = np.flatnonzero(local.normalize() == pd.Timestamp(day, tz=TZ))
        if first.size < STEPS_PER_DAY:
            # Whole days of the run are checked; a spring DST day has 92 intervals.
            logger.warning("DR day %s has %d intervals, not %d; no baseline", day,
                           first.size, STEPS_PER_DAY)
            continue
        sl = slice(int(first[0]), int(first[0]) + STEPS_PER_DAY)
        inputs = FleetInputs(
            np.vstack([truth[f"demand_tokens_per_s[{m}]"].to_numpy()[sl] for m in cfg.models]),
            np.vstack([truth[f"lmp_usd_per_mwh[{c.price_node}]"].to_numpy()[sl]
                       for c in cfg.campuses]),
            np.vstack([truth[f"carbon_gco2_per_kwh[{c.name}]"].to_numpy()[sl]
                       for c in cfg.campuses]))
        res = solve_day(problem, inputs)
        if res.plan is None:
            raise RuntimeError(f"S1 baseline day {day} failed: {res.message}")
        out.iloc[sl] = res.plan.campus_power_mw.T
    return out


def build_fleet_policy(scenario: FleetScenario, data: FleetData,
                       baseline: pd.DataFrame | None = None) -> RuleFleetPolicy | FleetMpcPolicy:
    """The scenario's controller, fitted on the history."""
    spec, cfg = scenario.controller, scenario.config
    if spec.kind == "rule":
        rule = RuleFleetPolicy(cfg, "persistence", spec.min_instances_per_model)
        last = data.history.iloc[-1:] if len(data.history) else None
        if last is not None:
            rule.observe(pd.Timestamp(last.index[0]), {str(k): float(v) for k, v in
                                                       last.iloc[0].items()})
        return rule
    forecaster = "oracle" if spec.kind == "perfect" else spec.forecaster
    params: dict[str, dict[str, object]] = {}
    if forecaster in ("oracle", "noisy_oracle"):
        params = {k: {"truth": data.truth[k]} for k in data.truth.columns}
    problem = FleetProblem(cfg, spec.horizon_steps, spec.solver_options())
    policy = FleetMpcPolicy(
        problem, demand_forecaster=forecaster, price_forecaster=forecaster,
        carbon_forecaster=forecaster, forecaster_params=params, dr_event=data.dr_event,
        dr_baseline_mw=baseline, min_instances_per_model=spec.min_instances_per_model,
        demand_quantile=spec.demand_quantile or None,
        name="perfect" if spec.kind == "perfect" else f"mpc[{forecaster}]")
    if len(data.history):
        policy.fit(data.history)
    return policy


# ----------------------------------------------------------------------------- KPIs


def cost_components(result: FleetRunResult, config: FleetConfig,
                    baseline: pd.DataFrame | None, dr_event: pd.DataFrame | None
                    ) -> dict[str, float]:
    """Realized cost components [$] in the optimizer's terms (module docstring)."""
    led = result.ledger
    P = len(config.pools)
    n = len(led) // P
    inst = led["instances"].to_numpy().reshape(n, P)
    gpus = np.array([config.row(k).gpus_per_instance for k in config.pools], dtype=float)
    increases = np.maximum(np.diff(np.vstack([np.zeros((1, P)), inst]), axis=0), 0.0)
    loss = np.array([max(config.row(k).quality_loss_pct_points, 0.0) for k in config.pools])
    tokens = led["tokens_decoded"].to_numpy().reshape(n, P)
    out = {
        "energy_usd": float(led["energy_cost_usd"].sum()),
        "carbon_usd": float(led["carbon_cost_usd"].sum()),
        "switching_usd": float(config.start_cost_usd_per_gpu * (increases @ gpus).sum()),
        "quality_usd": float(config.quality_cost_usd_per_point_mtok * (tokens @ loss).sum()
                             / 1e6),
        "dr_reward_usd": 0.0,
        "dr_penalty_usd": 0.0,
        "unserved_usd": float(config.unserved_penalty_usd_per_mtok
                              * result.kpis.get("tokens_unserved", 0.0) / 1e6),
    }
    if baseline is not None and dr_event is not None:
        times = led.index.get_level_values(0)[::P]
        fac = led["facility_energy_kwh"].groupby(level=["interval_start_utc", "campus"]).sum()
        dr = config.dr
        for c in config.campus_names:
            kw = fac.xs(c, level="campus").reindex(times).to_numpy() / 0.25
            ev = dr_event[c].reindex(times).fillna(0.0).to_numpy() > 0.5
            base_kw = 1e3 * baseline[c].reindex(times).fillna(0.0).to_numpy()
            out["dr_reward_usd"] += float(dr.reward_usd_per_kwh * 0.25
                                          * np.sum((base_kw - kw)[ev]))
            cap = dr.cap_fraction_of_baseline * base_kw
            out["dr_penalty_usd"] += float(dr.penalty_usd_per_kwh * 0.25
                                           * np.sum(np.maximum(kw - cap, 0.0)[ev]))
    out["total_usd"] = (out["energy_usd"] + out["carbon_usd"] + out["switching_usd"]
                        + out["quality_usd"] - out["dr_reward_usd"] + out["dr_penalty_usd"]
                        + out["unserved_usd"])
    return out


def slo_by_model_interval(result: FleetRunResult, config: FleetConfig,
                          serving: ServingConfig, *,
                          slo: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
    """Where the fluid plan met the requests: per (interval, model) [-].

    Columns: ``requests``, ``slo_attainment`` (request level; NaN in fluid runs),
    ``planned_utilisation`` = planned tokens / (ρ̄-free capacity μ n) and
    ``realized_utilisation`` = tokens decoded / (μ × ready instance-seconds).
    ``slo`` is :func:`~mpc_dc.sim.fleet_engine.slo_met` of the run's outcome when
    already computed (``result.slo`` under the run's own ``serving``).
    """
    led = result.ledger
    mu = np.array([config.row(k).tokens_per_s_at_slo for k in config.pools])
    P = len(config.pools)
    n = len(led) // P
    cap_plan = led["instances"].to_numpy().reshape(n, P) * mu
    cap_real = led["ready_instance_s"].to_numpy().reshape(n, P) * mu
    planned = led["planned_tokens_per_s"].to_numpy().reshape(n, P)
    decoded = led["tokens_decoded"].to_numpy().reshape(n, P)
    model_of = np.array([config.models.index(k[1]) for k in config.pools])
    M = len(config.models)
    agg = np.zeros((n, M, 5))
    by_pool = (slo_by_pool_interval(result, config, serving, slo=slo)
               if result.outcome is not None else None)
    req = by_pool["requests"].to_numpy().reshape(n, P) if by_pool is not None else \
        led["arrivals"].to_numpy().reshape(n, P)
    good = (np.nan_to_num(by_pool["slo_attainment"].to_numpy().reshape(n, P)) * req
            if by_pool is not None else np.full((n, P), np.nan))
    for m in range(M):
        sel = model_of == m
        agg[:, m] = np.column_stack([req[:, sel].sum(1), good[:, sel].sum(1),
                                     planned[:, sel].sum(1), cap_plan[:, sel].sum(1),
                                     decoded[:, sel].sum(1) / np.maximum(cap_real[:, sel].sum(1),
                                                                         1e-9)])
    times = led.index.get_level_values(0)[::P]
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame({
            "interval_start_utc": np.repeat(times, M),
            "model": np.tile(np.array(config.models), n),
            "requests": agg[:, :, 0].ravel(),
            "slo_attainment": (agg[:, :, 1] / agg[:, :, 0]).ravel(),
            "planned_utilisation": (agg[:, :, 2] / agg[:, :, 3]).ravel(),
            "realized_utilisation": agg[:, :, 4].ravel(),
        })
    return frame.set_index(["interval_start_utc", "model"])


def slo_break_summary(by_interval: pd.DataFrame, top_share: float = 0.1) -> pd.DataFrame:
    """Per model: SLO attainment overall, in the ``top_share`` of intervals with the
    highest planned utilisation and in the rest, and the worst interval [-]."""
    rows = []
    for model, group in by_interval.groupby(level="model"):
        g = group[group["requests"] > 0].dropna(subset=["planned_utilisation"])
        if g.empty:
            continue
        cut = g["planned_utilisation"].quantile(1 - top_share)
        top = g[g["planned_utilisation"] >= cut]
        rest = g[g["planned_utilisation"] < cut]

        def share(x: pd.DataFrame) -> float:
            n = float(x["requests"].sum())
            return float((x["slo_attainment"] * x["requests"]).sum() / n) if n else math.nan

        flat = g.reset_index()
        worst = (flat.iloc[int(np.nanargmin(flat["slo_attainment"].to_numpy()))]
                 if flat["slo_attainment"].notna().any() else None)
        rows.append({
            "model": model, "intervals": len(g), "slo_attainment": share(g),
            "top_planned_utilisation_from": float(cut),
            "slo_attainment_top_util": share(top), "slo_attainment_rest": share(rest),
            "intervals_below_95pct": int((g["slo_attainment"] < 0.95).sum()),
            "worst_interval": str(worst["interval_start_utc"]) if worst is not None else "",
            "worst_slo_attainment": float(g["slo_attainment"].min()),
            "worst_planned_utilisation": (float(worst["planned_utilisation"])
                                          if worst is not None else math.nan),
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- run


@dataclass(frozen=True)
class FleetRunOutcome:
    """A finished fleet run.

    Attributes
    ----------
    scenario : FleetScenario
    result : FleetRunResult
    controller : str
    setup_time_s : float [s]
        Data, forecaster fitting, DR baseline, problem build.
    path : Path or None
    """

    scenario: FleetScenario
    result: FleetRunResult
    controller: str
    setup_time_s: float
    path: Path | None = None


def run_fleet_scenario(scenario: FleetScenario, out: Path | None = None, *,
                       data: FleetData | None = None,
                       progress: Callable[[int], object] | None = None,
                       overwrite: bool = False) -> FleetRunOutcome:
    """Run ``scenario`` closed-loop; write a run directory when ``out`` is given.

    Run directory: ``scenario.json``, ``metadata.json``, ``kpis.json``,
    ``ledger.parquet`` (per interval and pool), ``requests.parquet`` (request level,
    sampled), ``slo_by_interval.parquet`` (per interval and model).
    """
    from mpc_dc.rundir import check_target

    if out is not None:
        check_target(Path(out), overwrite=overwrite)
    tick = time.perf_counter()
    data = data if data is not None else build_fleet_data(scenario)
    baseline = dr_baseline(scenario, data)
    policy = build_fleet_policy(scenario, data, baseline)
    setup = time.perf_counter() - tick
    serving = scenario.serving.config()
    cfg = scenario.config
    def advance(k: int) -> None:
        if progress is not None:
            progress(k)

    result = simulate_fleet(cfg, data.exo, data.requests, policy, serving,
                            observation=FleetObservation.from_serving, progress=advance)
    kpis = result.kpis
    kpis["setup_time_s"] = setup
    kpis["controller"] = policy.name
    kpis["flexibility"] = scenario.flexibility
    kpis["cost_components_usd"] = cost_components(result, cfg, baseline, data.dr_event)
    kpis["total_cost_usd"] = kpis["cost_components_usd"]["total_usd"]
    kpis["slo"] = kpis.get("slo_attainment", kpis.get("slo_attainment_estimate", math.nan))
    kpis["decision_sources"] = pd.Series([d.source for d in result.decisions]).value_counts(
    ).to_dict()
    by_interval = slo_by_model_interval(result, cfg, serving, slo=result.slo)
    kpis["slo_breaks"] = slo_break_summary(by_interval).to_dict(orient="records")
    outcome = FleetRunOutcome(scenario, result, policy.name, setup)
    if out is not None:
        outcome = replace(outcome, path=_write(outcome, by_interval, Path(out), overwrite))
    return outcome


def _write(outcome: FleetRunOutcome, by_interval: pd.DataFrame, out: Path,
           overwrite: bool) -> Path:
    from mpc_dc.config import to_mapping
    from mpc_dc.rundir import atomic_dir, git_hash, versions, write_json

    res = outcome.result
    meta = {"scenario": outcome.scenario.name, "kind": "fleet",
            "controller": outcome.controller, "seed": outcome.scenario.run.seed,
            "start_utc": outcome.scenario.run.start_ts.isoformat(),
            "intervals": res.kpis["intervals"],
            "wall_time_s": {"setup": outcome.setup_time_s,
                            "simulation": res.kpis["wall_time_s"]},
            "created_utc": pd.Timestamp.now(tz="UTC").isoformat(),
            "versions": versions(), "git": git_hash()}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "scenario.json", to_mapping(outcome.scenario))
        write_json(tmp / "metadata.json", meta)
        write_json(tmp / "kpis.json", res.kpis)
        res.ledger.reset_index().to_parquet(tmp / "ledger.parquet", index=False)
        by_interval.reset_index().to_parquet(tmp / "slo_by_interval.parquet", index=False)
        if res.requests is not None:
            res.requests.to_parquet(tmp / "requests.parquet", index=False)
    return out


def fleet_variant(scenario: FleetScenario, label: str) -> FleetScenario:
    """The scenario changed by one ``compare`` label.

    Labels: ``S1``..``S6`` (flexibility), ``fluid``/``request`` (fidelity),
    ``rule``/``perfect``/``oracle`` (controller), a forecaster name (MPC with it);
    combine with ``+``, e.g. ``S4+fluid``.
    """
    out = scenario
    for part in (p.strip() for p in label.split("+") if p.strip()):
        if part in SCENARIOS:
            out = replace(out, flexibility=part)
        elif part in ("fluid", "request"):
            fidelity: FidelityName = "fluid" if part == "fluid" else "request"
            out = replace(out, serving=replace(out.serving, fidelity=fidelity))
        elif part in ("rule", "perfect", "mpc"):
            kind: FleetControllerKind = ("rule" if part == "rule" else
                                         "perfect" if part == "perfect" else "mpc")
            out = replace(out, controller=replace(out.controller, kind=kind))
        elif part == "oracle":
            out = replace(out, controller=replace(out.controller, kind="perfect"))
        else:
            out = replace(out, controller=replace(out.controller, kind="mpc",
                                                  forecaster=_alias(part)))
    return out


def _alias(name: str) -> str:
    return {"seasonal_naive": "seasonal_naive_daily"}.get(name, name)


def compare_fleet(scenario: FleetScenario, labels: Sequence[str], *,
                  progress: Callable[[str, int], Callable[[int], object] | None] | None = None,
                  out_dir: Path | None = None) -> pd.DataFrame:
    """Run ``scenario`` under each label on identical data (one data build per fidelity-free
    set-up); a table with cost components, SLO attainment and solver figures per label.

    Parameters
    ----------
    labels : sequence of str
        See :func:`fleet_variant`.
    out_dir : Path, optional
        Each run's directory is written under it (``<out_dir>/<label>``).
    """
    data: FleetData | None = None
    key: tuple[Any, ...] | None = None
    rows: dict[str, dict[str, Any]] = {}
    for label in dict.fromkeys(labels):
        variant = fleet_variant(scenario, label)
        # Data depend on run, data, fleet campuses/models and horizon only.
        this = (variant.run, variant.data, variant.fleet.campuses, variant.fleet.models,
                variant.controller.horizon_steps, variant.dr_events)
        if data is None or this != key:
            data, key = build_fleet_data(variant), this
        callback = progress(label, variant.run.n_steps) if progress is not None else None
        target = None if out_dir is None else Path(out_dir) / label.replace("+", "_")
        outcome = run_fleet_scenario(variant, target, data=data, progress=callback)
        rows[label] = summary_row(outcome)
    return pd.DataFrame.from_dict(rows, orient="index")


def summary_row(outcome: FleetRunOutcome) -> dict[str, Any]:
    """One table row of a run: cost [$], SLO [-], tokens, solver figures."""
    k = outcome.result.kpis
    comp = k["cost_components_usd"]
    row: dict[str, Any] = {
        "flexibility": k["flexibility"], "fidelity": k["fidelity"],
        "controller": outcome.controller, "total_usd": comp["total_usd"],
        **{c: comp[c] for c in ("energy_usd", "carbon_usd", "switching_usd", "quality_usd",
                                "dr_reward_usd", "dr_penalty_usd", "unserved_usd")},
        "slo_attainment": k["slo"],
        "ttft_p99_s": k.get("ttft_p99_s", math.nan),
        "tokens_served": k["tokens_served"], "tokens_unserved": k["tokens_unserved"],
        "energy_per_token_j": k["energy_per_token_j"],
        "facility_energy_mwh": k["facility_energy_mwh"],
        "fallbacks": k.get("fallbacks_total", 0),
        "solve_median_ms": 1000.0 * k.get("solve_time_median_s", 0.0),
        "wall_time_s": k["wall_time_s"] + k["setup_time_s"],
    }
    for model, v in k.get("slo_attainment_by_model", {}).items():
        row[f"slo[{model}]"] = v
    return row
