"""Plots of a closed-loop run (matplotlib, Agg backend: no screen needed).

The run's ledger has one row per (interval, campus) (:mod:`mpc_dc.sim.engine`);
flows are summed over the campuses (:func:`site_totals`), prices drawn per campus.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

SUMMED: tuple[str, ...] = (
    "facility_power_mw", "it_inference_mw", "it_other_mw", "renewable_available_mw",
    "renewable_used_mw", "curtailed_mw", "import_mw", "export_mw", "work_nd_wu",
    "work_df_done_wu", "backlog_wu",
)
"""Ledger columns summed over the campuses of a site [MW], [WU]."""


def site_totals(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger's flows summed over campuses, one row per interval (UTC index)."""
    cols = [c for c in SUMMED if c in ledger.columns]
    return ledger[cols].groupby(level="interval_start_utc").sum()


def by_campus(ledger: pd.DataFrame, column: str) -> pd.DataFrame:
    """One column of the ledger, one series per campus (intervals × campuses)."""
    return ledger[column].unstack("campus")


def _local(index: pd.Index, tz: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(index).tz_convert(tz)


def draw_flows(ax: plt.Axes, totals: pd.DataFrame, tz: str) -> None:
    """Facility power, renewable consumed, import and export (below zero) [MW]."""
    index = _local(totals.index, tz)
    ax.step(index, totals["facility_power_mw"], where="post", color="black", lw=1.2,
            label="facility power")
    self_used = totals["renewable_used_mw"] - totals["export_mw"]
    ax.fill_between(index, 0, self_used, step="post", color="tab:green", alpha=0.5,
                    label="renewable consumed on site")
    ax.fill_between(index, self_used, self_used + totals["import_mw"], step="post",
                    color="tab:red", alpha=0.4, label="grid import")
    ax.fill_between(index, 0, -totals["export_mw"], step="post", color="tab:blue", alpha=0.4,
                    label="grid export")
    ax.step(index, totals["renewable_available_mw"], where="post", color="tab:green", lw=0.8,
            ls="--", label="renewable available")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("power [MW]")
    ax.legend(loc="upper left", ncols=3, fontsize=8)
    ax.grid(alpha=0.3)


def draw_prices(ax: plt.Axes, ledger: pd.DataFrame, tz: str) -> None:
    """Import price per campus, and export price where it differs [$/MWh]."""
    imp = by_campus(ledger, "import_price_usd_per_mwh")
    exp = by_campus(ledger, "export_price_usd_per_mwh")
    index = _local(imp.index, tz)
    for name in imp.columns:
        ax.step(index, imp[name], where="post", lw=0.9, label=f"import π⁺ {name}")
        if not exp[name].equals(imp[name]):
            ax.step(index, exp[name], where="post", lw=0.9, ls="--", label=f"export π⁻ {name}")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("price [$/MWh]")
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)


def plot_run(ledger: pd.DataFrame, out_dir: Path, tz: str = "America/New_York") -> list[Path]:
    """Power flows, prices and decisions of a run as three PNG files in ``out_dir``."""
    totals = site_totals(ledger)
    index = _local(totals.index, tz)
    paths: list[Path] = []

    fig, ax = plt.subplots(figsize=(11, 4.5))
    draw_flows(ax, totals, tz)
    ax.set_xlabel(f"time [{tz}]")
    ax.set_title("Power flows of the site (export drawn below zero)")
    paths.append(_save(fig, out_dir / "power_flows.png"))

    fig, ax = plt.subplots(figsize=(11, 3.5))
    draw_prices(ax, ledger, tz)
    ax.set_xlabel(f"time [{tz}]")
    ax.set_title("Realized prices")
    paths.append(_save(fig, out_dir / "prices.png"))

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    ax1.stackplot(index, totals["it_inference_mw"], totals["it_other_mw"], step="post",
                  labels=["inference", "other IT"], alpha=0.7)
    ax1.set_ylabel("IT power [MW]")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.grid(alpha=0.3)
    ax1.set_title("Decisions: IT power by workload; deferrable backlog")
    ax2.step(index, totals["backlog_wu"], where="post", color="tab:purple", label="backlog")
    ax2.step(index, totals["work_df_done_wu"], where="post", color="tab:orange",
             label="deferrable done per interval")
    ax2.set_ylabel("work [WU]")
    ax2.set_xlabel(f"time [{tz}]")
    ax2.legend(loc="upper left", fontsize=8)
    ax2.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "decisions.png"))
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
