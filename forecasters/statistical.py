"""Statistical forecasters from statsmodels: SARIMAX with Fourier regressors, and ETS.

Both run at hourly resolution inside (docs/forecasters.md explains why):

* the 15-min observations are averaged over *complete* UTC hours (``nanmean`` of the
  four quarter-hours; NaN when all four are missing, which the Kalman filter treats as
  unobserved). An hour enters the model once its last quarter (``hh:45``) is observed,
  i.e. every 4 steps; the quarters of an incomplete hour are not used;
* between refits a new hour is absorbed by the Kalman filter without re-estimating
  parameters (SARIMAX: :class:`forecasters.kalman.KalmanFilter` on the fitted
  matrices, verified against statsmodels' re-filter; ETS: ``results.append``, see
  below);
* the hourly forecast is held over its four quarter-hours, and it is cached until
  the next hour completes, so the three other steps of an hour cost nothing;
* parameters are re-estimated every ``refit_every_hours`` (default 336 = 14 days) on
  the last ``fit_window_days`` (default 28), warm-started from the previous estimate.

Regressors of SARIMAX are Fourier terms of the hour of the day and of the hour of
the week of the *target* hour (its midpoint, UTC); they are functions of the
timestamp only, so they carry no information from the future.

statsmodels pitfalls (0.15.0), both checked by tests against a full re-filter:
SARIMAX with ``concentrate_scale=True`` and chained ``extend`` gives wrong forecast
variances (we keep ``concentrate_scale=False``); the state-space
``ExponentialSmoothing`` with chained ``extend`` gives wrong seasonal forecasts
(its initial states are re-applied), so ETS uses ``append`` (exact, re-filters the
window: cost grows with the window, bounded by the refit schedule).
"""

from __future__ import annotations

import logging
import warnings
from abc import abstractmethod
from typing import Any, Literal

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning
from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing
from statsmodels.tsa.statespace.mlemodel import MLEResults
from statsmodels.tsa.statespace.sarimax import SARIMAX
from threadpoolctl import threadpool_limits

from forecasters.base import BaseForecaster, Bounds, _GrowingArray, register_forecaster
from forecasters.kalman import KalmanFilter
from traces.grid import STEP

logger = logging.getLogger(__name__)

HOUR = pd.Timedelta(hours=1)
QUARTERS_PER_HOUR = 4
HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
Transform = Literal["none", "log1p"]
_MIN_CACHE_HOURS = 26


def fourier_terms(
    hour_starts: pd.DatetimeIndex, daily_harmonics: int, weekly_harmonics: int
) -> np.ndarray:
    """Fourier regressors of hour-of-day and hour-of-week at each hour's midpoint (UTC).

    Returns
    -------
    ndarray, shape (n, 2 * (daily_harmonics + weekly_harmonics)) [-]
        ``sin, cos`` of ``2 pi k x`` for ``x`` the day and week phase in ``[0, 1)``.
    """
    hours = (hour_starts.as_unit("ns").asi8 // HOUR.value).astype(float) + 0.5
    # 1970-01-01 was a Thursday: shift so that the weekly phase starts on Monday 00:00.
    day_phase = (hours % HOURS_PER_DAY) / HOURS_PER_DAY
    week_phase = ((hours + 3 * HOURS_PER_DAY) % HOURS_PER_WEEK) / HOURS_PER_WEEK
    cols: list[np.ndarray] = []
    for phase, harmonics in ((day_phase, daily_harmonics), (week_phase, weekly_harmonics)):
        for k in range(1, harmonics + 1):
            cols += [np.sin(2 * np.pi * k * phase), np.cos(2 * np.pi * k * phase)]
    if not cols:
        return np.empty((len(hour_starts), 0))
    return np.column_stack(cols)


class HourlyStateSpaceForecaster(BaseForecaster):
    """Shared machinery of the hourly statsmodels forecasters (see module docstring).

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
        Parameter re-estimation period; between refits only the filter runs.
    maxiter : int
        Optimiser iterations per fit (refits are warm-started).
    min_fit_hours : int [h]
        Fewer complete, observed hours than this in the fit window is an error.
    """

    name = "hourly_state_space"

    def __init__(
        self,
        bounds: Bounds | None = None,
        max_stale_steps: int | None = None,
        transform: Transform = "none",
        fit_window_days: float = 28.0,
        refit_every_hours: int = 336,
        maxiter: int = 50,
        min_fit_hours: int = 72,
    ) -> None:
        super().__init__(bounds=bounds, max_stale_steps=max_stale_steps)
        if transform not in ("none", "log1p"):
            raise ValueError(f"{self.name}: transform must be 'none' or 'log1p', got {transform!r}")
        if refit_every_hours < 1:
            raise ValueError(f"{self.name}: refit_every_hours must be >= 1")
        self.transform: Transform = transform
        self.fit_window_days = float(fit_window_days)
        self.refit_every_hours = int(refit_every_hours)
        self.maxiter = int(maxiter)
        self.min_fit_hours = int(min_fit_hours)
        self.n_refits = 0
        self._res: MLEResults | None = None
        self._cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------ hours
    def _hourly_from(self, first_hour: int, last_hour: int) -> np.ndarray:
        """Model-space values of complete hours ``[first_hour, last_hour)``."""
        obs = self.observations
        lo = self._hour0 + QUARTERS_PER_HOUR * first_hour
        hi = self._hour0 + QUARTERS_PER_HOUR * last_hour
        block = obs[lo:hi].reshape(-1, QUARTERS_PER_HOUR)
        counts = (~np.isnan(block)).sum(axis=1)
        sums = np.nansum(block, axis=1)
        hourly = np.full(len(block), np.nan)
        np.divide(sums, counts, out=hourly, where=counts > 0)
        if self.transform == "log1p":
            hourly = np.log1p(np.maximum(hourly, 0.0))
        return hourly

    def _n_complete_hours(self) -> int:
        return max(0, (len(self.observations) - self._hour0) // QUARTERS_PER_HOUR)

    def hour_start(self, hour: int) -> pd.Timestamp:
        """UTC start of model hour number ``hour``."""
        return self._hour0_time + hour * HOUR

    def _hour_starts(self, first_hour: int, n: int) -> pd.DatetimeIndex:
        return pd.date_range(self.hour_start(first_hour), periods=n, freq=HOUR)

    # ---------------------------------------------------------- fitting
    def _after_fit(self) -> None:
        self._hour0 = (-(self.start.minute // 15)) % QUARTERS_PER_HOUR
        self._hour0_time = self.start + self._hour0 * STEP
        self._hourly = _GrowingArray(self._hourly_from(0, self._n_complete_hours()))
        self._res = None
        self.n_refits = 0
        self._refit()

    def _refit(self) -> None:
        n_hours = len(self._hourly)
        window = round(self.fit_window_days * HOURS_PER_DAY)
        first = max(0, n_hours - window)
        endog = self._hourly.values[first:n_hours]
        if int(np.isfinite(endog).sum()) < self.min_fit_hours:
            raise ValueError(
                f"{self.name}: needs at least {self.min_fit_hours} observed complete hours to "
                f"fit, got {int(np.isfinite(endog).sum())} (history up to {self.cutoff})"
            )
        previous = self._res.params if self._res is not None else None
        # One BLAS thread: the state-space matrices are tiny, and multi-threaded
        # OpenBLAS made each likelihood evaluation 60x slower here (36 ms vs 0.6 ms).
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            # Non-converged or poorly-started optimisations still give usable filters;
            # they are counted in the log rather than raised.
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", EstimationWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            model = self._build_model(endog, first)
            self._res = model.fit(
                disp=False, maxiter=self.maxiter, start_params=self._start_params(previous)
            )
        logger.debug(
            "%s refit on hours [%d, %d): params %s",
            self.name,
            first,
            n_hours,
            np.round(np.asarray(self._res.params), 4),
        )
        self._fit_first_hour = first
        self._hours_since_fit = 0
        self.n_refits += 1
        self._cache = None
        self._after_refit()

    def _after_refit(self) -> None:
        """Hook: the model was (re)estimated; ``self._res`` holds the new results."""

    @property
    def n_hours(self) -> int:
        """Complete hours absorbed so far."""
        return len(self._hourly)

    def forecast_hours(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Model-space mean and standard error of the next ``n`` hours."""
        return self._forecast(n, len(self._hourly))

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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self._res = self._absorb(self._hourly.values[n_old:n_new], n_old)

    def refiltered(self) -> MLEResults:
        """The current parameters re-filtered on every hour since the last fit.

        Incremental updates must give the same forecasts as this (tested).
        """
        if self._res is None:
            raise RuntimeError(f"{self.name}: not fitted")
        endog = self._hourly.values[self._fit_first_hour :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self._build_model(endog, self._fit_first_hour).filter(self._res.params)

    @property
    def results(self) -> MLEResults:
        """The statsmodels results object currently used to forecast."""
        if self._res is None:
            raise RuntimeError(f"{self.name}: not fitted")
        return self._res

    # ------------------------------------------------------- forecasting
    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        n_hours = len(self._hourly)
        hour_pos = (targets.as_unit("ns").asi8 - int(self._hour0_time.value)) // HOUR.value
        steps = (hour_pos - (n_hours - 1)).astype(np.int64)
        need = int(steps.max())
        if self._cache is None or self._cache[0] != n_hours or len(self._cache[1]) < need:
            loc, scale = self._forecast(max(need, _MIN_CACHE_HOURS), n_hours)
            self._cache = (n_hours, np.column_stack([loc, scale]))
        table = self._cache[1]
        return table[steps - 1, 0].copy(), table[steps - 1, 1].copy()

    def _forecast(self, n: int, first_hour: int) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fc = self.results.get_forecast(n, **self._exog_kwargs(first_hour, n))
            return np.asarray(fc.predicted_mean, dtype=float), np.asarray(fc.se_mean, dtype=float)

    def _to_output(self, values: np.ndarray) -> np.ndarray:
        return np.expm1(values) if self.transform == "log1p" else values

    # ------------------------------------------------------ model hooks
    @abstractmethod
    def _build_model(self, endog: np.ndarray, first_hour: int) -> Any:
        """A statsmodels model on ``endog`` (hours from ``first_hour``)."""

    @abstractmethod
    def _absorb(self, endog: np.ndarray, first_hour: int) -> MLEResults:
        """Results updated with new hours from ``first_hour`` (same parameters)."""

    def _start_params(self, previous: Any) -> Any:
        return previous

    def _exog_kwargs(self, first_hour: int, n: int) -> dict[str, Any]:
        return {}

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "transform": self.transform,
            "fit_window_days": self.fit_window_days,
            "refit_every_hours": self.refit_every_hours,
            "maxiter": self.maxiter,
        }


class SarimaxForecaster(HourlyStateSpaceForecaster):
    """Hourly SARIMAX(p, d, q) with a constant and Fourier regressors of the target hour.

    Parameters
    ----------
    order : tuple of int
        ``(p, d, q)``; default ``(2, 0, 1)``.
    daily_harmonics, weekly_harmonics : int
        Fourier pairs of the 24-h and 168-h cycles (0 disables a cycle).
    **kwargs
        See :class:`HourlyStateSpaceForecaster`.
    """

    name = "sarimax"

    def __init__(
        self,
        order: tuple[int, int, int] = (2, 0, 1),
        daily_harmonics: int = 3,
        weekly_harmonics: int = 2,
        **kwargs: Any,
    ) -> None:
        self.order = tuple(int(v) for v in order)
        self.daily_harmonics = int(daily_harmonics)
        self.weekly_harmonics = int(weekly_harmonics)
        super().__init__(**kwargs)

    def _exog(self, first_hour: int, n: int) -> np.ndarray | None:
        if self.daily_harmonics == 0 and self.weekly_harmonics == 0:
            return None
        return fourier_terms(
            self._hour_starts(first_hour, n), self.daily_harmonics, self.weekly_harmonics
        )

    def _exog_kwargs(self, first_hour: int, n: int) -> dict[str, Any]:
        exog = self._exog(first_hour, n)
        return {} if exog is None else {"exog": exog}

    def _build_model(self, endog: np.ndarray, first_hour: int) -> SARIMAX:
        return SARIMAX(
            endog,
            exog=self._exog(first_hour, len(endog)),
            order=self.order,
            trend="c" if self.order[1] == 0 else "n",
            concentrate_scale=False,
        )

    def _after_refit(self) -> None:
        self._kf = KalmanFilter.from_results(self.results)

    def _absorb(self, endog: np.ndarray, first_hour: int) -> MLEResults:
        # Between refits the parameters are fixed: our filter absorbs the hour in
        # microseconds where ``results.extend`` costs milliseconds (module docstring).
        self._kf.update(endog, self._exog(first_hour, len(endog)))
        return self.results

    def _forecast(self, n: int, first_hour: int) -> tuple[np.ndarray, np.ndarray]:
        return self._kf.forecast(n, self._exog(first_hour, n))

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "order": self.order,
            "daily_harmonics": self.daily_harmonics,
            "weekly_harmonics": self.weekly_harmonics,
        }


class EtsForecaster(HourlyStateSpaceForecaster):
    """Hourly additive exponential smoothing ETS(A, N, A) with a 24-h season.

    Parameters
    ----------
    seasonal_period_hours : int [h]
        Season length; default 24.
    damped_trend : bool
        Add a damped additive trend (ETS(A, Ad, A)).
    **kwargs
        See :class:`HourlyStateSpaceForecaster`.
    """

    name = "ets"

    def __init__(
        self, seasonal_period_hours: int = HOURS_PER_DAY, damped_trend: bool = False, **kwargs: Any
    ) -> None:
        self.seasonal_period_hours = int(seasonal_period_hours)
        self.damped_trend = bool(damped_trend)
        super().__init__(**kwargs)

    def _build_model(self, endog: np.ndarray, first_hour: int) -> ExponentialSmoothing:
        return ExponentialSmoothing(
            endog,
            trend=self.damped_trend,
            damped_trend=self.damped_trend,
            seasonal=self.seasonal_period_hours,
        )

    def _start_params(self, previous: Any) -> Any:
        # Old initial states refer to the old window's start: let statsmodels re-derive.
        return None

    def _absorb(self, endog: np.ndarray, first_hour: int) -> MLEResults:
        return self.results.append(endog)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "seasonal_period_hours": self.seasonal_period_hours,
            "damped_trend": self.damped_trend,
        }


register_forecaster("sarimax", SarimaxForecaster)
register_forecaster("ets", EtsForecaster)
