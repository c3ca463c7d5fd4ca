"""Where a cost gap between two runs of one scenario comes from (``mpc-dc cost-gap``).

Each run's net cost is split into parts by what drew the energy and what it cost:

* ``inference_idle_usd``, ``inference_active_usd``: the inference pools' facility energy
  (``pools.parquet``, ``facility_energy_kwh``) split by the pools' idle and active IT
  energy (``idle_energy_j``, ``active_energy_j``: instances on vs token work), each
  valued at its campus's market price ``π`` of the interval;
* ``other_it_usd``: the rest of each campus's facility energy (other IT: the training
  backlog and the non-deferrable work) at ``π``;
* ``renewable_usd``: minus the renewable energy the campus could use,
  ``−π (R − curtailed) Δ``;
* ``residual_usd``: the cost without the SLO term minus the parts above: zero when a
  campus buys and sells at ``π`` (wholesale) without battery, demand charge, carbon
  price, DR settlement or penalties (``import − export = facility − R + curtailed``
  then gives ``Σ π (import − export) Δ`` exactly), else what those add;
* ``lateness_usd``: the SLO term.

With equal renewable energy in both runs, the difference of two runs' parts is the
cost of the energy each drew where and when it drew it, and of its lateness. The
lateness of each interval (summed over campuses) says when a run paid it
(:func:`lateness_by_interval`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.rundir import read_parquet_file, read_run
from traces.errors import TraceError
from traces.grid import STEP, STEP_H

PARTS: tuple[str, ...] = (
    "inference_idle_usd",
    "inference_active_usd",
    "other_it_usd",
    "renewable_usd",
    "residual_usd",
    "lateness_usd",
)
"""The parts of a run's cost [$] (module docstring); they sum to ``cost_usd``."""

ENERGY_ROWS: tuple[str, ...] = (
    "inference_idle_mwh",
    "inference_active_mwh",
    "other_it_mwh",
    "other_it_price_usd_per_mwh",
    "other_it_flat_usd",
    "late_requests",
)
"""Energies [MWh] (facility), the mean price other IT paid [$/MWh], what its energy of
each local day would have cost at that day's mean price at its campus (no timing: the
reference of what shifting it in time saved) [$] and late requests [requests] of
:func:`breakdown`."""

_WHAT = "a run directory written by mpc-dc run (with a fleet)"


@dataclass(frozen=True)
class LoadedRun:
    """A run directory's KPIs, ledger and metadata, read once (:func:`load_run`).

    Attributes
    ----------
    path : Path
        The run directory.
    kpis, meta : dict
        ``kpis.json`` and ``metadata.json``.
    ledger : DataFrame
        ``ledger.parquet``: one row per (interval, campus).
    """

    path: Path
    kpis: dict[str, Any]
    ledger: pd.DataFrame
    meta: dict[str, Any]


Run = Path | str | LoadedRun
"""A run directory, or one already read (the functions below read a path's files once)."""


def load_run(run: Run) -> LoadedRun:
    """``run``'s KPIs, ledger and metadata (:func:`~mpc_dc.rundir.read_run`); a run
    already read is returned as it is."""
    if isinstance(run, LoadedRun):
        return run
    path = Path(run)
    kpis, ledger, meta = read_run(path)
    return LoadedRun(path, kpis, ledger, meta)


def _pools(path: Path) -> pd.DataFrame:
    """The run's pools table summed per (interval, campus)."""
    pools = read_parquet_file(path / "pools.parquet", _WHAT)
    energy = (pools["idle_energy_j"] + pools["active_energy_j"]).to_numpy(dtype=float)
    facility = pools["facility_energy_kwh"].to_numpy(dtype=float)
    idle_share = np.divide(pools["idle_energy_j"].to_numpy(dtype=float), energy,
                           out=np.zeros_like(energy), where=energy > 0)
    frame = pd.DataFrame({"idle_kwh": facility * idle_share,
                          "active_kwh": facility * (1.0 - idle_share)}, index=pools.index)
    return frame.groupby(level=["interval_start_utc", "campus"], sort=False).sum()


def breakdown(run: Run) -> pd.Series:
    """The parts of one run's cost (:data:`PARTS`), ``cost_usd`` and :data:`ENERGY_ROWS`.

    Parameters
    ----------
    run : Path or LoadedRun
        A run directory of a site with a fleet (``kpis.json``, ``ledger.parquet``,
        ``pools.parquet``), or its files read by :func:`load_run`.

    Returns
    -------
    Series
        ``cost_usd`` [$], each part [$], energies [MWh], price [$/MWh], late requests.
    """
    loaded = load_run(run)
    kpis, ledger, meta = loaded.kpis, loaded.ledger, loaded.meta
    pools = _pools(loaded.path).reindex(ledger.index, fill_value=0.0)
    price = ledger["price_usd_per_mwh"].to_numpy(dtype=float)
    idle_mwh = pools["idle_kwh"].to_numpy() / 1e3
    active_mwh = pools["active_kwh"].to_numpy() / 1e3
    other_mwh = ledger["facility_power_mw"].to_numpy(dtype=float) * STEP_H - idle_mwh \
        - active_mwh
    renewable_mwh = (ledger["renewable_available_mw"] - ledger["curtailed_mw"]).to_numpy(
        dtype=float) * STEP_H
    cost = float(kpis["cost_usd"])
    without_slo = float(kpis["cost_without_slo_usd"])
    parts = {
        "inference_idle_usd": float(price @ idle_mwh),
        "inference_active_usd": float(price @ active_mwh),
        "other_it_usd": float(price @ other_mwh),
        "renewable_usd": -float(price @ renewable_mwh),
    }
    parts["residual_usd"] = without_slo - sum(parts.values())
    parts["lateness_usd"] = cost - without_slo
    other_total = float(other_mwh.sum())
    starts = pd.DatetimeIndex(ledger.index.get_level_values("interval_start_utc"))
    days = pd.MultiIndex.from_arrays([
        ledger.index.get_level_values("campus"),
        starts.tz_convert(str(meta.get("local_tz", "UTC"))).date])
    daily = pd.DataFrame({"price": price, "mwh": other_mwh}, index=days).groupby(
        level=[0, 1], sort=False).agg(price=("price", "mean"), mwh=("mwh", "sum"))
    return pd.Series({
        "cost_usd": cost, **parts,
        "inference_idle_mwh": float(idle_mwh.sum()),
        "inference_active_mwh": float(active_mwh.sum()),
        "other_it_mwh": other_total,
        "other_it_price_usd_per_mwh": (parts["other_it_usd"] / other_total
                                       if other_total > 0 else float("nan")),
        "other_it_flat_usd": float((daily["price"] * daily["mwh"]).sum()),
        "late_requests": float(ledger["late_requests"].sum()),
    })


def lateness_by_interval(run: Run) -> pd.DataFrame:
    """Late requests [requests] and lateness [$] of each interval, summed over campuses
    (requests booked in the interval of their arrival)."""
    return load_run(run).ledger[["late_requests", "lateness_usd"]].groupby(
        level="interval_start_utc", sort=True).sum()


def _span(ledger: pd.DataFrame) -> tuple[str, pd.MultiIndex]:
    """What a run's ledger covers, in words, and its (interval, campus) index."""
    index = pd.MultiIndex.from_arrays([
        pd.DatetimeIndex(ledger.index.get_level_values("interval_start_utc")),
        ledger.index.get_level_values("campus")])
    starts = index.levels[0]
    if len(starts) == 0:
        return "no interval", index
    campuses = ", ".join(dict.fromkeys(str(c) for c in index.get_level_values(1)))
    return (f"{starts.min():%Y-%m-%d %H:%M} to {starts.max() + STEP:%Y-%m-%d %H:%M} UTC "
            f"({len(starts)} intervals) at {campuses}"), index


def check_comparable(reference: Run, runs: Sequence[Run]) -> None:
    """Refuse runs that do not cover the ``reference`` run's intervals and campuses: their
    parts would be sums over different periods (or sites), and their difference no gap.

    Raises
    ------
    TraceError
        Naming the first such run's ledger, what it covers and what the reference covers.
    """
    ref = load_run(reference)
    ref_words, ref_index = _span(ref.ledger)
    ref_index = ref_index.sort_values()
    for run in runs:
        loaded = load_run(run)
        run_words, run_index = _span(loaded.ledger)
        if not run_index.sort_values().equals(ref_index):
            raise TraceError(loaded.path / "ledger.parquet",
                             f"covers {run_words}; expected the intervals and campuses of "
                             f"the reference {ref.path} ({ref_words}): cost-gap compares "
                             "runs of one scenario")


def gap_table(runs: Mapping[str, Run]) -> pd.DataFrame:
    """:func:`breakdown` of each run (columns, in order) and each run's difference to
    the first (``<name> − <first>``); every run must cover the first's intervals and
    campuses (:func:`check_comparable`). A run given as a path is read once."""
    if len(runs) < 1:
        raise ValueError("gap_table: expected at least one run")
    loaded = {name: load_run(run) for name, run in runs.items()}
    reference, *others = loaded.values()
    check_comparable(reference, others)
    table = pd.DataFrame({name: breakdown(run) for name, run in loaded.items()})
    first = table.columns[0]
    for name in list(table.columns[1:]):
        table[f"{name} − {first}"] = table[name] - table[first]
    return table


def lateness_gap(reference: Run, run: Run, top: int = 5) -> pd.DataFrame:
    """The ``top`` intervals where ``run`` paid the most lateness beyond ``reference``
    [$], with both runs' late requests, and the share of the whole lateness gap each
    holds [-] (NaN when ``run`` paid no more lateness than ``reference`` in all)."""
    ref, other = lateness_by_interval(reference), lateness_by_interval(run)
    both = pd.concat([ref.add_suffix("_reference"), other.add_suffix("_run")], axis=1
                     ).fillna(0.0)
    both["gap_usd"] = both["lateness_usd_run"] - both["lateness_usd_reference"]
    total = float(both["gap_usd"].sum())
    # A share of a gap that is not there (the run paid no more lateness in all) is NaN.
    both["share_of_gap"] = both["gap_usd"] / total if total > 0 else np.nan
    return both.nlargest(top, "gap_usd")[["late_requests_reference", "late_requests_run",
                                          "gap_usd", "share_of_gap"]]
