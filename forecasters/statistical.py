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
the week of the *target* hour (its midpoint, UTC), functions of the timestamp only;
optionally the holiday indicator and known-ahead series such as the day-ahead
price, read only where published at the issue time (:mod:`forecasters.hourly`).

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
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning
from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing
from statsmodels.tsa.statespace.mlemodel import MLEResults
from statsmodels.tsa.statespace.sarimax import SARIMAX
from threadpoolctl import threadpool_limits

from forecasters.base import register_forecaster
from forecasters.hourly import HOUR, HOURS_PER_DAY, HOURS_PER_WEEK, HourlyForecaster
from forecasters.kalman import KalmanFilter
from forecasters.memo import enabled, grid, memoized

logger = logging.getLogger(__name__)


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


@memoized(maxsize=16)
def _fourier_week(daily_harmonics: int, weekly_harmonics: int) -> np.ndarray:
    """:func:`fourier_terms` of the 168 hours from 1970-01-01 00:00 UTC (read-only)."""
    return fourier_terms(grid(0, HOURS_PER_WEEK, HOUR.value), daily_harmonics,
                         weekly_harmonics)


def _fourier(first_hour_ns: int, n: int, daily_harmonics: int, weekly_harmonics: int
             ) -> np.ndarray:
    """:func:`fourier_terms` of the ``n`` hours from ``first_hour_ns`` [ns, UTC, on the
    hour], looked up by hour of the week: both phases of hour ``h`` (hours since the
    epoch) are exact functions of ``h mod 168`` (``h + 0.5`` and its remainders are
    exact in binary), so the rows are the same bits as computed afresh."""
    if not enabled():
        return fourier_terms(grid(first_hour_ns, n, HOUR.value), daily_harmonics,
                             weekly_harmonics)
    hours = first_hour_ns // HOUR.value + np.arange(n)
    return _fourier_week(daily_harmonics, weekly_harmonics)[hours % HOURS_PER_WEEK]


class HourlyStateSpaceForecaster(HourlyForecaster):
    """Shared machinery of the hourly statsmodels forecasters (see module docstring).

    Parameters
    ----------
    maxiter : int
        Optimiser iterations per fit (refits are warm-started).
    **kwargs
        See :class:`~forecasters.hourly.HourlyForecaster` (bounds, transform, fit
        window, refit period, holidays, known-ahead regressors).
    """

    name = "hourly_state_space"

    def __init__(self, maxiter: int = 50, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maxiter = int(maxiter)
        self._res: MLEResults | None = None

    def _after_fit(self) -> None:
        self._res = None
        super()._after_fit()

    def _estimate(self, endog: np.ndarray, first: int) -> None:
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
            first + len(endog),
            np.round(np.asarray(self._res.params), 4),
        )
        self._after_refit()

    def _after_refit(self) -> None:
        """Hook: the model was (re)estimated; ``self._res`` holds the new results."""

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

    def _absorb(self, endog: np.ndarray, first_hour: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self._res = self._absorbed(endog, first_hour)

    def _forecast(self, n: int, issue: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            first_hour = len(self._hourly)
            fc = self.results.get_forecast(n, **self._exog_kwargs(first_hour, n, issue))
            return np.asarray(fc.predicted_mean, dtype=float), np.asarray(fc.se_mean, dtype=float)

    # ------------------------------------------------------ model hooks
    @abstractmethod
    def _build_model(self, endog: np.ndarray, first_hour: int) -> Any:
        """A statsmodels model on ``endog`` (hours from ``first_hour``)."""

    @abstractmethod
    def _absorbed(self, endog: np.ndarray, first_hour: int) -> MLEResults:
        """Results updated with new hours from ``first_hour`` (same parameters)."""

    def _start_params(self, previous: Any) -> Any:
        return previous

    def _exog_kwargs(self, first_hour: int, n: int, issue: pd.Timestamp) -> dict[str, Any]:
        return {}

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {"maxiter": self.maxiter}


class SarimaxForecaster(HourlyStateSpaceForecaster):
    """Hourly SARIMAX(p, d, q) with a constant and Fourier regressors of the target hour.

    Parameters
    ----------
    order : tuple of int
        ``(p, d, q)``; default ``(2, 0, 1)``.
    daily_harmonics, weekly_harmonics : int
        Fourier pairs of the 24-h and 168-h cycles (0 disables a cycle).
    **kwargs
        See :class:`HourlyStateSpaceForecaster`; ``holidays=`` and ``regressors=`` add
        their columns to the Fourier terms (:mod:`forecasters.hourly`).
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

    def _exog(self, first_hour: int, n: int, issue: pd.Timestamp) -> np.ndarray | None:
        """Fourier terms, holiday indicator and known-ahead regressors of ``n`` hours."""
        cols = [_fourier(int(self.hour_start(first_hour).value), n, self.daily_harmonics,
                         self.weekly_harmonics), self.regressors(first_hour, n, issue)]
        exog = np.hstack(cols)
        return exog if exog.shape[1] else None

    def _exog_kwargs(self, first_hour: int, n: int, issue: pd.Timestamp) -> dict[str, Any]:
        exog = self._exog(first_hour, n, issue)
        return {} if exog is None else {"exog": exog}

    def _build_model(self, endog: np.ndarray, first_hour: int) -> SARIMAX:
        return SARIMAX(
            endog,
            exog=self._exog(first_hour, len(endog), self._now()),
            order=self.order,
            trend="c" if self.order[1] == 0 else "n",
            concentrate_scale=False,
        )

    def _after_refit(self) -> None:
        self._kf = KalmanFilter.from_results(self.results)

    def _absorbed(self, endog: np.ndarray, first_hour: int) -> MLEResults:
        # Between refits the parameters are fixed: our filter absorbs the hour in
        # microseconds where ``results.extend`` costs milliseconds (module docstring).
        self._kf.update(endog, self._exog(first_hour, len(endog), self._now()))
        return self.results

    def _forecast(self, n: int, issue: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        return self._kf.forecast(n, self._exog(len(self._hourly), n, issue))

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "order": self.order,
            "daily_harmonics": self.daily_harmonics,
            "weekly_harmonics": self.weekly_harmonics,
        }


Criterion = Literal["aic", "aicc", "bic"]

DEFAULT_ORDERS: tuple[tuple[int, int, int], ...] = (
    (1, 0, 0), (2, 0, 0), (3, 0, 0), (1, 0, 1), (2, 0, 1), (3, 0, 1),
)
"""Orders searched by :class:`AutoSarimaxForecaster` by default (stationary ARMA)."""
DEFAULT_DAILY_HARMONICS: tuple[int, ...] = (1, 3, 5)
"""Daily Fourier pairs searched by default."""


class AutoSarimaxForecaster(SarimaxForecaster):
    """SARIMAX whose order and daily harmonics are chosen by an information criterion.

    Every ``select_every_hours`` (at a refit; default every refit) each candidate
    ``(order, daily_harmonics)`` of the bounded grid ``orders x daily_harmonics_grid``
    is fitted on the training window (the refit's window, cold start), and the one
    with the lowest criterion is kept; between selections the chosen model is
    refitted warm on the schedule of :class:`SarimaxForecaster`. All candidates share
    the window, ``d = 0`` and the other regressors, so their likelihoods compare.

    Parameters
    ----------
    orders : sequence of (p, d, q)
        Candidate orders (each with ``d = 0``).
    daily_harmonics_grid : sequence of int
        Candidate daily Fourier pairs.
    criterion : {"aic", "aicc", "bic"}
    select_every_hours : int [h]
        Re-selection period (rounded up to a refit).
    **kwargs
        See :class:`SarimaxForecaster` (``weekly_harmonics``, ``holidays``,
        ``regressors``, fit window, ``refit_every_hours``, ``maxiter``).
    """

    name = "auto_sarimax"

    def __init__(
        self,
        orders: Sequence[tuple[int, int, int]] = DEFAULT_ORDERS,
        daily_harmonics_grid: Sequence[int] = DEFAULT_DAILY_HARMONICS,
        criterion: Criterion = "bic",
        select_every_hours: int = 336,
        **kwargs: Any,
    ) -> None:
        self.orders = tuple((int(o[0]), int(o[1]), int(o[2])) for o in orders)
        self.daily_harmonics_grid = tuple(int(h) for h in daily_harmonics_grid)
        if not self.orders or not self.daily_harmonics_grid:
            raise ValueError("auto_sarimax: the search grid is empty")
        if any(len(o) != 3 or o[1] != 0 for o in self.orders):
            raise ValueError(f"auto_sarimax: orders must be (p, 0, q), got {self.orders}")
        if criterion not in ("aic", "aicc", "bic"):
            raise ValueError(f"auto_sarimax: criterion must be aic, aicc or bic, got {criterion!r}")
        if select_every_hours < 1:
            raise ValueError("auto_sarimax: select_every_hours must be >= 1")
        self.criterion: Criterion = criterion
        self.select_every_hours = int(select_every_hours)
        kwargs.setdefault("order", self.orders[0])
        kwargs.setdefault("daily_harmonics", self.daily_harmonics_grid[0])
        super().__init__(**kwargs)
        self.selections: list[dict[str, Any]] = []

    def _after_fit(self) -> None:
        self._hours_since_selection: int | None = None
        super()._after_fit()

    def _estimate(self, endog: np.ndarray, first: int) -> None:
        since = self._hours_since_selection
        elapsed = len(self._hourly) - since if since is not None else None
        if elapsed is None or elapsed >= self.select_every_hours:
            self._select(endog, first)
            self._hours_since_selection = len(self._hourly)
        super()._estimate(endog, first)

    def _select(self, endog: np.ndarray, first: int) -> None:
        """Fit every candidate on the window; keep the lowest criterion."""
        scores: list[tuple[float, tuple[int, int, int], int]] = []
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", EstimationWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            for order in self.orders:
                for harmonics in self.daily_harmonics_grid:
                    self.order, self.daily_harmonics = order, harmonics
                    res = self._build_model(endog, first).fit(disp=False, maxiter=self.maxiter)
                    value = float(getattr(res, self.criterion))
                    scores.append((value if np.isfinite(value) else np.inf, order, harmonics))
        best = min(scores, key=lambda item: item[0])
        self.order, self.daily_harmonics = best[1], best[2]
        # The previous parameters belong to another model: the chosen one starts cold.
        self._res = None
        self.selections.append({"hour": first + len(endog), "order": best[1],
                                "daily_harmonics": best[2], self.criterion: best[0]})
        logger.debug("%s selected order %s, %d daily pairs (%s %.1f)", self.name, best[1],
                     best[2], self.criterion, best[0])

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "orders": self.orders,
            "daily_harmonics_grid": self.daily_harmonics_grid,
            "criterion": self.criterion,
            "select_every_hours": self.select_every_hours,
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
        if self.n_regressors:
            raise ValueError(f"{self.name}: ETS takes no regressors (holidays, known-ahead); "
                             "use sarimax or direct_lad")

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

    def _absorbed(self, endog: np.ndarray, first_hour: int) -> MLEResults:
        return self.results.append(endog)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "seasonal_period_hours": self.seasonal_period_hours,
            "damped_trend": self.damped_trend,
        }


register_forecaster("sarimax", SarimaxForecaster)
register_forecaster("auto_sarimax", AutoSarimaxForecaster)
register_forecaster("ets", EtsForecaster)
