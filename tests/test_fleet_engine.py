"""The fleet closed loop: ledger, KPIs, conservation, SLO and fault handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.params.fleet import CampusParams, FleetConfig
from mpc_dc.sim.arrivals import ArrivalConfig, build_arrivals
from mpc_dc.sim.fleet_decision import FleetDecision
from mpc_dc.sim.fleet_engine import (
    LEDGER_COLUMNS,
    FleetExogenous,
    ServingConfig,
    ServingObservation,
    save_fleet_run,
    simulate_fleet,
    slo_by_pool_interval,
)
from tests.fleet_rule import DemandFollower

START = pd.Timestamp("2022-04-01", tz="UTC")
STEPS = 24


@pytest.fixture(scope="module")
def config() -> FleetConfig:
    return FleetConfig(
        campuses=(CampusParams("A", "A", 512), CampusParams("B", "B", 512)),
        models=("qwen3-8b", "qwen3-32b"),
    )


@pytest.fixture(scope="module")
def requests(config: FleetConfig):  # type: ignore[no-untyped-def]
    mapping = {"ChatGPT": "qwen3-8b", "GPT-4": "qwen3-32b"}
    return build_arrivals(
        START,
        STEPS * 900.0,
        ArrivalConfig(rate_multiplier=20.0, model_map=mapping),
        models=config.models,
    )


def test_closed_loop_ledger_kpis_and_books(config: FleetConfig, requests, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    exo = FleetExogenous.constant(config, START, STEPS)
    policy = DemandFollower(config, {m: 500.0 for m in config.models})
    seen: list[ServingObservation] = []

    def observe(obs: ServingObservation) -> ServingObservation:
        seen.append(obs)
        return obs

    result = simulate_fleet(config, exo, requests, policy, observation=observe)
    assert len(result.ledger) == STEPS * len(config.pools)
    assert list(result.ledger.columns) == list(LEDGER_COLUMNS)
    k = result.kpis
    assert k["requests"] == len(requests)
    assert sum(k["requests_by_status"].values()) == len(requests)
    assert k["tokens_served"] + k["tokens_unserved"] == pytest.approx(
        float(requests.response_tokens.sum())
    )
    assert 0.0 <= k["slo_attainment"] <= 1.0
    assert set(k["slo_attainment_by_model"]) == set(config.models)
    for name in ("ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "latency_p99_s", "energy_per_token_j"):
        assert np.isfinite(k[name])
    assert k["cost_usd"] == pytest.approx(k["energy_cost_usd"] + k["carbon_cost_usd"])
    assert [o.step for o in seen] == list(range(STEPS))
    assert seen[1].last_demand_tokens_per_s["qwen3-8b"] > 0
    slo = slo_by_pool_interval(result, config, ServingConfig())
    assert int(slo["requests"].sum()) <= len(requests)
    run = save_fleet_run(result, tmp_path / "run")
    back = pd.read_parquet(run / "ledger.parquet")
    assert len(back) == len(result.ledger)
    assert len(pd.read_parquet(run / "requests.parquet")) == len(requests)
    with pytest.raises(FileExistsError):
        save_fleet_run(result, run)


def test_undersized_plan_breaks_the_slo(config: FleetConfig, requests) -> None:  # type: ignore[no-untyped-def]
    exo = FleetExogenous.constant(config, START, STEPS)
    ample = simulate_fleet(
        config,
        exo,
        requests,
        DemandFollower(config, {m: 5000.0 for m in config.models}, headroom=2.0),
    )
    # Same demand-following plan, but instances with 4 slots: the fluid capacity the
    # plan assumed is not there and requests queue.
    tight = simulate_fleet(
        config,
        exo,
        requests,
        DemandFollower(config, {m: 500.0 for m in config.models}),
        ServingConfig(slots_per_instance=4),
    )
    assert ample.kpis["slo_attainment"] > 0.99
    assert tight.kpis["slo_attainment"] < ample.kpis["slo_attainment"]
    assert tight.kpis["queue_max_requests"] > ample.kpis["queue_max_requests"]


class _BadPolicy:
    """Names a pool the fleet does not have."""

    def __init__(self, config: FleetConfig) -> None:
        self.inner = DemandFollower(config, {m: 500.0 for m in config.models})

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        self.inner.observe(time, values)

    def decide(self, obs: ServingObservation) -> FleetDecision:
        d = self.inner.decide(obs)
        inst = dict(d.instances)
        inst[("Z", "qwen3-8b", "BF16")] = 3
        shares = dict(d.routing_share)
        return FleetDecision(inst, shares, {}, "bad")


def test_unknown_pool_is_cleaned_and_counted(config: FleetConfig, requests) -> None:  # type: ignore[no-untyped-def]
    exo = FleetExogenous.constant(config, START, 4)
    result = simulate_fleet(config, exo, requests, _BadPolicy(config))
    assert result.kpis["engine_faults"]["unknown_pool_in_decision"] == 4


def test_fluid_fidelity_runs_the_same_loop(config: FleetConfig, requests) -> None:  # type: ignore[no-untyped-def]
    exo = FleetExogenous.constant(config, START, STEPS)
    result = simulate_fleet(
        config,
        exo,
        requests,
        DemandFollower(config, {m: 500.0 for m in config.models}),
        ServingConfig(fidelity="fluid"),
    )
    assert result.outcome is None and result.requests is None
    assert 0.0 <= result.kpis["slo_attainment_estimate"] <= 1.0


def test_requests_for_unknown_models_are_rejected(config: FleetConfig) -> None:
    req = build_arrivals(START, 900.0, models=("qwen3-235b-a22b", "qwen3-32b"))
    with pytest.raises(ValueError, match="does not serve"):
        simulate_fleet(
            config, FleetExogenous.constant(config, START, 1), req, DemandFollower(config, {})
        )
