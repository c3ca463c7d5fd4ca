"""Books that must close in every closed-loop run, and the error raised when one does not.

An :class:`InvariantError` is a defect of the simulator (or of a patched part of
it), never bad input: the run stops at once, and the CLI prints one line naming
the interval instead of a traceback.

Battery state of charge (Δ = 0.25 h, efficiencies η_c, η_d [-]):
``e[t] = e[t−1] + Δ (η_c · ch[t] − dis[t] / η_d)``, ``e[−1] = e0``, ``0 <= e[t] <= E`` [MWh].
The plant checks it interval by interval (:func:`battery_energy_after`); the engine
re-checks the whole ledger after the run (:func:`check_battery_ledger`).

Per campus and interval (site engine, :func:`check_campus_ledger`), flows in [MW]:
``import − export = facility + charge − discharge − renewable_used``,
``facility = PUE · (IT inference + IT other)``, ``renewable_used + curtailed =
available``, import and export never both positive, export within its limit, import
within its limit but for the recorded ``import_over_limit_mw``.

Deferrable work per campus and interval [WU] (:func:`check_work_ledger`):
``backlog[t] = backlog[t−1] + arrived[t] − done[t] − missed[t]``, ``backlog[−1]`` the
first window's batch; and at each interval end nothing pending is past its deadline and
exactly the work due by then is missed (:func:`check_deadlines`, in the loop).

Tokens per campus and interval at fluid fidelity [tokens] (:func:`check_token_book`):
``queued[t] = queued[t−1] + arrived[t] + moved[t] − decoded[t]`` over the campus's pools
(``moved``: queues re-dispatched between pools, in minus out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mpc_dc.site.config import Battery, Site
from traces.grid import STEP_H

ENERGY_TOL_MWH = 1e-7
"""Rounding allowed in a battery energy book [MWh] (scaled by max(1, E))."""


class InvariantError(RuntimeError):
    """A simulation book does not close; the one-line message names the interval.

    Parameters
    ----------
    message : str
        What does not close, with the figures.
    step : int, optional
        Interval index from the run start; None for a whole-run total.
    time : Timestamp, optional
        Start of that interval (UTC).
    """

    def __init__(
        self, message: str, step: int | None = None, time: pd.Timestamp | None = None
    ) -> None:
        self.message = message
        self.step = step
        self.time = time
        # args carries every constructor argument: simpy re-raises a process's
        # exception as ``type(e)(*e.args)``.
        super().__init__(message, step, time)

    def at(self, time: pd.Timestamp) -> InvariantError:
        """The same error with the interval's start time."""
        return InvariantError(self.message, self.step, time)

    def __str__(self) -> str:
        if self.step is None:
            where = "over the run"
        else:
            where = f"at interval {self.step}"
            if self.time is not None:
                where += f" ({pd.Timestamp(self.time).tz_convert('UTC'):%Y-%m-%d %H:%M} UTC)"
        return f"invariant violated {where}: {self.message}"


def _energy_change_mwh(
    battery: Battery, charge_mw: np.ndarray | float, discharge_mw: np.ndarray | float
) -> np.ndarray:
    """``Δ (η_c · ch − dis / η_d)`` [MWh]."""
    return np.asarray(
        STEP_H
        * (
            np.asarray(charge_mw) * battery.charge_efficiency
            - np.asarray(discharge_mw) / battery.discharge_efficiency
        ),
        dtype=float,
    )


def battery_energy_after(
    step: int, energy_mwh: float, charge_mw: float, discharge_mw: float, battery: Battery
) -> float:
    """Battery energy at the end of interval ``step`` [MWh], checked against ``[0, E]``.

    Parameters
    ----------
    step : int
    energy_mwh : float [MWh]
        Energy at the start of the interval.
    charge_mw, discharge_mw : float [MW]
        Executed set-points.
    battery : Battery

    Raises
    ------
    InvariantError
        When the executed set-points would take the energy outside ``[0, E]`` by more
        than rounding (energy created or destroyed to stay in bounds).
    """
    after = energy_mwh + float(_energy_change_mwh(battery, charge_mw, discharge_mw))
    tol = ENERGY_TOL_MWH * max(1.0, battery.energy_mwh)
    if not -tol <= after <= battery.energy_mwh + tol:
        raise InvariantError(
            f"battery energy would reach {after:.6g} MWh, outside [0, {battery.energy_mwh:g}] "
            f"MWh (start {energy_mwh:.6g} MWh, charge {charge_mw:.6g} MW, discharge "
            f"{discharge_mw:.6g} MW)",
            step,
        )
    return min(max(after, 0.0), battery.energy_mwh)


def check_battery_ledger(
    ledger: pd.DataFrame, battery: Battery | None, initial_energy_mwh: float
) -> None:
    """Check the state of charge of a whole run from its ledger.

    Columns used: ``battery_charge_mw``, ``battery_discharge_mw`` [MW] and
    ``battery_energy_mwh`` (end of interval) [MWh]. Each interval must follow from
    the previous one (the first from ``initial_energy_mwh``) by the energy balance
    with efficiencies and stay in ``[0, E]``; so the run's net change equals its
    summed flows. Without a battery every battery column must be zero.

    Raises
    ------
    InvariantError
        Naming the first interval that does not close.
    """
    charge = ledger["battery_charge_mw"].to_numpy(dtype=float)
    discharge = ledger["battery_discharge_mw"].to_numpy(dtype=float)
    energy = ledger["battery_energy_mwh"].to_numpy(dtype=float)
    if battery is None:
        moved = np.abs(charge) + np.abs(discharge) + np.abs(energy)
        if moved.size and moved.max() > ENERGY_TOL_MWH:
            k = int(np.argmax(moved > ENERGY_TOL_MWH))
            raise InvariantError("battery flows or energy on a site without a battery",
                                 k, ledger.index[k])
        return
    tol = ENERGY_TOL_MWH * max(1.0, battery.energy_mwh)
    change = _energy_change_mwh(battery, charge, discharge)
    start = np.concatenate([[initial_energy_mwh], energy[:-1]])
    off = np.abs(start + change - energy) > tol
    bad = np.flatnonzero(off | (energy < -tol) | (energy > battery.energy_mwh + tol))
    if bad.size:
        k = int(bad[0])
        raise InvariantError(
            f"battery energy {energy[k]:.6g} MWh does not follow from {start[k]:.6g} MWh with "
            f"charge {charge[k]:.6g} MW and discharge {discharge[k]:.6g} MW (expected "
            f"{start[k] + change[k]:.6g} MWh within [0, {battery.energy_mwh:g}] MWh)",
            k, ledger.index[k])


FLOW_TOL_MW = 1e-7
"""A flow below this is rounding [MW]."""

_NON_NEGATIVE = ("import_mw", "export_mw", "curtailed_mw", "renewable_used_mw", "it_inference_mw",
                 "it_other_mw", "battery_charge_mw", "battery_discharge_mw",
                 "import_over_limit_mw")


def check_campus_ledger(ledger: pd.DataFrame, site: Site) -> None:
    """Check every (interval, campus) row's power books (module docstring).

    Parameters
    ----------
    ledger : DataFrame
        Indexed ``(interval_start_utc, campus)``, with a ``step`` column and the flow
        columns of :data:`mpc_dc.sim.plant.RECORD_COLUMNS` [MW].
    site : Site

    Raises
    ------
    InvariantError
        Naming the first row (interval and campus) whose books do not close.
    """
    campus = ledger.index.get_level_values("campus")
    pue = campus.map({c.name: c.pue for c in site.campuses}).to_numpy(dtype=float)
    imp_limit = campus.map({c.name: c.grid.import_limit_mw for c in site.campuses}).to_numpy(
        dtype=float)
    exp_limit = campus.map({c.name: c.grid.export_limit_mw for c in site.campuses}).to_numpy(
        dtype=float)

    # Column access on the (interval, campus) index costs a MultiIndex view each time.
    data = ledger.reset_index(drop=True)

    def col(name: str) -> np.ndarray:
        return data[name].to_numpy(dtype=float)

    imp, exp, fac = col("import_mw"), col("export_mw"), col("facility_power_mw")
    avail, used, curt = col("renewable_available_mw"), col("renewable_used_mw"), col("curtailed_mw")
    over = col("import_over_limit_mw")
    scale = np.maximum(1.0, np.maximum(np.abs(fac), np.abs(avail)))
    it = col("it_inference_mw") + col("it_other_mw")
    balance = (imp - exp) - (fac + col("battery_charge_mw") - col("battery_discharge_mw") - used)
    checks: list[tuple[np.ndarray, str]] = [
        (np.abs(balance) > 1e-6 * scale,
         "energy balance: import − export != facility + charge − discharge − renewable used "
         "(off by {:.6g} MW)"),
        (np.abs(fac - pue * it) > 1e-9 * scale,
         "facility power != PUE × (IT inference + IT other) (off by {:.6g} MW)"),
        ((imp > FLOW_TOL_MW) & (exp > FLOW_TOL_MW), "simultaneous import and export{}"),
        (np.min(data[list(_NON_NEGATIVE)].to_numpy(dtype=float), axis=1) < -FLOW_TOL_MW,
         "a negative flow{}"),
        (np.abs(used + curt - avail) > 1e-6 * scale,
         "renewable used + curtailed != available (off by {:.6g} MW)"),
        (exp > exp_limit + FLOW_TOL_MW, "export above the export limit{}"),
        (imp > imp_limit + over + 1e-6 * scale,
         "import above the import limit beyond the recorded excess{}"),
    ]
    offsets = {0: balance, 1: fac - pue * it, 4: used + curt - avail}
    for i, (bad, message) in enumerate(checks):
        if bad.any():
            k = int(np.argmax(bad))
            detail = float(offsets[i][k]) if i in offsets else None
            text = message.format(detail) if detail is not None else message.format("")
            raise InvariantError(f"campus {campus[k]}: {text}", int(data["step"].to_numpy()[k]),
                                 ledger.index[k][0])


WORK_TOL_WU = 1e-6
"""Rounding allowed in a work book [WU] (scaled by max(1, the largest amount))."""


def _first_off(off: np.ndarray) -> int | None:
    """Index of the first True of ``off`` (None when none)."""
    bad = np.flatnonzero(off)
    return int(bad[0]) if bad.size else None


def check_work_ledger(rows: pd.DataFrame, initial_wu: float, campus: str) -> None:
    """Check one campus's deferrable work interval by interval (module docstring).

    Parameters
    ----------
    rows : DataFrame
        The campus's ledger rows in interval order (index: interval start), with
        ``step``, ``backlog_wu`` (pending at the interval end), ``work_df_arrived_wu``,
        ``work_df_done_wu`` and ``work_df_missed_wu`` [WU].
    initial_wu : float [WU]
        Pending at the run start (the first window's batch).
    campus : str

    Raises
    ------
    InvariantError
        Naming the first interval whose book does not close.
    """
    backlog = rows["backlog_wu"].to_numpy(dtype=float)
    arrived = rows["work_df_arrived_wu"].to_numpy(dtype=float)
    done = rows["work_df_done_wu"].to_numpy(dtype=float)
    missed = rows["work_df_missed_wu"].to_numpy(dtype=float)
    before = np.concatenate([[initial_wu], backlog[:-1]])
    expected = before + arrived - done - missed
    scale = max(1.0, float(np.max(before + arrived, initial=0.0)))
    k = _first_off(np.abs(expected - backlog) > WORK_TOL_WU * scale)
    if k is None:
        k = _first_off(np.minimum(np.minimum(done, missed), backlog) < -WORK_TOL_WU * scale)
        if k is None:
            return
        raise InvariantError(f"campus {campus}: negative deferrable work in the book (done "
                             f"{done[k]:.6g}, missed {missed[k]:.6g}, pending {backlog[k]:.6g} "
                             "WU)", int(rows["step"].to_numpy()[k]), rows.index[k])
    raise InvariantError(
        f"campus {campus}: deferrable work not conserved: pending {backlog[k]:.6g} WU != "
        f"{before[k]:.6g} before + {arrived[k]:.6g} arrived − {done[k]:.6g} done − "
        f"{missed[k]:.6g} missed", int(rows["step"].to_numpy()[k]), rows.index[k])


def check_deadlines(step: int, campus: str, due_wu: float, missed_wu: float,
                    overdue_wu: float) -> None:
    """Check the deadlines of one campus at the end of interval ``step``.

    Parameters
    ----------
    due_wu : float [WU]
        Pending work whose deadline was ``step`` or earlier, before expiry.
    missed_wu : float [WU]
        What expiry booked as missed.
    overdue_wu : float [WU]
        Pending work past its deadline after expiry (must be none).

    Raises
    ------
    InvariantError
        When work past its deadline is still pending, or the missed work is not the
        work due.
    """
    scale = max(1.0, due_wu)
    if overdue_wu > WORK_TOL_WU * scale:
        raise InvariantError(f"campus {campus}: {overdue_wu:.6g} WU past its deadline still "
                             "pending", step)
    if abs(missed_wu - due_wu) > WORK_TOL_WU * scale:
        raise InvariantError(f"campus {campus}: {missed_wu:.6g} WU booked as missed, but "
                             f"{due_wu:.6g} WU was due by the end of the interval", step)


TOKEN_TOL = 1e-7
"""Relative rounding allowed in a token book [-] (a fluid queue below 10⁻⁹ of a request
is dropped as a crumb)."""


def check_token_book(queued: np.ndarray, arrived: np.ndarray, moved: np.ndarray,
                     decoded: np.ndarray, campus_matrix: np.ndarray,
                     campuses: tuple[str, ...], times: pd.DatetimeIndex) -> None:
    """Check the fluid token book per campus and interval (module docstring).

    Parameters
    ----------
    queued, arrived, moved, decoded : ndarray (n, P) [tokens]
        Response tokens waiting at each interval's end, arriving (routed), moved in by
        re-dispatch (minus moved out) and decoded, per pool.
    campus_matrix : ndarray (C, P)
        1 where a pool belongs to a campus.
    campuses : tuple of str
    times : DatetimeIndex
        Interval starts (UTC).

    Raises
    ------
    InvariantError
        Naming the first interval and campus whose book does not close.
    """
    def per_campus(a: np.ndarray) -> np.ndarray:
        return np.asarray(a @ campus_matrix.T)

    q, arr, mov, dec = map(per_campus, (queued, arrived, moved, decoded))
    before = np.vstack([np.zeros((1, q.shape[1])), q[:-1]])
    expected = before + arr + mov - dec
    scale = np.maximum(1.0, before + arr + np.abs(mov))
    bad = np.argwhere(np.abs(expected - q) > TOKEN_TOL * scale)
    if bad.size:
        k, c = (int(v) for v in bad[0])
        raise InvariantError(
            f"campus {campuses[c]}: tokens not conserved: {q[k, c]:.9g} queued != "
            f"{before[k, c]:.9g} before + {arr[k, c]:.9g} arrived + {mov[k, c]:.9g} moved in "
            f"− {dec[k, c]:.9g} decoded", k, times[k])
