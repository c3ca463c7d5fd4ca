"""Scenarios: a TOML file (read with :mod:`tomllib`) into frozen dataclasses, then a run.

A scenario names the run period, the data source, the site and the controller.
Every key is documented in ``docs/scenario_v1.md``; unknown keys are rejected with the
nearest valid key. With no file, :func:`default_scenario` is the embedded default:
one week on the seeded synthetic generator (no ``../shared``, no network).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecasters.base import Forecaster
from forecasters.known_ahead import KnownAhead
from forecasters.presets import make_for
from mpc_dc.config import RunPeriod, from_mapping, positive
from mpc_dc.controllers import BaselinePolicy, MpcPolicy, OfflinePolicy, Policy
from mpc_dc.params.site import SiteConfig
from mpc_dc.problem import SolverOptions
from mpc_dc.sim.exogenous import (
    CHANNELS,
    QUANTITIES,
    DeferrableRelease,
    RcdcExogenous,
    workload_from_utilisation,
)
from mpc_dc.site.scenario import (
    FORECASTER_ALIASES,
    MAX_ERROR_LEVEL,
    at_most,
    check_forecaster,
    check_in_unit_interval,
    check_run_period,
    read_toml,
)
from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY, GapPolicy, Publication

ControllerKind = Literal["baseline", "mpc", "perfect", "offline"]



@dataclass(frozen=True)
class RunSpec(RunPeriod):
    """The run period and workload rules.

    Parameters
    ----------
    start : str
        First interval start, ISO 8601 in UTC (``"2022-04-01T00:00:00Z"``).
    days : float [d]
        Length of the run.
    history_days : int [d]
        Data before ``start`` used to fit the forecasters.
    seed : int
        Seed of the synthetic generator and of any random error.
    deferrable_share : float [-]
        Share of the workload that is deferrable.
    window_h : float [h]
        Scheduling window of deferrable work: work is due by the end of the window
        it is released in.
    deferrable_release : {"window_start", "on_arrival"}
        When deferrable work is released: each window's batch at the window start, or
        each interval's share as it arrives (:mod:`mpc_dc.sim.exogenous`).
    local_tz : str
        Billing calendar and display time zone.
    """

    start: str = "2022-04-04T04:00:00Z"
    days: float = 7.0
    history_days: int = 14
    seed: int = 2
    deferrable_share: float = 0.4
    window_h: float = 24.0
    deferrable_release: DeferrableRelease = "window_start"
    local_tz: str = "America/New_York"

    def __post_init__(self) -> None:
        check_run_period(self, self.history_days)
        positive("<scenario>", "run.window_h", self.window_h)
        if abs(self.window_h * 4 - round(self.window_h * 4)) > 1e-9:
            raise ConfigError(
                "<scenario>",
                f"expected a multiple of 0.25 h (whole 15-min intervals), got {self.window_h!r}",
                key="run.window_h",
            )
        check_in_unit_interval({"run.deferrable_share": self.deferrable_share}, closed=True)


@dataclass(frozen=True)
class DataSpec:
    """Where the exogenous series come from.

    Parameters
    ----------
    source : {"synthetic", "nyiso"}
        ``synthetic``: the seeded generator (embedded default). ``nyiso``: NYISO RT
        zonal LMP 2022 (wholesale) or CAPITL day-ahead (retail), NY wind 2022 and
        Google powerdata_2019 shape, read from ``data_dir``.
    data_dir : str
        The public data folder; only for ``nyiso``. A relative path is taken from
        the working directory; the environment variable ``MPC_DC_DATA``, when set,
        replaces it.
    zone : str
        NYISO zone letter of the RT price.
    price_known_ahead : bool
        Retail tariff only: the day-ahead prices are published before delivery
        (NYISO: about 11:00 Eastern on the day before), so the price channel's
        forecaster is wrapped in :class:`~forecasters.known_ahead.KnownAhead` with the
        realized day-ahead series as truth: published days are known, later ones
        forecast. Ignored under the wholesale tariff (real-time prices are not
        published ahead).
    """

    source: Literal["synthetic", "nyiso"] = "synthetic"
    data_dir: str = "../shared/data"
    zone: str = "F"
    price_known_ahead: bool = False


@dataclass(frozen=True)
class ControllerSpec:
    """The controller.

    Parameters
    ----------
    kind : {"baseline", "mpc", "perfect", "offline"}
        ``perfect`` is ``mpc`` with Oracle forecasts; ``offline`` the full-horizon optimum.
    forecaster : str
        Forecaster of every channel for ``mpc`` (see ``forecasters.make_forecaster``).
    error_level : float [-]
        For ``noisy_oracle``: error std at 24 h lead as a fraction of the series std.
    horizon_h : float [h]
        MPC horizon.
    horizon_to_end : bool
        Horizon always reaches the run end (for the Oracle-equivalence check).
    time_limit_s : float [s]
        HiGHS time limit per MPC solve.
    mip_rel_gap : float [-]
        HiGHS relative MIP gap of each MPC solve.
    offline_time_limit_s : float [s]
        HiGHS time limit of the one whole-run solve of ``offline`` (the regret
        reference of ``compare``); it does not share the per-step budget.
    offline_mip_rel_gap : float [-]
        HiGHS relative MIP gap of the offline solve: regrets are measured against
        it, so its own error must stay far below them.
    fault_rate : float [-]
        Test switch: share of steps on which the solver is made to fail.
    integer_intervals : int
        When the exact (MILP) form is needed (negative prices, export price above
        import price), binaries stay integer on this many leading intervals and are
        relaxed on the tail; only the first interval is committed.
    deadline_margin_h : float [h]
        Forecast-driven MPC plans to finish deferrable work this long before each
        deadline (a hedge against under-forecast load; not applied to ``perfect``).
    """

    kind: ControllerKind = "mpc"
    forecaster: str = "sarimax"
    error_level: float = 0.0
    horizon_h: float = 24.0
    horizon_to_end: bool = False
    time_limit_s: float = 10.0
    mip_rel_gap: float = 1e-4
    offline_time_limit_s: float = 600.0
    offline_mip_rel_gap: float = 1e-6
    fault_rate: float = 0.0
    deadline_margin_h: float = 1.0
    integer_intervals: int = 1

    def __post_init__(self) -> None:
        positive("<scenario>", "controller.horizon_h", self.horizon_h)
        positive("<scenario>", "controller.deadline_margin_h", self.deadline_margin_h,
                 allow_zero=True)
        positive("<scenario>", "controller.time_limit_s", self.time_limit_s)
        positive("<scenario>", "controller.offline_time_limit_s", self.offline_time_limit_s)
        positive("<scenario>", "controller.error_level", self.error_level, allow_zero=True)
        at_most("controller.error_level", self.error_level, MAX_ERROR_LEVEL,
                "(fraction of the std)")
        check_in_unit_interval({f"controller.{k}": getattr(self, k) for k in (
            "mip_rel_gap", "offline_mip_rel_gap")}, closed=False)
        check_forecaster(self.forecaster, "controller.forecaster", day_ahead_hint=(
            "day_ahead_known is not a forecaster of every channel; set "
            "data.price_known_ahead = true (retail tariff) and name the forecaster of "
            "the rest here"))
        check_in_unit_interval({"controller.fault_rate": self.fault_rate}, closed=True)


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file.

    Parameters
    ----------
    name : str
    run, data, site, controller : see their classes
    """

    name: str = "default"
    run: RunSpec = field(default_factory=RunSpec)
    data: DataSpec = field(default_factory=DataSpec)
    site: SiteConfig = field(default_factory=SiteConfig)
    controller: ControllerSpec = field(default_factory=ControllerSpec)


def example_path(name: str) -> Path:
    """Path of a packaged example scenario (``default``, ``rcdc_nyiso_wholesale`` ...)."""
    return Path(str(resources.files("mpc_dc") / "scenarios" / f"{name}.toml"))


def default_scenario() -> Scenario:
    """The embedded default (``mpc_dc/scenarios/default.toml``): one synthetic week,
    wholesale market, SARIMAX-driven MPC."""
    return load_scenario(example_path("default"))


def scenario_from_table(table: dict[str, Any], source: str | Path) -> Scenario:
    """Build and validate a :class:`Scenario` from a parsed TOML table.

    Errors raised by the dataclasses' own checks are re-labelled with ``source``.
    """
    try:
        return from_mapping(Scenario, table, source)
    except ConfigError as err:
        if err.source in {"<scenario>", "<site>"}:
            raise ConfigError(source, err.message, key=_site_key(err.key)) from None
        raise


def _site_key(key: str | None) -> str | None:
    """Dotted key of a site check as it appears in the file (``site.`` prefix)."""
    if key == "processing":
        return "site.datacenter.processing"
    if key and key.split(".")[0] in {"datacenter", "renewable", "grid", "battery"}:
        return f"site.{key}"
    return key


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file.

    Raises
    ------
    ConfigError
        One line naming the file and the key, for syntax errors, unknown, missing or
        mistyped keys and out-of-range values.
    """
    file = Path(path)
    table = read_toml(file)
    if table.get("kind", "rcdc") != "rcdc":
        raise ConfigError(file, f"a {table['kind']!r} scenario, not an RCDC one "
                          "(mpc_dc.fleet_scenario.load_fleet_scenario reads fleet files)",
                          key="kind")
    table.pop("kind", None)
    return scenario_from_table(table, file)


SCENARIO_KINDS = ("rcdc", "fleet")
"""Values of a scenario file's top-level ``kind`` (absent = ``rcdc``)."""


def scenario_kind(path: str | Path) -> str:
    """The top-level ``kind`` of a scenario file: ``"rcdc"`` (default) or ``"fleet"``.

    Raises
    ------
    ConfigError
        Unreadable file, or a ``kind`` that is not one of :data:`SCENARIO_KINDS`.
    """
    file = Path(path)
    kind = read_toml(file).get("kind", "rcdc")
    if kind not in SCENARIO_KINDS:
        raise ConfigError(file, f"expected one of {list(SCENARIO_KINDS)}, got {kind!r}",
                          key="kind")
    return str(kind)


def with_overrides(scenario: Scenario, overrides: dict[str, Any], source: str) -> Scenario:
    """Apply dotted-key overrides (``{"controller.forecaster": "ets"}``) with validation."""
    from mpc_dc.config import to_mapping

    table = to_mapping(scenario)
    for dotted, value in overrides.items():
        node = table
        keys = dotted.split(".")
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(source, "not a table in the scenario", key=dotted)
            node = node[key]
        node[keys[-1]] = value
    if table.get("site", {}).get("battery") is None:
        table.get("site", {}).pop("battery", None)
    return scenario_from_table(table, source)


# ----------------------------------------------------------------------------- build a run


def build_exogenous(scenario: Scenario) -> RcdcExogenous:
    """Realized series (run period and history) of a scenario on the 15-min grid."""
    run = scenario.run
    start = run.start_ts
    history_steps = run.history_days * STEPS_PER_DAY
    index = pd.date_range(
        start - history_steps * STEP,
        periods=history_steps + run.n_steps,
        freq=STEP,
        name="interval_start_utc",
    )
    if scenario.data.source == "synthetic":
        frame, publication = _synthetic_frame(scenario, index)
    else:
        frame, publication = _nyiso_frame(scenario, index)
    frame["workload_wu"] = workload_from_utilisation(frame.pop("power_util"), scenario.site)
    publication["workload_wu"] = publication.pop("power_util")
    return RcdcExogenous(
        config=scenario.site,
        frame=frame.iloc[history_steps:],
        history=frame.iloc[:history_steps],
        deferrable_share=run.deferrable_share,
        window_steps=round(run.window_h * 4),
        deferrable_release=run.deferrable_release,
        local_tz=run.local_tz,
        name=scenario.name,
        publication=publication,
    )


def _synthetic_frame(
    scenario: Scenario, index: pd.DatetimeIndex
) -> tuple[pd.DataFrame, dict[str, Publication]]:
    """The generator's series, and when each is observable."""
    from traces import synthetic

    days = int(np.ceil(len(index) / STEPS_PER_DAY)) + 1
    day0 = index[0].floor("D")
    seed = scenario.run.seed
    lmp = synthetic.synth_lmp(day0, days, seed)
    wind = synthetic.synth_wind_cf(day0, days, seed)
    load = synthetic.synth_load(day0, days, seed)
    frame = pd.DataFrame(
        {
            # The generator has one market price: it stands for the RT LMP and, under
            # the retail tariff, for the day-ahead price the retail rates follow.
            "price_usd_per_mwh": lmp.iloc[:, 0].reindex(index).to_numpy(),
            "renewable_cf": wind["wind_cf"].reindex(index).to_numpy(),
            "power_util": load["power_util"].reindex(index).to_numpy(),
        },
        index=index,
    )
    rules = synthetic.PUBLICATION
    return frame, {"price_usd_per_mwh": rules["lmp"], "renewable_cf": rules["wind_cf"],
                   "power_util": rules["load"]}


def _nyiso_frame(
    scenario: Scenario, index: pd.DatetimeIndex
) -> tuple[pd.DataFrame, dict[str, Publication]]:
    """The real series, and when each is observable (from the readers' metadata)."""
    from mpc_dc.studies.rcdc import align_google
    from traces.datasets import google_load_shape, ny_wind_cf, nyiso_da_lmp, nyiso_rt_lmp
    from traces.grid import fill_gaps

    data_dir = Path(os.environ.get("MPC_DC_DATA") or scenario.data.data_dir)
    zone = scenario.data.zone
    if scenario.site.grid.tariff.kind == "retail":
        da, price_meta = nyiso_da_lmp(data_dir)
        price = da.iloc[:, 0]
    else:
        rt, price_meta = nyiso_rt_lmp(data_dir, year=index[0].year, zones=[zone])
        price = rt[f"lmp_usd_per_mwh[{zone}]"]
    wind, wind_meta = ny_wind_cf(data_dir)
    shape, shape_meta = google_load_shape(data_dir)
    publication = {"price_usd_per_mwh": price_meta.publication,
                   "renewable_cf": wind_meta.publication, "power_util": shape_meta.publication}
    frame = pd.DataFrame(
        {
            "price_usd_per_mwh": price.reindex(index),
            "renewable_cf": wind["wind_cf"].reindex(index).clip(0.0, 1.0),
            "power_util": align_google(shape, index, scenario.run.start_ts),
        },
        index=index,
    )
    n_run = scenario.run.n_steps
    run_part = frame.iloc[-n_run:]
    if run_part.isna().to_numpy().any():
        first = run_part.index[run_part.isna().any(axis=1).to_numpy()][0]
        raise ConfigError(
            data_dir,
            f"real data has missing intervals in the run period (first at {first}); "
            "choose a complete period (2022: Apr, May, Jun, Sep, Oct, Nov)",
            key="run.start",
        )
    # History gaps stay NaN: forecasters treat them as unobserved.
    filled = fill_gaps(run_part, GapPolicy.RAISE, source=data_dir)
    return pd.concat([frame.iloc[:-n_run], filled]), publication


PRICE_CHANNEL = "price_usd_per_mwh"
"""The channel that carries the day-ahead price under the retail tariff."""


def build_forecasters(
    exo: RcdcExogenous,
    name: str,
    *,
    seed: int = 0,
    error_level: float = 0.0,
    price_known_ahead: bool = False,
) -> dict[str, Forecaster]:
    """One fitted forecaster per channel, fitted on the history before the run.

    With ``price_known_ahead`` and the retail tariff, the price channel's forecaster
    is wrapped in :class:`~forecasters.known_ahead.KnownAhead` (published day-ahead
    prices are used as they are; see ``data.price_known_ahead``). The Oracle is not
    wrapped: it already returns the truth.
    """
    wrap_price = (
        price_known_ahead and exo.config.grid.tariff.kind == "retail" and name != "oracle"
    )
    out: dict[str, Forecaster] = {}
    for k, channel in enumerate(CHANNELS):
        params: dict[str, Any] = {}
        if name in ("oracle", "noisy_oracle"):
            params["truth"] = exo.truth(channel)
        if name == "noisy_oracle":
            params.update(error_level=error_level, seed=seed * 1000 + k)
        forecaster = make_for(name, QUANTITIES[channel], **params)
        if wrap_price and channel == PRICE_CHANNEL:
            forecaster = KnownAhead(exo.truth(channel), forecaster, bounds=forecaster.bounds)
        # Only what is published at the run start; the rest arrives through observe().
        forecaster.fit(exo.published_history(channel))
        out[channel] = forecaster
    return out


def build_policy(scenario: Scenario, exo: RcdcExogenous) -> Policy:
    """The scenario's controller, ready to run on ``exo``."""
    spec = scenario.controller
    options = SolverOptions(time_limit_s=spec.time_limit_s, mip_rel_gap=spec.mip_rel_gap,
                            integer_intervals=spec.integer_intervals)
    if spec.kind == "baseline":
        return BaselinePolicy()
    if spec.kind == "offline":
        return OfflinePolicy(exo, SolverOptions(time_limit_s=spec.offline_time_limit_s,
                                                mip_rel_gap=spec.offline_mip_rel_gap))
    forecaster = "oracle" if spec.kind == "perfect" else spec.forecaster
    forecasters = build_forecasters(
        exo, forecaster, seed=scenario.run.seed, error_level=spec.error_level,
        price_known_ahead=scenario.data.price_known_ahead,
    )
    return MpcPolicy(
        exo,
        forecasters,
        horizon_steps=round(spec.horizon_h * 4),
        horizon_to_end=spec.horizon_to_end,
        options=options,
        fault_rate=spec.fault_rate,
        fault_seed=scenario.run.seed,
        deadline_margin_steps=0 if spec.kind == "perfect" else round(spec.deadline_margin_h * 4),
        name="perfect" if spec.kind == "perfect" else f"mpc[{forecaster}]",
    )


def controller_variant(scenario: Scenario, label: str) -> Scenario:
    """The scenario with its controller set by a ``compare`` label.

    ``baseline``, ``offline``, ``perfect``/``oracle`` or a forecaster name (→ ``mpc``).
    """
    ctl = scenario.controller
    if label == "baseline":
        return replace(scenario, controller=replace(ctl, kind="baseline"))
    if label == "offline":
        return replace(scenario, controller=replace(ctl, kind="offline"))
    if label in ("perfect", "oracle"):
        return replace(scenario, controller=replace(ctl, kind="perfect"))
    forecaster = FORECASTER_ALIASES.get(label, label)
    return replace(scenario, controller=replace(ctl, kind="mpc", forecaster=forecaster))

