"""``mpc-dc backtest``: rolling-origin forecast backtest on the real series.

Writes ``backtest_metrics.csv`` (by lead: MAE, RMSE, bias, sMAPE, MASE, pinball loss
and coverage of each quantile and central interval; one row per series x window x
forecaster x variant x lead), ``backtest_summary.csv`` (per run: MAE at 24 h, over
12–24 h and over all leads, MASE, skill and Diebold–Mariano test against persistence
at 24 h and over all leads, pinball loss, coverage of the 0.9 quantile and of the
80 % and 90 % intervals, the lowest daily coverage of the 0.9 quantile) and
``backtest_error_vs_lead.png`` (MAE and 90 % interval coverage by lead, one line per
forecaster) into ``--out``, each written to a temporary name and renamed, and prints
the table. ``persistence`` is always run: it is the reference of the skill and of
the tests (loss: absolute error; HLN-corrected DM, two-sided p).

Windows: ``--start``/``--days`` give one; ``--window START DAYS`` (repeatable) several,
each with its own fit ``--train-days`` before it.

With ``--variants`` every statistical forecaster is also run with each alternative
setting its preset was chosen against (:mod:`forecasters.presets`), one row per
variant (column ``variant``; ``preset`` is the setting in use).

With ``--nowcast-tau-h TAU ...`` every forecaster is also scored with the last
published observation blended into its forecasts at each time constant τ
(:func:`forecasters.backtest.nowcast_result`, the MPC's demand nowcast), one row per τ
(variant ``nowcast <τ>h``), and the τ with the lowest MAE over all leads is printed
per series, window and forecaster (``controller.nowcast_tau_h``, docs/forecasters.md).

Each series is observed as it is published (its reader's metadata): the hourly
series at the end of each hour. The closed loop observes its demand every 15 min (the
run's requests counted per interval): ``--observed-every-step`` backtests the demand
series so, with ``--stride-steps 1`` at the loop's issue times too (the schedule on
which the nowcast's τ is chosen, docs/forecasters.md). Known-ahead regressors are fed
as their release rule publishes them: the NYISO day-ahead price ``lmp_da`` (zone F,
CAPITL, the only day-ahead series in the data), read by the price presets of
``sarimax``, ``auto_sarimax``, ``direct_lad`` and the combinations when ``--zone F``.
``day_ahead_known`` forecasts the real-time LMP with the day-ahead prices published
at the issue time, persistence beyond.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasters.backtest import (
    BACKTEST_LEVELS,
    BacktestResult,
    compare,
    coverage_by_day,
    day_ahead_summary,
    interval_column,
    nowcast_result,
    rolling_origin_backtest,
)
from forecasters.base import InsufficientHistoryError, Release, forecaster_names
from forecasters.presets import Quantity, make_variant, variants
from mpc_dc.commands._options import (
    existing_dir,
    int_at_least,
    output_dir,
    positive_float,
    positive_int,
    seed,
    utc_time,
)
from mpc_dc.rundir import prepare_output_dir, write_file_atomic
from traces import datasets
from traces.eia import NYISO_ZONES
from traces.errors import ConfigError
from traces.grid import STEP, STEPS_PER_DAY, DayAheadRelease, Publication, TraceMetadata

REFERENCE = "persistence"
"""The forecaster every other is compared with (skill, Diebold–Mariano)."""

MAX_DAYS = 3660.0
"""Longest ``--days``, ``--train-days`` or window [d]: ten years, more than any series of
the data holds (the window check names the span); far longer lengths overflowed
pandas' dates (an internal error)."""

MAX_HORIZON = 366 * STEPS_PER_DAY
"""Longest ``--horizon`` [intervals]: a year."""


@dataclass(frozen=True)
class SeriesSpec:
    """How to load one real series and which kind of quantity it is."""

    label: str
    unit: str
    load: Callable[[Path, str], tuple[pd.Series, Publication]]
    quantity: Quantity
    day_ahead: Callable[[Path, str], pd.Series] | None = None
    known_ahead: Mapping[str, Callable[[Path, str], tuple[pd.Series, Release] | None]] = (
        field(default_factory=dict))


def _lmp(data_dir: Path, zone: str) -> tuple[pd.Series, Publication]:
    frame, meta = datasets.nyiso_rt_lmp(data_dir, year=2022, zones=[zone])
    return frame[f"lmp_usd_per_mwh[{zone}]"], meta.publication


def _lmp_day_ahead(data_dir: Path, zone: str) -> pd.Series:
    """NYISO day-ahead LBMP of ``zone`` (the data hold zone F only) [$/MWh]."""
    frame, _ = datasets.nyiso_da_lmp(data_dir)
    column = f"lmp_da_usd_per_mwh[{zone}]"
    if column not in frame.columns:
        raise ConfigError(
            "--zone",
            f"day_ahead_known needs the day-ahead prices of zone {zone}; the data hold "
            f"NYISO day-ahead prices of zone F (CAPITL) only: use --zone F",
        )
    return frame[column]


def _lmp_da_regressor(data_dir: Path, zone: str) -> tuple[pd.Series, Release] | None:
    """The day-ahead price of ``zone`` as a known-ahead regressor (None where the data
    have none: zones other than F)."""
    frame, meta = datasets.nyiso_da_lmp(data_dir)
    column = f"lmp_da_usd_per_mwh[{zone}]"
    if column not in frame.columns:
        return None
    release = meta.extra.get("release")
    if not isinstance(release, DayAheadRelease):
        raise ConfigError(meta.source, "the day-ahead reader states no release rule")
    return frame[column], release


def _column(
    read: Callable[[Path], tuple[pd.DataFrame, TraceMetadata]], column: str
) -> Callable[[Path, str], tuple[pd.Series, Publication]]:
    """Loader of one column of a dataset that has no zones, with its publication rule."""

    def load(data_dir: Path, zone: str) -> tuple[pd.Series, Publication]:
        frame, meta = read(data_dir)
        return frame[column], meta.publication

    return load


_wind = _column(datasets.ny_wind_cf, "wind_cf")
_demand = _column(datasets.burstgpt_hourly_counts, "requests_per_h")
_load = _column(datasets.google_load_shape, "load_shape")
_carbon = _column(datasets.ny_carbon, "carbon_gco2_per_kwh")

SERIES: dict[str, SeriesSpec] = {
    "lmp": SeriesSpec("NYISO RT LMP 2022", "$/MWh", _lmp, "price", _lmp_day_ahead,
                      {"lmp_da": _lmp_da_regressor}),
    "wind_cf": SeriesSpec("NY wind CF 2022", "-", _wind, "capacity_factor"),
    "demand": SeriesSpec("BurstGPT requests", "requests/h", _demand, "request_rate"),
    "load": SeriesSpec("Google cell-a load shape", "-", _load, "load"),
    "carbon": SeriesSpec("NY carbon intensity 2022", "gCO2/kWh", _carbon, "carbon"),
}
"""Series of the backtest: loader (values and publication rule), kind, day-ahead truth,
known-ahead regressors."""

NEEDS_DAY_AHEAD = "day_ahead_known"
"""The forecaster that needs a published day-ahead series as its truth."""


def build_forecaster(
    name: str,
    series_key: str,
    truth: pd.Series,
    seed: int = 0,
    day_ahead: pd.Series | None = None,
    variant: Mapping[str, Any] | None = None,
    available: tuple[str, ...] = (),
) -> Any:
    """The forecaster ``name`` configured for series ``series_key``.

    Parameters
    ----------
    truth : Series
        The series itself (the oracles' truth).
    day_ahead : Series, optional
        The published day-ahead series (``day_ahead_known``'s truth).
    variant : Mapping, optional
        Overrides of the statistical preset (:func:`forecasters.presets.variants`).
    available : tuple of str
        Known-ahead regressors the backtest will feed.

    Raises
    ------
    ConfigError
        ``day_ahead_known`` without a day-ahead series.
    """
    params: dict[str, Any] = {}
    if name in ("oracle", "noisy_oracle"):
        params["truth"] = truth
    if name == "noisy_oracle":
        params["seed"] = seed
    if name == NEEDS_DAY_AHEAD:
        if day_ahead is None:
            raise _no_day_ahead(series_key)
        params["truth"] = day_ahead
    return make_variant(name, SERIES[series_key].quantity, variant, available=available,
                        **params)


def _no_day_ahead(series_key: str) -> ConfigError:
    with_da = sorted(k for k, spec in SERIES.items() if spec.day_ahead is not None)
    return ConfigError(
        "--forecaster",
        f"{NEEDS_DAY_AHEAD} needs a published day-ahead series; series '{series_key}' has "
        f"none (only {', '.join(with_da)})",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backtest`` sub-command."""
    parser = subparsers.add_parser(
        "backtest",
        help="rolling-origin forecast backtest: error by lead time (15 min to 24 h)",
        description=__doc__,
    )
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=["lmp"])
    parser.add_argument(
        "--forecaster",
        nargs="+",
        choices=forecaster_names(),
        default=["persistence", "seasonal_naive_daily", "sarimax"],
    )
    parser.add_argument("--data", type=existing_dir, required=True,
                        help="the shared/data folder")
    parser.add_argument("--out", type=output_dir, required=True,
                        help="output folder (new, or one a previous backtest wrote)")
    parser.add_argument("--zone", default="J", choices=list(NYISO_ZONES),
                        help="NYISO zone letter for lmp (A..K)")
    parser.add_argument(
        "--train-days", type=positive_float("d", at_most=MAX_DAYS), default=28.0,
        help="history before the first issue time [d]",
    )
    parser.add_argument(
        "--start", type=utc_time, default=None,
        help="first issue time (UTC, on the 15-minute grid); default series start + train days",
    )
    parser.add_argument("--days", type=positive_float("d", at_most=MAX_DAYS), default=14.0,
                        help="issue-time window [d]")
    parser.add_argument(
        "--window",
        nargs=2,
        action="append",
        metavar=("START", "DAYS"),
        help="an issue-time window (repeatable; replaces --start/--days)",
    )
    parser.add_argument(
        "--stride-steps",
        type=positive_int,
        default=4,
        help="intervals between issue times (updates happen every interval)",
    )
    parser.add_argument("--horizon", type=int_at_least(1, MAX_HORIZON), default=STEPS_PER_DAY,
                        help="[intervals]")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also run every alternative setting the statistical presets were chosen against",
    )
    parser.add_argument(
        "--observed-every-step", action="store_true",
        help="observe the demand series at the end of every 15-min interval, as the closed "
        "loop observes its demand (the run's requests counted per interval; default: at the "
        "end of each hour, as BurstGPT's hourly file is published); with --stride-steps 1 "
        "the issue times are the loop's too",
    )
    parser.add_argument(
        "--nowcast-tau-h", nargs="+", type=positive_float("h"), default=[], metavar="TAU",
        help="also score each forecaster with the last observation blended in at these "
        "time constants [h] (the MPC's demand nowcast)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the backtests, write CSVs and the plot, print the table."""
    prepare_output_dir(args.out, kind="backtest", check_only=True)
    windows = _windows(args)
    names = [REFERENCE, *(n for n in args.forecaster if n != REFERENCE)]
    metrics_parts: list[pd.DataFrame] = []
    summary_rows: list[dict[str, Any]] = []
    for key in args.series:
        spec = SERIES[key]
        day_ahead = None
        if NEEDS_DAY_AHEAD in names:
            if spec.day_ahead is None:
                raise _no_day_ahead(key)
            day_ahead = spec.day_ahead(args.data, args.zone)
        loop = loop_publication(key) if args.observed_every_step else None
        series, publication = spec.load(args.data, args.zone)
        publication = loop or publication
        regressors = {k: r for k, load in spec.known_ahead.items()
                      if (r := load(args.data, args.zone)) is not None}
        available = tuple(regressors)
        first = series.first_valid_index()
        if first is None:
            raise ConfigError(args.data, f"series '{key}' has no values")
        first_ts = pd.Timestamp(str(first))
        for start_arg, days in windows:
            start: pd.Timestamp = (
                utc_time(str(start_arg))
                if start_arg is not None
                else (first_ts + pd.Timedelta(days=args.train_days)).ceil("h")
            )
            end = start + pd.Timedelta(days=days)
            window = f"{start:%Y-%m-%d}+{days:g}d"
            history = series[series.index >= start - pd.Timedelta(days=args.train_days)]
            _check_window(key, series, start, end, args.horizon)
            runs = [
                (name, label, overrides)
                for name in names
                for label, overrides in (
                    variants(name, spec.quantity, available) if args.variants
                    else [("preset", {})]
                )
            ]
            reference: BacktestResult | None = None
            for name, label, overrides in runs:
                fc = build_forecaster(name, key, series, args.seed, day_ahead, overrides,
                                      available)
                t0 = time.perf_counter()
                try:
                    result = rolling_origin_backtest(
                        fc, history, start, end, horizon=args.horizon,
                        stride_steps=args.stride_steps, levels=BACKTEST_LEVELS,
                        publication=publication, known_ahead=regressors,
                    )
                except InsufficientHistoryError as err:
                    raise _too_little_history(err, args.train_days, key, start) from err
                wall = time.perf_counter() - t0
                if name == REFERENCE and label == "preset":
                    reference = result
                assert reference is not None  # persistence runs first
                part = result.metrics.reset_index()
                for column, value in (("variant", label), ("forecaster", name),
                                      ("window", window), ("series", key)):
                    part.insert(0, column, value)
                metrics_parts.append(part)
                summary_rows.append({
                    "series": key, "window": window, "forecaster": name, "variant": label,
                    "issues": len(result.issue_times), "skipped": result.n_skipped,
                    "start": start, "end": end,
                    "regressors": "+".join(sorted(fc.known_ahead)) or "-",
                    **_summary(result, reference), "wall_s": round(wall, 2),
                })
                if label != "preset":
                    continue
                for tau in args.nowcast_tau_h:
                    blended = nowcast_result(result, series, publication, tau)
                    part = blended.metrics.reset_index()
                    variant = f"nowcast {tau:g}h"
                    for column, value in (("variant", variant), ("forecaster", name),
                                          ("window", window), ("series", key)):
                        part.insert(0, column, value)
                    metrics_parts.append(part)
                    summary_rows.append({**summary_rows[-1], "variant": variant,
                                         **_summary(blended, reference), "wall_s": 0.0})
    metrics = pd.concat(metrics_parts, ignore_index=True)
    summary = pd.DataFrame(summary_rows)
    prepare_output_dir(args.out, kind="backtest")
    write_file_atomic(args.out / "backtest_metrics.csv", lambda p: metrics.to_csv(p, index=False))
    write_file_atomic(args.out / "backtest_summary.csv", lambda p: summary.to_csv(p, index=False))
    write_file_atomic(args.out / "backtest_error_vs_lead.png", lambda p: _plot(metrics, p))
    _print_table(summary)
    if args.nowcast_tau_h:
        _print_best_tau(summary)
    print(
        f"wrote {args.out / 'backtest_metrics.csv'}, backtest_summary.csv, "
        f"backtest_error_vs_lead.png"
    )
    return 0


def _too_little_history(err: InsufficientHistoryError, train_days: float, key: str,
                        start: pd.Timestamp) -> ConfigError:
    """``--train-days`` too short for a forecaster's fit, as a one-line error."""
    # The hour before the first issue time is published only at it: one hour more.
    need_days = math.ceil((err.need_hours + 1) / 24)
    return ConfigError(
        "--train-days", f"{train_days:g} d before {start:%Y-%m-%d %H:%M}Z is too little "
        f"history of series '{key}' for forecaster '{err.forecaster}': it {err.shortfall}; "
        f"expected --train-days >= {need_days} (more if the series has gaps there)")


def loop_publication(key: str) -> Publication:
    """``--observed-every-step``: series ``key`` observed at the end of every 15-min
    interval, as the closed loop observes its demand (:class:`~mpc_dc.sim.exogenous.
    SiteExogenous` gives ``tokens_per_s[M]`` no publication rule of its own: the run's
    requests of an interval are counted at its end). BurstGPT's hourly counts are held
    over the hour's quarters, so the quarter seen at ``:15`` carries its hour's rate, as
    the loop's first quarter of an hour carries the rate its requests are drawn at
    (less their Poisson noise). Only the demand series: the others are observed in the
    loop as their sources publish them."""
    if key != "demand":
        raise ConfigError("--observed-every-step", f"applies to --series demand only, not "
                          f"'{key}' (the loop observes the other series as their sources "
                          "publish them)")
    return Publication()


def _print_best_tau(summary: pd.DataFrame) -> None:
    """Per series, window and forecaster: the nowcast time constant with the lowest MAE
    over all leads (``none``: the forecaster alone is better)."""
    rows = summary[summary["variant"].str.startswith("nowcast ") | (summary["variant"]
                                                                    == "preset")]
    for (key, window, name), group in rows.groupby(["series", "window", "forecaster"],
                                                   sort=False):
        best = group.iloc[int(np.argmin(group["mae_all"].to_numpy()))]
        plain = float(group.loc[group["variant"] == "preset", "mae_all"].iloc[0])
        tau = str(best["variant"]).removeprefix("nowcast ").removesuffix("h")
        shown = "none" if best["variant"] == "preset" else f"{tau} h"
        print(f"nowcast {key} {window} {name}: best tau {shown} (MAE all leads "
              f"{best['mae_all']:.4g}, without {plain:.4g})")


def _windows(args: argparse.Namespace) -> list[tuple[pd.Timestamp | str | None, float]]:
    """``(start, days)`` of each issue-time window."""
    if not args.window:
        return [(args.start, float(args.days))]
    out: list[tuple[pd.Timestamp | str | None, float]] = []
    for start_text, days_text in args.window:
        # The pair is parsed here (argparse types take one value): the checks of
        # --start and --days, so an impossible date, NaN or a length beyond the
        # dates pandas can hold is one line, not an internal error.
        try:
            start = utc_time(start_text)
        except argparse.ArgumentTypeError as err:
            raise ConfigError("--window", f"START: {err}") from None
        try:
            days = positive_float("d", at_most=MAX_DAYS)(days_text)
        except argparse.ArgumentTypeError as err:
            raise ConfigError("--window", f"DAYS: {err}") from None
        out.append((start, days))
    return out


def _check_window(key: str, series: pd.Series, start: pd.Timestamp, end: pd.Timestamp,
                  horizon: int) -> None:
    """Refuse a ``--start`` or ``--days`` that leaves no issue time inside the series.

    An issue time needs at least one interval of history before it and a whole
    horizon of the series after it; the window ``[start, end)`` must hold one.
    """
    if end - start < STEP:
        raise ConfigError("--days", f"{(end - start) / pd.Timedelta(days=1):g} d holds no "
                          "15-minute issue time; expected at least 0.0104 d")
    if start != start.floor(STEP):
        raise ConfigError("--start", f"{start} is not on the 15-minute grid; expected a time "
                          "like 2022-04-05T06:15Z")
    index = pd.DatetimeIndex(series.index)
    low = index[0] + STEP
    high = index[-1] + STEP - horizon * STEP
    if not low <= start <= high:
        raise ConfigError(
            "--start",
            f"{start:%Y-%m-%d %H:%M}Z leaves no issue time in series '{key}' (it covers "
            f"{index[0]:%Y-%m-%d %H:%M} to {index[-1] + STEP:%Y-%m-%d %H:%M}Z); expected a "
            f"start from {low:%Y-%m-%d %H:%M} to {high:%Y-%m-%d %H:%M}Z (history before it, "
            f"a {horizon}-interval horizon after it)",
        )


def _summary(result: BacktestResult, reference: BacktestResult) -> dict[str, float]:
    """The summary columns of one run (module docstring)."""
    m = result.metrics
    out: dict[str, float] = {
        **day_ahead_summary(m),
        "mae_all": float(m["mae"].mean()),
        "rmse_all": float(np.sqrt((m["rmse"] ** 2).mean())),
        "mase_all": float(m["mase"].mean()) if "mase" in m else float("nan"),
        **compare(result, reference),
        "pinball_all": float(m["pinball"].mean()) if "pinball" in m else float("nan"),
    }
    if 0.9 in result.levels:
        out["cover_q0.9"] = float(m["cover_q0.9"].mean())
        out["cover_q0.9_day_min"] = float(coverage_by_day(result, 0.9).min())
    for lo, hi in ((0.1, 0.9), (0.05, 0.95)):
        column = interval_column(lo, hi)
        if column in m:
            out[column] = float(m[column].mean())
    return out


def _plot(metrics: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(zip(metrics["series"], metrics["window"], strict=True)))
    coverage = interval_column(0.05, 0.95)
    rows = 2 if coverage in metrics else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(5 * len(panels), 3.4 * rows),
                             squeeze=False)
    for col, (key, window) in enumerate(panels):
        part = metrics[(metrics["series"] == key) & (metrics["window"] == window)]
        for (name, label), group in part.groupby(["forecaster", "variant"], sort=False):
            text = _row_label(f"{name}", f"{label}")
            axes[0][col].plot(group["lead_h"], group["mae"], label=text)
            if rows == 2:
                axes[1][col].plot(group["lead_h"], group[coverage], label=text)
        axes[0][col].set_title(f"{SERIES[key].label}, {window}", fontsize=9)
        axes[0][col].set_ylabel(f"MAE [{SERIES[key].unit}]")
        if rows == 2:
            axes[1][col].axhline(0.9, color="k", lw=0.8, ls="--")
            axes[1][col].set_ylabel("90 % interval coverage [-]")
        for ax in axes[:, col]:
            ax.set_xlabel("lead time [h]")
            ax.grid(alpha=0.3)
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def _row_label(forecaster: str, variant: str) -> str:
    return forecaster if variant == "preset" else f"{forecaster}[{variant}]"


def _print_table(summary: pd.DataFrame) -> None:
    labels = [_row_label(str(f), str(v)) for f, v in zip(summary["forecaster"],
                                                         summary["variant"], strict=True)]
    width = max(22, *map(len, labels))
    print(
        f"{'series':<8} {'window':<15} {'forecaster':<{width}} {'issues':>6} {'MAE@24h':>9} "
        f"{'MAE all':>9} {'skill24':>7} {'DM p24':>7} {'skill':>6} {'DM p':>7} "
        f"{'cov q.9':>7} {'cov 90':>6} {'wall s':>7}"
    )
    for label, row in zip(labels, summary.to_dict("records"), strict=True):
        print(
            f"{row['series']:<8} {row['window']:<15} {label:<{width}} {row['issues']:>6} "
            f"{row['mae_24h']:>9.4g} {row['mae_all']:>9.4g} {row['skill_24h']:>7.3f} "
            f"{row['dm_p_24h']:>7.2g} {row['skill_all']:>6.3f} {row['dm_p_all']:>7.2g} "
            f"{row.get('cover_q0.9', float('nan')):>7.3f} "
            f"{row.get('cover_90', float('nan')):>6.3f} {row['wall_s']:>7.1f}"
        )
