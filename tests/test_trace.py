"""Trace: a 15-min grid series read by window or row, never extrapolated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traces.errors import TraceRangeError
from traces.grid import grid_index
from traces.trace import Trace


def _trace(n: int = 8) -> Trace:
    index = grid_index("2022-04-01T00:00:00Z", n)
    return Trace(pd.DataFrame({"a": np.arange(n, dtype=float)}, index=index), "demo")


def test_window_and_row_return_the_covered_values() -> None:
    trace = _trace()
    np.testing.assert_array_equal(trace.window(pd.Timestamp("2022-04-01T00:30Z"), 3)[:, 0],
                                  [2.0, 3.0, 4.0])
    assert trace.row(7)[0] == 7.0
    assert trace.end == pd.Timestamp("2022-04-01T02:00Z")


@pytest.mark.parametrize("start", ["2022-03-31T23:45Z", "2022-04-01T01:30Z"])
def test_window_outside_the_trace_is_refused_with_its_range(start: str) -> None:
    with pytest.raises(TraceRangeError, match=r"trace 'demo' covers \[2022-04-01 00:00:00\+00:00"):
        _trace().window(pd.Timestamp(start), 3)


@pytest.mark.parametrize("pos", [-1, 8])
def test_row_outside_the_trace_is_refused(pos: int) -> None:
    with pytest.raises(TraceRangeError, match="asked for the interval starting"):
        _trace().row(pos)


def test_off_grid_times_and_bad_frames_are_rejected() -> None:
    trace = _trace()
    with pytest.raises(ValueError, match="not on the 15-minute grid"):
        trace.window(pd.Timestamp("2022-04-01T00:10Z"), 1)
    frame = trace.frame.copy()
    frame.iloc[2, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        Trace(frame, "demo")
    with pytest.raises(ValueError, match="gap-free"):
        Trace(trace.frame.drop(trace.frame.index[3]), "demo")
