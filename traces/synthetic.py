"""Seeded synthetic traces: the embedded default that needs no data and no network.

Every series is generated from the figures in ``traces/figures/synthetic.json``,
fitted on the real public data of ``../shared/data`` by :mod:`traces.calibrate`
(the JSON names the source files, the fitting window and the date of the fit).
Nothing but those figures is needed at run time, so the first README command
works offline from a bare install.

Model family
------------
All four time series share one structure, :class:`SeasonalAR`:

.. math::

    x_t = L_{m(t)} + P_{s(t)} + W_{d(t)} + S_{m(t)} z_t, \\qquad
    z_t = \\sum_k a_k z_{t-k} + \\sigma \\varepsilon_t

with a monthly level ``L`` (12 values, or 1 where the data cover a single
month), a daily profile ``P`` over the slots of the day (24 hourly or 96
quarter-hourly values), a weekday offset ``W`` (Monday..Sunday), a monthly
residual scale ``S``, and an autoregression over a few lags (1, 2 and one day)
with Student-t innovations ``ε`` (unit variance; ``df`` fitted from the
residual kurtosis, ``inf`` = Gaussian). The profiles are read on the clock of
the source's time zone (``tz``), so NY prices and wind keep their local
daily shape across daylight-saving changes. The lag-one-day term reproduces
the day-to-day persistence that a plain AR(1) at 15-min resolution loses.

Hourly sources use it as a Gaussian copula (:class:`CopulaAR`): the AR runs
on the normal scores of the real series and is mapped back through the
series' fitted quantile function (113 points, dense in both tails), so the
marginal distribution is the real one by construction while the AR carries
the daily and weekly shape, ramps, persistence and the clustering of extremes.

- LMP [$/MWh], NYISO real-time zonal, hourly source. A first version used the
  additive body plus a jump process with fitted spike frequency and lognormal
  sizes; measured against 2022 zone J it gave 1.2 % negative hours (real
  0.02 %), a median 20 % high and a third of the real share of hours above
  4 × median, because the real price is skewed and its volatility scales with
  the level. The copula keeps the negative-price share, the spike sizes (the
  quantile function reaches the real maximum) and their frequency, and its
  lag-1 h correlation of 0.9+ on the scores makes spikes come in episodes of
  consecutive hours, as in the data (scarcity afternoons, storm days).
- Wind capacity factor [-]: the quantile function lies in [0, 1], keeping calm
  spells near 0 and rare near-rated hours; the AR (lags 1, 2, 24 h) carries
  the multi-hour ramps and multi-day calm and windy spells.
- Request rates [requests/h] (BurstGPT), two streams: conversation logs
  (smooth, strongly diurnal and weekly) and API logs (bursty: 43 % of hours
  empty, bursts of 10^4 requests/h). A log-normal AR of the API rate put
  mass far beyond the observed maximum (a 122-day sample had 4-9 × the real
  mean); the copula keeps the empty share and the burst sizes. Per-interval
  counts are Poisson with mean ``rate × 0.25 h`` (the readers' ``HOLD`` rule
  for rates), so the count is overdispersed: a Poisson mixture over the
  fitted rate distribution.
- Data-center load [-] (power / PDU limit, Google cell a): the plain
  :class:`SeasonalAR` at 15-min resolution; its marginal is near-Gaussian.

Hourly sources (LMP, wind, request counts) are generated hourly and put on the
15-min grid by the same :class:`~traces.grid.Resample` rule the readers use
(``HOLD``; counts Poisson within the hour), because the data
say nothing about sub-hourly variation; inventing it would not be calibrated.
As for the real series, an hourly LMP or wind value is published at the end of
its hour (:data:`PUBLICATION`); the 15-min load and the per-interval counts at
the end of their interval.

Per-request arrivals (:func:`synth_requests`) are a Poisson process
conditioned on each interval's count (uniform arrival times within the
interval). Token lengths are a Gaussian copula of two log-quantile functions
(17 points each) fitted on the first 400 raw BurstGPT rows, with the fitted
correlation of the normal scores and the share of zero-token (failed)
requests. Measured alternatives: a lognormal fitted by log-moments puts
p95/p50 near 12 for request tokens where the data have 4.6 (the log lengths
are left-skewed); a two-component bivariate log-normal mixture got the
ratio but put the median 15 % low.

All randomness comes from one ``numpy.random.Generator`` seeded by ``seed``;
each series draws from its own child stream (``SeedSequence.spawn``), so the
same seed gives the same output and adding a series never changes another.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY, Publication, grid_index

FIGURES_FILE = "synthetic.json"
"""Name of the fitted-figures file inside the package directory ``traces/figures``."""

FIGURES_SCHEMA = "mpc-dc synthetic figures v1"
"""Schema tag written by :mod:`traces.calibrate` and checked on load."""

DEFAULT_SEED = 0

_STREAMS = ("lmp", "wind_cf", "load", "requests", "arrivals")

PUBLICATION: dict[str, Publication] = {
    "lmp": Publication(pd.Timedelta(hours=1)),
    "wind_cf": Publication(pd.Timedelta(hours=1)),
    "load": Publication(STEP),
    "request_counts": Publication(STEP),
}
"""When each generated series is observable (keys as :func:`synth_scenario`): the
hourly LMP and wind at the end of their hour, as the hourly sources they are
calibrated on; the 15-min load and per-interval request counts at the end of
their interval."""


@dataclass(frozen=True)
class SeasonalAR:
    """Seasonal level plus a scaled autoregression (see module docstring).

    Parameters
    ----------
    step_h
        Resolution the process runs at [h]: 1.0 or 0.25.
    tz
        Time zone whose clock the profiles are read on (``"UTC"`` allowed).
    month_level
        Level per calendar month, January first (12 values), or one value for
        all months [units of the series].
    day_profile
        Offset per slot of the day (``24 / step_h`` values, mean zero).
    weekday_profile
        Offset per weekday, Monday first (7 values, mean zero).
    month_scale
        Residual scale per month (12 values) or one value [units of the series].
    ar_lags
        Lags of the autoregression [steps].
    ar_coefs
        Coefficients matching ``ar_lags`` [-].
    innovation_std
        Standard deviation of the innovation of ``z`` [-].
    innovation_df
        Degrees of freedom of the Student-t innovation; ``inf`` = Gaussian.
    """

    step_h: float
    tz: str
    month_level: tuple[float, ...]
    day_profile: tuple[float, ...]
    weekday_profile: tuple[float, ...]
    month_scale: tuple[float, ...]
    ar_lags: tuple[int, ...]
    ar_coefs: tuple[float, ...]
    innovation_std: float
    innovation_df: float

    def __post_init__(self) -> None:
        slots = self.steps_per_day
        if len(self.day_profile) != slots:
            raise ConfigError(
                FIGURES_FILE, f"expected {slots} day-profile values", key="day_profile"
            )
        if len(self.weekday_profile) != 7:
            raise ConfigError(FIGURES_FILE, "expected 7 weekday values", key="weekday_profile")
        for name in ("month_level", "month_scale"):
            if len(getattr(self, name)) not in (1, 12):
                raise ConfigError(FIGURES_FILE, "expected 1 or 12 monthly values", key=name)
        if len(self.ar_lags) != len(self.ar_coefs):
            raise ConfigError(FIGURES_FILE, "ar_lags and ar_coefs differ in length", key="ar_coefs")

    @property
    def steps_per_day(self) -> int:
        """Process steps per day [-]."""
        return round(24 / self.step_h)

    def seasonal(self, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic level and residual scale at the interval starts ``index``.

        Returns
        -------
        level, scale : ndarray [units of the series]
        """
        local = index.tz_convert(self.tz)
        slot = (local.hour * 60 + local.minute) // round(self.step_h * 60)
        month = local.month.to_numpy() - 1
        level = (
            _monthly(self.month_level, month)
            + np.asarray(self.day_profile)[np.asarray(slot)]
            + np.asarray(self.weekday_profile)[local.day_of_week.to_numpy()]
        )
        return level, _monthly(self.month_scale, month)

    def simulate_z(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Standardised AR path of length ``n`` after a burn-in of a few days [-]."""
        max_lag = max(self.ar_lags, default=0)
        burn = max(4 * max_lag, 10 * self.steps_per_day)
        eps = _innovations(n + burn, self.innovation_df, rng) * self.innovation_std
        z = np.zeros(n + burn)
        lags = np.asarray(self.ar_lags, dtype=int)
        coefs = np.asarray(self.ar_coefs, dtype=float)
        for t in range(max_lag, n + burn):
            z[t] = float(coefs @ z[t - lags]) + eps[t]
        return z[burn:]

    def simulate(self, index: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
        """Level plus scaled AR path at the interval starts ``index`` [units of the series]."""
        level, scale = self.seasonal(index)
        return level + scale * self.simulate_z(len(index), rng)


@dataclass(frozen=True)
class CopulaAR:
    """A seasonal AR on normal scores mapped through a fitted quantile function.

    ``x_t = Q(Φ(g_t))`` where ``g`` is a :class:`SeasonalAR` of the normal
    scores of the real series and ``Q`` the piecewise-linear quantile function
    through (``probabilities``, ``quantiles``). The marginal distribution of
    the data (its mean, spread, negative values and spike sizes) is kept by
    construction; the AR on the scores carries the daily shape, persistence
    and clustering of extremes.

    Parameters
    ----------
    scores
        Seasonal AR of the normal scores [-].
    probabilities
        Increasing probabilities from 0 to 1 [-], denser in both tails.
    quantiles
        Quantiles of the series at ``probabilities`` [units of the series].
    score_mean, score_std
        Mean and standard deviation of the real scores [-]: 0 and 1 unless
        the data have ties (43 % empty API hours share one mid-rank score,
        std 0.76); ``Φ((g - mean) / std)`` then maps the simulated scores,
        whose spread follows the tied ones, back onto the whole [0, 1].
    """

    scores: SeasonalAR
    probabilities: tuple[float, ...]
    quantiles: tuple[float, ...]
    score_mean: float = 0.0
    score_std: float = 1.0

    def __post_init__(self) -> None:
        if len(self.probabilities) != len(self.quantiles) or len(self.quantiles) < 2:
            raise ConfigError(FIGURES_FILE, "quantile function malformed", key="quantiles")

    def simulate(self, index: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
        """Series values at the interval starts ``index`` [units of the series]."""
        g = (self.scores.simulate(index, rng) - self.score_mean) / self.score_std
        return np.interp(normal_cdf(g), np.asarray(self.probabilities), np.asarray(self.quantiles))


@dataclass(frozen=True)
class LmpSpec:
    """Real-time LMP of one NYISO zone (hourly copula AR) [$/MWh].

    Parameters
    ----------
    zone
        NYISO load-zone letter, e.g. ``"J"`` (New York City).
    process
        The fitted copula AR of the hourly price [$/MWh].
    """

    zone: str
    process: CopulaAR


@dataclass(frozen=True)
class RequestSpec:
    """Request rates: per stream a copula AR of the hourly rate [requests/h].

    Parameters
    ----------
    streams
        Stream name (``"conversation"``, ``"api"``) to its copula AR [requests/h].
    """

    streams: Mapping[str, CopulaAR]


@dataclass(frozen=True)
class TokenSpec:
    """Request and response token lengths: Gaussian copula of two log-quantile functions.

    Parameters
    ----------
    zero_share
        Share of requests with zero request and response tokens (failed) [-].
    probabilities
        Increasing probabilities from 0 to 1 of the quantile functions [-].
    request_log_quantiles, response_log_quantiles
        ``log`` of the token-length quantiles of the rows with tokens [log tokens];
        interpolated linearly in log space (log-linear tails).
    score_correlation
        Correlation of the normal scores of request and response length [-].
    model_names, model_shares
        Model labels and their shares [-].
    """

    zero_share: float
    probabilities: tuple[float, ...]
    request_log_quantiles: tuple[float, ...]
    response_log_quantiles: tuple[float, ...]
    score_correlation: float
    model_names: tuple[str, ...]
    model_shares: tuple[float, ...]


@dataclass(frozen=True)
class SyntheticSpec:
    """All fitted figures of the synthetic generator (one JSON file).

    ``meta`` records the schema, fitting window, source files and date;
    ``targets`` the real-data statistics the generator is checked against.
    """

    lmp: Mapping[str, LmpSpec]
    default_zone: str
    wind_cf: CopulaAR
    load: SeasonalAR
    requests: RequestSpec
    tokens: TokenSpec
    meta: Mapping[str, Any]
    targets: Mapping[str, Mapping[str, float]]

    def zone(self, zone: str | None) -> LmpSpec:
        """The LMP figures of ``zone`` (default zone when ``None``)."""
        key = self.default_zone if zone is None else zone
        if key not in self.lmp:
            raise ConfigError(
                FIGURES_FILE, f"no LMP figures for zone '{key}'; fitted zones: {sorted(self.lmp)}"
            )
        return self.lmp[key]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = FIGURES_FILE) -> SyntheticSpec:
        """Build the spec from the parsed JSON (see :mod:`traces.calibrate`)."""
        if data.get("schema") != FIGURES_SCHEMA:
            raise ConfigError(source, f"expected schema '{FIGURES_SCHEMA}'", key="schema")
        try:
            lmp = {z: _lmp_spec(v) for z, v in data["lmp"]["zones"].items()}
            return cls(
                lmp=lmp,
                default_zone=str(data["lmp"]["default_zone"]),
                wind_cf=_copula(data["wind_cf"]),
                load=_seasonal(data["load"]),
                requests=RequestSpec(
                    streams={k: _copula(v) for k, v in data["requests"]["streams"].items()}
                ),
                tokens=_token_spec(data["tokens"]),
                meta=dict(data["meta"]),
                targets={k: dict(v) for k, v in data["targets"].items()},
            )
        except KeyError as err:
            raise ConfigError(source, "missing figure", key=str(err.args[0])) from err
        except TypeError as err:
            raise ConfigError(source, f"malformed figures: {err}") from err


def figures_path() -> Path:
    """Path of the packaged figures file ``traces/figures/synthetic.json``."""
    return Path(str(resources.files("traces").joinpath("figures", FIGURES_FILE)))


def load_figures(path: str | Path | None = None) -> SyntheticSpec:
    """Read the fitted figures (the packaged file when ``path`` is ``None``)."""
    file = figures_path() if path is None else Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(file, "fitted figures not found; run python -m traces.calibrate") from err
    except json.JSONDecodeError as err:
        raise ConfigError(file, f"line {err.lineno}: not valid JSON: {err.msg}") from err
    return SyntheticSpec.from_mapping(data, str(file))


# --------------------------------------------------------------------------- generators


def synth_lmp(
    start: pd.Timestamp | str,
    days: int,
    seed: int = DEFAULT_SEED,
    *,
    zone: str | None = None,
    spec: SyntheticSpec | None = None,
) -> pd.DataFrame:
    """Synthetic real-time LMP of one NYISO zone on the 15-min grid.

    Parameters
    ----------
    start
        First interval start (UTC, on the 15-min grid).
    days
        Length [days].
    seed
        Seed of the random generator.
    zone
        NYISO zone letter; default the figures' default zone (``"J"``, New York City).
    spec
        Figures; the packaged ones when ``None``.

    Returns
    -------
    DataFrame with column ``lmp_usd_per_mwh[<zone>]`` [$/MWh], hourly values
    held over their four quarter-hours.
    """
    spec = spec or _default_spec()
    z_spec = spec.zone(zone)
    return _synth_hourly(
        z_spec.process, start, days, seed, "lmp", f"lmp_usd_per_mwh[{z_spec.zone}]"
    )


def synth_wind_cf(
    start: pd.Timestamp | str,
    days: int,
    seed: int = DEFAULT_SEED,
    *,
    spec: SyntheticSpec | None = None,
) -> pd.DataFrame:
    """Synthetic NY wind capacity factor on the 15-min grid.

    Parameters
    ----------
    start, days, seed, spec
        As :func:`synth_lmp`.

    Returns
    -------
    DataFrame with column ``wind_cf`` [-] in [0, 1], hourly values held.
    """
    spec = spec or _default_spec()
    return _synth_hourly(spec.wind_cf, start, days, seed, "wind_cf", "wind_cf", clip=(0.0, 1.0))


def _synth_hourly(
    process: CopulaAR,
    start: pd.Timestamp | str,
    days: int,
    seed: int,
    stream: str,
    column: str,
    *,
    clip: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Simulate ``process`` hourly on RNG stream ``stream``; hold onto the 15-min grid.

    Values are clipped to ``clip`` (low, high) when given; the result has the
    single column ``column``.
    """
    rng = _rng(seed, stream)
    index = grid_index(start, _periods(days))
    hours = _hourly_index(index)
    values = process.simulate(hours, rng)
    if clip is not None:
        values = np.clip(values, *clip)
    return _hold(values, hours, index, column)


def synth_load(
    start: pd.Timestamp | str,
    days: int,
    seed: int = DEFAULT_SEED,
    *,
    spec: SyntheticSpec | None = None,
) -> pd.DataFrame:
    """Synthetic data-center power utilisation (power / PDU limit) on the 15-min grid.

    Parameters
    ----------
    start, days, seed, spec
        As :func:`synth_lmp`.

    Returns
    -------
    DataFrame with column ``power_util`` [-] (clipped to [0, 1]).
    """
    spec = spec or _default_spec()
    rng = _rng(seed, "load")
    index = grid_index(start, _periods(days))
    util = np.clip(spec.load.simulate(index, rng), 0.0, 1.0)
    return pd.DataFrame({"power_util": util}, index=index)


def synth_request_counts(
    start: pd.Timestamp | str,
    days: int,
    seed: int = DEFAULT_SEED,
    *,
    spec: SyntheticSpec | None = None,
) -> pd.DataFrame:
    """Synthetic LLM request counts per 15-min interval (BurstGPT-like).

    Parameters
    ----------
    start, days, seed, spec
        As :func:`synth_lmp`.

    Returns
    -------
    DataFrame with integer columns ``requests_<stream>_per_15min`` for each
    fitted stream (``conversation``, ``api``) and their sum
    ``requests_per_15min`` [requests / 15 min].
    """
    spec = spec or _default_spec()
    rng = _rng(seed, "requests")
    index = grid_index(start, _periods(days))
    hours = _hourly_index(index)
    pos = _hour_position(hours, index)
    out: dict[str, np.ndarray] = {}
    for name, stream in spec.requests.streams.items():
        per_h = stream.simulate(hours, rng).clip(min=0.0)
        out[f"requests_{name}_per_15min"] = rng.poisson(per_h[pos] * 0.25)
    frame = pd.DataFrame(out, index=index)
    frame["requests_per_15min"] = frame.sum(axis=1)
    return frame.astype("int64")


def synth_requests(
    start: pd.Timestamp | str,
    days: int,
    seed: int = DEFAULT_SEED,
    *,
    counts: pd.DataFrame | None = None,
    spec: SyntheticSpec | None = None,
) -> pd.DataFrame:
    """Synthetic per-request arrivals with request and response token lengths.

    Parameters
    ----------
    start, days, seed, spec
        As :func:`synth_lmp`.
    counts
        Requests per interval (column ``requests_per_15min``) to realise;
        :func:`synth_request_counts` with the same seed when ``None``.

    Returns
    -------
    DataFrame, one row per request sorted by arrival, with columns
    ``arrival_utc`` (timestamp), ``arrival_s`` [s since ``start``], ``model``,
    ``request_tokens`` and ``response_tokens`` [tokens] (int, >= 0).
    """
    spec = spec or _default_spec()
    if counts is None:
        counts = synth_request_counts(start, days, seed, spec=spec)
    index = grid_index(start, _periods(days))
    per_step = counts["requests_per_15min"].reindex(index).fillna(0).to_numpy(dtype=np.int64)
    rng = _rng(seed, "arrivals")
    n = int(per_step.sum())
    step_s = STEP.total_seconds()
    offsets = np.repeat(np.arange(len(index)) * step_s, per_step)
    arrival_s = np.sort(offsets + rng.uniform(0.0, step_s, size=n))
    request_tokens, response_tokens = _token_lengths(n, spec.tokens, rng)
    model = rng.choice(
        np.asarray(spec.tokens.model_names), size=n, p=_normalised(spec.tokens.model_shares)
    )
    return pd.DataFrame(
        {
            "arrival_utc": index[0] + pd.to_timedelta(arrival_s, unit="s"),
            "arrival_s": arrival_s,
            "model": model,
            "request_tokens": request_tokens,
            "response_tokens": response_tokens,
        }
    )


def synth_scenario(
    start: pd.Timestamp | str,
    days: int,
    seed: int = DEFAULT_SEED,
    *,
    zone: str | None = None,
    spec: SyntheticSpec | None = None,
) -> dict[str, pd.DataFrame]:
    """All synthetic series of one scenario from one seed.

    Returns
    -------
    ``{"lmp", "wind_cf", "load", "request_counts", "requests"}`` to DataFrames;
    the first four on the same 15-min grid, ``requests`` one row per request
    realising ``request_counts``.
    """
    spec = spec or _default_spec()
    counts = synth_request_counts(start, days, seed, spec=spec)
    return {
        "lmp": synth_lmp(start, days, seed, zone=zone, spec=spec),
        "wind_cf": synth_wind_cf(start, days, seed, spec=spec),
        "load": synth_load(start, days, seed, spec=spec),
        "request_counts": counts,
        "requests": synth_requests(start, days, seed, counts=counts, spec=spec),
    }


# --------------------------------------------------------------------------- statistics


def autocorr(values: np.ndarray, lag: int) -> float:
    """Lag-``lag`` autocorrelation of ``values`` over pairs where both are finite [-]."""
    x = np.asarray(values, dtype=float)
    a, b = x[:-lag], x[lag:]
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def series_stats(series: pd.Series, lags: Sequence[int] = (1, STEPS_PER_DAY)) -> dict[str, float]:
    """Summary statistics used as calibration targets and in the tests.

    Parameters
    ----------
    series
        Values on a regular UTC grid (NaN allowed).
    lags
        Autocorrelation lags [steps of the series].

    Returns
    -------
    ``mean``, ``std``, ``acf_<lag>`` per lag, in the units of the series.
    """
    values = series.to_numpy(dtype=float)
    out = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
    for lag in lags:
        out[f"acf_{lag}"] = autocorr(values, lag)
    return out


def daily_profile(series: pd.Series) -> np.ndarray:
    """Mean value per UTC slot of the day, in slot order [units of the series]."""
    index = pd.DatetimeIndex(series.index)
    slot = index.hour * 60 + index.minute
    return series.groupby(np.asarray(slot)).mean().to_numpy(dtype=float)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF Φ(x) [-] (stdlib ``erf``; traces/ has no scipy)."""
    erf = np.frompyfunc(math.erf, 1, 1)
    values = np.asarray(erf(np.asarray(x, dtype=float) / math.sqrt(2.0)), dtype=float)
    return 0.5 * (1.0 + values)


# --------------------------------------------------------------------------- internals

_SPEC_CACHE: dict[str, SyntheticSpec] = {}


def _default_spec() -> SyntheticSpec:
    if "default" not in _SPEC_CACHE:
        _SPEC_CACHE["default"] = load_figures()
    return _SPEC_CACHE["default"]


def _rng(seed: int, stream: str) -> np.random.Generator:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return np.random.default_rng(children[_STREAMS.index(stream)])


def _periods(days: int) -> int:
    if days <= 0:
        raise ValueError(f"days must be positive, got {days}")
    return int(days) * STEPS_PER_DAY


def _monthly(values: tuple[float, ...], month: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return np.full(len(month), arr[0]) if len(arr) == 1 else arr[month]


def _innovations(n: int, df: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance innovations: Gaussian, or Student-t scaled to unit variance."""
    if not math.isfinite(df):
        return rng.standard_normal(n)
    return rng.standard_t(df, size=n) * math.sqrt((df - 2.0) / df)


def _hourly_index(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    first = index[0].floor("h")
    last = index[-1].floor("h")
    return pd.date_range(first, last, freq="h", name="interval_start_utc")


def _hour_position(hours: pd.DatetimeIndex, index: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray((index.floor("h") - hours[0]) // pd.Timedelta(hours=1), dtype=np.int64)


def _hold(
    values: np.ndarray, hours: pd.DatetimeIndex, index: pd.DatetimeIndex, column: str
) -> pd.DataFrame:
    """Hourly values held over their quarter-hours (``Resample.HOLD``)."""
    return pd.DataFrame({column: values[_hour_position(hours, index)]}, index=index)


def _token_lengths(
    n: int, spec: TokenSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Request and response token counts [tokens] (int64, >= 0; zero share fitted)."""
    rho = spec.score_correlation
    g1 = rng.standard_normal(n)
    g2 = rho * g1 + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal(n)
    probs = np.asarray(spec.probabilities)
    tokens = np.empty((n, 2), dtype=np.int64)
    for col, (g, logq) in enumerate(
        ((g1, spec.request_log_quantiles), (g2, spec.response_log_quantiles))
    ):
        log_len = np.interp(normal_cdf(g), probs, np.asarray(logq))
        tokens[:, col] = np.maximum(np.rint(np.exp(log_len)), 1.0).astype(np.int64)
    zero = rng.random(n) < spec.zero_share
    tokens[zero] = 0
    return tokens[:, 0], tokens[:, 1]


def _normalised(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _seasonal(data: Mapping[str, Any]) -> SeasonalAR:
    known = {f.name for f in fields(SeasonalAR)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(FIGURES_FILE, "unknown SeasonalAR figure", key=sorted(unknown)[0])
    return SeasonalAR(
        step_h=float(data["step_h"]),
        tz=str(data["tz"]),
        month_level=_floats(data["month_level"]),
        day_profile=_floats(data["day_profile"]),
        weekday_profile=_floats(data["weekday_profile"]),
        month_scale=_floats(data["month_scale"]),
        ar_lags=tuple(int(v) for v in data["ar_lags"]),
        ar_coefs=_floats(data["ar_coefs"]),
        innovation_std=float(data["innovation_std"]),
        innovation_df=float(data["innovation_df"]),
    )


def _copula(data: Mapping[str, Any]) -> CopulaAR:
    return CopulaAR(
        scores=_seasonal(data["scores"]),
        probabilities=_floats(data["probabilities"]),
        quantiles=_floats(data["quantiles"]),
        score_mean=float(data.get("score_mean", 0.0)),
        score_std=float(data.get("score_std", 1.0)),
    )


def _lmp_spec(data: Mapping[str, Any]) -> LmpSpec:
    return LmpSpec(zone=str(data["zone"]), process=_copula(data["process"]))


def _token_spec(data: Mapping[str, Any]) -> TokenSpec:
    return TokenSpec(
        zero_share=float(data["zero_share"]),
        probabilities=_floats(data["probabilities"]),
        request_log_quantiles=_floats(data["request_log_quantiles"]),
        response_log_quantiles=_floats(data["response_log_quantiles"]),
        score_correlation=float(data["score_correlation"]),
        model_names=tuple(str(m) for m in data["model_names"]),
        model_shares=_floats(data["model_shares"]),
    )
