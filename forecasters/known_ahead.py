"""Day-ahead market prices are published before delivery: use them, forecast only the rest.

A day-ahead (DA) market clears the prices of delivery day ``D`` on the day before
and publishes them at a fixed local time (NYISO: DA LBMPs around 11:00 Eastern on
``D - 1``). A controller running at issue time ``t`` therefore *knows* the prices of
every delivery day whose publication time is at or before ``t``:

* today's prices always (published yesterday);
* tomorrow's prices once ``t`` is at or after today's publication time (local wall
  clock, so the rule is the same on the 23-h and 25-h days of a DST change).

Publication rule (:class:`traces.grid.DayAheadRelease`). With ``t_loc`` the issue
time on the local wall clock, ``day(x)`` the local calendar date of ``x`` and ``p``
the publication hour,

    last published delivery day  L(t) = day(t_loc) + 1   if t_loc - day(t_loc) >= p
                                      = day(t_loc)       otherwise,

and a target interval starting at ``s`` is *published* at ``t`` iff
``day(s_loc) <= L(t)``. :class:`KnownAhead` returns the truth for published targets
and the wrapped forecaster's prediction for the others. A published target whose
truth is missing (NaN) falls back to the wrapped forecast.

Quantiles of a published target: the published value plus the conformal quantiles of
the wrapper's own errors at published targets (:mod:`forecasters.base`), so the band
is as wide as the published values miss the observed series: zero where they are the
series (a retail tariff published ahead), the spread of real-time around day-ahead
prices where the wrapper forecasts the real-time price with the day-ahead one (it
claimed zero spread there and its 0.9 quantile covered 0.63 of the NYISO zone-F
real-time prices, April–June 2022). The other targets take the wrapped forecaster's
quantiles.

Why this is not lookahead: the values used are *published information* at ``t``,
exactly what a market participant can download at ``t``; values published after ``t``
are never read (``tests/test_known_ahead.py`` poisons the truth beyond the
publication boundary and checks the predictions are bit-identical). The time rule of
:class:`~forecasters.base.BaseForecaster` still applies to the *observations*
(``fit``/``update``/``cutoff``), which both the wrapper and the inner model receive.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from forecasters.base import (
    BaseForecaster,
    Bounds,
    as_utc,
    check_grid_series,
    make_forecaster,
    register_forecaster,
)
from traces.errors import TraceRangeError
from traces.grid import NYISO_DA_RELEASE, STEP, DayAheadRelease

NYISO_DA_PUBLICATION_HOUR = NYISO_DA_RELEASE.hour_local
"""Local hour [h] at which NYISO publishes the next day's DA LBMPs (Eastern time)."""
NYISO_TZ = NYISO_DA_RELEASE.tz
"""Market time zone of NYISO."""


class KnownAhead(BaseForecaster):
    """Truth for targets whose day-ahead values are published, ``inner`` beyond.

    Parameters
    ----------
    truth : Series [series units]
        The realised (published) series on the contiguous 15-min UTC grid; NaN where
        unknown. Must cover every published target asked for.
    inner : BaseForecaster
        Forecaster of the targets not yet published. It receives the same ``fit`` and
        ``update`` calls as the wrapper; it is not called when every target of a
        forecast is published.
    publication_hour_local : float [h]
        Local wall-clock time of day, in hours after midnight, at which the values of
        the next delivery day are published (in ``[0, 24)``).
    tz : str
        IANA time zone of the market's calendar (delivery days, publication time).
    bounds, max_stale_steps
        See :class:`~forecasters.base.BaseForecaster`; ``bounds`` also clip the truth.
    """

    name = "day_ahead_known"

    def __init__(
        self,
        truth: pd.Series,
        inner: BaseForecaster,
        publication_hour_local: float = NYISO_DA_PUBLICATION_HOUR,
        tz: str = NYISO_TZ,
        bounds: Bounds | None = None,
        max_stale_steps: int | None = None,
    ) -> None:
        super().__init__(bounds=bounds, max_stale_steps=max_stale_steps)
        if not 0.0 <= publication_hour_local < 24.0:
            raise ValueError(
                f"{self.name}: publication_hour_local must lie in [0, 24), "
                f"got {publication_hour_local}"
            )
        self.truth = check_grid_series(truth, f"{self.name} truth")
        if len(self.truth) == 0:
            raise ValueError(f"{self.name} truth: empty series")
        self.inner = inner
        self._release = DayAheadRelease(publication_hour_local, tz)  # validates the zone name
        self.publication_hour_local = self._release.hour_local
        self.tz = self._release.tz
        self._truth_values = self.truth.to_numpy(dtype=float)
        self._truth_start_ns = int(self.truth.index[0].value)
        # No shift of the band by the recent median error: the errors of published
        # values exist at a lead only for the origins that had it published (after
        # 11:00 for the late leads), too few of the latest for a day's median, and a
        # published price does not drift away from the series the way a model does.
        self.calibration_shift_days = 0.0

    # ------------------------------------------------------------ the rule
    @property
    def release(self) -> DayAheadRelease:
        """The publication rule of the day-ahead values (:class:`traces.grid.DayAheadRelease`)."""
        return self._release

    def last_published_day(self, issue_time: pd.Timestamp | str) -> pd.Timestamp:
        """Local delivery day ``L(t)`` (naive midnight) whose values are the latest published."""
        return self._release.last_published_day(as_utc(issue_time))

    def published(self, issue_time: pd.Timestamp | str, targets: pd.DatetimeIndex) -> np.ndarray:
        """Boolean mask: the target's delivery-day values are published at ``issue_time``."""
        return self._release.published(as_utc(issue_time), targets)

    def _truth_position(self, target: pd.Timestamp) -> int:
        """Index of ``target``'s interval in the truth (negative before its start)."""
        return (int(target.value) - self._truth_start_ns) // STEP.value

    def _known(self, issue_time: pd.Timestamp, targets: pd.DatetimeIndex) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
        """Mask of targets taken from the truth, and the (clipped) truth there."""
        mask = self.published(issue_time, targets)
        values = np.full(len(targets), np.nan)
        if not mask.any():
            return mask, values
        # Published targets form a prefix of the horizon (delivery days only grow).
        n_pub = int(mask.sum())
        first = self._truth_position(targets[0])
        if first < 0 or first + n_pub > len(self._truth_values):
            raise TraceRangeError(
                f"{self.name}: truth covers [{self.truth.index[0]}, "
                f"{self.truth.index[-1] + STEP}); published targets reach "
                f"[{targets[0]}, {targets[n_pub - 1] + STEP})"
            )
        values[:n_pub] = self._truth_values[first : first + n_pub]
        mask = mask & np.isfinite(values)
        return mask, self._clip(values)

    # ------------------------------------------------------- observations
    def _after_fit(self) -> None:
        """Fit the inner forecaster on the same history."""
        self.inner.fit(pd.Series(
            self.observations,
            index=pd.date_range(self.start, periods=len(self.observations), freq=STEP),
        ))

    def _after_update(self, n_before: int) -> None:
        """Feed the new observations to the inner forecaster (both entry points of
        :class:`~forecasters.base.BaseForecaster` end here)."""
        self.inner.update_values(self.start + n_before * STEP, self.observations[n_before:])

    # ---------------------------------------------------------- prediction
    def _point_values(self, targets: pd.DatetimeIndex) -> np.ndarray:
        """Truth where published, the inner point forecast elsewhere [series units]."""
        mask, values = self._known(targets[0], targets)
        if not mask.all():
            inner = self.inner.predict(targets[0], len(targets)).to_numpy(dtype=float)
            values = np.where(mask, values, inner)
        return values

    def _score_rows(self, targets: pd.DatetimeIndex) -> np.ndarray:
        """The published values at a scoring origin, NaN where not published: the
        conformal band of a published target is made of the errors of published
        values only (the inner forecaster calibrates its own). A scoring origin's
        horizon may run past the end of the truth (a run's last day): those targets are
        not scored, where a forecast for them would be refused."""
        rows = np.full((1, len(targets)), np.nan)
        inside = max(0, min(len(targets), len(self._truth_values)
                            - self._truth_position(targets[0])))
        if inside:
            mask, values = self._known(targets[0], targets[:inside])
            rows[0, :inside] = np.where(mask, values, np.nan)
        return rows

    def _quantiles(self, targets: pd.DatetimeIndex, levels: list[float]) -> np.ndarray:
        """Where published: the truth plus the conformal quantiles of the published
        values' errors (zero spread with ``calibration="model"`` or while too few
        errors are recorded); the inner quantiles elsewhere."""
        mask, values = self._known(targets[0], targets)
        exact = np.repeat(values[:, None], len(levels), axis=1)
        out = exact
        if mask.any():
            point = np.where(mask, values, 0.0)
            out = np.where(mask[:, None], self._calibrated(targets, levels, point, exact), exact)
        if not mask.all():
            inner = self.inner.quantile_values(targets[0], len(targets), levels)
            out = np.where(mask[:, None], out, inner)
        return out

    def _location_scale(self, targets: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        # Not reached: the point and the quantiles are overridden because the inner
        # forecaster's quantiles need not be Gaussian. Kept to satisfy the base class.
        point = self.predict(targets[0], len(targets)).to_numpy(dtype=float)
        return point, np.zeros(len(targets))

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "inner": self.inner.name,
            "inner_params": self.inner.get_params(),
            "publication_hour_local": self.publication_hour_local,
            "tz": self.tz,
        }


def day_ahead_known(
    truth: pd.Series,
    inner: str = "persistence",
    inner_params: Mapping[str, Any] | None = None,
    publication_hour_local: float = NYISO_DA_PUBLICATION_HOUR,
    tz: str = NYISO_TZ,
    bounds: Bounds | None = None,
    max_stale_steps: int | None = None,
) -> KnownAhead:
    """Registry factory: :class:`KnownAhead` around the registered forecaster ``inner``.

    ``bounds`` and ``max_stale_steps`` are passed on to ``inner`` (``inner_params``
    override them).
    """
    params = {"bounds": bounds, "max_stale_steps": max_stale_steps} | dict(inner_params or {})
    return KnownAhead(
        truth,
        make_forecaster(inner, **params),
        publication_hour_local=publication_hour_local,
        tz=tz,
        bounds=bounds,
        max_stale_steps=max_stale_steps,
    )


register_forecaster("day_ahead_known", day_ahead_known)
