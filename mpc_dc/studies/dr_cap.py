"""Why a DR event row ends above its cap: the plan against what the plant drew.

``python -m mpc_dc.studies.dr_cap RUN_DIR SCENARIO`` prints, per (event interval,
campus) of a run directory written by ``mpc-dc run``, the programme's cap ``f · b``,
the plan's import ``p̂``, the committed cap ``K = max(f · b, p̂)``
(:func:`mpc_dc.sim.plant.committed_cap_mw`), the realized import ``m`` [kW], and the
inference part of ``m − p̂`` split three ways (facility power, PUE applied) [kW]:

* ``d_instances``: idle power of the instances that drew power (instance-seconds ×
  ``P0``) against the plan's (its committed instances × ``P0``: those at the interval
  end less the fast layer's starts and keeps): the fast layer's instances, instances
  draining;
* ``d_tokens``: tokens served against tokens planned, at the plan's energy per token
  ``e``: a demand surprise (the plan provisions at the demand quantile, above the
  point forecast);
* ``d_occupancy``: the pools' measured power against the plan's line at the tokens
  they served (``P0`` × instance-seconds + ``e ×`` tokens, less their idle energy,
  counted in ``d_instances``): the batch curve at the occupancy it ran at against
  the plan's line.

``P0`` and ``e`` are the planner's power line of each pool (``Fleet.power_line``: the
run's ``power_intercept_w`` and ``power_slope_j_per_token`` from its ``kpis.json``,
else the quantization table's idle power and marginal energy per token).

The rest of ``m − p̂`` (``d_other``) is what is not inference: other IT, renewable,
battery, curtailment, and the plant's levers holding the cap (``dr_relief_mw``). A
summary follows: rows above ``f · b`` and above ``K``, by cause. ``--by-day``: one row
per (local event day, campus) (:func:`by_day`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mpc_dc.site.config import Site
from mpc_dc.site.scenario import load_scenario
from traces.errors import ConfigError
from traces.grid import STEP

STEP_S = STEP.total_seconds()


def event_rows(ledger: pd.DataFrame, pools: pd.DataFrame, site: Site) -> pd.DataFrame:
    """One row per (event interval, campus): caps, plan, realized import and the split
    of the module docstring [kW]; ``over_programme_cap`` and ``over_committed_cap``
    (bool) and ``plan_over_programme_cap`` (the plan's import above ``f · b``)."""
    event = ledger[ledger["dr_event"].astype(bool)]
    keys = list(zip(*(pools.index.get_level_values(n) for n in ("campus", "model", "precision")),
                    strict=True))
    if site.fleet is None:
        raise ValueError("event_rows: the site has no fleet; expected the site of a run "
                         "with a [fleet] (the split needs its pools' power line)")
    line = np.array([site.fleet.power_line(k[1], k[2]) for k in keys], dtype=float)
    p0, e = line[:, 0], line[:, 1]
    # the plan's intercept over the instance-seconds that drew power; the part of it
    # above the curve's own idle power (idle_energy_j) is set against active power
    instance_s = pools["instance_s"].to_numpy()
    curve_p0 = pools["idle_energy_j"].to_numpy() / np.maximum(instance_s, 1e-9)
    per_pool = pd.DataFrame({
        # the plan's instances: those committed at the end less the fast layer's
        "planned_idle_w": p0 * (pools["instances"] - pools["fast_started"]
                                - pools["fast_kept"]).to_numpy(),
        "idle_w": p0 * instance_s / STEP_S,
        "e_planned_w": e * pools["planned_tokens_per_s"].to_numpy(),
        "e_served_w": e * pools["tokens_decoded"].to_numpy() / STEP_S,
        "active_w": (pools["active_energy_j"].to_numpy()
                     + (curve_p0 - p0) * instance_s) / STEP_S,
    }, index=pools.index)
    per_campus = (per_pool.groupby(level=["interval_start_utc", "campus"]).sum()
                  .reindex(event.index, fill_value=0.0))
    pue = event.index.get_level_values("campus").map(
        {c.name: c.pue for c in site.campuses}).to_numpy(dtype=float)
    kw = 1e3
    fraction = site.dr.cap_fraction_of_baseline
    out = pd.DataFrame({
        "programme_cap_kw": fraction * event["dr_baseline_mw"] * kw,
        "planned_kw": event["planned_import_mw"] * kw,
        "committed_cap_kw": event["dr_committed_cap_mw"] * kw,
        "import_kw": event["import_mw"] * kw,
    }, index=event.index)
    out["d_instances"] = pue * (per_campus["idle_w"] - per_campus["planned_idle_w"]) / kw
    out["d_tokens"] = pue * (per_campus["e_served_w"] - per_campus["e_planned_w"]) / kw
    out["d_occupancy"] = pue * (per_campus["active_w"] - per_campus["e_served_w"]) / kw
    out["d_other"] = (out["import_kw"] - out["planned_kw"] - out["d_instances"]
                      - out["d_tokens"] - out["d_occupancy"])
    out["dr_relief_kw"] = event["dr_relief_mw"] * kw
    tol = 1e-9 * kw
    out["plan_over_programme_cap"] = out["planned_kw"] > out["programme_cap_kw"] + tol
    out["over_programme_cap"] = event["dr_excess_mw"].to_numpy() > 1e-9
    out["over_committed_cap"] = out["import_kw"] > out["committed_cap_kw"] * (1 + 1e-9) + tol
    return out


def planned_site(site: Site, kpis_path: Path) -> Site:
    """``site`` with the power line the run planned with (``power_intercept_w`` and
    ``power_slope_j_per_token`` of its ``kpis.json``; a run without them planned with
    the table's line)."""
    kpis = json.loads(kpis_path.read_text()) if kpis_path.exists() else {}
    if site.fleet is None or "power_intercept_w" not in kpis:
        return site
    return replace(site, fleet=replace(
        site.fleet, power_intercept_w=kpis["power_intercept_w"],
        power_slope_j_per_token=kpis["power_slope_j_per_token"]))


def summary(rows: pd.DataFrame) -> list[str]:
    """Counts of the rows above each cap, by cause, and the mean split [kW]."""
    over = rows["over_programme_cap"]
    planned = rows["plan_over_programme_cap"]
    above_plan = rows["import_kw"] > rows["planned_kw"] + 1e-6
    split = ["d_instances", "d_tokens", "d_occupancy", "d_other"]
    return [
        f"event rows: {len(rows)}; above the programme's cap: {int(over.sum())} "
        f"({int((over & planned).sum())} planned above it, of which "
        f"{int((over & planned & above_plan).sum())} drew more than planned; "
        f"{int((over & ~planned).sum())} planned under it); above the committed cap: "
        f"{int(rows['over_committed_cap'].sum())}",
        "mean split of import − plan over the rows above the programme's cap [kW]: "
        + ", ".join(f"{c} {rows.loc[over, c].mean():+.3f}" for c in split),
        "mean split over all event rows [kW]: "
        + ", ".join(f"{c} {rows[c].mean():+.3f}" for c in split),
    ]


def by_day(rows: pd.DataFrame, local_tz: str) -> pd.DataFrame:
    """:func:`event_rows` per (local event day, campus): the means of the caps, plan,
    import and split [kW], and the counts of rows (``rows``), planned above ``f · b``
    (``plan_over``), above ``f · b`` (``over_fb``) and above the committed cap
    (``over_k``)."""
    day = pd.DatetimeIndex(rows.index.get_level_values(0)).tz_convert(local_tz).strftime(
        "%Y-%m-%d")
    groups = rows.groupby([day, rows.index.get_level_values("campus")])
    out = groups[["programme_cap_kw", "planned_kw", "committed_cap_kw", "import_kw",
                  "d_instances", "d_tokens", "d_occupancy", "d_other"]].mean()
    out["rows"] = groups.size()
    out["plan_over"] = groups["plan_over_programme_cap"].sum()
    out["over_fb"] = groups["over_programme_cap"].sum()
    out["over_k"] = groups["over_committed_cap"].sum()
    return out.rename_axis(["day", "campus"])


def main(argv: list[str] | None = None) -> int:
    """Print the table and the summary of a run directory."""
    parser = argparse.ArgumentParser(prog="python -m mpc_dc.studies.dr_cap",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run directory (mpc-dc run --out)")
    parser.add_argument("scenario", type=Path, help="the run's scenario TOML file")
    parser.add_argument("--by-day", action="store_true",
                        help="one row per (local event day, campus) instead of per interval")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    if scenario.site.fleet is None:
        print(ConfigError(args.scenario, "the scenario has no fleet; expected the scenario "
                          "of a run with a [fleet] table (the split needs its pools' power "
                          "line)", key="fleet"), file=sys.stderr)
        return 2
    rows = event_rows(pd.read_parquet(args.run / "ledger.parquet"),
                      pd.read_parquet(args.run / "pools.parquet"),
                      planned_site(scenario.site, args.run / "kpis.json"))
    table = by_day(rows, scenario.run.local_tz) if args.by_day else rows
    with pd.option_context("display.width", 250, "display.max_rows", None,
                           "display.max_columns", None):
        print(table.round(3).to_string())
    print("\n".join(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
