"""Site parameters of a renewable-colocated data center (RCDC).

Frozen dataclasses with units in the field names, validated on construction
(:class:`~traces.errors.ConfigError`, one line naming the key). Build them from
TOML tables with :func:`mpc_dc.config.from_mapping`.

Work unit
---------
Compute work is measured in work units [WU]: 1 WU is the work the data center
does with 1 MWh of IT energy when it runs at full IT load. The processing
function ``F`` maps IT power [MW] to a work rate [WU/h]; it is concave,
piecewise-linear, ``F(0) = 0`` and ``F(P_max) = P_max``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mpc_dc.config import positive
from traces.errors import ConfigError

SOURCE = "<site>"

TariffKind = Literal["wholesale", "retail"]


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
            raise ConfigError(SOURCE, "power_frac and work_frac need equal length >= 2",
                              key="processing")
        if p[0] != 0.0 or w[0] != 0.0 or p[-1] != 1.0 or w[-1] != 1.0:
            raise ConfigError(SOURCE, "breakpoints must start at (0, 0) and end at (1, 1)",
                              key="processing")
        if np.any(np.diff(p) <= 0) or np.any(np.diff(w) <= 0):
            raise ConfigError(SOURCE, "breakpoints must be strictly increasing",
                              key="processing")
        slopes = np.diff(w) / np.diff(p)
        if np.any(np.diff(slopes) > 1e-12):
            raise ConfigError(SOURCE, f"F must be concave (non-increasing slopes), got {slopes}",
                              key="processing")

    def segments(self, it_capacity_mw: float) -> tuple[np.ndarray, np.ndarray]:
        """Segment widths and slopes of F.

        Returns
        -------
        width_mw : ndarray [MW]
            IT-power width of each segment.
        slope_wu_per_mwh : ndarray [WU/MWh]
            Work per unit of IT energy on each segment (non-increasing).
        """
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
class DataCenterParams:
    """The data center.

    Parameters
    ----------
    it_capacity_mw : float [MW]
        Maximum IT power.
    pue : float [-]
        Power usage effectiveness: site power = pue × IT power.
    processing : ProcessingFunction
        Work rate as a function of IT power.
    """

    it_capacity_mw: float = 100.0
    pue: float = 1.0
    processing: ProcessingFunction = field(default_factory=ProcessingFunction)

    def __post_init__(self) -> None:
        positive(SOURCE, "datacenter.it_capacity_mw", self.it_capacity_mw)
        if self.pue < 1.0:
            raise ConfigError(SOURCE, f"expected pue >= 1, got {self.pue}", key="datacenter.pue")

    @property
    def site_capacity_mw(self) -> float:
        """Maximum site power [MW]."""
        return self.it_capacity_mw * self.pue


@dataclass(frozen=True)
class RenewableParams:
    """Colocated renewable plant: available power = capacity factor × nameplate.

    Parameters
    ----------
    nameplate_mw : float [MW]
        Installed capacity (0 = no colocation).
    """

    nameplate_mw: float = 150.0

    def __post_init__(self) -> None:
        positive(SOURCE, "renewable.nameplate_mw", self.nameplate_mw, allow_zero=True)


@dataclass(frozen=True)
class TariffParams:
    """How grid energy is priced.

    ``wholesale``: import and export both settle at the real-time LMP.
    ``retail``: import at π⁺, export credited at π⁻ (both per interval, built by
    :func:`retail_prices` from day-ahead prices), plus a demand charge on the
    highest 15-min import of the billing period.

    Parameters
    ----------
    kind : {"wholesale", "retail"}
    demand_charge_usd_per_kw : float [$/kW per billing period]
        Charge on the billing-period peak import (retail only).
    import_adder_usd_per_mwh : float [$/MWh]
        Delivery adder on top of the day-ahead price for imports (retail only).
    export_credit_factor : float [-]
        Export credit as a fraction of the day-ahead price (retail only).
    billing_period : {"month"}
        Length of the demand-charge billing period.
    """

    kind: TariffKind = "wholesale"
    demand_charge_usd_per_kw: float = 0.0
    import_adder_usd_per_mwh: float = 0.0
    export_credit_factor: float = 1.0
    billing_period: Literal["month"] = "month"

    def __post_init__(self) -> None:
        if self.kind not in ("wholesale", "retail"):
            raise ConfigError(SOURCE, f"expected 'wholesale' or 'retail', got {self.kind!r}",
                              key="grid.tariff.kind")
        positive(SOURCE, "grid.tariff.demand_charge_usd_per_kw", self.demand_charge_usd_per_kw,
                 allow_zero=True)
        positive(SOURCE, "grid.tariff.import_adder_usd_per_mwh", self.import_adder_usd_per_mwh,
                 allow_zero=True)
        if not 0.0 <= self.export_credit_factor <= 1.0:
            raise ConfigError(SOURCE,
                              f"expected a value in [0, 1], got {self.export_credit_factor}",
                              key="grid.tariff.export_credit_factor")
        if self.kind == "wholesale" and self.demand_charge_usd_per_kw > 0:
            raise ConfigError(SOURCE, "a demand charge applies to the retail tariff only",
                              key="grid.tariff.demand_charge_usd_per_kw")

    @property
    def demand_charge_usd_per_mw(self) -> float:
        """Demand charge [$/MW per billing period]."""
        return 1000.0 * self.demand_charge_usd_per_kw

    @classmethod
    def retail_ny(cls) -> TariffParams:
        """Retail tariff of the RCDC study: 12.39 $/kW demand charge, DA-indexed energy."""
        return cls(kind="retail", demand_charge_usd_per_kw=12.39)


def retail_prices(da_price_usd_per_mwh: np.ndarray,
                  tariff: TariffParams) -> tuple[np.ndarray, np.ndarray]:
    """Retail import and export prices tied to day-ahead prices.

    ``π⁺[t] = π_DA[t] + adder`` and ``π⁻[t] = factor · π_DA[t]``.

    Parameters
    ----------
    da_price_usd_per_mwh : ndarray [$/MWh]
        Day-ahead LMP on the 15-min grid.
    tariff : TariffParams

    Returns
    -------
    import_price_usd_per_mwh, export_price_usd_per_mwh : ndarray [$/MWh]
    """
    da = np.asarray(da_price_usd_per_mwh, dtype=float)
    return da + tariff.import_adder_usd_per_mwh, tariff.export_credit_factor * da


@dataclass(frozen=True)
class GridParams:
    """Point of interconnection.

    Parameters
    ----------
    import_limit_mw : float [MW]
    export_limit_mw : float [MW]
    tariff : TariffParams
    """

    import_limit_mw: float = 200.0
    export_limit_mw: float = 200.0
    tariff: TariffParams = field(default_factory=TariffParams)

    def __post_init__(self) -> None:
        positive(SOURCE, "grid.import_limit_mw", self.import_limit_mw, allow_zero=True)
        positive(SOURCE, "grid.export_limit_mw", self.export_limit_mw, allow_zero=True)


@dataclass(frozen=True)
class BatteryParams:
    """Optional battery.

    Parameters
    ----------
    energy_mwh : float [MWh]
        Usable energy capacity.
    power_mw : float [MW]
        Charge and discharge power limit.
    charge_efficiency, discharge_efficiency : float [-]
    """

    energy_mwh: float = 50.0
    power_mw: float = 25.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95

    def __post_init__(self) -> None:
        positive(SOURCE, "battery.energy_mwh", self.energy_mwh)
        positive(SOURCE, "battery.power_mw", self.power_mw)
        for key in ("charge_efficiency", "discharge_efficiency"):
            value = getattr(self, key)
            if not 0.0 < value <= 1.0:
                raise ConfigError(SOURCE, f"expected a value in (0, 1], got {value}",
                                  key=f"battery.{key}")


@dataclass(frozen=True)
class SiteConfig:
    """Everything the RCDC builder needs about the site.

    Parameters
    ----------
    datacenter, renewable, grid : see their classes
    battery : BatteryParams or None
        ``None`` = no battery block.
    """

    datacenter: DataCenterParams = field(default_factory=DataCenterParams)
    renewable: RenewableParams = field(default_factory=RenewableParams)
    grid: GridParams = field(default_factory=GridParams)
    battery: BatteryParams | None = None
