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

Gaps: an issue time whose latest published observation is missing is skipped when
``skip_missing_latest`` (default) and counted; a target whose truth is missing is left
out of the metrics at its lead (``n`` per lead says how many pairs count). The
forecaster never sees a value not yet published at ``t``: the backtest hands it only
those, and the conformance tests prove the forecasters cannot look further.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasters.base import (
    DEFAULT_LEVELS,
    BaseForecaster,
    ForecastFrame,
    as_utc,
    check_grid_series,
    iter_levels,
    quantile_column,
)
from traces.grid import STEP, STEP_H, STEPS_PER_DAY, Publication


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
) -> pd.DataFrame:
    """MAE, RMSE, sMAPE and pinball loss for each lead.

    Parameters
    ----------
    predictions, truth : ndarray, shape (n_issues, horizon) [series units]
        Point forecasts and realised values; NaN truth pairs are left out.
    quantiles : ndarray, shape (n_issues, horizon, n_levels), optional [series units]
    levels : sequence of float
        Quantile levels of the last axis of ``quantiles``.

    Returns
    -------
    DataFrame
        Index ``lead_steps`` (1..horizon); columns ``lead_h`` [h], ``n``, ``mae``,
        ``rmse`` [series units], ``smape_pct`` [%], and with quantiles ``pinball``
        (mean over levels) and ``pinball_q<level>`` [series units].
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
                "smape_pct": 100.0
                * _nanmean0(np.where(valid, smape_terms(truth, predictions), np.nan)),
            },
            index=pd.RangeIndex(1, horizon + 1, name="lead_steps"),
        )
        if quantiles is not None and len(levels):
            q = np.asarray(quantiles, dtype=float)
            per_level = []
            for j, level in enumerate(levels):
                loss = np.where(valid, pinball_loss(truth, q[:, :, j], float(level)), np.nan)
                out[f"pinball_{quantile_column(float(level))}"] = _nanmean0(loss)
                per_level.append(out[f"pinball_{quantile_column(float(level))}"].to_numpy())
            out.insert(5, "pinball", np.mean(per_level, axis=0))
    return out


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
    lv = iter_levels(levels) if levels else ()
    # observed[i]: how many intervals of the series are published at issue pos0 + i.
    issue_ns = index[pos0 : last_pos + 1].as_unit("ns").asi8
    observed = (publication.observable_before_ns(issue_ns) - issue_ns[0]) // STEP.value + pos0
    if observed[0] < 1:
        raise ValueError(f"backtest start {first}: nothing of the series is published by then")
    forecaster.fit(series.iloc[: observed[0]])
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
        if skip_missing_latest and np.isnan(values[seen - 1]):
            skipped += 1
            continue
        issue = index[pos]
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
    metrics = metrics_by_lead(pred_arr, truth_arr, quant_arr if lv else None, lv)
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
    )


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
