"""Forecasts of a site's exogenous channels, as the MPC sees them.

Channels (:func:`channels`) are the columns of the run's exogenous frame the
controller forecasts, named as the frame names them (campus ``C``, model ``M``):

* per campus: ``price_usd_per_mwh[C]`` (the market price its tariff is built on),
  ``carbon_gco2_per_kwh[C]``, ``renewable_cf[C]`` (campuses with a renewable) and
  ``workload_wu[C]`` (campuses with other IT);
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
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forecasters.base import BaseForecaster
from forecasters.known_ahead import KnownAhead
from forecasters.presets import Quantity, make_for
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.site.config import Site
from mpc_dc.site.scenario import CHANNEL_GROUPS, ControllerSpec
from traces.grid import STEP

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


def channels(site: Site) -> tuple[str, ...]:
    """The site's forecast channels (module docstring), campuses then models, in site order."""
    out: list[str] = []
    for c in site.campuses:
        out += [column("price_usd_per_mwh", c.name), column("carbon_gco2_per_kwh", c.name)]
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
    for k, channel in enumerate(channels(site)):
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
        Where non-finite forecasts are counted (``nan_forecast``); the policy's stats.
    errors : ForecastErrors, optional
        Scores every point forecast of :meth:`predict`.
    """

    def __init__(self, forecasters: Mapping[str, BaseForecaster],
                 faults: Counter[str] | None = None,
                 errors: ForecastErrors | None = None) -> None:
        self.forecasters = dict(forecasters)
        self.faults: Counter[str] = faults if faults is not None else Counter()
        self.errors = errors
        self._pending: dict[str, list[tuple[pd.Timestamp, float]]] = {
            c: [] for c in self.forecasters}

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Queue the published values of the interval starting at ``time``."""
        for channel, value in values.items():
            rows = self._pending.get(channel)
            if rows is not None:
                rows.append((time, float(value)))

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
        one before it (0 when none); a forecaster that has seen nothing predicts 0."""
        self.flush()
        out: dict[str, np.ndarray] = {}
        for channel in only if only is not None else self.forecasters:
            forecaster = self.forecasters[channel]
            values: np.ndarray = (np.zeros(steps) if forecaster.cutoff is None
                                  else forecaster.predict_values(time, steps))
            if not np.all(np.isfinite(values)):
                self.faults["nan_forecast"] += 1
                logger.warning("non-finite %s forecast at %s; holding the last finite value",
                               channel, time)
                values = pd.Series(values).ffill().fillna(0.0).to_numpy()
            if self.errors is not None:
                self.errors.add(channel, time, values)
            out[channel] = values
        return out

    def quantile(self, channel: str, time: pd.Timestamp, steps: int, level: float
                 ) -> np.ndarray:
        """The ``level`` quantile forecast of one channel; ``+inf`` where the
        forecaster's spread is not known yet (too little history), NaN replaced as in
        :meth:`predict`."""
        self.flush()
        forecaster = self.forecasters[channel]
        if forecaster.cutoff is None:
            return np.full(steps, np.inf)
        bands = forecaster.predict_quantiles(time, steps, [level])
        values = np.asarray(bands.iloc[:, 0], dtype=float)
        if np.isnan(values).any():
            self.faults["nan_forecast"] += 1
            values = pd.Series(values).ffill().fillna(np.inf).to_numpy()
        return values


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
