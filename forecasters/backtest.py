"""Rolling-origin backtest and error metrics by lead time.

Protocol: the forecaster is fitted on the part of the series published at ``start``;
then, for each issue time ``t`` from ``start`` (every ``stride_steps`` intervals), it is
updated with every observation *published* by ``t`` (one update per interval, as in the
MPC loop, NaN for missing ones) and asked for ``predict(t, horizon)`` and
``predict_quantiles(t, horizon, levels)``. Lead ``k`` (1-based) is the target
``t + (k - 1) * 15 min``, whose interval ends ``k * 15 min`` after ``t``.

Publication (:class:`traces.grid.Publication`, from the series' metadata): a native
15-min value is published when its interval ends, an hourly one held over its four
quarters when its hour ends. At an issue time ``:15``, ``:30`` or ``:45`` the running
hour is therefore not seen (the forecaster is 1-3 intervals stale, which the
protocol allows), exactly as in the closed loop.

Known-ahead regressors (``known_ahead={name: (series, release)}``, e.g. the
day-ahead price with :data:`traces.grid.NYISO_DA_RELEASE`): before the fit and at
each issue time the forecaster is fed, with ``update_known``, the values the release
rule says are published by then (each interval once), as the closed loop does.

Gaps: an issue time whose latest published observation is missing is skipped when
``skip_missing_latest`` (default) and counted; a target whose truth is missing is left
out of the metrics at its lead (``n`` per lead says how many pairs count). The
forecaster never sees a value not yet published at ``t``: the backtest hands it only
those, and the conformance tests prove the forecasters cannot look further.

Metrics (:func:`metrics_by_lead`): MAE, RMSE, bias, sMAPE, MASE (the MAE over the
in-sample MAE of the one-day seasonal naive on the history before the first issue
time), pinball loss per level, the coverage of each quantile (share of truths at or
below it) and of each central interval. Comparisons (:func:`compare`): skill
``1 - MAE / MAE_reference`` and the Diebold–Mariano test of equal *absolute-error*
loss with the Harvey–Leybourne–Newbold small-sample correction
(:func:`diebold_mariano`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from forecasters.base import (
    DEFAULT_LEVELS,
    BaseForecaster,
    ForecastFrame,
    Release,
    as_utc,
    check_grid_series,
    iter_levels,
    quantile_column,
)
from forecasters.nowcast import nowcast_shift, nowcast_weights
from traces.grid import STEP, STEP_H, STEPS_PER_DAY, Publication

BACKTEST_LEVELS: tuple[float, ...] = (0.05, 0.1, 0.5, 0.9, 0.95)
"""Quantile levels of ``mpc-dc backtest``: the 80 % and 90 % central intervals and the
one-sided 0.9 quantile a provisioning rule uses."""


def pinball_loss(y: np.ndarray, q_forecast: np.ndarray, level: float) -> np.ndarray:
    """Pinball (quantile) loss ``max(level * (y - f), (level - 1) * (y - f))`` [y units]."""
    diff = y - q_forecast
    return np.maximum(level * diff, (level - 1.0) * diff)


def smape_terms(y: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Per-pair sMAPE terms ``2 |f - y| / (|f| + |y|)`` [-]; ``0/0`` counts as 0."""
    denom = np.abs(f) + np.abs(y)
    num = 2.0 * np.abs(f - y)
    out = np.zeros_like(num, dtype=float)
    np.divide(num, denom, out=out, where=denom > 0)
    return np.where(np.isnan(num), np.nan, out)


def metrics_by_lead(
    predictions: np.ndarray,
    truth: np.ndarray,
    quantiles: np.ndarray | None = None,
    levels: Sequence[float] = (),
    scale: float | None = None,
) -> pd.DataFrame:
    """Point and quantile metrics for each lead.

    Parameters
    ----------
    predictions, truth : ndarray, shape (n_issues, horizon) [series units]
        Point forecasts and realised values; NaN truth pairs are left out.
    quantiles : ndarray, shape (n_issues, horizon, n_levels), optional [series units]
    levels : sequence of float
        Quantile levels of the last axis of ``quantiles``.
    scale : float [series units], optional
        MASE denominator (:func:`mase_scale`); without it no ``mase`` column.

    Returns
    -------
    DataFrame
        Index ``lead_steps`` (1..horizon); columns ``lead_h`` [h], ``n``, ``mae``,
        ``rmse``, ``bias`` (mean forecast - truth) [series units], ``smape_pct`` [%],
        ``mase`` [-]; with quantiles ``pinball`` (mean over levels),
        ``pinball_q<level>`` [series units], ``cover_q<level>`` (share of truths at or
        below the quantile) and ``cover_<lo>_<hi>`` for each central interval whose
        two levels are given (share inside, ends included) [-].
    """
    predictions = np.asarray(predictions, dtype=float)
    truth = np.asarray(truth, dtype=float)
    if predictions.shape != truth.shape or predictions.ndim != 2:
        raise ValueError(
            f"predictions {predictions.shape} and truth {truth.shape} must match (2-D)"
        )
    horizon = predictions.shape[1]
    valid = ~np.isnan(truth) & ~np.isnan(predictions)
    n = valid.sum(axis=0)
    err = np.where(valid, predictions - truth, np.nan)
    with np.errstate(invalid="ignore"):
        out = pd.DataFrame(
            {
                "lead_h": np.arange(1, horizon + 1) * STEP_H,
                "n": n,
                "mae": _nanmean0(np.abs(err)),
                "rmse": np.sqrt(_nanmean0(err**2)),
                "bias": _nanmean0(err),
                "smape_pct": 100.0
                * _nanmean0(np.where(valid, smape_terms(truth, predictions), np.nan)),
            },
            index=pd.RangeIndex(1, horizon + 1, name="lead_steps"),
        )
        if scale is not None:
            out["mase"] = out["mae"] / scale if scale > 0 else np.nan
        if quantiles is not None and len(levels):
            q = np.asarray(quantiles, dtype=float)
            per_level = []
            for j, level in enumerate(levels):
                col = quantile_column(float(level))
                loss = np.where(valid, pinball_loss(truth, q[:, :, j], float(level)), np.nan)
                out[f"pinball_{col}"] = _nanmean0(loss)
                per_level.append(out[f"pinball_{col}"].to_numpy())
                out[f"cover_{col}"] = _nanmean0(
                    np.where(valid, (truth <= q[:, :, j]).astype(float), np.nan))
            out.insert(6, "pinball", np.mean(per_level, axis=0))
            for lo, hi in central_intervals(levels):
                inside = (truth >= q[:, :, levels.index(lo)]) & (truth <= q[:, :, levels.index(hi)])
                out[interval_column(lo, hi)] = _nanmean0(
                    np.where(valid, inside.astype(float), np.nan))
    return out


def central_intervals(levels: Sequence[float]) -> list[tuple[float, float]]:
    """Pairs ``(q, 1 - q)`` with ``q < 0.5`` both in ``levels``."""
    lv = [float(q) for q in levels]
    return [(q, h) for q in lv if q < 0.5 for h in lv if math.isclose(q + h, 1.0)]


def interval_column(lo: float, hi: float) -> str:
    """Column of the coverage of the central interval ``[q_lo, q_hi]``, e.g. ``cover_90``."""
    return f"cover_{round(100 * (hi - lo)):d}"


def mase_scale(history: np.ndarray, season: int = STEPS_PER_DAY) -> float:
    """In-sample MAE of the seasonal naive (``season`` intervals) on ``history`` [units]."""
    history = np.asarray(history, dtype=float)
    if len(history) <= season:
        return float("nan")
    diff = np.abs(history[season:] - history[:-season])
    return float(np.nanmean(diff)) if np.isfinite(diff).any() else float("nan")


def diebold_mariano(
    loss_a: np.ndarray, loss_b: np.ndarray, overlap: int = 1
) -> tuple[float, float, int]:
    """Diebold–Mariano test of equal expected loss, with the HLN correction.

    ``d_t = loss_a[t] - loss_b[t]`` (pairs with a NaN left out); the long-run variance
    sums the autocovariances of ``d`` up to lag ``overlap - 1`` (forecasts whose
    targets overlap are correlated; a negative sum falls back to the variance alone).
    The statistic is multiplied by ``sqrt((T + 1 - 2 h + h (h - 1) / T) / T)`` (Harvey,
    Leybourne and Newbold, 1997) and compared with Student's t with ``T - 1`` degrees
    of freedom.

    Parameters
    ----------
    loss_a, loss_b : ndarray
        Losses of the two forecasters at the same issue times (e.g. absolute errors).
    overlap : int
        ``h``: issue times one target spans (lead / issue spacing, rounded up).

    Returns
    -------
    statistic : float
        Negative when ``a`` has the smaller loss.
    p_value : float
        Two-sided.
    n : int
        Pairs used.
    """
    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    d = d[np.isfinite(d)]
    t = len(d)
    h = max(1, int(overlap))
    if t < 3 or t <= h:
        return float("nan"), float("nan"), t
    centred = d - d.mean()
    gamma = [float(centred @ centred) / t]
    gamma += [float(centred[k:] @ centred[:-k]) / t for k in range(1, h)]
    variance = gamma[0] + 2.0 * sum(gamma[1:])
    if variance <= 0:
        variance = gamma[0]
    if variance <= 0:
        return float("nan"), float("nan"), t
    dm = float(d.mean()) / math.sqrt(variance / t)
    correction = math.sqrt(max((t + 1 - 2 * h + h * (h - 1) / t) / t, 0.0))
    stat = dm * correction
    p_value = float(2.0 * stats.t.sf(abs(stat), df=t - 1))
    return stat, p_value, t


def _nanmean0(values: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN (NaN for columns without a value, no warning)."""
    count = (~np.isnan(values)).sum(axis=0)
    total = np.nansum(values, axis=0)
    out = np.full(values.shape[1], np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


@dataclass(frozen=True)
class BacktestResult:
    """Everything a backtest produced.

    ``predictions`` and ``truth`` have shape ``(n_issues, horizon)``; ``quantiles``
    ``(n_issues, horizon, n_levels)`` [series units].
    """

    forecaster: str
    issue_times: pd.DatetimeIndex
    horizon: int
    levels: tuple[float, ...]
    predictions: np.ndarray
    quantiles: np.ndarray
    truth: np.ndarray
    metrics: pd.DataFrame
    n_skipped: int
    scale: float = float("nan")
    stride_steps: int = 1

    def forecast_frame(self) -> ForecastFrame:
        """The forecasts keyed by (issue time, target time)."""
        points: dict[pd.Timestamp, pd.Series] = {}
        quants: dict[pd.Timestamp, pd.DataFrame] = {}
        for i, issue in enumerate(self.issue_times):
            targets = pd.date_range(issue, periods=self.horizon, freq=STEP)
            points[issue] = pd.Series(self.predictions[i], index=targets)
            quants[issue] = pd.DataFrame(
                self.quantiles[i], index=targets, columns=list(self.levels)
            )
        return ForecastFrame.from_predictions(points, quants)


def rolling_origin_backtest(
    forecaster: BaseForecaster,
    series: pd.Series,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str | None = None,
    horizon: int = STEPS_PER_DAY,
    stride_steps: int = 1,
    levels: Sequence[float] | None = DEFAULT_LEVELS,
    skip_missing_latest: bool = True,
    *,
    publication: Publication,
    known_ahead: Mapping[str, tuple[pd.Series, Release]] | None = None,
) -> BacktestResult:
    """Run a rolling-origin backtest (see module docstring).

    Parameters
    ----------
    forecaster
        A fresh forecaster; it is fitted here.
    series : Series [series units]
        Contiguous 15-min grid, NaN for missing intervals.
    start, end
        First issue time and the (exclusive) last one; default ``end``: as late as the
        series still covers a whole horizon.
    horizon : int [intervals]
    stride_steps : int [intervals]
        Spacing of issue times (the forecaster is still updated every interval).
    levels
        Quantile levels for the pinball loss; ``None`` or empty skips quantiles.
    skip_missing_latest
        Skip (and count) issue times whose latest published observation is NaN.
    publication
        When a value of ``series`` becomes observable (e.g. ``meta.publication`` of
        the reader; ``Publication()`` for a native 15-min series).
    known_ahead
        Known-ahead regressors by name: the series (15-min grid) and its release rule.
        Every regressor the forecaster reads must be given; others are ignored.

    Raises
    ------
    ValueError
        A regressor the forecaster reads is missing from ``known_ahead``.
    """
    series = check_grid_series(series, "backtest series")
    values = series.to_numpy(dtype=float)
    index = pd.DatetimeIndex(series.index)
    first = as_utc(start)
    pos0 = int((first - index[0]) / STEP)
    if pos0 < 1 or first != first.floor(STEP):
        raise ValueError(f"backtest start {first} must be on the grid and after {index[0]}")
    last_pos = len(values) - horizon
    if end is not None:
        last_pos = min(last_pos, int((as_utc(end) - index[0]) / STEP) - 1)
    if last_pos < pos0:
        raise ValueError(
            f"backtest: no issue time in [{first}, {end}) leaves a {horizon}-interval horizon "
            f"inside the series ending {index[-1] + STEP}"
        )
    missing = sorted(set(forecaster.known_ahead) - set(known_ahead or {}))
    if missing:
        raise ValueError(
            f"backtest: {forecaster.name} reads the known-ahead regressor(s) "
            f"{', '.join(missing)}; pass their series and release rule in known_ahead="
        )
    feed = _KnownAheadFeed(
        forecaster, {k: v for k, v in (known_ahead or {}).items() if k in forecaster.known_ahead}
    )
    lv = iter_levels(levels) if levels else ()
    # observed[i]: how many intervals of the series are published at issue pos0 + i.
    issue_ns = index[pos0 : last_pos + 1].as_unit("ns").asi8
    observed = (publication.observable_before_ns(issue_ns) - issue_ns[0]) // STEP.value + pos0
    if observed[0] < 1:
        raise ValueError(f"backtest start {first}: nothing of the series is published by then")
    feed.publish(first)
    forecaster.fit(series.iloc[: observed[0]])
    scale = mase_scale(values[: observed[0]])
    fed = int(observed[0])
    issues: list[pd.Timestamp] = []
    preds: list[np.ndarray] = []
    quants: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    skipped = 0
    for pos in range(pos0, last_pos + 1, stride_steps):
        seen = int(observed[pos - pos0])
        if seen > fed:
            for p in range(fed, seen):
                forecaster.update(series.iloc[p : p + 1])
            fed = seen
        issue = index[pos]
        feed.publish(issue)
        if skip_missing_latest and np.isnan(values[seen - 1]):
            skipped += 1
            continue
        preds.append(forecaster.predict(issue, horizon).to_numpy())
        if lv:
            quants.append(forecaster.predict_quantiles(issue, horizon, lv).to_numpy())
        truths.append(values[pos : pos + horizon])
        issues.append(issue)
    pred_arr = np.array(preds).reshape(len(preds), horizon)
    truth_arr = np.array(truths).reshape(len(truths), horizon)
    quant_arr = (
        np.array(quants).reshape(len(quants), horizon, len(lv))
        if lv
        else np.empty((len(preds), horizon, 0))
    )
    metrics = metrics_by_lead(pred_arr, truth_arr, quant_arr if lv else None, lv, scale)
    return BacktestResult(
        forecaster=forecaster.name,
        issue_times=pd.DatetimeIndex(issues, name="issue_time_utc"),
        horizon=horizon,
        levels=lv,
        predictions=pred_arr,
        quantiles=quant_arr,
        truth=truth_arr,
        metrics=metrics,
        n_skipped=skipped,
        scale=scale,
        stride_steps=stride_steps,
    )


def nowcast_result(result: BacktestResult, series: pd.Series, publication: Publication,
                   tau_h: float) -> BacktestResult:
    """``result`` with the last published observation blended into its forecasts.

    At each issue time ``t`` the last observation published by then (``publication``)
    is blended into the point forecast and shifts its quantiles
    (:func:`forecasters.nowcast.nowcast_shift`), with weights ``exp(−d/τ)`` where ``d``
    runs from the end of that observation's interval to the end of each target
    (:func:`forecasters.nowcast.nowcast_weights`); the metrics are recomputed. An issue
    whose last published value is missing keeps its forecasts.

    Parameters
    ----------
    result : BacktestResult
        A backtest of ``series``.
    series : Series [series units]
        The backtested series (15-min grid).
    publication : Publication
        When its values are published.
    tau_h : float [h]
        Time constant (> 0).
    """
    if not tau_h > 0:
        raise ValueError(f"nowcast_result: expected tau_h > 0, got {tau_h!r}")
    series = check_grid_series(series, "backtest series")
    now = result.issue_times.asi8
    boundary = publication.observable_before_ns(now)
    pos = pd.DatetimeIndex(series.index).get_indexer(pd.DatetimeIndex(boundary - STEP.value,
                                                                      tz="UTC"))
    values = series.to_numpy(dtype=float)
    last = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    first_s = (now + STEP.value - boundary) / 1e9
    weights = nowcast_weights(first_s, result.horizon, tau_h * 3600.0, STEP.total_seconds())
    shift = nowcast_shift(result.predictions, last, weights)
    predictions = result.predictions + shift
    quantiles = result.quantiles + shift[:, :, None]
    metrics = metrics_by_lead(predictions, result.truth, quantiles if result.levels else None,
                              result.levels, result.scale)
    return replace(result, forecaster=f"{result.forecaster}+nowcast", predictions=predictions,
                   quantiles=quantiles, metrics=metrics)


class _KnownAheadFeed:
    """Feeds each known-ahead regressor's newly published intervals (each once)."""

    def __init__(
        self, forecaster: BaseForecaster, regressors: Mapping[str, tuple[pd.Series, Release]]
    ) -> None:
        self.forecaster = forecaster
        self.regressors = {k: (check_grid_series(v, f"known-ahead '{k}'"), r)
                           for k, (v, r) in regressors.items()}
        self._fed_until: dict[str, pd.Timestamp] = {}

    def publish(self, now: pd.Timestamp) -> None:
        """Feed what is published at ``now`` and was not fed yet."""
        for name, (values, release) in self.regressors.items():
            until = release.published_before(now)
            since = self._fed_until.get(name)
            mask = values.index < until
            if since is not None:
                mask &= values.index >= since
            if mask.any():
                self.forecaster.update_known(name, values[mask])
            self._fed_until[name] = until if since is None else max(since, until)


def compare(
    result: BacktestResult, reference: BacktestResult, leads: Sequence[int] = (STEPS_PER_DAY,)
) -> dict[str, float]:
    """Skill and Diebold–Mariano test of ``result`` against ``reference`` (same issues).

    Loss: the absolute error. ``skill_all`` and ``dm_all`` use each issue time's mean
    absolute error over all leads (overlap ``horizon / stride``); ``skill_<h>h`` and
    ``dm_<h>h`` the error at lead ``h`` (in intervals, reported in hours).

    Raises
    ------
    ValueError
        If the two results were not issued at the same times.
    """
    common = result.issue_times.intersection(reference.issue_times)
    if len(common) == 0:
        raise ValueError(f"compare: {result.forecaster} and {reference.forecaster} share no "
                         "issue time")
    ia = result.issue_times.get_indexer(common)
    ib = reference.issue_times.get_indexer(common)
    err_a = np.abs(result.predictions[ia] - result.truth[ia])
    err_b = np.abs(reference.predictions[ib] - reference.truth[ib])
    out: dict[str, float] = {}
    with np.errstate(invalid="ignore"):
        mean_a, mean_b = np.nanmean(err_a, axis=1), np.nanmean(err_b, axis=1)
    out["skill_all"] = 1.0 - float(np.nanmean(err_a)) / float(np.nanmean(err_b))
    stat, p, _ = diebold_mariano(mean_a, mean_b, -(-result.horizon // result.stride_steps))
    out["dm_all"], out["dm_p_all"] = stat, p
    for lead in leads:
        if lead > result.horizon:
            continue
        tag = f"{lead * STEP_H:g}h"
        a, b = err_a[:, lead - 1], err_b[:, lead - 1]
        out[f"skill_{tag}"] = 1.0 - float(np.nanmean(a)) / float(np.nanmean(b))
        stat, p, _ = diebold_mariano(a, b, -(-lead // result.stride_steps))
        out[f"dm_{tag}"], out[f"dm_p_{tag}"] = stat, p
    return out


def coverage_by_day(result: BacktestResult, level: float) -> pd.Series:
    """Share of truths at or below the ``level`` quantile, per UTC issue day [-]."""
    j = list(result.levels).index(level)
    inside = np.where(np.isnan(result.truth), np.nan,
                      (result.truth <= result.quantiles[:, :, j]).astype(float))
    with np.errstate(invalid="ignore"):
        per_issue = np.nanmean(inside, axis=1)
    return pd.Series(per_issue, index=result.issue_times).groupby(
        result.issue_times.floor("D")).mean()


def day_ahead_summary(
    metrics: pd.DataFrame, band_h: tuple[float, float] = (12.0, 24.0)
) -> dict[str, float]:
    """MAE at the 24-h lead and mean MAE over leads in ``(band_h[0], band_h[1]]`` [units]."""
    band = metrics[(metrics["lead_h"] > band_h[0]) & (metrics["lead_h"] <= band_h[1])]
    at_24 = metrics.loc[metrics["lead_h"] == 24.0, "mae"]
    return {
        "mae_24h": float(at_24.iloc[0]) if len(at_24) else float("nan"),
        "mae_12_24h": float(band["mae"].mean()),
    }
