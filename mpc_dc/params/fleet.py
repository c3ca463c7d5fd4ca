"""Parameters of the multi-campus inference fleet (DESIGN.md section 3, InferenceFleet).

Frozen dataclasses: campuses, flexibility flags (scenarios S1-S6), demand-response
settings and the fleet configuration tying them to the quantization-to-power table.
Equations and units: docs/fleet.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mpc_dc.params.quant_table import QuantRow, QuantTable, load_quant_table

PoolKey = tuple[str, str, str]
"""``(campus, model, precision)`` (same as :data:`mpc_dc.sim.fleet_decision.PoolKey`)."""

#: California's 2026 cap-and-trade auction reserve price [$/tCO2], the figure the
#: seed paper's source cites.
CA_2026_AUCTION_RESERVE_USD_PER_T = 27.94


@dataclass(frozen=True)
class CampusParams:
    """One campus.

    Parameters
    ----------
    name : str
    price_node : str
        Price column key, e.g. ``"NP15"`` (``lmp_usd_per_mwh[NP15]``).
    gpus : int [GPUs]
        H100 GPUs installed, G[c].
    pue : float [-]
        Facility power / IT power.
    carbon_zone : str
        Carbon-intensity zone, e.g. ``"US-CAL-CISO"``.
    """

    name: str
    price_node: str
    gpus: int
    pue: float = 1.2
    carbon_zone: str = "US-CAL-CISO"

    def __post_init__(self) -> None:
        if self.gpus < 0 or self.pue < 1.0:
            raise ValueError(f"campus {self.name}: expected gpus >= 0 and pue >= 1")


@dataclass(frozen=True)
class Flexibility:
    """Which levers the optimizer may use.

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


#: Scenarios S1-S6 as we read the seed paper's figure captions (docs/fleet.md).
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


@dataclass(frozen=True)
class DemandResponseParams:
    """Demand-response programme terms (per campus facility power).

    Parameters
    ----------
    reward_usd_per_kwh : float [$/kWh]
        Paid per kWh of facility energy below the baseline during an event.
    penalty_usd_per_kwh : float [$/kWh]
        Charged per kWh above the cap during an event.
    cap_fraction_of_baseline : float [-]
        Cap = this × baseline during events.
    """

    reward_usd_per_kwh: float = 1.0
    penalty_usd_per_kwh: float = 2.0
    cap_fraction_of_baseline: float = 1.0


@dataclass(frozen=True)
class FleetConfig:
    """The inference fleet: campuses, models, levers and cost figures.

    Parameters
    ----------
    campuses : tuple of CampusParams
    models : tuple of str
        Model families served (rows of the quantization table).
    flexibility : Flexibility
    utilization_cap : float [-]
        ρ̄: x <= ρ̄ μ n, the share of SLO throughput planned.
    start_cost_usd_per_gpu : float [$/GPU start]
        Cost of starting one instance per GPU it occupies (wear, operations), on top
        of the warm-up energy the power model already counts.
    quality_budget_pct_points : float [points]
        δ̄: token-weighted mean quality loss allowed per model and interval.
    quality_cost_usd_per_point_mtok : float [$/(point · Mtoken)]
        Soft price of quality loss (the "quality penalty" cost term).
    carbon_price_usd_per_t : float [$/tCO2]
    unserved_penalty_usd_per_mtok : float [$/Mtoken]
        Price of the feasibility slack on demand (reported whenever > 0).
    dr : DemandResponseParams
    table : QuantTable
        The quantization-to-power table (not compared or hashed).
    """

    campuses: tuple[CampusParams, ...] = (
        CampusParams("NP15", "NP15", 4096),
        CampusParams("SP15", "SP15", 4096),
        CampusParams("ZP26", "ZP26", 2048),
    )
    models: tuple[str, ...] = ("qwen3-8b", "qwen3-32b", "qwen3-235b-a22b")
    flexibility: Flexibility = field(default_factory=Flexibility)
    utilization_cap: float = 0.85
    start_cost_usd_per_gpu: float = 0.05
    quality_budget_pct_points: float = 0.2
    quality_cost_usd_per_point_mtok: float = 0.001
    carbon_price_usd_per_t: float = CA_2026_AUCTION_RESERVE_USD_PER_T
    unserved_penalty_usd_per_mtok: float = 1000.0
    dr: DemandResponseParams = field(default_factory=DemandResponseParams)
    table: QuantTable = field(default_factory=load_quant_table, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.utilization_cap <= 1:
            raise ValueError("FleetConfig.utilization_cap: expected a value in (0, 1]")
        names = [c.name for c in self.campuses]
        if len(set(names)) != len(names) or not names:
            raise ValueError("FleetConfig.campuses: expected unique campus names")
        for m in self.models:
            self.table.precisions(m)  # raises KeyError naming the models available

    @property
    def campus_names(self) -> tuple[str, ...]:
        """Campus names in order."""
        return tuple(c.name for c in self.campuses)

    def precisions(self, model: str) -> tuple[str, ...]:
        """Precisions of ``model`` allowed by the flags (BF16 only without Q)."""
        allowed = self.table.precisions(model)
        return allowed if self.flexibility.quantization else tuple(
            p for p in allowed if p == "BF16")

    @property
    def pools(self) -> tuple[PoolKey, ...]:
        """Pools ``(campus, model, precision)`` in model order: campus, model, precision."""
        return tuple((c.name, m, q) for c in self.campuses for m in self.models
                     for q in self.precisions(m))

    def row(self, pool: PoolKey) -> QuantRow:
        """The table row of a pool."""
        return self.table.get(pool[1], pool[2])

    def fixed_shares(self) -> dict[str, float]:
        """Campus share of every model's demand without spatial flexibility, ``G[c]/ΣG``."""
        total = sum(c.gpus for c in self.campuses)
        return {c.name: (c.gpus / total if total else 1.0 / len(self.campuses))
                for c in self.campuses}
