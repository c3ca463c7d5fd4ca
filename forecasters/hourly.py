"""Shared machinery of the models that run at hourly resolution inside.

* The 15-min observations are averaged over *complete* UTC hours (``nanmean`` of the
  four quarter-hours; NaN when all four are missing). An hour enters the model once
  its last quarter (``hh:45``) is observed, i.e. every 4 steps; the quarters of an
  incomplete hour are not used.
* Parameters are re-estimated every ``refit_every_hours`` on the last
  ``fit_window_days``; between refits new hours are absorbed without re-estimating
  (:meth:`HourlyForecaster._absorb`).
* The hourly forecast is held over its four quarter-hours and cached until the next
  hour completes (or a known-ahead regressor is published or fed), so the other
  steps of an hour cost a table lookup.

Regressors (the hour's columns of the model's design, :meth:`HourlyForecaster.regressors`):

* ``holidays=`` a country code: the holiday indicator of the hour's local date
  (:mod:`forecasters.calendar`), a function of the timestamp;
* ``regressors=`` names of known-ahead series (e.g. ``"lmp_da"``, the day-ahead price
  of the same node), fed with ``update_known`` and read only where published at the
  issue time (:meth:`~forecasters.base.BaseForecaster.known_values`). An hour whose
  value is not yet published takes the latest published value of the same hour on an
  earlier day (up to a week back): yesterday's day-ahead price for tomorrow's hour
  before tomorrow's prices are out.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecasters.base import (
    BaseForecaster,
    Bounds,
    InsufficientHistoryError,
    Release,
    _GrowingArray,
)
from forecasters.calendar import holiday_flags
from forecasters.memo import grid, ns
from traces.grid import NYISO_DA_RELEASE, STEP

HOUR = pd.Timedelta(hours=1)
QUARTERS_PER_HOUR = 4
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
Transform = Literal["none", "log1p"]
MIN_CACHE_HOURS = 26
"""Hours forecast at least per cache fill: a day plus the hour a 15-min issue time can
be into, plus one."""
FALLBACK_DAYS = 7
"""Earlier days searched for the same hour of an unpublished regressor value."""


class HourlyForecaster(BaseForecaster):
    """Hourly aggregation, refit schedule, cache and regressors (module docstring).

    Parameters
    ----------
    bounds, max_stale_steps
        See :class:`~forecasters.base.BaseForecaster`.
    transform : {"none", "log1p"}
        Model ``log(1 + y)`` for non-negative, bursty series (request counts); the
        point forecast is then the back-transformed median.
    fit_window_days : float [d]
        History used for each (re)fit.
    refit_every_hours : int [h]
        Parameter re-estimation period.
    min_fit_hours : int [h]
        Fewer complete, observed hours than this in the fit window is an error.
    holidays : str, optional
        Country code (``holidays`` package, e.g. ``"US"``): add the holiday indicator.
    holiday_tz : str
        Time zone of the holiday calendar's dates.
    regressors : sequence of str
        Known-ahead regressors to read (fed with ``update_known``).
    release : Release
        When the regressors' values are published (default: NYISO day-ahead, 11:00
        Eastern the day before).
    """

    name = "hourly"

    def __init__(
        self,
        bounds: Bounds | None = None,
        max_stale_steps: int | None = None,
        transform: Transform = "none",
        fit_window_days: float = 28.0,
        refit_every_hours: int = 336,
        min_fit_hours: int = 72,
        holidays: str | None = None,
        holiday_tz: str = "America/New_York",
        regressors: Sequence[str] = (),
        release: Release = NYISO_DA_RELEASE,
    ) -> None:
        super().__init__(bounds=bounds, max_stale_steps=max_stale_steps)
        if transform not in ("none", "log1p"):
            raise ValueError(f"{self.name}: transform must be 'none' or 'log1p', got {transform!r}")
        if refit_every_hours < 1:
            raise ValueError(f"{self.name}: refit_every_hours must be >= 1")
        self.transform: Transform = transform
        self.fit_window_days = float(fit_window_days)
        self.refit_every_hours = int(refit_every_hours)
        self.min_fit_hours = int(min_fit_hours)
        self.holidays = holidays
        self.holiday_tz = holiday_tz
        if holidays is not None:
            holiday_flags(pd.DatetimeIndex([pd.Timestamp("2022-01-01", tz="UTC")]), holidays,
                          holiday_tz)  # an unknown country code fails here, not mid-run
        self.regressor_names = tuple(str(r) for r in regressors)
        self.release = release
        self.known_ahead = {r: release for r in self.regressor_names}
        self.n_refits = 0
        self._cache: tuple[tuple[int, ...], np.ndarray] | None = None

    # ------------------------------------------------------------ hours
    def _hourly_from(self, first_hour: int, last_hour: int) -> np.ndarray:
        """Model-space values of complete hours ``[first_hour, last_hour)``."""
        obs = self.observations
        lo = self._hour0 + QUARTERS_PER_HOUR * first_hour
        hi = self._hour0 + QUARTERS_PER_HOUR * last_hour
        hourly = _hour_means(obs[lo:hi])
        if self.transform == "log1p":
            hourly = np.log1p(np.maximum(hourly, 0.0))
        return hourly

    def _n_complete_hours(self) -> int:
        return max(0, (len(self.observations) - self._hour0) // QUARTERS_PER_HOUR)

    def hour_start(self, hour: int) -> pd.Timestamp:
        """UTC start of model hour number ``hour``."""
        return self._hour0_time + hour * HOUR

    def _hour_starts(self, first_hour: int, n: int) -> pd.DatetimeIndex:
        # Shared by the channels that ask for the same hours (forecasters.memo).
        start = self.hour_start(first_hour)
        return grid(int(start.value), n, HOUR.value, start.unit)

    @property
    def n_hours(self) -> int:
        """Complete hours absorbed so far."""
        return len(self._hourly)

    def _min_history_steps(self) -> int:
        return QUARTERS_PER_HOUR * (self.min_fit_hours + 1)

    # ------------------------------------------------------- regressors
    @property
    def n_regressors(self) -> int:
        """Columns of :meth:`regressors`."""
        return (self.holidays is not None) + len(self.regressor_names)

    def regressors(self, first_hour: int, n: int, issue: pd.Timestamp) -> np.ndarray:
        """Calendar and known-ahead regressors of hours ``[first_hour, first_hour + n)`` as
        known at ``issue``, shape (n, :attr:`n_regressors`).

        Raises
        ------
        ValueError
            If a known-ahead regressor has no published value at all near those hours
            (it was never fed).
        """
        cols: list[np.ndarray] = []
        if self.holidays is not None:
            cols.append(holiday_flags(self._hour_starts(first_hour, n), self.holidays,
                                      self.holiday_tz))
        for name in self.regressor_names:
            cols.append(self._known_hourly(name, first_hour, n, issue))
        return np.column_stack(cols) if cols else np.empty((n, 0))

    def _known_hourly(self, name: str, first_hour: int, n: int, issue: pd.Timestamp) -> np.ndarray:
        """Hourly means of regressor ``name`` published at ``issue``; an unpublished hour
        takes the same hour of the latest earlier day published (module docstring)."""
        back = FALLBACK_DAYS * HOURS_PER_DAY
        quarters = pd.date_range(
            self.hour_start(first_hour - back), periods=QUARTERS_PER_HOUR * (n + back), freq=STEP
        )
        hourly = _hour_means(self.known_values(name, issue, quarters))
        out = hourly[back:].copy()
        for days in range(1, FALLBACK_DAYS + 1):
            missing = np.isnan(out)
            if not missing.any():
                break
            shift = days * HOURS_PER_DAY
            earlier = hourly[back - shift : back - shift + n]
            out[missing] = earlier[missing]
        if np.isnan(out).any():
            valid = ~np.isnan(out)
            if not valid.any():
                raise ValueError(
                    f"{self.name}: known-ahead regressor '{name}' has no value published by "
                    f"{issue} for the hours from {self.hour_start(first_hour)}; feed it with "
                    f"update_known('{name}', ...)"
                )
            # Hold the nearest published value over the rest (a feed that stopped).
            out = pd.Series(out).ffill().bfill().to_numpy()
        return out

    def _known_signature(self, issue: pd.Timestamp) -> tuple[int, ...]:
        """What the regressors' publication state at ``issue`` is (part of the cache key)."""
        if not self.regressor_names:
            return ()
        return (self._known_feeds, int(self.release.published_before(issue).value))

    def _after_known(self, name: str) -> None:
        self._cache = None

    # ---------------------------------------------------------- fitting
    def _after_fit(self) -> None:
        self._hour0 = (-(self.start.minute // 15)) % QUARTERS_PER_HOUR
        self._hour0_time = self.start + self._hour0 * STEP
        self._hourly = _GrowingArray(self._hourly_from(0, self._n_complete_hours()))
        self.n_refits = 0
        self._refit()

    def _now(self) -> pd.Timestamp:
        """The time the newest complete hour is known (the end of that hour)."""
        return self.hour_start(len(self._hourly))

    def _refit(self) -> None:
        n_hours = len(self._hourly)
        window = round(self.fit_window_days * HOURS_PER_DAY)
        first = max(0, n_hours - window)
        endog = self._hourly.values[first:n_hours]
        if int(np.isfinite(endog).sum()) < self.min_fit_hours:
            raise InsufficientHistoryError(self.name, self.min_fit_hours,
                                           int(np.isfinite(endog).sum()), self.cutoff)
        self._estimate(endog, first)
        self._fit_first_hour = first
        self._hours_since_fit = 0
        self.n_refits += 1
        self._cache = None

    def _after_update(self, n_before: int) -> None:
        n_old = len(self._hourly)
        n_new = self._n_complete_hours()
        if n_new <= n_old:
            return
        self._hourly.append(self._hourly_from(n_old, n_new))
        self._cache = None
        if self._hours_since_fit + (n_new - n_old) >= self.refit_every_hours:
            self._refit()
            return
        self._hours_since_fit += n_new - n_old
        self._absorb(self._hourly.values[n_old:n_new], n_old)

    # ------------------------------------------------------- forecasting
    def forecast_hours(self, n: int, issue: pd.Timestamp | None = None) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
        """Model-space mean and standard error of the next ``n`` hours (issued at ``issue``,
        default the end of the newest complete hour)."""
        return self._forecast(n, self._now() if issue is None else issue)

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        n_hours = len(self._hourly)
        hour_pos = (ns(targets) - int(self._hour0_time.value)) // HOUR.value
        steps = (hour_pos - (n_hours - 1)).astype(np.int64)
        need = int(steps.max())
        # ``targets[0]`` boxes a Timestamp (~7 µs): only the regressors' publication
        # state and a table to build need it, not the hits of a model without regressors.
        key = ((n_hours, *self._known_signature(targets[0])) if self.regressor_names
               else (n_hours,))
        if self._cache is None or self._cache[0] != key or len(self._cache[1]) < need:
            loc, scale = self._forecast(max(need, MIN_CACHE_HOURS), targets[0])
            self._cache = (key, np.column_stack([loc, scale]))
        table = self._cache[1]
        return table[steps - 1, 0].copy(), table[steps - 1, 1].copy()

    def _to_output(self, values: np.ndarray) -> np.ndarray:
        return np.expm1(values) if self.transform == "log1p" else values

    # ------------------------------------------------------ model hooks
    @abstractmethod
    def _estimate(self, endog: np.ndarray, first_hour: int) -> None:
        """Estimate the model on ``endog`` (model-space hours from ``first_hour``)."""

    @abstractmethod
    def _absorb(self, endog: np.ndarray, first_hour: int) -> None:
        """Take in new hours from ``first_hour`` with the current parameters."""

    @abstractmethod
    def _forecast(self, n: int, issue: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        """Model-space mean and standard error of the ``n`` hours after the newest one."""

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "transform": self.transform,
            "fit_window_days": self.fit_window_days,
            "refit_every_hours": self.refit_every_hours,
            "holidays": self.holidays,
            "regressors": self.regressor_names,
        }


def _hour_means(quarters: np.ndarray) -> np.ndarray:
    """Mean of each block of four quarter-hours ignoring NaN (NaN if all four are)."""
    block = np.asarray(quarters, dtype=float).reshape(-1, QUARTERS_PER_HOUR)
    counts = (~np.isnan(block)).sum(axis=1)
    sums = np.nansum(block, axis=1)
    out = np.full(len(block), np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out
