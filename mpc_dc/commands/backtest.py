"""``mpc-dc backtest``: rolling-origin forecast backtest on the real series.

Writes ``backtest_metrics.csv`` (MAE, RMSE, sMAPE, pinball by lead, one row per
series x forecaster x lead), ``backtest_summary.csv`` (day-ahead MAE) and
``backtest_error_vs_lead.png`` into ``--out``, each written to a temporary name and
renamed, and prints the day-ahead table.

With ``--variants`` every statistical forecaster is also run with each alternative
setting its preset was chosen against (:mod:`forecasters.presets`), one row per
variant (column ``variant``; ``preset`` is the setting in use).

Each series is observed as it is published (its reader's metadata): the hourly
series at the end of each hour, as in the closed loop. ``day_ahead_known`` forecasts
the real-time LMP with the NYISO day-ahead prices published at the issue time (zone
F, CAPITL, the only day-ahead series in the data), persistence beyond.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forecasters.backtest import day_ahead_summary, rolling_origin_backtest
from forecasters.base import forecaster_names
from forecasters.presets import Quantity, make_variant, variants
from mpc_dc.commands._options import (
    existing_dir,
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
from traces.grid import STEP, STEPS_PER_DAY, Publication, TraceMetadata


@dataclass(frozen=True)
class SeriesSpec:
    """How to load one real series and which kind of quantity it is."""

    label: str
    unit: str
    load: Callable[[Path, str], tuple[pd.Series, Publication]]
    quantity: Quantity
    day_ahead: Callable[[Path, str], pd.Series] | None = None


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
    "lmp": SeriesSpec("NYISO RT LMP 2022", "$/MWh", _lmp, "price", _lmp_day_ahead),
    "wind_cf": SeriesSpec("NY wind CF 2022", "-", _wind, "capacity_factor"),
    "demand": SeriesSpec("BurstGPT requests", "requests/h", _demand, "request_rate"),
    "load": SeriesSpec("Google cell-a load shape", "-", _load, "load"),
    "carbon": SeriesSpec("NY carbon intensity 2022", "gCO2/kWh", _carbon, "carbon"),
}
"""Series of the backtest: loader (values and publication rule), kind, day-ahead truth."""

NEEDS_DAY_AHEAD = "day_ahead_known"
"""The forecaster that needs a published day-ahead series as its truth."""


def build_forecaster(
    name: str,
    series_key: str,
    truth: pd.Series,
    seed: int = 0,
    day_ahead: pd.Series | None = None,
    variant: Mapping[str, Any] | None = None,
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
    return make_variant(name, SERIES[series_key].quantity, variant, **params)


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
        "--train-days", type=positive_float("d"), default=28.0,
        help="history before the first issue time [d]",
    )
    parser.add_argument(
        "--start", type=utc_time, default=None,
        help="first issue time (UTC, on the 15-minute grid); default series start + train days",
    )
    parser.add_argument("--days", type=positive_float("d"), default=14.0,
                        help="issue-time window [d]")
    parser.add_argument(
        "--stride-steps",
        type=positive_int,
        default=4,
        help="intervals between issue times (updates happen every interval)",
    )
    parser.add_argument("--horizon", type=positive_int, default=STEPS_PER_DAY,
                        help="[intervals]")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument(
        "--variants",
        action="store_true",
        help="also run every alternative setting the statistical presets were chosen against",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the backtests, write CSVs and the plot, print the table."""
    prepare_output_dir(args.out, kind="backtest", check_only=True)
    metrics_parts: list[pd.DataFrame] = []
    summary_rows: list[dict[str, Any]] = []
    for key in args.series:
        spec = SERIES[key]
        day_ahead = None
        if NEEDS_DAY_AHEAD in args.forecaster:
            if spec.day_ahead is None:
                raise _no_day_ahead(key)
            day_ahead = spec.day_ahead(args.data, args.zone)
        series, publication = spec.load(args.data, args.zone)
        first = series.first_valid_index()
        if first is None:
            raise ConfigError(args.data, f"series '{key}' has no values")
        first_ts = pd.Timestamp(str(first))
        start: pd.Timestamp = (
            args.start
            if args.start is not None
            else (first_ts + pd.Timedelta(days=args.train_days)).ceil("h")
        )
        end = start + pd.Timedelta(days=args.days)
        history = series[series.index >= start - pd.Timedelta(days=args.train_days)]
        _check_window(key, series, start, end, args.horizon)
        runs = [
            (name, label, overrides)
            for name in args.forecaster
            for label, overrides in (
                variants(name, spec.quantity) if args.variants else [("preset", {})]
            )
        ]
        for name, label, overrides in runs:
            fc = build_forecaster(name, key, series, args.seed, day_ahead, overrides)
            t0 = time.perf_counter()
            result = rolling_origin_backtest(
                fc,
                history,
                start,
                end,
                horizon=args.horizon,
                stride_steps=args.stride_steps,
                publication=publication,
            )
            wall = time.perf_counter() - t0
            part = result.metrics.reset_index()
            part.insert(0, "variant", label)
            part.insert(0, "forecaster", name)
            part.insert(0, "series", key)
            metrics_parts.append(part)
            summary_rows.append(
                {
                    "series": key,
                    "forecaster": name,
                    "variant": label,
                    "issues": len(result.issue_times),
                    "skipped": result.n_skipped,
                    "start": start,
                    "end": end,
                    **day_ahead_summary(result.metrics),
                    "mae_all": float(result.metrics["mae"].mean()),
                    "wall_s": round(wall, 2),
                }
            )
    metrics = pd.concat(metrics_parts, ignore_index=True)
    summary = pd.DataFrame(summary_rows)
    prepare_output_dir(args.out, kind="backtest")
    write_file_atomic(args.out / "backtest_metrics.csv", lambda p: metrics.to_csv(p, index=False))
    write_file_atomic(args.out / "backtest_summary.csv", lambda p: summary.to_csv(p, index=False))
    write_file_atomic(args.out / "backtest_error_vs_lead.png", lambda p: _plot(metrics, p))
    _print_table(summary)
    print(
        f"wrote {args.out / 'backtest_metrics.csv'}, backtest_summary.csv, "
        f"backtest_error_vs_lead.png"
    )
    return 0


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


def _plot(metrics: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(metrics["series"]))
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        part = metrics[metrics["series"] == key]
        for (name, label), group in part.groupby(["forecaster", "variant"], sort=False):
            ax.plot(group["lead_h"], group["mae"], label=_row_label(f"{name}", f"{label}"))
        ax.set_title(SERIES[key].label)
        ax.set_xlabel("lead time [h]")
        ax.set_ylabel(f"MAE [{SERIES[key].unit}]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
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
        f"{'series':<9} {'forecaster':<{width}} {'issues':>6} {'MAE@24h':>10} "
        f"{'MAE 12-24h':>11} {'MAE all':>10} {'wall s':>7}"
    )
    for label, row in zip(labels, summary.itertuples(), strict=True):
        print(
            f"{row.series:<9} {label:<{width}} {row.issues:>6} {row.mae_24h:>10.4g} "
            f"{row.mae_12_24h:>11.4g} {row.mae_all:>10.4g} {row.wall_s:>7.1f}"
        )
