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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from traces.grid import STEP

Bounds = tuple[float | None, float | None]
"""``(low, high)`` output limits in the series' units; ``None`` means unbounded."""

DEFAULT_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9)
"""Quantile levels used when none are given."""


class LookaheadError(ValueError):
    """A forecast was requested for an interval the forecaster has already observed."""


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

    def __init__(self, bounds: Bounds | None = None, max_stale_steps: int | None = None) -> None:
        low, high = bounds if bounds is not None else (None, None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{self.name}: bounds low {low} > high {high}")
        self.bounds: Bounds = (low, high)
        self.max_stale_steps = max_stale_steps
        self._start: pd.Timestamp | None = None
        self._obs: _GrowingArray | None = None

    # ----------------------------------------------------------------- state
    @property
    def cutoff(self) -> pd.Timestamp | None:
        """Start of the last observed interval (``None`` before ``fit``)."""
        if self._start is None or self._obs is None:
            return None
        return self._start + (len(self._obs) - 1) * STEP

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

        Parameters
        ----------
        history : Series [series units]
            Contiguous 15-min grid, NaN for missing intervals, at least one row.
        """
        history = check_grid_series(history, f"{self.name}.fit")
        if len(history) == 0:
            raise ValueError(f"{self.name}.fit: empty history")
        self._start = history.index[0]
        self._obs = _GrowingArray(history.to_numpy(dtype=float))
        self._after_fit()
        return self

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
        return self

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
        stale = int((t - cutoff) / STEP) - 1
        if self.max_stale_steps is not None and stale > self.max_stale_steps:
            raise ValueError(
                f"{self.name}: issue time {t} is {stale} intervals past cutoff + 15 min "
                f"({cutoff + STEP}); at most {self.max_stale_steps} allowed: update() first"
            )
        # ``t`` is UTC and on the grid already: ``grid_index`` without its re-validation.
        return pd.date_range(t, periods=horizon, freq=STEP, name="interval_start_utc")

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
        """Quantile forecasts from a Gaussian error in model space.

        Where the spread is unknown (NaN scale, see the module docstring) the
        quantiles other than the median are the bounds (``±inf`` when unbounded).

        Returns
        -------
        DataFrame [series units]
            Index: target times; one column per level (float), non-decreasing across
            levels and clipped to ``bounds``.
        """
        levels = self._check_levels(levels)
        targets = self._targets(issue_time, horizon)
        loc, scale = self._location_scale(targets)
        normal = NormalDist()
        z = np.array([normal.inv_cdf(q) for q in levels])
        spread = np.where(np.isnan(scale), np.inf, scale)
        with np.errstate(invalid="ignore"):
            raw = loc[:, None] + spread[:, None] * z[None, :]
        raw[:, z == 0.0] = loc[:, None]  # the median is the point forecast (inf * 0 is NaN)
        out = self._clip(self._to_output(raw))
        return pd.DataFrame(out, index=targets, columns=pd.Index(levels, name="level"))

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
        return {"bounds": self.bounds, "max_stale_steps": self.max_stale_steps}


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


def make_forecaster(name: str, **params: Any) -> BaseForecaster:
    """Build a registered forecaster by name.

    Names: ``oracle`` and ``noisy_oracle`` (need ``truth=``), ``persistence``,
    ``seasonal_naive_daily``, ``seasonal_naive_weekly``, ``sarimax``, ``ets``,
    ``day_ahead_known`` (needs ``truth=``; wraps ``inner=``, see
    :mod:`forecasters.known_ahead`). ``params`` go to the constructor (e.g. ``bounds=(0, 1)``).
    """
    _ensure_registered()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown forecaster '{name}'; expected one of: {known}") from None
    return factory(**params)


def _ensure_registered() -> None:
    # The implementation modules register themselves on import; importing them here
    # keeps `make_forecaster` usable from `forecasters.base` alone without a cycle.
    if not _REGISTRY:
        import forecasters.known_ahead
        import forecasters.naive
        import forecasters.oracle
        import forecasters.statistical  # noqa: F401


def iter_levels(levels: Iterable[float] | None) -> tuple[float, ...]:
    """Validated quantile levels (defaults when ``None``)."""
    out = tuple(float(q) for q in (levels if levels is not None else DEFAULT_LEVELS))
    if any(not 0.0 < q < 1.0 for q in out):
        raise ValueError(f"quantile levels must lie in (0, 1), got {out}")
    return out
