"""KnownAhead: published day-ahead values are used, later ones are forecast.

Publication rule (NYISO, America/New_York): the prices of delivery day D are
published at 11:00 local on D - 1. Hand-checked counts below use the 2022 DST days:
13 March (23 h, spring forward) and 6 November (25 h, fall back).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters import KnownAhead, make_forecaster
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.runner import build_policy, prepare
from mpc_dc.site.scenario import (
    Scenario,
    controller_variant,
    default_scenario,
    example_path,
    load_scenario,
    with_overrides,
)
from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY, grid_index

H = 2 * STEPS_PER_DAY


def _series(start: str, days: int) -> pd.Series:
    """Distinct values (0, 1, 2, ...) so every interval is identifiable."""
    idx = grid_index(start, days * STEPS_PER_DAY)
    return pd.Series(np.arange(len(idx), dtype=float), index=idx, name="price")


SPRING = _series("2022-03-08T05:00:00Z", 8)  # local midnight 8 March (EST)
FALL = _series("2022-11-01T04:00:00Z", 8)  # local midnight 1 November (EDT)


def _pos(series: pd.Series, when: pd.Timestamp) -> int:
    """Position of the interval starting at ``when``."""
    return int(series.index.get_indexer(pd.DatetimeIndex([when]))[0])


def _wrapper(truth: pd.Series, inner: str = "persistence", **inner_params: Any) -> KnownAhead:
    fc = make_forecaster("day_ahead_known", truth=truth, inner=inner, inner_params=inner_params)
    assert isinstance(fc, KnownAhead)
    return fc


def _fitted(truth: pd.Series, issue: pd.Timestamp, inner: str = "persistence") -> KnownAhead:
    fc = _wrapper(truth, inner)
    fc.fit(truth.loc[: issue - STEP])
    return fc


@pytest.mark.parametrize(
    ("issue_utc", "last_day"),
    [
        ("2022-03-12T15:45:00Z", "2022-03-12"),  # 10:45 EST: only today
        ("2022-03-12T16:00:00Z", "2022-03-13"),  # 11:00 EST: tomorrow published
        ("2022-03-13T14:45:00Z", "2022-03-13"),  # 10:45 EDT on the 23-h day
        ("2022-03-13T15:00:00Z", "2022-03-14"),  # 11:00 EDT on the 23-h day
        ("2022-11-06T15:45:00Z", "2022-11-06"),  # 10:45 EST on the 25-h day
        ("2022-11-06T16:00:00Z", "2022-11-07"),  # 11:00 EST on the 25-h day
        ("2022-03-13T04:45:00Z", "2022-03-13"),  # 23:45 EST 12 March: published since 11:00
        ("2022-03-13T05:00:00Z", "2022-03-13"),  # 00:00 EST 13 March (DST day): today only
    ],
)
def test_last_published_day_local_wall_clock(issue_utc: str, last_day: str) -> None:
    fc = _wrapper(SPRING)
    assert fc.last_published_day(issue_utc) == pd.Timestamp(last_day)


@pytest.mark.parametrize(
    ("truth", "issue_utc", "n_published"),
    [
        # 11:00 EST 12 March: rest of 12 March (13 h) + 13 March (23 h) = 36 h.
        (SPRING, "2022-03-12T16:00:00Z", 4 * (13 + 23)),
        # 10:45 EST 12 March: rest of 12 March only, 13 h 15 min.
        (SPRING, "2022-03-12T15:45:00Z", 4 * 13 + 1),
        # 11:00 EDT 5 November: rest of 5 November (13 h) + 6 November (25 h) = 38 h.
        (FALL, "2022-11-05T15:00:00Z", 4 * (13 + 25)),
        # 11:00 EST on the 25-h day: rest of 6 November (25 - 12 = 13 h) + 7 November (24 h).
        (FALL, "2022-11-06T16:00:00Z", 4 * (13 + 24)),
    ],
)
def test_truth_until_the_boundary_inner_beyond(
    truth: pd.Series, issue_utc: str, n_published: int
) -> None:
    issue = pd.Timestamp(issue_utc)
    fc = _fitted(truth, issue)
    mask = fc.published(issue, grid_index(issue, H))
    assert mask.sum() == n_published and mask[:n_published].all()
    pred = fc.predict(issue, H).to_numpy()
    first = _pos(truth, issue)
    np.testing.assert_array_equal(pred[:n_published], truth.to_numpy()[first : first + n_published])
    # Beyond the boundary: persistence, i.e. the last observed value.
    np.testing.assert_array_equal(pred[n_published:], truth.to_numpy()[first - 1])
    q = fc.predict_quantiles(issue, H, (0.1, 0.5, 0.9))
    inner_q = fc.inner.predict_quantiles(issue, H, (0.1, 0.5, 0.9)).to_numpy()
    spread = q[0.9].to_numpy() - q[0.1].to_numpy()
    assert (spread[:n_published] == 0).all()
    np.testing.assert_array_equal(q.to_numpy()[n_published:], inner_q[n_published:])
    np.testing.assert_array_equal(q[0.5].to_numpy(), pred)


def _boundary(fc: KnownAhead, issue: pd.Timestamp) -> int:
    """Position in the truth of the first interval not published at ``issue``."""
    mask = fc.published(issue, grid_index(issue, 3 * STEPS_PER_DAY))
    return _pos(fc.truth, issue) + int(mask.sum())


def _run(series: pd.Series, fit_end: int, n_steps: int, inner: str) -> list[np.ndarray]:
    """Fit before ``fit_end``, update one step at a time; points and quantiles per issue."""
    fc = _wrapper(series, inner, **FAST.get(inner, {}))
    fc.fit(series.iloc[:fit_end])
    out = []
    for k in range(n_steps + 1):
        if k:
            fc.update(series.iloc[fit_end + k - 1 : fit_end + k])
        issue = series.index[fit_end + k]
        out += [fc.predict(issue, H).to_numpy(), fc.predict_quantiles(issue, H).to_numpy()]
    return out


FAST: dict[str, dict[str, Any]] = {
    "sarimax": {"order": (1, 0, 0), "daily_harmonics": 2, "weekly_harmonics": 0, "maxiter": 20}
}
NOISY = SPRING + 10 * np.sin(np.arange(len(SPRING)) / 7.0)


@pytest.mark.parametrize("inner", ["persistence", "seasonal_naive_daily", "sarimax"])
@pytest.mark.parametrize(
    "last_issue",
    [
        "2022-03-12T16:00:00Z",  # first issue at which 13 March is published
        "2022-03-12T15:45:00Z",  # last issue before it is
        "2022-03-13T15:00:00Z",  # 11:00 EDT on the DST day
    ],
)
@pytest.mark.parametrize("poison", ["nan", "garbage"])
def test_values_published_after_the_issue_are_never_read(
    inner: str, last_issue: str, poison: str
) -> None:
    """Poison the truth from the publication boundary of the last issue on: identical."""
    issue = pd.Timestamp(last_issue)
    n_steps = 5
    fit_end = _pos(NOISY, issue) - n_steps
    cut = _boundary(_wrapper(NOISY), issue)
    poisoned = NOISY.copy()
    tail = len(NOISY) - cut
    poisoned.iloc[cut:] = np.nan if poison == "nan" else 1e6 * (1 + np.arange(tail))
    a = _run(NOISY, fit_end, n_steps, inner)
    b = _run(poisoned, fit_end, n_steps, inner)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_values_published_before_the_issue_are_used() -> None:
    """The converse: changing the last published interval changes the forecast."""
    issue = pd.Timestamp("2022-03-12T16:00:00Z")
    cut = _boundary(_wrapper(SPRING), issue)
    changed = SPRING.copy()
    changed.iloc[cut - 1] = -5.0
    before = _fitted(SPRING, issue).predict(issue, H)
    after = _fitted(changed, issue).predict(issue, H)
    diff = np.flatnonzero(before.to_numpy() != after.to_numpy())
    assert list(diff) == [cut - 1 - _pos(SPRING, issue)]


def test_missing_published_value_falls_back_to_inner() -> None:
    issue = pd.Timestamp("2022-03-12T16:00:00Z")
    gappy = SPRING.copy()
    gappy.iloc[_pos(gappy, issue) + 4] = np.nan
    pred = _fitted(gappy, issue).predict(issue, H).to_numpy()
    assert pred[4] == SPRING.loc[issue - STEP]  # persistence
    assert pred[3] == SPRING.loc[issue + 3 * STEP]


def test_inner_not_called_when_all_published() -> None:
    issue = pd.Timestamp("2022-03-12T16:00:00Z")  # 36 h published
    fc = _fitted(SPRING, issue)

    def fail(*_: Any, **__: Any) -> Any:
        raise AssertionError("inner forecaster called")

    fc.inner.predict = fail  # type: ignore[method-assign]
    fc.inner.predict_quantiles = fail  # type: ignore[method-assign]
    fc.inner.quantile_values = fail  # type: ignore[method-assign]
    assert np.isfinite(fc.predict(issue, STEPS_PER_DAY).to_numpy()).all()
    assert np.isfinite(fc.predict_quantiles(issue, STEPS_PER_DAY).to_numpy()).all()


def test_deterministic_and_params() -> None:
    a = _run(NOISY, 4 * STEPS_PER_DAY, 6, "seasonal_naive_daily")
    b = _run(NOISY, 4 * STEPS_PER_DAY, 6, "seasonal_naive_daily")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    params = _wrapper(SPRING).get_params()
    assert params["inner"] == "persistence"
    assert params["publication_hour_local"] == 11.0 and params["tz"] == "America/New_York"
    with pytest.raises(ValueError, match="publication_hour_local"):
        make_forecaster("day_ahead_known", truth=SPRING, publication_hour_local=24)


# ------------------------------------------------------------------ scenario


PRICE_CHANNEL = "price_usd_per_mwh[rcdc]"
"""The price channel of the RCDC examples' campus."""


def _small(name: str, **overrides: Any) -> Scenario:
    """An example scenario on the synthetic generator: 1 day, 3 days of history."""
    return with_overrides(load_scenario(example_path(name)), {
        "run.days": 1.0, "run.history_days": 3, "data.source": "synthetic", **overrides},
        "<test>")


def _forecasters(scenario: Scenario, exo: Any) -> dict[str, Any]:
    policy = build_policy(scenario, exo)
    assert isinstance(policy, MpcPolicy)
    return policy.forecasts.forecasters


def test_retail_example_wraps_the_price_forecaster() -> None:
    scenario = _small("rcdc_nyiso_retail")
    assert scenario.controller.price_known_ahead
    scenario, exo = prepare(controller_variant(scenario, "persistence"))
    forecasters = _forecasters(scenario, exo)
    price = forecasters[PRICE_CHANNEL]
    assert isinstance(price, KnownAhead) and price.inner.name == "persistence"
    assert not any(isinstance(f, KnownAhead) for c, f in forecasters.items() if c != PRICE_CHANNEL)
    # Midnight issue, 24-h horizon: the whole day is published.
    np.testing.assert_array_equal(
        price.predict(exo.start, STEPS_PER_DAY).to_numpy(),
        exo.truth(PRICE_CHANNEL).to_numpy()[exo.history_steps:][:STEPS_PER_DAY],
    )
    # The Oracle is not wrapped; neither is anything when the key is off.
    perfect = _forecasters(controller_variant(scenario, "perfect"), exo)
    assert not isinstance(perfect[PRICE_CHANNEL], KnownAhead)
    off = replace(scenario, controller=replace(scenario.controller, price_known_ahead=False))
    assert not isinstance(_forecasters(off, exo)[PRICE_CHANNEL], KnownAhead)


def test_wholesale_ignores_the_key() -> None:
    scenario = controller_variant(
        _small("rcdc_nyiso_wholesale", **{"controller.price_known_ahead": True}), "persistence")
    scenario, exo = prepare(scenario)
    assert not isinstance(_forecasters(scenario, exo)[PRICE_CHANNEL], KnownAhead)


def test_day_ahead_known_is_refused_as_the_forecaster_of_every_channel() -> None:
    """It needs a published truth per channel: one line naming the key, not a TypeError."""
    with pytest.raises(ConfigError, match=r"controller\.price_known_ahead"):
        with_overrides(default_scenario(), {"controller.forecaster": "day_ahead_known"}, "<t>")


def test_published_values_that_miss_the_series_get_a_calibrated_band() -> None:
    """Day-ahead prices as the forecast of a real-time price that scatters around them
    (Student-t(4) noise): the published targets' 0.9 quantile is the day-ahead price
    plus the conformal quantile of its own errors and covers ~0.9 of the real-time
    prices. With a zero spread it covered about half (0.634 on the NYISO zone-F
    real-time prices, April-June 2022). Where the published values are the series
    (``test_truth_until_the_boundary_inner_beyond``) the band stays zero-wide."""
    from forecasters.backtest import BACKTEST_LEVELS, rolling_origin_backtest
    from traces.grid import Publication

    rng = np.random.default_rng(3)
    idx = grid_index("2022-04-01T04:00:00Z", 30 * STEPS_PER_DAY)
    hour = np.arange(len(idx)) / 4.0
    day_ahead = pd.Series(40 + 15 * np.sin(2 * np.pi * hour / 24), index=idx)
    real_time = day_ahead + 5.0 * rng.standard_t(4, len(idx))
    fc = _wrapper(day_ahead)
    res = rolling_origin_backtest(fc, real_time, idx[14 * STEPS_PER_DAY],
                                  publication=Publication(), stride_steps=7,
                                  levels=BACKTEST_LEVELS)
    published = np.array([fc.published(t, grid_index(t, res.horizon))
                          for t in res.issue_times])
    q = {lv: res.quantiles[:, :, list(res.levels).index(lv)][published]
         for lv in (0.05, 0.9, 0.95)}
    truth = res.truth[published]
    assert 0.86 <= (truth <= q[0.9]).mean() <= 0.94
    assert 0.86 <= ((truth >= q[0.05]) & (truth <= q[0.95])).mean() <= 0.94
