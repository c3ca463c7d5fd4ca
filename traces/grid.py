"""The 15-minute UTC grid: resampling rules, gap detection and gap filling.

Time rules (DESIGN.md section 2): UTC inside; an interval is ``[t, t + 15 min)``
labelled by its start ``t``. Local time appears only where a tariff needs it.

Every quantity is put on the grid by an explicit :class:`Resample` rule:

========================  ===========================================================
rule                      use it for
========================  ===========================================================
``HOLD``                  intensive values that hold over the source interval:
                          prices [$/MWh], hourly-average power [MW], capacity factor
                          [-], carbon intensity [gCO2/kWh]. Conserves energy for
                          average-power series (MW × h is unchanged).
``INTERPOLATE``           intensive values where a smooth path is wanted; linear
                          between source-interval midpoints, held flat beyond the
                          first and last midpoint. Conserves the mean only
                          approximately.
``SPLIT``                 extensive amounts per interval (request counts, energy
                          [MWh]): each source value is divided equally among its
                          sub-intervals, so sums are conserved exactly.
``MEAN``                  downsampling of intensive values (5-min → 15-min).
``SUM``                   downsampling of extensive amounts.
========================  ===========================================================

Gaps are reported (:class:`Gap`) and filled only by a named :class:`GapPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traces.errors import TraceError

STEP = pd.Timedelta(minutes=15)
"""Length of one grid interval."""
STEP_H = 0.25
"""Length of one grid interval [h]."""
STEPS_PER_DAY = 96
"""Grid intervals in a 24-hour UTC day."""
NO_LAG = pd.Timedelta(0)
"""A publication lag of zero: a value is published when its source interval ends."""


class Resample(StrEnum):
    """How a series is moved onto the 15-minute grid (see module docstring)."""

    HOLD = "hold"
    INTERPOLATE = "interpolate"
    SPLIT = "split"
    MEAN = "mean"
    SUM = "sum"


class GapPolicy(StrEnum):
    """How missing grid intervals are filled.

    ``RAISE``: any gap is an error. ``LEAVE``: keep NaN. ``HOLD``: carry the last
    value forward. ``INTERPOLATE``: linear between the neighbours. ``ZERO``: fill
    with 0 (only for counts where a missing row means nothing happened).
    ``HOLD`` and ``INTERPOLATE`` fill runs of at most ``max_gap`` intervals and
    raise on longer ones.
    """

    RAISE = "raise"
    LEAVE = "leave"
    HOLD = "hold"
    INTERPOLATE = "interpolate"
    ZERO = "zero"


@dataclass(frozen=True)
class Gap:
    """A run of missing intervals ``[start, end)`` of a regular series."""

    start: pd.Timestamp
    end: pd.Timestamp
    n_intervals: int

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M}Z..{self.end:%Y-%m-%d %H:%M}Z ({self.n_intervals})"


@dataclass(frozen=True)
class Publication:
    """When the value of a grid interval becomes observable (the no-lookahead rule).

    A value on the grid comes from a source interval of length ``source_step`` (the
    source's native resolution: 1 h for an hourly series held over its quarters,
    15 min or less for a native one), aligned on whole multiples of it since the
    UTC epoch (UTC hours for hourly data); the source publishes it ``lag`` after
    that interval ends. The value of the grid interval starting at
    ``t`` is therefore published at

        published(t) = floor(t, source_step) + source_step + lag,

    and at time ``now`` exactly the grid intervals starting before
    ``floor(now - lag, source_step)`` are observable: an hourly average is seen at
    the end of its hour, never at ``:15``, ``:30`` or ``:45`` of it.

    Parameters
    ----------
    source_step : Timedelta
        Native resolution of the source; a multiple or a divisor of 15 minutes, at
        most one day.
    lag : Timedelta
        Publication delay after the end of the source interval (>= 0).
    """

    source_step: pd.Timedelta = STEP
    lag: pd.Timedelta = NO_LAG

    def __post_init__(self) -> None:
        step, lag = pd.Timedelta(self.source_step), pd.Timedelta(self.lag)
        object.__setattr__(self, "source_step", step)
        object.__setattr__(self, "lag", lag)
        if not NO_LAG < step <= pd.Timedelta(days=1) or (
            STEP.value % step.value and step.value % STEP.value
        ):
            raise ValueError(
                f"publication: source_step {step} must be a multiple or a divisor of 15 "
                "minutes, at most one day"
            )
        if lag < NO_LAG:
            raise ValueError(f"publication: lag {lag} must be >= 0 (no value is known early)")

    def observable_before_ns(self, now_ns: np.ndarray) -> np.ndarray:
        """Start [ns since the epoch, UTC] of the first interval not observable at ``now_ns``."""
        shifted = np.asarray(now_ns, dtype=np.int64) - self.lag.value
        return (shifted // self.source_step.value) * self.source_step.value

    def observable_before(self, now: pd.Timestamp) -> pd.Timestamp:
        """Start of the first grid interval whose value is not yet published at ``now``."""
        first = int(self.observable_before_ns(np.array([pd.Timestamp(now).value]))[0])
        return pd.Timestamp(first, tz="UTC")


@dataclass(frozen=True)
class DayAheadRelease:
    """When a value of a day-ahead market is published: the day *before* its delivery day.

    :class:`Publication` says when a value is known after its interval; a day-ahead
    market publishes the values of a whole local delivery day ``D`` before it starts,
    at a fixed local wall-clock time on ``D - 1`` (NYISO: DA LBMPs around 11:00
    Eastern). With ``t_loc`` an issue time on the local clock, ``day(x)`` the local
    calendar date and ``p`` the publication time of day,

        last published delivery day  L(t) = day(t_loc) + 1   if t_loc - day(t_loc) >= p
                                          = day(t_loc)       otherwise,

    and the value of a grid interval starting at ``s`` is published at ``t`` iff
    ``day(s_loc) <= L(t)``. Delivery days are local dates, so the rule is the same on
    the 23-h and 25-h days of a DST change.

    Parameters
    ----------
    hour_local : float [h]
        Local time of day at which the next delivery day is published, in ``[0, 24)``.
    tz : str
        IANA time zone of the market calendar.
    """

    hour_local: float = 11.0
    tz: str = "America/New_York"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.hour_local) < 24.0:
            raise ValueError(f"day-ahead release: hour_local must lie in [0, 24), got "
                             f"{self.hour_local}")
        object.__setattr__(self, "hour_local", float(self.hour_local))
        object.__setattr__(self, "tz", str(pd.Timestamp("2022-01-01", tz=self.tz).tz))

    def last_published_day(self, now: pd.Timestamp) -> pd.Timestamp:
        """Local delivery day ``L(now)`` (naive midnight) whose values are the latest published."""
        local = _utc(now).tz_convert(self.tz).tz_localize(None)
        day = local.floor("D")
        return day + pd.Timedelta(days=1) if local - day >= pd.Timedelta(
            hours=self.hour_local) else day

    def published(self, now: pd.Timestamp, targets: pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask: the value of each target interval is published at ``now``."""
        days = pd.DatetimeIndex(targets).tz_convert(self.tz).tz_localize(None).floor("D")
        return np.asarray(days <= self.last_published_day(now))

    def published_before(self, now: pd.Timestamp) -> pd.Timestamp:
        """Start (UTC) of the first grid interval whose value is not published at ``now``.

        The local midnight after ``L(now)``: every interval before it is published.
        """
        end = self.last_published_day(now) + pd.Timedelta(days=1)
        return end.tz_localize(self.tz).tz_convert("UTC")

    def release_time(self, targets: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Publication time (UTC) of each target interval's value."""
        days = pd.DatetimeIndex(targets).tz_convert(self.tz).tz_localize(None).floor("D")
        local = days - pd.Timedelta(days=1) + pd.Timedelta(hours=self.hour_local)
        return pd.DatetimeIndex(local).tz_localize(self.tz, nonexistent="shift_forward",
                                                   ambiguous=False).tz_convert("UTC")


def _utc(when: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


NYISO_DA_RELEASE = DayAheadRelease(11.0, "America/New_York")
"""NYISO publishes the day-ahead LBMPs of delivery day ``D`` around 11:00 Eastern on ``D - 1``."""


@dataclass(frozen=True)
class TraceMetadata:
    """What a reader learned about a file, returned beside the DataFrame.

    ``rows_read == rows_kept + sum(dropped.values())`` always holds; every row
    that is not kept is counted under a named reason.
    """

    source: Path
    format: str
    rows_read: int
    rows_kept: int
    dropped: Mapping[str, int] = field(default_factory=dict)
    gaps: tuple[Gap, ...] = ()
    resolution: pd.Timedelta | None = None
    units: Mapping[str, str] = field(default_factory=dict)
    time_convention: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dropped_total = sum(self.dropped.values())
        if self.rows_read != self.rows_kept + dropped_total:
            raise AssertionError(
                f"{self.source}: rows do not reconcile: read {self.rows_read} != kept "
                f"{self.rows_kept} + dropped {dropped_total} {dict(self.dropped)}"
            )

    @property
    def publication(self) -> Publication:
        """When a value on the grid becomes observable (:class:`Publication`).

        From ``extra["publication"]`` when the reader states it; else the source's
        native resolution (``extra["source_resolution"]`` of the grid loaders, or
        ``resolution``) with the lag ``extra["publication_lag"]`` (default 0: the
        value is published when its source interval ends).
        """
        explicit = self.extra.get("publication")
        if isinstance(explicit, Publication):
            return explicit
        step = self.extra.get("source_resolution", self.resolution)
        lag = self.extra.get("publication_lag", NO_LAG)
        return Publication(pd.Timedelta(step) if step is not None else STEP, pd.Timedelta(lag))

    @property
    def missing_intervals(self) -> int:
        """Total number of missing intervals over all gaps."""
        return sum(g.n_intervals for g in self.gaps)


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Integer nanoseconds of ``index`` whatever its unit (pandas 3 keeps s/ms/us units)."""
    return index.as_unit("ns").asi8


def grid_index(start: pd.Timestamp | str, periods: int) -> pd.DatetimeIndex:
    """Return ``periods`` interval starts of the 15-min UTC grid from ``start``."""
    start_ts = pd.Timestamp(start)
    start_ts = (
        start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    )
    if start_ts != start_ts.floor(STEP):
        raise ValueError(f"grid start {start_ts} is not on the 15-minute grid")
    return pd.date_range(start_ts, periods=periods, freq=STEP, name="interval_start_utc")


def find_gaps(index: pd.DatetimeIndex, freq: pd.Timedelta) -> list[Gap]:
    """Return the runs of missing intervals in a sorted, unique ``index`` of step ``freq``."""
    if len(index) < 2:
        return []
    values = _ns(index)
    step_ns = int(freq.value)
    diffs = np.diff(values)
    gaps: list[Gap] = []
    for pos in np.flatnonzero(diffs > step_ns):
        n_missing = int(diffs[pos] // step_ns) - 1
        start = index[int(pos)] + freq
        gaps.append(Gap(start=start, end=start + n_missing * freq, n_intervals=n_missing))
    return gaps


def infer_resolution(index: pd.DatetimeIndex, path: str | Path) -> pd.Timedelta:
    """The most common step of ``index`` (gaps do not change the mode)."""
    if len(index) < 2:
        raise TraceError(path, "expected at least 2 timestamped rows to infer the resolution")
    diffs = pd.Series(np.diff(_ns(index)))
    return pd.Timedelta(int(diffs.mode().iloc[0]), unit="ns")


def fill_gaps(
    df: pd.DataFrame,
    policy: GapPolicy,
    *,
    max_gap: int = 4,
    source: str | Path = "<series>",
) -> pd.DataFrame:
    """Fill NaN runs in ``df`` (already reindexed to a regular grid) by ``policy``.

    Parameters
    ----------
    df
        Regular series with NaN where data is missing.
    policy
        The named rule; see :class:`GapPolicy`.
    max_gap
        Longest run [intervals] that ``HOLD``/``INTERPOLATE`` may fill.
    source
        Used in the error message.
    """
    if policy is GapPolicy.LEAVE:
        return df
    for column in df.columns:
        run = _longest_nan_run(df[column].to_numpy(dtype=float))
        if run == 0:
            continue
        if policy is GapPolicy.RAISE or (
            policy in (GapPolicy.HOLD, GapPolicy.INTERPOLATE) and run > max_gap
        ):
            first_nan = df.index[df[column].isna().to_numpy()][0]
            raise TraceError(
                source,
                f"{run} consecutive missing intervals from {first_nan:%Y-%m-%d %H:%M}Z; "
                f"gap policy '{policy}' allows at most "
                f"{0 if policy is GapPolicy.RAISE else max_gap}",
                field=str(column),
            )
    if policy is GapPolicy.ZERO:
        return df.fillna(0.0)
    if policy is GapPolicy.HOLD:
        return df.ffill().bfill()
    return df.interpolate(method="time", limit_direction="both")


def nan_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Find the runs of consecutive ``True`` values in a missing-value mask.

    Parameters
    ----------
    mask
        1-D boolean array, ``True`` where a value is missing (NaN).

    Returns
    -------
    starts : numpy.ndarray
        Position of the first element of each run, ascending.
    lengths : numpy.ndarray
        Number of elements in each run (same order as ``starts``); both arrays
        are empty when ``mask`` has no ``True`` value.
    """
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    starts = edges[0::2]
    return starts, edges[1::2] - starts


def _longest_nan_run(values: np.ndarray) -> int:
    isnan = np.isnan(values)
    if not isnan.any():
        return 0
    _, lengths = nan_runs(isnan)
    return int(lengths.max())


def to_grid(
    df: pd.DataFrame,
    rules: Resample | Mapping[str, Resample],
    *,
    source_freq: pd.Timedelta | None = None,
    source: str | Path = "<series>",
) -> pd.DataFrame:
    """Move a regular UTC series onto the 15-min grid by an explicit rule per column.

    Parameters
    ----------
    df
        Series with a regular UTC ``DatetimeIndex`` of interval starts (NaN where
        data is missing; call :func:`fill_gaps` before or after).
    rules
        One rule for all columns, or a rule per column name.
    source_freq
        Step of ``df``; inferred when omitted.
    source
        Used in error messages.

    Returns
    -------
    DataFrame indexed by 15-min interval starts covering exactly the span of ``df``
    (from its first start to its last end).
    """
    index = df.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        raise TraceError(source, "expected a UTC DatetimeIndex of interval starts")
    freq = source_freq if source_freq is not None else infer_resolution(index, source)
    column_rules = {c: rules for c in df.columns} if isinstance(rules, Resample) else dict(rules)
    missing = [c for c in df.columns if c not in column_rules]
    if missing:
        raise ValueError(f"{source}: no resampling rule for columns {missing}")
    if freq == STEP:
        return df.copy()
    out: dict[str, pd.Series] = {}
    if freq > STEP:
        factor, remainder = divmod(freq, STEP)
        if remainder:
            raise TraceError(source, f"resolution {freq} is not a multiple of 15 minutes")
        target = pd.date_range(df.index[0], df.index[-1] + freq - STEP, freq=STEP)
        for column, rule in column_rules.items():
            out[column] = _upsample(df[column], target, int(factor), freq, rule, source)
    else:
        factor, remainder = divmod(STEP, freq)
        if remainder:
            raise TraceError(source, f"resolution {freq} does not divide 15 minutes")
        for column, rule in column_rules.items():
            grouped = df[column].resample(STEP, label="left", closed="left")
            if rule is Resample.MEAN:
                out[column] = grouped.mean()
            elif rule is Resample.SUM:
                out[column] = grouped.sum(min_count=1)
            else:
                raise ValueError(f"{source}: rule '{rule}' cannot downsample column {column}")
    result = pd.DataFrame(out)
    result.index.name = "interval_start_utc"
    return result


def _upsample(
    series: pd.Series,
    target: pd.DatetimeIndex,
    factor: int,
    freq: pd.Timedelta,
    rule: Resample,
    source: str | Path,
) -> pd.Series:
    values = series.to_numpy(dtype=float)
    if rule is Resample.INTERPOLATE:
        src_mid = _ns(pd.DatetimeIndex(series.index)) + freq.value // 2
        dst_mid = _ns(target) + STEP.value // 2
        ok = ~np.isnan(values)
        interpolated = np.interp(dst_mid, src_mid[ok], values[ok])
    elif rule is not Resample.HOLD and rule is not Resample.SPLIT:
        raise ValueError(f"{source}: rule '{rule}' cannot upsample column {series.name}")
    # Each source value held over its grid intervals; NaN where the source has a gap.
    held = series.reindex(target, method="ffill", limit=factor - 1)
    if rule is Resample.HOLD:
        return held
    if rule is Resample.SPLIT:
        return held / factor
    # A source gap must stay a gap: interpolation never invents data there.
    interpolated[held.isna().to_numpy()] = np.nan
    return pd.Series(interpolated, index=target, name=series.name)


def local_days(index: pd.DatetimeIndex, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Local calendar day and 15-min slot of the day of each interval start.

    Slots follow the local wall clock: on a day when clocks spring forward the hour
    skipped has no slot (92 intervals, slots ``0..7, 12..95``); on a day when they
    fall back the repeated hour's slots occur twice (100 intervals). Slot 0 is a
    local midnight.

    Parameters
    ----------
    index : DatetimeIndex
        Interval starts, tz-aware (UTC on the canonical grid).
    tz : str
        IANA time zone of the calendar.

    Returns
    -------
    days : ndarray of datetime64[D]
        Local date of each start.
    slots : ndarray of int64 [15-min intervals]
        ``4 · hour + minute // 15`` of each start's local time.
    """
    local = pd.DatetimeIndex(index).tz_convert(tz)
    days = np.asarray(local.tz_localize(None).normalize(), dtype="datetime64[D]")
    slots = np.asarray(local.hour * 4 + local.minute // 15, dtype=np.int64)
    return days, slots


def intervals_per_local_day(index: pd.DatetimeIndex, tz: str) -> pd.Series:
    """Count grid intervals per local calendar day (92 / 100 on DST change days)."""
    local_dates = index.tz_convert(tz).date
    return pd.Series(1, index=local_dates).groupby(level=0).sum()
