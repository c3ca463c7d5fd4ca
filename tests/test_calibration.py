"""Conformal per-lead quantiles: the rank rule, the score book, the warm-up, coverage."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import pytest

from forecasters import make_forecaster
from forecasters.backtest import BACKTEST_LEVELS, rolling_origin_backtest
from forecasters.base import CALIBRATION_STEPS, ScoreBook, conformal_quantiles
from traces.grid import STEP, STEPS_PER_DAY, Publication, grid_index

NATIVE = Publication()
HOURLY = Publication(pd.Timedelta(hours=1))


class ModelParams(TypedDict, total=False):
    """Constructor parameters of the forecasters compared here (SARIMAX order, Fourier
    pairs of the daily and weekly cycles, optimiser iterations)."""

    order: tuple[int, int, int]
    daily_harmonics: int
    weekly_harmonics: int
    maxiter: int


def test_conformal_ranks_by_hand() -> None:
    errors = np.array([[5.0, 1.0], [1.0, np.nan], [3.0, 2.0], [2.0, 3.0], [4.0, 4.0]]
                      + [[float(k), float(k)] for k in range(6, 10)])
    # Column 0 holds 1..9 (n = 9), column 1 holds 1..4, 6..9 (n = 8).
    q = conformal_quantiles(errors, [0.1, 0.5, 0.9, 0.95])
    # n = 9: ranks floor(10 * 0.1) = 1, ceil(10 * 0.5) = 5, ceil(10 * 0.9) = 9, ceil(9.5) = 10 > 9.
    np.testing.assert_array_equal(q[:, 0], [1.0, 5.0, 9.0, np.nan])
    # n = 8: floor(0.9) = 0 < 1 -> NaN; ceil(4.5) = 5 -> 6; ceil(8.1) = 9 > 8 -> NaN.
    np.testing.assert_array_equal(q[:, 1], [np.nan, 6.0, np.nan, np.nan])


def test_score_book_errors_and_window() -> None:
    book = ScoreBook(steps=3, max_origins=2)
    obs = np.arange(10.0)
    book.record(3, np.array([[4.0, 4.0, 4.0]]))  # forecasts positions 4, 5, 6
    book.record(7, np.array([[0.0, 0.0, 0.0]]))  # positions 8, 9, 10 (10 unobserved)
    np.testing.assert_array_equal(book.errors(obs)[:, 0, :], [[0, 1, 2], [8, 9, np.nan]])
    book.record(8, np.array([[1.0, 1.0, 1.0]]))
    assert len(book) == 2 and book.last_origin == 8 and book.n_recorded == 3
    book.drop_from(8)
    assert book.last_origin == 7


def _ar_series(days: int, seed: int = 1, phi: float = 0.97) -> pd.Series:
    rng = np.random.default_rng(seed)
    y = np.zeros(days * STEPS_PER_DAY)
    for k in range(1, len(y)):
        y[k] = phi * y[k - 1] + rng.standard_t(4)  # heavy tails: a Gaussian band is wrong
    return pd.Series(y, index=grid_index("2022-01-03", len(y)))


def test_calibration_never_changes_the_point_forecast() -> None:
    y = _ar_series(12)
    cases: tuple[tuple[str, ModelParams], ...] = (
        ("seasonal_naive_daily", {}),
        ("sarimax", {"order": (1, 0, 0), "daily_harmonics": 1, "weekly_harmonics": 0,
                     "maxiter": 20}))
    for name, params in cases:
        cal = make_forecaster(name, **params).fit(y.iloc[:-STEPS_PER_DAY])
        raw = make_forecaster(name, calibration="model", **params).fit(y.iloc[:-STEPS_PER_DAY])
        assert cal.score_book is not None and len(cal.score_book) > 24
        assert raw.score_book is None
        for k in range(8):
            pos = len(y) - STEPS_PER_DAY + k
            issue = y.index[pos]
            np.testing.assert_array_equal(cal.predict(issue, 96).to_numpy(),
                                          raw.predict(issue, 96).to_numpy())
            cal.update(y.iloc[pos : pos + 1])
            raw.update(y.iloc[pos : pos + 1])


def test_warm_up_scores_the_end_of_the_history() -> None:
    """The replay records one origin per complete hour of the warm-up days, each with
    the forecast a fresh fit on the history up to that hour would make (persistence:
    the last value)."""
    y = _ar_series(10)
    fc = make_forecaster("persistence", calibration_warmup_days=2.0).fit(y)
    book = fc.score_book
    assert book is not None
    assert len(book) == 2 * 24 + 1  # 48 replayed hours and the fit's own origin
    errors = fc.lead_errors()
    origins = np.arange(len(y) - 1 - 2 * STEPS_PER_DAY, len(y), 4)[-len(book):]
    v = y.to_numpy()
    for row, origin in zip(range(len(book)), origins, strict=True):
        k = min(CALIBRATION_STEPS, len(v) - 1 - origin)
        np.testing.assert_allclose(errors[row, :k], v[origin + 1 : origin + 1 + k] - v[origin])


def test_conformal_band_widens_with_lead_and_follows_staleness() -> None:
    """Random-walk-like errors grow with the lead; a stale issue time (:15 on an hourly
    feed) uses the quantiles of the leads counted from the cutoff."""
    y = _ar_series(20, phi=0.999)
    fc = make_forecaster("persistence").fit(y.iloc[: 15 * STEPS_PER_DAY])
    issue = y.index[15 * STEPS_PER_DAY]
    q = fc.predict_quantiles(issue, 96, (0.1, 0.9)).to_numpy()
    width = q[:, 1] - q[:, 0]
    assert width[-1] > 3 * width[0]
    stale = fc.predict_quantiles(issue + STEP, 95, (0.1, 0.9)).to_numpy()
    np.testing.assert_allclose(stale, q[1:])  # same targets, same leads from the cutoff


@pytest.mark.parametrize("name", ["persistence", "seasonal_naive_daily"])
def test_conformal_coverage_on_heavy_tailed_noise(name: str) -> None:
    """On AR(1) noise with Student-t(4) shocks the conformal 0.9 quantile covers ~0.9 of
    later truths at every lead band (the model's Gaussian band does not, at short leads)."""
    y = _ar_series(45, seed=11)
    start = y.index[21 * STEPS_PER_DAY]
    res = rolling_origin_backtest(make_forecaster(name), y, start, publication=NATIVE,
                                  stride_steps=7, levels=BACKTEST_LEVELS)
    cover = res.metrics["cover_q0.9"]
    for lo, hi in ((1, 8), (9, 48), (49, 96)):
        assert 0.86 <= cover.loc[lo:hi].mean() <= 0.94, (lo, hi, cover.loc[lo:hi].mean())
    assert 0.86 <= res.metrics["cover_90"].mean() <= 0.94


def test_too_few_errors_fall_back_to_the_model_band() -> None:
    """A short history leaves the conformal ranks undefined: the model quantiles are
    used (persistence's own spread where it has 16 error pairs, else unknown -> the
    bounds), never a zero-width band."""
    y = _ar_series(2)
    fc = make_forecaster("persistence", bounds=(-50.0, 50.0)).fit(y.iloc[:40])
    q = fc.predict_quantiles(y.index[40], 96, (0.05, 0.5, 0.95)).to_numpy()
    model = make_forecaster("persistence", bounds=(-50.0, 50.0), calibration="model").fit(
        y.iloc[:40]).predict_quantiles(y.index[40], 96, (0.05, 0.5, 0.95)).to_numpy()
    np.testing.assert_array_equal(q, model)
    assert (q[-1, 0] == -50.0) and (q[-1, 2] == 50.0)
    assert (q[:, 2] > q[:, 0]).all()


def test_band_follows_a_drifting_level() -> None:
    """A level that starts rising 3 noise stds a day (day 35, after 11 days of a 28-day
    window of stationary errors): the seasonal naive is a day behind, so its errors
    jump to about +3. The band centred on the last day's median error covers ~0.9 of
    the truths from day 38 on; the band of the window's errors alone, mostly the
    stationary ones, covered 0.59. Before the drift both cover ~0.9."""
    rng = np.random.default_rng(5)
    t = np.arange(46 * STEPS_PER_DAY)
    y = 10 * np.sin(2 * np.pi * t / STEPS_PER_DAY) + rng.normal(0.0, 1.0, len(t))
    y += 3.0 * np.clip(t - 35 * STEPS_PER_DAY, 0, None) / STEPS_PER_DAY
    s = pd.Series(y, index=grid_index("2022-01-03", len(y)))
    res = rolling_origin_backtest(make_forecaster("seasonal_naive_daily"), s,
                                  s.index[24 * STEPS_PER_DAY], publication=NATIVE,
                                  stride_steps=8, levels=BACKTEST_LEVELS)
    q90 = res.quantiles[:, :, list(res.levels).index(0.9)]
    late = res.issue_times >= s.index[38 * STEPS_PER_DAY]
    before = res.issue_times < s.index[34 * STEPS_PER_DAY]
    assert 0.86 <= (res.truth[late] <= q90[late]).mean() <= 0.95
    assert 0.86 <= (res.truth[before] <= q90[before]).mean() <= 0.95


def test_zero_shift_span_is_the_plain_conformal_band() -> None:
    """``calibration_shift_days=0``: the quantile is the point plus the conformal
    quantile of the window's errors at the lead; with the default span the band is
    moved, per lead, by the median of the last day's observed errors at that lead."""
    y = _ar_series(20, phi=0.999)
    levels = (0.1, 0.9)
    plain = make_forecaster("persistence", calibration_shift_days=0).fit(y.iloc[:-200])
    shifted = make_forecaster("persistence").fit(y.iloc[:-200])
    issue = y.index[-200]
    point = plain.predict(issue, 96).to_numpy()
    table = conformal_quantiles(plain.lead_errors(), levels)[:, :96].T
    np.testing.assert_allclose(plain.predict_quantiles(issue, 96, levels).to_numpy(),
                               np.column_stack([np.minimum(point + table[:, 0], point),
                                                np.maximum(point + table[:, 1], point)]))
    book = shifted.score_book
    assert book is not None
    errors = shifted.lead_errors()
    # Lead 96: the last 24 origins whose error at lead 96 is observed.
    seen = errors[~np.isnan(errors[:, 95]), 95][-24:]
    np.testing.assert_allclose(shifted._recent_bias()[95], np.median(seen))
    assert not np.allclose(shifted._recent_bias()[:96], 0.0)


# Real data: the acceptance of issue 16 ("nominal 0.9 -> empirical 0.87-0.93"). The
# naive model on the zone-F LMP over April-June 2022 (the docs' window; seasonal naive
# is cheap) covered 0.947 with its Gaussian band; SARIMAX on wind and the request
# rate over 28 days (kept short) with a band of 0.85-0.95.
@pytest.mark.shared_data
@pytest.mark.parametrize(("key", "name", "days", "band"), [
    ("lmp", "seasonal_naive_daily", 91, (0.87, 0.93)),
    ("wind_cf", "sarimax", 28, (0.85, 0.95)),
    ("demand", "sarimax", 28, (0.85, 0.95)),
    # BurstGPT days 29-60 as docs/forecasters.md's acceptance table: the level drifts
    # away from last week's (0.855 before the band followed the recent median error).
    ("demand", "seasonal_naive_weekly", 33, (0.87, 0.93)),
])
def test_calibrated_coverage_on_real_series(shared_data: Path, key: str, name: str, days: int,
                                            band: tuple[float, float]) -> None:
    from mpc_dc.commands.backtest import SERIES, build_forecaster

    y, publication = SERIES[key].load(shared_data, "F")
    first = y.first_valid_index()
    assert first is not None
    start = (pd.Timestamp("2022-04-01", tz="UTC") if key != "demand"
             else (first + pd.Timedelta(days=28)).ceil("h"))
    hist = y[(y.index >= start - pd.Timedelta(days=28))
             & (y.index < start + pd.Timedelta(days=days + 1))]
    res = rolling_origin_backtest(build_forecaster(name, key, y), hist, start,
                                  start + pd.Timedelta(days=days), stride_steps=24,
                                  levels=BACKTEST_LEVELS, publication=publication)
    cover = float(res.metrics["cover_q0.9"].mean())
    assert band[0] <= cover <= band[1], cover


def test_column_nanmedian_is_numpys_bit_for_bit() -> None:
    """The calibration's recent bias takes a per-lead median of a few dozen errors per
    step and channel; column_nanmedian must give np.nanmedian(axis=0) exactly,
    including the sign of a zero median (ties of 0.0 and -0.0), all-NaN columns and
    the ±inf case it hands back to NumPy."""
    from forecasters.base import column_nanmedian

    rng = np.random.default_rng(11)
    for trial in range(400):
        rows, cols = int(rng.integers(1, 60)), int(rng.integers(1, 40))
        values = rng.normal(size=(rows, cols)) * 10.0 ** rng.uniform(-3, 3)
        if trial % 2:
            values = np.round(values, 1)  # ties
        if trial % 3 == 0:
            values[rng.random(values.shape) < 0.3] = -0.0
        values[rng.random(values.shape) < rng.uniform(0.0, 0.95)] = np.nan
        if trial % 7 == 0:
            values[:, 0] = np.nan  # a column without a value
        if trial % 50 == 0:
            values[0, -1] = np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's all-NaN slices
            want = np.nanmedian(values, axis=0)
            got = column_nanmedian(values)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
