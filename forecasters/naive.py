"""Benchmarks every model must beat: persistence and seasonal naive.

Both work on the 15-min grid directly. Quantiles come from a Gaussian whose std is
the empirical std of the matching naive error on the most recent
``error_window_steps`` observations (refreshed once a day of updates), so they use
the past only. With fewer than :data:`MIN_SPREAD_PAIRS` error samples the spread is
unknown (NaN): the quantiles are then the widest band (forecasters.base), never the
zero width a std of one or two samples can give.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecasters.base import BaseForecaster, Bounds, last_valid, register_forecaster
from forecasters.memo import ns
from traces.grid import STEP, STEPS_PER_DAY

ERROR_WINDOW_STEPS = 28 * STEPS_PER_DAY
"""History used to estimate naive error spreads [intervals] (28 days)."""
MIN_SPREAD_PAIRS = 16
"""Fewest error samples that make a spread estimate [-]: fewer leave it unknown. Four
hours of 15-min pairs; on an hourly series held over its quarters the four pairs of
one hour are identical, so a std of a few pairs is often exactly 0."""


def _lag_diff_std(values: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Std of ``y[i] - y[i - lag]`` for each lag (NaN pairs ignored; NaN with fewer than
    :data:`MIN_SPREAD_PAIRS`)."""
    out = np.full(len(lags), np.nan)
    for i, lag in enumerate(lags):
        if lag < len(values):
            diff = values[lag:] - values[:-lag]
            diff = diff[~np.isnan(diff)]
            if len(diff) >= MIN_SPREAD_PAIRS:
                out[i] = float(np.std(diff))
    return out


class _NaiveBase(BaseForecaster):
    def __init__(
        self,
        bounds: Bounds | None = None,
        max_stale_steps: int | None = None,
        error_window_steps: int = ERROR_WINDOW_STEPS,
    ) -> None:
        super().__init__(bounds=bounds, max_stale_steps=max_stale_steps)
        self.error_window_steps = error_window_steps
        self._steps_since_spread = 0

    def _after_fit(self) -> None:
        self._refresh_spread()

    def _after_update(self, n_before: int) -> None:
        self._steps_since_spread += len(self.observations) - n_before
        if self._steps_since_spread >= STEPS_PER_DAY:
            self._refresh_spread()

    def _refresh_spread(self) -> None:
        self._steps_since_spread = 0
        self._compute_spread(self.observations[-self.error_window_steps :])

    def _compute_spread(self, recent: np.ndarray) -> None:
        raise NotImplementedError

    def _positions(self, targets: pd.DatetimeIndex) -> np.ndarray:
        offset = (ns(targets) - int(self.start.value)) // STEP.value
        return offset.astype(np.int64)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {"error_window_steps": self.error_window_steps}


class Persistence(_NaiveBase):
    """The last observed (non-NaN) value, held over the whole horizon.

    The error std at ``L`` intervals after the cutoff is the std of ``y[i] - y[i-L]``
    on recent history (for ``L`` up to two days; held beyond).
    """

    name = "persistence"
    _MAX_LAG = 2 * STEPS_PER_DAY

    def _compute_spread(self, recent: np.ndarray) -> None:
        self._spread = _lag_diff_std(recent, np.arange(1, self._MAX_LAG + 1))

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        loc = np.full(len(targets), last_valid(self.observations))
        lags = self._positions(targets) - (len(self.observations) - 1)
        scale = self._spread[np.minimum(lags, self._MAX_LAG) - 1]
        return loc, scale


class SeasonalNaive(_NaiveBase):
    """The value one season before the target (the latest such value observed).

    For target position ``p`` the forecast is ``y[p - m * period]`` with the smallest
    ``m >= 1`` that lands on an observed interval; a NaN there falls back to up to
    ``max_back`` further seasons, then to the last observed value.

    Parameters
    ----------
    period_steps : int [intervals]
        96 (daily) or 672 (weekly).
    max_back : int
        Extra seasons searched when the value one season back is missing.
    """

    name = "seasonal_naive"

    def __init__(
        self,
        period_steps: int = STEPS_PER_DAY,
        bounds: Bounds | None = None,
        max_stale_steps: int | None = None,
        error_window_steps: int = ERROR_WINDOW_STEPS,
        max_back: int = 3,
    ) -> None:
        if period_steps < 1:
            raise ValueError(f"seasonal_naive: period_steps must be >= 1, got {period_steps}")
        self.period_steps = int(period_steps)
        self.max_back = int(max_back)
        super().__init__(
            bounds=bounds, max_stale_steps=max_stale_steps, error_window_steps=error_window_steps
        )

    def _compute_spread(self, recent: np.ndarray) -> None:
        self._spread1 = float(_lag_diff_std(recent, np.array([self.period_steps]))[0])

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        obs = self.observations
        n = len(obs)
        pos = self._positions(targets)
        m = np.maximum(1, -((n - 1 - pos) // self.period_steps))
        src = pos - m * self.period_steps
        if src.size and src.min() >= 0:
            # The usual case, asked several times per MPC step: every target's value one
            # season back is observed (the loop below would fill them all in its first
            # pass, with the same values and seasons).
            loc = obs[src]
            if not np.isnan(loc).any():
                return loc, self._spread1 * np.sqrt(m.astype(float))
        loc = np.full(len(targets), np.nan)
        seasons = np.ones(len(targets))
        for extra in range(self.max_back + 1):
            missing = np.isnan(loc)
            if not missing.any():
                break
            src = pos - (m + extra) * self.period_steps
            ok = missing & (src >= 0)
            cand = np.full(len(targets), np.nan)
            cand[ok] = obs[src[ok]]
            fill = missing & ~np.isnan(cand)
            loc[fill] = cand[fill]
            seasons[fill] = m[fill] + extra
        missing = np.isnan(loc)
        if missing.any():
            loc[missing] = last_valid(obs)
            seasons[missing] = m[missing]
        return loc, self._spread1 * np.sqrt(seasons)

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {"period_steps": self.period_steps, "max_back": self.max_back}


def seasonal_naive_daily(**params: Any) -> SeasonalNaive:
    """Seasonal naive with a 24-h season."""
    fc = SeasonalNaive(period_steps=STEPS_PER_DAY, **params)
    fc.name = "seasonal_naive_daily"
    return fc


def seasonal_naive_weekly(**params: Any) -> SeasonalNaive:
    """Seasonal naive with a 7-day season."""
    fc = SeasonalNaive(period_steps=7 * STEPS_PER_DAY, **params)
    fc.name = "seasonal_naive_weekly"
    return fc


register_forecaster("persistence", Persistence)
register_forecaster("seasonal_naive_daily", seasonal_naive_daily)
register_forecaster("seasonal_naive_weekly", seasonal_naive_weekly)
