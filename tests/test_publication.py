"""Publication times: when a value on the 15-min grid becomes observable (issue 13, item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.sim.publication import ObservationSchedule
from traces import datasets, synthetic
from traces.grid import STEP, Publication

HOUR = pd.Timedelta(hours=1)


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("rule", "now", "first_unpublished"),
    [
        # An hourly average is published at the end of its hour: at :15, :30 and :45
        # nothing of the running hour is observable.
        (Publication(HOUR), "2022-04-04 04:00", "2022-04-04 04:00"),
        (Publication(HOUR), "2022-04-04 04:15", "2022-04-04 04:00"),
        (Publication(HOUR), "2022-04-04 04:45", "2022-04-04 04:00"),
        (Publication(HOUR), "2022-04-04 05:00", "2022-04-04 05:00"),
        # Published 30 min after the hour's end.
        (Publication(HOUR, pd.Timedelta(minutes=30)), "2022-04-04 05:15", "2022-04-04 04:00"),
        (Publication(HOUR, pd.Timedelta(minutes=30)), "2022-04-04 05:30", "2022-04-04 05:00"),
        # Native 15-min and 5-min sources: the interval that just ended is observable.
        (Publication(STEP), "2022-04-04 04:15", "2022-04-04 04:15"),
        (Publication(pd.Timedelta(minutes=5)), "2022-04-04 04:15", "2022-04-04 04:15"),
    ],
)
def test_first_unpublished_interval(rule: Publication, now: str, first_unpublished: str) -> None:
    assert rule.observable_before(ts(now)) == ts(first_unpublished)


def test_rules_reject_impossible_settings() -> None:
    with pytest.raises(ValueError, match="multiple or a divisor"):
        Publication(pd.Timedelta(minutes=20))
    with pytest.raises(ValueError, match="lag"):
        Publication(HOUR, pd.Timedelta(minutes=-15))


def test_schedule_delivers_an_hour_at_its_end_and_15_min_values_at_theirs() -> None:
    start = ts("2022-04-04 04:00")
    n, before = 8, 4
    values = np.arange(2 * (before + n), dtype=float).reshape(-1, 2)
    sched = ObservationSchedule(start, n, ("hourly", "native"), values, before,
                                {"hourly": Publication(HOUR)})
    assert sched.observable_at_start("hourly") == before
    # Interval 0 (04:00-04:15): only the native value of 04:00.
    assert sched.published_during(0) == [(0, {"native": 9.0})]
    assert sched.published_during(2) == [(2, {"native": 13.0})]
    # Interval 3 ends at 05:00: the hour 04:00-05:00 arrives, all four quarters.
    assert sched.published_during(3) == [
        (0, {"hourly": 8.0}), (1, {"hourly": 10.0}), (2, {"hourly": 12.0}),
        (3, {"hourly": 14.0, "native": 15.0}),
    ]


def test_schedule_mid_hour_start_withholds_the_running_hour_from_the_history() -> None:
    start = ts("2022-04-04 04:30")  # two quarters of the 04:00 hour are history
    sched = ObservationSchedule(start, 4, ("h",), np.arange(12.0)[:, None], 8,
                                {"h": Publication(HOUR)})
    assert sched.observable_at_start("h") == 6
    assert [p for p, _ in sched.published_during(1)] == [-2, -1, 0, 1]
    with pytest.raises(ValueError, match="shorter than the publication lag"):
        ObservationSchedule(start, 4, ("h",), np.zeros((5, 1)), 1, {"h": Publication(HOUR)})


def test_last_published_values_hold_the_last_value_the_schedule_delivered() -> None:
    """The one "last published value" path (the engine's export price of a decision
    without one, ``SiteExogenous.last_published_values``): at the start of each run
    interval, the value at ``last_observable``, a NaN holding the value before it."""
    start = ts("2022-04-04 04:00")
    n, before = 8, 4
    hourly = np.arange(before + n, dtype=float)
    hourly[[4, 5, 6, 7]] = np.nan  # the run's first hour was never published
    native = np.arange(before + n, dtype=float)
    native[[0, 1, 2, 3, 9]] = np.nan  # no history, and a gap at position 5
    sched = ObservationSchedule(start, n, ("hourly", "native"),
                                np.column_stack([hourly, native]), before,
                                {"hourly": Publication(HOUR)})
    # The last hour of history is observable at 04:00; the NaN hour holds it at 05:00.
    assert sched.last_published_values("hourly").tolist() == [3.0] * 8
    # Nothing before position 0's end; position 5 (NaN) holds position 4's value.
    got = sched.last_published_values("native")
    assert np.isnan(got[:1]).all() and got[1:].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0, 8.0, 10.0]
    for step in range(n):  # the same lookup as the schedule's own
        pos = before + sched.last_observable("native", step)
        seen = native[: pos + 1][np.isfinite(native[: pos + 1])]
        assert got[step] == seen[-1] if seen.size else np.isnan(got[step])


def test_synthetic_hourly_series_are_published_hourly() -> None:
    lmp = synthetic.synth_lmp("2022-04-04", 1, 0).iloc[:, 0].to_numpy()
    # The generator holds each hour over its quarters, so its rule must be hourly.
    assert (lmp.reshape(-1, 4) == lmp.reshape(-1, 4)[:, :1]).all()
    assert synthetic.PUBLICATION["lmp"].source_step == HOUR
    assert synthetic.PUBLICATION["load"].source_step == STEP


@pytest.mark.shared_data
def test_readers_state_the_source_resolution(shared_data: Path) -> None:
    assert datasets.nyiso_rt_lmp(shared_data, zones=["F"])[1].publication == Publication(HOUR)
    assert datasets.ny_wind_cf(shared_data)[1].publication == Publication(HOUR)
    assert datasets.ny_carbon(shared_data)[1].publication == Publication(HOUR)
    assert datasets.caiso_rt_lmp(shared_data, zones=["NP15"])[1].publication == Publication(STEP)
    shape = datasets.google_load_shape(shared_data)[1].publication
    assert shape.source_step == pd.Timedelta(minutes=5)
