"""What a site is: campuses, their blocks, and the inference fleet they share.

One model for both seed studies (DESIGN.md sections 1 and 3). A :class:`Site` is a
tuple of :class:`Campus` objects plus an optional :class:`Fleet` of LLM model
families served across the campuses that have GPUs:

* the renewable-colocated data center (seed 2) is one campus with ``other_it``,
  ``renewable`` and a ``grid`` connection, and no GPUs for inference pools;
* the demand-response fleet (seed 1) is campuses with GPUs and a fleet, no
  renewable and no export;
* the product's own scenario has both.

Every class is a frozen dataclass with units in its field names, built from TOML
tables with :func:`mpc_dc.config.from_mapping` (unknown keys are rejected, naming
the nearest valid key). Checks raise :class:`ValueError` naming the field;
``from_mapping`` prefixes the table's dotted key (``site.campuses[1]``), so the
user reads one line naming file, table and field.

Work unit
---------
Other (non-inference) IT work is measured in work units [WU]: 1 WU is the work a
campus's other IT does with 1 MWh of IT energy at full load. The processing
function ``F`` maps IT power [MW] to a work rate [WU/h]; it is concave,
piecewise-linear, ``F(0) = 0`` and ``F(P_max) = P_max``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mpc_dc.params.quant_table import QuantRow, QuantTable, load_quant_table

PoolKey = tuple[str, str, str]
"""``(campus, model, precision)``."""

TariffKind = Literal["wholesale", "retail"]
ReleaseRule = Literal["window_start", "on_arrival"]
SeriesSource = Literal["auto", "synthetic", "real"]
RenewableSource = Literal["auto", "synthetic", "real", "windpowerlib"]
DrBaselineRule = Literal["prior_days", "s1_plan"]

#: California's 2026 cap-and-trade auction reserve price [$/tCO2], the figure the
#: DR seed paper's source cites.
CA_2026_AUCTION_RESERVE_USD_PER_T = 27.94


def _check_nonneg(owner: str, **values: float) -> None:
    for key, value in values.items():
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"{owner}.{key}: expected a value >= 0, got {value!r}")


def _check_positive(owner: str, **values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}.{key}: expected a value > 0, got {value!r}")


def quarter_hours(hours: float) -> bool:
    """Whether ``hours`` is a whole number of 15-min intervals."""
    return abs(hours * 4 - round(hours * 4)) <= 1e-9


# ----------------------------------------------------------------------------- other IT


@dataclass(frozen=True)
class ProcessingFunction:
    """Concave piecewise-linear processing function, normalised to full IT load.

    ``F(P) = P_max · f(P / P_max)`` with ``f`` through the points
    ``(power_frac[i], work_frac[i])``.

    Parameters
    ----------
    power_frac : tuple of float [-]
        Breakpoints in IT power as a fraction of the IT capacity, from 0 to 1.
    work_frac : tuple of float [-]
        Work rate at each breakpoint as a fraction of the full-load rate, from 0 to 1.

    Notes
    -----
    The default (slopes 1.1, 1.0, 0.75) is a modelling choice: servers do more
    work per joule at partial load (DVFS, cooling), so the marginal work per MW
    falls as the site approaches its power limit. Li-Tong-Mount's exact F is not
    published in what we could find; see docs/formulation.md.
    """

    power_frac: tuple[float, ...] = (0.0, 0.5, 0.8, 1.0)
    work_frac: tuple[float, ...] = (0.0, 0.55, 0.85, 1.0)

    def __post_init__(self) -> None:
        p = np.asarray(self.power_frac, dtype=float)
        w = np.asarray(self.work_frac, dtype=float)
        if p.size != w.size or p.size < 2:
            raise ValueError("processing: power_frac and work_frac need equal length >= 2")
        if p[0] != 0.0 or w[0] != 0.0 or p[-1] != 1.0 or w[-1] != 1.0:
            raise ValueError("processing: breakpoints must start at (0, 0) and end at (1, 1)")
        if np.any(np.diff(p) <= 0) or np.any(np.diff(w) <= 0):
            raise ValueError("processing: breakpoints must be strictly increasing")
        slopes = np.diff(w) / np.diff(p)
        if np.any(np.diff(slopes) > 1e-12):
            raise ValueError(f"processing: F must be concave; expected non-increasing slopes, "
                             f"got slopes {[round(float(x), 6) for x in slopes]}")

    def segments(self, it_capacity_mw: float) -> tuple[np.ndarray, np.ndarray]:
        """Segment widths [MW] and slopes [WU/MWh] of F (slopes non-increasing)."""
        p = np.asarray(self.power_frac) * it_capacity_mw
        w = np.asarray(self.work_frac) * it_capacity_mw
        width = np.diff(p)
        return width, np.diff(w) / width

    def rate_wu_per_h(self, it_power_mw: np.ndarray, it_capacity_mw: float) -> np.ndarray:
        """``F(P)`` [WU/h] for IT power ``P`` [MW]."""
        return np.interp(it_power_mw, np.asarray(self.power_frac) * it_capacity_mw,
                         np.asarray(self.work_frac) * it_capacity_mw)

    def inverse_mw(self, rate_wu_per_h: np.ndarray, it_capacity_mw: float) -> np.ndarray:
        """``F⁻¹(W)`` [MW]: IT power needed for the work rate ``W`` [WU/h] (convex)."""
        return np.interp(rate_wu_per_h, np.asarray(self.work_frac) * it_capacity_mw,
                         np.asarray(self.power_frac) * it_capacity_mw)


@dataclass(frozen=True)
class OtherIT:
    """IT load of a campus other than LLM inference (training, batch, web).

    Its workload arrives as a series of work per interval [WU] (a utilisation shape
    times the full-load rate); a share of it is deferrable: released as batches that
    must be done by the end of their scheduling window, processed through the
    concave processing function; the rest is non-deferrable and runs on arrival.

    Parameters
    ----------
    it_capacity_mw : float [MW]
        Maximum IT power of this load.
    processing : ProcessingFunction
    deferrable_share : float [-]
        Share of the workload that is deferrable.
    window_h : float [h]
        Scheduling window of deferrable work: each window's batch is due by its end.
    release : {"window_start", "on_arrival"}
        When a window's deferrable work may be processed: all of it at the window
        start, or each interval's share as it arrives (docs/formulation.md).
    source : {"auto", "synthetic", "real"}
        Where the utilisation shape comes from; ``auto`` follows ``data.source``
        (real: Google powerdata_2019).
    """

    it_capacity_mw: float = 100.0
    processing: ProcessingFunction = field(default_factory=ProcessingFunction)
    deferrable_share: float = 0.4
    window_h: float = 24.0
    release: ReleaseRule = "window_start"
    source: SeriesSource = "auto"

    def __post_init__(self) -> None:
        _check_positive("other_it", it_capacity_mw=self.it_capacity_mw,
                        window_h=self.window_h)
        if not 0.0 <= self.deferrable_share <= 1.0:
            raise ValueError(f"other_it.deferrable_share: expected a value in [0, 1], got "
                             f"{self.deferrable_share!r}")
        if not quarter_hours(self.window_h):
            raise ValueError(f"other_it.window_h: expected a multiple of 0.25 h (whole 15-min "
                             f"intervals), got {self.window_h!r}")

    @property
    def window_steps(self) -> int:
        """Scheduling window [intervals]."""
        return round(self.window_h * 4)


# ----------------------------------------------------------------------------- supply


@dataclass(frozen=True)
class Renewable:
    """Colocated renewable plant: available power = capacity factor × nameplate.

    Parameters
    ----------
    nameplate_mw : float [MW]
        Installed capacity (0 = no colocation).
    source : {"auto", "synthetic", "real", "windpowerlib"}
        Capacity-factor series; ``auto`` follows ``data.source`` (real: NY wind from
        EIA-930); ``windpowerlib``: the windpowerlib example weather through the power
        curve of ``turbine_type`` (:mod:`mpc_dc.site.data`).
    turbine_type : str
        ``windpowerlib`` only: a row of windpowerlib's OEDB power curves.
    """

    nameplate_mw: float = 150.0
    source: RenewableSource = "auto"
    turbine_type: str = "E-101/3050"

    def __post_init__(self) -> None:
        _check_nonneg("renewable", nameplate_mw=self.nameplate_mw)


@dataclass(frozen=True)
class Tariff:
    """How grid energy is priced at a campus.

    ``wholesale``: import and export both settle at the real-time price of the
    campus's node. ``retail``: import at π⁺, export credited at π⁻ (both per
    interval, :func:`retail_prices` of day-ahead prices), plus a demand charge on the
    highest 15-min import of the billing period.

    Parameters
    ----------
    kind : {"wholesale", "retail"}
    demand_charge_usd_per_kw : float [$/kW per billing period]
        Retail only.
    import_adder_usd_per_mwh : float [$/MWh]
        Delivery adder on top of the day-ahead price for imports (retail only).
    export_credit_factor : float [-]
        Export credit as a fraction of the day-ahead price (retail only).
    billing_period : {"month"}
        Length of the demand-charge billing period (local calendar month).
    """

    kind: TariffKind = "wholesale"
    demand_charge_usd_per_kw: float = 0.0
    import_adder_usd_per_mwh: float = 0.0
    export_credit_factor: float = 1.0
    billing_period: Literal["month"] = "month"

    def __post_init__(self) -> None:
        _check_nonneg("tariff", demand_charge_usd_per_kw=self.demand_charge_usd_per_kw,
                      import_adder_usd_per_mwh=self.import_adder_usd_per_mwh)
        if not 0.0 <= self.export_credit_factor <= 1.0:
            raise ValueError(f"tariff.export_credit_factor: expected a value in [0, 1], got "
                             f"{self.export_credit_factor!r}")
        if self.kind == "wholesale" and self.demand_charge_usd_per_kw > 0:
            raise ValueError(f"tariff.demand_charge_usd_per_kw: a demand charge applies to the "
                             f"retail tariff only; expected 0 under kind 'wholesale' (or kind "
                             f"'retail'), got {self.demand_charge_usd_per_kw!r}")

    @property
    def demand_charge_usd_per_mw(self) -> float:
        """Demand charge [$/MW per billing period]."""
        return 1000.0 * self.demand_charge_usd_per_kw

    @property
    def has_demand_charge(self) -> bool:
        """True for a retail tariff with a positive demand charge."""
        return self.kind == "retail" and self.demand_charge_usd_per_kw > 0


def retail_prices(da_price_usd_per_mwh: np.ndarray,
                  tariff: Tariff) -> tuple[np.ndarray, np.ndarray]:
    """Retail import and export prices tied to day-ahead prices [$/MWh].

    ``π⁺[t] = π_DA[t] + adder`` and ``π⁻[t] = factor · π_DA[t]``.
    """
    da = np.asarray(da_price_usd_per_mwh, dtype=float)
    return da + tariff.import_adder_usd_per_mwh, tariff.export_credit_factor * da


def tariff_prices(price_usd_per_mwh: np.ndarray,
                  tariff: Tariff) -> tuple[np.ndarray, np.ndarray]:
    """Import and export prices [$/MWh] from the campus's market price series.

    Wholesale: both are the price itself (the RT LMP); retail: :func:`retail_prices`
    of the price (then the day-ahead LMP).
    """
    if tariff.kind == "retail":
        return retail_prices(price_usd_per_mwh, tariff)
    price = np.asarray(price_usd_per_mwh, dtype=float)
    return price, price


@dataclass(frozen=True)
class Grid:
    """A campus's point of interconnection.

    Parameters
    ----------
    import_limit_mw : float [MW]
    export_limit_mw : float [MW]
        0: the campus never exports.
    tariff : Tariff
    """

    import_limit_mw: float = 1000.0
    export_limit_mw: float = 0.0
    tariff: Tariff = field(default_factory=Tariff)

    def __post_init__(self) -> None:
        _check_nonneg("grid", import_limit_mw=self.import_limit_mw,
                      export_limit_mw=self.export_limit_mw)


@dataclass(frozen=True)
class Battery:
    """Optional battery.

    Parameters
    ----------
    energy_mwh : float [MWh]
        Usable energy capacity.
    power_mw : float [MW]
        Charge and discharge power limit.
    charge_efficiency, discharge_efficiency : float [-]
    initial_energy_mwh : float [MWh]
        Energy at the run start.
    """

    energy_mwh: float = 50.0
    power_mw: float = 25.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    initial_energy_mwh: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("battery", energy_mwh=self.energy_mwh, power_mw=self.power_mw)
        for key in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"battery.{key}: expected a value in (0, 1], got {value!r}")
        if not 0.0 <= self.initial_energy_mwh <= self.energy_mwh:
            raise ValueError(f"battery.initial_energy_mwh: expected a value in [0, "
                             f"{self.energy_mwh}], got {self.initial_energy_mwh!r}")


# ----------------------------------------------------------------------------- campus


@dataclass(frozen=True)
class Campus:
    """One campus: a price node, a carbon zone, GPUs, and optional blocks.

    Parameters
    ----------
    name : str
    price_node : str
        Market node of the campus's price: a NYISO zone (letter ``A``..``K`` or its
        name, e.g. ``CAPITL``) or a CAISO hub (``NP15``, ``SP15``, ``ZP26``); with
        real data the node decides the source. Synthetic prices are seeded per node.
    carbon_zone : str
        Grid carbon-intensity zone, e.g. ``US-NY-NYIS`` or ``US-CAL-CISO``.
    gpus : int [GPUs]
        GPUs for the inference pools (0: no pools here).
    pue : float [-]
        Facility power / IT power, for inference and other IT alike.
    other_it : OtherIT or None
    renewable : Renewable or None
    grid : Grid
    battery : Battery or None
    """

    name: str
    price_node: str
    carbon_zone: str = "US-NY-NYIS"
    gpus: int = 0
    pue: float = 1.2
    other_it: OtherIT | None = None
    renewable: Renewable | None = None
    grid: Grid = field(default_factory=Grid)
    battery: Battery | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: expected a non-empty campus name")
        if self.gpus < 0:
            raise ValueError(f"gpus: expected a value >= 0, got {self.gpus!r}")
        if not self.pue >= 1.0:
            raise ValueError(f"pue: expected a value >= 1, got {self.pue!r}")

    @property
    def nameplate_mw(self) -> float:
        """Renewable nameplate [MW] (0 without a renewable block)."""
        return 0.0 if self.renewable is None else self.renewable.nameplate_mw


# ----------------------------------------------------------------------------- fleet


@dataclass(frozen=True)
class Flexibility:
    """Which inference levers the optimizer may use.

    Parameters
    ----------
    switching : bool
        Sw: instance counts may change from interval to interval (off: one fleet size
        per pool for the whole horizon, provisioned at its start).
    spatial : bool
        Sp: a model's tokens may be routed to any campus (off: campus c serves the
        fixed share ``G[c] / Σ G`` of every model's demand).
    quantization : bool
        Q: pools of every precision in the table (off: BF16 only).
    """

    switching: bool = True
    spatial: bool = True
    quantization: bool = True

    def covers(self, other: Flexibility) -> bool:
        """True when every lever of ``other`` is also on here (its plans are feasible here)."""
        return ((self.switching or not other.switching) and (self.spatial or not other.spatial)
                and (self.quantization or not other.quantization))


#: Scenarios S1-S6 as we read the DR seed paper's figure captions (docs/fleet.md).
SCENARIOS: dict[str, Flexibility] = {
    "S1": Flexibility(False, False, False),
    "S2": Flexibility(True, False, False),
    "S3": Flexibility(False, True, False),
    "S4": Flexibility(True, True, False),
    "S5": Flexibility(False, False, True),
    "S6": Flexibility(True, True, True),
}
SCENARIO_LABELS: dict[str, str] = {
    "S1": "none", "S2": "Sw", "S3": "Sp", "S4": "Sw+Sp", "S5": "Q", "S6": "Sw+Sp+Q",
}


@functools.cache
def committed_quant_table() -> QuantTable:
    """The committed quantization table (package data), read once per process: every
    fleet built from a scenario file shares it (it is immutable), so validating many
    scenarios (a sweep's runs) does not re-read the CSV for each."""
    return load_quant_table()


@dataclass(frozen=True)
class Fleet:
    """The LLM model families served across the campuses with GPUs.

    Parameters
    ----------
    models : tuple of str
        Model families served (rows of the quantization table).
    flexibility : str or Flexibility
        ``S1`` .. ``S6`` (:data:`SCENARIOS`), or the three levers explicitly (a TOML
        table ``{switching = true, spatial = false, quantization = true}``).
    utilization_cap : float [-]
        ρ̄: x <= ρ̄ μ n, the share of SLO throughput planned.
    start_cost_usd_per_gpu : float [$/GPU start]
        Cost of starting one instance per GPU it occupies (wear, operations), on top
        of the warm-up energy the power model already counts.
    quality_budget_pct_points : float [points]
        δ̄: token-weighted mean quality loss allowed per model and interval.
    quality_cost_usd_per_point_mtok : float [$/(point · Mtoken)]
    unserved_penalty_usd_per_mtok : float [$/Mtoken]
        Price of the feasibility slack on demand (reported whenever > 0).
    allowed_precisions : tuple of str
        Precisions the pools may use (e.g. ``("BF16", "FP8")``); empty: every
        precision of the table. Each must be a precision of some served model.
    capacity_tokens_per_s : Mapping[str, float] [tokens/s]
        Output throughput of one instance at the latency SLO that the optimizer
        plans with (μ), per ``"model/precision"``; a pool not named here uses the
        table's ``tokens_per_s_at_slo`` (measured on ML.ENERGY's chat task). A run
        fills it from the workload's token lengths
        (:func:`mpc_dc.sim.serving.workload_capacity`) unless the scenario sets it.
    power_intercept_w : Mapping[str, float] [W]
        Intercept of the planner's power line of one instance, per
        ``"model/precision"``: a pool plans ``n · power_intercept_w + s · x``. A pool
        not named here uses the table's ``idle_power_w``. A run fills it from the
        workload's token lengths (:func:`mpc_dc.params.power_line.workload_power_lines`:
        the batch curve's supporting line at ``utilization_cap × capacity``) unless the
        scenario sets it.
    power_slope_j_per_token : Mapping[str, float] [J/token]
        Slope ``s`` of that line, per ``"model/precision"``; a pool not named uses the
        table's ``marginal_energy_per_token_j``. Filled with ``power_intercept_w``.
    table : QuantTable
        The quantization-to-power table (not compared or hashed).
    """

    models: tuple[str, ...] = ("qwen3-32b", "qwen3-235b-a22b")
    flexibility: str | Flexibility = "S6"
    utilization_cap: float = 0.85
    start_cost_usd_per_gpu: float = 0.05
    quality_budget_pct_points: float = 0.2
    quality_cost_usd_per_point_mtok: float = 0.001
    unserved_penalty_usd_per_mtok: float = 1000.0
    allowed_precisions: tuple[str, ...] = ()
    capacity_tokens_per_s: Mapping[str, float] = field(default_factory=dict)
    power_intercept_w: Mapping[str, float] = field(default_factory=dict)
    power_slope_j_per_token: Mapping[str, float] = field(default_factory=dict)
    table: QuantTable = field(default_factory=committed_quant_table, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.flexibility, str) and self.flexibility not in SCENARIOS:
            raise ValueError(f"flexibility: expected one of {sorted(SCENARIOS)}, got "
                             f"{self.flexibility!r}")
        if not 0 < self.utilization_cap <= 1:
            raise ValueError(f"utilization_cap: expected a value in (0, 1], got "
                             f"{self.utilization_cap!r}")
        if not self.models or len(set(self.models)) != len(self.models):
            raise ValueError(f"models: expected distinct model names, got {self.models!r}")
        _check_nonneg("fleet", start_cost_usd_per_gpu=self.start_cost_usd_per_gpu,
                      quality_budget_pct_points=self.quality_budget_pct_points,
                      quality_cost_usd_per_point_mtok=self.quality_cost_usd_per_point_mtok,
                      unserved_penalty_usd_per_mtok=self.unserved_penalty_usd_per_mtok)
        for m in self.models:
            try:
                self.table.precisions(m)
            except KeyError as err:
                raise ValueError(f"models: {str(err).strip(chr(39) + chr(34))}") from None
        known = {q for m in self.models for q in self.table.precisions(m)}
        for q in self.allowed_precisions:
            if q not in known:
                raise ValueError(f"allowed_precisions: {q!r} is no precision of the served "
                                 f"models; expected some of {', '.join(sorted(known))}")
        for m in self.models:
            if not self.precisions(m):
                raise ValueError(f"allowed_precisions: none of {list(self.allowed_precisions)} "
                                 f"is a precision of {m} under flexibility {self.flexibility}")
        pairs = [f"{m}/{q}" for m in self.models for q in self.table.precisions(m)]
        for key, value in self.capacity_tokens_per_s.items():
            if key not in pairs:
                raise ValueError(f"capacity_tokens_per_s: {key!r} is no model/precision of "
                                 f"the fleet; expected some of {', '.join(pairs)}")
            if not 0 < value < float("inf"):
                raise ValueError(f"capacity_tokens_per_s: expected a value > 0 for {key!r}, "
                                 f"got {value!r}")
        for name in ("power_intercept_w", "power_slope_j_per_token"):
            for key, value in getattr(self, name).items():
                if key not in pairs:
                    raise ValueError(f"{name}: {key!r} is no model/precision of the fleet; "
                                     f"expected some of {', '.join(pairs)}")
                if not 0 <= value < float("inf"):
                    raise ValueError(f"{name}: expected a value >= 0 for {key!r}, "
                                     f"got {value!r}")

    @property
    def levers(self) -> Flexibility:
        """The levers of :attr:`flexibility`."""
        if isinstance(self.flexibility, Flexibility):
            return self.flexibility
        return SCENARIOS[self.flexibility]

    def capacity(self, model: str, precision: str) -> float:
        """μ: output tokens/s of one instance at the SLO that plans use [tokens/s]
        (:attr:`capacity_tokens_per_s`, else the table's ``tokens_per_s_at_slo``)."""
        key = f"{model}/{precision}"
        if key in self.capacity_tokens_per_s:
            return float(self.capacity_tokens_per_s[key])
        return float(self.table.get(model, precision).tokens_per_s_at_slo)

    def power_line(self, model: str, precision: str) -> tuple[float, float]:
        """The planner's power line of one instance: (intercept [W], slope [J/token])
        (:attr:`power_intercept_w`, :attr:`power_slope_j_per_token`, else the table's
        ``idle_power_w`` and ``marginal_energy_per_token_j``)."""
        key = f"{model}/{precision}"
        row = self.table.get(model, precision)
        return (float(self.power_intercept_w.get(key, row.idle_power_w)),
                float(self.power_slope_j_per_token.get(key, row.marginal_energy_per_token_j)))

    def precisions(self, model: str) -> tuple[str, ...]:
        """Precisions of ``model`` allowed by the levers (BF16 only without Q) and by
        :attr:`allowed_precisions`."""
        allowed = self.table.precisions(model)
        if self.allowed_precisions:
            allowed = tuple(p for p in allowed if p in self.allowed_precisions)
        return allowed if self.levers.quantization else tuple(p for p in allowed if p == "BF16")


@dataclass(frozen=True)
class DemandResponse:
    """Demand-response programme terms, per campus grid import.

    Parameters
    ----------
    reward_usd_per_kwh : float [$/kWh]
        Paid per kWh below the baseline during an event.
    penalty_usd_per_kwh : float [$/kWh]
        Charged per kWh above the cap during an event.
    cap_fraction_of_baseline : float [-]
        Cap = this × baseline during events.
    baseline : {"prior_days", "s1_plan"}
        ``prior_days``: the programme's baseline, computed during the run from the
        campus's own metered import on prior similar days (:mod:`mpc_dc.sim.dr_program`)
        and published at the event's notice; ``s1_plan``: the site's offline
        business-as-usual plan of the event day on its realized data, known before
        the run (:func:`mpc_dc.runner.dr_baseline`; a frame's ``dr_baseline_mw[C]``).
    baseline_days : int [d]
        ``prior_days``: weekdays averaged for a weekday event (CAISO: 10).
    baseline_weekend_days : int [d]
        ``prior_days``: weekend days averaged for a weekend event (CAISO: 4).
    baseline_min_days : int [d]
        ``prior_days``: fewest prior days the meter history (lead-in and run) must
        hold before an event's notice.
    lookback_days : int [d]
        ``prior_days``: reference days are sought among the local days this far
        before the event day (CAISO's look-back: 45).
    lead_in : bool
        ``prior_days``: the run is preceded by a simulated lead-in of whole weeks
        that gives every event its ``baseline_days`` within the look-back
        (:func:`mpc_dc.sim.dr_program.lead_in_days`); off: the run's own days only.
    adjustment_h : float [h]
        ``prior_days``: the day-of adjustment's window, the hours just before the
        notice (0: no adjustment); a multiple of 0.25.
    adjustment_cap : float [-]
        ``prior_days``: the adjustment factor is kept within ``1 ± adjustment_cap``.
    notice_h : float [h]
        ``prior_days``: an event and its baseline are announced this long before its
        first interval; a multiple of 0.25. (``s1_plan``: before the run.)
    enforce_cap : bool
        The plant holds each event interval's committed cap
        (:func:`mpc_dc.sim.plant.committed_cap_mw`) with the site's levers
        (:mod:`mpc_dc.sim.plant`, :mod:`mpc_dc.sim.fast_layer`), the default: since
        the planner prices the batch curve (:mod:`mpc_dc.params.power_line`) its plans
        hold the cap at little lateness (docs/fleet_closed_loop.md); off: it runs as if
        there were no cap (only the fast layer's starts stay within ``f · b``).
    """

    reward_usd_per_kwh: float = 1.0
    penalty_usd_per_kwh: float = 2.0
    cap_fraction_of_baseline: float = 1.0
    baseline: DrBaselineRule = "prior_days"
    baseline_days: int = 10
    baseline_weekend_days: int = 4
    baseline_min_days: int = 1
    lookback_days: int = 45
    lead_in: bool = True
    adjustment_h: float = 3.0
    adjustment_cap: float = 0.2
    notice_h: float = 2.0
    enforce_cap: bool = True

    def __post_init__(self) -> None:
        _check_nonneg("dr", reward_usd_per_kwh=self.reward_usd_per_kwh,
                      penalty_usd_per_kwh=self.penalty_usd_per_kwh,
                      cap_fraction_of_baseline=self.cap_fraction_of_baseline,
                      adjustment_h=self.adjustment_h, notice_h=self.notice_h)
        _check_positive("dr", baseline_days=self.baseline_days,
                        baseline_weekend_days=self.baseline_weekend_days,
                        baseline_min_days=self.baseline_min_days,
                        lookback_days=self.lookback_days)
        if not 0.0 <= self.adjustment_cap < 1.0:
            raise ValueError(f"dr.adjustment_cap: expected 0 <= value < 1, got "
                             f"{self.adjustment_cap!r}")
        for key, hours in (("adjustment_h", self.adjustment_h), ("notice_h", self.notice_h)):
            if not quarter_hours(hours):
                raise ValueError(f"dr.{key}: expected a multiple of 0.25 h, got {hours!r}")
        if self.baseline_min_days > min(self.baseline_days, self.baseline_weekend_days):
            raise ValueError(f"dr.baseline_min_days: expected at most baseline_days and "
                             f"baseline_weekend_days, got {self.baseline_min_days}")


# ----------------------------------------------------------------------------- site


@dataclass(frozen=True)
class Site:
    """Campuses, the fleet they serve, and site-wide prices.

    Parameters
    ----------
    campuses : tuple of Campus
    fleet : Fleet or None
        None: no inference pools anywhere.
    carbon_price_usd_per_t : float [$/tCO2]
        Price of the grid carbon each campus imports (0: carbon only reported).
    dr : DemandResponse
    """

    campuses: tuple[Campus, ...] = field(metadata={
        "expected": "at least one [[site.campuses]] table with a name and a price_node"})
    fleet: Fleet | None = None
    carbon_price_usd_per_t: float = 0.0
    dr: DemandResponse = field(default_factory=DemandResponse)

    def __post_init__(self) -> None:
        names = [c.name for c in self.campuses]
        if not names:
            raise ValueError("campuses: expected at least one campus")
        if len(set(names)) != len(names):
            raise ValueError(f"campuses: expected unique campus names, got {names}")
        _check_nonneg("site", carbon_price_usd_per_t=self.carbon_price_usd_per_t)
        if self.fleet is not None:
            self._check_fleet_fits(self.fleet)

    def _check_fleet_fits(self, fleet: Fleet) -> None:
        """Every served model must fit on some campus in at least one allowed precision."""
        largest = max(c.gpus for c in self.campuses)
        for model in fleet.models:
            need = min(fleet.table.get(model, q).gpus_per_instance
                       for q in fleet.precisions(model))
            if need > largest:
                raise ValueError(
                    f"fleet.models: {model} needs at least {need} GPUs per instance in the "
                    f"allowed precisions ({', '.join(fleet.precisions(model))}) but the "
                    f"largest campus has {largest}; no schedule can serve it")

    @property
    def campus_names(self) -> tuple[str, ...]:
        """Campus names in order."""
        return tuple(c.name for c in self.campuses)

    @property
    def models(self) -> tuple[str, ...]:
        """Model families served (empty without a fleet)."""
        return () if self.fleet is None else self.fleet.models

    @property
    def pools(self) -> tuple[PoolKey, ...]:
        """Pools ``(campus, model, precision)``: campuses with GPUs, then model, precision."""
        fleet = self.fleet
        if fleet is None:
            return ()
        return tuple((c.name, m, q) for c in self.campuses if c.gpus > 0 for m in fleet.models
                     for q in fleet.precisions(m))

    def row(self, pool: PoolKey) -> QuantRow:
        """The quantization-table row of a pool."""
        if self.fleet is None:
            raise KeyError(f"no fleet: pool {pool} has no table row")
        return self.fleet.table.get(pool[1], pool[2])

    def fixed_shares(self) -> dict[str, float]:
        """Campus share of every model's demand without spatial flexibility, ``G[c]/ΣG``."""
        total = sum(c.gpus for c in self.campuses)
        return {c.name: (c.gpus / total if total else 1.0 / len(self.campuses))
                for c in self.campuses}

    def campus(self, name: str) -> Campus:
        """The campus called ``name``."""
        for c in self.campuses:
            if c.name == name:
                return c
        raise KeyError(f"no campus {name!r}; campuses: {', '.join(self.campus_names)}")
