"""The forecaster protocol, its shared time rules, the forecast frame and the registry.

Time rule (DESIGN.md section 4). Forecasters work on the 15-min UTC grid. At issue
time ``t`` (the start of the interval about to be decided) a forecaster may use only
observations of intervals that *start before* ``t``. ``update`` feeds observations
as they become available; ``cutoff`` is the start of the last interval seen.
``predict(t, H)`` returns a ``pd.Series`` indexed by the target times
``t, t + 15 min, ..., t + (H - 1) * 15 min``; the forecast for target ``t + k * 15 min``
has a lead time of ``(k + 1) * 15 min`` (its interval ends then).

* ``t <= cutoff`` raises :class:`LookaheadError`: the forecaster has already seen the
  interval it is asked to forecast.
* ``t > cutoff + 15 min`` (updates were missed, e.g. a feed outage) is allowed: the
  forecast is made from the cutoff with correspondingly longer leads. The lag is
  exposed as :meth:`BaseForecaster.staleness_steps`; ``max_stale_steps`` bounds it.

Missing observations are fed as NaN rows (the index stays contiguous), so the cutoff
advances over a gap and every model treats the value as unobserved.

Unknown spread. A forecaster that cannot estimate its error spread yet (too little
history: persistence needs ``L + 2`` observations for lead ``L``, seasonal naive a
season plus two) returns a NaN scale. That is *unknown*, not zero: its quantiles
other than the median are ``-inf`` / ``+inf`` in model space, i.e. the series'
bounds after clipping (``0`` and ``1`` for a capacity factor, ``0`` and ``+inf`` for
demand, ``±inf`` for a price). Callers that need finite bands must provide enough
history or cap them (the fleet MPC provisions its serving capacity).

Known-ahead regressors (the interface the closed loop and the backtest use). Some
inputs of a forecast are *published before* the intervals they describe: the
day-ahead price of a delivery day is published the day before it (NYISO: 11:00
Eastern). A forecaster that reads one lists it in :attr:`BaseForecaster.known_ahead`
(name -> release rule, :class:`traces.grid.DayAheadRelease`); the caller feeds the
published values with :meth:`BaseForecaster.update_known` (any span of the 15-min
grid, before or after ``fit``, as often as new values are published), exactly as it
feeds observations with ``update``. At issue time ``t`` the forecaster reads a
regressor value only where the release rule says it is published at ``t``
(:meth:`BaseForecaster.known_values`); values fed early are never read early, so a
caller that pushes the whole series cannot make it look ahead (tested by poisoning).
Calendar regressors (holidays, :mod:`forecasters.calendar`) are functions of the
timestamp and need no feed.

Calibrated quantiles. With ``calibration="conformal"`` (the default of every model;
the oracles and ``day_ahead_known`` use their own spread) the forecaster records,
each time an hour is complete (cutoff at ``hh:45``), its point forecast for the next
:data:`CALIBRATION_STEPS` intervals, and scores it as the observations arrive. The
quantile of level ``q`` at lead ``L`` intervals after the cutoff is the point forecast
plus the conformal quantile of the signed errors at that lead over the last
``calibration_window_days`` of origins: the ``ceil((n + 1) q)``-th smallest of the
``n`` errors (``floor((n + 1) q)``-th for ``q < 0.5``), centred per lead on the
median of the last ``calibration_shift_days`` of errors at that lead (the quantile is
taken of the errors less the shift their origin had; a drifting level moves the band
within a day, not as the window turns over). Where too few errors exist
(rank beyond ``n``), the model's own quantile is used. The median is the point
forecast. ``fit`` warms the errors up on the end of the history it is given: a copy
of the forecaster is fitted on the history less its last ``calibration_warmup_days``
and replayed over them, hour by hour, as the loop would; the forecaster itself is
then fitted on the whole history, so calibration never changes a point forecast.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from statistics import NormalDist
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from forecasters.memo import grid, memoized, ns
from traces.grid import STEP, STEPS_PER_DAY

logger = logging.getLogger(__name__)

Bounds = tuple[float | None, float | None]
"""``(low, high)`` output limits in the series' units; ``None`` means unbounded."""

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
"""Quantile levels used when none are given."""

Calibration = Literal["conformal", "model"]
"""How quantiles are made: ``"conformal"`` from the forecaster's own recent errors per
lead (module docstring), ``"model"`` from the model's error distribution."""
CALIBRATION_STEPS = STEPS_PER_DAY + 4
"""Leads scored for calibration [intervals after the cutoff]: a day, plus the three
intervals an hourly series can be stale by and one spare."""
CALIBRATION_WINDOW_DAYS = 28.0
"""Default rolling window of scored origins [d]."""
CALIBRATION_WARMUP_DAYS = 7.0
"""Default replay at ``fit`` that scores the end of the history [d]."""
CALIBRATION_SHIFT_DAYS = 1.0
"""Default span of the recent errors whose median shifts the conformal band, per lead
[d of scoring origins] (0: no shift).
Chosen by backtest (docs/forecasters.md, "Calibrated quantiles"): without it the
band missed a drifting level for days (BurstGPT demand: 0.85 coverage of the 0.9
quantile for the weekly seasonal naive)."""
SCORING_REFRESH_ORIGINS = 24
"""Scored origins between two recomputations of the error quantiles (once a day)."""


class Release(Protocol):
    """When the values of a known-ahead regressor are published (e.g.
    :class:`traces.grid.DayAheadRelease`): the intervals before ``published_before(now)``."""

    def published_before(self, now: pd.Timestamp) -> pd.Timestamp:
        """Start (UTC) of the first interval whose value is not published at ``now``."""
        ...


class LookaheadError(ValueError):
    """A forecast was requested for an interval the forecaster has already observed."""


class InsufficientHistoryError(ValueError):
    """Too few observed hours to fit a model: the history given was too short (or too
    gappy), not a fault of the forecaster.

    Parameters
    ----------
    forecaster : str
        The forecaster's name.
    need_hours : int [h]
        Observed complete hours the fit needs.
    got_hours : int [h]
        Observed complete hours it had.
    cutoff : Timestamp or None
        The last interval of the history it had.
    """

    def __init__(self, forecaster: str, need_hours: int, got_hours: int,
                 cutoff: pd.Timestamp | None) -> None:
        self.forecaster = forecaster
        self.need_hours = need_hours
        self.got_hours = got_hours
        self.cutoff = cutoff
        # Every field in ``args``: simpy re-raises a process's error as
        # ``type(err)(*err.args)``, and pickling (process pools) rebuilds it so too.
        super().__init__(forecaster, need_hours, got_hours, cutoff)

    @property
    def shortfall(self) -> str:
        """``needs at least N observed complete hours to fit, got M``, for messages."""
        return (f"needs at least {self.need_hours} observed complete hours to fit, "
                f"got {self.got_hours}")

    def __str__(self) -> str:
        return f"{self.forecaster}: {self.shortfall} (history up to {self.cutoff})"


class NotFittedError(RuntimeError):
    """``predict`` or ``update`` was called before ``fit``."""


@runtime_checkable
class Forecaster(Protocol):
    """What the MPC controller and the backtest need from a forecaster (sktime-like)."""

    name: str

    @property
    def cutoff(self) -> pd.Timestamp | None:
        """Start of the last observed interval (``None`` before ``fit``)."""
        ...

    def fit(self, history: pd.Series) -> Self:
        """Learn from ``history`` (15-min grid, contiguous, NaN = missing)."""
        ...

    def update(self, new_observations: pd.Series) -> Self:
        """Feed the observations that follow ``cutoff`` directly."""
        ...

    def update_known(self, name: str, values: pd.Series) -> Self:
        """Feed published values of the known-ahead regressor ``name`` (any grid span)."""
        ...

    def predict(self, issue_time: pd.Timestamp, horizon: int) -> pd.Series:
        """Point forecast for ``horizon`` intervals from ``issue_time``."""
        ...

    def predict_quantiles(
        self, issue_time: pd.Timestamp, horizon: int, levels: Sequence[float] = DEFAULT_LEVELS
    ) -> pd.DataFrame:
        """Quantile forecasts, one column per level in ``(0, 1)``."""
        ...


def as_utc(when: pd.Timestamp | str) -> pd.Timestamp:
    """``when`` as a UTC timestamp (naive input is taken as UTC)."""
    if isinstance(when, pd.Timestamp) and when.tzinfo is UTC:
        return when  # the loop's times: already UTC (a Timestamp is immutable)
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def check_grid_series(series: pd.Series, what: str = "series") -> pd.Series:
    """Validate a 15-min grid series and return it as float64.

    Raises
    ------
    ValueError
        If the index is not a UTC ``DatetimeIndex`` of contiguous 15-min interval
        starts (gaps must be NaN rows, not missing rows).
    """
    index = series.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError(f"{what}: expected a UTC DatetimeIndex of interval starts")
    if len(index) == 0:
        return series.astype(float)
    if index[0] != index[0].floor(STEP):
        raise ValueError(f"{what}: {index[0]} is not on the 15-minute grid")
    if len(index) > 1 and not (np.diff(index.as_unit("ns").asi8) == STEP.value).all():
        raise ValueError(
            f"{what}: index is not a contiguous 15-minute grid; put missing intervals in as NaN"
        )
    return series.astype(float)


class _GrowingArray:
    """A float array that grows by appending, with amortised O(1) appends."""

    def __init__(self, values: np.ndarray) -> None:
        self._buf = np.array(values, dtype=float)
        self._n = len(self._buf)

    def append(self, values: np.ndarray) -> None:
        need = self._n + len(values)
        if need > len(self._buf):
            new = np.empty(max(need, 2 * len(self._buf), 64))
            new[: self._n] = self._buf[: self._n]
            self._buf = new
        self._buf[self._n : need] = values
        self._n = need

    @property
    def values(self) -> np.ndarray:
        return self._buf[: self._n]

    def __len__(self) -> int:
        return self._n


class _KnownSeries:
    """Values of one known-ahead regressor on the 15-min grid, as fed (NaN = not fed)."""

    def __init__(self) -> None:
        self._start_ns: int | None = None
        self._values = np.empty(0)

    def write(self, first: pd.Timestamp, values: np.ndarray) -> None:
        """Store ``values`` of consecutive intervals from ``first`` (later feeds win)."""
        first_ns = int(first.value)
        if self._start_ns is None:
            self._start_ns, self._values = first_ns, np.array(values, dtype=float)
            return
        lo = min(self._start_ns, first_ns)
        end = max(self._start_ns + len(self._values) * STEP.value,
                  first_ns + len(values) * STEP.value)
        if lo != self._start_ns or end > self._start_ns + len(self._values) * STEP.value:
            grown = np.full((end - lo) // STEP.value, np.nan)
            at = (self._start_ns - lo) // STEP.value
            grown[at : at + len(self._values)] = self._values
            self._start_ns, self._values = lo, grown
        at = (first_ns - self._start_ns) // STEP.value
        self._values[at : at + len(values)] = values

    def read(self, targets_ns: np.ndarray) -> np.ndarray:
        """Values at interval starts ``targets_ns`` [ns, UTC] (NaN where not fed)."""
        out = np.full(len(targets_ns), np.nan)
        if self._start_ns is None:
            return out
        pos = (np.asarray(targets_ns, dtype=np.int64) - self._start_ns) // STEP.value
        ok = (pos >= 0) & (pos < len(self._values))
        out[ok] = self._values[pos[ok]]
        return out


class ScoreBook:
    """Forecasts recorded at scoring origins, for errors by lead (rolling window).

    Row ``i`` holds ``width`` forecasts made when the cutoff was at observation
    position ``origins[i]``, for positions ``origins[i] + 1 .. origins[i] + steps``.

    Parameters
    ----------
    steps : int [intervals]
        Leads recorded per origin.
    max_origins : int
        Origins kept (oldest dropped first).
    width : int
        Forecasts per origin (1, or the members of a combination and the combination).
    """

    def __init__(self, steps: int, max_origins: int, width: int = 1) -> None:
        self.steps, self.max_origins, self.width = int(steps), int(max_origins), int(width)
        # Rows live in [_lo, _hi) of buffers that grow to twice the window: a record is
        # one row written, and the window is moved to the front once per
        # ``max_origins`` records (amortised O(1), where appending to a full window
        # copied it each time).
        self._origin_buf = np.empty(0, dtype=np.int64)
        self._row_buf = np.empty((0, self.width, self.steps))
        self._shift_buf = np.empty((0, self.steps))
        self._lo = self._hi = 0
        self.n_recorded = 0

    @property
    def _origins(self) -> np.ndarray:
        return self._origin_buf[self._lo : self._hi]

    @property
    def _rows(self) -> np.ndarray:
        return self._row_buf[self._lo : self._hi]

    @property
    def shifts(self) -> np.ndarray:
        """The shift by lead recorded with each origin (the recent median error at its
        cutoff), shape (origins, steps) [series units]."""
        return self._shift_buf[self._lo : self._hi]

    def record(self, origin: int, rows: np.ndarray, shift: np.ndarray | float = 0.0) -> None:
        """Add the forecasts ``rows`` (width, steps) made with the cutoff at ``origin``
        and the band's ``shift`` by lead at that cutoff [series units]."""
        if self._hi - self._lo >= self.max_origins:
            self._lo += self._hi - self._lo + 1 - self.max_origins
        if self._hi == len(self._origin_buf):
            n = self._hi - self._lo
            size = min(max(64, 2 * len(self._origin_buf)), 2 * max(1, self.max_origins))
            origins, rows_buf, shift_buf = self._origin_buf, self._row_buf, self._shift_buf
            if size > len(origins):
                self._origin_buf = np.empty(size, dtype=np.int64)
                self._row_buf = np.empty((size, self.width, self.steps))
                self._shift_buf = np.empty((size, self.steps))
            self._origin_buf[:n] = origins[self._lo : self._hi]
            self._row_buf[:n] = rows_buf[self._lo : self._hi]
            self._shift_buf[:n] = shift_buf[self._lo : self._hi]
            self._lo, self._hi = 0, n
        self._origin_buf[self._hi] = origin
        self._row_buf[self._hi] = rows
        self._shift_buf[self._hi] = shift
        self._hi += 1
        self.n_recorded += 1

    def __len__(self) -> int:
        return self._hi - self._lo

    def drop_from(self, origin: int) -> None:
        """Forget the origins at or after cutoff position ``origin``."""
        # Origins are recorded in increasing order: the ones kept are a prefix.
        self._hi = self._lo + int(np.searchsorted(self._origins, origin, side="left"))

    @property
    def last_origin(self) -> int:
        """Cutoff position of the most recent origin (-1 if none)."""
        return int(self._origin_buf[self._hi - 1]) if self._hi > self._lo else -1

    def errors(self, observations: np.ndarray, last: int | None = None) -> np.ndarray:
        """``truth - forecast``, shape (origins, width, steps); NaN where not yet observed.

        ``last``: only the ``last`` most recent origins (default all)."""
        first = 0 if last is None else max(0, len(self) - int(last))
        pos = self._origins[first:, None] + np.arange(1, self.steps + 1)[None, :]
        truth = np.full(pos.shape, np.nan)
        seen = pos < len(observations)
        truth[seen] = observations[pos[seen]]
        return truth[:, None, :] - self._rows[first:]


def conformal_quantiles(errors: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Conformal quantiles of ``errors`` along axis 0, per column (NaN ignored).

    For level ``q >= 0.5`` the ``ceil((n + 1) q)``-th smallest of the ``n`` errors of a
    column, for ``q < 0.5`` the ``floor((n + 1) q)``-th; NaN where that rank falls
    outside ``1..n`` (too few errors for the level).

    Returns
    -------
    ndarray, shape (len(levels), columns)
    """
    errors = np.asarray(errors, dtype=float)
    ordered = np.sort(errors, axis=0)  # NaN sort last
    n = (~np.isnan(errors)).sum(axis=0)
    out = np.full((len(levels), errors.shape[1]), np.nan)
    for j, q in enumerate(levels):
        rank = np.ceil((n + 1) * q) if q >= 0.5 else np.floor((n + 1) * q)
        ok = (rank >= 1) & (rank <= n)
        idx = np.clip(rank.astype(np.int64) - 1, 0, max(len(ordered) - 1, 0))
        if len(ordered):
            picked = np.take_along_axis(ordered, idx[None, :], axis=0)[0]
            out[j, ok] = picked[ok]
    return out


def column_nanmedian(values: np.ndarray) -> np.ndarray:
    """Median of each column of ``values`` (2-D) ignoring NaN, equal bit for bit to
    ``np.nanmedian(values, axis=0)`` for finite values and NaN, at a fraction of its
    cost on the small arrays of the calibration (NumPy takes masked arrays there).

    Both order each column by ``argsort`` of the values with NaN replaced by
    ``inf`` (NumPy's masked sort; the same ``argsort`` gives the same order of equal
    values, so even the sign of a zero median agrees) and take ``(low + high) / 2``
    of the middle pair (``low`` = ``high`` for an odd count), summed from 0.0 as
    NumPy's sum is. Columns without a value give NaN (without NumPy's warning); an
    array holding ``±inf`` is left to NumPy, whose masked sort treats ``inf`` like a
    missing value.

    Parameters
    ----------
    values : ndarray, shape (rows, columns) [any units]

    Returns
    -------
    ndarray, shape (columns,) [the units of ``values``]
    """
    values = np.asarray(values, dtype=float)
    if np.isinf(values).any():
        return np.asarray(np.nanmedian(values, axis=0))
    missing = np.isnan(values)
    order = np.where(missing, np.inf, values).argsort(axis=0)
    n = (~missing).sum(axis=0)
    high = n // 2
    low = np.where(n % 2 == 1, high, high - 1)
    out = np.full(values.shape[1], np.nan)
    has = n > 0
    if has.any():
        cols = np.flatnonzero(has)
        # NumPy sums the pair from its identity, 0.0 + low + high: a pair of -0.0
        # gives +0.0 there, and so here
        out[has] = (0.0 + values[order[low[has], cols], cols]
                    + values[order[high[has], cols], cols]) / 2.0
    return out


class BaseForecaster(ABC):
    """Shared bookkeeping: observation history, cutoff, time checks, bounds, quantiles.

    Subclasses implement :meth:`_after_fit`, :meth:`_after_update` and
    :meth:`_location_scale`; the output transform :meth:`_to_output` (identity by
    default) maps model space to the series' units and must be increasing.

    Parameters
    ----------
    bounds
        ``(low, high)`` clipping of every output [series units]; e.g. ``(0, 1)`` for a
        capacity factor, ``(0, None)`` for demand.
    max_stale_steps
        Longest allowed gap between ``cutoff + 15 min`` and an issue time [intervals];
        ``None`` allows any.
    """

    name: str = "base"
    default_calibration: Calibration = "conformal"
    scoring_every_hours: int = 1
    """Hours between two scoring origins (calibration, combination weights)."""

    def __init__(self, bounds: Bounds | None = None, max_stale_steps: int | None = None) -> None:
        low, high = bounds if bounds is not None else (None, None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{self.name}: bounds low {low} > high {high}")
        self.bounds: Bounds = (low, high)
        self.max_stale_steps = max_stale_steps
        self._start: pd.Timestamp | None = None
        self._obs: _GrowingArray | None = None
        self._cutoff_at: tuple[int, pd.Timestamp, pd.Timestamp] | None = None
        self.known_ahead: dict[str, Release] = {}
        """Known-ahead regressors this forecaster reads, by name, with their release rule."""
        self._known_store: dict[str, _KnownSeries] = {}
        self._known_feeds = 0
        self.calibration: Calibration = self.default_calibration
        self.calibration_window_days = CALIBRATION_WINDOW_DAYS
        self.calibration_warmup_days = CALIBRATION_WARMUP_DAYS
        self.calibration_shift_days = CALIBRATION_SHIFT_DAYS
        self._book: ScoreBook | None = None
        self._bias_at: tuple[int, int, np.ndarray] | None = None
        self._cal_tables: dict[tuple[float, ...], np.ndarray] = {}
        self._cal_at = 0

    def set_calibration(
        self,
        method: Calibration,
        window_days: float | None = None,
        warmup_days: float | None = None,
        shift_days: float | None = None,
    ) -> Self:
        """Choose how quantiles are made (module docstring); call before :meth:`fit`.

        Parameters
        ----------
        method : {"conformal", "model"}
        window_days : float [d], optional
            Rolling window of scored origins (default 28).
        warmup_days : float [d], optional
            Replay at ``fit`` that scores the end of the history (default 7; at most
            half the history is replayed).
        shift_days : float [d], optional
            Span of the recent errors whose median, per lead, shifts the band (default
            1; 0: no shift).
        """
        if method not in ("conformal", "model"):
            raise ValueError(f"{self.name}: calibration must be 'conformal' or 'model', "
                             f"got {method!r}")
        self.calibration = method
        if window_days is not None:
            if window_days <= 0:
                raise ValueError(f"{self.name}: calibration window must be > 0 days")
            self.calibration_window_days = float(window_days)
        if warmup_days is not None:
            if warmup_days < 0:
                raise ValueError(f"{self.name}: calibration warm-up must be >= 0 days")
            self.calibration_warmup_days = float(warmup_days)
        if shift_days is not None:
            if shift_days < 0:
                raise ValueError(f"{self.name}: calibration shift span must be >= 0 days")
            self.calibration_shift_days = float(shift_days)
        return self

    # ----------------------------------------------------------------- state
    @property
    def cutoff(self) -> pd.Timestamp | None:
        """Start of the last observed interval (``None`` before ``fit``)."""
        if self._start is None or self._obs is None:
            return None
        # Asked several times per channel and step: the Timestamp arithmetic is redone
        # only when observations were added (or the forecaster refitted).
        n = len(self._obs)
        cached = self._cutoff_at
        if cached is None or cached[0] != n or cached[1] is not self._start:
            cached = self._cutoff_at = (n, self._start, self._start + (n - 1) * STEP)
        return cached[2]

    @property
    def observations(self) -> np.ndarray:
        """All values seen so far, oldest first (read-only view) [series units]."""
        if self._obs is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return self._obs.values

    @property
    def start(self) -> pd.Timestamp:
        """Interval start of the first observation seen."""
        if self._start is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return self._start

    def fit(self, history: pd.Series) -> Self:
        """Reset and learn from ``history``.

        With conformal calibration, the errors of the last
        ``calibration_warmup_days`` of the history (at most half of it) are scored
        first by a copy fitted on the rest (module docstring).

        Parameters
        ----------
        history : Series [series units]
            Contiguous 15-min grid, NaN for missing intervals, at least one row.
        """
        history = check_grid_series(history, f"{self.name}.fit")
        if len(history) == 0:
            raise ValueError(f"{self.name}.fit: empty history")
        warm = 0
        if self._needs_scoring():
            warm = min(round(self.calibration_warmup_days * STEPS_PER_DAY), len(history) // 2,
                       len(history) - self._min_history_steps())
        book: ScoreBook | None = None
        if warm > 0:
            shadow = copy.deepcopy(self)
            try:
                shadow._fit_core(history.iloc[:-warm])
            except ValueError as err:
                # Too little usable data without the warm-up days (e.g. NaN hours): the
                # errors are then scored from this fit on, as without a warm-up.
                logger.info("%s: no calibration warm-up: %s", self.name, err)
            else:
                shadow._replay(history.index[-warm], history.to_numpy(dtype=float)[-warm:])
                book = shadow._book
        self._fit_core(history, score=book is None)
        if book is not None:
            # The copy's origin at this cutoff was made by a model fitted on less data.
            book.drop_from(len(history) - 1)
            self._book = book
            self._maybe_score()
        return self

    def _fit_core(self, history: pd.Series, score: bool = True) -> None:
        """Store ``history`` (validated) and fit; start an empty score book."""
        self._start = history.index[0]
        self._obs = _GrowingArray(history.to_numpy(dtype=float))
        self._book = None
        self._bias_at = None
        self._cal_tables, self._cal_at = {}, 0
        self._after_fit()
        if self._needs_scoring():
            self._book = ScoreBook(
                CALIBRATION_STEPS,
                max(1, round(self.calibration_window_days * 24)),
                self._score_width(),
            )
            if score:
                self._maybe_score()

    def _replay(self, first: pd.Timestamp, values: np.ndarray) -> None:
        """Feed ``values`` from ``first`` as a loop would: each update ends an hour."""
        i, when = 0, first
        while i < len(values):
            n = min(4 - (when.minute // 15), len(values) - i)
            self.update_values(when, values[i : i + n])
            i, when = i + n, when + n * STEP

    def update(self, new_observations: pd.Series) -> Self:
        """Append the observations that follow ``cutoff`` directly (NaN = missing).

        Raises
        ------
        ValueError
            If the first new interval is not ``cutoff + 15 min``.
        """
        if self.cutoff is None or self._obs is None:
            raise NotFittedError(f"{self.name}: call fit() before update()")
        new = check_grid_series(new_observations, f"{self.name}.update")
        if len(new) == 0:
            return self
        return self.update_values(new.index[0], new.to_numpy(dtype=float))

    def update_values(self, first: pd.Timestamp, values: np.ndarray) -> Self:
        """Append ``values`` of consecutive intervals starting at ``first`` (NaN = missing).

        The array form of :meth:`update` for callers that hold contiguous 15-min
        values already (the MPC loop): no index is built; only ``first`` is checked.

        Raises
        ------
        ValueError
            If ``first`` is not ``cutoff + 15 min``.
        """
        cutoff = self.cutoff
        if cutoff is None or self._obs is None:
            raise NotFittedError(f"{self.name}: call fit() before update()")
        if len(values) == 0:
            return self
        if first != cutoff + STEP:
            raise ValueError(
                f"{self.name}.update: expected observations from {cutoff + STEP}, "
                f"got {first} (updates must be contiguous; feed gaps as NaN)"
            )
        n_before = len(self._obs)
        self._obs.append(np.asarray(values, dtype=float))
        self._after_update(n_before)
        self._maybe_score()
        return self

    # ------------------------------------------------------- known ahead
    def update_known(self, name: str, values: pd.Series) -> Self:
        """Feed published values of the known-ahead regressor ``name``.

        Parameters
        ----------
        name : str
            A key of :attr:`known_ahead`.
        values : Series [regressor units]
            Contiguous 15-min UTC grid, any span (before or after the cutoff); later
            feeds replace earlier ones where they overlap; NaN = not known.

        Raises
        ------
        ValueError
            If this forecaster does not read ``name``.
        """
        if name not in self.known_ahead:
            known = ", ".join(sorted(self.known_ahead)) or "none"
            raise ValueError(f"{self.name}: no known-ahead regressor '{name}' (it reads: {known})")
        series = check_grid_series(values, f"{self.name}.update_known({name})")
        if len(series):
            self._known_store.setdefault(name, _KnownSeries()).write(
                series.index[0], series.to_numpy(dtype=float))
            self._known_feeds += 1
            self._after_known(name)
        return self

    def known_values(
        self, name: str, issue_time: pd.Timestamp, targets: pd.DatetimeIndex
    ) -> np.ndarray:
        """Regressor ``name`` at ``targets`` where published at ``issue_time``, NaN elsewhere.

        The only way a forecaster reads a known-ahead value: the release rule
        decides, whatever was fed.
        """
        store = self._known_store.get(name)
        ns = targets.as_unit("ns").asi8
        if store is None:
            return np.full(len(targets), np.nan)
        values = store.read(ns)
        before = int(self.known_ahead[name].published_before(issue_time).value)
        return np.where(ns < before, values, np.nan)

    def _after_known(self, name: str) -> None:  # noqa: B027 - optional hook
        """Called after values of regressor ``name`` were fed."""

    # ------------------------------------------------------- calibration
    def _min_history_steps(self) -> int:
        """Fewest intervals :meth:`fit` needs (the warm-up leaves at least this many)."""
        return 1

    def _needs_scoring(self) -> bool:
        """Whether forecasts are recorded at scoring origins (module docstring)."""
        return self.calibration == "conformal"

    def _score_width(self) -> int:
        """Forecasts recorded per origin (see :meth:`_score_rows`)."""
        return 1

    def _score_rows(self, targets: pd.DatetimeIndex) -> np.ndarray:
        """What is recorded at a scoring origin: shape (width, len(targets)); row 0 is
        the point forecast."""
        return self._point_values(targets)[None, :]

    def _maybe_score(self) -> None:
        """Record the forecasts when an hour is complete (cutoff at ``hh:45`` UTC)."""
        book = self._book
        cutoff = self.cutoff
        if book is None or cutoff is None or (cutoff.value // STEP.value) % 4 != 3:
            return
        pos = len(self.observations) - 1
        if len(book) and pos - book.last_origin < 4 * self.scoring_every_hours:
            return
        first = cutoff + STEP
        targets = grid(int(first.value), book.steps, STEP.value, first.unit)
        book.record(pos, self._score_rows(targets), self._recent_bias())

    @property
    def score_book(self) -> ScoreBook | None:
        """The recorded forecasts (``None`` without scoring)."""
        return self._book

    def lead_errors(self, row: int = 0) -> np.ndarray:
        """Signed errors ``truth - forecast`` of recorded row ``row``, shape (origins, leads)
        [series units]; NaN where the truth is not observed yet."""
        if self._book is None:
            return np.empty((0, CALIBRATION_STEPS))
        return self._book.errors(self.observations)[:, row, :]

    def _recent_bias(self) -> np.ndarray:
        """Per lead, the median signed error ``truth - forecast`` (row 0) of the latest
        origins whose error at that lead is observed, one day's worth
        (``calibration_shift_days``) [series units], shape (CALIBRATION_STEPS,); 0 at a
        lead with fewer errors observed (after a fit without warm-up: the band is then
        the plain conformal band of the errors there are), 0 with a zero span.

        The conformal band is centred on it (:meth:`_calibrated`): a level that drifts
        away from the forecaster shows here within a day, while the errors of the whole
        window take weeks to move the band. Per lead, because a drift seen at long
        leads says nothing of the next quarter-hour (persistence is right there). The
        median, because one price spike would move a mean for a day. Causal: it reads
        only observations up to the cutoff."""
        book = self._book
        if book is None or not len(book) or self.calibration_shift_days <= 0:
            return np.zeros(CALIBRATION_STEPS)
        pos = len(self.observations) - 1
        cached = self._bias_at
        if cached is not None and cached[0] == pos and cached[1] == book.n_recorded:
            return cached[2]
        per_day = 24 / self.scoring_every_hours
        count = max(1, round(self.calibration_shift_days * per_day))
        # The longest lead is observed only ``steps`` intervals after its origin: read
        # enough origins that ``count`` of them are observed at every lead.
        errors = book.errors(self.observations,
                             count + int(np.ceil(book.steps / (4 * self.scoring_every_hours))) + 1
                             )[:, 0, :]
        seen = ~np.isnan(errors)
        newest_first = np.cumsum(seen[::-1], axis=0)[::-1]
        seen &= newest_first <= count
        errors[~seen] = np.nan
        # A partial count would stand in a 0 (or a few errors) for the level of the
        # leads not yet observed, and the scores of those origins would carry the
        # whole drift into the band's tails.
        full = seen.sum(axis=0) >= count
        # Until a lead has a day of errors it is not centred (the plain conformal band):
        # NaN would drop those origins' scores and fall back to the model's band, which
        # for a model without a scale of its own (the seasonal naive) is unbounded.
        bias = np.zeros(book.steps)
        bias[full] = column_nanmedian(errors[:, full])
        self._bias_at = (pos, book.n_recorded, bias)
        return bias

    def _calibration_table(self, levels: tuple[float, ...]) -> np.ndarray:
        """Conformal quantiles of the errors less the recent bias at their origin, shape
        (len(levels), CALIBRATION_STEPS), cached and recomputed once a day of origins
        (more often while few are recorded)."""
        book = self._book
        assert book is not None
        n = book.n_recorded
        if n >= self._cal_at + SCORING_REFRESH_ORIGINS or n >= 2 * self._cal_at:
            self._cal_tables, self._cal_at = {}, n
        table = self._cal_tables.get(levels)
        if table is None:
            table = conformal_quantiles(self.lead_errors() - book.shifts, levels)
            self._cal_tables[levels] = table
        return table

    def _calibrated(
        self,
        targets: pd.DatetimeIndex,
        levels: list[float],
        point: np.ndarray,
        model: np.ndarray,
    ) -> np.ndarray:
        """Conformal quantiles (series units) where enough errors exist, ``model`` elsewhere;
        the median is ``point``, levels above (below) it are not below (above) it, and
        the columns are non-decreasing in the level."""
        lv = np.asarray(levels)
        out = np.array(model, dtype=float)
        if self.calibration == "conformal" and self._book is not None and len(self._book):
            cutoff_pos = len(self.observations) - 1
            offset = (ns(targets) - int(self.start.value)) // STEP.value
            lead = np.clip(offset - cutoff_pos, 1, CALIBRATION_STEPS)
            table = (self._calibration_table(tuple(levels))[:, lead - 1].T
                     + self._recent_bias()[lead - 1, None])
            cal = self._clip(point[:, None] + table)
            out = np.where(np.isnan(table), out, cal)
        out[:, lv == 0.5] = point[:, None]
        out[:, lv > 0.5] = np.maximum(out[:, lv > 0.5], point[:, None])
        out[:, lv < 0.5] = np.minimum(out[:, lv < 0.5], point[:, None])
        order = np.argsort(lv, kind="stable")
        out[:, order] = np.maximum.accumulate(out[:, order], axis=1)
        return out

    def staleness_steps(self, issue_time: pd.Timestamp | str) -> int:
        """Intervals between ``cutoff + 15 min`` and ``issue_time`` (0 when up to date)."""
        cutoff = self.cutoff
        if cutoff is None:
            raise NotFittedError(f"{self.name}: call fit() first")
        return int((as_utc(issue_time) - cutoff) / STEP) - 1

    def _targets(self, issue_time: pd.Timestamp | str, horizon: int) -> pd.DatetimeIndex:
        cutoff = self.cutoff
        if cutoff is None:
            raise NotFittedError(f"{self.name}: call fit() before predict()")
        t = as_utc(issue_time)
        if t.value % STEP.value:
            raise ValueError(f"{self.name}: issue time {t} is not on the 15-minute grid")
        if horizon < 1:
            raise ValueError(f"{self.name}: horizon must be >= 1 interval, got {horizon}")
        if t <= cutoff:
            raise LookaheadError(
                f"{self.name}: issue time {t} is not after the cutoff {cutoff}: the forecaster "
                f"has seen interval(s) it is asked to forecast; issue at {cutoff + STEP} or later"
            )
        if self.max_stale_steps is not None:
            # in integer nanoseconds: Timedelta arithmetic costs µs on every call
            stale = (int(t.value) - int(cutoff.value)) // STEP.value - 1
            if stale > self.max_stale_steps:
                raise ValueError(
                    f"{self.name}: issue time {t} is {stale} intervals past cutoff + 15 min "
                    f"({cutoff + STEP}); at most {self.max_stale_steps} allowed: update() first"
                )
        # ``t`` is UTC and on the grid already: ``grid_index`` without its re-validation,
        # shared by every channel asked at ``t`` (:func:`forecasters.memo.grid`).
        return grid(int(t.value), horizon, STEP.value, t.unit)

    def _clip(self, values: np.ndarray) -> np.ndarray:
        low, high = self.bounds
        if low is None and high is None:
            return values
        return np.clip(values, low, high)

    # ----------------------------------------------------------- prediction
    def predict(self, issue_time: pd.Timestamp | str, horizon: int) -> pd.Series:
        """Point forecast for ``horizon`` intervals starting at ``issue_time``.

        Returns
        -------
        Series [series units]
            Indexed by the target interval starts ``issue_time + k * 15 min``.
        """
        targets = self._targets(issue_time, horizon)
        return pd.Series(self._point_values(targets), index=targets, name=self.name)

    def predict_values(self, issue_time: pd.Timestamp | str, steps: int) -> np.ndarray:
        """:meth:`predict` as a bare float array (same checks, same values) [series units]."""
        return np.asarray(self._point_values(self._targets(issue_time, steps)), dtype=float)

    def _point_values(self, targets: pd.DatetimeIndex) -> np.ndarray:
        """Point forecast for ``targets`` (already checked by :meth:`_targets`)."""
        loc, _ = self._location_scale(targets)
        return self._clip(self._to_output(loc))

    def predict_quantiles(
        self,
        issue_time: pd.Timestamp | str,
        horizon: int,
        levels: Sequence[float] = DEFAULT_LEVELS,
    ) -> pd.DataFrame:
        """Quantile forecasts: conformal (recent errors by lead) or model-based.

        Model-based quantiles come from a Gaussian error in model space; where the
        spread is unknown (NaN scale, see the module docstring) the quantiles other
        than the median are the bounds (``±inf`` when unbounded). With conformal
        calibration they are used where too few errors are recorded for a level.

        Returns
        -------
        DataFrame [series units]
            Index: target times; one column per level (float), non-decreasing across
            levels and clipped to ``bounds``.
        """
        levels = self._check_levels(levels)
        targets = self._targets(issue_time, horizon)
        return pd.DataFrame(self._quantiles(targets, levels), index=targets,
                            columns=pd.Index(levels, name="level"))

    def quantile_values(self, issue_time: pd.Timestamp | str, steps: int,
                        levels: Sequence[float]) -> np.ndarray:
        """:meth:`predict_quantiles` as a bare float array, shape (steps, len(levels))
        (same checks, same values) [series units]."""
        return self._quantiles(self._targets(issue_time, steps), self._check_levels(levels))

    def _quantiles(self, targets: pd.DatetimeIndex, levels: list[float]) -> np.ndarray:
        """Quantiles of :meth:`predict_quantiles` for ``targets`` (already checked by
        :meth:`_targets`) at ``levels`` (checked), shape (len(targets), len(levels))."""
        loc, scale = self._location_scale(targets)
        z = _normal_scores(tuple(levels))
        spread = np.where(np.isnan(scale), np.inf, scale)
        with np.errstate(invalid="ignore"):
            raw = loc[:, None] + spread[:, None] * z[None, :]
        raw[:, z == 0.0] = loc[:, None]  # the median is the point forecast (inf * 0 is NaN)
        model = self._clip(self._to_output(raw))
        point = self._clip(self._to_output(loc))
        return self._calibrated(targets, levels, point, model)

    def _check_levels(self, levels: Sequence[float]) -> list[float]:
        """``levels`` as floats; raises unless non-empty and all in (0, 1)."""
        out = [float(q) for q in levels]
        if not out or any(not 0.0 < q < 1.0 for q in out):
            raise ValueError(f"{self.name}: quantile levels must lie in (0, 1), got {out}")
        return out

    # ------------------------------------------------------ subclass hooks
    def _after_fit(self) -> None:  # noqa: B027 - optional hook
        """Called once the history is stored."""

    def _after_update(self, n_before: int) -> None:  # noqa: B027 - optional hook
        """Called after new observations (from position ``n_before``) are stored."""

    @abstractmethod
    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """Forecast location and error std in model space for ``targets``."""

    def _to_output(self, values: np.ndarray) -> np.ndarray:
        """Map model-space values to series units (increasing)."""
        return values

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return {"bounds": self.bounds, "max_stale_steps": self.max_stale_steps,
                "calibration": self.calibration}


@memoized(maxsize=16)
def _normal_scores(levels: tuple[float, ...]) -> np.ndarray:
    """Standard normal quantiles of ``levels`` [-]."""
    normal = NormalDist()
    return np.array([normal.inv_cdf(q) for q in levels])


def last_valid(values: np.ndarray) -> float:
    """Most recent non-NaN value of ``values`` (NaN if none)."""
    valid = np.flatnonzero(~np.isnan(values))
    return float(values[valid[-1]]) if len(valid) else float("nan")


# ------------------------------------------------------------------ frame
@dataclass(frozen=True)
class ForecastFrame:
    """Forecasts keyed by ``(issue_time_utc, target_time_utc)``.

    ``frame`` has that two-level index and columns ``lead_steps`` (1 = the interval
    starting at the issue time), ``value`` [series units] and one column per quantile
    level named ``q<level>``.
    """

    frame: pd.DataFrame

    @classmethod
    def from_predictions(
        cls,
        points: Mapping[pd.Timestamp, pd.Series],
        quantiles: Mapping[pd.Timestamp, pd.DataFrame] | None = None,
    ) -> ForecastFrame:
        """Build from ``{issue_time: predict(...)}`` (and optional quantile frames)."""
        parts: list[pd.DataFrame] = []
        for issue, series in points.items():
            issue_ts = as_utc(issue)
            part = pd.DataFrame(
                {
                    "issue_time_utc": issue_ts,
                    "target_time_utc": series.index,
                    "lead_steps": ((pd.DatetimeIndex(series.index) - issue_ts) / STEP).astype(int)
                    + 1,
                    "value": series.to_numpy(dtype=float),
                }
            )
            if quantiles is not None and issue in quantiles:
                qf = quantiles[issue]
                for level in qf.columns:
                    part[quantile_column(float(level))] = qf[level].to_numpy(dtype=float)
            parts.append(part)
        if not parts:
            empty = pd.DataFrame(
                columns=["issue_time_utc", "target_time_utc", "lead_steps", "value"]
            )
            return cls(empty.set_index(["issue_time_utc", "target_time_utc"]))
        frame = pd.concat(parts, ignore_index=True).set_index(["issue_time_utc", "target_time_utc"])
        return cls(frame.sort_index())

    def at_issue(self, issue_time: pd.Timestamp | str) -> pd.DataFrame:
        """All targets forecast at one issue time."""
        out = self.frame.xs(as_utc(issue_time), level="issue_time_utc")
        assert isinstance(out, pd.DataFrame)
        return out

    def for_target(self, target_time: pd.Timestamp | str) -> pd.DataFrame:
        """Every forecast made for one target interval, by issue time."""
        out = self.frame.xs(as_utc(target_time), level="target_time_utc")
        assert isinstance(out, pd.DataFrame)
        return out

    @property
    def issue_times(self) -> pd.DatetimeIndex:
        """Distinct issue times, sorted."""
        return pd.DatetimeIndex(self.frame.index.get_level_values(0).unique())


def quantile_column(level: float) -> str:
    """Column name of a quantile level, e.g. ``q0.1``."""
    return f"q{level:g}"


# --------------------------------------------------------------- registry
ForecasterFactory = Callable[..., BaseForecaster]
_REGISTRY: dict[str, ForecasterFactory] = {}


def register_forecaster(name: str, factory: ForecasterFactory) -> None:
    """Make ``factory`` available as ``make_forecaster(name, ...)``."""
    _REGISTRY[name] = factory


def forecaster_names() -> list[str]:
    """Registered forecaster names, sorted."""
    _ensure_registered()
    return sorted(_REGISTRY)


def make_forecaster(
    name: str,
    *,
    calibration: Calibration | None = None,
    calibration_window_days: float | None = None,
    calibration_warmup_days: float | None = None,
    calibration_shift_days: float | None = None,
    **params: Any,
) -> BaseForecaster:
    """Build a registered forecaster by name.

    Names: ``oracle`` and ``noisy_oracle`` (need ``truth=``), ``persistence``,
    ``seasonal_naive_daily``, ``seasonal_naive_weekly``, ``sarimax``, ``auto_sarimax``,
    ``ets``, ``direct_lad``, ``combination``, ``day_ahead_known`` (needs ``truth=``; wraps
    ``inner=``, see :mod:`forecasters.known_ahead`) and, when their libraries are
    installed, the adapters ``sf_autoarima``, ``sf_autoets``, ``sf_mstl`` and ``sktime``.
    ``params`` go to the constructor (e.g. ``bounds=(0, 1)``); ``calibration`` and its
    window, warm-up and shift span to :meth:`BaseForecaster.set_calibration` (default: the
    forecaster's own, conformal for the models).
    """
    _ensure_registered()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown forecaster '{name}'; expected one of: {known}") from None
    forecaster = factory(**params)
    if calibration is not None or calibration_window_days is not None or (
        calibration_warmup_days is not None or calibration_shift_days is not None
    ):
        forecaster.set_calibration(
            calibration or forecaster.calibration, calibration_window_days,
            calibration_warmup_days, calibration_shift_days,
        )
    return forecaster


_IMPLEMENTATIONS = (
    "forecasters.adapters",
    "forecasters.combination",
    "forecasters.direct",
    "forecasters.known_ahead",
    "forecasters.naive",
    "forecasters.oracle",
    "forecasters.statistical",
)
"""Modules that register forecasters when imported."""


def _ensure_registered() -> None:
    # The implementation modules register themselves on import; importing them here
    # keeps `make_forecaster` usable from `forecasters.base` alone without a cycle
    # (a module already imported is not run again).
    import importlib

    for module in _IMPLEMENTATIONS:
        importlib.import_module(module)


def iter_levels(levels: Iterable[float] | None) -> tuple[float, ...]:
    """Validated quantile levels (defaults when ``None``)."""
    out = tuple(float(q) for q in (levels if levels is not None else DEFAULT_LEVELS))
    if any(not 0.0 < q < 1.0 for q in out):
        raise ValueError(f"quantile levels must lie in (0, 1), got {out}")
    return out
