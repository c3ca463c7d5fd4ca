"""The one engine: a hand-worked combined case, the plant's shedding order, the exogenous
contract, the run directory, and invariants that catch injected bugs.

The figures of the two old engines it replaced are in ``tests/test_engine_regression.py``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.params.quant_table import QuantTable, load_quant_table
from mpc_dc.sim import engine, meter, plant
from mpc_dc.sim.arrivals import ArrivalConfig, RequestArrays, build_arrivals
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.engine import RunResult, check_invariants, save_run, simulate
from mpc_dc.sim.exogenous import (
    CampusRealized,
    SiteExogenous,
    column,
    deferrable_releases,
    demand_columns,
)
from mpc_dc.sim.invariants import InvariantError
from mpc_dc.sim.plant import CampusPlant
from mpc_dc.sim.policy import (
    CampusDecision,
    CampusObservation,
    Decision,
    FleetDecision,
    Observation,
)
from mpc_dc.sim.serving import ServingConfig
from mpc_dc.site.config import (
    Battery,
    Campus,
    DemandResponse,
    Fleet,
    Grid,
    OtherIT,
    ProcessingFunction,
    Renewable,
    Site,
    Tariff,
)
from tests.scripted_policy import Scripted
from traces.errors import TraceRangeError
from traces.grid import Publication

MODEL = "qwen3-8b"
W = "W"
POOL = (W, MODEL, "BF16")


# ----------------------------------------------------------------------------- (c) by hand


def hand_table() -> QuantTable:
    """One pool with round figures: 1 kW idle, 0.5 J/token, 10 slots at 1000 tokens/s
    (τ = 10 ms/token), prefill 10,000 tokens/s, ready 60 s after it is committed.

    The GPU name has no fitted batch curve (``serving_curves.csv``), so the pool runs
    the flat curve of these figures (:meth:`~mpc_dc.sim.serving.BatchCurve.flat`): a
    decode step of τ whatever the batch, power ``1000 W + 0.5 J / τ × occupancy``.
    """
    row = replace(load_quant_table().get(MODEL, "BF16"), idle_power_w=1000.0,
                  marginal_energy_per_token_j=0.5, max_batch=10, tokens_per_s_at_slo=1000.0,
                  prefill_tokens_per_s=10_000.0, load_time_s=60.0, gpus_per_instance=1,
                  itl_slo_p90_ms=50.0, gpu="hand-gpu")
    return QuantTable((row,), "hand")


def hand_case() -> tuple[SiteExogenous, Scripted]:
    """Inference + other IT + wind + export + battery + DR at one campus, two intervals."""
    campus = Campus(
        name=W, price_node="F", gpus=400, pue=1.25,
        other_it=OtherIT(it_capacity_mw=8.0, deferrable_share=0.0),
        renewable=Renewable(nameplate_mw=20.0),
        grid=Grid(import_limit_mw=10.0, export_limit_mw=3.0),
        battery=Battery(energy_mwh=2.0, power_mw=1.0, charge_efficiency=0.9,
                        discharge_efficiency=0.9, initial_energy_mwh=1.0))
    site = Site(campuses=(campus,), fleet=Fleet(models=(MODEL,), flexibility="S2",
                                                table=hand_table()),
                carbon_price_usd_per_t=50.0,
                dr=DemandResponse(reward_usd_per_kwh=0.1, penalty_usd_per_kwh=0.5,
                                    baseline="s1_plan"))
    n = 180
    requests = RequestArrays.from_arrays(60.0 + 0.5 * np.arange(n), np.zeros(n),
                                         np.full(n, 100), np.full(n, 1000), (MODEL,))
    index = pd.date_range("2022-06-01T04:00Z", periods=2, freq="15min",
                          name="interval_start_utc")
    frame = pd.DataFrame({
        column("price_usd_per_mwh", W): [30.0, -5.0],
        column("carbon_gco2_per_kwh", W): [400.0, 400.0],
        column("renewable_cf", W): [0.4, 0.4],
        column("workload_wu", W): [0.55, 0.55],
        column("dr_event", W): [0.0, 1.0],
        column("dr_baseline_mw", W): [0.0, 3.5],
    }, index=index).join(demand_columns(requests, index))
    fleet = FleetDecision({POOL: 400}, {POOL: 1.0})
    # The run has no history, so no price is published at its start: the script
    # commits each interval's export price itself, as a plan made on a forecast does.
    script = [
        Decision({W: CampusDecision(battery_charge_mw=1.0, export_price_usd_per_mwh=30.0)},
                 fleet),
        Decision({W: CampusDecision(battery_discharge_mw=0.8, curtailed_mw=8.0,
                                    planned_import_mw=3.0, export_price_usd_per_mwh=-5.0)},
                 fleet),
    ]
    return SiteExogenous(site, frame, index[0], 2, requests), Scripted(
        lambda obs: script[obs.step])


def test_hand_worked_combined_campus() -> None:
    """Figures worked by hand (Δ = 0.25 h; F(P) = 1.1 P below half the 8 MW capacity).

    Interval 0 (price 30 $/MWh, committed on too, wind 0.4 × 20 = 8 MW, charge 1 MW):
      180 requests arrive at 60..149.5 s, each 100 prompt + 1000 output tokens: start on
      arrival (slots ready at 60 s) alone on an instance, first token after
      100/10,000 = 0.01 s, 999 decode steps of 0.01 s, done 10 s after arrival.
      inference IT = (400 × 1000 W × 900 s + 0.5 J × 180,000) / 900 s = 0.4001 MW;
      other IT = F⁻¹(0.55 WU / Δ) = 2.2 / 1.1 = 2 MW; facility = 1.25 × 2.4001 = 3.000125 MW;
      surplus 8 − 3.000125 − 1 = 3.999875 MW → export 3 MW (limit), curtail 0.999875 MW;
      battery 1 + Δ × 0.9 × 1 = 1.225 MWh; export revenue 30 × 3 × Δ = 22.5 $.
    Interval 1 (price −5 $/MWh, DR event, baseline 3.5 MW; the plan imports 3 MW and
    curtails 8 MW, discharging 0.8 MW):
      inference IT = 400 × 1000 W = 0.4 MW; facility = 1.25 × 2.4 = 3 MW;
      import = 3 − 0.8 − (8 − 8) = 2.2 MW; energy −5 × 2.2 × Δ = −2.75 $;
      carbon 400 g/kWh × 2.2 MW × Δ = 220 kg → 50 $/t × 0.22 t = 11 $;
      DR reward 1000 × 0.1 $/kWh × (3.5 − 2.2) MW × Δ = 32.5 $;
      battery 1.225 − Δ × 0.8 / 0.9 = 1.0027̅ MWh.
    Net cost 0 − 22.5 − 2.75 + 11 − 32.5 = −46.75 $.
    """
    exo, policy = hand_case()
    result = simulate(exo, policy)
    led = result.campus_ledger(W)
    expect = {
        "it_inference_mw": [0.4001, 0.4],
        "it_other_mw": [2.0, 2.0],
        "facility_power_mw": [3.000125, 3.0],
        "renewable_available_mw": [8.0, 8.0],
        "renewable_used_mw": [7.000125, 0.0],
        "curtailed_mw": [0.999875, 8.0],
        "export_mw": [3.0, 0.0],
        "import_mw": [0.0, 2.2],
        "battery_charge_mw": [1.0, 0.0],
        "battery_discharge_mw": [0.0, 0.8],
        "battery_energy_mwh": [1.225, 1.225 - 0.25 * 0.8 / 0.9],
        "export_revenue_usd": [22.5, 0.0],
        "energy_import_usd": [0.0, -2.75],
        "carbon_kg": [0.0, 220.0],
        "carbon_cost_usd": [0.0, 11.0],
        "dr_reward_usd": [0.0, 32.5],
        "dr_penalty_usd": [0.0, 0.0],
        "tokens_served": [180_000.0, 0.0],
        "requests_arrived": [180.0, 0.0],
        "instances[qwen3-8b/BF16]": [400.0, 400.0],
        "routing_share[qwen3-8b]": [1.0, 1.0],
    }
    for name, values in expect.items():
        np.testing.assert_allclose(led[name].to_numpy(dtype=float), values, rtol=1e-12,
                                   atol=1e-12, err_msg=name)
    k = result.kpis
    assert k["cost_usd"] == pytest.approx(-46.75, abs=1e-9)
    assert k["import_mwh"] == pytest.approx(0.55, abs=1e-12)
    assert k["export_mwh"] == pytest.approx(0.75, abs=1e-12)
    assert k["inference_it_energy_mwh"] == pytest.approx(0.200025, abs=1e-12)
    assert k["facility_energy_mwh"] == pytest.approx(1.50003125, abs=1e-12)
    assert k["self_consumption_mwh"] == pytest.approx(1.75003125 - 0.75, abs=1e-12)
    assert k["carbon_t"] == pytest.approx(0.22, abs=1e-12)
    assert k["tokens_served"] == 180_000 and k["tokens_unserved"] == 0
    assert k["requests"] == 180 and k["slo_attainment"] == 1.0
    assert k["ttft_p99_s"] == pytest.approx(0.01, abs=1e-12)
    # Each request alone on its instance: 999 decode steps of τ after its first token.
    assert k["tpot_p99_s"] == pytest.approx(0.01, abs=1e-12)
    assert k["slo_ttft_attainment"] == k["slo_tpot_attainment"] == 1.0
    assert k["slo_attainment_by_campus"] == {W: 1.0}
    assert result.pools is not None
    np.testing.assert_allclose(result.pools["prefill_tokens"], [180 * 100, 0])
    np.testing.assert_allclose(result.pools["decode_steps"], [180 * 999, 0])
    assert k["import_over_limit_intervals"] == 0 and k["decision_projections"] == {}
    # What the policy saw: loading instances at 60 s are running by the next interval;
    # the interval's demand is published at its end (200 tokens/s, 720 requests/h).
    second = policy.observations[1]
    assert second.instances_running == {POOL: 400} and second.instances_starting == {POOL: 0}
    assert second.campuses[W].battery_energy_mwh == pytest.approx(1.225, abs=1e-12)
    first_values = policy.observed[0][1]
    assert first_values[f"tokens_per_s[{MODEL}]"] == pytest.approx(200.0)
    assert first_values[f"requests_per_h[{MODEL}]"] == pytest.approx(720.0)


def test_loading_instances_are_observed_as_starting() -> None:
    """With a 2000 s load time, instances committed at 0 s and 900 s are both loading at
    1800 s; cutting one then cancels the latest (ready at 2900 s), as the server does:
    at 2700 s three are running and one is still loading."""
    exo, _ = hand_case()
    table = QuantTable((replace(hand_table().rows[0], load_time_s=2000.0),), "slow")
    assert exo.site.fleet is not None
    site = replace(exo.site, fleet=replace(exo.site.fleet, table=table))
    index = pd.date_range(exo.run_start, periods=4, freq="15min", name="interval_start_utc")
    frame = exo.frame.reindex(index).ffill()
    requests = RequestArrays.from_arrays(np.array([10.0]), np.zeros(1), np.ones(1),
                                         np.ones(1), (MODEL,))
    frame.update(demand_columns(requests, index))
    frame[column("dr_event", W)] = 0.0
    counts = [3, 5, 4, 4]
    policy = Scripted(lambda obs: Decision(fleet=FleetDecision({POOL: counts[obs.step]},
                                                               {POOL: 1.0})))
    result = simulate(SiteExogenous(site, frame, index[0], 4, requests), policy)
    seen = [(o.instances_running[POOL], o.instances_starting[POOL])
            for o in policy.observations]
    assert seen == [(0, 0), (0, 3), (0, 5), (3, 1)]
    # The server agrees: in [2700, 3600) s three instances serve throughout, the fourth
    # from 2900 s.
    assert result.pools is not None
    assert result.pools["ready_instance_s"].iloc[3] == pytest.approx(3 * 900.0 + 700.0)


# ----------------------------------------------------------------------------- plant


def plant_campus(import_limit_mw: float, export_limit_mw: float) -> Campus:
    """PUE 1, F(P) = P on 10 MW, 10 MW of wind, a lossless 10 MWh / 5 MW battery."""
    return Campus(
        name="P", price_node="F", pue=1.0,
        other_it=OtherIT(it_capacity_mw=10.0,
                         processing=ProcessingFunction((0.0, 1.0), (0.0, 1.0))),
        renewable=Renewable(nameplate_mw=10.0),
        grid=Grid(import_limit_mw=import_limit_mw, export_limit_mw=export_limit_mw),
        battery=Battery(energy_mwh=10.0, power_mw=5.0, charge_efficiency=1.0,
                        discharge_efficiency=1.0))


def realized(work_nd_wu: float = 0.0, cf: float = 0.0, price: float = 50.0) -> CampusRealized:
    return CampusRealized(price, price, price, 300.0, cf, work_nd_wu, False, 0.0, 0.0)


def backlog_of(amount: float) -> Backlog:
    b = Backlog()
    b.release(amount, 10)
    return b


@pytest.mark.parametrize(
    ("case", "nd_wu", "df_wu", "charge", "inference", "expect"),
    [
        # 4 + 2 + 2 MW on a 5 MW connection: deferrable work first, then 1 MW of charge.
        ("deferrable, then charge", 1.0, 0.5, 2.0, 0.0,
         {"work_df_done_wu": 0.0, "battery_charge_mw": 1.0, "import_mw": 5.0,
          "work_nd_unserved_wu": 0.0}),
        # 4 + 2 + 0.5 MW: 0.5 MW of room left for deferrable work (0.125 WU); charge kept.
        ("deferrable only", 1.0, 0.5, 0.5, 0.0,
         {"work_df_done_wu": 0.125, "battery_charge_mw": 0.5, "import_mw": 5.0}),
        # 6 MW of ND work + 1 MW charge: all charge goes, then 1 MW of ND work (0.25 WU).
        ("charge, then ND work", 1.5, 0.0, 1.0, 0.0,
         {"battery_charge_mw": 0.0, "work_nd_unserved_wu": 0.25, "import_mw": 5.0}),
        # 6 MW of inference + 1 MW of ND work: ND work goes, inference overloads by 1 MW.
        ("inference over the limit", 0.25, 0.0, 0.0, 6.0,
         {"work_nd_unserved_wu": 0.25, "import_mw": 6.0, "import_over_limit_mw": 1.0,
          "facility_power_mw": 6.0}),
    ],
)
def test_import_limit_sheds_in_order(case: str, nd_wu: float, df_wu: float, charge: float,
                                     inference: float, expect: dict[str, float]) -> None:
    plant = CampusPlant(plant_campus(import_limit_mw=5.0, export_limit_mw=0.0))
    record = plant.execute(0, CampusDecision(work_df_wu=df_wu, battery_charge_mw=charge),
                           realized(nd_wu), backlog_of(df_wu), inference)
    for name, value in expect.items():
        assert getattr(record, name) == pytest.approx(value, abs=1e-12), (case, name)


@pytest.mark.parametrize("price", [50.0, -5.0])
def test_committed_curtailment_is_given_back_before_shedding(price: float) -> None:
    """4 MW of load, 4 MW of wind the plan curtails while importing, a 2 MW connection:
    2 MW of the curtailment is given back, nothing is shed (at any realized price)."""
    plant = CampusPlant(plant_campus(import_limit_mw=2.0, export_limit_mw=0.0))
    record = plant.execute(0, CampusDecision(curtailed_mw=4.0, planned_import_mw=1.0),
                           realized(1.0, cf=0.4, price=price), backlog_of(0.0))
    assert (record.import_mw, record.curtailed_mw, record.work_nd_unserved_wu) == (
        pytest.approx(2.0), pytest.approx(2.0), 0.0)


def test_surplus_is_curtailed_at_a_non_positive_export_price() -> None:
    """8 MW of wind, 1 MW of load: at a committed export price of 0 or −1 $/MWh the
    surplus is spilled, at 20 $/MWh exported, whatever the realized price (here the
    opposite sign); without a committed price (NaN) spilled: the plant never reads
    the realized one."""
    plant = CampusPlant(plant_campus(import_limit_mw=5.0, export_limit_mw=5.0))
    for committed, export in ((-1.0, 0.0), (0.0, 0.0), (20.0, 5.0), (math.nan, 0.0)):
        record = plant.execute(0, CampusDecision(export_price_usd_per_mwh=committed),
                               realized(0.25, cf=0.8, price=10.0 if committed <= 0 else -10.0),
                               None)
        assert record.export_mw == export
        assert record.import_mw == 0.0
        assert record.curtailed_mw == pytest.approx(8.0 - 1.0 - export)


@pytest.mark.parametrize(
    ("case", "price", "event", "planned_import", "curtailed"),
    [
        ("positive price", 10.0, False, 1.0, 2.0),
        ("paid to import", -10.0, False, 1.0, 2.0),
        ("DR event", -10.0, True, 1.0, 2.0),
        # A plan that does not import keeps its wind: nothing to curtail it for.
        ("no planned import", -10.0, False, 0.0, 0.0),
    ])
def test_the_plant_executes_the_committed_curtailment_whatever_the_realized_price(
        case: str, price: float, event: bool, planned_import: float, curtailed: float) -> None:
    """4 MW of load, 3 MW of wind, a plan that curtails 2 MW: executed where the plan
    imports, at a positive or a negative realized price alike (the plant curtailed on
    the realized price before, a price not published when the interval starts)."""
    plant = CampusPlant(plant_campus(import_limit_mw=5.0, export_limit_mw=0.0))
    r = CampusRealized(price, price, price, 300.0, 0.3, 1.0, event, 5.0 if event else 0.0, 0.0)
    record = plant.execute(0, CampusDecision(curtailed_mw=2.0, planned_import_mw=planned_import),
                           r, backlog_of(0.0))
    assert record.curtailed_mw == pytest.approx(curtailed), case
    assert record.import_mw == pytest.approx(4.0 - 3.0 + curtailed), case
    assert record.work_nd_unserved_wu == 0.0, case


def test_meter_dr_settlement_and_billing_peaks() -> None:
    """Retail at 12 $/kW; DR with reward 0.1 $/kWh, penalty 0.5 $/kWh, cap 0.8 × baseline.

    Event interval, baseline 2 MW, import 3 MW: reward 1000 × 0.1 × (2 − 3) × 0.25 = −25 $
    (import above the baseline is charged back), excess over the 1.6 MW cap 1.4 MW →
    penalty 1000 × 0.5 × 1.4 × 0.25 = 175 $. Billing: period 1 peaks at 5 MW → 60,000 $
    on its last interval; period 2 starts from 0 and bills 2 MW → 24,000 $.
    """
    campus = Campus("M", "F", grid=Grid(tariff=Tariff(kind="retail",
                                                      demand_charge_usd_per_kw=12.0)))
    campus_meter = meter.CampusMeter(campus, 0.0, DemandResponse(0.1, 0.5, 0.8))
    names = meter.METER_COLUMNS

    def settle(period: int, import_mw: float, ends: bool, event: bool = False) -> dict[str, float]:
        r = CampusRealized(40.0, 40.0, 40.0, 0.0, 0.0, 0.0, event, 2.0 if event else 0.0, 0.0)
        return dict(zip(names, campus_meter.settle(period, import_mw=import_mw, export_mw=0.0,
                                            realized=r, unserved_wu=0.0, missed_wu=0.0,
                                            period_ends=ends), strict=True))

    first = settle(1, 3.0, False, event=True)
    assert first["dr_reward_usd"] == pytest.approx(-25.0)
    assert first["dr_penalty_usd"] == pytest.approx(175.0)
    assert first["energy_import_usd"] == pytest.approx(30.0)
    assert settle(1, 5.0, False)["demand_charge_usd"] == 0.0
    assert campus_meter.peak_to_date(1) == 5.0 and campus_meter.peak_to_date(2) == 0.0
    assert settle(1, 1.0, True)["demand_charge_usd"] == pytest.approx(60_000.0)
    assert settle(2, 2.0, True)["demand_charge_usd"] == pytest.approx(24_000.0)
    assert campus_meter.totals["demand_charge_usd"] == pytest.approx(84_000.0)
    # Energy 40 $/MWh × (3 + 5 + 1 + 2) MW × 0.25 h; the negative reward adds 25 $.
    assert meter.net_cost_usd(campus_meter.totals) == pytest.approx(110.0 + 84_000.0 + 25.0 + 175.0)


# ----------------------------------------------------------------------------- multi-campus

START = pd.Timestamp("2022-04-04T04:00Z")
STEPS = 12


def two_campus_site(tariff: Tariff | None = None) -> Site:
    return Site(
        campuses=(
            Campus("A", "F", gpus=64, pue=1.2,
                   other_it=OtherIT(it_capacity_mw=10.0, window_h=1.0),
                   renewable=Renewable(nameplate_mw=15.0),
                   grid=Grid(import_limit_mw=12.0, export_limit_mw=4.0,
                             tariff=tariff or Tariff()),
                   battery=Battery(energy_mwh=4.0, power_mw=2.0)),
            Campus("B", "J", gpus=64, pue=1.3),
        ),
        fleet=Fleet(models=("qwen3-8b", "qwen3-32b")),
        carbon_price_usd_per_t=40.0)


def two_campus_exo(site: Site, history: int = 8, **extra: Any) -> SiteExogenous:
    requests = build_arrivals(
        START, STEPS * 900.0,
        ArrivalConfig(rate_multiplier=4.0, model_map={"ChatGPT": "qwen3-8b",
                                                      "GPT-4": "qwen3-32b"}),
        models=site.models)
    index = pd.date_range(START - history * pd.Timedelta("15min"), periods=history + STEPS + 4,
                          freq="15min", name="interval_start_utc")
    rng = np.random.default_rng(3)
    cols: dict[str, Any] = {}
    for c in site.campuses:
        cols[column("price_usd_per_mwh", c.name)] = rng.uniform(-10, 90, len(index))
        cols[column("carbon_gco2_per_kwh", c.name)] = rng.uniform(100, 500, len(index))
    cols[column("renewable_cf", "A")] = rng.uniform(0, 1, len(index))
    cols[column("workload_wu", "A")] = rng.uniform(0.5, 2.0, len(index))
    frame = pd.DataFrame(cols, index=index)
    run = index[history : history + STEPS]
    frame = frame.join(demand_columns(requests, run))
    return SiteExogenous(site, frame, START, STEPS, requests, **extra)


def busy_policy(site: Site) -> Scripted:
    """BF16 pools sized generously, even routing, all deferrable work, battery cycling."""
    def decide(obs: Observation) -> Decision:
        inst = {k: 3 for k in site.pools if k[2] == "BF16"}
        shares: dict[tuple[str, str, str], float] = {}
        for m in site.models:
            keys = [k for k in inst if k[1] == m]
            shares.update({k: 1.0 / len(keys) for k in keys})
        a = CampusDecision(work_df_wu=obs.campuses["A"].backlog_total_wu,
                           battery_charge_mw=2.0 if obs.step % 4 < 2 else 0.0,
                           battery_discharge_mw=2.0 if obs.step % 4 >= 2 else 0.0)
        return Decision({"A": a}, FleetDecision(inst, shares), source="busy")
    return Scripted(decide)


@pytest.fixture(scope="module")
def two_campus_run() -> RunResult:
    site = two_campus_site(Tariff(kind="retail", demand_charge_usd_per_kw=10.0,
                                  import_adder_usd_per_mwh=5.0, export_credit_factor=0.5))
    return simulate(two_campus_exo(site), busy_policy(site))


def test_two_campus_run_has_one_row_per_interval_and_campus(two_campus_run: RunResult) -> None:
    led = two_campus_run.ledger
    assert led.index.names == ["interval_start_utc", "campus"]
    assert len(led) == 2 * STEPS
    assert set(engine.LEDGER_COLUMNS) <= set(led.columns)
    pools = two_campus_run.pools
    assert pools is not None and len(pools) == STEPS * len(two_campus_run.site.pools)
    b = two_campus_run.campus_ledger("B")
    # B has no renewable, battery or other IT: it imports its facility power.
    np.testing.assert_allclose(b["import_mw"], b["facility_power_mw"])
    assert (b["it_other_mw"] == 0).all() and (b["export_mw"] == 0).all()
    k = two_campus_run.kpis
    assert set(k["by_campus"]) == {"A", "B"}
    assert k["cost_usd"] == pytest.approx(sum(v["cost_usd"] for v in k["by_campus"].values()))
    assert k["demand_charge_usd"] > 0
    assert k["work_df_done_wu"] == pytest.approx(k["work_df_arrived_wu"])


def test_net_cost_is_costs_minus_revenue(two_campus_run: RunResult) -> None:
    """``costs_usd`` holds every cost term and no revenue, ``revenue_usd`` the export
    revenue and DR reward, ``cost_usd = costs_usd − revenue_usd``; the run's invariants
    check it after every run, so KPIs whose sides drift from the ledger stop it."""
    k = two_campus_run.kpis
    assert k["export_revenue_usd"] > 100.0  # campus A sells wind: revenue to keep apart
    assert k["revenue_usd"] == pytest.approx(k["export_revenue_usd"] + k["dr_reward_usd"],
                                             rel=1e-12)
    terms = ("energy_import_usd", "demand_charge_usd", "carbon_cost_usd", "dr_penalty_usd",
             "unserved_penalty_usd", "missed_penalty_usd", "lateness_usd")
    assert k["costs_usd"] == pytest.approx(sum(k[t] for t in terms), rel=1e-12)
    assert k["cost_usd"] == pytest.approx(k["costs_usd"] - k["revenue_usd"], rel=1e-12)
    check_invariants(two_campus_run)
    for key, by, message in (
            ("costs_usd", 0.01, r"costs_usd .* != the ledger's non-credit terms"),
            ("revenue_usd", -0.01, r"revenue_usd .* != the ledger's credit terms"),
            # the net's sides both shifted: costs − revenue still the net, costs wrong
            ("both", 1.0, r"costs_usd .* != the ledger's non-credit terms")):
        kpis = dict(k)
        for side in (("costs_usd", "revenue_usd") if key == "both" else (key,)):
            kpis[side] += by
        with pytest.raises(InvariantError, match=message):
            check_invariants(replace(two_campus_run, kpis=kpis))
    # A net cost off by a cent is within the ledger check's 1e-6 but not the identity.
    assert k["cost_usd"] > 1e5
    with pytest.raises(InvariantError, match=r"cost_usd .* != costs_usd − revenue_usd"):
        check_invariants(replace(two_campus_run, kpis=dict(k, cost_usd=k["cost_usd"] + 0.01)))


def test_run_directory(two_campus_run: RunResult, tmp_path: Path) -> None:
    run = save_run(two_campus_run, tmp_path / "run", meta={"controller": "busy"})
    back = pd.read_parquet(run / "ledger.parquet")
    assert len(back) == len(two_campus_run.ledger)
    assert two_campus_run.pools is not None
    assert len(pd.read_parquet(run / "pools.parquet")) == len(two_campus_run.pools)
    assert (run / "requests.parquet").exists()
    kpis = json.loads((run / "kpis.json").read_text())
    assert kpis["cost_usd"] == pytest.approx(two_campus_run.kpis["cost_usd"])
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["controller"] == "busy" and meta["campuses"] == ["A", "B"]
    with pytest.raises(FileExistsError):
        save_run(two_campus_run, run)


# ----------------------------------------------------------------------------- exogenous


def test_exogenous_refuses_what_does_not_fit_the_site() -> None:
    site = two_campus_site()
    good = two_campus_exo(site)
    with pytest.raises(ValueError, match=r"missing columns \['renewable_cf\[A\]'\]"):
        replace(good, frame=good.frame.drop(columns=[column("renewable_cf", "A")]))
    frame = good.frame.copy()
    frame.loc[START + pd.Timedelta("30min"), column("price_usd_per_mwh", "B")] = np.nan
    with pytest.raises(ValueError, match=r"'price_usd_per_mwh\[B\]' is NaN at 2022-04-04 04:30"):
        replace(good, frame=frame)
    frame = good.frame.copy()
    tokens = column("tokens_per_s", "qwen3-8b")
    frame[tokens] = frame[tokens].to_numpy() + (frame.index == START)
    with pytest.raises(ValueError, match=r"'tokens_per_s\[qwen3-8b\]' at 2022-04-04 04:00.*"
                                         "requests give"):
        replace(good, frame=frame)
    with pytest.raises(ValueError, match="does not cover the run"):
        replace(good, n_steps=STEPS + 5)
    frame = good.frame.copy()
    frame[column("dr_event", "B")] = 1.0
    given = replace(site, dr=replace(site.dr, baseline="s1_plan"))
    # Under s1_plan the baseline is set after the data build, by whoever computes it.
    no_baseline = replace(good, site=given, frame=frame)
    with pytest.raises(ValueError, match=r"DR events but no 'dr_baseline_mw\[B\]'"):
        simulate(no_baseline, Scripted(lambda obs: Decision()))
    # History NaN is fine: forecasters see the gap.
    frame = good.frame.copy()
    frame.iloc[0, 0] = np.nan
    replace(good, frame=frame)


def test_exogenous_reads_only_the_run() -> None:
    exo = two_campus_exo(two_campus_site())
    assert len(exo.realized(STEPS - 1)) == 2
    for step in (-1, STEPS):
        with pytest.raises(TraceRangeError, match="run covers"):
            exo.realized(step)
    with pytest.raises(TraceRangeError):
        exo.published_during(STEPS)
    assert len(exo.truth(column("price_usd_per_mwh", "A"))) == 8 + STEPS + 4


def test_exogenous_rules_per_campus() -> None:
    site = two_campus_site(Tariff(kind="retail", import_adder_usd_per_mwh=7.0,
                                  export_credit_factor=0.5))
    exo = two_campus_exo(site)
    run = exo.frame.loc[exo.run_index]
    price = run[column("price_usd_per_mwh", "A")].to_numpy()
    np.testing.assert_allclose(exo.realized_array("import_price")[:, 0], price + 7.0)
    np.testing.assert_allclose(exo.realized_array("export_price")[:, 0], 0.5 * price)
    np.testing.assert_allclose(exo.realized_array("import_price")[:, 1],
                               run[column("price_usd_per_mwh", "B")])
    work = run[column("workload_wu", "A")].to_numpy()
    np.testing.assert_allclose(exo.realized_array("work_nd")[:, 0], 0.6 * work)
    # Windows of 4 intervals: batch 0 is the initial backlog, batch k is submitted in the
    # interval before its window opens and due by the window's last interval.
    released = deferrable_releases(work, 0.4, 4, "window_start")
    assert exo.initial_backlog("A").pending == {3: pytest.approx(released[0])}
    assert exo.deferrable_arrival_wu("A", 3) == pytest.approx(released[4])
    assert exo.deferrable_arrival_wu("A", 2) == 0.0
    assert exo.window_deadline("A", 4) == 7
    with pytest.raises(KeyError, match="no other IT"):
        exo.initial_backlog("B")


def test_published_values_arrive_when_published() -> None:
    """An hourly price is handed over at the end of its hour, four quarters at once."""
    site = two_campus_site()
    hourly = Publication(source_step=pd.Timedelta("1h"))
    exo = two_campus_exo(site, publication={column("price_usd_per_mwh", "A"): hourly})
    price = column("price_usd_per_mwh", "A")
    when = {k: [t for t, v in exo.published_during(k) if price in v] for k in range(8)}
    assert when[0] == when[1] == when[2] == []
    assert when[3] == [exo.time(k) for k in range(4)]
    # The 15-min columns are published every interval, for that interval.
    assert [t for t, v in exo.published_during(5) if column("price_usd_per_mwh", "B") in v] == [
        exo.time(5)]
    assert len(exo.published_history(price)) == 8


def test_backlog_view_cumulates_like_the_backlog() -> None:
    backlog = Backlog()
    for amount, deadline in ((3.0, 5), (2.0, 2), (1.0, 9)):
        backlog.release(amount, deadline)
    view = CampusObservation(backlog_wu=tuple(sorted(backlog.pending.items())))
    assert view.backlog_total_wu == 6.0
    for margin in (0, 2):
        got = view.backlog_cumulative(1, 6, margin_steps=margin)
        want = backlog.cumulative(1, 6, margin_steps=margin)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


# ----------------------------------------------------------------------------- invariants


def _swap_campuses(original: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def wrong(self: Any, stats: Any) -> np.ndarray:
        return original(self, stats)[::-1].copy()
    return wrong


Settle = Callable[..., tuple[float, ...]]


def _unbooked_export(original: Settle) -> Settle:
    """The meter credits exports at the import price (the retail tariff says π⁻)."""
    def wrong(self: Any, period: int, **kw: Any) -> tuple[float, ...]:
        out = list(original(self, period, **kw))
        r = kw["realized"]
        out[1] = r.import_price_usd_per_mwh * kw["export_mw"] * 0.25
        return tuple(out)
    return wrong


def _peakless(original: Settle) -> Settle:
    """The meter bills the demand charge on the interval's import, not the period's peak."""
    def wrong(self: Any, period: int, **kw: Any) -> tuple[float, ...]:
        out = list(original(self, period, **kw))
        if out[2]:
            out[2] = self.campus.grid.tariff.demand_charge_usd_per_mw * kw["import_mw"]
        return tuple(out)
    return wrong


def _battery_ignores_losses(step: int, energy: float, charge: float, discharge: float,
                            battery: Any) -> float:
    return min(max(energy + 0.25 * (charge - discharge), 0.0), battery.energy_mwh)


def _process_forgets(self: Backlog, amount_wu: float) -> float:
    """Reports the work as done without taking it off the backlog."""
    take = min(amount_wu, self.total_wu)
    self.done_wu += take
    return take


MUTANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    "facility without PUE on inference": (
        lambda mp: mp.setattr(CampusPlant, "_load", lambda self, w, inf: (
            self._other_it_mw(w), self.campus.pue * self._other_it_mw(w) + inf)),
        "facility power != PUE"),
    "export above its limit": (
        lambda mp: mp.setattr(CampusPlant, "_export", lambda self, s, p: s if p > 0 else 0.0),
        "export above the export limit"),
    "battery without losses": (
        lambda mp: mp.setattr(plant, "battery_energy_after", _battery_ignores_losses),
        "battery energy"),
    "inference energy at the wrong campus": (
        lambda mp: mp.setattr(engine._Fleet, "inference_it_mw",
                              _swap_campuses(engine._Fleet.inference_it_mw)),
        "its pools'"),
    "export credited at the import price": (
        lambda mp: mp.setattr(meter.CampusMeter, "settle",
                              _unbooked_export(meter.CampusMeter.settle)),
        "export_revenue_usd"),
    "demand charge without the peak": (
        lambda mp: mp.setattr(meter.CampusMeter, "settle",
                              _peakless(meter.CampusMeter.settle)),
        "demand_charge_usd"),
    # the defect of a percentage of cost taken of a figure net of revenue
    "the net cost booked as the costs": (
        lambda mp: mp.setattr(engine, "costs_and_revenue_usd",
                              lambda rows: (meter.net_cost_usd(rows), 0.0)),
        r"costs_usd .* != the ledger's non-credit terms"),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_an_injected_bug_breaks_an_invariant(monkeypatch: pytest.MonkeyPatch,
                                             mutant: str) -> None:
    site = two_campus_site(Tariff(kind="retail", demand_charge_usd_per_kw=10.0,
                                  import_adder_usd_per_mwh=5.0, export_credit_factor=0.5))
    # Tight limits so that the rows the mutants touch occur: export at its limit, a
    # peak before the last interval.
    site = replace(site, campuses=(replace(site.campuses[0], grid=replace(
        site.campuses[0].grid, export_limit_mw=0.5)), site.campuses[1]))
    exo = two_campus_exo(site)
    patch, message = MUTANTS[mutant]
    patch(monkeypatch)
    with pytest.raises(InvariantError, match=message) as err:
        simulate(exo, busy_policy(site))
    assert "\n" not in str(err.value) and str(err.value).startswith("invariant violated")


# The books of issue 14 (c), each named by interval and campus: energy, battery, work and
# deadlines, tokens (fluid: per interval; request level: per pool over the run), requests.

Execute = Callable[..., plant.CampusRecord]


def _import_without_charge(original: Execute) -> Execute:
    """The plant imports as if the battery charge drew nothing from the grid."""
    def wrong(self: CampusPlant, *args: Any, **kw: Any) -> plant.CampusRecord:
        record = original(self, *args, **kw)
        return replace(record, import_mw=max(record.import_mw - record.battery_charge_mw, 0.0))
    return wrong


def _expire_keeps(self: Backlog, step: int) -> float:
    """Nothing is ever missed: work past its deadline stays pending."""
    return 0.0


def _expire_early(original: Callable[[Backlog, int], float]) -> Callable[[Backlog, int], float]:
    """Work is dropped one interval before its deadline ends."""
    def wrong(self: Backlog, step: int) -> float:
        return original(self, step + 1)
    return wrong


Serve = Callable[..., Any]


def _stats_changed(original: Serve, **scale: float) -> Serve:
    """The server reports some of its interval figures scaled (``field=factor``)."""
    def wrong(self: Any, *args: Any, **kw: Any) -> Any:
        stats = original(self, *args, **kw)
        return replace(stats, **{k: getattr(stats, k) * f for k, f in scale.items()})
    return wrong


BOOKS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str, str, bool]] = {
    # name: (patch, what the one line says after "at interval k (time): ", fidelity,
    #        whether the policy leaves deferrable work to miss)
    "import without the battery charge": (
        lambda mp: mp.setattr(CampusPlant, "execute",
                              _import_without_charge(CampusPlant.execute)),
        "campus A: energy balance", "request", False),
    "battery without losses": (
        lambda mp: mp.setattr(plant, "battery_energy_after", _battery_ignores_losses),
        "campus A: battery energy", "request", False),
    "done work left in the backlog": (
        lambda mp: mp.setattr(Backlog, "process", _process_forgets),
        "campus A: deferrable work not conserved", "request", False),
    "missed work kept pending": (
        lambda mp: mp.setattr(Backlog, "expire", _expire_keeps),
        "campus A: .* WU past its deadline still pending", "request", True),
    "work missed before its deadline": (
        lambda mp: mp.setattr(Backlog, "expire", _expire_early(Backlog.expire)),
        "campus A: .* WU booked as missed, but .* WU was due", "request", True),
    "fluid tokens decoded that were never queued": (
        lambda mp: mp.setattr(engine.FluidServer, "run_interval", _stats_changed(
            engine.FluidServer.run_interval, tokens_decoded=1.01)),
        "campus [AB]: tokens not conserved", "fluid", False),
    "requests routed twice": (
        lambda mp: mp.setattr(engine.RequestLevelServer, "run_interval", _stats_changed(
            engine.RequestLevelServer.run_interval, arrivals=2.0)),
        "requests: .* routed", "request", False),
}


@pytest.mark.parametrize("mutant", sorted(BOOKS))
def test_every_book_names_interval_and_campus(monkeypatch: pytest.MonkeyPatch,
                                              mutant: str) -> None:
    """An injected bug in each book stops the run with one line naming the interval and
    (but for the site's requests) the campus."""
    site = two_campus_site()
    exo = two_campus_exo(site)
    patch, message, fidelity, lazy = BOOKS[mutant]
    busy = busy_policy(site)
    policy = busy if not lazy else Scripted(lambda obs: replace(
        busy.decide(obs), campuses={"A": CampusDecision()}))
    patch(monkeypatch)
    with pytest.raises(InvariantError) as err:
        simulate(exo, policy, serving=ServingConfig(fidelity=fidelity))
    line = str(err.value)
    assert "\n" not in line
    assert re.match(r"invariant violated at interval \d+ \(\d{4}-\d\d-\d\d \d\d:\d\d UTC\): "
                    + message, line), line


def test_request_level_tokens_are_booked_per_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Request level: the tokens each request got, summed per pool over the run, equal
    the pool table's (per-request records carry no interval); the line names the campus."""
    site = two_campus_site()
    monkeypatch.setattr(engine.RequestLevelServer, "run_interval", _stats_changed(
        engine.RequestLevelServer.run_interval, tokens_decoded=1.01))
    with pytest.raises(InvariantError, match=r"over the run: serving records: campus [AB]: "
                                             r"tokens of pool qwen3-\w+/BF16: records"):
        simulate(two_campus_exo(site), busy_policy(site))


def test_a_corrupted_ledger_is_named_by_interval_and_campus(two_campus_run: RunResult) -> None:
    def corrupted(name: str, by: float) -> pd.DataFrame:
        led = two_campus_run.ledger.copy()
        assert led.index[7][1] == "B"
        led[name] = led[name].to_numpy() + by * (np.arange(len(led)) == 7)
        return led

    led = corrupted("import_mw", 0.01)
    with pytest.raises(InvariantError, match=r"at interval 3 \(2022-04-04 04:45 UTC\): campus B: "
                                             "energy balance"):
        check_invariants(replace(two_campus_run, ledger=led))
    led = corrupted("carbon_cost_usd", 1.0)
    with pytest.raises(InvariantError, match="campus B: carbon_cost_usd"):
        check_invariants(replace(two_campus_run, ledger=led))
    assert not math.isnan(two_campus_run.kpis["cost_usd"])
