"""Conformance of every registered forecaster to the protocol and the time rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters import (
    BaseForecaster,
    Forecaster,
    LookaheadError,
    forecaster_names,
    make_forecaster,
)
from traces.grid import STEP, STEPS_PER_DAY, grid_index

N_DAYS = 12
FIT_DAYS = 9
HORIZON = STEPS_PER_DAY
BOUNDS = (0.0, 1.0)


def _truth() -> pd.Series:
    """A capacity-factor-like series in [0, 1] with a daily cycle and noise, hourly held."""
    idx = grid_index("2022-03-01", N_DAYS * STEPS_PER_DAY)
    rng = np.random.default_rng(7)
    hours = np.arange(N_DAYS * 24)
    hourly = 0.5 + 0.3 * np.sin(2 * np.pi * hours / 24) + 0.15 * rng.standard_normal(len(hours))
    return pd.Series(np.clip(np.repeat(hourly, 4), 0.0, 1.0), index=idx, name="wind_cf")


TRUTH = _truth()
FIT_END = FIT_DAYS * STEPS_PER_DAY
# Small fits keep the statistical models fast in tests.
_SARIMAX_FAST = {"order": (1, 0, 0), "daily_harmonics": 2, "weekly_harmonics": 0, "maxiter": 20}
FAST: dict[str, dict[str, Any]] = {
    "sarimax": _SARIMAX_FAST,
    "auto_sarimax": {"orders": ((1, 0, 0), (1, 0, 1)), "daily_harmonics_grid": (1, 2),
                     "weekly_harmonics": 0, "maxiter": 20},
    "ets": {"maxiter": 10, "calibration_warmup_days": 1.0},
    "combination": {"members": ("seasonal_naive_daily", "sarimax"),
                    "member_params": {"sarimax": _SARIMAX_FAST}},
    "combination_equal": {"members": ("persistence", "sarimax"),
                          "member_params": {"sarimax": _SARIMAX_FAST}},
    # Optional adapters (registered when their library is installed).
    "sf_autoarima": {"calibration_warmup_days": 1.0},
    "sf_mstl": {"model_params": {"season_length": [24]}, "calibration_warmup_days": 1.0},
    "sktime": {"calibration_warmup_days": 1.0},
}


def build(name: str, truth: pd.Series = TRUTH, **extra: Any) -> BaseForecaster:
    params: dict[str, Any] = {"bounds": BOUNDS} | FAST.get(name, {}) | extra
    if name in ("oracle", "noisy_oracle", "day_ahead_known"):
        params["truth"] = truth
    if name == "noisy_oracle":
        params.setdefault("error_level", 0.5)
        params.setdefault("seed", 3)
    return make_forecaster(name, **params)


def run_steps(fc: BaseForecaster, series: pd.Series, n_updates: int) -> list[pd.Series]:
    """Fit before FIT_END, then update one step at a time and predict at each issue."""
    fc.fit(series.iloc[:FIT_END])
    out = [fc.predict(series.index[FIT_END], HORIZON)]
    for k in range(n_updates):
        pos = FIT_END + k
        fc.update(series.iloc[pos : pos + 1])
        out.append(fc.predict(series.index[pos + 1], HORIZON))
    return out


ALL = forecaster_names()


def test_registry_has_the_required_names() -> None:
    assert set(ALL) >= {
        "oracle",
        "noisy_oracle",
        "persistence",
        "seasonal_naive_daily",
        "seasonal_naive_weekly",
        "sarimax",
        "ets",
    }
    with pytest.raises(ValueError, match="unknown forecaster 'arima'"):
        make_forecaster("arima")


@pytest.fixture(scope="module", params=ALL)
def stepped(request: pytest.FixtureRequest) -> tuple[str, list[pd.Series]]:
    """Each forecaster run for 6 steps (crossing an hour boundary) on the truth."""
    name = request.param
    return name, run_steps(build(name), TRUTH, 6)


def test_protocol_and_index(stepped: tuple[str, list[pd.Series]]) -> None:
    name, preds = stepped
    assert isinstance(build(name), Forecaster)
    for k, pred in enumerate(preds):
        issue = TRUTH.index[FIT_END + k]
        assert pred.index.equals(pd.date_range(issue, periods=HORIZON, freq=STEP))
        assert str(pred.index.tz) == "UTC"
        assert np.isfinite(pred.to_numpy()).all()


def test_bounds_respected(stepped: tuple[str, list[pd.Series]]) -> None:
    _, preds = stepped
    for pred in preds:
        assert (pred >= BOUNDS[0]).all() and (pred <= BOUNDS[1]).all()


@pytest.mark.parametrize("poison", ["nan", "garbage"])
def test_no_lookahead(stepped: tuple[str, list[pd.Series]], poison: str) -> None:
    """Replacing the future observations (all values from the issue time on) changes nothing.

    Every registered forecaster; those holding a truth keep the clean one (``build``):
    the oracles read it by design, ``day_ahead_known`` up to its publication boundary
    (poisoned beyond it in tests/test_known_ahead.py). When an hourly value is
    *published* is the loop's and the backtest's business (tests/test_backtest.py,
    test_closed_loop.py, test_fleet_closed_loop.py poison the running hour).
    """
    name, preds = stepped
    cut = FIT_END + 6  # the last issue time of the run
    future = TRUTH.copy()
    future.iloc[cut:] = np.nan if poison == "nan" else 1e6 * (1 + np.arange(len(TRUTH) - cut))
    again = run_steps(build(name), future, 6)
    for a, b in zip(preds, again, strict=True):
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


def test_deterministic(stepped: tuple[str, list[pd.Series]]) -> None:
    name, preds = stepped
    again = run_steps(build(name), TRUTH, 6)
    for a, b in zip(preds, again, strict=True):
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


@pytest.mark.parametrize("name", ALL)
def test_time_rule_errors(name: str) -> None:
    fc = build(name)
    with pytest.raises(RuntimeError):
        fc.predict(TRUTH.index[FIT_END], HORIZON)
    fc.fit(TRUTH.iloc[:FIT_END])
    with pytest.raises(LookaheadError, match="not after the cutoff"):
        fc.predict(TRUTH.index[FIT_END - 1], HORIZON)
    with pytest.raises(ValueError, match="contiguous"):
        fc.update(TRUTH.iloc[FIT_END + 1 : FIT_END + 2])
    with pytest.raises(ValueError, match="15-minute grid"):
        fc.predict(TRUTH.index[FIT_END] + pd.Timedelta(minutes=5), HORIZON)
    # A missed update is allowed: the forecast is made from the cutoff, longer lead.
    stale = fc.predict(TRUTH.index[FIT_END + 3], HORIZON)
    assert stale.index[0] == TRUTH.index[FIT_END + 3]
    assert fc.staleness_steps(TRUTH.index[FIT_END + 3]) == 3
    strict = build(name, max_stale_steps=0)
    strict.fit(TRUTH.iloc[:FIT_END])
    with pytest.raises(ValueError, match="at most 0 allowed"):
        strict.predict(TRUTH.index[FIT_END + 1], HORIZON)


@pytest.mark.parametrize("name", ALL)
def test_quantiles_ordered_bounded_and_indexed(name: str) -> None:
    fc = build(name)
    fc.fit(TRUTH.iloc[:FIT_END])
    issue = TRUTH.index[FIT_END]
    q = fc.predict_quantiles(issue, HORIZON, (0.05, 0.5, 0.95))
    assert q.index.equals(pd.date_range(issue, periods=HORIZON, freq=STEP))
    assert list(q.columns) == [0.05, 0.5, 0.95]
    values = q.to_numpy()
    assert (np.diff(values, axis=1) >= 0).all()
    assert (values >= BOUNDS[0]).all() and (values <= BOUNDS[1]).all()
    # The median is the point forecast (Gaussian in model space, monotone transform).
    np.testing.assert_allclose(q[0.5].to_numpy(), fc.predict(issue, HORIZON).to_numpy())
