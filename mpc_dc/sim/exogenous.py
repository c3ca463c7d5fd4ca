"""The exogenous side of a site run: realized series per campus and model, and their rules.

One frame on the 15-min UTC grid (index ``interval_start_utc``) holds the run's
history, the run and a tail (one controller horizon after the run, where
forecasts and the Oracle look; the plant never does). Columns are named
``quantity_unit[NAME]`` with a campus name ``C`` or a model name ``M``
(:func:`column`):

==========================  ===============================================  =========
column                      meaning                                          required
==========================  ===============================================  =========
``price_usd_per_mwh[C]``    market price the campus's tariff is built on     always
                            (RT LMP wholesale, DA LMP retail) [$/MWh]
``carbon_gco2_per_kwh[C]``  grid carbon intensity at the campus [gCO2/kWh]   always
``renewable_cf[C]``         renewable capacity factor [-]                    renewable
``workload_wu[C]``          other-IT work arriving in the interval [WU]      other_it
``tokens_per_s[M]``         output-token demand offered [tokens/s]           fleet
``requests_per_h[M]``       requests offered [requests/h]                    fleet
``dr_event[C]``             1 in a demand-response event interval, else 0    no
``dr_baseline_mw[C]``       DR baseline of the campus's import [MW]          s1_plan
``gpus_available[C]``       GPUs that may run inference [GPUs]               no
==========================  ===============================================  =========

``dr_baseline_mw[C]`` is required in events under ``site.dr.baseline = "s1_plan"``;
under ``prior_days`` the simulator computes it from its meter
(:mod:`mpc_dc.sim.dr_program`) and the frame's column is not read.

A required column may not be NaN in the run period; history and tail may hold
NaN (gaps the forecasters see as such). In the run period the demand columns are
the aggregates of :attr:`SiteExogenous.requests` (:func:`demand_columns`), checked
when the object is built.

Rules applied here (one place for the loop and the controllers):

* tariff: import and export prices per campus from its market price
  (:func:`mpc_dc.site.config.tariff_prices`: wholesale both the price, retail
  π⁺ = price + adder and π⁻ = factor × price);
* other IT: ``(1 − s)`` of each interval's work is non-deferrable and runs on
  arrival; the deferrable share ``s`` is released by the campus's release rule
  through :func:`deferrable_releases` (the one rule of the closed loop, the
  controllers' forecasts of it and the RCDC study): under ``window_start`` a window's batch is
  submitted during the interval before it opens and released at its start (the
  first window's batch is the initial backlog); under ``on_arrival`` each
  interval's share is released into that interval;
* observation timing: a value is handed to the policy when it is published
  (``publication`` per column, :class:`traces.grid.Publication`; a column without
  a rule at the end of its 15-min interval), through
  :class:`~mpc_dc.sim.publication.ObservationSchedule`;
* DR announcements: the programme's events (``dr_event[C]``) are announced before
  the run unless ``dr_announced_at`` says when (an event announced late,
  :mod:`mpc_dc.sim.faults`); :meth:`SiteExogenous.dr_unannounced` is what a
  controller may not know yet.

Reading a realized value outside the run is a :class:`traces.errors.TraceRangeError`
naming the run's span, never an extrapolation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
import pandas as pd

from mpc_dc.sim.arrivals import STEP_S, RequestAggregates, RequestArrays
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.publication import ObservationSchedule
from mpc_dc.sim.serving import RequestMix
from mpc_dc.site.config import ReleaseRule, Site, tariff_prices
from traces.errors import TraceRangeError
from traces.grid import STEP, Publication

DeferrableRelease = ReleaseRule
"""When deferrable work is released: the window's batch at the window start, or as it arrives."""


def window_end(step: np.ndarray | int, window_steps: int, run_steps: int) -> np.ndarray:
    """Last interval of the window containing ``step`` (windows from step 0, inside the run)."""
    return np.minimum((np.asarray(step) // window_steps + 1) * window_steps, run_steps) - 1


def deferrable_releases(
    work_wu: np.ndarray,
    share: float,
    window_steps: int,
    rule: DeferrableRelease,
    *,
    first_step: int = 0,
    run_steps: int | None = None,
) -> np.ndarray:
    """Deferrable work released at the start of each interval of a span [WU].

    Released work may run from that interval on and is due by the end of its
    window (:func:`window_end`).

    Parameters
    ----------
    work_wu : ndarray [WU]
        Work arriving in each interval of the span (realized or forecast).
    share : float [-]
        Deferrable share of the work.
    window_steps : int
        Window length [intervals]; windows start at step 0 of the run.
    rule : {"window_start", "on_arrival"}
        ``window_start``: a window opening in the span releases ``share ×`` its
        work at its first interval; a window reaching past the span is estimated
        from the part the span covers (mean × length). ``on_arrival``:
        ``share × work_wu``.
    first_step : int
        Run step of the span's first interval.
    run_steps : int, optional
        Run length [intervals] (windows end with the run); default: the span's end.

    Raises
    ------
    ValueError
        For a rule other than the two above.
    """
    if rule not in get_args(DeferrableRelease):
        raise ValueError(f"deferrable release rule must be one of {get_args(DeferrableRelease)}, "
                         f"got {rule!r}")
    work = np.asarray(work_wu, dtype=float)
    n = work.size
    if rule == "on_arrival":
        return share * work
    run_steps = first_step + n if run_steps is None else run_steps
    released = np.zeros(n)
    for j in range(-first_step % window_steps, n, window_steps):
        length = int(window_end(first_step + j, window_steps, run_steps)) - (first_step + j) + 1
        covered = work[j : min(j + length, n)]
        released[j] = share * float(covered.mean()) * length
    return released


DEMAND_RTOL = 1e-6
"""Relative tolerance of the run-period demand columns against the requests [-]."""


def column(quantity: str, name: str) -> str:
    """Frame column of ``quantity`` at campus or model ``name``: ``quantity[name]``."""
    return f"{quantity}[{name}]"


def demand_columns(requests: RequestArrays | RequestAggregates, index: pd.DatetimeIndex
                   ) -> pd.DataFrame:
    """``tokens_per_s[M]`` and ``requests_per_h[M]`` of the requests on the run's grid.

    Parameters
    ----------
    requests : RequestArrays or RequestAggregates
        Arrival seconds from ``index[0]``.
    index : DatetimeIndex
        The run's interval starts (15-min UTC grid).

    Returns
    -------
    DataFrame
        Output tokens of the requests arriving in each interval over its length
        [tokens/s] and their count per hour [requests/h], per model.
    """
    agg = requests.per_interval(len(index))
    cols: dict[str, np.ndarray] = {}
    for m, model in enumerate(requests.models):
        cols[column("tokens_per_s", model)] = agg["response_tokens"][:, m] / STEP_S
        cols[column("requests_per_h", model)] = agg["requests"][:, m] * 3600.0 / STEP_S
    return pd.DataFrame(cols, index=index)


@dataclass(frozen=True)
class CampusRealized:
    """Exogenous data of one campus in one interval, as it happened.

    Attributes
    ----------
    price_usd_per_mwh : float [$/MWh]
        Market price the tariff is built on.
    import_price_usd_per_mwh, export_price_usd_per_mwh : float [$/MWh]
        Tariff prices π⁺, π⁻.
    carbon_gco2_per_kwh : float [gCO2/kWh]
    renewable_cf : float [-]
        0 without a renewable block.
    work_nd_wu : float [WU]
        Non-deferrable other-IT work arriving (0 without other IT).
    dr_event : bool
    dr_baseline_mw : float [MW]
        0 outside events.
    gpus_available : float [GPUs]
        The campus's GPUs unless the frame says fewer.
    """

    price_usd_per_mwh: float
    import_price_usd_per_mwh: float
    export_price_usd_per_mwh: float
    carbon_gco2_per_kwh: float
    renewable_cf: float
    work_nd_wu: float
    dr_event: bool
    dr_baseline_mw: float
    gpus_available: float


@dataclass(frozen=True)
class _Deferrable:
    """Deferrable-work rule of one campus with other IT (arrays over run steps)."""

    submitted_wu: np.ndarray
    initial_batch_wu: float
    window_steps: int
    on_arrival: bool


@dataclass(frozen=True)
class SiteExogenous:
    """Realized exogenous data of a site run and the rules that turn it into plant inputs.

    Parameters
    ----------
    site : Site
    frame : DataFrame
        15-min UTC grid (index ``interval_start_utc``) covering history, run and
        tail; columns per the module docstring.
    run_start : Timestamp
        First run interval (UTC); the history is the frame before it.
    n_steps : int
        Run intervals.
    requests : RequestArrays, RequestAggregates or None
        Run-period requests, arrival seconds from ``run_start``, models in
        ``site.models`` order (None without a fleet); or only their per-interval
        aggregates (fluid serving at a scale no request array fits).
    publication : Mapping[str, Publication]
        When each frame column is observable; absent: at the end of its interval.
    local_tz : str
        Billing calendar, DR local days, display.
    name : str
    request_mix : Mapping[str, RequestMix]
        Token lengths of each model's requests over the history (what a planner
        knows at the run start); empty: unknown.
    dr_announced_at : Mapping[str, ndarray]
        Per campus, over run steps: the step at whose start the DR event flag of
        that interval is announced; a campus without an entry has its events
        announced before the run.
    dr_meter_history_mw : ndarray (n_lead, C) [MW] or None
        Metered grid import of each campus over the DR programme's lead-in, the
        intervals just before the run (:func:`mpc_dc.runner.with_meter_history`);
        None: no meter history before the run.
    burst_late_share : Mapping[str, ndarray]
        Per model, the share of its history's tokens that arrive in bursts beyond the
        capacity at the SLO of a pool planned at each utilisation of
        :data:`mpc_dc.sim.bursts.BURST_UTILISATIONS` for its interval's mean
        (:func:`mpc_dc.sim.bursts.window_late_share`) [-]; measured only with
        ``controller.congestion_calibration`` ``"auto"`` (the default) or ``"history"``;
        empty: not measured.

    Raises
    ------
    ValueError
        One line naming the column, campus or model that does not fit the site
        (missing, NaN in the run period, demand not matching the requests) or a
        frame that does not cover the run.
    """

    site: Site
    frame: pd.DataFrame
    run_start: pd.Timestamp
    n_steps: int
    requests: RequestArrays | RequestAggregates | None
    publication: Mapping[str, Publication] = field(default_factory=dict)
    local_tz: str = "America/New_York"
    name: str = "run"
    request_mix: Mapping[str, RequestMix] = field(default_factory=dict)
    dr_announced_at: Mapping[str, np.ndarray] = field(default_factory=dict)
    dr_meter_history_mw: np.ndarray | None = None
    burst_late_share: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_start", pd.Timestamp(self.run_start))
        index = self._check_index()
        first = int((self.run_start.value - index[0].value) // STEP.value)
        run = self.frame.iloc[first : first + self.n_steps]
        self._check_columns(run)
        object.__setattr__(self, "_first", first)
        object.__setattr__(self, "_run_index", pd.DatetimeIndex(run.index))
        self._realized_arrays(run)
        self._deferrable_rules(run)
        # Everything up to the run end may be delivered to the policy (the tail never).
        values = self.frame.iloc[: first + self.n_steps].to_numpy(dtype=float)
        schedule = ObservationSchedule(self.run_start, self.n_steps,
                                       [str(c) for c in self.frame.columns], values, first,
                                       self.publication)
        object.__setattr__(self, "_schedule", schedule)

    # -- validation --------------------------------------------------------------------
    def _check_index(self) -> pd.DatetimeIndex:
        index = self.frame.index
        where = f"exogenous '{self.name}'"
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None or len(index) == 0:
            raise ValueError(f"{where}: expected a non-empty UTC DatetimeIndex")
        if not (np.diff(index.as_unit("ns").asi8) == STEP.value).all():
            raise ValueError(f"{where}: index is not a gap-free 15-minute grid")
        if self.n_steps < 1:
            raise ValueError(f"{where}: n_steps: expected >= 1, got {self.n_steps}")
        offset = self.run_start.value - index[0].value
        if offset % STEP.value or offset < 0 or offset // STEP.value + self.n_steps > len(index):
            raise ValueError(
                f"{where}: the frame [{index[0]}, {index[-1] + STEP}) does not cover the run "
                f"[{self.run_start}, {self.run_start + self.n_steps * STEP}) on its grid")
        return index

    def _check_columns(self, run: pd.DataFrame) -> None:
        where = f"exogenous '{self.name}'"
        required: list[str] = []
        for c in self.site.campuses:
            required += [column("price_usd_per_mwh", c.name),
                         column("carbon_gco2_per_kwh", c.name)]
            if c.renewable is not None:
                required.append(column("renewable_cf", c.name))
            if c.other_it is not None:
                required.append(column("workload_wu", c.name))
        for m in self.site.models:
            required += [column("tokens_per_s", m), column("requests_per_h", m)]
        missing = [c for c in required if c not in self.frame.columns]
        if missing:
            raise ValueError(f"{where}: missing columns {missing} for site campuses "
                             f"{list(self.site.campus_names)} and models {list(self.site.models)}")
        values = run[required].to_numpy(dtype=float)
        bad = np.isnan(values)
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(f"{where}: column '{required[col]}' is NaN at {run.index[row]} in "
                             "the run period; fill gaps by a named policy before the run")
        self._check_requests(run)

    def check_dr_baseline(self) -> None:
        """Raise unless every DR event interval of the run has a baseline value.

        Not checked on construction: the data builder marks the events, and the DR
        baseline is set afterwards by whoever computes it (the simulator needs it).
        """
        if self.site.dr.baseline == "prior_days":
            return  # the programme computes it during the run (mpc_dc.sim.dr_program)
        run = self.frame.iloc[self.history_steps : self.history_steps + self.n_steps]
        for c in self.site.campuses:
            event = column("dr_event", c.name)
            if event in run.columns and (run[event].fillna(0.0) > 0.5).any():
                base = column("dr_baseline_mw", c.name)
                on = run[event].fillna(0.0).to_numpy() > 0.5
                if base not in run.columns or np.isnan(run[base].to_numpy()[on]).any():
                    raise ValueError(f"exogenous '{self.name}': campus {c.name!r} has DR events "
                                     f"but no '{base}' value in them")

    def _check_requests(self, run: pd.DataFrame) -> None:
        where = f"exogenous '{self.name}'"
        if self.site.fleet is None:
            if self.requests is not None:
                raise ValueError(f"{where}: requests given but the site has no fleet")
            return
        if self.requests is None:
            raise ValueError(f"{where}: the site serves {list(self.site.models)} but no "
                             "requests were given")
        if self.requests.models != self.site.models:
            raise ValueError(f"{where}: requests name models {list(self.requests.models)}; "
                             f"expected the site's {list(self.site.models)} in that order")
        truth = demand_columns(self.requests, pd.DatetimeIndex(run.index))
        given = run[truth.columns].to_numpy(dtype=float)
        want = truth.to_numpy()
        off = np.abs(given - want) > DEMAND_RTOL * np.maximum(np.abs(want), 1.0)
        if off.any():
            row, col = (int(v[0]) for v in np.nonzero(off))
            raise ValueError(
                f"{where}: column '{truth.columns[col]}' at {run.index[row]} is "
                f"{given[row, col]:.6g}, but the requests give {want[row, col]:.6g}; the "
                "run-period demand must be the requests' own aggregates")

    # -- precomputed arrays over (run step, campus) -----------------------------------------
    def _realized_arrays(self, run: pd.DataFrame) -> None:
        n, C = self.n_steps, len(self.site.campuses)

        def per_campus(quantity: str, default: np.ndarray | float) -> np.ndarray:
            out = np.empty((n, C))
            for i, c in enumerate(self.site.campuses):
                name = column(quantity, c.name)
                if name in run.columns:
                    out[:, i] = np.nan_to_num(run[name].to_numpy(dtype=float), nan=0.0)
                else:
                    out[:, i] = default[i] if isinstance(default, np.ndarray) else default
            return out

        price = per_campus("price_usd_per_mwh", 0.0)
        imp, exp = np.empty((n, C)), np.empty((n, C))
        for i, c in enumerate(self.site.campuses):
            imp[:, i], exp[:, i] = tariff_prices(price[:, i], c.grid.tariff)
        share = np.array([0.0 if c.other_it is None else c.other_it.deferrable_share
                          for c in self.site.campuses])
        gpus = np.array([float(c.gpus) for c in self.site.campuses])
        event = per_campus("dr_event", 0.0) > 0.5
        arrays = {
            "price": price,
            "import_price": imp,
            "export_price": exp,
            "carbon": per_campus("carbon_gco2_per_kwh", 0.0),
            "cf": per_campus("renewable_cf", 0.0),
            "workload": per_campus("workload_wu", 0.0),
            "work_nd": (1.0 - share) * per_campus("workload_wu", 0.0),
            "event": event,
            "baseline": np.where(event, per_campus("dr_baseline_mw", 0.0), 0.0),
            "gpus": per_campus("gpus_available", gpus),
        }
        object.__setattr__(self, "_arrays", arrays)
        rows = [
            tuple(
                CampusRealized(
                    price_usd_per_mwh=float(price[k, i]),
                    import_price_usd_per_mwh=float(imp[k, i]),
                    export_price_usd_per_mwh=float(exp[k, i]),
                    carbon_gco2_per_kwh=float(arrays["carbon"][k, i]),
                    renewable_cf=float(arrays["cf"][k, i]),
                    work_nd_wu=float(arrays["work_nd"][k, i]),
                    dr_event=bool(event[k, i]),
                    dr_baseline_mw=float(arrays["baseline"][k, i]),
                    gpus_available=float(arrays["gpus"][k, i]),
                )
                for i in range(C)
            )
            for k in range(n)
        ]
        object.__setattr__(self, "_rows", rows)

    def _deferrable_rules(self, run: pd.DataFrame) -> None:
        rules: dict[str, _Deferrable] = {}
        for c in self.site.campuses:
            oit = c.other_it
            if oit is None:
                continue
            work = run[column("workload_wu", c.name)].to_numpy(dtype=float)
            released = deferrable_releases(work, oit.deferrable_share, oit.window_steps,
                                           oit.release)
            if oit.release == "on_arrival":
                rules[c.name] = _Deferrable(released, 0.0, oit.window_steps, True)
            else:
                # A window's batch is submitted during the interval before it opens.
                rules[c.name] = _Deferrable(np.append(released[1:], 0.0), float(released[0]),
                                            oit.window_steps, False)
        object.__setattr__(self, "_deferrable", rules)

    # -- the run -------------------------------------------------------------------------
    @property
    def start(self) -> pd.Timestamp:
        """First run interval (UTC)."""
        return self.run_start

    @property
    def run_index(self) -> pd.DatetimeIndex:
        """Interval starts of the run."""
        index: pd.DatetimeIndex = self._run_index  # type: ignore[attr-defined]
        return index

    @property
    def history_steps(self) -> int:
        """Intervals of the frame before the run."""
        return int(self._first)  # type: ignore[attr-defined]

    @property
    def history(self) -> pd.DataFrame:
        """The frame before the run (all columns; NaN allowed)."""
        return self.frame.iloc[: self.history_steps]

    def time(self, step: int) -> pd.Timestamp:
        """Start of run interval ``step``."""
        return self.run_start + step * STEP

    def _check_step(self, step: int) -> None:
        if not 0 <= step < self.n_steps:
            end = self.run_start + self.n_steps * STEP
            raise TraceRangeError(
                f"exogenous '{self.name}' run covers [{self.run_start}, {end}); asked for "
                f"the interval starting {self.run_start + step * STEP}")

    def realized(self, step: int) -> tuple[CampusRealized, ...]:
        """What the plant and the meter see in run interval ``step``, per campus (site order).

        Raises
        ------
        TraceRangeError
            For a step outside the run.
        """
        self._check_step(step)
        rows: list[tuple[CampusRealized, ...]] = self._rows  # type: ignore[attr-defined]
        return rows[step]

    def realized_array(self, name: str) -> np.ndarray:
        """One realized quantity over the run, shape ``(n_steps, n_campuses)`` (read only).

        ``name`` is one of ``price``, ``import_price``, ``export_price`` [$/MWh],
        ``carbon`` [gCO2/kWh], ``cf`` [-], ``workload``, ``work_nd`` [WU], ``event``
        (bool), ``baseline`` [MW], ``gpus`` [GPUs].
        """
        arrays: dict[str, np.ndarray] = self._arrays  # type: ignore[attr-defined]
        out = arrays[name].view()
        out.flags.writeable = False
        return out

    # -- deferrable work -------------------------------------------------------------------
    def _rule(self, campus: str) -> _Deferrable:
        rules: dict[str, _Deferrable] = self._deferrable  # type: ignore[attr-defined]
        if campus not in rules:
            raise KeyError(f"campus {campus!r} has no other IT (no deferrable work)")
        return rules[campus]

    def releases_on_arrival(self, campus: str) -> bool:
        """True when ``campus`` releases deferrable work in the interval it arrives in."""
        return self._rule(campus).on_arrival

    def window_deadline(self, campus: str, step: int) -> int:
        """Last interval of ``campus``'s scheduling window containing ``step`` (inside the run)."""
        return int(window_end(step, self._rule(campus).window_steps, self.n_steps))

    def batch_wu(self, campus: str, window_start: int) -> float:
        """Deferrable batch of the window opening at ``window_start`` [WU] (``window_start``
        rule; 0 before the run under ``on_arrival``)."""
        rule = self._rule(campus)
        if window_start == 0:
            return rule.initial_batch_wu
        return float(rule.submitted_wu[window_start - 1])

    def deferrable_arrival_wu(self, campus: str, step: int) -> float:
        """Deferrable work of ``campus`` submitted during interval ``step`` [WU].

        ``window_start``: the next window's batch (released at the end of ``step``);
        ``on_arrival``: the interval's deferrable share (released into ``step``).
        """
        self._check_step(step)
        rule = self._rule(campus)
        if step + 1 >= self.n_steps and not rule.on_arrival:
            return 0.0
        return float(rule.submitted_wu[step])

    def initial_backlog(self, campus: str) -> Backlog:
        """Backlog of ``campus`` at the run start: the first window's batch (empty under
        ``on_arrival``)."""
        backlog = Backlog()
        backlog.release(self.batch_wu(campus, 0), self.window_deadline(campus, 0))
        return backlog

    # -- what the policy may see -------------------------------------------------------------
    def published_during(self, step: int) -> list[tuple[pd.Timestamp, dict[str, float]]]:
        """Observations published during interval ``step``: ``(interval start, values)``.

        In time order; each dict holds the columns published for that interval
        (hourly columns at the end of their hour, so none at ``:15``-``:45``).
        """
        self._check_step(step)
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return [(self.time(pos), values) for pos, values in schedule.published_during(step)]

    def last_published(self, col: str, step: int) -> pd.Timestamp:
        """Start of the last interval of column ``col`` published by the start of run
        interval ``step`` (before the run start: a history interval)."""
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return self.time(schedule.last_observable(col, step))

    def last_published_values(self, col: str) -> np.ndarray:
        """The value of column ``col`` last published by the start of each run interval,
        shape ``(n_steps,)`` [column units], a NaN holding the one before
        (:meth:`ObservationSchedule.last_published_values`)."""
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return schedule.last_published_values(col)

    def dr_unannounced(self, step: int, horizon_steps: int) -> np.ndarray | None:
        """Where a DR event of run intervals ``[step, step + H)`` is not announced yet at
        the start of ``step``: bool (campuses, H), False past the run end; None when
        every event is announced before the run."""
        if not self.dr_announced_at:
            return None
        out = np.zeros((len(self.site.campuses), horizon_steps), dtype=bool)
        n = min(horizon_steps, self.n_steps - step)
        for i, c in enumerate(self.site.campuses):
            announced = self.dr_announced_at.get(c.name)
            if announced is not None:
                out[i, :n] = announced[step: step + n] > step
        return out

    def published_history(self, col: str) -> pd.Series:
        """The history of column ``col`` observable at the run start (to fit forecasters on)."""
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return self.frame[col].iloc[: schedule.observable_at_start(col)]

    def truth(self, col: str) -> pd.Series:
        """Column ``col`` over the whole frame, history + run + tail (for the Oracle)."""
        if col not in self.frame.columns:
            raise KeyError(f"exogenous '{self.name}': no column {col!r}")
        return self.frame[col]
