"""The 15-min grid: resampling rules, gap finding and gap policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traces.errors import TraceError
from traces.grid import (
    STEP,
    STEP_H,
    STEPS_PER_DAY,
    Gap,
    GapPolicy,
    Resample,
    TraceMetadata,
    fill_gaps,
    find_gaps,
    grid_index,
    infer_resolution,
    intervals_per_local_day,
    local_days,
    to_grid,
)

HOUR = pd.Timedelta(hours=1)
START = pd.Timestamp("2022-03-01 00:00", tz="UTC")


def hourly(values: list[float], start: pd.Timestamp = START) -> pd.DataFrame:
    index = pd.date_range(start, periods=len(values), freq=HOUR, name="interval_start_utc")
    return pd.DataFrame({"x": values}, index=index)


def test_constants() -> None:
    assert pd.Timedelta(minutes=15) == STEP and STEP_H == 0.25 and STEPS_PER_DAY == 96


def test_hold_conserves_energy() -> None:
    df = hourly([10.0, 20.0, 40.0])  # MW, hourly averages
    grid = to_grid(df, Resample.HOLD)
    assert len(grid) == 12 and grid.index.name == "interval_start_utc"
    assert list(grid["x"].iloc[:4]) == [10.0] * 4
    assert grid["x"].sum() * STEP_H == pytest.approx(df["x"].sum() * 1.0)  # MWh


def test_split_conserves_sum_exactly() -> None:
    df = hourly([4.0, 8.0, 0.0, 2.0])
    grid = to_grid(df, Resample.SPLIT)
    assert list(grid["x"].iloc[:4]) == [1.0] * 4
    assert grid["x"].sum() == df["x"].sum()


def test_interpolate_between_midpoints_and_flat_at_ends() -> None:
    grid = to_grid(hourly([0.0, 4.0]), Resample.INTERPOLATE)
    # Source midpoints at 00:30 (0) and 01:30 (4); targets at 00:07:30 ... 01:52:30.
    expected = [0.0, 0.0, 0.5, 1.5, 2.5, 3.5, 4.0, 4.0]
    assert np.allclose(grid["x"].to_numpy(), expected)


def test_interpolate_never_fills_a_source_gap() -> None:
    grid = to_grid(hourly([1.0, np.nan, 3.0]), Resample.INTERPOLATE)
    assert grid["x"].iloc[4:8].isna().all()
    assert grid["x"].iloc[:4].notna().all() and grid["x"].iloc[8:].notna().all()


@pytest.mark.parametrize("rule", [Resample.HOLD, Resample.SPLIT])
def test_upsampling_keeps_source_gaps(rule: Resample) -> None:
    grid = to_grid(hourly([1.0, np.nan, 3.0]), rule)
    assert grid["x"].isna().sum() == 4


def test_mean_and_sum_downsampling() -> None:
    index = pd.date_range(START, periods=6, freq="5min")
    df = pd.DataFrame({"u": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "n": [1.0] * 6}, index=index)
    grid = to_grid(df, {"u": Resample.MEAN, "n": Resample.SUM})
    assert list(grid["u"]) == [2.0, 5.0] and list(grid["n"]) == [3.0, 3.0]


def test_downsampling_with_upsampling_rule_is_refused() -> None:
    index = pd.date_range(START, periods=3, freq="5min")
    with pytest.raises(ValueError, match="cannot downsample"):
        to_grid(pd.DataFrame({"u": [1.0, 2.0, 3.0]}, index=index), Resample.HOLD)


def test_to_grid_refuses_naive_index_and_bad_resolution() -> None:
    naive = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.date_range("2022-01-01", periods=2, freq="h"))
    with pytest.raises(TraceError, match="expected a UTC DatetimeIndex"):
        to_grid(naive, Resample.HOLD)
    odd = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.date_range(START, periods=2, freq="20min"))
    with pytest.raises(TraceError, match="is not a multiple of 15 minutes"):
        to_grid(odd, Resample.HOLD)
    with pytest.raises(ValueError, match="no resampling rule"):
        to_grid(hourly([1.0, 2.0]), {"y": Resample.HOLD})


def test_to_grid_second_resolution_index() -> None:
    """pandas 3 parses to second/microsecond units; resolution must still be right."""
    df = hourly([1.0, 2.0, 3.0])
    df.index = pd.DatetimeIndex(df.index).as_unit("s")
    assert infer_resolution(pd.DatetimeIndex(df.index), "x") == HOUR
    assert len(to_grid(df, Resample.HOLD)) == 12


def test_find_gaps() -> None:
    index = pd.DatetimeIndex([START, START + HOUR, START + 4 * HOUR, START + 6 * HOUR])
    gaps = find_gaps(index, HOUR)
    assert gaps == [
        Gap(START + 2 * HOUR, START + 4 * HOUR, 2),
        Gap(START + 5 * HOUR, START + 6 * HOUR, 1),
    ]
    assert str(gaps[0]) == "2022-03-01 02:00Z..2022-03-01 04:00Z (2)"
    assert find_gaps(index[:1], HOUR) == []
    assert find_gaps(index.as_unit("s"), HOUR) == gaps


def _with_nans(pattern: str) -> pd.DataFrame:
    values = [np.nan if c == "_" else float(i) for i, c in enumerate(pattern)]
    return pd.DataFrame({"x": values}, index=grid_index(START, len(values)))


def test_gap_policy_leave_and_zero() -> None:
    df = _with_nans("x__x")
    assert fill_gaps(df, GapPolicy.LEAVE)["x"].isna().sum() == 2
    assert list(fill_gaps(df, GapPolicy.ZERO)["x"]) == [0.0, 0.0, 0.0, 3.0]


def test_gap_policy_hold_and_interpolate() -> None:
    df = _with_nans("x__x")
    assert list(fill_gaps(df, GapPolicy.HOLD)["x"]) == [0.0, 0.0, 0.0, 3.0]
    assert np.allclose(fill_gaps(df, GapPolicy.INTERPOLATE)["x"], [0.0, 1.0, 2.0, 3.0])


def test_gap_policy_raise_message() -> None:
    with pytest.raises(TraceError) as info:
        fill_gaps(_with_nans("x__x"), GapPolicy.RAISE, source="lmp.csv")
    assert str(info.value) == (
        "lmp.csv: field 'x': 2 consecutive missing intervals from 2022-03-01 00:15Z; "
        "gap policy 'raise' allows at most 0"
    )


@pytest.mark.parametrize("policy", [GapPolicy.HOLD, GapPolicy.INTERPOLATE])
def test_gap_policy_max_gap(policy: GapPolicy) -> None:
    df = _with_nans("x_____x")
    with pytest.raises(TraceError) as info:
        fill_gaps(df, policy, max_gap=4, source="wind.csv")
    assert str(info.value) == (
        f"wind.csv: field 'x': 5 consecutive missing intervals from 2022-03-01 00:15Z; "
        f"gap policy '{policy}' allows at most 4"
    )
    assert fill_gaps(df, policy, max_gap=5)["x"].notna().all()


def test_grid_index() -> None:
    index = grid_index("2022-01-01 05:00", 3)
    assert str(index.tz) == "UTC" and index.name == "interval_start_utc" and len(index) == 3
    with pytest.raises(ValueError, match="not on the 15-minute grid"):
        grid_index("2022-01-01 05:07", 3)


def test_intervals_per_local_day_dst() -> None:
    index = grid_index(pd.Timestamp("2022-03-12", tz="America/New_York"), 96 * 3)
    counts = intervals_per_local_day(index, "America/New_York")
    assert counts[pd.Timestamp("2022-03-13").date()] == 92
    fall = grid_index(pd.Timestamp("2022-11-06", tz="America/New_York"), 100)
    assert intervals_per_local_day(fall, "America/New_York").iloc[0] == 100


def test_local_days_on_dst_change_days() -> None:
    """New York, worked by hand. 2022-03-13 (clocks 02:00 EST -> 03:00 EDT): local
    midnight 05:00 UTC, the next 04:00 UTC, so 92 intervals; 06:45 UTC is 01:45 EST
    (slot 7), 07:00 UTC is 03:00 EDT (slot 12). 2022-11-06 (02:00 EDT -> 01:00 EST):
    midnight 04:00 UTC, the next 05:00 UTC, 100 intervals; 05:00 and 06:00 UTC are
    both 01:00 local (slot 4)."""
    spring = pd.date_range("2022-03-13T05:00Z", "2022-03-14T04:00Z", freq=STEP)
    days, slots = local_days(spring, "America/New_York")
    assert days.dtype == np.dtype("datetime64[D]")
    assert (days[:92] == np.datetime64("2022-03-13")).all()
    assert days[92] == np.datetime64("2022-03-14")
    assert list(slots[6:10]) == [6, 7, 12, 13]
    assert list(np.flatnonzero(slots == 0)) == [0, 92]
    fall = pd.date_range("2022-11-06T04:00Z", "2022-11-07T05:00Z", freq=STEP)
    days, slots = local_days(fall, "America/New_York")
    assert (days[:100] == np.datetime64("2022-11-06")).all()
    assert days[100] == np.datetime64("2022-11-07")
    assert slots[4] == slots[8] == 4
    assert list(np.flatnonzero(slots == 0)) == [0, 100]


def test_metadata_reconciles_rows() -> None:
    TraceMetadata(source=Path("f"), format="x", rows_read=5, rows_kept=3, dropped={"zero": 2})
    with pytest.raises(AssertionError, match="rows do not reconcile"):
        TraceMetadata(source=Path("f"), format="x", rows_read=5, rows_kept=3, dropped={"zero": 1})


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=2, max_size=30),
    st.sampled_from([HOUR, pd.Timedelta(minutes=30), pd.Timedelta(hours=3)]),
)
def test_split_conserves_sum_property(counts: list[int], freq: pd.Timedelta) -> None:
    index = pd.date_range(START, periods=len(counts), freq=freq)
    df = pd.DataFrame({"n": np.asarray(counts, dtype=float)}, index=index)
    grid = to_grid(df, Resample.SPLIT)
    assert len(grid) == len(counts) * (freq // STEP)
    assert grid["n"].sum() == pytest.approx(float(sum(counts)), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=-500, max_value=500), min_size=2, max_size=30))
def test_hold_conserves_mean_property(values: list[float]) -> None:
    grid = to_grid(hourly(values), Resample.HOLD)
    assert grid["x"].mean() == pytest.approx(float(np.mean(values)), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=3, max_size=40))
def test_find_gaps_counts_missing_property(present: list[bool]) -> None:
    present[0] = present[-1] = True
    full = pd.date_range(START, periods=len(present), freq=STEP)
    index = full[np.asarray(present)]
    gaps = find_gaps(pd.DatetimeIndex(index), STEP)
    assert sum(g.n_intervals for g in gaps) == present.count(False)
