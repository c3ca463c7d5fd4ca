"""Direct median regression by lead: the simple regression on the day-ahead price.

One linear model per lead hour ``h`` (1 … :data:`LEAD_HOURS`), fitted by least
absolute deviations (the conditional *median*, which minimises the MAE the presets
are chosen by) on the pairs (origin, target) of the last ``fit_window_days``.
For an origin whose newest complete hour is ``c`` and the target hour ``j = c + h``
the features are

* ``1``;
* ``last``: ``y[c]``, the newest complete hour (persistence);
* ``seasonal``: ``y[j - 24 m]`` with ``m = ceil(h / 24)``, the newest value of the same
  hour of the day (seasonal naive);
* for each known-ahead regressor ``r`` (e.g. ``lmp_da``): ``r[j]`` if published at the
  origin, else the same hour of the latest earlier day published
  (:mod:`forecasters.hourly`), and ``r[j - 24]``, the previous day's value;
* with ``holidays=``: the holiday indicator of the target's local date.

The training pairs are built as the forecaster would have seen them at each origin
(issue time = the end of hour ``c``): a day-ahead price is a feature of a pair only
if it was published by then, so the model learns how much to trust yesterday's
price for the hours whose price is not out yet. Missing values are left out of the
fit (NaN truth or feature) and, when forecasting, a missing feature takes its median
over the training pairs.

LAD is solved by iteratively reweighted least squares for all leads at once (a small
ridge keeps all-zero columns, such as a holiday absent from the window, harmless).
Between refits (every ``refit_every_hours``, default a day) the coefficients are
fixed; a new hour needs no work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecasters.base import register_forecaster
from forecasters.calendar import holiday_flags
from forecasters.hourly import (
    FALLBACK_DAYS,
    HOURS_PER_DAY,
    MIN_CACHE_HOURS,
    HourlyForecaster,
    _hour_means,
)

LEAD_HOURS = MIN_CACHE_HOURS
"""Lead hours with their own coefficients; longer leads reuse the last day's."""
_MAD_TO_STD = 1.4826
"""Scale of a Gaussian's standard deviation to its median absolute deviation."""


def lad_fit(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, iterations: int = 60, ridge: float = 1e-8
) -> np.ndarray:
    """Least-absolute-deviation coefficients of several independent problems at once.

    Minimises ``sum_n weight[l, n] |y[l, n] - x[l, n] @ b[l]|`` for each ``l`` by
    iteratively reweighted least squares.

    Parameters
    ----------
    x : ndarray, shape (L, N, p)
    y : ndarray, shape (L, N)
    weight : ndarray, shape (L, N)
        0 leaves a row out (NaN rows must have weight 0; their values are ignored).
    iterations : int
    ridge : float
        Added to the diagonal, relative to the mean diagonal of ``x' W x``.

    Returns
    -------
    ndarray, shape (L, p)
    """
    ok = weight > 0
    x = np.where(ok[:, :, None], np.nan_to_num(x), 0.0)
    y = np.where(ok, np.nan_to_num(y), 0.0)
    n_par = x.shape[2]
    eye = np.eye(n_par)[None]
    w = weight.astype(float)
    beta = np.zeros((x.shape[0], n_par))
    scale = np.maximum(np.abs(y).sum(axis=1) / np.maximum(ok.sum(axis=1), 1), 1e-12)
    for _ in range(iterations):
        xtw = x * w[:, :, None]
        gram = np.einsum("lnp,lnq->lpq", xtw, x)
        diag = np.trace(gram, axis1=1, axis2=2) / n_par
        gram = gram + ridge * np.maximum(diag, 1e-12)[:, None, None] * eye
        rhs = np.einsum("lnp,ln->lp", xtw, y)
        new = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        resid = np.abs(y - np.einsum("lnp,lp->ln", x, new))
        # 1/|r| weights, floored so exact fits do not blow up (relative to the data).
        w = weight / np.maximum(resid, 1e-6 * scale[:, None])
        if np.allclose(new, beta, rtol=1e-9, atol=1e-12):
            beta = new
            break
        beta = new
    return beta


class DirectLad(HourlyForecaster):
    """Direct per-lead median regression on persistence, seasonal naive and regressors.

    Parameters
    ----------
    use_last, use_seasonal : bool
        Include the ``last`` and ``seasonal`` features (module docstring).
    iterations : int
        IRLS iterations of the LAD fit.
    **kwargs
        See :class:`~forecasters.hourly.HourlyForecaster` (bounds, transform, fit window,
        ``refit_every_hours`` default 24, ``holidays``, ``regressors``).
    """

    name = "direct_lad"

    def __init__(
        self,
        use_last: bool = True,
        use_seasonal: bool = True,
        iterations: int = 60,
        refit_every_hours: int = HOURS_PER_DAY,
        **kwargs: Any,
    ) -> None:
        self.use_last = bool(use_last)
        self.use_seasonal = bool(use_seasonal)
        self.iterations = int(iterations)
        super().__init__(refit_every_hours=refit_every_hours, **kwargs)
        self._release_cache: dict[int, int] = {}

    # ---------------------------------------------------------- features
    def _published_before_ns(self, issues_ns: np.ndarray) -> np.ndarray:
        """Release boundary [ns] of the regressors at each issue time (memoised)."""
        out = np.empty(len(issues_ns), dtype=np.int64)
        for i, t in enumerate(issues_ns):
            b = self._release_cache.get(int(t))
            if b is None:
                b = int(self.release.published_before(pd.Timestamp(int(t), tz="UTC")).value)
                self._release_cache[int(t)] = b
            out[i] = b
        return out

    def _features(
        self,
        y: np.ndarray,
        raw: dict[str, np.ndarray],
        origins: np.ndarray,
        lead: int,
        boundary_ns: np.ndarray,
    ) -> np.ndarray:
        """Design rows for targets ``origins + lead`` (module docstring), shape (n, p).

        ``y`` are model-space hours, ``raw[name]`` the regressor's hourly values as
        fed (NaN = missing), both indexed by model hour and long enough for the
        targets; ``boundary_ns`` the release boundary at each origin's issue time.
        """
        n = len(origins)
        target = origins + lead
        cols = [np.ones(n)]
        if self.use_last:
            cols.append(_take(y, origins))
        if self.use_seasonal:
            m = -(-lead // HOURS_PER_DAY)
            season = _take(y, target - m * HOURS_PER_DAY)
            back = _take(y, target - (m + 1) * HOURS_PER_DAY)
            cols.append(np.where(np.isnan(season), back, season))
        hour0_ns = int(self._hour0_time.value)
        hour_ns = 3_600_000_000_000
        for name in self.regressor_names:
            values = raw[name]
            now = np.full(n, np.nan)
            for days in range(FALLBACK_DAYS + 1):
                src = target - days * HOURS_PER_DAY
                published = hour0_ns + src * hour_ns < boundary_ns
                cand = np.where(published, _take(values, src), np.nan)
                now = np.where(np.isnan(now), cand, now)
            prev = _take(values, target - HOURS_PER_DAY)
            prev = np.where(np.isnan(prev), _take(values, target - 2 * HOURS_PER_DAY), prev)
            cols += [now, prev]
        if self.holidays is not None:
            starts = pd.DatetimeIndex(hour0_ns + target * hour_ns, tz="UTC")
            cols.append(holiday_flags(starts, self.holidays, self.holiday_tz))
        return np.column_stack(cols)

    def _raw_regressors(self, n: int, issue: pd.Timestamp) -> dict[str, np.ndarray]:
        """Hourly means of each regressor over model hours ``[0, n)`` as published at
        ``issue`` (NaN where not)."""
        out: dict[str, np.ndarray] = {}
        if not self.regressor_names:
            return out
        quarters = pd.date_range(self.hour_start(0), periods=4 * n, freq="15min")
        for name in self.regressor_names:
            out[name] = _hour_means(self.known_values(name, issue, quarters))
        return out

    # ---------------------------------------------------------- fitting
    def _estimate(self, endog: np.ndarray, first_hour: int) -> None:
        y = self._hourly.values
        n_hours = len(y)
        raw = self._raw_regressors(n_hours, self._now())
        n_par = 1 + self.use_last + self.use_seasonal + 2 * len(self.regressor_names) + (
            self.holidays is not None)
        targets = np.arange(first_hour, n_hours)
        xs = np.full((LEAD_HOURS, len(targets), n_par), np.nan)
        ys = np.full((LEAD_HOURS, len(targets)), np.nan)
        hour0_ns = int(self._hour0_time.value)
        for k in range(LEAD_HOURS):
            lead = k + 1
            origins = targets - lead
            ok = origins >= 0
            boundary = self._published_before_ns(hour0_ns + (origins + 1) * 3_600_000_000_000)
            xs[k] = self._features(y, raw, origins, lead, boundary)
            xs[k][~ok] = np.nan
            ys[k] = y[targets]
        weight = (np.isfinite(xs).all(axis=2) & np.isfinite(ys)).astype(float)
        enough = weight.sum(axis=1) >= n_par + 1
        if not enough.any():
            raise ValueError(
                f"{self.name}: too few complete (target, feature) pairs to fit "
                f"({int(weight.sum(axis=1).max())} at best, need {n_par + 1}); "
                f"history up to {self.cutoff}"
            )
        self._beta = lad_fit(xs, ys, weight, self.iterations)
        # A short history leaves the longest leads without pairs (their seasonal value
        # lies before the data): they take the coefficients of the nearest lead that has.
        fitted = np.flatnonzero(enough)
        nearest = fitted[np.argmin(np.abs(fitted[None, :] - np.arange(LEAD_HOURS)[:, None]),
                                   axis=1)]
        self._beta = self._beta[nearest]
        with np.errstate(invalid="ignore"):
            self._fill = np.nanmedian(np.where(weight[:, :, None] > 0, xs, np.nan), axis=(0, 1))
        resid = np.abs(ys - np.einsum("lnp,lp->ln", np.nan_to_num(xs), self._beta))
        resid = np.where(weight > 0, resid, np.nan)
        scale = np.full(LEAD_HOURS, np.nan)
        scale[fitted] = _MAD_TO_STD * np.nanmedian(resid[fitted], axis=1)
        self._scale = scale[nearest]

    def _absorb(self, endog: np.ndarray, first_hour: int) -> None:
        """Coefficients are fixed between refits: a new hour is only a new feature value."""

    def _forecast(self, n: int, issue: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        y = self._hourly.values
        c = len(y) - 1
        leads = np.arange(1, n + 1)
        # Leads past the fitted ones reuse the last fitted day's coefficients by hour.
        k = np.where(leads <= LEAD_HOURS, leads,
                     LEAD_HOURS - HOURS_PER_DAY + 1 + (leads - LEAD_HOURS - 1) % HOURS_PER_DAY) - 1
        y_ext = np.concatenate([y, np.full(n, np.nan)])
        raw = self._raw_regressors(len(y_ext), issue)
        boundary = np.full(1, int(self.release.published_before(issue).value)
                           if self.regressor_names else 0)
        mean = np.empty(n)
        for i, lead in enumerate(leads):
            row = self._features(y_ext, raw, np.array([c]), int(lead), boundary)[0]
            # A missing feature (a gap) takes its typical value in the training pairs.
            row = np.where(np.isnan(row), self._fill, row)
            mean[i] = row @ self._beta[k[i]]
        return mean, self._scale[k]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for reports)."""
        return super().get_params() | {
            "use_last": self.use_last,
            "use_seasonal": self.use_seasonal,
            "iterations": self.iterations,
        }


def _take(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]`` with NaN where ``pos`` is outside the array."""
    pos = np.asarray(pos, dtype=np.int64)
    ok = (pos >= 0) & (pos < len(values))
    out = np.full(len(pos), np.nan)
    out[ok] = values[pos[ok]]
    return out


register_forecaster("direct_lad", DirectLad)
