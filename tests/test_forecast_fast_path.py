"""The forecasting fast path gives the forecasts of the straightforward path, bit for bit.

The fast path (:mod:`forecasters.memo`: target grids and Fourier terms shared between
channels and calls, the Kalman filter's standard errors reused while its covariance is
unchanged, the score book's amortised window) is compared with the same forecasters run
under :func:`forecasters.memo.disabled` (every value computed afresh), interleaved step
by step as the MPC loop asks: a stale or wrongly keyed cache would hand one path the
other's values.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import pandas as pd

from forecasters import kalman, make_forecaster
from forecasters.base import BaseForecaster, ScoreBook
from forecasters.memo import disabled
from mpc_dc.control.forecasting import ChannelForecasts
from traces.grid import STEP, STEPS_PER_DAY

HISTORY_DAYS, RUN_DAYS, H = 8, 2, STEPS_PER_DAY
LEVELS = (0.1, 0.9)


class SarimaxSchedule(TypedDict):
    """Constructor parameters of the SARIMAX forecasters: refit cadence [h], optimiser
    iterations, fit window [days], history needed before the first fit [h]."""

    refit_every_hours: int
    maxiter: int
    fit_window_days: float
    min_fit_hours: int


def _series(seed: int, level: float, unit: str) -> pd.Series:
    """A daily cycle with AR noise on the 15-min grid from 1 March 2022 (index in
    ``unit``: the loop's frames come in both), six hours missing in the run."""
    n = (HISTORY_DAYS + RUN_DAYS + 2) * STEPS_PER_DAY  # the day-ahead truth runs ahead
    rng = np.random.default_rng(seed)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = 0.9 * noise[i - 1] + rng.normal(0.0, 0.1 * level)
    values = level * (1.0 + 0.4 * np.sin(2 * np.pi * np.arange(n) / STEPS_PER_DAY)) + noise
    values = np.maximum(values, 0.0)
    # A six-hour feed outage in the run: the filter's covariance leaves its steady state.
    outage = HISTORY_DAYS * STEPS_PER_DAY + 40
    values[outage : outage + 24] = np.nan
    index = pd.date_range("2022-03-01", periods=n, freq=STEP, tz="UTC").as_unit(unit)
    return pd.Series(values, index=index)


def _forecasters(series: dict[str, pd.Series]) -> dict[str, BaseForecaster]:
    """One of each kind of forecaster the loop runs, fitted on the history; SARIMAX
    refits daily (so the Kalman filter restarts mid-run)."""
    sarimax: SarimaxSchedule = {"refit_every_hours": 24, "maxiter": 10, "fit_window_days": 7,
                                "min_fit_hours": 48}
    out = {
        "price": make_forecaster("sarimax", **sarimax),
        # Model quantiles: the Kalman filter's standard errors are the band.
        "wind": make_forecaster("sarimax", bounds=(0.0, None), daily_harmonics=1,
                                order=(2, 0, 0), calibration="model", **sarimax),
        "tokens": make_forecaster("seasonal_naive_daily", bounds=(0.0, None)),
        "load": make_forecaster("persistence"),
        "mix": make_forecaster("combination", members=("seasonal_naive_daily", "sarimax"),
                               member_params={"sarimax": sarimax}),
        "da": make_forecaster("day_ahead_known", truth=series["da"], inner="sarimax",
                              inner_params=sarimax),
    }
    history = HISTORY_DAYS * STEPS_PER_DAY
    for name, fc in out.items():
        fc.fit(series[name].iloc[:history])
    return out


def test_fast_path_forecasts_equal_the_straightforward_path() -> None:
    names = ("price", "wind", "tokens", "load", "mix", "da")
    series = {name: _series(k, 10.0 * (k + 1), "us" if k % 2 else "ns")
              for k, name in enumerate(names)}
    fast = ChannelForecasts(_forecasters(series))
    with disabled():
        plain = ChannelForecasts(_forecasters(series))
    hits = [0]
    standard_errors = kalman.KalmanFilter._standard_errors

    def counted(self: kalman.KalmanFilter, n: int) -> np.ndarray:
        cached = self._se_cache
        hits[0] += cached is not None and cached[0] == self.P.tobytes()
        return standard_errors(self, n)

    kalman.KalmanFilter._standard_errors = counted  # type: ignore[method-assign]
    try:
        start = HISTORY_DAYS * STEPS_PER_DAY
        for i in range(start, start + RUN_DAYS * STEPS_PER_DAY):
            time = series["price"].index[i]
            # The loop publishes an hour's quarters at once (the lazy update path).
            observed = {name: float(s.iloc[i - 1]) for name, s in series.items()}
            if i > start:
                fast.observe(time - STEP, observed)
                plain.observe(time - STEP, observed)
            steps = H - (i - start) % 7  # horizons that shrink and grow as at a run's end
            got = fast.predict(time, steps)
            with disabled():
                want = plain.predict(time, steps)
            for name in names:
                np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} {time}")
                for level in LEVELS:
                    q = fast.quantile(name, time, steps, level)
                    with disabled():
                        q_plain = plain.quantile(name, time, steps, level)
                    np.testing.assert_array_equal(q, q_plain, err_msg=f"{name} q{level} {time}")
    finally:
        kalman.KalmanFilter._standard_errors = standard_errors  # type: ignore[method-assign]
    assert hits[0] > 20, "the Kalman filter's steady state was never reused"


def test_quantile_values_are_predict_quantiles() -> None:
    series = _series(3, 5.0, "us")
    history = HISTORY_DAYS * STEPS_PER_DAY
    fc = make_forecaster("seasonal_naive_daily").fit(series.iloc[:history])
    issue = series.index[history]
    frame = fc.predict_quantiles(issue, H, (0.1, 0.5, 0.9))
    np.testing.assert_array_equal(fc.quantile_values(issue, H, (0.1, 0.5, 0.9)),
                                  frame.to_numpy())
    assert frame.index.equals(pd.date_range(issue, periods=H, freq=STEP))
    # The index handed out is the caller's: renaming it leaves the next one alone.
    frame.index.name = "renamed"
    assert fc.predict(issue, H).index.name == "interval_start_utc"


def test_score_book_window_matches_a_plain_list() -> None:
    """The amortised window keeps what a list trimmed at every record keeps."""
    rng = np.random.default_rng(0)
    book = ScoreBook(steps=3, max_origins=5, width=2)
    kept: list[tuple[int, np.ndarray]] = []
    observations = rng.normal(size=400)
    origin = 0
    for k in range(150):
        origin += int(rng.integers(1, 4))
        rows = rng.normal(size=(2, 3))
        book.record(origin, rows)
        kept = [*kept, (origin, rows)][-5:]
        if k % 40 == 39:  # a refit's warm-up forgets the newest origins
            book.drop_from(kept[-2][0])
            kept = kept[:-2]
        want = np.array([[observations[o + 1 : o + 4] - r[j] for j in range(2)]
                         for o, r in kept])
        np.testing.assert_array_equal(book.errors(observations), want)
        assert len(book) == len(kept)
        assert book.last_origin == kept[-1][0]
