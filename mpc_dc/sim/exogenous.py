"""The exogenous side of an RCDC run: realized series, tariff rule, workload split, deadlines.

Channels (one forecaster each, :data:`CHANNELS`), all on the 15-min UTC grid:

* ``price_usd_per_mwh`` [$/MWh] — the market price the tariff is built on: the
  real-time LMP (wholesale) or the day-ahead price (retail, see
  :func:`mpc_dc.params.site.retail_prices`);
* ``renewable_cf`` [-] — renewable capacity factor in [0, 1];
* ``workload_wu`` [WU] — compute work arriving in the interval. A share ``s`` is
  deferrable, the rest non-deferrable (runs on arrival).

Deferrable work follows Li–Tong–Mount's 24-h scheduling windows: windows of
``window_steps`` intervals start at the run start, and deferrable work is due by
the last interval of the window it is released in. Every deadline lies inside the
run: no end effects. When it is released is the rule :data:`DeferrableRelease`
(scenario key ``run.deferrable_release``), computed by :func:`deferrable_releases`
for the closed loop (realized here, forecast in
:func:`mpc_dc.controllers.build_horizon`) and for the offline RCDC study alike:

* ``"window_start"``: the deferrable share of a window's workload is submitted as
  one batch during the last interval before the window (so it is observed, never
  forecast, when the window opens) and released at the window start. The first
  window's batch is the initial backlog.
* ``"on_arrival"``: the deferrable share of each interval's workload is released
  in the interval it arrives in and may run in it, like non-deferrable work; the
  controller forecasts it (it is observed at the interval's end).

Observation timing: the plant and the meter use each interval's realized values;
the controller observes a channel's value only when it is published
(``publication``, :class:`traces.grid.Publication`): an hourly price or wind
value at the end of its hour, all four quarters at once
(:meth:`RcdcExogenous.published_during`, :mod:`mpc_dc.sim.publication`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import pandas as pd

from forecasters.presets import Quantity
from mpc_dc.params.site import SiteConfig, retail_prices
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.plant import Realized
from mpc_dc.sim.publication import ObservationSchedule
from traces.grid import STEP, Publication
from traces.trace import Trace

CHANNELS: tuple[str, ...] = ("price_usd_per_mwh", "renewable_cf", "workload_wu")
"""Exogenous series of the RCDC configuration."""

DeferrableRelease = Literal["window_start", "on_arrival"]
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


QUANTITIES: dict[str, Quantity] = {
    "price_usd_per_mwh": "price",
    "renewable_cf": "capacity_factor",
    "workload_wu": "load",
}
"""Kind of each channel: selects bounds and model settings (:mod:`forecasters.presets`)."""


@dataclass(frozen=True)
class RcdcExogenous:
    """Realized exogenous data of a run and the rules that turn it into plant inputs.

    Parameters
    ----------
    config : SiteConfig
    frame : DataFrame
        The run period: 15-min UTC grid, columns :data:`CHANNELS`, no NaN. Under
        ``window_start``, an optional column ``deferrable_batch_wu`` [WU] gives the
        batch submitted during each interval (non-zero only before a window opens);
        by default it is ``s ×`` the next window's workload.
    initial_batch_wu : float [WU], optional
        ``window_start`` only: the first window's batch (submitted before the run);
        default ``s ×`` its workload.
    history : DataFrame
        Data before the run (same columns, NaN allowed) for fitting forecasters.
    deferrable_share : float [-]
        Share ``s`` of the workload that is deferrable.
    window_steps : int
        Length of a scheduling window [intervals].
    deferrable_release : {"window_start", "on_arrival"}
        When deferrable work is released (module docstring).
    local_tz : str
        Time zone of the billing calendar.
    initial_battery_mwh : float [MWh]
    name : str
    publication : Mapping[str, Publication]
        When each channel's value becomes observable (from the source's metadata,
        :attr:`traces.grid.TraceMetadata.publication`); a channel without a rule is
        observed at the end of its 15-min interval.
    """

    config: SiteConfig
    frame: pd.DataFrame
    history: pd.DataFrame
    deferrable_share: float = 0.4
    window_steps: int = 96
    local_tz: str = "America/New_York"
    initial_battery_mwh: float = 0.0
    name: str = "run"
    initial_batch_wu: float | None = None
    deferrable_release: DeferrableRelease = "window_start"
    publication: Mapping[str, Publication] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in CHANNELS if c not in self.frame.columns]
        if missing:
            raise ValueError(f"exogenous '{self.name}': missing channels {missing}")
        if self.frame[list(CHANNELS)].isna().to_numpy().any():
            bad = self.frame[list(CHANNELS)].isna().any(axis=1)
            raise ValueError(
                f"exogenous '{self.name}': NaN in the run period at {bad[bad].index[0]}; "
                "fill gaps by a named policy before the run"
            )
        if not 0.0 <= self.deferrable_share <= 1.0:
            raise ValueError(f"deferrable_share must be in [0, 1], got {self.deferrable_share}")
        if self.window_steps < 1:
            raise ValueError(f"window_steps must be >= 1, got {self.window_steps}")
        if len(self.history) and self.history.index[-1] + STEP != self.frame.index[0]:
            raise ValueError(f"exogenous '{self.name}': history must end where the run starts")
        values = self.frame[list(CHANNELS)].to_numpy(dtype=float)
        # Realized values are read through a Trace: a step outside the run is an
        # error naming the covered range, never an extrapolation or a wrap-around.
        object.__setattr__(self, "_trace", Trace(self.frame[list(CHANNELS)], self.name))
        released = deferrable_releases(
            values[:, 2], self.deferrable_share, self.window_steps, self.deferrable_release
        )
        if self.releases_on_arrival:
            submitted, initial = released, 0.0
        else:
            # A window's batch is submitted during the interval before it opens.
            submitted = np.append(released[1:], 0.0)
            if "deferrable_batch_wu" in self.frame.columns:
                submitted = self.frame["deferrable_batch_wu"].to_numpy(dtype=float)
            initial = float(released[0]) if released.size else 0.0
            if self.initial_batch_wu is not None:
                initial = self.initial_batch_wu
        object.__setattr__(self, "_submitted", submitted)
        object.__setattr__(self, "_initial_batch", initial)
        # What the controller may observe, and when (module docstring).
        past = self.history.reindex(columns=list(CHANNELS)).to_numpy(dtype=float)
        n = len(values)
        first = self.frame.index[0] if n else pd.Timestamp(0, tz="UTC")
        schedule = ObservationSchedule(first, n, CHANNELS, np.vstack([past, values]), len(past),
                                       self.publication)
        object.__setattr__(self, "_schedule", schedule)

    @property
    def channels(self) -> tuple[str, ...]:
        """Forecast channels."""
        return CHANNELS

    @property
    def releases_on_arrival(self) -> bool:
        """True when deferrable work is released in the interval it arrives in."""
        return self.deferrable_release == "on_arrival"

    @property
    def n_steps(self) -> int:
        """Intervals in the run."""
        return len(self.frame)

    @property
    def start(self) -> pd.Timestamp:
        """First interval start."""
        return self.frame.index[0]

    def time(self, step: int) -> pd.Timestamp:
        """Start of interval ``step``."""
        return self.start + step * STEP

    def tariff_prices(self, price_usd_per_mwh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Import and export prices π⁺, π⁻ [$/MWh] from the channel's market price."""
        tariff = self.config.grid.tariff
        price = np.asarray(price_usd_per_mwh, dtype=float)
        if tariff.kind == "retail":
            return retail_prices(price, tariff)
        return price, price

    def window_deadline(self, step: int) -> int:
        """Last interval of the window containing ``step`` (inside the run)."""
        return int(window_end(step, self.window_steps, self.n_steps))

    def batch_wu(self, window_start: int) -> float:
        """Deferrable batch of the window opening at ``window_start`` [WU] (``window_start``
        rule; 0 before the run under ``on_arrival``)."""
        if window_start == 0:
            return float(self._initial_batch)  # type: ignore[attr-defined]
        return float(self._submitted[window_start - 1])  # type: ignore[attr-defined]

    def realized(self, step: int) -> Realized:
        """What the plant and the meter see in interval ``step``."""
        price, cf, workload = self._trace.row(step)  # type: ignore[attr-defined]
        import_price, export_price = self.tariff_prices(np.array([price]))
        return Realized(
            import_price_usd_per_mwh=float(import_price[0]),
            export_price_usd_per_mwh=float(export_price[0]),
            renewable_cf=float(cf),
            work_nd_wu=float((1.0 - self.deferrable_share) * workload),
        )

    def initial_backlog(self) -> Backlog:
        """Backlog at the run start: the first window's batch (empty under ``on_arrival``)."""
        backlog = Backlog()
        backlog.release(self.batch_wu(0), self.window_deadline(0))
        return backlog

    def deferrable_arrival_wu(self, step: int) -> float:
        """Deferrable work submitted during interval ``step`` [WU].

        ``window_start``: the next window's batch (released at the end of ``step``);
        ``on_arrival``: the interval's deferrable share (released into ``step``).
        """
        if step + 1 >= self.n_steps and not self.releases_on_arrival:
            return 0.0
        return float(self._submitted[step])  # type: ignore[attr-defined]

    def published_history(self, channel: str) -> pd.Series:
        """The history of ``channel`` observable at the run start (to fit forecasters on)."""
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return self.history[channel].iloc[: schedule.observable_at_start(channel)]

    def published_during(self, step: int) -> list[tuple[pd.Timestamp, dict[str, float]]]:
        """Observations published during interval ``step``: ``(interval start, values)``.

        In time order; each dict holds the channels published for that interval
        (hourly channels at the end of their hour, so none at ``:15``-``:45``).
        """
        schedule: ObservationSchedule = self._schedule  # type: ignore[attr-defined]
        return [(self.time(pos), values) for pos, values in schedule.published_during(step)]

    def truth(self, channel: str) -> pd.Series:
        """History and run period of one channel (for the Oracle)."""
        return pd.concat([self.history[channel], self.frame[channel]])


def workload_from_utilisation(
    utilisation: np.ndarray | pd.Series, config: SiteConfig
) -> np.ndarray:
    """Work per interval [WU] of a site running at IT utilisation ``u`` [-] of its capacity.

    ``W = Δ · F(u · P_max)``: the work the site would do if it ran the observed
    utilisation profile (e.g. Google PDU power ÷ limit).
    """
    dc = config.datacenter
    it_mw = np.clip(np.asarray(utilisation, dtype=float), 0.0, 1.0) * dc.it_capacity_mw
    return 0.25 * dc.processing.rate_wu_per_h(it_mw, dc.it_capacity_mw)
