"""Known-ahead regressors: the release rule, the feed, and no lookahead through them.

The day-ahead price of delivery day D is published at 11:00 America/New_York on
D - 1 (traces.grid.DayAheadRelease). A forecaster reads a fed value only where the
rule says it is published at the issue time; the backtest feeds each value once it
is published. Both are checked by poisoning everything published later.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasters import SarimaxForecaster, make_forecaster
from forecasters.backtest import rolling_origin_backtest
from forecasters.base import BaseForecaster
from forecasters.calendar import holiday_flags
from traces.grid import NYISO_DA_RELEASE, STEP, STEPS_PER_DAY, DayAheadRelease, Publication

HOURLY = Publication(pd.Timedelta(hours=1))
DAYS = 16


def _da_and_rt(seed: int = 4) -> tuple[pd.Series, pd.Series]:
    """Hourly DA with a daily cycle; RT = 1.5 DA + AR(1) noise, both held on quarters."""
    rng = np.random.default_rng(seed)
    hours = np.arange(DAYS * 24)
    da = 60 + 20 * np.sin(2 * np.pi * (hours - 8) / 24) + 8 * rng.standard_normal(len(hours))
    noise = np.zeros(len(hours))
    for k in range(1, len(hours)):
        noise[k] = 0.7 * noise[k - 1] + 3 * rng.standard_normal()
    idx = pd.date_range("2022-04-01T04:00Z", periods=DAYS * STEPS_PER_DAY, freq=STEP)
    da_q = pd.Series(np.repeat(da, 4), index=idx, name="lmp_da")
    rt_q = pd.Series(np.repeat(1.5 * da + noise, 4), index=idx, name="lmp")
    return da_q, rt_q


DA, RT = _da_and_rt()
FIT_END = 10 * STEPS_PER_DAY
MODELS: dict[str, dict[str, Any]] = {
    "sarimax": {"order": (1, 0, 0), "daily_harmonics": 1, "weekly_harmonics": 0,
                "maxiter": 20, "regressors": ("lmp_da",)},
    "direct_lad": {"regressors": ("lmp_da",), "fit_window_days": 7},
    "combination": {"members": ("persistence", "direct_lad"),
                    "member_params": {"direct_lad": {"regressors": ("lmp_da",),
                                                     "fit_window_days": 7}}},
}


def _build(name: str) -> BaseForecaster:
    return make_forecaster(name, calibration_warmup_days=1.0, **MODELS[name])


@pytest.mark.parametrize(
    ("now", "before"),
    [
        ("2022-04-05T14:45Z", "2022-04-06T04:00Z"),  # 10:45 EDT: today's prices only
        ("2022-04-05T15:00Z", "2022-04-07T04:00Z"),  # 11:00 EDT: tomorrow's are out
        ("2022-03-12T16:00Z", "2022-03-14T04:00Z"),  # 11:00 EST; 13 March has 23 h
        ("2022-11-05T15:00Z", "2022-11-07T05:00Z"),  # 11:00 EDT; 6 November has 25 h
    ],
)
def test_release_boundary_by_hand(now: str, before: str) -> None:
    release = DayAheadRelease(11.0, "America/New_York")
    assert release.published_before(pd.Timestamp(now)) == pd.Timestamp(before)
    targets = pd.date_range(pd.Timestamp(before) - STEP, periods=2, freq=STEP)
    assert release.published(pd.Timestamp(now), targets).tolist() == [True, False]
    # Each target's release time is at or before `now` exactly when it is published.
    released = release.release_time(targets) <= pd.Timestamp(now)
    assert released.tolist() == [True, False]


def test_release_rejects_bad_hour_and_zone() -> None:
    with pytest.raises(ValueError, match=r"hour_local must lie in \[0, 24\)"):
        DayAheadRelease(24.0)
    with pytest.raises(Exception, match="Not/AZone"):
        DayAheadRelease(11.0, "Not/AZone")


def test_update_known_names_what_it_reads() -> None:
    fc = make_forecaster("persistence")
    with pytest.raises(ValueError, match=r"no known-ahead regressor 'lmp_da' .*reads: none"):
        fc.update_known("lmp_da", DA)
    sar = _build("sarimax")
    assert set(sar.known_ahead) == {"lmp_da"}
    with pytest.raises(ValueError, match="contiguous 15-minute grid"):
        sar.update_known("lmp_da", DA.iloc[::2])


def test_a_regressor_never_fed_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'lmp_da' has no value published .*update_known"):
        _build("sarimax").fit(RT.iloc[:FIT_END])


def _forecasts(fc: BaseForecaster, da: pd.Series, issues: list[int]) -> list[np.ndarray]:
    fc.update_known("lmp_da", da)
    fc.fit(RT.iloc[:FIT_END])
    out = []
    fed = FIT_END
    for pos in issues:
        if pos > fed:
            fc.update(RT.iloc[fed:pos])
            fed = pos
        out.append(fc.predict(RT.index[pos], STEPS_PER_DAY).to_numpy())
        out.append(fc.predict_quantiles(RT.index[pos], STEPS_PER_DAY, (0.1, 0.9)).to_numpy())
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("poison", ["nan", "garbage"])
def test_values_fed_early_are_not_read_early(name: str, poison: str) -> None:
    """The whole DA series is fed at once; replacing what is published after the issue
    time leaves every forecast bit-identical (the forecaster obeys the release rule).
    Issue times 10:00, 11:00 (tomorrow's prices just out) and 23:00 EDT."""
    issues = [FIT_END + 4 * h for h in (6, 7, 19)]  # 10:00, 11:00, 23:00 EDT (04:00Z start)
    clean = _forecasts(_build(name), DA, issues)
    last_issue = RT.index[issues[-1]]
    boundary = NYISO_DA_RELEASE.published_before(last_issue)
    for k, pos in enumerate(issues):
        cut = NYISO_DA_RELEASE.published_before(RT.index[pos])
        poisoned = DA.copy()
        late = poisoned.index >= cut
        poisoned[late] = np.nan if poison == "nan" else 1e6 * (1 + np.arange(late.sum()))
        again = _forecasts(_build(name), poisoned, issues[: k + 1])
        for a, b in zip(clean[: 2 * (k + 1)], again, strict=True):
            np.testing.assert_array_equal(a, b)
    # The check can fail: the next day's prices do change the 11:00 forecast.
    assert boundary > RT.index[issues[-1]]


@pytest.mark.parametrize("name", ["sarimax", "direct_lad"])
def test_backtest_feeds_the_day_ahead_price_as_published(name: str) -> None:
    """Backtest with the DA regressor: forecasts issued up to t are bit-identical when
    every DA value published after t is garbage (the feed hands only published ones)."""
    start, end = RT.index[FIT_END], RT.index[FIT_END] + pd.Timedelta(hours=30)

    def run(da: pd.Series) -> Any:
        return rolling_origin_backtest(_build(name), RT, start, end, stride_steps=4,
                                       publication=HOURLY,
                                       known_ahead={"lmp_da": (da, NYISO_DA_RELEASE)})

    clean = run(DA)
    for hours in (6, 7, 20):  # issue times 10:00, 11:00, 00:00 EDT
        cut = start + pd.Timedelta(hours=hours)
        poisoned = DA.copy()
        late = poisoned.index >= NYISO_DA_RELEASE.published_before(cut)
        poisoned[late] = 1e6 * (1 + np.arange(late.sum()))
        again = run(poisoned)
        upto = clean.issue_times <= cut
        np.testing.assert_array_equal(again.predictions[upto], clean.predictions[upto])
        np.testing.assert_array_equal(again.quantiles[upto], clean.quantiles[upto])
        if hours == 6:
            # The check can fail: from 11:00 on, tomorrow's (poisoned) prices are read.
            assert not np.array_equal(again.predictions[~upto], clean.predictions[~upto])


def test_backtest_needs_the_regressors_the_forecaster_reads() -> None:
    with pytest.raises(ValueError, match=r"reads the known-ahead regressor\(s\) lmp_da"):
        rolling_origin_backtest(_build("direct_lad"), RT, RT.index[FIT_END],
                                publication=HOURLY)


def test_feed_hands_each_published_interval_once() -> None:
    """A spy records every update_known block and, at each predict, what was fed: the
    blocks are contiguous (each interval once) and at issue time t the feed reaches
    exactly the release boundary of t (all that is published, nothing more)."""
    fc = _build("direct_lad")
    blocks: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    seen_at_issue: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    original_known, original_predict = fc.update_known, fc.predict

    def spy(name: str, values: pd.Series) -> BaseForecaster:
        blocks.append((values.index[0], values.index[-1]))
        return original_known(name, values)

    def predict(issue_time: pd.Timestamp | str, horizon: int) -> pd.Series:
        seen_at_issue.append((pd.Timestamp(issue_time), blocks[-1][1]))
        return original_predict(issue_time, horizon)

    fc.update_known = spy  # type: ignore[method-assign]
    fc.predict = predict  # type: ignore[method-assign]
    rolling_origin_backtest(fc, RT, RT.index[FIT_END], RT.index[FIT_END] + pd.Timedelta(days=2),
                            stride_steps=4, levels=None, publication=HOURLY,
                            known_ahead={"lmp_da": (DA, NYISO_DA_RELEASE)})
    assert len(blocks) >= 3 and blocks[0][0] == DA.index[0]
    for (_, last), (nxt, _) in itertools.pairwise(blocks):
        assert nxt == last + STEP
    for issue, fed_until in seen_at_issue:
        assert fed_until == NYISO_DA_RELEASE.published_before(issue) - STEP


def test_sarimax_learns_the_day_ahead_coefficient() -> None:
    """RT = 1.5 DA + AR(1): the exog coefficient is ~1.5 and the DA model beats the one
    without it at a 12-h lead."""
    with_da = _build("sarimax")
    assert isinstance(with_da, SarimaxForecaster)
    with_da.update_known("lmp_da", DA)
    with_da.fit(RT.iloc[:FIT_END])
    beta = with_da._kf.beta  # Fourier (2 columns) then the DA
    assert beta[-1] == pytest.approx(1.5, abs=0.1)
    params = {k: v for k, v in MODELS["sarimax"].items() if k != "regressors"}
    without = make_forecaster("sarimax", calibration="model", **params).fit(RT.iloc[:FIT_END])
    errs: dict[str, list[float]] = {"with": [], "without": []}
    for day in range(4):
        issue = RT.index[FIT_END] + pd.Timedelta(days=day)
        pos = FIT_END + day * STEPS_PER_DAY
        if day:
            with_da.update(RT.iloc[pos - STEPS_PER_DAY : pos])
            without.update(RT.iloc[pos - STEPS_PER_DAY : pos])
        truth = RT.iloc[pos + 47]
        errs["with"].append(abs(with_da.predict(issue, 48).iloc[-1] - truth))
        errs["without"].append(abs(without.predict(issue, 48).iloc[-1] - truth))
    assert np.mean(errs["with"]) < 0.5 * np.mean(errs["without"]), errs


def test_holiday_flags_use_the_local_date() -> None:
    starts = pd.DatetimeIndex(["2022-05-30T03:00Z", "2022-05-30T04:00Z", "2022-05-31T03:00Z",
                               "2022-05-31T04:00Z"])
    # 23:00 EDT 29 May, 00:00 EDT 30 May (Memorial Day), 23:00 EDT 30 May, 00:00 EDT 31 May.
    assert holiday_flags(starts, "US", "America/New_York").tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="unknown country code 'XX'"):
        holiday_flags(starts, "XX", "UTC")
    with pytest.raises(ValueError, match="unknown country code 'XX'"):
        make_forecaster("sarimax", holidays="XX")
