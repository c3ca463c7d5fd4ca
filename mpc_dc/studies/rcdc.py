"""Renewable-colocated data center (RCDC) study, offline with perfect foresight.

Seed paper: S. Li, L. Tong, T. D. Mount, "Energy Management for Renewable-
Colocated Artificial Intelligence Data Centers", arXiv:2507.08011. Our set-up
(DESIGN.md section 6): 100 MW data center, 150 MW wind, 40 % deferrable work,
15-min steps, one 24-h scheduling window per day over one month. Days and the
month are New York local time (:data:`LOCAL_TZ`), as the retail billing month and
the closed-loop scenarios ``rcdc_nyiso_*.toml`` are.

Data choices
------------
* Month April 2022 (local), zone F (Capital). April is one of the six complete
  months of the NYISO RT file and the windiest complete month after November
  (NY wind CF 0.30); unlike November it has a few negative real-time prices in
  zone F, so the study exercises both the LP and the exact MILP. Zone F is the
  zone of the only day-ahead series we have (CAPITL), so the wholesale (RT) and
  retail (DA-indexed) markets price the same location.
* Wind: NY system wind CF (EIA-930 WND / installed capacity) × nameplate.
* Workload: Google cell-a PDU power_util (May 2019) aligned on local time of
  day (Pacific midnight -> New York midnight of the month's first day), so the
  100 MW site draws ``power_util × 100 MW`` when it runs its work on arrival; the
  work that power does, ``Δ F(P)``, is 60 % non-deferrable and 40 % deferrable,
  due by the end of its 24-h window. Deferrable work is released by the closed
  loop's rule (:func:`mpc_dc.sim.exogenous.deferrable_releases`, the campus key
  ``other_it.release``): by default each window's batch at the window start, or
  with ``release = "on_arrival"`` as it arrives.
* Each window is solved alone with perfect foresight, the billing month's peak
  carried from window to window. Wholesale windows are independent, so this is
  the closed loop's perfect-foresight cost (``tests/test_deferrable_release.py``
  checks it to the cent, and a one-window retail case against the offline
  optimum); over several retail windows the demand charge couples them, and the
  rolling 24-h oracle or the month's offline optimum can do better.
* Retail: π⁺ = π⁻ = day-ahead LBMP (hourly-pricing supply tied to the DA market,
  net metering at the same rate) and a 12.39 $/kW demand charge on the monthly
  15-min peak import, tracked as peak-to-date across the daily windows.

Each configuration is a site of the one site model (:class:`mpc_dc.site.config.Site`,
:meth:`RcdcStudyConfig.site`): one campus without GPUs, with other IT, a grid
connection and, when colocated, the wind plant; no fleet, no carbon price. Its
windows are solved by the one problem (:class:`mpc_dc.problem.Problem`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mpc_dc.problem import (
    CostBreakdown,
    Formulation,
    HorizonInputs,
    Plan,
    PlantState,
    Problem,
    SolveResult,
    SolverOptions,
)
from mpc_dc.rundir import atomic_dir
from mpc_dc.sim.exogenous import deferrable_releases
from mpc_dc.site.config import (
    Campus,
    Grid,
    OtherIT,
    ReleaseRule,
    Renewable,
    Site,
    Tariff,
)
from mpc_dc.site.data import align_google, work_from_utilisation
from traces.datasets import google_load_shape, ny_wind_cf, nyiso_da_lmp, nyiso_rt_lmp
from traces.errors import TraceError
from traces.grid import STEP_H

Market = Literal["wholesale", "retail"]
Configuration = Literal["no colocation", "colocation", "optimal colocation"]
CONFIGURATIONS: tuple[Configuration, ...] = ("no colocation", "colocation", "optimal colocation")
MARKETS: tuple[Market, ...] = ("wholesale", "retail")

LOCAL_TZ = "America/New_York"
"""Time zone of the study's days, month and billing period."""
CAMPUS = "dc"
"""Name of the study's one campus."""

PAPER_SAVINGS_PCT: dict[tuple[Market, Configuration], float] = {
    ("wholesale", "optimal colocation"): 79.5,
    ("retail", "optimal colocation"): 64.5,
    ("wholesale", "colocation"): 68.8,
    ("retail", "colocation"): 58.2,
}
"""Monthly savings vs no colocation reported by Li-Tong-Mount [%]."""


@dataclass(frozen=True)
class RcdcStudyConfig:
    """Study set-up.

    Parameters
    ----------
    month : str
        Month ``YYYY-MM`` (2022), New York local time.
    zone : str
        NYISO load zone letter of the RT price.
    dc_capacity_mw : float [MW]
    wind_nameplate_mw : float [MW]
    deferrable_share : float [-]
    demand_charge_usd_per_kw : float [$/kW per month]
    window_steps : int
        Scheduling window [15-min intervals].
    deferrable_release : {"window_start", "on_arrival"}
        When deferrable work is released (the campus key ``other_it.release``).
    days : int or None
        Use only the first ``days`` windows (smoke tests); None = whole month.
    deferrable_shares : tuple of float [-]
        Sweep of Figs 1-2.
    capacity_ratios : tuple of float [-]
        Renewable / data-center capacity sweep of Figs 3-4.
    """

    month: str = "2022-04"
    zone: str = "F"
    dc_capacity_mw: float = 100.0
    wind_nameplate_mw: float = 150.0
    deferrable_share: float = 0.4
    demand_charge_usd_per_kw: float = 12.39
    window_steps: int = 96
    deferrable_release: ReleaseRule = "window_start"
    days: int | None = None
    deferrable_shares: tuple[float, ...] = tuple(np.round(np.linspace(0, 1, 11), 2))
    capacity_ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)

    def site(self, market: Market, nameplate_mw: float | None = None,
             deferrable_share: float | None = None) -> Site:
        """The site of a configuration: one campus without GPUs.

        Parameters
        ----------
        market : {"wholesale", "retail"}
            The grid tariff: wholesale (RT price) or retail (DA-indexed, demand charge).
        nameplate_mw : float [MW], optional
            Wind nameplate (default :attr:`wind_nameplate_mw`); 0 = no renewable block.
        deferrable_share : float [-], optional
            Default :attr:`deferrable_share`; 0 = all work runs on arrival.
        """
        tariff = (Tariff(kind="retail", demand_charge_usd_per_kw=self.demand_charge_usd_per_kw)
                  if market == "retail" else Tariff())
        cap = self.dc_capacity_mw
        plate = self.wind_nameplate_mw if nameplate_mw is None else nameplate_mw
        share = self.deferrable_share if deferrable_share is None else deferrable_share
        campus = Campus(
            # PUE 1: the seed's 100 MW is the site's power, cooling included.
            name=CAMPUS, price_node=self.zone, carbon_zone="US-NY-NYIS", gpus=0, pue=1.0,
            other_it=OtherIT(it_capacity_mw=cap, deferrable_share=share,
                             window_h=self.window_steps / 4, release=self.deferrable_release),
            renewable=Renewable(nameplate_mw=plate) if plate > 0 else None,
            # Limits never bind: import covers the whole site, export the whole plant.
            grid=Grid(import_limit_mw=2 * cap, export_limit_mw=10 * cap, tariff=tariff))
        return Site(campuses=(campus,))

    def configuration_site(self, market: Market, configuration: Configuration, *,
                           deferrable_share: float | None = None,
                           nameplate_mw: float | None = None) -> Site:
        """The site of a Table II configuration.

        ``no colocation``: no renewable, work on arrival. ``colocation``: the wind
        plant, work on arrival (the optimizer only chooses export vs curtailment).
        ``optimal colocation``: the wind plant and the deferrable share scheduled.
        """
        plate = self.wind_nameplate_mw if nameplate_mw is None else nameplate_mw
        share = self.deferrable_share if deferrable_share is None else deferrable_share
        return self.site(market, 0.0 if configuration == "no colocation" else plate,
                         share if configuration == "optimal colocation" else 0.0)

    def month_index(self) -> pd.DatetimeIndex:
        """The 15-min UTC intervals of :attr:`month` (New York local days)."""
        local_start = pd.Timestamp(f"{self.month}-01", tz=LOCAL_TZ)
        return pd.date_range(local_start.tz_convert("UTC"),
                             (local_start + pd.offsets.MonthBegin(1)).tz_convert("UTC"),
                             freq="15min", inclusive="left", name="interval_start_utc")

    def windows_in_month(self) -> int:
        """How many whole scheduling windows :attr:`month` holds [-]."""
        return len(self.month_index()) // self.window_steps


@dataclass(frozen=True)
class RcdcData:
    """Aligned month of data on the 15-min UTC grid.

    Attributes
    ----------
    index : DatetimeIndex (UTC interval starts)
    rt_lmp_usd_per_mwh, da_lmp_usd_per_mwh : ndarray [$/MWh]
    wind_cf : ndarray [-]
    power_util : ndarray [-]
        Site power / capacity when work runs on arrival.
    """

    index: pd.DatetimeIndex
    rt_lmp_usd_per_mwh: np.ndarray
    da_lmp_usd_per_mwh: np.ndarray
    wind_cf: np.ndarray
    power_util: np.ndarray

    @property
    def n_windows(self) -> int:
        """Number of whole 24-h windows."""
        return len(self.index) // 96


def load_rcdc_data(data_dir: Path, study: RcdcStudyConfig) -> RcdcData:
    """Read and align the month's RT price, DA price, wind CF and load shape.

    Raises
    ------
    TraceError
        When the chosen month has gaps in any series.
    """
    index = study.month_index()
    start = index[0]
    if study.days is not None:
        index = index[: study.days * study.window_steps]
    rt, _ = nyiso_rt_lmp(data_dir, year=start.year, zones=[study.zone])
    da, _ = nyiso_da_lmp(data_dir)
    wind, _ = ny_wind_cf(data_dir)
    shape, _ = google_load_shape(data_dir)
    series = {
        "rt": rt[f"lmp_usd_per_mwh[{study.zone}]"].reindex(index).to_numpy(dtype=float),
        "da": da.iloc[:, 0].reindex(index).to_numpy(dtype=float),
        "cf": wind["wind_cf"].reindex(index).to_numpy(dtype=float),
    }
    for name, values in series.items():
        if np.isnan(values).any():
            raise TraceError(data_dir, f"{name} series has {int(np.isnan(values).sum())} missing "
                             f"intervals in {study.month}; choose a complete month")
    util = align_google(shape, index)
    return RcdcData(index, series["rt"], series["da"], np.clip(series["cf"], 0.0, 1.0), util)


# ----------------------------------------------------------------------------- one month


@dataclass(frozen=True)
class MonthResult:
    """Totals of one configuration over the study month.

    Attributes
    ----------
    imports_mwh, exports_mwh, self_consumption_mwh, renewable_mwh : float [MWh]
    peak_demand_mw : float [MW]
        Highest 15-min import.
    energy_cost_usd, export_revenue_usd, demand_charge_usd, cost_usd : float [$]
    milp_windows : int
        Windows solved with the exact MILP.
    """

    imports_mwh: float
    exports_mwh: float
    self_consumption_mwh: float
    renewable_mwh: float
    peak_demand_mw: float
    energy_cost_usd: float
    export_revenue_usd: float
    demand_charge_usd: float
    cost_usd: float
    milp_windows: int


@dataclass
class _ProblemCache:
    """One problem per (tariff, renewable nameplate), built on first use.

    The deferrable share and its release rule enter a window through its inputs only
    (non-deferrable work, cumulative release and deadline), so the configurations
    and sweep points that differ only there solve one problem. Each LP starts from
    the basis of the problem's last one, unshifted (``warm_start="same"``): the
    windows are whole days, not receding steps one interval apart.
    """

    study: RcdcStudyConfig
    problems: dict[tuple[str, float], Problem] = field(default_factory=dict)

    def get(self, site: Site) -> Problem:
        campus = site.campuses[0]
        key = (campus.grid.tariff.kind, campus.nameplate_mw)
        if key not in self.problems:
            self.problems[key] = Problem(site, self.study.window_steps,
                                         SolverOptions(warm_start="same"),
                                         demand_response=False)
        return self.problems[key]


def window_inputs(data: RcdcData, site: Site, *, day: int) -> tuple[HorizonInputs, PlantState]:
    """Inputs and (start-of-window) deferrable state of window ``day`` of a site.

    The campus's other IT does the work of the load shape, ``Δ F(power_util · P̄)``
    [WU]; its deferrable share is released by ``other_it.release`` and due by the
    window's end. Its tariff picks the price: the RT LMP (wholesale) or the DA LMP
    (retail).
    """
    campus = site.campuses[0]
    other = campus.other_it
    if other is None:
        raise ValueError(f"window_inputs: campus {campus.name!r} has no other IT; expected "
                         "the RCDC campus (its other IT does the load shape's work)")
    H = other.window_steps
    sl = slice(day * H, (day + 1) * H)
    work = work_from_utilisation(data.power_util[sl], other)
    avail = np.cumsum(deferrable_releases(work, other.deferrable_share, H, other.release))
    due = np.zeros(H)
    due[-1] = avail[-1]
    price = (data.da_lmp_usd_per_mwh if campus.grid.tariff.kind == "retail"
             else data.rt_lmp_usd_per_mwh)
    cf = data.wind_cf[sl] if campus.renewable is not None else 0.0
    inputs = HorizonInputs.build(site, H, price_usd_per_mwh=price[sl], renewable_cf=cf,
                                 work_nd_wu=(1.0 - other.deferrable_share) * work)
    return inputs, PlantState(df_due_cum_wu=due, df_available_cum_wu=avail)


def run_month(data: RcdcData, study: RcdcStudyConfig, market: Market,
              configuration: Configuration, *, deferrable_share: float | None = None,
              nameplate_mw: float | None = None,
              cache: _ProblemCache | None = None) -> MonthResult:
    """Solve the month window by window and total the outcome.

    The configuration's site is :meth:`RcdcStudyConfig.configuration_site`. The
    billing-period peak import is carried from window to window.
    """
    cache = cache or _ProblemCache(study)
    site = study.configuration_site(market, configuration, deferrable_share=deferrable_share,
                                    nameplate_mw=nameplate_mw)
    problem = cache.get(site)
    nameplate = site.campuses[0].nameplate_mw
    peak = 0.0
    totals = np.zeros(7)
    milp = 0
    for day in range(data.n_windows):
        inputs, state = window_inputs(data, site, day=day)
        result = problem.solve(inputs, replace(state, peak_import_to_date_mw=peak))
        plan, cost = _require_plan(result, market, configuration, day)
        milp += result.formulation is Formulation.EXACT
        peak = max(peak, float(plan.peak_import_mw[0]))
        imp, exp = plan.import_mw[0], plan.export_mw[0]
        totals += [
            STEP_H * imp.sum(), STEP_H * exp.sum(),
            # Self-consumption: renewable energy consumed on site, not exported.
            STEP_H * np.maximum(plan.renewable_used_mw[0] - exp, 0.0).sum(),
            STEP_H * nameplate * inputs.renewable_cf[0].sum(),
            cost.energy_import_usd, cost.export_revenue_usd, cost.demand_charge_usd,
        ]
    imports, exports, selfc, ren, energy, revenue, demand = (float(v) for v in totals)
    return MonthResult(imports, exports, selfc, ren, peak, energy, revenue, demand,
                       energy - revenue + demand, milp)


def _require_plan(result: SolveResult, market: str, configuration: str, day: int
                  ) -> tuple[Plan, CostBreakdown]:
    if result.plan is None or result.cost is None:
        raise RuntimeError(f"{market}/{configuration}: window {day} failed: {result.status} "
                           f"{result.message}")
    return result.plan, result.cost


# ----------------------------------------------------------------------------- table and sweeps


def table_ii(data: RcdcData, study: RcdcStudyConfig,
             cache: _ProblemCache | None = None) -> pd.DataFrame:
    """Table II: imports, exports, self-consumption, peak, cost, savings per config."""
    cache = cache or _ProblemCache(study)
    rows = []
    for market in MARKETS:
        base: MonthResult | None = None
        for configuration in CONFIGURATIONS:
            res = run_month(data, study, market, configuration, cache=cache)
            base = base or res
            rows.append({
                "market": market,
                "configuration": configuration,
                "imports_mwh": res.imports_mwh,
                "exports_mwh": res.exports_mwh,
                "self_consumption_mwh": res.self_consumption_mwh,
                "self_consumption_pct": (100 * res.self_consumption_mwh / res.renewable_mwh
                                         if res.renewable_mwh > 0 else float("nan")),
                "peak_demand_mw": res.peak_demand_mw,
                "energy_cost_usd": res.energy_cost_usd,
                "export_revenue_usd": res.export_revenue_usd,
                "demand_charge_usd": res.demand_charge_usd,
                "cost_usd": res.cost_usd,
                "savings_pct": 100 * (base.cost_usd - res.cost_usd) / base.cost_usd,
                "paper_savings_pct": PAPER_SAVINGS_PCT.get((market, configuration), 0.0),
                "milp_windows": res.milp_windows,
            })
    return pd.DataFrame(rows)


def sensitivity_deferrable(data: RcdcData, study: RcdcStudyConfig,
                           cache: _ProblemCache | None = None) -> pd.DataFrame:
    """Savings of optimal colocation vs no colocation against the deferrable share."""
    cache = cache or _ProblemCache(study)
    rows = []
    for market in MARKETS:
        base = run_month(data, study, market, "no colocation", cache=cache).cost_usd
        for share in study.deferrable_shares:
            cost = run_month(data, study, market, "optimal colocation",
                             deferrable_share=share, cache=cache).cost_usd
            rows.append({"market": market, "deferrable_share": share,
                         "savings_pct": 100 * (base - cost) / base})
    return pd.DataFrame(rows)


def sensitivity_capacity(data: RcdcData, study: RcdcStudyConfig,
                         cache: _ProblemCache | None = None) -> pd.DataFrame:
    """Savings vs the renewable / data-center capacity ratio (both colocation configs)."""
    cache = cache or _ProblemCache(study)
    rows = []
    for market in MARKETS:
        base = run_month(data, study, market, "no colocation", cache=cache).cost_usd
        for ratio in study.capacity_ratios:
            nameplate = float(ratio * study.dc_capacity_mw)
            for configuration in ("colocation", "optimal colocation"):
                cost = run_month(data, study, market, configuration, nameplate_mw=nameplate,
                                 cache=cache).cost_usd
                rows.append({"market": market, "capacity_ratio": ratio,
                             "configuration": configuration,
                             "savings_pct": 100 * (base - cost) / base})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- outputs


def table_markdown(table: pd.DataFrame) -> str:
    """Table II as GitHub Markdown."""
    header = ("| market | configuration | imports [MWh] | exports [MWh] | self-consumption "
              "[MWh] | self-consumption [%] | peak demand [MW] | cost [$] | savings [%] | "
              "paper savings [%] |")
    lines = [header, "|" + "---|" * 10]
    for row in table.to_dict("records"):
        pct = float(row["self_consumption_pct"])
        selfc = "—" if np.isnan(pct) else f"{pct:.1f}"
        paper = f"{row['paper_savings_pct']:.1f}" if row["paper_savings_pct"] else "—"
        lines.append(
            f"| {row['market']} | {row['configuration']} | {row['imports_mwh']:,.0f} | "
            f"{row['exports_mwh']:,.0f} | {row['self_consumption_mwh']:,.0f} | {selfc} | "
            f"{row['peak_demand_mw']:.1f} | {row['cost_usd']:,.0f} | {row['savings_pct']:.1f} | "
            f"{paper} |")
    return "\n".join(lines) + "\n"


def plot_figures(deferrable: pd.DataFrame, capacity: pd.DataFrame, study: RcdcStudyConfig,
                 out_dir: Path) -> list[Path]:
    """Figs 1-4 as PNG: savings vs deferrable share and vs capacity ratio, per market."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for number, market in enumerate(MARKETS, start=1):
        sub = deferrable[deferrable["market"] == market]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(100 * sub["deferrable_share"], sub["savings_pct"], marker="o",
                label="optimal colocation")
        ax.set_xlabel("deferrable share of the workload [%]")
        ax.set_ylabel("monthly cost savings vs no colocation [%]")
        ax.set_title(f"Fig. {number}: {market} market, {study.month}, zone {study.zone}, "
                     f"wind {study.wind_nameplate_mw:.0f} MW")
        ax.grid(True, alpha=0.3)
        ax.legend()
        paths.append(_save(fig, out_dir / f"fig{number}_savings_vs_deferrable_{market}.png"))
        plt.close(fig)
    for number, market in enumerate(MARKETS, start=3):
        sub = capacity[capacity["market"] == market]
        fig, ax = plt.subplots(figsize=(6, 4))
        for configuration, group in sub.groupby("configuration", sort=False):
            ax.plot(group["capacity_ratio"], group["savings_pct"], marker="o",
                    label=str(configuration))
        ax.set_xlabel("renewable / data-center capacity ratio [-]")
        ax.set_ylabel("monthly cost savings vs no colocation [%]")
        ax.set_title(f"Fig. {number}: {market} market, {study.month}, "
                     f"{100 * study.deferrable_share:.0f} % deferrable")
        ax.grid(True, alpha=0.3)
        ax.legend()
        paths.append(_save(fig, out_dir / f"fig{number}_savings_vs_capacity_ratio_{market}.png"))
        plt.close(fig)
    return paths


def _save(fig: object, path: Path) -> Path:
    fig.savefig(path, dpi=120, bbox_inches="tight")  # type: ignore[attr-defined]
    return path


@dataclass(frozen=True)
class StudyOutputs:
    """What :func:`reproduce` wrote."""

    table: pd.DataFrame
    deferrable: pd.DataFrame
    capacity: pd.DataFrame
    files: tuple[Path, ...]
    markdown: str


def reproduce(data_dir: Path, out_dir: Path, study: RcdcStudyConfig | None = None,
              *, sweeps: bool = True) -> StudyOutputs:
    """Run the study and write Table II (CSV, Markdown), the sweeps and Figs 1-4.

    Outputs are written to a temporary folder next to ``out_dir`` and moved into
    place only when complete.
    """
    study = study or RcdcStudyConfig()
    data = load_rcdc_data(data_dir, study)
    cache = _ProblemCache(study)
    table = table_ii(data, study, cache)
    deferrable = sensitivity_deferrable(data, study, cache) if sweeps else pd.DataFrame()
    capacity = sensitivity_capacity(data, study, cache) if sweeps else pd.DataFrame()
    markdown = table_markdown(table)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        table.to_csv(tmp / "table_ii.csv", index=False)
        (tmp / "table_ii.md").write_text(markdown, encoding="utf-8")
        names = ["table_ii.csv", "table_ii.md"]
        if sweeps:
            deferrable.to_csv(tmp / "sensitivity_deferrable.csv", index=False)
            capacity.to_csv(tmp / "sensitivity_capacity_ratio.csv", index=False)
            names += ["sensitivity_deferrable.csv", "sensitivity_capacity_ratio.csv"]
            names += [p.name for p in plot_figures(deferrable, capacity, study, tmp)]
    return StudyOutputs(table, deferrable, capacity, tuple(out_dir / n for n in names), markdown)


def savings_summary(table: pd.DataFrame) -> Iterable[str]:
    """Lines comparing our savings with the paper's."""
    for row in table.to_dict("records"):
        if row["paper_savings_pct"]:
            yield (f"{row['market']:9s} {row['configuration']:18s} ours "
                   f"{row['savings_pct']:5.1f} %  paper {row['paper_savings_pct']:5.1f} %")
