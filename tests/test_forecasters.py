"""Hand-checked behaviour of each forecaster and the incremental-update pitfall tests."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from forecasters import (
    EtsForecaster,
    ForecastFrame,
    NoisyOracle,
    Oracle,
    Persistence,
    SarimaxForecaster,
    SeasonalNaive,
    fourier_terms,
    make_forecaster,
)
from traces.errors import TraceRangeError
from traces.grid import STEP, STEPS_PER_DAY, grid_index


def series(values: list[float] | np.ndarray, start: str = "2022-01-03") -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=grid_index(start, len(values)))


def daily_series(days: int, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    ar = np.zeros(len(hours))
    for i in range(1, len(ar)):
        ar[i] = 0.8 * ar[i - 1] + rng.standard_normal()
    hourly = 30 + 8 * np.sin(2 * np.pi * hours / 24) + 3 * ar
    return series(np.repeat(hourly, 4))


# ------------------------------------------------------------------ oracles
def test_oracle_equals_truth_exactly() -> None:
    truth = daily_series(3)
    fc = Oracle(truth).fit(truth.iloc[:100])
    pred = fc.predict(truth.index[100], 96)
    pd.testing.assert_series_equal(pred, truth.iloc[100:196], check_names=False)
    with pytest.raises(TraceRangeError, match="truth covers"):
        fc.predict(truth.index[-10], 96)


def test_noisy_oracle_level_zero_is_oracle() -> None:
    truth = daily_series(3)
    exact = Oracle(truth).fit(truth.iloc[:100]).predict(truth.index[100], 96)
    noisy = NoisyOracle(truth, error_level=0.0, seed=5).fit(truth.iloc[:100])
    np.testing.assert_array_equal(noisy.predict(truth.index[100], 96).to_numpy(), exact.to_numpy())


def test_noisy_oracle_error_grows_with_level_and_lead() -> None:
    truth = daily_series(12)
    levels = [0.0, 0.05, 0.1, 0.2, 0.5, 1.0]
    maes = []
    by_lead = None
    for level in levels:
        fc = NoisyOracle(truth, error_level=level, seed=11).fit(truth.iloc[:96])
        errs = np.array(
            [
                fc.predict(truth.index[96 + k], 96).to_numpy()
                - truth.iloc[96 + k : 192 + k].to_numpy()
                for k in range(0, 96 * 9, 8)
            ]
        )
        maes.append(float(np.abs(errs).mean()))
        if level == 1.0:
            by_lead = np.abs(errs).mean(axis=0)
    assert maes[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(maes))
    assert by_lead is not None
    # sqrt growth: error at 24 h about twice the error at 6 h, far above 15 min.
    assert by_lead[95] > 1.5 * by_lead[23] > 5 * by_lead[0]
    # Realised std at the reference lead is level * sigma (within sampling error).
    fc = NoisyOracle(truth, error_level=1.0, seed=11)
    assert fc.error_scale == pytest.approx(float(truth.std(ddof=0)))


def test_noisy_oracle_independent_of_call_order_and_horizon() -> None:
    truth = daily_series(4)
    a = NoisyOracle(truth, error_level=0.3, seed=2).fit(truth.iloc[:96])
    b = NoisyOracle(truth, error_level=0.3, seed=2).fit(truth.iloc[:96])
    t1, t2 = truth.index[150], truth.index[120]
    first = a.predict(t1, 96)
    b.predict(t2, 50)
    np.testing.assert_array_equal(b.predict(t1, 96).to_numpy(), first.to_numpy())
    np.testing.assert_array_equal(b.predict(t1, 10).to_numpy(), first.to_numpy()[:10])
    other_seed = NoisyOracle(truth, error_level=0.3, seed=3).fit(truth.iloc[:96])
    assert not np.array_equal(other_seed.predict(t1, 96).to_numpy(), first.to_numpy())


@settings(max_examples=25, deadline=None)
@given(level_a=st.floats(0.0, 2.0), level_b=st.floats(0.0, 2.0), seed=st.integers(0, 2**31 - 1))
def test_noisy_oracle_error_monotone_in_level_per_forecast(
    level_a: float, level_b: float, seed: int
) -> None:
    """With the same draws, every forecast's error is monotone in the level, even clipped."""
    truth = series(np.clip(np.linspace(0.1, 0.9, 300), 0, 1))
    lo, hi = sorted((level_a, level_b))
    issue = truth.index[50]
    preds = [
        NoisyOracle(truth, error_level=lv, seed=seed, bounds=(0, 1))
        .fit(truth.iloc[:50])
        .predict(issue, 96)
        for lv in (lo, hi)
    ]
    err = [np.abs(p.to_numpy() - truth.iloc[50:146].to_numpy()) for p in preds]
    assert (err[0] <= err[1] + 1e-12).all()
    assert (preds[1] >= 0).all() and (preds[1] <= 1).all()


# -------------------------------------------------------------------- naive
def test_persistence_hand_checked() -> None:
    y = series([1, 2, np.nan, 3, np.nan])
    fc = Persistence().fit(y.iloc[:4])
    assert fc.predict(y.index[4], 3).tolist() == [3.0, 3.0, 3.0]
    fc.update(y.iloc[4:5])  # missing: keep the last observed value
    pred = fc.predict(y.index[4] + STEP, 2)
    assert pred.tolist() == [3.0, 3.0]
    assert pred.index[0] == y.index[4] + STEP


@pytest.mark.parametrize("name", ["persistence", "seasonal_naive_daily", "seasonal_naive_weekly"])
def test_unknown_spread_gives_the_widest_quantiles_never_zero_width(name: str) -> None:
    """From one observation the spread is unknown: the quantiles are the bounds.

    (``nan_to_num`` made them zero-width: q0.1 = q0.9 = the point forecast.)
    """
    y = series([0.4])
    q = make_forecaster(name, bounds=(0.0, 1.0)).fit(y).predict_quantiles(
        y.index[0] + STEP, 8, (0.1, 0.5, 0.9))
    np.testing.assert_array_equal(q.to_numpy(), np.tile([0.0, 0.4, 1.0], (8, 1)))
    q = make_forecaster(name).fit(y).predict_quantiles(y.index[0] + STEP, 2, (0.1, 0.5, 0.9))
    np.testing.assert_array_equal(q.to_numpy(), np.tile([-np.inf, 0.4, np.inf], (2, 1)))


def test_persistence_spread_known_for_the_leads_history_covers() -> None:
    """Less than a day of history (50 intervals): the leads it covers get a finite,
    positive spread, the others the widest band; never a zero-width one."""
    y = daily_series(1).iloc[:50]
    fc = Persistence().fit(y)
    q = fc.predict_quantiles(y.index[-1] + STEP, 96, (0.1, 0.9)).to_numpy()
    width = q[:, 1] - q[:, 0]
    # Lead L has 50 - L pairs y[i] - y[i - L]; an estimate needs MIN_SPREAD_PAIRS = 16.
    # (At L = 48 the two pairs lie in held hours and are equal: their std is 0.)
    assert (np.isfinite(width[:34]) & (width[:34] > 0)).all()
    assert np.isinf(width[34:]).all()


def test_seasonal_naive_hand_checked() -> None:
    # Period 4: the forecast repeats the last complete season, phase-aligned.
    y = series([1, 2, 3, 4, 5, 6, 7, np.nan, 9, 10])
    fc = SeasonalNaive(period_steps=4).fit(y)
    # Targets positions 10..15 -> sources 6,7(NaN -> 3),8,9,10-4*2=... see below.
    pred = fc.predict(y.index[-1] + STEP, 6)
    # pos 10 -> 6 (7.0); 11 -> 7 is NaN -> 3 (4.0); 12 -> 8 (9.0); 13 -> 9 (10.0);
    # 14 -> 14-8=6 (7.0); 15 -> 7 NaN -> 3 (4.0)
    assert pred.tolist() == [7.0, 4.0, 9.0, 10.0, 7.0, 4.0]


def test_seasonal_naive_daily_and_weekly_on_a_periodic_series() -> None:
    days = 15
    idx = grid_index("2022-01-03", days * STEPS_PER_DAY)
    steps = np.arange(len(idx))
    weekly = np.sin(2 * np.pi * steps / (7 * STEPS_PER_DAY)) + np.sin(2 * np.pi * steps / 96)
    y = pd.Series(weekly, index=idx)
    cut = 14 * STEPS_PER_DAY
    wk = make_forecaster("seasonal_naive_weekly").fit(y.iloc[:cut]).predict(idx[cut], 96)
    np.testing.assert_allclose(wk.to_numpy(), y.iloc[cut : cut + 96].to_numpy(), atol=1e-12)
    dy = make_forecaster("seasonal_naive_daily").fit(y.iloc[:cut]).predict(idx[cut], 96)
    np.testing.assert_array_equal(dy.to_numpy(), y.iloc[cut - 96 : cut].to_numpy())


# -------------------------------------------------------------- statistical
def test_fourier_terms_phase() -> None:
    # Monday 2022-01-03 00:00 UTC: day phase and week phase both start near 0.
    idx = pd.date_range("2022-01-03", periods=168, freq="h", tz="UTC")
    x = fourier_terms(idx, 1, 1)
    assert x.shape == (168, 4)
    np.testing.assert_allclose(
        x[0], [np.sin(np.pi / 24), np.cos(np.pi / 24), np.sin(np.pi / 168), np.cos(np.pi / 168)]
    )
    np.testing.assert_allclose(x[24, :2], x[0, :2])


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (SarimaxForecaster, {"order": (2, 0, 1), "daily_harmonics": 2, "weekly_harmonics": 1}),
        (SarimaxForecaster, {"order": (1, 0, 0), "transform": "log1p"}),
        (EtsForecaster, {"maxiter": 10}),
    ],
)
def test_incremental_update_equals_full_refilter(cls: type, params: dict) -> None:
    """The pitfall test: chained updates == re-filter of the full history, same params."""
    y = daily_series(14, seed=3)
    cut = 10 * STEPS_PER_DAY
    fc = cls(refit_every_hours=10_000, **params).fit(y.iloc[:cut])
    for k in range(cut, cut + 3 * STEPS_PER_DAY - 5):  # 3 days of steps, 71 new hours
        fc.update(y.iloc[k : k + 1])
    assert fc.n_refits == 1
    full = fc.refiltered()
    n = 30
    kwargs = fc._exog_kwargs(len(fc._hourly), n, fc._now())  # same regressors for both
    mean, se = fc.forecast_hours(n)
    ref = full.get_forecast(n, **kwargs)
    np.testing.assert_allclose(mean, ref.predicted_mean, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(se, ref.se_mean, rtol=1e-8, atol=1e-8)


def test_statsmodels_chained_extend_pitfalls() -> None:
    """Why SARIMAX keeps ``concentrate_scale=False`` and ETS uses ``append``.

    statsmodels 0.15: with ``concentrate_scale=True`` each chained one-hour
    ``extend`` re-estimates the scale from the appended hour alone, so the point
    forecasts stay exact but the forecast standard errors drift by orders of
    magnitude; the state-space ``ExponentialSmoothing.extend`` re-applies the
    initial states, so its chained forecasts are wrong, while ``append`` is exact.
    (If a statsmodels release fixes either, this test says so: update the docs.)
    """
    import warnings

    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = daily_series(9, seed=5).to_numpy()[::4]  # hourly values
    fit_n, n_ext = 7 * 24, 24
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")
        model = SARIMAX(y[:fit_n], order=(2, 0, 1), trend="c", concentrate_scale=True)
        res = model.fit(disp=False, maxiter=30)
        chained, scales = res, []
        for k in range(fit_n, fit_n + n_ext):
            chained = chained.extend(y[k : k + 1])
            scales.append(chained.scale)
        ref = SARIMAX(y[: fit_n + n_ext], order=(2, 0, 1), trend="c",
                      concentrate_scale=True).filter(res.params)
        np.testing.assert_allclose(chained.get_forecast(24).predicted_mean,
                                   ref.get_forecast(24).predicted_mean, rtol=1e-8)
        # The re-filtered scale is one number; the chained one swings by 100x and more.
        assert max(scales) / min(scales) > 100.0, (scales, ref.scale)

        ets = ExponentialSmoothing(y[:fit_n], seasonal=24).fit(disp=False, maxiter=10)
        extended, appended = ets, ets
        for k in range(fit_n, fit_n + n_ext):
            extended = extended.extend(y[k : k + 1])
            appended = appended.append(y[k : k + 1])
        ref = ExponentialSmoothing(y[: fit_n + n_ext], seasonal=24).filter(ets.params)
    truth = ref.get_forecast(24).predicted_mean
    np.testing.assert_allclose(appended.get_forecast(24).predicted_mean, truth, rtol=1e-8)
    assert np.max(np.abs(extended.get_forecast(24).predicted_mean - truth)) > 0.1 * np.std(y)


def test_sarimax_holds_hourly_forecast_and_uses_complete_hours_only() -> None:
    y = daily_series(10)
    cut = 8 * STEPS_PER_DAY
    fc = SarimaxForecaster(order=(1, 0, 0), daily_harmonics=2, weekly_harmonics=0).fit(y.iloc[:cut])
    pred = fc.predict(y.index[cut], 96).to_numpy()
    assert (pred.reshape(24, 4) == pred.reshape(24, 4)[:, :1]).all()
    before = fc.n_hours
    fc.update(y.iloc[cut : cut + 3])  # three quarters: the hour is not complete
    assert fc.n_hours == before
    # Forecast for the rest of the current hour is unchanged by its first quarters.
    np.testing.assert_array_equal(fc.predict(y.index[cut + 3], 1).to_numpy(), pred[3:4])
    fc.update(y.iloc[cut + 3 : cut + 4])
    assert fc.n_hours == before + 1
    assert not np.array_equal(fc.predict(y.index[cut + 4], 4).to_numpy(), pred[4:8])


def test_statistical_refit_schedule() -> None:
    y = daily_series(12)
    cut = 8 * STEPS_PER_DAY
    fc = SarimaxForecaster(
        order=(1, 0, 0), daily_harmonics=1, weekly_harmonics=0, refit_every_hours=24
    ).fit(y.iloc[:cut])
    for k in range(cut, cut + 2 * STEPS_PER_DAY + 4):
        fc.update(y.iloc[k : k + 1])
    assert fc.n_refits == 3  # the fit, then one refit per 24 complete hours
    fc.update(y.iloc[cut + 2 * STEPS_PER_DAY + 4 : cut + 4 * STEPS_PER_DAY])
    assert fc.n_refits == 4  # a bulk update of 47 hours refits once, on all of them


def test_statistical_needs_enough_history() -> None:
    y = daily_series(2)
    with pytest.raises(ValueError, match="needs at least 72 observed complete hours"):
        SarimaxForecaster().fit(y.iloc[:100])


def test_sarimax_beats_persistence_on_a_daily_ar_series() -> None:
    y = daily_series(20, seed=9)
    cut = 14 * STEPS_PER_DAY
    models = {
        "sarimax": SarimaxForecaster(order=(1, 0, 0), daily_harmonics=2, weekly_harmonics=0),
        "persistence": Persistence(),
    }
    mae = {}
    for name, fc in models.items():
        fc.fit(y.iloc[:cut])
        errs = []
        for k in range(cut, cut + 5 * STEPS_PER_DAY, 4):
            if k > cut:
                fc.update(y.iloc[k - 4 : k])
            errs.append(
                np.abs(
                    fc.predict(y.index[k], 96).to_numpy()[-4:] - y.iloc[k + 92 : k + 96].to_numpy()
                )
            )
        mae[name] = float(np.mean(errs))
    assert mae["sarimax"] < 0.85 * mae["persistence"]


def test_forecast_frame_keys() -> None:
    y = daily_series(3)
    fc = Persistence().fit(y.iloc[:100])
    p1 = fc.predict(y.index[100], 4)
    fc.update(y.iloc[100:101])
    p2 = fc.predict(y.index[101], 4)
    frame = ForecastFrame.from_predictions({y.index[100]: p1, y.index[101]: p2})
    assert frame.frame.index.names == ["issue_time_utc", "target_time_utc"]
    assert frame.at_issue(y.index[101])["lead_steps"].tolist() == [1, 2, 3, 4]
    by_issue = frame.for_target(y.index[102])
    assert by_issue["lead_steps"].tolist() == [3, 2]
