"""Plots of a closed-loop RCDC run (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd


def _local_index(ledger: pd.DataFrame, tz: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ledger.index).tz_convert(tz)


def plot_run(ledger: pd.DataFrame, out_dir: Path, tz: str = "America/New_York") -> list[Path]:
    """Power flows, prices and decisions of a run as three PNG files in ``out_dir``."""
    index = _local_index(ledger, tz)
    paths: list[Path] = []

    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(index, ledger["site_load_mw"], color="black", lw=1.2, label="site load")
    self_consumed = ledger["renewable_used_mw"] - ledger["export_mw"]
    ax.fill_between(index, 0, self_consumed, step="post", color="tab:green",
                    alpha=0.5, label="renewable consumed on site")
    ax.fill_between(index, self_consumed, self_consumed + ledger["import_mw"], step="post",
                    color="tab:red", alpha=0.4, label="grid import")
    ax.fill_between(index, 0, -ledger["export_mw"], step="post", color="tab:blue", alpha=0.4,
                    label="grid export")
    ax.plot(index, ledger["renewable_available_mw"], color="tab:green", lw=0.8, ls="--",
            label="renewable available")
    ax.set_ylabel("power [MW]")
    ax.set_xlabel(f"time [{tz}]")
    ax.set_title("Power flows (export drawn below zero)")
    ax.legend(loc="upper left", ncols=3, fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "power_flows.png"))

    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.step(index, ledger["import_price_usd_per_mwh"], where="post", lw=1.0,
            label="import price π⁺")
    if not ledger["export_price_usd_per_mwh"].equals(ledger["import_price_usd_per_mwh"]):
        ax.step(index, ledger["export_price_usd_per_mwh"], where="post", lw=1.0,
                label="export price π⁻")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylabel("price [$/MWh]")
    ax.set_xlabel(f"time [{tz}]")
    ax.set_title("Realized prices")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "prices.png"))

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    ax1.step(index, ledger["work_nd_wu"], where="post", label="non-deferrable (arrived)")
    ax1.step(index, ledger["work_df_done_wu"], where="post", label="deferrable done")
    ax1.set_ylabel("work per interval [WU]")
    ax1.legend(loc="upper left", fontsize=8)
    ax1.grid(alpha=0.3)
    ax1.set_title("Decisions: deferrable work scheduled and backlog")
    ax2.step(index, ledger["backlog_wu"], where="post", color="tab:purple", label="backlog")
    ax2.set_ylabel("backlog [WU]")
    ax2.set_xlabel(f"time [{tz}]")
    ax2.grid(alpha=0.3)
    paths.append(_save(fig, out_dir / "decisions.png"))
    return paths


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
