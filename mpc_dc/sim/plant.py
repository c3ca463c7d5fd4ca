"""The physical site: executes a committed decision against the realized exogenous data.

Recourse (what happens when the forecast was wrong), applied in this order for
one interval ``[t, t + Δ)``, Δ = 0.25 h:

1. Non-deferrable work ``W_nd`` [WU] is what actually arrived; it must run now.
   Committed deferrable work ``w_df`` is capped by the pending backlog.
2. Work is capped by IT capacity: ``W_nd + w_df ≤ Δ·F(P_max)``. Deferrable work is
   cut first (it stays in the backlog); non-deferrable work above capacity is
   *unserved* (counted, priced at ``unserved_penalty_usd_per_wu``).
3. Site load ``L = PUE · F⁻¹((W_nd + w_df)/Δ)`` [MW]. The battery follows its
   committed set-point within its power and energy limits.
4. Renewable ``R = cf · Q_R`` [MW]. Where the plan imports and curtails in the
   same interval (it is paid to import, e.g. at a negative price, so it buys
   rather than use its own output), the committed curtailment ``c`` is executed,
   capped at ``R``. The rest, ``R − c``, serves the load; a deficit is imported
   (within the import limit: if the limit binds, the committed curtailment is
   given up first, then deferrable work is cut, then the battery charge, then
   non-deferrable work is unserved); a surplus is exported (within the export
   limit) when the realized export price is positive, else curtailed. Import and
   export are therefore never simultaneous. A planned spill of surplus needs no
   commitment: this last rule spills it.

The balance ``import − export = L + charge − discharge − renewable_used`` holds
each interval and is checked (:func:`check_balance`), as is the battery's state of
charge (:func:`~mpc_dc.sim.invariants.battery_energy_after`): a violation raises
:class:`~mpc_dc.sim.invariants.InvariantError` naming the interval.
``renewable_used = R − curtailed`` is the renewable power fed to the site bus
(consumed on site or exported), as in DESIGN.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc_dc.params.site import SiteConfig
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.invariants import InvariantError, battery_energy_after
from traces.grid import STEP_H

_TOL = 1e-7


@dataclass(frozen=True)
class Decision:
    """What the controller commits for one interval.

    Attributes
    ----------
    work_df_wu : float [WU]
        Deferrable work to process in the interval.
    battery_charge_mw, battery_discharge_mw : float [MW]
        Battery set-points.
    curtailed_mw : float [MW]
        The plan's renewable curtailment. The plant executes it where the plan
        also imports (``planned_import_mw`` > 0); see the module docstring, step 4.
    planned_import_mw, planned_export_mw : float [MW]
        The plan's grid flows (reported beside the realized ones).
    source : str
        Which policy path produced it (``"mpc"``, ``"fallback:relaxed"``, ``"rule"`` ...).
    """

    work_df_wu: float
    battery_charge_mw: float = 0.0
    battery_discharge_mw: float = 0.0
    curtailed_mw: float = 0.0
    planned_import_mw: float = float("nan")
    planned_export_mw: float = float("nan")
    source: str = "rule"


@dataclass(frozen=True)
class Realized:
    """Exogenous data of one interval as it actually happened."""

    import_price_usd_per_mwh: float
    export_price_usd_per_mwh: float
    renewable_cf: float
    work_nd_wu: float


@dataclass(frozen=True)
class IntervalRecord:
    """What happened in one interval (one ledger row). Powers are interval averages [MW]."""

    step: int
    work_nd_wu: float
    work_nd_unserved_wu: float
    work_df_committed_wu: float
    work_df_done_wu: float
    it_power_mw: float
    site_load_mw: float
    renewable_available_mw: float
    renewable_used_mw: float
    curtailed_mw: float
    import_mw: float
    export_mw: float
    battery_charge_mw: float
    battery_discharge_mw: float
    battery_energy_mwh: float
    planned_import_mw: float
    planned_export_mw: float
    decision_source: str


class RcdcPlant:
    """Executes decisions with the recourse rules of the module docstring.

    Parameters
    ----------
    config : SiteConfig
    initial_battery_energy_mwh : float [MWh]
    """

    def __init__(self, config: SiteConfig, initial_battery_energy_mwh: float = 0.0) -> None:
        self.config = config
        self.battery_energy_mwh = initial_battery_energy_mwh
        dc = config.datacenter
        self._work_cap_wu = STEP_H * float(
            dc.processing.rate_wu_per_h(np.array(dc.it_capacity_mw), dc.it_capacity_mw)
        )

    def _site_load_mw(self, work_wu: float) -> tuple[float, float]:
        dc = self.config.datacenter
        it = float(dc.processing.inverse_mw(np.array(work_wu / STEP_H), dc.it_capacity_mw))
        return it, dc.pue * it

    def _battery(self, decision: Decision) -> tuple[float, float]:
        battery = self.config.battery
        if battery is None:
            return 0.0, 0.0
        charge = float(np.clip(decision.battery_charge_mw, 0.0, battery.power_mw))
        discharge = float(np.clip(decision.battery_discharge_mw, 0.0, battery.power_mw))
        headroom = (battery.energy_mwh - self.battery_energy_mwh) / (
            battery.charge_efficiency * STEP_H
        )
        charge = min(charge, max(headroom, 0.0))
        available = self.battery_energy_mwh * battery.discharge_efficiency / STEP_H
        discharge = min(discharge, max(available, 0.0))
        return charge, discharge

    def execute(
        self, step: int, decision: Decision, realized: Realized, backlog: Backlog
    ) -> IntervalRecord:
        """Run one interval; processes deferrable work from ``backlog`` (EDF)."""
        grid = self.config.grid
        work_nd = realized.work_nd_wu
        served_nd = min(work_nd, self._work_cap_wu)
        work_df = float(np.clip(decision.work_df_wu, 0.0, backlog.total_wu))
        work_df = min(work_df, self._work_cap_wu - served_nd)
        charge, discharge = self._battery(decision)
        renewable = realized.renewable_cf * self.config.renewable.nameplate_mw
        committed_curtailment = 0.0
        if decision.planned_import_mw > _TOL:
            committed_curtailment = min(max(decision.curtailed_mw, 0.0), renewable)

        it_mw, load_mw = self._site_load_mw(served_nd + work_df)
        deficit = load_mw + charge - discharge - (renewable - committed_curtailment)
        # More load than planned: give the curtailed output back before shedding anything.
        committed_curtailment -= min(
            committed_curtailment, max(deficit - grid.import_limit_mw, 0.0)
        )
        fed_mw = renewable - committed_curtailment
        deficit = load_mw + charge - discharge - fed_mw
        if deficit > grid.import_limit_mw + _TOL:
            # Import limit binds: shed in order deferrable work, battery charge, ND work.
            it_nd, load_nd = self._site_load_mw(served_nd)
            room_mw = grid.import_limit_mw + fed_mw + discharge - charge - load_nd
            if room_mw >= 0.0:
                dc = self.config.datacenter
                max_it = min(it_nd + room_mw / dc.pue, dc.it_capacity_mw)
                max_work = STEP_H * float(
                    dc.processing.rate_wu_per_h(np.array(max_it), dc.it_capacity_mw)
                )
                work_df = max(0.0, min(work_df, max_work - served_nd))
            else:
                work_df = 0.0
                charge = max(0.0, charge + room_mw)
                room_mw = grid.import_limit_mw + fed_mw + discharge - charge - load_nd
                if room_mw < 0.0:
                    dc = self.config.datacenter
                    max_it = max(0.0, it_nd + room_mw / dc.pue)
                    served_nd = STEP_H * float(
                        dc.processing.rate_wu_per_h(np.array(max_it), dc.it_capacity_mw)
                    )
            it_mw, load_mw = self._site_load_mw(served_nd + work_df)
            deficit = load_mw + charge - discharge - fed_mw

        done_df = backlog.process(work_df)
        import_mw = max(deficit, 0.0)
        surplus = max(-deficit, 0.0)
        export_mw = 0.0
        if surplus > 0.0 and realized.export_price_usd_per_mwh > 0.0:
            export_mw = min(surplus, grid.export_limit_mw)
        curtailed = committed_curtailment + surplus - export_mw
        self._advance_battery(step, charge, discharge)
        record = IntervalRecord(
            step=step,
            work_nd_wu=work_nd,
            work_nd_unserved_wu=work_nd - served_nd,
            work_df_committed_wu=decision.work_df_wu,
            work_df_done_wu=done_df,
            it_power_mw=it_mw,
            site_load_mw=load_mw,
            renewable_available_mw=renewable,
            renewable_used_mw=renewable - curtailed,
            curtailed_mw=curtailed,
            import_mw=import_mw,
            export_mw=export_mw,
            battery_charge_mw=charge,
            battery_discharge_mw=discharge,
            battery_energy_mwh=self.battery_energy_mwh,
            planned_import_mw=decision.planned_import_mw,
            planned_export_mw=decision.planned_export_mw,
            decision_source=decision.source,
        )
        check_balance(record)
        return record

    def _advance_battery(self, step: int, charge: float, discharge: float) -> None:
        battery = self.config.battery
        if battery is None:
            return
        self.battery_energy_mwh = battery_energy_after(
            step, self.battery_energy_mwh, charge, discharge, battery
        )


def check_balance(record: IntervalRecord) -> None:
    """Check ``import − export = load + charge − discharge − renewable_used``, flows >= 0.

    Raises
    ------
    InvariantError
        Naming the interval and the book that does not close.
    """
    lhs = record.import_mw - record.export_mw
    rhs = (
        record.site_load_mw
        + record.battery_charge_mw
        - record.battery_discharge_mw
        - record.renewable_used_mw
    )
    scale = max(1.0, abs(record.site_load_mw), record.renewable_available_mw)
    if abs(lhs - rhs) > 1e-6 * scale:
        raise InvariantError(
            f"energy balance: import − export = {lhs:.6g} MW but load + charge − discharge "
            f"− renewable used = {rhs:.6g} MW", record.step)
    if record.import_mw > _TOL and record.export_mw > _TOL:
        raise InvariantError(
            f"simultaneous import {record.import_mw:.6g} MW and export "
            f"{record.export_mw:.6g} MW", record.step)
    if (
        min(record.import_mw, record.export_mw, record.curtailed_mw, record.renewable_used_mw)
        < -_TOL
    ):
        raise InvariantError("negative import, export, curtailment or renewable used",
                             record.step)
    used_and_spilled = record.renewable_used_mw + record.curtailed_mw
    if abs(used_and_spilled - record.renewable_available_mw) > 1e-6 * scale:
        raise InvariantError(
            f"renewable used {record.renewable_used_mw:.6g} MW + curtailed "
            f"{record.curtailed_mw:.6g} MW != available {record.renewable_available_mw:.6g} MW",
            record.step)
