"""The one engine reproduces both old engines, decision for decision (issue 14, phase 1).

Each case runs an old engine with a rule policy written here (the controllers are
being rewritten), records every decision it committed and every observation it
was given, then replays the decisions through :func:`mpc_dc.sim.engine2.simulate`
on the same data expressed in the one site model. The ledgers, the KPIs and what
the policy observed must agree to 1e-9:

* (a) RCDC: one campus with other IT, wind, grid and battery, no fleet, against
  :func:`mpc_dc.sim.engine.simulate` (wholesale with window-start release;
  retail with a demand charge over two billing periods, a battery and
  on-arrival release). The rule over-commits work, battery power and curtailment
  on purpose so that every recourse path of the plant runs (asserted).
* (b) fleet: two campuses with GPUs, no renewable, export or battery, against
  :func:`mpc_dc.sim.fleet_engine.simulate_fleet`, on request-level and fluid
  serving, with 4-slot instances (queues) and pools left without instances
  (re-dispatch of stranded queues).

Phase 2 turns these into stored-figure regressions before the old engines go.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.controllers import Observation as OldObservation
from mpc_dc.params.fleet import CampusParams, FleetConfig
from mpc_dc.params.site import BatteryParams, GridParams, TariffParams
from mpc_dc.scenario import Scenario, build_exogenous, default_scenario
from mpc_dc.sim import engine2
from mpc_dc.sim.arrivals import ArrivalConfig, RequestArrays, build_arrivals
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.fleet_decision import FleetDecision as OldFleetDecision
from mpc_dc.sim.fleet_engine import (
    FleetExogenous,
    ServingConfig,
    ServingObservation,
    simulate_fleet,
)
from mpc_dc.sim.plant import Decision as OldDecision
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision
from tests.scripted_policy import Scripted
from tests.site_adapters import CAMPUS, fleet_exogenous, rcdc_exogenous


def make_replay(decisions: list[Decision]) -> Scripted:
    """Commits recorded decisions in order; keeps what it was shown."""
    return Scripted(lambda obs: decisions[obs.step])


# ----------------------------------------------------------------------------- (a) RCDC


class RcdcRule:
    """An old-interface rule that drives every recourse path of the RCDC plant.

    Deferrable work: all of it when the last observed price is below ``cheap``, a
    quarter of it (at least what is due within the hour) otherwise, and ten times
    the backlog every 11th interval (capped by the plant, then cut by the import
    limit). Battery: 30 MW (above its 20 MW rating) to charge below ``low``, to
    discharge above ``high`` [$/MWh]. Every 7th interval it plans to import while
    curtailing 25 MW; every 13th it commits the curtailment without planning to import.
    """

    name = "rcdc-rule"

    def __init__(self, cheap: float, low: float, high: float) -> None:
        self.cheap, self.low, self.high = cheap, low, high
        self.price = 40.0
        self.observed: list[tuple[pd.Timestamp, dict[str, float]]] = []
        self.observations: list[tuple[int, dict[int, float], float, float]] = []
        self.decisions: list[OldDecision] = []

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        self.observed.append((time, dict(values)))
        self.price = values.get("price_usd_per_mwh", self.price)

    def decide(self, obs: OldObservation) -> OldDecision:
        k = obs.step
        self.observations.append((k, dict(obs.backlog.pending), obs.peak_import_to_date_mw,
                                  obs.battery_energy_mwh))
        total = obs.backlog.total_wu
        due = sum(w for d, w in obs.backlog.pending.items() if d <= k + 4)
        work = total if self.price < self.cheap else max(0.25 * total, due)
        if k % 11 == 5:
            work = 10.0 * total + 50.0
        curtail, planned = (25.0, 5.0) if k % 7 == 3 else (0.0, math.nan)
        if k % 13 == 6:
            curtail = 25.0  # without a planned import: the plant must not execute it
        decision = OldDecision(
            work_df_wu=work,
            battery_charge_mw=30.0 if self.price < self.low else 0.0,
            battery_discharge_mw=30.0 if self.price > self.high else 0.0,
            curtailed_mw=curtail,
            planned_import_mw=planned,
            planned_export_mw=0.0,
            source=f"rule{k % 3}",
        )
        self.decisions.append(decision)
        return decision


def rcdc_case(kind: str) -> tuple[Scenario, RcdcRule]:
    """A 3-day synthetic RCDC run and a rule whose price thresholds fit its prices."""
    base = default_scenario()
    site = replace(base.site, datacenter=replace(base.site.datacenter, pue=1.2),
                   grid=GridParams(import_limit_mw=60.0, export_limit_mw=30.0))
    run = replace(base.run, days=3.0, history_days=1)
    if kind == "retail":
        # Across the end of April (local time): two billing periods, two demand charges.
        # A 30 MW connection: low wind leaves non-deferrable work unserved.
        site = replace(site, battery=BatteryParams(energy_mwh=40.0, power_mw=20.0),
                       grid=GridParams(import_limit_mw=30.0, export_limit_mw=30.0,
                                       tariff=TariffParams(
                           kind="retail", demand_charge_usd_per_kw=12.39,
                           import_adder_usd_per_mwh=8.0, export_credit_factor=0.6)))
        run = replace(run, start="2022-04-29T04:00:00Z", deferrable_release="on_arrival")
        return replace(base, site=site, run=run), RcdcRule(cheap=55.0, low=50.0, high=75.0)
    return replace(base, site=site, run=run), RcdcRule(cheap=30.0, low=25.0, high=45.0)


OLD_TO_NEW_LEDGER = {"it_power_mw": "it_other_mw", "site_load_mw": "facility_power_mw"}
OLD_TO_NEW_KPI = {"site_energy_mwh": "facility_energy_mwh"}
SKIP_LEDGER = {"decide_time_s", "decision_source"}
SKIP_KPI = {"wall_time_s", "decide_time_total_s", "fallbacks", "faults", "formulations"}


def assert_frames_close(old: pd.DataFrame, new: pd.DataFrame, names: dict[str, str],
                        skip: set[str]) -> None:
    for name in old.columns:
        if name in skip:
            continue
        got = new[names.get(name, name)].to_numpy(dtype=float)
        want = old[name].to_numpy(dtype=float)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True,
                                   err_msg=name)


def assert_kpis_close(old: Mapping[str, Any], new: Mapping[str, Any], names: dict[str, str],
                      skip: set[str]) -> None:
    for name, want in old.items():
        if name in skip:
            continue
        got = new[names.get(name, name)]
        if isinstance(want, dict):
            assert set(got) == set(want), name
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9, nan_ok=True), (
                    f"{name}[{key}]")
        elif isinstance(want, str):
            assert got == want, name
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9, nan_ok=True), name


@pytest.mark.parametrize("kind", ["wholesale", "retail"])
def test_rcdc_site_replays_the_old_engine(kind: str) -> None:
    scenario, rule = rcdc_case(kind)
    exo = build_exogenous(scenario)
    old = simulate(exo, rule)
    new_exo = rcdc_exogenous(exo)
    replay = make_replay([Decision({CAMPUS: CampusDecision(
        work_df_wu=d.work_df_wu, battery_charge_mw=d.battery_charge_mw,
        battery_discharge_mw=d.battery_discharge_mw, curtailed_mw=d.curtailed_mw,
        planned_import_mw=d.planned_import_mw, planned_export_mw=d.planned_export_mw)},
        source=d.source) for d in rule.decisions])
    new = engine2.simulate(new_exo, replay)

    led = new.campus_ledger(CAMPUS)
    pd.testing.assert_index_equal(led.index, old.ledger.index)
    assert_frames_close(old.ledger, led, OLD_TO_NEW_LEDGER, SKIP_LEDGER)
    assert list(led["decision_source"]) == list(old.ledger["decision_source"])
    assert_kpis_close(old.kpis, new.kpis, OLD_TO_NEW_KPI, SKIP_KPI)
    assert new.kpis["fallbacks_total"] == old.kpis["fallbacks_total"] == 0
    # The policy saw the same state and the same published values.
    seen = [(o.step, dict(o.campuses[CAMPUS].backlog_wu), o.campuses[CAMPUS].peak_import_to_date_mw,
             o.campuses[CAMPUS].battery_energy_mwh) for o in replay.observations]
    assert seen == rule.observations
    renamed = [(t, {f"{k}[{CAMPUS}]": v for k, v in values.items()})
               for t, values in rule.observed]
    assert [(t, {k: v for k, v in values.items() if not k.startswith("carbon")})
            for t, values in replay.observed] == renamed
    # Every recourse path ran: committed curtailment, work cut by the import limit,
    # unserved ND work, clipped battery set-points, export at its limit.
    assert (led["curtailed_mw"] > 0).any() and (led["planned_import_mw"] > 0).any()
    assert (led["work_df_done_wu"] < led["work_df_committed_wu"] - 1e-6).any()
    assert (led["import_mw"] > exo.config.grid.import_limit_mw - 1e-6).any()
    if kind == "wholesale":
        assert (led["export_mw"] > 30.0 - 1e-6).any()
    else:
        assert (led["battery_charge_mw"].between(1e-6, 20.0)).any()
        assert (led["demand_charge_usd"] > 0).sum() == 2
        assert old.kpis["work_nd_unserved_wu"] > 0


# ----------------------------------------------------------------------------- (b) fleet

START = pd.Timestamp("2022-04-01", tz="UTC")
STEPS = 16
MODELS = ("qwen3-8b", "qwen3-32b")


class FleetRule:
    """An old-interface fleet rule that moves instances between precisions and campuses.

    Demand persistence with a 1.2 headroom; BF16 on even intervals, FP8 on odd ones;
    every 5th interval campus B gets no instances of the 8B model and all of its
    requests go to A, stranding B's queue (re-dispatch).
    """

    name = "fleet-rule"

    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.demand = {m: 3000.0 for m in config.models}
        self.decisions: list[OldFleetDecision] = []
        self.observations: list[ServingObservation] = []

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        for m in self.config.models:
            self.demand[m] = values.get(f"tokens_per_s[{m}]", self.demand[m])

    def decide(self, obs: ServingObservation) -> OldFleetDecision:
        self.observations.append(obs)
        precision = "BF16" if obs.step % 2 == 0 else "FP8"
        inst: dict[tuple[str, str, str], int] = {}
        route: dict[tuple[str, str, str], float] = {}
        planned: dict[tuple[str, str, str], float] = {}
        for m in self.config.models:
            row = self.config.table.get(m, precision)
            shares = {"A": 0.6, "B": 0.4}
            if m == "qwen3-8b" and obs.step % 5 == 4:
                shares = {"A": 1.0, "B": 0.0}
            for c, s in shares.items():
                key = (c, m, precision)
                cap = self.config.utilization_cap * row.tokens_per_s_at_slo
                inst[key] = math.ceil(1.2 * self.demand[m] * s / cap) if s else 0
                if s:
                    route[key] = s
                planned[key] = self.demand[m] * s
        decision = OldFleetDecision(inst, route, planned, f"rule{obs.step % 2}")
        self.decisions.append(decision)
        return decision


@pytest.fixture(scope="module")
def fleet_case() -> tuple[FleetConfig, FleetExogenous, RequestArrays]:
    config = FleetConfig(
        campuses=(CampusParams("A", "NP15", 64, pue=1.2, carbon_zone="US-CAL-CISO"),
                  CampusParams("B", "SP15", 64, pue=1.35, carbon_zone="US-NY-NYIS")),
        models=MODELS)
    requests = build_arrivals(
        START, STEPS * 900.0,
        # 18 streams: 4-slot instances sized on the table's full-batch throughput
        # queue, so pools left without instances strand requests (issue 15's faster
        # curves emptied the queues at 12).
        ArrivalConfig(rate_multiplier=18.0, model_map={"ChatGPT": "qwen3-8b",
                                                       "GPT-4": "qwen3-32b"}),
        models=MODELS)
    rng = np.random.default_rng(7)
    index = pd.date_range(START, periods=STEPS, freq="15min", name="interval_start_utc")
    frame = pd.DataFrame({
        "lmp_usd_per_mwh[NP15]": rng.uniform(-20, 120, STEPS),
        "lmp_usd_per_mwh[SP15]": rng.uniform(10, 90, STEPS),
        "carbon_gco2_per_kwh[US-CAL-CISO]": rng.uniform(150, 300, STEPS),
        "carbon_gco2_per_kwh[US-NY-NYIS]": rng.uniform(200, 400, STEPS),
    }, index=index)
    return config, FleetExogenous(frame), requests


SERVING_COLUMNS = ("instances", "ready_instance_s", "instance_s", "arrivals", "arrived_tokens",
                   "started", "queue_end", "tokens_decoded", "planned_tokens_per_s",
                   "busy_slot_s", "idle_energy_j", "active_energy_j", "it_energy_kwh",
                   "facility_energy_kwh")
FLEET_KPI_NAMES = {"energy_cost_usd": "energy_import_usd",
                   "it_energy_mwh": "inference_it_energy_mwh"}
FLEET_SKIP_KPI = {"wall_time_s", "decide_time_total_s", "decide_time_median_s",
                  "decide_time_p95_s", "requests_per_wall_s"}


@pytest.mark.parametrize("fidelity", ["request", "fluid"])
def test_fleet_site_replays_the_old_engine(
    fleet_case: tuple[FleetConfig, FleetExogenous, RequestArrays], fidelity: str
) -> None:
    config, exo, requests = fleet_case
    serving = ServingConfig(fidelity=fidelity, slots_per_instance=4)
    rule = FleetRule(config)
    old = simulate_fleet(config, exo, requests, rule, serving)
    replay = make_replay([Decision(fleet=FleetDecision(d.instances, d.routing_share,
                                                  d.planned_tokens_per_s), source=d.source)
                     for d in rule.decisions])
    new = engine2.simulate(fleet_exogenous(config, exo, requests), replay, serving=serving)

    pools = new.pools
    assert pools is not None
    pd.testing.assert_index_equal(pools.index, old.ledger.index)
    for name in SERVING_COLUMNS:
        np.testing.assert_allclose(pools[name].to_numpy(dtype=float),
                                   old.ledger[name].to_numpy(dtype=float), rtol=1e-12,
                                   atol=1e-9, err_msg=name)
    # Settled per campus: the old per-pool costs summed over each campus's pools.
    by_campus = old.ledger.groupby(level=["interval_start_utc", "campus"]).sum()
    for old_name, new_name in (("energy_cost_usd", "energy_import_usd"),
                               ("carbon_kg", "carbon_kg"), ("carbon_cost_usd", "carbon_cost_usd"),
                               ("facility_energy_kwh", "import_mw"),
                               ("tokens_decoded", "tokens_served")):
        scale = 1e-3 / 0.25 if new_name == "import_mw" else 1.0
        np.testing.assert_allclose(new.ledger[new_name].to_numpy(),
                                   scale * by_campus[old_name].reindex(new.ledger.index).to_numpy(),
                                   rtol=1e-9, atol=1e-9, err_msg=new_name)
    assert_kpis_close(old.kpis, new.kpis, FLEET_KPI_NAMES, FLEET_SKIP_KPI)
    assert new.kpis["requeued_requests"] > 0  # the stranded queues were re-dispatched
    assert new.kpis["queue_max_requests"] > 0
    if fidelity == "request":
        assert old.requests is not None and new.requests is not None
        pd.testing.assert_frame_equal(new.requests, old.requests)
    # The policy saw the same committed instances and queues.
    for then, now in zip(rule.observations, replay.observations, strict=True):
        assert now.fleet() == then.instances
        assert dict(now.queue_requests) == then.queue_requests
        for key, ready in then.instances_ready.items():
            assert now.instances_running[key] == min(ready, then.instances[key])
