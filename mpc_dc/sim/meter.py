"""Settlement per campus: prices what actually happened at each grid connection.

Per campus and interval ``t`` (Δ = 0.25 h), on the realized import ``m[t]`` and
export ``x[t]`` [MW]:

* energy ``π⁺[t] · m[t] · Δ`` [$] and export revenue ``π⁻[t] · x[t] · Δ`` [$]
  (wholesale: π⁺ = π⁻ = the realized market price; retail: the tariff's rule,
  :func:`mpc_dc.site.config.tariff_prices`);
* carbon on grid draw ``κ[t] · m[t] · Δ`` [kg] (κ [gCO2/kWh] × MWh = kg) and its
  cost ``carbon price [$/t] × kg / 1000``; the renewable's own output and exports
  carry none;
* demand response in event intervals (``dr_event[C]``), on import against the
  baseline ``b[t]`` (``dr_baseline_mw[C]``: the S1 plan's under ``site.dr.baseline =
  "s1_plan"``, the programme's from the meter's own ledger under ``prior_days``,
  :mod:`mpc_dc.sim.dr_program`): reward ``r · 1000 · (b[t] − m[t]) · Δ``
  [$] (negative when the campus imports more than its baseline: the programme is
  settled on the signed deviation, as the optimizer prices it) and penalty
  ``p · 1000 · max(m[t] − f · b[t], 0) · Δ`` [$] above the cap ``f · b``
  (r, p [$/kWh], f the cap fraction; :class:`mpc_dc.site.config.DemandResponse`);
* penalties that make hidden failures visible in cost: unserved non-deferrable
  work ``c_u · W_unserved[t]`` and deferrable work missing its deadline
  ``c_m · W_missed[t]`` [$] (:class:`Penalties`).

Per billing period (calendar month in the run's local time zone), for a campus
with a retail tariff: ``λ · max_t m[t]`` [$], charged on the period's last
interval (or the run's last). The running peak-to-date is the controller's state.

Net cost = energy − export revenue + demand charge + carbon − DR reward + DR
penalty + penalties (:func:`net_cost_usd`), plus, in a run with a fleet, the price of
the requests that missed their SLO (``lateness_usd``, :mod:`mpc_dc.sim.lateness`: booked
per interval and campus after the run, not settled here). Its two sides, costs (every
term but the credits) and revenue (export revenue + DR reward), are
:func:`costs_and_revenue_usd`: percentages of cost are taken of the costs. Unserved inference tokens
are not priced apart: a request never served is late to the run end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mpc_dc.sim.exogenous import CampusRealized
from mpc_dc.sim.invariants import InvariantError
from mpc_dc.site.config import Campus, DemandResponse, Site
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


COST_COLUMNS: tuple[str, ...] = (
    "energy_import_usd",
    "export_revenue_usd",
    "demand_charge_usd",
    "carbon_cost_usd",
    "dr_reward_usd",
    "dr_penalty_usd",
    "unserved_penalty_usd",
    "missed_penalty_usd",
)
"""Cost components of one (interval, campus) row [$]."""

CREDIT_COLUMNS: frozenset[str] = frozenset({"export_revenue_usd", "dr_reward_usd"})
"""Components that reduce the net cost."""

SERVICE_COST_COLUMNS: tuple[str, ...] = ("lateness_usd",)
"""Costs of the service rather than the grid connection [$]: in the net cost when a
ledger has them (a run with a fleet), booked after the run by
:mod:`mpc_dc.sim.lateness`, never by the meter."""

METER_COLUMNS: tuple[str, ...] = (
    *COST_COLUMNS,
    "carbon_kg",
    "dr_reduction_mw",
    "dr_excess_mw",
    "peak_import_to_date_mw",
)
"""Everything the meter writes into a ledger row, in this order."""


def _summed_terms(rows: Mapping[str, float] | pd.Series | pd.DataFrame
                  ) -> list[tuple[str, float]]:
    """Each cost and credit term of ``rows`` summed [$]: every :data:`COST_COLUMNS`
    entry, then the :data:`SERVICE_COST_COLUMNS` the rows have."""
    terms = []
    for name in (*COST_COLUMNS, *SERVICE_COST_COLUMNS):
        if name not in COST_COLUMNS and name not in rows:
            continue
        value = rows[name]
        terms.append((name, float(value.sum()) if hasattr(value, "sum") else float(value)))
    return terms


def net_cost_usd(rows: Mapping[str, float] | pd.Series | pd.DataFrame) -> float:
    """Net cost [$] of one row or summed over rows (credits subtracted), including the
    service costs (:data:`SERVICE_COST_COLUMNS`) where the rows have them."""
    total = 0.0
    for name, value in _summed_terms(rows):
        total += -value if name in CREDIT_COLUMNS else value
    return total


def costs_and_revenue_usd(rows: Mapping[str, float] | pd.Series | pd.DataFrame
                          ) -> tuple[float, float]:
    """The net cost's two sides [$]: ``(costs, revenue)`` with ``net = costs − revenue``.

    ``costs`` sums every term that is not a credit (energy import, demand charge,
    carbon, DR penalty, unserved and missed-deadline penalties and, where the rows have
    it, the price of lateness, the SLO term); ``revenue`` sums the
    :data:`CREDIT_COLUMNS` (export revenue and DR reward). A percentage of cost is
    taken of ``costs``, never of the net, which revenue can bring near zero or below.
    Each side keeps its terms' signs: an import at a negative price is a negative
    energy charge, an event interval above the baseline a negative DR reward.

    ``rows`` is one ledger row, ledger rows (summed) or a run's KPIs (whose keys are the
    ledger's column names), so that KPIs written before these keys existed are split
    the same way.
    """
    costs = revenue = 0.0
    for name, value in _summed_terms(rows):
        if name in CREDIT_COLUMNS:
            revenue += value
        else:
            costs += value
    return costs, revenue


def pct_of_costs(delta_usd: ArrayLike, costs_usd: ArrayLike) -> np.ndarray:
    """``delta_usd`` [$] (a difference of net costs) in % of ``costs_usd`` [$] (the
    :func:`costs_and_revenue_usd` costs of the run it is measured against), NaN where
    those costs are not positive: the base of every percentage of cost, never a net
    that revenue can bring to zero or below."""
    costs = np.asarray(costs_usd, dtype=float)
    base = np.where(np.isfinite(costs) & (costs > 0), costs, np.nan)
    return 100.0 * np.asarray(delta_usd, dtype=float) / base


def billing_periods(starts: pd.DatetimeIndex, local_tz: str) -> np.ndarray:
    """Billing period of each interval start: ``12·year + month`` of its local date."""
    local = starts.tz_convert(local_tz)
    return np.asarray(12 * local.year + local.month, dtype=np.int64)


@dataclass
class CampusMeter:
    """Settles one campus's intervals and billing periods (module docstring).

    Parameters
    ----------
    campus : Campus
    carbon_price_usd_per_t : float [$/tCO2]
    dr : DemandResponse
    penalties : Penalties

    Attributes
    ----------
    totals : dict[str, float]
        The settlement book: every :data:`METER_COLUMNS` cost summed over the
        intervals settled so far [$] (checked against the ledger after the run).
    """

    campus: Campus
    carbon_price_usd_per_t: float = 0.0
    dr: DemandResponse = field(default_factory=DemandResponse)
    penalties: Penalties = field(default_factory=Penalties)
    peak_import_mw: float = 0.0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COST_COLUMNS, 0.0))
    _period: int | None = None

    def peak_to_date(self, period: int) -> float:
        """Peak import so far in billing period ``period`` [MW] (0 in a new period)."""
        return self.peak_import_mw if period == self._period else 0.0

    def settle(
        self,
        period: int,
        *,
        import_mw: float,
        export_mw: float,
        realized: CampusRealized,
        unserved_wu: float,
        missed_wu: float,
        period_ends: bool,
    ) -> tuple[float, ...]:
        """Settle one interval of billing period ``period``.

        ``period_ends`` is True on the last interval of a billing period or of the
        run: the demand charge is then billed on the period's peak.

        Returns
        -------
        tuple of float
            Values of :data:`METER_COLUMNS`, in that order.
        """
        if period != self._period:
            self._period = period
            self.peak_import_mw = 0.0
        self.peak_import_mw = max(self.peak_import_mw, import_mw)
        tariff = self.campus.grid.tariff
        demand_charge = 0.0
        if period_ends and tariff.kind == "retail":
            demand_charge = tariff.demand_charge_usd_per_mw * self.peak_import_mw
        carbon_kg = realized.carbon_gco2_per_kwh * import_mw * STEP_H
        reduction = excess = 0.0
        if realized.dr_event:
            base = realized.dr_baseline_mw
            reduction = base - import_mw
            excess = max(import_mw - self.dr.cap_fraction_of_baseline * base, 0.0)
        costs = (
            realized.import_price_usd_per_mwh * import_mw * STEP_H,
            realized.export_price_usd_per_mwh * export_mw * STEP_H,
            demand_charge,
            self.carbon_price_usd_per_t * carbon_kg / 1000.0,
            1000.0 * self.dr.reward_usd_per_kwh * reduction * STEP_H,
            1000.0 * self.dr.penalty_usd_per_kwh * excess * STEP_H,
            self.penalties.unserved_usd_per_wu * unserved_wu,
            self.penalties.missed_usd_per_wu * missed_wu,
        )
        totals = self.totals
        for name, value in zip(COST_COLUMNS, costs, strict=True):
            totals[name] += value
        return (*costs, carbon_kg, reduction, excess, self.peak_import_mw)


def audit_settlement(
    ledger: pd.DataFrame,
    site: Site,
    penalties: Penalties,
    local_tz: str,
    books: Mapping[str, Mapping[str, float]],
) -> None:
    """Re-settle a ledger from its own flows and prices; compare costs and the meters' books.

    Each cost column of every row must equal the module docstring's rule applied to
    the row's ``import_mw``, ``export_mw``, prices, carbon intensity, DR columns and
    work columns; each campus's demand charge must be ``λ ×`` its billing period's
    peak import on the period's last interval (or the run's last) and 0 elsewhere;
    each campus's costs summed must equal its meter's book ``books[campus]``.

    Parameters
    ----------
    ledger : DataFrame
        Indexed ``(interval_start_utc, campus)`` (:data:`mpc_dc.sim.engine.LEDGER_COLUMNS`).
    site : Site
    penalties : Penalties
    local_tz : str
        Billing calendar.
    books : Mapping[str, Mapping[str, float]]
        Per campus, each :data:`COST_COLUMNS` total as the meter accumulated it [$].

    Raises
    ------
    InvariantError
        Naming the first row (interval and campus) or campus total that differs.
    """
    # Column access on the (interval, campus) index costs a MultiIndex view each time.
    data = ledger.reset_index(drop=True)
    names = ledger.index.get_level_values("campus")
    times = pd.DatetimeIndex(ledger.index.get_level_values(0))
    for campus in site.campuses:
        mine = np.asarray(names == campus.name)
        rows = data[mine]
        when = times[mine]

        def col(name: str, frame: pd.DataFrame = rows) -> np.ndarray:
            return frame[name].to_numpy(dtype=float)

        imp, exp = col("import_mw"), col("export_mw")
        event = rows["dr_event"].to_numpy(dtype=bool)
        base = col("dr_baseline_mw")
        dr = site.dr
        expected = {
            "energy_import_usd": col("import_price_usd_per_mwh") * imp * STEP_H,
            "export_revenue_usd": col("export_price_usd_per_mwh") * exp * STEP_H,
            "demand_charge_usd": _demand_charges(when, imp, campus, local_tz),
            "carbon_cost_usd": site.carbon_price_usd_per_t
            * (col("carbon_gco2_per_kwh") * imp * STEP_H) / 1000.0,
            "dr_reward_usd": np.where(event, 1000.0 * dr.reward_usd_per_kwh * (base - imp)
                                      * STEP_H, 0.0),
            "dr_penalty_usd": np.where(event, 1000.0 * dr.penalty_usd_per_kwh * np.maximum(
                imp - dr.cap_fraction_of_baseline * base, 0.0) * STEP_H, 0.0),
            "unserved_penalty_usd": penalties.unserved_usd_per_wu * col("work_nd_unserved_wu"),
            "missed_penalty_usd": penalties.missed_usd_per_wu * col("work_df_missed_wu"),
        }
        for name, want in expected.items():
            got = col(name)
            bad = np.abs(got - want) > 1e-9 * np.maximum(1.0, np.abs(want))
            if bad.any():
                k = int(np.argmax(bad))
                raise InvariantError(
                    f"campus {campus.name}: {name} {got[k]:.9g} $ != {want[k]:.9g} $ settled "
                    "from the row's flows and prices", int(rows["step"].to_numpy()[k]),
                    when[k])
            book = float(books[campus.name][name])
            total = float(got.sum())
            if abs(book - total) > 1e-9 * max(1.0, abs(book)):
                raise InvariantError(f"campus {campus.name}: {name} summed over the ledger "
                                     f"{total:.6f} $ != the meter's book {book:.6f} $")


def _demand_charges(index: pd.DatetimeIndex, import_mw: np.ndarray, campus: Campus,
                    local_tz: str) -> np.ndarray:
    """``λ × peak import`` of each billing period on its last interval, 0 elsewhere [$]."""
    out = np.zeros(import_mw.size)
    tariff = campus.grid.tariff
    if tariff.kind != "retail" or not import_mw.size:
        return out
    periods = billing_periods(index, local_tz)
    last = np.flatnonzero(np.append(periods[1:] != periods[:-1], True))
    peaks = pd.Series(import_mw).groupby(periods).max()
    out[last] = tariff.demand_charge_usd_per_mw * peaks.loc[periods[last]].to_numpy()
    return out
