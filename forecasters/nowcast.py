"""Nowcasting: the last observed value blended into the first hours of a forecast.

A forecaster that learns from the past (seasonal naive, SARIMAX) can miss today's
level by a wide margin at short leads: yesterday's same interval is not what is
arriving now. The last published observation ``y`` is a better guess for the next
minutes and no guess at all a day ahead, so it is blended in with a weight that
decays with the distance from it::

    f'[k] = f[k] + w[k] (y − f[k]),     w[k] = exp(−d[k] / τ)

where ``d[k]`` [s] is the time from the end of the observed interval to the end of
target interval ``k`` (one interval, 900 s, for the first target of a 15-min series
observed up to the issue time) and τ [s] the time constant (τ = 0: no blend). A
quantile forecast ``q[k]`` is shifted by the same amount as the point,
``q'[k] = q[k] + w[k] (y − f[k])``: the blend moves the level, not the spread.

τ is chosen by a backtest (``mpc-dc backtest --nowcast-tau-h``, docs/forecasters.md)
and used by the MPC on its demand channels (``controller.nowcast_tau_h``), its price
channels (``controller.price_nowcast_tau_h``) and its renewable capacity factors
(``controller.renewable_nowcast_tau_h``); :data:`BACKTEST_TAU_H_OF` holds the defaults.
"""

from __future__ import annotations

import numpy as np

from traces.grid import STEP

STEP_S = STEP.total_seconds()
"""One 15-min interval [s]."""

BACKTEST_TAU_H: dict[str, float] = {
    "seasonal_naive_daily": 8.0,
    "seasonal_naive_weekly": 12.0,
    "ets": 6.0,
    "sarimax": 2.0,
    "auto_sarimax": 2.0,
    "direct_lad": 2.0,
    "combination": 2.0,
    "combination_equal": 2.0,
}
"""Time constant [h] of each forecaster's demand nowcast: the τ of the grid 0.25, 0.5, 1,
2, 3, 4, 6, 8, 12 h with the lowest MAE over all leads (15 min to 24 h) on BurstGPT's
hourly requests, days 28-59 after 28 days of fit, observed and forecast every 15 min as
the closed loop observes its demand and decides (docs/forecasters.md, "Nowcast", has the
command and the table). Chosen on hourly observations and issues before issue 16's gap
study, the hourly models got 0.25 h: there they have absorbed the last observation at
every issue time, in the loop at one issue in four (:mod:`forecasters.hourly` uses
complete hours only). A forecaster not named here (persistence: its own nowcast) gets 0:
no blend."""


PRICE_BACKTEST_TAU_H: dict[str, float] = {
    "seasonal_naive_daily": 16.0,
    "sarimax": 12.0,
}
"""Time constant [h] of each forecaster's price nowcast: the τ of the grid 0.5, 1, 2, 4, 6,
8, 12, 16, 24, 36, 48, 96 h with the lowest MAE over all leads (15 min to 24 h), averaged
over the NYISO real-time LMP of zones D, A and J (the campuses of nyiso_wind_fleet),
issued every 15 min over April 2022 after 14 days of fit, each hour observed at its end
(docs/forecasters.md, "Nowcast of prices and wind", has the commands and the table).
A forecaster not named here gets 0: no blend."""

RENEWABLE_BACKTEST_TAU_H: dict[str, float] = {
    "seasonal_naive_daily": 36.0,
    "sarimax": 8.0,
}
"""Time constant [h] of each forecaster's renewable (capacity factor) nowcast: chosen as
:data:`PRICE_BACKTEST_TAU_H` on the NY wind capacity factor of April 2022."""

BACKTEST_TAU_H_OF: dict[str, dict[str, float]] = {
    "demand": BACKTEST_TAU_H,
    "price": PRICE_BACKTEST_TAU_H,
    "renewable": RENEWABLE_BACKTEST_TAU_H,
}
"""The backtest's time constants [h] per channel group the MPC nowcasts."""


def nowcast_weights(first_distance_s: float | np.ndarray, steps: int, tau_s: float,
                    step_s: float = STEP_S) -> np.ndarray:
    """``w[k] = exp(−(d₀ + k Δ) / τ)`` for ``k = 0 .. steps − 1`` [-].

    Parameters
    ----------
    first_distance_s : float or ndarray (n,) [s]
        ``d₀``: from the end of the last observed interval to the end of the first
        target interval (>= 0); an array gives one row of weights per entry.
    steps : int
        Target intervals.
    tau_s : float [s]
        Time constant; 0 gives zeros (no blend).
    step_s : float [s]
        Δ, the spacing of the targets.

    Returns
    -------
    ndarray (steps,) or (n, steps)
    """
    first = np.asarray(first_distance_s, dtype=float)
    if tau_s < 0 or np.any(first < 0):
        raise ValueError(f"nowcast_weights: expected tau_s >= 0 and distances >= 0, got "
                         f"{tau_s!r} and {first_distance_s!r}")
    lead = first[..., None] + step_s * np.arange(steps)
    if tau_s == 0:
        return np.zeros(lead.shape)
    return np.exp(-lead / tau_s)


def nowcast_shift(point: np.ndarray, last: float | np.ndarray,
                  weights: np.ndarray) -> np.ndarray:
    """``w (y − f)``: what the blend adds to the point forecast ``f`` and to each of its
    quantiles (``point`` (..., steps), ``last`` broadcast against it) [series units].
    A non-finite observation adds nothing."""
    point = np.asarray(point, dtype=float)
    last = np.asarray(last, dtype=float)
    if last.ndim:
        last = last[..., None]
    return np.where(np.isfinite(last), weights * (last - point), 0.0)
