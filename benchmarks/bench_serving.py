"""Request-level serving throughput: requests simulated per wall-clock second.

One closed-loop run of the one engine (rule fleet policy, 3 campuses × 2 models,
request level with continuous batching) over 2 days of generator arrivals scaled to
at least 1 million requests; beside it, the fluid run of the same case and the
pre-continuous-batching kernel (:func:`mpc_dc.sim.serving.serve_fcfs`: each slot an
independent server) on the same requests, one pool of the same total slots.
Requests/s and the ratios are recorded in ``benchmark.extra_info``; nothing is
asserted about time (target: >= 300,000 requests/s for the closed loop; the
compiled event loop is warmed up first, so compilation is not timed).

Run: ``pytest benchmarks/bench_serving.py --benchmark-only``. Under
``--benchmark-disable`` the case is small (``MPC_DC_BENCH_SERVING_N`` overrides the
request count).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from pytest_benchmark.fixture import BenchmarkFixture

from mpc_dc.benchmarking import constant_exogenous, serving_site
from mpc_dc.sim.arrivals import ArrivalConfig, build_arrivals
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.serving import PoolSpec, ServingConfig, serve_fcfs
from tests.fleet_rule import DemandFollower

START = pd.Timestamp("2022-04-01", tz="UTC")
DAYS = 2


def test_bench_request_level_throughput(benchmark: BenchmarkFixture) -> None:
    default = 20_000 if benchmark.disabled else 1_200_000
    n_target = int(os.environ.get("MPC_DC_BENCH_SERVING_N", default))
    site = serving_site()
    steps = DAYS * 96
    native = build_arrivals(START, steps * 900.0, ArrivalConfig(seed=1), models=site.models)
    req = build_arrivals(
        START,
        steps * 900.0,
        ArrivalConfig(rate_multiplier=max(0.05, 1.01 * n_target / len(native)), seed=1),
        models=site.models,
    )
    exo = constant_exogenous(site, req, steps, START)
    demand = {m: 1000.0 for m in site.models}
    walls: list[float] = []
    warm = build_arrivals(START, 96 * 900.0, ArrivalConfig(seed=2), models=site.models)
    simulate(constant_exogenous(site, warm, 96, START), DemandFollower(site, demand),
             serving=ServingConfig(request_samples=1000))

    def run() -> None:
        t0 = time.perf_counter()
        simulate(exo, DemandFollower(site, demand), serving=ServingConfig(request_samples=10_000))
        walls.append(time.perf_counter() - t0)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    t0 = time.perf_counter()
    simulate(exo, DemandFollower(site, demand), serving=ServingConfig(fidelity="fluid"))
    fluid_s = time.perf_counter() - t0
    # the old model's kernel: FCFS over independent slots at a fixed per-token time
    pool = site.pools[0]
    spec = PoolSpec.from_row(pool, site.row(pool))
    slots = 64 * spec.slots_per_instance
    service = (req.request_tokens / spec.prefill_tokens_per_s
               + req.response_tokens * spec.decode_s_per_token)
    t0 = time.perf_counter()
    serve_fcfs([0.0] * slots, req.arrival_s.tolist(), service.tolist(), np.inf)
    fcfs_s = time.perf_counter() - t0
    benchmark.extra_info.update(
        {
            "requests": len(req),
            "request_level_wall_s": walls[0],
            "requests_per_s": len(req) / walls[0],
            "fluid_wall_s": fluid_s,
            "fluid_over_request_wall_ratio": fluid_s / walls[0],
            "independent_slot_kernel_wall_s": fcfs_s,
            "request_level_over_independent_slot_kernel_ratio": walls[0] / fcfs_s,
        }
    )
