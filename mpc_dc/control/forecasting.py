"""Forecasts of a site's exogenous channels, as the MPC sees them.

Channels (:func:`channels`) are the columns of the run's exogenous frame the
controller forecasts, named as the frame names them (campus ``C``, model ``M``):

* per campus: ``price_usd_per_mwh[C]`` (the market price its tariff is built on),
  ``carbon_gco2_per_kwh[C]`` (where carbon has a price: without one it moves no
  decision, and the horizon holds zeros), ``renewable_cf[C]`` (campuses with a
  renewable) and ``workload_wu[C]`` (campuses with other IT);
* per model: ``tokens_per_s[M]`` (output-token demand).

One forecaster per channel, with the settings of its kind of quantity
(:data:`QUANTITY_OF`, :func:`forecasters.presets.make_for`), fitted on what is
published at the run start (:meth:`~mpc_dc.sim.exogenous.SiteExogenous.published_history`).
The channels fall into groups (:data:`GROUP_OF`: price, renewable, demand, other
load, carbon); each group may have a forecaster of its own
(``[controller.channels.<group>]``, :func:`choices`), e.g. the Oracle on every group
but one in the regret attribution (:mod:`mpc_dc.attribution`).
The ``oracle`` and ``noisy_oracle`` read the channel's truth (history + run + tail).
Under a retail tariff with ``controller.price_known_ahead`` the price forecaster is
wrapped in :class:`~forecasters.known_ahead.KnownAhead` (published day-ahead prices
are used as they are; not the oracles, which know them already).

:class:`ChannelForecasts` queues what the simulator publishes
(:meth:`ChannelForecasts.observe`) and hands it to the forecasters only when a
forecast is asked for, one array per channel: an hour's four quarters arrive at
once and cost one update (the lazy path of the MPC loop). Given a
:class:`ForecastErrors`, it scores every point forecast it hands out against the
truth (the run's forecast MAE per channel, a KPI); the forecasters never see it.

Faults (:mod:`mpc_dc.sim.faults`): a forecaster that raises (numerical trouble, or an
injected fault) gives the channel's last published value held flat, counted as
``forecaster_raised`` (a :class:`~forecasters.base.LookaheadError` is a defect and
is not caught); a stale forecast (injected) reuses the previous interval's forecasts
moved on by one interval, counted as ``stale_forecast_used``; a channel whose last
value is older than its publication rule allows (a feed outage) is forecast from that
value and counted as ``held_feed_value`` once per channel and interval.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecasters.base import BaseForecaster, LookaheadError, NotFittedError
from forecasters.known_ahead import KnownAhead
from forecasters.nowcast import nowcast_shift, nowcast_weights
from forecasters.presets import Quantity, make_for
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.site.config import Site
from mpc_dc.site.scenario import CHANNEL_GROUPS, ControllerSpec
from traces.grid import STEP

if TYPE_CHECKING:
    from mpc_dc.sim.faults import FaultInjector

logger = logging.getLogger(__name__)

QUANTITY_OF: Mapping[str, Quantity] = {
    "price_usd_per_mwh": "price",
    "carbon_gco2_per_kwh": "carbon",
    "renewable_cf": "capacity_factor",
    "workload_wu": "load",
    "tokens_per_s": "request_rate",
}
"""Kind of each channel's quantity: bounds and model settings (:mod:`forecasters.presets`)."""

GROUP_OF: Mapping[str, str] = {
    "price_usd_per_mwh": "price",
    "renewable_cf": "renewable",
    "tokens_per_s": "demand",
    "workload_wu": "other_load",
    "carbon_gco2_per_kwh": "carbon",
}
"""Channel group (:data:`~mpc_dc.site.scenario.CHANNEL_GROUPS`) of each channel's quantity."""

ORACLES = frozenset({"oracle", "noisy_oracle"})
"""Forecasters that read the truth instead of learning from observations."""

FORECAST_EXCEPTIONS: tuple[type[Exception], ...] = (RuntimeError, ValueError, ArithmeticError)
"""Exceptions of a forecaster call that fall back to the last published value (a
:class:`~forecasters.base.LookaheadError`, a ValueError, is re-raised: a defect)."""


def quantity(channel: str) -> str:
    """``price_usd_per_mwh`` of ``price_usd_per_mwh[north]``."""
    return channel.partition("[")[0]


def group(channel: str) -> str:
    """``price`` of ``price_usd_per_mwh[north]`` (:data:`GROUP_OF`)."""
    return GROUP_OF[quantity(channel)]


@dataclass(frozen=True)
class ForecasterChoice:
    """The forecaster of a group of channels.

    Attributes
    ----------
    name : str
        Forecaster name (:func:`forecasters.base.forecaster_names`).
    error_level, bias, autocorrelation : float [-]
        ``noisy_oracle``'s error (:class:`forecasters.oracle.NoisyOracle`); unused otherwise.
    """

    name: str
    error_level: float = 0.0
    bias: float = 0.0
    autocorrelation: float = 1.0


def choices(spec: ControllerSpec) -> dict[str, ForecasterChoice]:
    """The forecaster of every channel group under ``spec`` (``[controller]`` and its
    ``channels`` tables; the Oracle everywhere for ``perfect``)."""
    return {g: ForecasterChoice(spec.group_forecaster(g), *spec.noise(g))
            for g in CHANNEL_GROUPS}


def channels(site: Site, *, unpriced_carbon: bool = False) -> tuple[str, ...]:
    """The site's forecast channels (module docstring), campuses then models, in site order.

    ``unpriced_carbon``: list the carbon channels also when carbon has no price (the
    order in which :func:`make_forecasters` seeds the noisy oracle's channels).
    """
    carbon = unpriced_carbon or site.carbon_price_usd_per_t > 0
    out: list[str] = []
    for c in site.campuses:
        out.append(column("price_usd_per_mwh", c.name))
        if carbon:
            out.append(column("carbon_gco2_per_kwh", c.name))
        if c.renewable is not None:
            out.append(column("renewable_cf", c.name))
        if c.other_it is not None:
            out.append(column("workload_wu", c.name))
    out += [column("tokens_per_s", m) for m in site.models]
    return tuple(out)


def make_forecasters(
    exo: SiteExogenous,
    name: str,
    *,
    error_level: float = 0.0,
    seed: int = 0,
    price_known_ahead: bool = False,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    groups: Mapping[str, ForecasterChoice] | None = None,
) -> dict[str, BaseForecaster]:
    """One forecaster per channel of ``exo.site``, fitted on the history published at
    the run start (a channel without any published history is left unfitted: the
    first observation starts it).

    Parameters
    ----------
    exo : SiteExogenous
    name : str
        Forecaster name (:func:`forecasters.base.forecaster_names`) of every channel
        whose group ``groups`` does not name.
    error_level : float [-]
        ``noisy_oracle`` (as ``name``): error std at 24 h lead as a fraction of the
        series std.
    seed : int
        ``noisy_oracle``: channel ``k`` draws with seed ``1000 seed + k``.
    price_known_ahead : bool
        Wrap the price forecaster of every retail campus in :class:`KnownAhead`.
    params : Mapping[str, Mapping], optional
        Extra constructor arguments per channel (tests: faster statistical fits).
    groups : Mapping[str, ForecasterChoice], optional
        The forecaster of a channel group (:data:`GROUP_OF`), e.g. :func:`choices`.
    """
    site = exo.site
    retail = {column("price_usd_per_mwh", c.name) for c in site.campuses
              if c.grid.tariff.kind == "retail"}
    default = ForecasterChoice(name, error_level)
    out: dict[str, BaseForecaster] = {}
    wanted = channels(site)
    # Channel k keeps its seed whether or not carbon is forecast.
    for k, channel in enumerate(channels(site, unpriced_carbon=True)):
        if channel not in wanted:
            continue
        choice = (groups or {}).get(group(channel), default)
        extra: dict[str, Any] = dict((params or {}).get(channel, {}))
        if choice.name in ORACLES:
            extra["truth"] = exo.truth(channel)
        if choice.name == "noisy_oracle":
            extra.update(error_level=choice.error_level, bias=choice.bias,
                         autocorrelation=choice.autocorrelation, seed=seed * 1000 + k)
        forecaster = make_for(choice.name, QUANTITY_OF[quantity(channel)], **extra)
        if price_known_ahead and channel in retail and choice.name not in ORACLES:
            forecaster = KnownAhead(exo.truth(channel), forecaster, bounds=forecaster.bounds)
        history = exo.published_history(channel)
        if len(history):
            forecaster.fit(history.astype(float))
        out[channel] = forecaster
    return out


class ForecastErrors:
    """Absolute errors of the point forecasts a loop hands out, per channel.

    Each forecast is scored against the truth when it is made (bookkeeping only: the
    forecasters and the controller never see the truth through it). The MAE of a
    channel is the mean of ``|forecast - truth|`` over every (issue time, lead) the
    controller asked for, intervals with unknown truth (NaN) left out.

    Parameters
    ----------
    truth : Mapping[str, Series]
        Each channel's realized values on one contiguous 15-min grid
        (:meth:`~mpc_dc.sim.exogenous.SiteExogenous.truth`).
    """

    def __init__(self, truth: Mapping[str, pd.Series]) -> None:
        first = next(iter(truth.values())).index[0] if truth else pd.Timestamp(0, tz="UTC")
        self._start_ns = int(first.value)
        self._truth = {c: s.to_numpy(dtype=float) for c, s in truth.items()}
        self.abs_error = dict.fromkeys(self._truth, 0.0)
        self.points = dict.fromkeys(self._truth, 0)

    @classmethod
    def of(cls, exo: SiteExogenous) -> ForecastErrors:
        """Scorer of every channel of ``exo``'s site."""
        return cls({c: exo.truth(c) for c in channels(exo.site)})

    def add(self, channel: str, time: pd.Timestamp, values: np.ndarray) -> None:
        """Score the forecast ``values`` issued at ``time`` (target ``time + k STEP``)."""
        truth = self._truth.get(channel)
        if truth is None:
            return
        first = (int(time.value) - self._start_ns) // STEP.value
        seen = truth[first: first + len(values)]
        err = np.abs(values[: len(seen)] - seen)
        ok = np.isfinite(err)
        self.abs_error[channel] += float(err[ok].sum())
        self.points[channel] += int(ok.sum())

    def mae(self) -> dict[str, float]:
        """MAE per channel [channel units] (NaN for a channel never forecast)."""
        return {c: self.abs_error[c] / n if (n := self.points[c]) else float("nan")
                for c in self._truth}

    def mae_by_group(self) -> dict[str, float]:
        """MAE pooled over each group's channels [group units] (:data:`GROUP_OF`)."""
        totals: dict[str, list[float]] = {}
        for channel, n in self.points.items():
            row = totals.setdefault(group(channel), [0.0, 0.0])
            row[0] += self.abs_error[channel]
            row[1] += n
        return {g: err / n if n else float("nan") for g, (err, n) in totals.items()}


class ChannelForecasts:
    """Forecasters of a site's channels with the lazy update path of the loop.

    Parameters
    ----------
    forecasters : Mapping[str, BaseForecaster]
        One per channel (:func:`make_forecasters`).
    faults : Counter, optional
        Where the faults met are counted (module docstring); the policy's stats.
    injector : FaultInjector, optional
        Injects forecaster exceptions and stale forecasts (:mod:`mpc_dc.sim.faults`).
    errors : ForecastErrors, optional
        Scores every point forecast of :meth:`predict`.

    Attributes
    ----------
    published : callable, optional
        ``published(channel, time)``: start of the last interval of ``channel``
        published by ``time`` under its publication rule; set by the policy, it flags
        channels forecast from an older value (``held_feed_value``).
    """

    def __init__(self, forecasters: Mapping[str, BaseForecaster],
                 faults: Counter[str] | None = None,
                 injector: FaultInjector | None = None,
                 errors: ForecastErrors | None = None) -> None:
        self.forecasters = dict(forecasters)
        self.faults: Counter[str] = faults if faults is not None else Counter()
        self.errors = errors
        self._pending: dict[str, list[tuple[pd.Timestamp, float]]] = {
            c: [] for c in self.forecasters}
        self.injector = injector
        if injector is not None:
            injector.register_channels(tuple(self.forecasters))
        self.published: Callable[[str, pd.Timestamp], pd.Timestamp] | None = None
        self._last_seen: dict[str, pd.Timestamp | None] = {
            c: f.cutoff for c, f in self.forecasters.items()}
        self._last_value: dict[str, float] = {}
        # The latest interval observed in the run per channel and its value (NaN kept:
        # a missing value is no nowcast), for :meth:`nowcast`.
        self._latest: dict[str, tuple[pd.Timestamp, float]] = {}
        self._raised: set[str] = set()
        # Forecasts of the last fresh call per channel (and quantile level), reused
        # when the forecasts are stale.
        self._previous: dict[tuple[str, float | None], tuple[pd.Timestamp, np.ndarray]] = {}

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Queue the published values of the interval starting at ``time``."""
        for channel, value in values.items():
            rows = self._pending.get(channel)
            if rows is not None:
                rows.append((time, float(value)))
                self._last_seen[channel] = time
                latest = self._latest.get(channel)
                if latest is None or time >= latest[0]:
                    self._latest[channel] = (pd.Timestamp(time), float(value))
                if np.isfinite(value):
                    self._last_value[channel] = float(value)

    def flush(self) -> None:
        """Hand every queued value to its forecaster (one update per channel)."""
        for channel, rows in self._pending.items():
            if rows:
                _feed(self.forecasters[channel], rows)
                rows.clear()

    def predict(self, time: pd.Timestamp, steps: int,
                only: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Point forecasts for ``steps`` intervals from ``time`` per channel (``only``:
        these channels). A non-finite value is counted and replaced by the last finite
        one before it (0 when none); a forecaster that has seen nothing predicts 0;
        faults as in the module docstring."""
        stale = self.injector is not None and self.injector.stale(time)
        if not stale:
            self.flush()
        out: dict[str, np.ndarray] = {}
        for channel in only if only is not None else self.forecasters:
            values = self._point(channel, time, steps, stale)
            if self.errors is not None:
                self.errors.add(channel, time, values)
            out[channel] = values
        return out

    def _point(self, channel: str, time: pd.Timestamp, steps: int, stale: bool
               ) -> np.ndarray:
        """The point forecast of one channel that :meth:`predict` hands out."""
        forecaster = self.forecasters[channel]
        self._flag_held(channel, time)
        if forecaster.cutoff is None:
            return np.zeros(steps)
        reused = self._reuse((channel, None), time, steps) if stale else None
        if reused is not None:
            return reused
        values = self._call(channel, time, steps,
                            partial(forecaster.predict_values, time, steps))
        if not np.all(np.isfinite(values)):
            self.faults["nan_forecast"] += 1
            logger.warning("non-finite %s forecast at %s; holding the last finite value",
                           channel, time)
            values = pd.Series(values).ffill().fillna(0.0).to_numpy()
        if self.injector is not None:
            self._previous[channel, None] = (time, values)
        return values

    def nowcast(self, channel: str, time: pd.Timestamp, point: np.ndarray,
                tau_steps: float) -> np.ndarray:
        """What the nowcast adds to ``channel``'s forecast ``point`` (n,) issued at
        ``time`` and to each of its quantiles [channel units]: the latest value observed
        in the run blended in with weights ``exp(−d/τ)``, ``d`` from the end of its
        interval to the end of each target (:mod:`forecasters.nowcast`). Zeros for
        ``tau_steps`` = 0 [intervals], before the first observation and when the latest
        value is missing."""
        latest = self._latest.get(channel)
        if tau_steps <= 0 or latest is None:
            return np.zeros(len(point))
        step_s = STEP.total_seconds()
        # from the end of the observed interval to the end of the first target
        first = (time - latest[0]).total_seconds()
        weights = nowcast_weights(max(first, 0.0), len(point), tau_steps * step_s, step_s)
        return nowcast_shift(point, latest[1], weights)

    def quantile(self, channel: str, time: pd.Timestamp, steps: int, level: float
                 ) -> np.ndarray:
        """The ``level`` quantile forecast of one channel; ``+inf`` where the
        forecaster's spread is not known yet (too little history), NaN replaced as in
        :meth:`predict` (faults too)."""
        stale = self.injector is not None and self.injector.stale(time)
        if not stale:
            self.flush()
        forecaster = self.forecasters[channel]
        if forecaster.cutoff is None:
            return np.full(steps, np.inf)
        reused = self._reuse((channel, level), time, steps) if stale else None
        if reused is not None:
            return reused
        values = self._call(channel, time, steps, lambda: np.asarray(
            forecaster.quantile_values(time, steps, [level])[:, 0], dtype=float))
        if np.isnan(values).any():
            self.faults["nan_forecast"] += 1
            values = pd.Series(values).ffill().fillna(np.inf).to_numpy()
        if self.injector is not None:
            self._previous[channel, level] = (time, values)
        return values

    def _call(self, channel: str, time: pd.Timestamp, steps: int,
              forecast: Callable[[], np.ndarray]) -> np.ndarray:
        """``forecast()`` of one channel, or its last published value held flat when
        the forecaster raises (counted, logged)."""
        try:
            if self.injector is not None:
                self.injector.forecast(channel, time)
            return forecast()
        except LookaheadError:
            raise
        except FORECAST_EXCEPTIONS as err:
            self.faults["forecaster_raised"] += 1
            held = self.last_value(channel)
            # The first of a channel is a warning; the rest are counted (KPIs) and logged
            # at info level, so that a flaky forecaster does not flood the output.
            first = channel not in self._raised
            self._raised.add(channel)
            logger.log(logging.WARNING if first else logging.INFO,
                       "%s forecaster raised %s at %s (%s); holding its last published value "
                       "%.6g%s", channel, type(err).__name__, time, err, held,
                       " (further ones at info level)" if first else "")
            return np.full(steps, held)

    def last_value(self, channel: str) -> float:
        """The last finite value of ``channel`` published (its history's when nothing
        was published in the run; 0 when none).

        Of the values delivered to this controller, not the schedule's
        (:meth:`~mpc_dc.sim.publication.ObservationSchedule.last_published_values`, the
        engine's): a feed outage withholds values for good (:mod:`mpc_dc.sim.faults`),
        so the schedule would hold one the controller never received."""
        if channel in self._last_value:
            return self._last_value[channel]
        try:
            seen = self.forecasters[channel].observations
        except NotFittedError:
            return 0.0
        finite = seen[np.isfinite(seen)]
        return float(finite[-1]) if finite.size else 0.0

    def _reuse(self, key: tuple[str, float | None], time: pd.Timestamp,
               steps: int) -> np.ndarray | None:
        """The previous forecast of ``key`` moved on to ``time`` (its last value held
        past its end), counted; None when there is none."""
        previous = self._previous.get(key)
        if previous is None or previous[0] >= time:
            return None
        shift = int((time - previous[0]) // STEP)
        old = previous[1][shift: shift + steps]
        if old.size == 0:
            return None
        self.faults["stale_forecast_used"] += 1
        return np.concatenate([old, np.full(steps - old.size, old[-1])])

    def _flag_held(self, channel: str, time: pd.Timestamp) -> None:
        """Count ``channel`` as forecast from a held value when its last value is
        older than its publication rule allows at ``time``."""
        if self.published is None:
            return
        seen = self._last_seen.get(channel)
        if seen is not None and seen < self.published(channel, time):
            self.faults["held_feed_value"] += 1


def _feed(forecaster: BaseForecaster, rows: list[tuple[pd.Timestamp, float]]) -> None:
    """Give ``forecaster`` the published ``rows`` (time order): fit on them when it has
    seen nothing, else append what follows its cutoff (a gap in between is fed as NaN:
    unobserved)."""
    cutoff = forecaster.cutoff
    if cutoff is not None:
        rows = [r for r in rows if r[0] > cutoff]
        if not rows:
            return
    first, last = rows[0][0], rows[-1][0]
    consecutive = last - first == (len(rows) - 1) * STEP
    if cutoff is not None and consecutive and first == cutoff + STEP:
        # One step's value, or an hour's four quarters at once: no index needed.
        forecaster.update_values(first, np.array([v for _, v in rows], dtype=float))
        return
    start = first if cutoff is None else cutoff + STEP
    index = pd.date_range(start, last, freq=STEP, name="interval_start_utc")
    values = np.full(len(index), np.nan)
    values[index.get_indexer(pd.DatetimeIndex([t for t, _ in rows]))] = [v for _, v in rows]
    series = pd.Series(values, index=index)
    if cutoff is None:
        forecaster.fit(series)
    else:
        forecaster.update(series)
