"""Fit the figures of the synthetic generator on the real public data.

Run ``python -m traces.calibrate --data ../shared/data --out traces/figures/synthetic.json``.
The output holds only fitted figures (profiles, AR coefficients, scales, spike
distribution parameters, 113-point quantile functions) and
the real-data summary statistics used as regression targets, plus the fitting
window, the source files and the date of the fit. No raw values or slices of
the data are written.

Inputs (read through :mod:`traces.datasets` and :mod:`traces.burstgpt`):

- NYISO real-time zonal LMP 2022 (EIA hourly file) -> :class:`~traces.synthetic.LmpSpec`
  per zone (default J, New York City; F, Capital, also fitted).
- NY wind CF 2022 (EIA-930 NYIS wind / installed capacity) -> ``WindSpec``.
- Google cell-a PDU power utilisation, May 2019 -> load ``SeasonalAR``.
- BurstGPT hourly request counts (61 days) -> ``RequestSpec``.
- BurstGPT v1 first 400 raw rows -> ``TokenSpec``.

All fits are least squares or moment fits in numpy (traces/ has no scipy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traces.grid import STEPS_PER_DAY
from traces.synthetic import (
    FIGURES_SCHEMA,
    SeasonalAR,
    SyntheticSpec,
    normal_cdf,
    series_stats,
)

DEFAULT_ZONES = ("J", "F")
"""Zones fitted by default; the first is the generator's default zone."""

PROBABILITIES = tuple(
    float(p)
    for p in np.concatenate(
        (
            [0.0, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3],
            np.round(np.arange(1, 100) / 100, 2),
            [0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 1.0],
        )
    )
)
"""Probabilities of the stored quantile functions [-]: every percentile plus
seven points in each tail, so negative prices (0.02 % of 2022 zone J hours)
and spike sizes up to the maximum are kept rather than interpolated away."""

SPIKE_MEDIAN_MULTIPLE = 4.0
"""An LMP interval above this multiple of the median counts as a spike (target statistic)."""

_MAX_DF = 1000.0
_MIN_DF = 4.5


# --------------------------------------------------------------------------- fitting


def fit_seasonal_ar(
    series: pd.Series,
    *,
    step_h: float,
    tz: str,
    monthly: bool,
    lags: Sequence[int],
    robust_scale: bool = False,
    clip_z: float | None = None,
    gaussian: bool = False,
) -> tuple[SeasonalAR, pd.Series]:
    """Fit a :class:`~traces.synthetic.SeasonalAR` to a regular series.

    Steps: (1) least squares of ``x`` on month, slot-of-day and weekday dummies
    (local clock of ``tz``), the slot and weekday offsets centred to mean zero;
    (2) residual scale per month (standard deviation, or 1.4826 × MAD when
    ``robust_scale``); (3) least squares of the standardised residual ``z``
    (clipped at ``±clip_z`` when given) on its own lags; (4) innovation
    standard deviation such that the AR's stationary variance equals the
    sample variance of ``z``, and Student-t degrees of freedom from the excess
    kurtosis ``κ`` of the innovations, ``df = 4 + 6 / κ`` (Gaussian-like when
    ``κ <= 0.03``).

    Parameters
    ----------
    series
        Regular series on a UTC index of step ``step_h`` (NaN = missing).
    step_h
        Step of the series [h].
    tz
        Time zone of the profile clock.
    monthly
        Fit 12 monthly levels and scales (else one each).
    lags
        AR lags [steps].
    robust_scale
        Use the MAD instead of the standard deviation for the monthly scale.
    clip_z
        Clip of ``z`` before the AR fit [-].
    gaussian
        Force Gaussian innovations (copula scores must stay N(0, 1) marginally,
        or heavy-tailed scores would over-sample the extreme quantiles).

    Returns
    -------
    The fitted process and the unclipped standardised residual ``z`` [-].
    """
    index = pd.DatetimeIndex(series.index)
    x = series.to_numpy(dtype=float)
    local = index.tz_convert(tz)
    slots = round(24 / step_h)
    slot = np.asarray((local.hour * 60 + local.minute) // round(step_h * 60))
    weekday = local.day_of_week.to_numpy()
    month = local.month.to_numpy() - 1 if monthly else np.zeros(len(x), dtype=int)
    n_month = 12 if monthly else 1
    design = np.zeros((len(x), n_month + (slots - 1) + 6))
    design[np.arange(len(x)), month] = 1.0
    has_slot = slot > 0
    design[np.flatnonzero(has_slot), n_month + slot[has_slot] - 1] = 1.0
    has_day = weekday > 0
    design[np.flatnonzero(has_day), n_month + slots - 1 + weekday[has_day] - 1] = 1.0
    ok = np.isfinite(x)
    if monthly:
        present = np.bincount(month[ok], minlength=12)
        if (present == 0).any():
            raise ValueError(f"months without data: {np.flatnonzero(present == 0) + 1}")
    coef, *_ = np.linalg.lstsq(design[ok], x[ok], rcond=None)
    slot_eff = np.concatenate(([0.0], coef[n_month : n_month + slots - 1]))
    day_eff = np.concatenate(([0.0], coef[n_month + slots - 1 :]))
    month_level = coef[:n_month] + slot_eff.mean() + day_eff.mean()
    resid = x - design @ coef
    scale = np.empty(n_month)
    for m in range(n_month):
        r = resid[(month == m) & ok]
        scale[m] = (
            1.4826 * float(np.median(np.abs(r - np.median(r)))) if robust_scale else float(r.std())
        )
    z = resid / scale[month]
    z_fit = np.clip(z, -clip_z, clip_z) if clip_z is not None else z
    coefs, innovations = fit_ar(z_fit, lags)
    # OLS on a series with slow components (multi-day bursts, storms) leaves a
    # process whose stationary variance is below the sample variance of z; the
    # innovation scale is set so the two agree (for a copula: scores stay N(0, 1)).
    innov_std = math.sqrt(float(np.nanvar(z_fit)) / _psi_sum_squares(coefs, lags))
    kurt = float(np.mean((innovations - innovations.mean()) ** 4) / innov_std**4 - 3.0)
    df = _MAX_DF if gaussian or kurt <= 0.03 else min(_MAX_DF, max(_MIN_DF, 4.0 + 6.0 / kurt))
    process = SeasonalAR(
        step_h=step_h,
        tz=tz,
        month_level=_round(month_level),
        day_profile=_round(slot_eff - slot_eff.mean()),
        weekday_profile=_round(day_eff - day_eff.mean()),
        month_scale=_round(scale),
        ar_lags=tuple(int(k) for k in lags),
        ar_coefs=_round(coefs),
        innovation_std=round(innov_std, 6),
        innovation_df=round(df, 3),
    )
    return process, pd.Series(z, index=index)


def _psi_sum_squares(coefs: np.ndarray, lags: Sequence[int], horizon: int = 20_000) -> float:
    """``Σ ψ_j²`` of the AR's impulse response: stationary variance per unit innovation variance."""
    psi = np.zeros(horizon)
    psi[0] = 1.0
    for j in range(1, horizon):
        psi[j] = sum(a * psi[j - k] for a, k in zip(coefs, lags, strict=True) if j - k >= 0)
    if not np.isfinite(psi).all() or abs(psi[-1]) > 1e-6:
        raise ValueError(f"fitted AR {list(coefs)} on lags {list(lags)} is not stationary")
    return float(np.sum(psi**2))


def fit_ar(z: np.ndarray, lags: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares AR coefficients of ``z`` on its ``lags`` (no intercept).

    Returns
    -------
    coefficients [-] and the innovations of the rows where all lags are finite.
    """
    z = np.asarray(z, dtype=float)
    max_lag = max(lags)
    target = z[max_lag:]
    regressors = np.column_stack([z[max_lag - k : len(z) - k] for k in lags])
    ok = np.isfinite(target) & np.isfinite(regressors).all(axis=1)
    coefs, *_ = np.linalg.lstsq(regressors[ok], target[ok], rcond=None)
    return coefs, target[ok] - regressors[ok] @ coefs


def fit_copula(
    series: pd.Series, *, tz: str, monthly: bool, lags: Sequence[int] = (1, 2, 24)
) -> dict[str, Any]:
    """Fit a :class:`~traces.synthetic.CopulaAR` on an hourly series.

    Normal scores ``Φ⁻¹((rank - 0.5) / n)`` (ties share their mean rank, which
    keeps runs of equal values, e.g. empty API hours, persistent) get a
    seasonal AR (:func:`fit_seasonal_ar`, step 1 h); the quantile function is
    taken at :data:`PROBABILITIES`.
    """
    values = series.to_numpy(dtype=float)
    ok = np.isfinite(values)
    ranks = pd.Series(values[ok]).rank(method="average").to_numpy()
    scores = np.full(len(values), np.nan)
    scores[ok] = normal_ppf((ranks - 0.5) / ok.sum())
    process, _ = fit_seasonal_ar(
        pd.Series(scores, index=series.index),
        step_h=1.0,
        tz=tz,
        monthly=monthly,
        lags=lags,
        gaussian=True,
    )
    return {
        "scores": _process_dict(process),
        "score_mean": round(float(scores[ok].mean()), 6),
        "score_std": round(float(scores[ok].std()), 6),
        "probabilities": list(PROBABILITIES),
        "quantiles": list(_round(np.quantile(values[ok], PROBABILITIES))),
    }


def fit_lmp(hourly: pd.Series, zone: str) -> dict[str, Any]:
    """Fit the LMP copula of one zone on an hourly UTC price series [$/MWh].

    Monthly levels and scales on the America/New_York clock, lags 1, 2, 24 h.
    """
    return {"zone": zone, "process": fit_copula(hourly, tz="America/New_York", monthly=True)}


def fit_wind(cf_hourly: pd.Series) -> dict[str, Any]:
    """Fit the wind-CF copula on an hourly CF series [-] (quantiles clipped to [0, 1])."""
    out = fit_copula(cf_hourly, tz="America/New_York", monthly=True)
    out["quantiles"] = [min(1.0, max(0.0, q)) for q in out["quantiles"]]
    return out


def fit_load(util: pd.Series) -> dict[str, Any]:
    """Fit the load ``SeasonalAR`` on 15-min power utilisation [-].

    One month of data: no monthly terms. Profiles on the US/Pacific clock of
    the Google cell (trace start = 2019-05-01 00:00 PDT); lags 1, 2 and 96.
    """
    process, _ = fit_seasonal_ar(
        util, step_h=0.25, tz="America/Los_Angeles", monthly=False, lags=(1, 2, STEPS_PER_DAY)
    )
    return _process_dict(process)


def fit_requests(hourly_rates: dict[str, pd.Series]) -> dict[str, Any]:
    """Fit one copula AR of the hourly request rate [requests/h] per stream.

    Lags 1, 2 and 24 h; profiles on the America/New_York clock, because the
    reader places trace hour 0 at local midnight in New York (BurstGPT's hours
    are trace-local). No monthly terms (61 days).
    """
    return {
        "streams": {
            name: fit_copula(rate, tz="America/New_York", monthly=False)
            for name, rate in hourly_rates.items()
        }
    }


TOKEN_PROBABILITIES = (
    0.0,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.975,
    0.99,
    1.0,
)
"""Probabilities of the token-length quantile functions (17 points for 383 rows) [-]."""


def fit_tokens(
    request_tokens: np.ndarray, response_tokens: np.ndarray, models: np.ndarray
) -> dict[str, Any]:
    """Fit token lengths: zero share, model shares, log-quantile functions, score correlation.

    Rows with zero request or response tokens count towards ``zero_share``;
    the quantile functions and the normal-score correlation use the others.
    """
    req = np.asarray(request_tokens, dtype=float)
    resp = np.asarray(response_tokens, dtype=float)
    nonzero = (req > 0) & (resp > 0)
    zero_share = float(np.mean(~nonzero))
    log_req, log_resp = np.log(req[nonzero]), np.log(resp[nonzero])
    n = int(nonzero.sum())
    scores = [
        normal_ppf((pd.Series(x).rank(method="average").to_numpy() - 0.5) / n)
        for x in (log_req, log_resp)
    ]
    names, counts = np.unique(np.asarray(models, dtype=str), return_counts=True)
    return {
        "zero_share": round(zero_share, 6),
        "probabilities": list(TOKEN_PROBABILITIES),
        "request_log_quantiles": list(_round(np.quantile(log_req, TOKEN_PROBABILITIES))),
        "response_log_quantiles": list(_round(np.quantile(log_resp, TOKEN_PROBABILITIES))),
        "score_correlation": round(float(np.corrcoef(scores[0], scores[1])[0, 1]), 6),
        "model_names": [str(n) for n in names],
        "model_shares": list(_round(counts / counts.sum())),
    }


def normal_ppf(p: np.ndarray) -> np.ndarray:
    """Inverse standard normal CDF by bisection on :func:`~traces.synthetic.normal_cdf` [-]."""
    p = np.asarray(p, dtype=float)
    lo = np.full(p.shape, -9.0)
    hi = np.full(p.shape, 9.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = normal_cdf(mid) < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- targets


def lmp_targets(lmp_15: pd.Series) -> dict[str, float]:
    """Target statistics of a 15-min LMP series: moments, ACF, negative and spike shares."""
    values = lmp_15.to_numpy(dtype=float)
    stats = series_stats(lmp_15)
    median = float(np.nanmedian(values))
    finite = values[np.isfinite(values)]
    stats["median"] = median
    q25, q75 = np.percentile(finite, [25, 75])
    stats["iqr"] = float(q75 - q25)
    stats["negative_share"] = float(np.mean(finite < 0))
    stats["spike_share"] = float(np.mean(finite > SPIKE_MEDIAN_MULTIPLE * median))
    return stats


def hourly_count_targets(counts_h: pd.Series) -> dict[str, float]:
    """Target statistics of hourly request counts (lags of 1 h and 24 h)."""
    stats = series_stats(counts_h, lags=(1, 24))
    values = counts_h.to_numpy(dtype=float)
    stats["zero_share"] = float(np.mean(values == 0))
    return stats


def token_targets(request_tokens: np.ndarray, response_tokens: np.ndarray) -> dict[str, float]:
    """p50 / p95 of request and response tokens of the nonzero rows, and the zero share."""
    req = np.asarray(request_tokens, dtype=float)
    resp = np.asarray(response_tokens, dtype=float)
    nonzero = req > 0
    q_req = np.percentile(req[nonzero], [50, 95])
    q_resp = np.percentile(resp[nonzero], [50, 95])
    return {
        "zero_share": float(np.mean(~nonzero)),
        "request_p50": float(q_req[0]),
        "request_p95": float(q_req[1]),
        "response_p50": float(q_resp[0]),
        "response_p95": float(q_resp[1]),
    }


# --------------------------------------------------------------------------- driver


def calibrate(data_dir: Path, zones: Sequence[str] = DEFAULT_ZONES) -> dict[str, Any]:
    """Fit every figure on ``data_dir`` (``../shared/data``) and return the JSON mapping."""
    inputs = load_inputs(data_dir, zones)
    figures: dict[str, Any] = {
        "schema": FIGURES_SCHEMA,
        "meta": {
            "fitted_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fitted_by": "python -m traces.calibrate",
            "sources": inputs["sources"],
            "windows": inputs["windows"],
            "notes": (
                "Fitted figures only (no raw data). Profiles on the clock named by "
                "each process's tz: LMP, wind and requests America/New_York, load "
                "America/Los_Angeles. LMP default zone J (New York City)."
            ),
        },
        "lmp": {
            "default_zone": zones[0],
            "zones": {z: fit_lmp(inputs["lmp_hourly"][z], z) for z in zones},
        },
        "wind_cf": fit_wind(inputs["wind_hourly"]),
        "load": fit_load(inputs["load_15"]),
        "requests": fit_requests(inputs["requests_hourly"]),
        "tokens": fit_tokens(*inputs["tokens"]),
    }
    targets: dict[str, dict[str, float]] = {
        f"lmp[{z}]": lmp_targets(inputs["lmp_15"][z]) for z in zones
    }
    targets["wind_cf"] = series_stats(inputs["wind_15"])
    targets["load"] = series_stats(inputs["load_15"])
    total = sum(inputs["requests_hourly"].values())
    targets["requests_per_h"] = hourly_count_targets(total)
    for name, counts in inputs["requests_hourly"].items():
        targets[f"requests_{name}_per_h"] = hourly_count_targets(counts)
    targets["tokens"] = token_targets(inputs["tokens"][0], inputs["tokens"][1])
    figures["targets"] = {k: {s: round(v, 6) for s, v in t.items()} for k, t in targets.items()}
    SyntheticSpec.from_mapping(figures)  # the file must load before it is written
    return figures


def load_inputs(data_dir: Path, zones: Sequence[str]) -> dict[str, Any]:
    """Read the real series through the project's readers (see module docstring)."""
    from traces import burstgpt, datasets

    lmp_15, lmp_meta = datasets.nyiso_rt_lmp(data_dir, year=2022, zones=list(zones))
    wind_15, wind_meta = datasets.ny_wind_cf(data_dir)
    load_15, load_meta = datasets.google_load_shape(data_dir)
    counts_15, counts_meta = datasets.burstgpt_hourly_counts(data_dir)
    first400 = data_dir / "burstgpt" / "burstgpt_v1_first400.csv"
    raw_requests, _ = burstgpt.read_burstgpt_requests(first400)
    lmp_cols = {z: f"lmp_usd_per_mwh[{z}]" for z in zones}
    streams = {
        name: _to_hourly_mean(counts_15[f"requests_{name}_per_h"])
        for name in ("conversation", "api")
    }
    return {
        "lmp_15": {z: lmp_15[c] for z, c in lmp_cols.items()},
        "lmp_hourly": {z: _to_hourly_mean(lmp_15[c]) for z, c in lmp_cols.items()},
        "wind_15": wind_15["wind_cf"],
        "wind_hourly": _to_hourly_mean(wind_15["wind_cf"]),
        "load_15": load_15["power_util"],
        "requests_hourly": streams,
        "tokens": (
            raw_requests["request_tokens"].to_numpy(),
            raw_requests["response_tokens"].to_numpy(),
            raw_requests["model"].to_numpy(),
        ),
        "sources": {
            "lmp": _source(lmp_meta.source, data_dir),
            "wind_cf": _source(wind_meta.source, data_dir),
            "load": _source(load_meta.source, data_dir),
            "requests": _source(counts_meta.source, data_dir),
            "tokens": _source(first400, data_dir),
        },
        "windows": {
            "lmp": _window(lmp_15.index),
            "wind_cf": _window(wind_15.index),
            "load": _window(load_15.index),
            "requests": (
                f"{len(counts_15) // STEPS_PER_DAY} days of trace time placed at "
                f"{counts_meta.extra.get('origin_utc', 'the reader default origin')} "
                "(BurstGPT publishes no absolute dates)"
            ),
            "tokens": "first 400 rows of BurstGPT_1.csv (about 10.4 h)",
        },
    }


def _to_hourly_mean(series: pd.Series) -> pd.Series:
    """Undo the ``HOLD`` upsampling of an hourly source (mean of its quarter-hours)."""
    return series.resample("h").mean()


def _source(path: Path | str, data_dir: Path) -> str:
    p = Path(path)
    try:
        return str(p.resolve().relative_to(data_dir.resolve()))
    except ValueError:
        return p.name


def _window(index: pd.Index) -> str:
    idx = pd.DatetimeIndex(index)
    return f"{idx[0]:%Y-%m-%d %H:%M}Z..{idx[-1]:%Y-%m-%d %H:%M}Z"


def _process_dict(process: SeasonalAR) -> dict[str, Any]:
    # Field order = JSON key order; tuple fields become lists as before.
    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in asdict(process).items()
    }


def _round(values: np.ndarray, digits: int = 6) -> tuple[float, ...]:
    return tuple(round(float(v), digits) for v in np.asarray(values).ravel())


def write_figures(figures: dict[str, Any], out: Path) -> None:
    """Write the JSON atomically (temp file in the same directory, then rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=1, allow_nan=False)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: fit the figures and write them."""
    parser = argparse.ArgumentParser(prog="python -m traces.calibrate", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="../shared/data directory")
    parser.add_argument("--out", type=Path, required=True, help="output JSON path")
    parser.add_argument(
        "--zones", default=",".join(DEFAULT_ZONES), help="NYISO zones, default first (J,F)"
    )
    args = parser.parse_args(argv)
    zones = [z.strip().upper() for z in args.zones.split(",") if z.strip()]
    figures = calibrate(args.data, zones)
    write_figures(figures, args.out)
    print(f"wrote {args.out}")
    for name, stats in figures["targets"].items():
        print(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in stats.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
