"""Memoised pure helpers of the forecasting hot path, and the switch that turns them off.

In the closed loop every channel is asked for the same issue time and horizon at each
step, and the hourly models build the same regressors for the same hours: the target
index (:func:`grid`) and the Fourier terms (:func:`memoized`) are pure functions of a
few integers, so they are computed once and shared. The cached values are immutable
(a ``DatetimeIndex``; arrays made read-only), so a caller cannot alter what another
receives.

:func:`disabled` turns every cache of the forecasters off (these and the Kalman
filter's forecast-variance cache, :mod:`forecasters.kalman`): the straightforward path
that the equivalence test compares the fast one with (``tests/test_forecast_fast_path.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import lru_cache, wraps
from typing import Literal, TypeVar, cast

import numpy as np
import pandas as pd

R = TypeVar("R")
Unit = Literal["s", "ms", "us", "ns"]

_ENABLED = [True]
"""Whether the caches are used (a list: mutable module state without ``global``)."""


def enabled() -> bool:
    """Whether the forecasters' caches are on (:func:`disabled` turns them off)."""
    return _ENABLED[0]


@contextmanager
def disabled() -> Iterator[None]:
    """Compute everything afresh inside the block (no cache read or written)."""
    before = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = before


def memoized(maxsize: int) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """An LRU cache of ``maxsize`` entries around a pure function of hashable
    positional arguments, bypassed while :func:`disabled`. Array results are made
    read-only."""

    def wrap(fn: Callable[..., R]) -> Callable[..., R]:
        def frozen(*args: Hashable) -> R:
            out = fn(*args)
            if isinstance(out, np.ndarray):
                out.flags.writeable = False
            return out

        cached = lru_cache(maxsize=maxsize)(frozen)

        @wraps(fn)
        def call(*args: Hashable) -> R:
            return cached(*args) if _ENABLED[0] else fn(*args)

        return call

    return wrap


BLOCK_ALIGN = 128
"""Intervals between the starts of two cached grid blocks (:func:`grid`)."""
_NS_PER = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
"""Nanoseconds per tick of each datetime64 unit."""


def grid(start_ns: int, periods: int, step_ns: int, unit: str = "ns") -> pd.DatetimeIndex:
    """``periods`` interval starts from ``start_ns`` every ``step_ns`` [ns, UTC] in
    ``unit`` resolution, named ``interval_start_utc``: ``pd.date_range(start,
    periods=, freq=)`` for a ``start`` of that unit.

    A slice of a cached block that starts on a multiple of :data:`BLOCK_ALIGN`
    intervals since the epoch and holds a power of two of them (at least 256): every
    channel's horizon and scoring targets from the starts of a day or so share one.
    Each call gets an index object of its own (renaming it leaves the block alone):
    a view of the cached slice, since the same slice is asked several times per step
    (every channel's horizon and scoring targets) and slicing a ``DatetimeIndex``
    costs about nine times as much as viewing one.
    """
    if not _ENABLED[0]:
        return _date_range(start_ns, periods, step_ns, unit)
    return _grid_slice(start_ns, periods, step_ns, unit).view()


def _slice(start_ns: int, periods: int, step_ns: int, unit: str) -> pd.DatetimeIndex:
    """:func:`grid`'s slice of its cached block (:func:`_grid_block`)."""
    align = BLOCK_ALIGN * step_ns
    first = start_ns - start_ns % align if start_ns % step_ns == 0 else start_ns
    offset = (start_ns - first) // step_ns
    size = max(256, 1 << max(offset + periods - 1, 0).bit_length())
    return _grid_block(first, size, step_ns, unit)[offset : offset + periods]


def _date_range(start_ns: int, periods: int, step_ns: int, unit: str) -> pd.DatetimeIndex:
    start = pd.Timestamp(start_ns, tz="UTC").as_unit(cast(Unit, unit))
    return pd.date_range(start, periods=periods, freq=pd.Timedelta(step_ns),
                         name="interval_start_utc")


_grid_block = memoized(maxsize=64)(_date_range)
_grid_slice = memoized(maxsize=64)(_slice)


def ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Interval starts of ``index`` as int64 [ns, UTC], the values of
    ``index.as_unit("ns").asi8`` without building the converted index."""
    values = index.asi8
    return values if index.unit == "ns" else values * _NS_PER[index.unit]
