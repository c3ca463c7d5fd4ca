"""Fluid fidelity against request level: energy and cost on a 2-day case."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mpc_dc.benchmarking import constant_exogenous, serving_site
from mpc_dc.sim.arrivals import ArrivalConfig, RequestAggregates, build_arrivals
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.serving import ServingConfig
from tests.fleet_rule import DemandFollower

START = pd.Timestamp("2022-04-01", tz="UTC")


@pytest.fixture(scope="module")
def two_day_runs() -> dict[str, dict[str, float]]:
    site = serving_site()
    steps = 2 * 96
    req = build_arrivals(
        START, steps * 900.0, ArrivalConfig(rate_multiplier=5.0, seed=4), models=site.models
    )
    exo = constant_exogenous(site, req, steps, START)
    t = np.arange(steps)
    frame = exo.frame.copy()
    for i, c in enumerate(site.campuses):
        frame[f"price_usd_per_mwh[{c.name}]"] = 40 + 30 * np.sin(2 * np.pi * t / 96 + i)
        frame[f"carbon_gco2_per_kwh[{c.name}]"] = 250 + 80 * np.cos(2 * np.pi * t / 96)
    exo = replace(exo, frame=frame)
    out = {}
    for fidelity in ("request", "fluid"):
        policy = DemandFollower(site, {m: 300.0 for m in site.models})
        out[fidelity] = simulate(exo, policy, serving=ServingConfig(fidelity=fidelity)).kpis
    return out


@pytest.mark.parametrize("kpi", ["inference_it_energy_mwh", "cost_usd", "energy_import_usd",
                                 "carbon_t"])
def test_fluid_matches_request_level_within_2pct(
    two_day_runs: dict[str, dict[str, float]], kpi: str
) -> None:
    assert two_day_runs["fluid"][kpi] == pytest.approx(two_day_runs["request"][kpi], rel=0.02)


def test_fluid_serves_the_same_tokens(two_day_runs: dict[str, dict[str, float]]) -> None:
    req, fluid = two_day_runs["request"], two_day_runs["fluid"]
    assert fluid["tokens_arrived"] == pytest.approx(req["tokens_arrived"])
    assert fluid["tokens_served"] == pytest.approx(req["tokens_served"], rel=0.01)


def test_fluid_backlog_when_capacity_short() -> None:
    from mpc_dc.sim.fluid import FluidServer
    from mpc_dc.sim.serving import PoolSpec

    key = ("a", "m", "BF16")
    # 1800 requests of 2 tokens: the first from the (instant) prefill, one decode
    # step of 1 s at batch 1 each: 1800 s of work for 900 s of capacity
    pool = PoolSpec(key, 1, 1e12, 1.0, 10.0, 1.0, 0.0, 1.0)
    agg = {
        "requests": np.array([[1800.0], [0.0]]),
        "request_tokens": np.zeros((2, 1)),
        "response_tokens": np.array([[3600.0], [0.0]]),
    }
    server = FluidServer([pool], ("m",), agg, 2)
    s0 = server.run_interval(0, [1], {key: 1.0})
    assert s0.tokens_decoded[0] == pytest.approx(1800.0)
    assert s0.queue_end[0] == pytest.approx(900.0)
    s1 = server.run_interval(1, [1], {key: 1.0})
    assert s1.tokens_decoded[0] == pytest.approx(1800.0)
    assert s1.idle_energy_j[0] == pytest.approx(9000.0)


def test_fluid_backlog_of_a_pool_left_without_instances_moves() -> None:
    """1800 requests of 2 tokens (one decode step of 1 s) on pool A (batch 1): 900
    served, 900 backlog. A is scaled to 0 and B (decode 2 s/token) takes the model: the
    900 requests move, their work counted at B's speed (1800 s), and B serves 450."""
    from mpc_dc.sim.fluid import FluidServer
    from mpc_dc.sim.serving import PoolSpec

    a, b = ("a", "m", "BF16"), ("b", "m", "BF16")
    pools = [PoolSpec(a, 1, 1e12, 1.0, 0.0, 1.0, 0.0, 1.0),
             PoolSpec(b, 1, 1e12, 2.0, 0.0, 1.0, 0.0, 0.5)]
    agg = {
        "requests": np.array([[1800.0], [0.0]]),
        "request_tokens": np.zeros((2, 1)),
        "response_tokens": np.array([[3600.0], [0.0]]),
    }
    server = FluidServer(pools, ("m",), agg, 2)
    s0 = server.run_interval(0, [1, 0], {a: 1.0})
    assert s0.queue_end[0] == pytest.approx(900.0)
    s1 = server.run_interval(1, [0, 1], {b: 1.0})
    assert server.requeued_requests == pytest.approx(900.0)
    assert s1.tokens_decoded.tolist() == pytest.approx([0.0, 900.0])
    assert s1.queue_end.tolist() == pytest.approx([0.0, 450.0])
    # The token book: 900 requests × 2 tokens moved from A to B, 900 decoded there.
    np.testing.assert_allclose(server.moved_tokens, [[0.0, 0.0], [-1800.0, 1800.0]])
    np.testing.assert_allclose(server.queued_tokens, [[1800.0, 0.0], [0.0, 900.0]])


def test_a_run_may_carry_per_interval_aggregates_only() -> None:
    """Fluid serving reads nothing but the aggregates: a run carrying them instead of the
    requests gives the same figures; twice the aggregates, twice the tokens; request-level
    serving refuses them in one line."""
    site = serving_site()
    steps = 24
    req = build_arrivals(START, steps * 900.0, ArrivalConfig(rate_multiplier=2.0, seed=1),
                         models=site.models)
    exo = constant_exogenous(site, req, steps, START)
    M = len(site.models)
    fluid = ServingConfig(fidelity="fluid")

    def kpis(factor: float) -> dict[str, float]:
        aggregates = RequestAggregates.scaled(req, steps, factor * np.eye(M), site.models)
        frame = exo.frame.copy()
        demand = [c for c in frame.columns if c.startswith(("tokens_per_s[", "requests_per_h["))]
        frame[demand] *= factor
        data = replace(exo, frame=frame, requests=aggregates)
        policy = DemandFollower(site, {m: 300.0 * factor for m in site.models})
        return simulate(data, policy, serving=fluid).kpis

    arrays = simulate(exo, DemandFollower(site, {m: 300.0 for m in site.models}),
                      serving=fluid).kpis
    once, twice = kpis(1.0), kpis(2.0)
    for key in ("cost_usd", "tokens_served", "tokens_arrived", "inference_it_energy_mwh"):
        assert once[key] == arrays[key], key
    assert twice["tokens_arrived"] == pytest.approx(2.0 * arrays["tokens_arrived"])
    aggregates = RequestAggregates.scaled(req, steps, np.eye(M), site.models)
    with pytest.raises(ValueError, match="request-level serving needs the requests themselves"):
        simulate(replace(exo, requests=aggregates), DemandFollower(site, {}))
