"""The physical site, campus by campus: executes a committed decision against realized data.

Recourse (what happens when the forecast was wrong), applied in this order for
one campus and one interval ``[t, t + Δ)``, Δ = 0.25 h:

1. Inference: serving has already run the interval's requests on the committed
   instances (:mod:`mpc_dc.sim.serving`, :mod:`mpc_dc.sim.fluid`); its IT energy
   over Δ is the inference IT power ``P_inf`` [MW]. The plant cannot shed it: the
   requests were served.
2. Other IT (a campus with an ``other_it`` block): non-deferrable work ``W_nd``
   [WU] is what arrived and must run now; committed deferrable work ``w_df`` is
   capped by the pending backlog. Work is capped by the IT capacity,
   ``W_nd + w_df ≤ Δ·F(P_max)``: deferrable work is cut first (it stays in the
   backlog); non-deferrable work above capacity is *unserved* (counted and
   priced by the meter). Other-IT power ``P_oth = F⁻¹((W_nd + w_df)/Δ)`` [MW].
3. Facility power ``L = PUE · (P_inf + P_oth)`` [MW]. The battery follows its
   committed set-points within its power and energy limits.
4. Renewable ``R = cf · Q_R`` [MW]. Where the plan imports and curtails in the
   same interval (it is paid to import, e.g. at a negative price, so it buys
   rather than use its own output), the committed curtailment ``c`` is executed,
   capped at ``R``; the controller decides it on the prices it knows
   (``controller.curtail_confidence`` for the MPC), never the plant on the
   interval's realized price, which is not known when the interval starts (an
   hourly price is published at the end of its hour; the plant of issue 16's
   session 8 curtailed on it, ``site.campuses.grid.curtail_on_price``, a look-ahead
   of up to an hour, removed). The rest, ``R − c``, serves the load; a deficit is
   imported within the import limit. If the limit binds, the committed curtailment
   is given up first, then deferrable work is cut, then the battery charge, then
   non-deferrable work is unserved.
5. Inference over the limit: if the import still exceeds the limit after step
   4 has shed everything it may (inference alone, with what the renewable and
   the battery discharge supply, draws more than the connection carries), the
   import exceeds the limit by that much: the plant cannot un-serve requests
   already served. The excess is recorded (``import_over_limit_mw``; KPIs
   ``import_over_limit_mwh`` and ``import_over_limit_intervals``), logged once per
   run by the engine, and settled like any import. A policy that keeps its
   inference within the connection never causes it.
6. A surplus is exported (within the export limit) when the export price the
   decision was committed on (:attr:`~mpc_dc.sim.policy.CampusDecision.export_price_usd_per_mwh`,
   the controller's expectation; the last published price where the policy gives
   none, filled in by the engine) is positive, else curtailed; the meter settles the
   export at the realized price. Import and export are never simultaneous. A planned
   spill of surplus needs no commitment: this rule spills it.
7. DR cap (``site.dr.enforce_cap``, in an event interval): if the import is still
   above the interval's committed cap ``K`` (:func:`committed_cap_mw`), the plant
   takes it down with its own levers, each only as far as needed, in this order:
   the committed curtailment is given back, the battery charge given up,
   deferrable work deferred (it stays in the backlog), the battery discharged
   further (within its power and energy). The import they took off is
   ``dr_relief_mw`` and the work deferred ``dr_deferred_wu``. Inference is held to
   the cap inside the interval, before this step, by the fast layer
   (:mod:`mpc_dc.sim.fast_layer`) within :meth:`CampusPlant.inference_cap_mw`, the
   inference power these levers leave room for.

No rule here reads a realized price: every price the plant acts on was known when
the interval's decision was committed (DESIGN.md §8; the realized prices are the
meter's, :mod:`mpc_dc.sim.meter`). The DR event and its baseline are announced ahead.

The balance ``import − export = L + charge − discharge − renewable_used`` holds
each interval (``renewable_used = R − curtailed``: renewable power fed to the
campus bus, consumed or exported); the engine checks it after the run with the
other books (:func:`mpc_dc.sim.invariants.check_campus_ledger`). The battery's
state of charge is checked as it moves
(:func:`~mpc_dc.sim.invariants.battery_energy_after`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.exogenous import CampusRealized
from mpc_dc.sim.invariants import battery_energy_after
from mpc_dc.sim.policy import CampusDecision
from mpc_dc.site.config import Campus, OtherIT
from traces.grid import STEP_H

_TOL = 1e-7
"""Flows below this are rounding [MW]."""

RECORD_COLUMNS: tuple[str, ...] = (
    "work_nd_wu",
    "work_nd_unserved_wu",
    "work_df_committed_wu",
    "work_df_done_wu",
    "it_inference_mw",
    "it_other_mw",
    "facility_power_mw",
    "renewable_available_mw",
    "renewable_used_mw",
    "curtailed_mw",
    "import_mw",
    "export_mw",
    "import_over_limit_mw",
    "battery_charge_mw",
    "battery_discharge_mw",
    "battery_energy_mwh",
    "planned_import_mw",
    "planned_export_mw",
    "dr_committed_cap_mw",
    "dr_relief_mw",
    "dr_deferred_wu",
)
"""Fields of :class:`CampusRecord` written to the ledger, in this order."""


@dataclass(frozen=True)
class CampusRecord:
    """What happened at one campus in one interval. Powers are interval averages [MW].

    Attributes
    ----------
    step : int
    work_nd_wu, work_nd_unserved_wu : float [WU]
        Non-deferrable work arrived, and the part not served.
    work_df_committed_wu, work_df_done_wu : float [WU]
        Deferrable work committed by the policy, and done.
    it_inference_mw, it_other_mw : float [MW]
        IT power of inference and of other IT.
    facility_power_mw : float [MW]
        ``PUE · (it_inference_mw + it_other_mw)``.
    renewable_available_mw, renewable_used_mw, curtailed_mw : float [MW]
    import_mw, export_mw : float [MW]
    import_over_limit_mw : float [MW]
        Import above the connection's limit (module docstring, step 5).
    battery_charge_mw, battery_discharge_mw : float [MW]
        Executed set-points.
    battery_energy_mwh : float [MWh]
        At the interval end.
    planned_import_mw, planned_export_mw : float [MW]
        The plan's grid flows, reported beside the realized ones.
    dr_committed_cap_mw : float [MW]
        The interval's committed DR cap (:func:`committed_cap_mw`); inf outside events (no cap).
    dr_relief_mw : float [MW]
        Import the plant's levers took off to hold the cap (module docstring, step 7).
    dr_deferred_wu : float [WU]
        Committed deferrable work deferred to hold the cap.
    """

    step: int
    work_nd_wu: float
    work_nd_unserved_wu: float
    work_df_committed_wu: float
    work_df_done_wu: float
    it_inference_mw: float
    it_other_mw: float
    facility_power_mw: float
    renewable_available_mw: float
    renewable_used_mw: float
    curtailed_mw: float
    import_mw: float
    export_mw: float
    import_over_limit_mw: float
    battery_charge_mw: float
    battery_discharge_mw: float
    battery_energy_mwh: float
    planned_import_mw: float
    planned_export_mw: float
    dr_committed_cap_mw: float = math.inf
    dr_relief_mw: float = 0.0
    dr_deferred_wu: float = 0.0

    def values(self) -> tuple[float, ...]:
        """The :data:`RECORD_COLUMNS` values, in that order."""
        return tuple(getattr(self, name) for name in RECORD_COLUMNS)


def committed_cap_mw(realized: CampusRealized, decision: CampusDecision,
                     cap_fraction_of_baseline: float) -> float | None:
    """The committed DR cap of one campus in one interval [MW]; None outside events.

    ``K = max(f · b, p̂)``: the programme's cap (``f`` the cap fraction, ``b`` the
    baseline the interval is settled against), raised to the plan's import ``p̂`` where
    the plan of the interval (the decision committed at its start) is above it. The
    site commits to stay under the programme's cap; where its planner chose to exceed
    it, having priced the penalty against what serving under it would cost, it commits
    to no more than it planned. A decision without a planned import (NaN) commits the
    programme's cap.
    """
    if not realized.dr_event:
        return None
    cap = cap_fraction_of_baseline * realized.dr_baseline_mw
    planned = decision.planned_import_mw
    return planned if math.isfinite(planned) and planned > cap else cap


def work_capacity_wu(other_it: OtherIT | None) -> float:
    """Work a campus's other IT can do in one interval at full power, ``Δ·F(P_max)``
    [WU] (0 without other IT)."""
    if other_it is None:
        return 0.0
    cap = other_it.it_capacity_mw
    return STEP_H * float(other_it.processing.rate_wu_per_h(np.array(cap), cap))


class Setpoints(NamedTuple):
    """What the plant starts one campus's interval from (:meth:`CampusPlant.setpoints`):
    work [WU] within the capacity (and the backlog), battery set-points within its
    limits, renewable output and the committed curtailment [MW]."""

    served_nd_wu: float
    work_df_wu: float
    charge_mw: float
    discharge_mw: float
    renewable_mw: float
    curtailment_mw: float


class CampusPlant:
    """Executes one campus's decisions with the recourse rules of the module docstring.

    Parameters
    ----------
    campus : Campus

    Attributes
    ----------
    battery_energy_mwh : float [MWh]
        Battery energy now (from ``campus.battery.initial_energy_mwh``; 0 without).
    """

    def __init__(self, campus: Campus) -> None:
        self.campus = campus
        battery = campus.battery
        self.battery_energy_mwh = 0.0 if battery is None else battery.initial_energy_mwh
        self._work_cap_wu = work_capacity_wu(campus.other_it)

    def _other_it_mw(self, work_wu: float) -> float:
        """Other-IT power doing ``work_wu`` in the interval, ``F⁻¹(W/Δ)`` [MW]."""
        oit = self.campus.other_it
        if oit is None:
            return 0.0
        return float(oit.processing.inverse_mw(np.array(work_wu / STEP_H), oit.it_capacity_mw))

    def _work_at_wu(self, it_mw: float) -> float:
        """Work other IT does at ``it_mw`` in the interval, ``Δ·F(P)`` [WU]."""
        oit = self.campus.other_it
        if oit is None:
            return 0.0
        return STEP_H * float(oit.processing.rate_wu_per_h(np.array(it_mw), oit.it_capacity_mw))

    def _load(self, work_wu: float, inference_it_mw: float) -> tuple[float, float]:
        """Other-IT power and facility power [MW] with ``work_wu`` of other-IT work."""
        it = self._other_it_mw(work_wu)
        return it, self.campus.pue * (it + inference_it_mw)

    def feasible_battery(self, charge_mw: float, discharge_mw: float) -> tuple[float, float]:
        """Charge and discharge [MW] within the battery's power limits and what its
        energy now allows over the interval (0, 0 without a battery)."""
        battery = self.campus.battery
        if battery is None:
            return 0.0, 0.0
        charge = float(np.clip(charge_mw, 0.0, battery.power_mw))
        discharge = float(np.clip(discharge_mw, 0.0, battery.power_mw))
        headroom = (battery.energy_mwh - self.battery_energy_mwh) / (
            battery.charge_efficiency * STEP_H)
        charge = min(charge, max(headroom, 0.0))
        available = self.battery_energy_mwh * battery.discharge_efficiency / STEP_H
        discharge = min(discharge, max(available, 0.0))
        return charge, discharge

    def _shed(self, served_nd: float, work_df: float, charge: float, discharge: float,
              fed_mw: float, inference_it_mw: float) -> tuple[float, float, float]:
        """The import limit binds: shed deferrable work, battery charge, then ND work.

        Returns the non-deferrable work served [WU], the deferrable work [WU] and
        the battery charge [MW] that fit (module docstring, step 4).
        """
        limit = self.campus.grid.import_limit_mw
        pue = self.campus.pue
        it_nd, load_nd = self._load(served_nd, inference_it_mw)
        room_mw = limit + fed_mw + discharge - charge - load_nd
        if room_mw >= 0.0:
            oit = self.campus.other_it
            cap_mw = 0.0 if oit is None else oit.it_capacity_mw
            max_work = self._work_at_wu(min(it_nd + room_mw / pue, cap_mw))
            return served_nd, max(0.0, min(work_df, max_work - served_nd)), charge
        charge = max(0.0, charge + room_mw)
        room_mw = limit + fed_mw + discharge - charge - load_nd
        if room_mw < 0.0:
            served_nd = self._work_at_wu(max(0.0, it_nd + room_mw / pue))
        return served_nd, 0.0, charge

    def setpoints(self, decision: CampusDecision, realized: CampusRealized,
                  backlog: Backlog | None) -> Setpoints:
        """What the plant starts an interval from (module docstring, steps 2-4 before
        any shedding), once per interval for the fast layer's limits and :meth:`execute`."""
        served_nd = min(realized.work_nd_wu, self._work_cap_wu)
        work_df = 0.0
        if backlog is not None:
            work_df = float(np.clip(decision.work_df_wu, 0.0, backlog.total_wu))
            work_df = min(work_df, self._work_cap_wu - served_nd)
        charge, discharge = self.feasible_battery(decision.battery_charge_mw,
                                                  decision.battery_discharge_mw)
        renewable = realized.renewable_cf * self.campus.nameplate_mw
        committed_curtailment = 0.0
        if decision.planned_import_mw > _TOL:
            committed_curtailment = min(max(decision.curtailed_mw, 0.0), renewable)
        return Setpoints(served_nd, work_df, charge, discharge, renewable,
                         committed_curtailment)

    def inference_headroom_mw(self, start: Setpoints, cap_mw: float | None = None) -> float:
        """Largest inference IT power [MW] (interval average) with which this interval
        runs as committed: nothing shed, import within the limit and within ``cap_mw``.

        The rules of :meth:`execute` solved for the inference power ``P``: with
        ``B = PUE · P_oth + charge − discharge`` (other-IT power of the committed work,
        battery set-points as executed) and renewable ``R``, the import limit ``L``
        binds no shedding as long as ``PUE · P + B − R ≤ L`` (the committed curtailment
        is given back first); a cap ``K < L`` (a demand-response event) holds as long
        as ``PUE · P + B − (R − c) ≤ K``, ``c`` the committed curtailment, which is not
        given back below the limit. Negative when the committed plan alone exceeds it.

        Parameters
        ----------
        start : Setpoints
            The interval's :meth:`setpoints`, as :meth:`execute` will run from them.
        cap_mw : float, optional [MW]
            A cap on the import (the committed DR cap in an event interval).
        """
        served_nd, work_df, charge, discharge, renewable, curtailment = start
        pue = self.campus.pue
        other = pue * self._other_it_mw(served_nd + work_df) + charge - discharge
        limit = self.campus.grid.import_limit_mw
        headroom = (limit + renewable - other) / pue
        if cap_mw is not None and cap_mw < limit:
            headroom = min(headroom, (cap_mw + renewable - curtailment - other) / pue)
        return headroom

    def inference_cap_mw(self, start: Setpoints, cap_mw: float) -> float:
        """Largest inference IT power [MW] (interval average) with which the plant can
        hold the import within ``cap_mw`` and its limit using its own levers (module
        docstring, step 7): deferrable work deferred, battery charge given up, the
        battery discharged at what it can, the committed curtailment given back.

        ``(min(K, L) + R − PUE · F⁻¹(W_nd / Δ) + d_max) / PUE`` with ``W_nd`` the
        non-deferrable work served and ``d_max`` the discharge the battery allows;
        negative when even that exceeds the cap.
        """
        served_nd, renewable = start.served_nd_wu, start.renewable_mw
        battery = self.campus.battery
        _, d_max = self.feasible_battery(0.0, 0.0 if battery is None else battery.power_mw)
        pue = self.campus.pue
        bound = min(cap_mw, self.campus.grid.import_limit_mw)
        return (bound + renewable - pue * self._other_it_mw(served_nd) + d_max) / pue

    def _hold_cap(self, over_mw: float, served_nd: float, work_df: float, charge: float,
                  discharge: float, curtailment: float) -> tuple[float, float, float, float]:
        """Take ``over_mw`` off the import with the plant's levers (module docstring,
        step 7); returns the deferrable work [WU], charge, discharge and committed
        curtailment [MW] after."""
        give = min(curtailment, over_mw)
        curtailment -= give
        over_mw -= give
        give = min(charge, over_mw)
        charge -= give
        over_mw -= give
        if over_mw > _TOL and work_df > 0.0:
            pue = self.campus.pue
            it_all = self._other_it_mw(served_nd + work_df)
            it_nd = self._other_it_mw(served_nd)
            target = max(it_all - over_mw / pue, it_nd)
            kept = min(work_df, max(self._work_at_wu(target) - served_nd, 0.0))
            over_mw -= pue * (it_all - self._other_it_mw(served_nd + kept))
            work_df = kept
        if over_mw > _TOL:
            battery = self.campus.battery
            if battery is not None:
                _, d_max = self.feasible_battery(0.0, battery.power_mw)
                discharge += min(max(d_max - discharge, 0.0), over_mw)
        return work_df, charge, discharge, curtailment

    def execute(
        self,
        step: int,
        decision: CampusDecision,
        realized: CampusRealized,
        backlog: Backlog | None,
        inference_it_mw: float = 0.0,
        cap_mw: float | None = None,
        enforce_cap: bool = False,
        start: Setpoints | None = None,
    ) -> CampusRecord:
        """Run one interval; processes deferrable work from ``backlog`` (EDF).

        Parameters
        ----------
        step : int
        decision : CampusDecision
        realized : CampusRealized
        backlog : Backlog or None
            The campus's deferrable work (None without other IT).
        inference_it_mw : float [MW]
            Inference IT power of the interval, from serving.
        cap_mw : float, optional [MW]
            The interval's committed DR cap (:func:`committed_cap_mw`; None outside
            events), recorded.
        enforce_cap : bool
            Hold the import within ``cap_mw`` with the plant's levers (step 7).
        start : Setpoints, optional
            The interval's :meth:`setpoints` where the caller has them already.
        """
        grid = self.campus.grid
        work_nd = realized.work_nd_wu
        if start is None:
            start = self.setpoints(decision, realized, backlog)
        served_nd, work_df, charge, discharge, renewable, committed_curtailment = start

        it_mw, load_mw = self._load(served_nd + work_df, inference_it_mw)
        deficit = load_mw + charge - discharge - (renewable - committed_curtailment)
        # More load than planned: give the curtailed output back before shedding anything.
        committed_curtailment -= min(
            committed_curtailment, max(deficit - grid.import_limit_mw, 0.0))
        fed_mw = renewable - committed_curtailment
        deficit = load_mw + charge - discharge - fed_mw
        if deficit > grid.import_limit_mw + _TOL:
            served_nd, work_df, charge = self._shed(served_nd, work_df, charge, discharge,
                                                    fed_mw, inference_it_mw)
            it_mw, load_mw = self._load(served_nd + work_df, inference_it_mw)
            deficit = load_mw + charge - discharge - fed_mw

        relief = deferred = 0.0
        if enforce_cap and cap_mw is not None and deficit > cap_mw + _TOL:
            before, df_before = deficit, work_df
            work_df, charge, discharge, committed_curtailment = self._hold_cap(
                deficit - cap_mw, served_nd, work_df, charge, discharge, committed_curtailment)
            fed_mw = renewable - committed_curtailment
            it_mw, load_mw = self._load(served_nd + work_df, inference_it_mw)
            deficit = load_mw + charge - discharge - fed_mw
            relief, deferred = before - deficit, df_before - work_df

        done_df = 0.0 if backlog is None else backlog.process(work_df)
        import_mw = max(deficit, 0.0)
        over_limit = import_mw - grid.import_limit_mw
        surplus = max(-deficit, 0.0)
        export_mw = self._export(surplus, decision.export_price_usd_per_mwh)
        curtailed = committed_curtailment + surplus - export_mw
        self._advance_battery(step, charge, discharge)
        return CampusRecord(
            step=step,
            work_nd_wu=work_nd,
            work_nd_unserved_wu=work_nd - served_nd,
            work_df_committed_wu=decision.work_df_wu,
            work_df_done_wu=done_df,
            it_inference_mw=inference_it_mw,
            it_other_mw=it_mw,
            facility_power_mw=load_mw,
            renewable_available_mw=renewable,
            renewable_used_mw=renewable - curtailed,
            curtailed_mw=curtailed,
            import_mw=import_mw,
            export_mw=export_mw,
            import_over_limit_mw=over_limit if over_limit > _TOL else 0.0,
            battery_charge_mw=charge,
            battery_discharge_mw=discharge,
            battery_energy_mwh=self.battery_energy_mwh,
            planned_import_mw=decision.planned_import_mw,
            planned_export_mw=decision.planned_export_mw,
            dr_committed_cap_mw=math.inf if cap_mw is None else cap_mw,
            dr_relief_mw=relief,
            dr_deferred_wu=deferred,
        )

    def _export(self, surplus_mw: float, export_price_usd_per_mwh: float) -> float:
        """Export [MW]: the surplus within the limit at a positive committed export
        price [$/MWh], else none (NaN, no price: none)."""
        if surplus_mw > 0.0 and export_price_usd_per_mwh > 0.0:
            return min(surplus_mw, self.campus.grid.export_limit_mw)
        return 0.0

    def _advance_battery(self, step: int, charge: float, discharge: float) -> None:
        battery = self.campus.battery
        if battery is None:
            return
        self.battery_energy_mwh = battery_energy_after(
            step, self.battery_energy_mwh, charge, discharge, battery)
