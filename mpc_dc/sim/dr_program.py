"""The demand-response programme's baseline: computed causally from the site's own meter.

Under ``[site.dr] baseline = "prior_days"`` (:class:`~mpc_dc.site.config.DemandResponse`)
each event — a campus's event intervals on one local day — is settled against a
baseline the programme computes the way day-matching programmes do (CAISO's
10-in-10 customer load baseline with a day-of adjustment; NYISO's and PJM's are
variants of it), from nothing but the campus's metered import before the event's
notice:

* notice: the event (its intervals and its baseline) is announced ``notice_h``
  before its first interval, step ``t_n``;
* reference days: the most recent local days of the same type (weekday for a
  weekday event, Saturday/Sunday for a weekend one) within the ``lookback_days``
  before the event day that lie wholly in the metered history (the lead-in and the
  run), end at or before ``t_n``, have 96 intervals (no daylight-saving day) and
  hold no event of that campus; at most ``baseline_days`` of them
  (``baseline_weekend_days`` for weekends), at least ``baseline_min_days`` (else the
  scenario is refused: :func:`check_reference_days`);
* profile: for each 15-min slot ``s`` of the local day, the mean metered import
  of the reference days in that slot, ``P[s] = (1/D) Σ_d m_d[s]`` [MW];
* day-of adjustment: over the window of ``adjustment_h`` just before the notice
  (slots ``W``, the same clock times on each reference day), the factor
  ``a = Σ_{s∈W} m[s] / Σ_{s∈W} P[s]`` — the event day's import over the profile's —
  clipped to ``[1 − adjustment_cap, 1 + adjustment_cap]``; 1 when the window is 0 h,
  when it reaches before the run on a reference day, or when the profile's sum is 0;
* baseline: ``b[t] = a · P[slot(t)]`` on each event interval ``t`` [MW].

Meter history before the run: a real site enters a programme with months of
metered load; a run starts cold. Under ``lead_in = true`` the run is preceded by a
lead-in (:func:`lead_in_days`): the shortest whole number of weeks before the run
start that gives every event its ``baseline_days`` reference days within the
look-back. :func:`mpc_dc.runner.with_meter_history` simulates it with the run's
controller on the same data, without events or faults, and hands its metered import
(:attr:`~mpc_dc.sim.exogenous.SiteExogenous.dr_meter_history_mw`) to the
programme; the lead-in is neither settled nor in the run's KPIs or ledger.

Everything is read from the metered import of intervals before ``t_n`` (the lead-in's
and the run's; :func:`event_baseline` slices the ledger there first), so the
baseline does not depend on what happens after the notice. :class:`ProgramBaseline` is the
simulator's side: it holds the events, and at each interval boundary returns the
baselines whose notice is due, which the loop settles against and publishes to the
policy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mpc_dc.site.config import DemandResponse
from traces.errors import ConfigError
from traces.grid import STEP, STEP_H, STEPS_PER_DAY, local_days

if TYPE_CHECKING:
    from mpc_dc.sim.exogenous import CampusRealized, SiteExogenous

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgramEvent:
    """One campus's event on one local day, as the programme settles it.

    Attributes
    ----------
    campus : int
        Index of the campus in the site's order.
    day : str
        The event's local day, ``YYYY-MM-DD``.
    steps : ndarray of int
        Run steps of the event intervals.
    slots : ndarray of int
        Their 15-min slots of the local day (0..95).
    notice_step : int
        Run step at whose start the event and its baseline are announced.
    reference_firsts : tuple of int
        First run step of each reference day, most recent first (negative: a day of
        the lead-in before the run).
    window_offsets : ndarray of int
        The adjustment window as steps relative to the event day's local midnight
        (may be negative: before midnight); empty without an adjustment.
    day_first : int
        Run step of the event day's local midnight (may be before the run for an
        event day cut by the run start; then there is no adjustment).
    """

    campus: int
    day: str
    steps: np.ndarray
    slots: np.ndarray
    notice_step: int
    reference_firsts: tuple[int, ...]
    window_offsets: np.ndarray
    day_first: int


def program_events(run_index: pd.DatetimeIndex, local_tz: str, event: np.ndarray,
                   dr: DemandResponse, lead_steps: int = 0) -> list[ProgramEvent]:
    """The events of a run and their reference days (calendar only, no meter data).

    Parameters
    ----------
    run_index : DatetimeIndex
        Run interval starts (UTC).
    local_tz : str
        The programme's calendar (``run.local_tz``).
    event : ndarray (n, C) of bool
        Event flag per run step and campus.
    dr : DemandResponse
        The rule's parameters.
    lead_steps : int
        Metered intervals before the run (the lead-in): reference days may lie there.

    Returns
    -------
    list of ProgramEvent
        In order of notice; every step in run steps (negative: in the lead-in).
    """
    if lead_steps:
        before = pd.date_range(end=run_index[0] - STEP, periods=lead_steps, freq=STEP)
        run_index = pd.DatetimeIndex(before.append(run_index))
        event = np.vstack([np.zeros((lead_steps, event.shape[1]), dtype=bool), event])
    days, slots = local_days(run_index, local_tz)
    unique, first_of, counts = np.unique(days, return_index=True, return_counts=True)
    notice = round(dr.notice_h / STEP_H)
    window = round(dr.adjustment_h / STEP_H)
    lookback = np.timedelta64(dr.lookback_days, "D")
    out: list[ProgramEvent] = []
    for c in range(event.shape[1]):
        event_days = set(days[event[:, c]])
        for day in sorted(event_days):
            steps = np.flatnonzero(event[:, c] & (days == day))
            notice_step = int(steps[0]) - notice
            day_first = int(steps[0] - slots[steps[0]])
            weekend = pd.Timestamp(day).day_of_week >= 5
            wanted = dr.baseline_days if not weekend else dr.baseline_weekend_days
            refs: list[int] = []
            for k in range(len(unique) - 1, -1, -1):
                d, first, count = unique[k], int(first_of[k]), int(counts[k])
                if len(refs) == wanted or d < day - lookback:
                    break
                whole = count == STEPS_PER_DAY and slots[first] == 0
                if (d >= day or not whole or first + count > notice_step
                        or d in event_days or (pd.Timestamp(d).day_of_week >= 5) != weekend):
                    continue
                refs.append(first - lead_steps)
            offsets = np.arange(notice_step - window, notice_step) - day_first
            out.append(ProgramEvent(c, str(day), steps - lead_steps, slots[steps],
                                    notice_step - lead_steps, tuple(refs), offsets,
                                    day_first - lead_steps))
    out.sort(key=lambda e: (e.notice_step, e.campus))
    return out


def lead_in_days(run_index: pd.DatetimeIndex, local_tz: str, event: np.ndarray,
                 dr: DemandResponse) -> int:
    """Days of metered history the programme needs before the run [d].

    The shortest whole number of weeks before the run start that gives every event
    its ``baseline_days`` (``baseline_weekend_days``) reference days within the
    ``lookback_days`` before it, or as many as the look-back holds; 0 when the run
    itself holds them, when ``lead_in`` is off or without events. Whole weeks keep
    the weekday alignment of a workload placed relative to the run start
    (BurstGPT's day 0, :func:`mpc_dc.runner.lead_in_scenario`).
    """
    if not dr.lead_in or not event.any():
        return 0
    reach = dr.lookback_days + 7  # an event in the run's first week looks back this far
    events = program_events(run_index, local_tz, event, dr, reach * STEPS_PER_DAY)
    earliest = min((min(e.reference_firsts) for e in events if e.reference_firsts),
                   default=0)
    if earliest >= 0:
        return 0
    # Whole days before the run's first step (a reference day starts at local midnight).
    days = math.ceil(-earliest / STEPS_PER_DAY)
    return 7 * math.ceil(days / 7)


def check_reference_days(events: Sequence[ProgramEvent], dr: DemandResponse,
                         campus_names: Sequence[str]) -> None:
    """Raise unless every event has at least ``baseline_min_days`` reference days.

    Raises
    ------
    ValueError
        One line naming the campus, the event day, the days found and the keys that
        change it.
    """
    for e in events:
        if len(e.reference_firsts) < dr.baseline_min_days:
            kind = "weekend days" if pd.Timestamp(e.day).day_of_week >= 5 else "weekdays"
            raise ValueError(
                f"DR day {e.day} at campus {campus_names[e.campus]!r}: the run holds "
                f"{len(e.reference_firsts)} whole non-event {kind} before its notice "
                f"({dr.notice_h:g} h ahead) within its look-back, expected at least "
                f"{dr.baseline_min_days} for its prior-days baseline; start the run "
                "earlier, set site.dr.lead_in = true or site.dr.baseline = \"s1_plan\"")


def event_baseline(e: ProgramEvent, import_mw: np.ndarray, dr: DemandResponse,
                   history_mw: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The baseline of event ``e`` from the metered import before its notice.

    Parameters
    ----------
    e : ProgramEvent
    import_mw : ndarray (n_metered, C) [MW]
        Metered import per run step and campus, at least up to ``e.notice_step``;
        rows from the notice on are not read.
    dr : DemandResponse
    history_mw : ndarray (n_lead, C) [MW], optional
        Metered import of the lead-in, the intervals just before the run.

    Returns
    -------
    baseline : ndarray [MW]
        On ``e.steps``.
    factor : float [-]
        The day-of adjustment applied.
    """
    lead = 0 if history_mw is None else len(history_mw)
    run = np.asarray(import_mw, dtype=float)[: max(e.notice_step, 0), e.campus]
    if run.size < e.notice_step:
        raise ValueError(f"DR event of {e.day}: the meter holds {run.size} intervals, "
                         f"the baseline needs the {e.notice_step} before its notice")
    metered = run if history_mw is None else np.concatenate(
        [np.asarray(history_mw, dtype=float)[:, e.campus], run])
    metered = metered[: lead + e.notice_step]
    refs = np.array(e.reference_firsts, dtype=np.int64) + lead
    if refs.min() < 0:
        raise ValueError(f"DR event of {e.day}: a reference day starts "
                         f"{-int(refs.min())} intervals before the meter history "
                         f"({lead} intervals before the run)")
    profile = metered[refs[:, None] + np.arange(STEPS_PER_DAY)[None, :]].mean(axis=0)
    factor = 1.0
    offsets = e.window_offsets
    day_first = e.day_first + lead
    if offsets.size and refs.min() + offsets.min() >= 0 and day_first + offsets.min() >= 0:
        # Each reference day's window: the same clock times (offsets from its midnight).
        expected = float(metered[refs[:, None] + offsets[None, :]].mean(axis=0).sum())
        seen = float(metered[day_first + offsets].sum())
        if expected > 0.0:
            factor = min(max(seen / expected, 1.0 - dr.adjustment_cap),
                         1.0 + dr.adjustment_cap)
    return factor * profile[e.slots], factor


class ProgramBaseline:
    """The simulator's programme: publishes each event's baseline at its notice.

    Parameters
    ----------
    events : sequence of ProgramEvent
    dr : DemandResponse
    n_steps : int
        Run intervals.
    campuses : int
    history_mw : ndarray (n_lead, C) [MW], optional
        The lead-in's metered import, the intervals just before the run.

    Attributes
    ----------
    baseline_mw : ndarray (n_steps, C) [MW]
        The baselines published so far (0 elsewhere).
    factors : dict[tuple[int, str], float]
        The day-of adjustment of each published event, by (campus, day).
    """

    def __init__(self, events: Sequence[ProgramEvent], dr: DemandResponse, n_steps: int,
                 campuses: int, history_mw: np.ndarray | None = None) -> None:
        self.dr = dr
        self.history_mw = history_mw
        self._due: dict[int, list[ProgramEvent]] = {}
        for e in events:
            self._due.setdefault(e.notice_step, []).append(e)
        self.baseline_mw = np.zeros((n_steps, campuses))
        self.factors: dict[tuple[int, str], float] = {}

    def realized(self, step: int, realized: Sequence[CampusRealized]
                 ) -> tuple[CampusRealized, ...]:
        """``realized`` of ``step`` with each event campus's published baseline [MW]."""
        return tuple(replace(r, dr_baseline_mw=float(self.baseline_mw[step, c]))
                     if r.dr_event else r for c, r in enumerate(realized))

    def messages(self, e: ProgramEvent, campus: str) -> list[tuple[int, dict[str, float]]]:
        """What the policy is told of published event ``e`` at ``campus``: per event
        interval (run step), ``dr_event[C]`` 1 and ``dr_baseline_mw[C]`` [MW]."""
        return [(int(k), {f"dr_event[{campus}]": 1.0,
                          f"dr_baseline_mw[{campus}]": float(self.baseline_mw[k, e.campus])})
                for k in e.steps]

    def publish(self, step: int, import_mw: np.ndarray) -> list[ProgramEvent]:
        """The events announced at the start of ``step``, their baselines set.

        Parameters
        ----------
        step : int
            The boundary (run step) now.
        import_mw : ndarray (step, C) [MW]
            The meter's import of every interval settled so far.
        """
        due = self._due.pop(step, [])
        for e in due:
            values, factor = event_baseline(e, import_mw, self.dr, self.history_mw)
            self.baseline_mw[e.steps, e.campus] = values
            self.factors[(e.campus, e.day)] = factor
            logger.info("DR event %s at campus %d announced at step %d: baseline %.4g MW mean "
                        "from %d prior days (%d before the run), day-of adjustment %.3f",
                        e.day, e.campus, step, float(values.mean()), len(e.reference_firsts),
                        sum(r < 0 for r in e.reference_firsts), factor)
        return due


def announcements(events: Sequence[ProgramEvent], n_steps: int,
                  campus_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per campus with events: the step each run interval's event is announced at
    (:attr:`mpc_dc.sim.exogenous.SiteExogenous.dr_announced_at`)."""
    out: dict[str, np.ndarray] = {}
    for e in events:
        name = campus_names[e.campus]
        at = out.setdefault(name, np.zeros(n_steps, dtype=np.int64))
        at[e.steps] = max(e.notice_step, 0)
    return out


def exogenous_events(exo: SiteExogenous, lead_steps: int | None = None
                     ) -> list[ProgramEvent]:
    """The programme's events of a run (:func:`program_events` on its event flags),
    reference days in its meter history (``lead_steps``; default: the intervals of
    ``exo.dr_meter_history_mw``) and the run."""
    if lead_steps is None:
        history = exo.dr_meter_history_mw
        lead_steps = 0 if history is None else len(history)
    return program_events(exo.run_index, exo.local_tz, exo.realized_array("event") > 0.5,
                          exo.site.dr, lead_steps)


def exogenous_lead_in_days(exo: SiteExogenous) -> int:
    """:func:`lead_in_days` of a run under ``prior_days`` (0 under ``s1_plan``) [d]."""
    if exo.site.dr.baseline != "prior_days":
        return 0
    return lead_in_days(exo.run_index, exo.local_tz, exo.realized_array("event") > 0.5,
                        exo.site.dr)


def program_of(exo: SiteExogenous) -> ProgramBaseline | None:
    """The programme of a run under ``site.dr.baseline = "prior_days"`` with events;
    None otherwise (the frame's ``dr_baseline_mw[C]`` is settled against).

    Raises
    ------
    ValueError
        When an event has too few reference days (:func:`check_reference_days`).
    """
    dr = exo.site.dr
    if dr.baseline != "prior_days":
        return None
    events = exogenous_events(exo)
    if not events:
        return None
    if exo.dr_meter_history_mw is None and exogenous_lead_in_days(exo):
        # A loop driven without mpc_dc.runner.run_scenario (a benchmark, the gym).
        logger.warning("DR programme without its lead-in's meter history "
                       "(mpc_dc.runner.with_meter_history): baselines from the run's "
                       "own days only")
    check_reference_days(events, dr, exo.site.campus_names)
    return ProgramBaseline(events, dr, exo.n_steps, len(exo.site.campuses),
                           exo.dr_meter_history_mw)


def with_notice(exo: SiteExogenous, source: str | Path) -> SiteExogenous:
    """``exo`` with each programme event announced at its notice
    (``dr_announced_at``); itself when the baseline is not ``prior_days`` or the run
    has no event.

    Raises
    ------
    ConfigError
        Naming ``source`` and ``site.dr.baseline_min_days`` when an event has too few
        reference days in the run and its lead-in (:func:`lead_in_days`).
    """
    if exo.site.dr.baseline != "prior_days":
        return exo
    lead = exogenous_lead_in_days(exo) * STEPS_PER_DAY
    events = exogenous_events(exo, lead)
    if not events:
        return exo
    try:
        check_reference_days(events, exo.site.dr, exo.site.campus_names)
    except ValueError as err:
        raise ConfigError(source, str(err), key="site.dr.baseline_min_days") from None
    notice = announcements(events, exo.n_steps, exo.site.campus_names)
    return replace(exo, dr_announced_at={**exo.dr_announced_at, **notice})
