"""The loop of a fleet site (campuses of inference pools only): KPIs, conservation, SLO.

Unknown pools and other infeasible decisions: tests/test_projection.py; requests of models the
site does not serve: tests/test_engine.py::test_exogenous_refuses_what_does_not_fit_the_site.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.benchmarking import constant_exogenous
from mpc_dc.sim.arrivals import ArrivalConfig, RequestArrays, build_arrivals
from mpc_dc.sim.engine import save_run, simulate
from mpc_dc.sim.serving import ServingConfig
from mpc_dc.site.config import Campus, Fleet, Site
from tests.fleet_rule import DemandFollower

START = pd.Timestamp("2022-04-01", tz="UTC")
STEPS = 24


@pytest.fixture(scope="module")
def site() -> Site:
    return Site(campuses=(Campus("A", "A", gpus=512), Campus("B", "B", gpus=512)),
                fleet=Fleet(models=("qwen3-8b", "qwen3-32b")))


@pytest.fixture(scope="module")
def requests(site: Site) -> RequestArrays:
    mapping = {"ChatGPT": "qwen3-8b", "GPT-4": "qwen3-32b"}
    return build_arrivals(START, STEPS * 900.0,
                          ArrivalConfig(rate_multiplier=20.0, model_map=mapping),
                          models=site.models)


def test_closed_loop_kpis_and_books(site: Site, requests: RequestArrays,
                                    tmp_path: Path) -> None:
    exo = constant_exogenous(site, requests, STEPS, START)
    policy = DemandFollower(site, {m: 500.0 for m in site.models})
    result = simulate(exo, policy)
    assert result.pools is not None
    assert len(result.pools) == STEPS * len(site.pools)
    assert len(result.ledger) == STEPS * len(site.campuses)
    k = result.kpis
    assert k["requests"] == len(requests)
    assert sum(k["requests_by_status"].values()) == len(requests)
    assert k["tokens_served"] + k["tokens_unserved"] == pytest.approx(
        float(requests.response_tokens.sum()))
    assert 0.0 <= k["slo_attainment"] <= 1.0
    assert set(k["slo_attainment_by_model"]) == set(site.models)
    assert set(k["slo_attainment_by_campus"]) == {"A", "B"}
    for name in ("ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "tpot_p99_s", "latency_p99_s",
                 "energy_per_token_j"):
        assert np.isfinite(k[name])
    # No renewable, battery or export: the campus imports its facility power.
    assert k["import_mwh"] == pytest.approx(k["facility_energy_mwh"], rel=1e-12)
    assert k["cost_usd"] == pytest.approx(k["energy_import_usd"] + k["carbon_cost_usd"])
    assert policy.demand["qwen3-8b"] != 500.0  # the realized demand was observed
    run = save_run(result, tmp_path / "run")
    assert len(pd.read_parquet(run / "ledger.parquet")) == len(result.ledger)
    assert len(pd.read_parquet(run / "pools.parquet")) == len(result.pools)
    assert len(pd.read_parquet(run / "requests.parquet")) == len(requests)
    with pytest.raises(FileExistsError):
        save_run(result, run)


def test_undersized_plan_breaks_the_slo(site: Site, requests: RequestArrays) -> None:
    exo = constant_exogenous(site, requests, STEPS, START)
    ample = simulate(exo, DemandFollower(site, {m: 5000.0 for m in site.models}, headroom=2.0))
    # Same demand-following plan, but instances with 4 slots: the capacity the plan
    # assumed is not there and requests queue.
    tight = simulate(exo, DemandFollower(site, {m: 500.0 for m in site.models}),
                     serving=ServingConfig(slots_per_instance=4))
    assert ample.kpis["slo_attainment"] > 0.99
    assert tight.kpis["slo_attainment"] < ample.kpis["slo_attainment"]
    assert tight.kpis["queue_max_requests"] > ample.kpis["queue_max_requests"]


def test_fluid_fidelity_runs_the_same_loop(site: Site, requests: RequestArrays) -> None:
    exo = constant_exogenous(site, requests, STEPS, START)
    result = simulate(exo, DemandFollower(site, {m: 500.0 for m in site.models}),
                      serving=ServingConfig(fidelity="fluid"))
    assert result.outcome is None and result.requests is None
    assert 0.0 <= result.kpis["slo_attainment_estimate"] <= 1.0
