"""A grid-aligned exogenous series that refuses to extrapolate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from traces.errors import TraceRangeError
from traces.grid import STEP


class Trace:
    """Columns of values on the 15-min UTC grid, read by window, never extrapolated.

    Parameters
    ----------
    frame
        Regular 15-min UTC ``DatetimeIndex`` of interval starts, no NaN.
    name
        Used in error messages.
    """

    def __init__(self, frame: pd.DataFrame, name: str = "trace") -> None:
        index = frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise ValueError(f"trace '{name}': expected a UTC DatetimeIndex")
        if len(index) and not (np.diff(index.as_unit("ns").asi8) == STEP.value).all():
            raise ValueError(f"trace '{name}': index is not a gap-free 15-minute grid")
        if frame.isna().to_numpy().any():
            raise ValueError(f"trace '{name}': contains NaN; fill gaps before building a Trace")
        self.name = name
        self.frame = frame
        self._values = frame.to_numpy(dtype=float)
        self._start_ns = int(index[0].value) if len(index) else 0

    @property
    def start(self) -> pd.Timestamp:
        """First interval start covered."""
        return self.frame.index[0]

    @property
    def end(self) -> pd.Timestamp:
        """End (exclusive) of the last interval covered."""
        return self.frame.index[-1] + STEP

    def __len__(self) -> int:
        return len(self.frame)

    def position(self, when: pd.Timestamp) -> int:
        """Row of the interval starting at ``when``."""
        offset = int(pd.Timestamp(when).value) - self._start_ns
        pos, rem = divmod(offset, STEP.value)
        if rem:
            raise ValueError(f"trace '{self.name}': {when} is not on the 15-minute grid")
        return pos

    def window(self, start: pd.Timestamp, periods: int) -> np.ndarray:
        """Values of ``periods`` intervals from ``start``: shape ``(periods, n_columns)``.

        Raises
        ------
        TraceRangeError
            If any requested interval lies outside ``[start, end)`` of the trace.
        """
        pos = self.position(start)
        if pos < 0 or pos + periods > len(self.frame):
            asked_end = pd.Timestamp(start) + periods * STEP
            raise TraceRangeError(
                f"trace '{self.name}' covers [{self.start}, {self.end}); "
                f"asked for [{start}, {asked_end})"
            )
        return self._values[pos : pos + periods]

    def row(self, pos: int) -> np.ndarray:
        """Values of the interval at row ``pos`` (0 = :attr:`start`).

        Raises
        ------
        TraceRangeError
            If ``pos`` lies outside the trace (negative positions included).
        """
        if not 0 <= pos < len(self._values):
            asked = self.start + pos * STEP
            raise TraceRangeError(
                f"trace '{self.name}' covers [{self.start}, {self.end}); asked for the "
                f"interval starting {asked}"
            )
        return self._values[pos]
