"""The models added for issue 17: direct LAD, combination, automatic order selection,
NoisyOracle's bias and autocorrelation, and the library adapters (when installed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters import (
    AutoSarimaxForecaster,
    Combination,
    DirectLad,
    NoisyOracle,
    make_forecaster,
)
from forecasters.adapters import available
from forecasters.base import CALIBRATION_STEPS
from forecasters.direct import lad_fit
from forecasters.presets import make_for
from traces.grid import STEP, grid_index


def _daily(days: int, seed: int = 0, noise: float = 0.2) -> pd.Series:
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    hourly = 5 + np.sin(2 * np.pi * hours / 24) + noise * rng.standard_normal(len(hours))
    return pd.Series(np.repeat(hourly, 4), index=grid_index("2022-04-04", days * 96))


# ------------------------------------------------------------------ direct LAD
def test_lad_fit_exact_and_robust_to_outliers() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(200), rng.normal(size=200)])
    y = x @ np.array([2.0, -3.0])
    y_out = y.copy()
    y_out[:30] += 1000.0  # 15 % gross outliers: LAD ignores them, least squares does not
    beta = lad_fit(np.stack([x, x]), np.stack([y, y_out]), np.ones((2, 200)))
    np.testing.assert_allclose(beta[0], [2.0, -3.0], atol=1e-6)
    np.testing.assert_allclose(beta[1], [2.0, -3.0], atol=1e-3)
    ols = np.linalg.lstsq(x, y_out, rcond=None)[0]
    assert abs(ols[0] - 2.0) > 100


def test_direct_lad_learns_a_pure_daily_cycle() -> None:
    """Noise-free daily cycle: the seasonal feature explains it exactly at every lead."""
    y = _daily(12, noise=0.0)
    fc = make_forecaster("direct_lad", calibration="model").fit(y.iloc[: 9 * 96])
    pred = fc.predict(y.index[9 * 96], 96).to_numpy()
    np.testing.assert_allclose(pred, y.iloc[9 * 96 : 10 * 96].to_numpy(), atol=1e-6)
    assert isinstance(fc, DirectLad) and fc.n_refits == 1


def test_direct_lad_refits_on_its_cadence() -> None:
    y = _daily(12)
    fc = make_forecaster("direct_lad", refit_every_hours=6, calibration="model")
    fc.fit(y.iloc[: 9 * 96])
    for hour in range(24):  # hour by hour, as published
        fc.update(y.iloc[9 * 96 + 4 * hour : 9 * 96 + 4 * hour + 4])
    assert isinstance(fc, DirectLad) and fc.n_refits == 1 + 24 // 6


# ----------------------------------------------------------------- combination
def _members() -> list[Any]:
    return [make_forecaster("persistence", calibration="model"),
            make_forecaster("seasonal_naive_daily", calibration="model")]


def test_equal_combination_is_the_mean_of_the_members() -> None:
    y = _daily(12)
    comb = make_forecaster("combination_equal", members=_members()).fit(y.iloc[: 10 * 96])
    solo = [m.fit(y.iloc[: 10 * 96]) for m in _members()]
    issue = y.index[10 * 96]
    expected = np.mean([m.predict(issue, 96).to_numpy() for m in solo], axis=0)
    np.testing.assert_allclose(comb.predict(issue, 96).to_numpy(), expected)


def test_inverse_error_weights_by_hand() -> None:
    """Persistence is poor at long leads on a daily cycle, seasonal naive good: weights
    are 1/MAE normalised per lead, from the recorded errors of the window."""
    y = _daily(14)
    comb = make_forecaster("combination", members=_members(), window_days=3.0)
    assert isinstance(comb, Combination)
    comb.fit(y.iloc[: 12 * 96])
    table = comb.weight_table()
    np.testing.assert_allclose(table.sum(axis=0), 1.0)
    book = comb.score_book
    assert book is not None
    errors = book.errors(comb.observations)[-72:, 1:, :]
    mae = np.nanmean(np.abs(errors), axis=0)
    inv = 1.0 / mae
    np.testing.assert_allclose(table, inv / inv.sum(axis=0), rtol=1e-12)
    assert table[1, 48] > 0.6 > table[0, 48]  # 12 h: seasonal naive dominates
    issue = y.index[12 * 96]
    members = [m.predict(issue, 96).to_numpy() for m in comb.members]
    lead = np.arange(1, 97)
    expected = table[0, lead - 1] * members[0] + table[1, lead - 1] * members[1]
    np.testing.assert_allclose(comb.predict(issue, 96).to_numpy(), expected)
    assert table.shape == (2, CALIBRATION_STEPS)


def test_combination_forwards_feeds_and_needs_two_members() -> None:
    comb = make_forecaster("combination", members=("persistence", "direct_lad"),
                           member_params={"direct_lad": {"regressors": ("lmp_da",)}})
    assert set(comb.known_ahead) == {"lmp_da"}
    da = _daily(3)
    comb.update_known("lmp_da", da)
    assert isinstance(comb, Combination)
    np.testing.assert_array_equal(
        comb.members[1].known_values("lmp_da", da.index[-1], da.index[:4]), da.iloc[:4])
    with pytest.raises(ValueError, match="at least two members"):
        Combination([make_forecaster("persistence")])


def test_preset_combination_builds_the_quantity_members() -> None:
    comb = make_for("combination", "price", available=("lmp_da",))
    assert isinstance(comb, Combination)
    assert [m.name for m in comb.members] == ["direct_lad", "sarimax"]
    assert all(m.known_ahead for m in comb.members) and comb.known_ahead
    assert make_for("combination", "price").known_ahead == {}


# ------------------------------------------------------- automatic order selection
def test_auto_sarimax_selects_by_bic_and_reselects_on_cadence() -> None:
    """An AR(2) series: BIC prefers (2, 0, 0) to (1, 0, 0); the selection is redone
    every select_every_hours and kept (with warm refits) between."""
    rng = np.random.default_rng(5)
    n = 24 * 14
    e = rng.standard_normal(n)
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 1.2 * x[t - 1] - 0.5 * x[t - 2] + e[t]
    y = pd.Series(np.repeat(x, 4), index=grid_index("2022-04-04", 4 * n))
    fc = make_forecaster("auto_sarimax", orders=((1, 0, 0), (2, 0, 0)),
                         daily_harmonics_grid=(1,), weekly_harmonics=0, refit_every_hours=24,
                         select_every_hours=48, calibration="model")
    assert isinstance(fc, AutoSarimaxForecaster)
    fc.fit(y.iloc[: 4 * 24 * 10])
    for hour in range(24 * 10, 24 * 13):
        fc.update(y.iloc[4 * hour : 4 * hour + 4])
    sel = fc.selections
    assert sel[0]["order"] == (2, 0, 0)
    assert fc.n_refits == 1 + 3 and len(sel) == 1 + 1  # refits at 24, 48, 72 h; select at 48


# --------------------------------------------------------------- noisy oracle
def _truth() -> pd.Series:
    return _daily(40, seed=3)


def test_noisy_oracle_random_walk_default_is_unchanged() -> None:
    """phi = 1, bias = 0: the error path of the old formula, bit for bit."""
    truth = _truth()
    fc = NoisyOracle(truth, error_level=0.4, seed=9)
    issue = truth.index[500]
    steps = int(issue.value // STEP.value)
    z = np.random.default_rng([9, steps]).standard_normal(96)
    old = 0.4 * fc.error_scale * np.cumsum(z) / np.sqrt(96)
    np.testing.assert_array_equal(fc.error_path(issue, 96), old)


@pytest.mark.parametrize("phi", [0.0, 0.9, 1.0])
def test_noisy_oracle_spread_autocorrelation_and_bias(phi: float) -> None:
    """Monte Carlo over issue times: std by lead = lead_std, lag-1 correlation along the
    lead ~ phi (for a stationary AR(1) path at long leads), mean = bias * sigma."""
    truth = _truth()
    fc = NoisyOracle(truth, error_level=0.5, seed=1, bias=0.25, autocorrelation=phi)
    paths = np.array([fc.error_path(t, 96) for t in truth.index[:3000]])
    sigma = fc.error_scale
    np.testing.assert_allclose(paths.mean(axis=0)[[0, 47, 95]], 0.25 * sigma, atol=0.06 * sigma)
    np.testing.assert_allclose(paths.std(axis=0)[[0, 47, 95]], fc.lead_std(96)[[0, 47, 95]],
                               rtol=0.06)
    assert fc.lead_std(96)[-1] == pytest.approx(0.5 * sigma)
    if phi < 1:
        corr = np.corrcoef(paths[:, 80], paths[:, 81])[0, 1]
        assert corr == pytest.approx(phi, abs=0.05)


def test_noisy_oracle_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match=r"autocorrelation must lie in \[0, 1\]"):
        NoisyOracle(_truth(), autocorrelation=1.5)
    zero = NoisyOracle(_truth(), error_level=0.0, bias=0.0).fit(_truth().iloc[:100])
    issue = _truth().index[100]
    np.testing.assert_array_equal(zero.predict(issue, 8).to_numpy(),
                                  _truth().iloc[100:108].to_numpy())


# --------------------------------------------------------------------- adapters
@pytest.mark.parametrize(("library", "name"), [("statsforecast", "sf_autoets"),
                                               ("statsforecast", "sf_autoarima"),
                                               ("sktime", "sktime")])
def test_adapter_forecasts_a_daily_cycle(library: str, name: str) -> None:
    if not available(library):
        pytest.skip(f"{library} not installed (pip install mpc-dc[{library}])")
    y = _daily(12)
    fc = make_forecaster(name, calibration_warmup_days=1.0).fit(y.iloc[: 9 * 96])
    for k in range(8):  # two hours of steps: the library model takes the new hours
        fc.update(y.iloc[9 * 96 + k : 9 * 96 + k + 1])
    issue = y.index[9 * 96 + 8]
    pred = fc.predict(issue, 96).to_numpy()
    truth = y.iloc[9 * 96 + 8 : 10 * 96 + 8].to_numpy()
    persistence = np.full(96, y.iloc[9 * 96 + 7])
    assert np.mean(np.abs(pred - truth)) < 0.6 * np.mean(np.abs(persistence - truth))
