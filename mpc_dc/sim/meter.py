"""Settlement: prices what actually happened, interval by interval and per billing period.

Per interval ``t`` (Δ = 0.25 h):

* energy cost ``π⁺[t] · import[t] · Δ`` [$], export revenue ``π⁻[t] · export[t] · Δ`` [$]
  (wholesale: π⁺ = π⁻ = realized LMP);
* unserved non-deferrable work ``c_u · W_unserved[t]`` and missed deferrable work
  ``c_m · W_missed[t]`` [$] (penalties that make hidden failures visible in cost).

Per billing period (calendar month in the tariff's local time zone), retail only:
``λ · max_t import[t]`` [$], charged on the period's last interval. The running
peak-to-date is the controller's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mpc_dc.params.site import TariffParams
from traces.grid import STEP_H


@dataclass(frozen=True)
class Penalties:
    """Prices of failures [$/WU].

    Attributes
    ----------
    unserved_usd_per_wu : float [$/WU]
        Non-deferrable work that could not run (value of lost compute).
    missed_usd_per_wu : float [$/WU]
        Deferrable work not done by its deadline.
    """

    unserved_usd_per_wu: float = 1000.0
    missed_usd_per_wu: float = 500.0


@dataclass
class Meter:
    """Settles intervals and billing periods.

    Parameters
    ----------
    tariff : TariffParams
    local_tz : str
        Time zone of the billing calendar.
    penalties : Penalties
    """

    tariff: TariffParams
    local_tz: str = "America/New_York"
    penalties: Penalties = field(default_factory=Penalties)
    peak_import_mw: float = 0.0
    _period: int | None = None

    def billing_periods(self, starts: pd.DatetimeIndex) -> np.ndarray:
        """Billing period of each interval start: ``12·year + month`` of the local date."""
        local = starts.tz_convert(self.local_tz)
        return np.asarray(12 * local.year + local.month, dtype=np.int64)

    def peak_to_date(self, period: int) -> float:
        """Peak import so far in billing period ``period`` [MW]."""
        return self.peak_import_mw if period == self._period else 0.0

    def settle(
        self,
        period: int,
        *,
        import_mw: float,
        export_mw: float,
        import_price_usd_per_mwh: float,
        export_price_usd_per_mwh: float,
        unserved_wu: float,
        missed_wu: float,
        period_ends: bool,
    ) -> dict[str, float]:
        """Settle one interval of billing period ``period``; returns its costs [$].

        ``period_ends`` is True for the last interval of a billing period or run;
        the demand charge is then billed on the period's peak.
        """
        if period != self._period:
            self._period = period
            self.peak_import_mw = 0.0
        self.peak_import_mw = max(self.peak_import_mw, import_mw)
        demand_charge = 0.0
        if period_ends and self.tariff.kind == "retail":
            demand_charge = self.tariff.demand_charge_usd_per_mw * self.peak_import_mw
        return {
            "energy_import_usd": import_price_usd_per_mwh * import_mw * STEP_H,
            "export_revenue_usd": export_price_usd_per_mwh * export_mw * STEP_H,
            "demand_charge_usd": demand_charge,
            "unserved_penalty_usd": self.penalties.unserved_usd_per_wu * unserved_wu,
            "missed_penalty_usd": self.penalties.missed_usd_per_wu * missed_wu,
            "peak_import_to_date_mw": self.peak_import_mw,
        }


COST_COLUMNS = (
    "energy_import_usd",
    "export_revenue_usd",
    "demand_charge_usd",
    "unserved_penalty_usd",
    "missed_penalty_usd",
)


def net_cost_usd(row: dict[str, float] | pd.Series | pd.DataFrame) -> float:
    """Energy cost − export revenue + demand charge + penalties [$] (summed over rows)."""
    total = (
        row["energy_import_usd"]
        - row["export_revenue_usd"]
        + row["demand_charge_usd"]
        + row["unserved_penalty_usd"]
        + row["missed_penalty_usd"]
    )
    return float(total.sum()) if hasattr(total, "sum") else float(total)
