"""Fleet problem (3 campuses × 3 models × 3-4 precisions × 96 intervals): per-step solve
time of the committed-integer form vs the full MILP vs the LP relaxation on the same
receding-horizon instances, and the cost gap of the committed decision to the full MILP.

The committed decision's cost is measured by fixing its first-interval instances
and solving the full MILP for the rest (the best integer plan that starts with
it), so the gap is what committing it costs against the full MILP's plan.
Run: ``pytest benchmarks/bench_fleet.py --benchmark-only -s``; figures in
``benchmark.extra_info``; no timing is asserted.
"""

from __future__ import annotations

import time

import numpy as np
from pytest_benchmark.fixture import BenchmarkFixture

from mpc_dc.fleet_problem import (
    FleetForm,
    FleetInputs,
    FleetProblem,
    FleetSolverOptions,
    FleetState,
)
from mpc_dc.params.fleet import FleetConfig

H = 96


def _steps(n: int) -> list[FleetInputs]:
    rng = np.random.default_rng(0)
    t = np.arange(H + n)
    shape = (1 + 0.5 * np.sin(2 * np.pi * t / 96)) * rng.uniform(0.9, 1.1, t.size)
    demand = np.vstack([s * shape * 4e6 for s in (0.5, 0.3, 0.2)])
    price = 50 + 20 * np.sin(2 * np.pi * (t[None, :] + np.arange(3)[:, None] * 8) / 96) \
        + rng.normal(0, 5, (3, t.size))
    carbon = 200 + 60 * np.sin(2 * np.pi * t / 96)[None, :].repeat(3, 0)
    return [FleetInputs(demand[:, k:k + H], price[:, k:k + H], carbon[:, k:k + H])
            for k in range(n)]


def test_bench_fleet_forms(benchmark: BenchmarkFixture) -> None:
    steps = _steps(8)
    prob = FleetProblem(FleetConfig(), H, FleetSolverOptions(full_time_limit_s=20.0,
                                                             full_mip_rel_gap=1e-3))
    state = FleetState()
    rows = []
    for inputs in steps:
        lp = prob.solve(inputs, state, FleetForm.LP)
        ci = prob.solve(inputs, state, FleetForm.COMMITTED_INTEGER)
        t0 = time.perf_counter()
        full = prob.solve(inputs, state, FleetForm.FULL_MILP)
        full_s = time.perf_counter() - t0
        assert ci.plan is not None and full.plan is not None
        committed = prob.solve(inputs, state, FleetForm.FULL_MILP,
                               fix_instances=ci.plan.instances[:, :1])
        rows.append((lp.solve_time_s, ci.solve_time_s, full_s,
                     (committed.objective_usd - full.objective_usd) / full.objective_usd,
                     (full.objective_usd - lp.objective_usd) / full.objective_usd, full.mip_gap))
        state = FleetState({k: round(ci.plan.instances[i, 0])
                            for i, k in enumerate(ci.plan.pools)})
    # warm re-solve of the committed-integer form, the MPC's hot path
    counter = iter(range(10**9))
    times: list[float] = []

    def run() -> None:
        res = prob.solve(steps[next(counter) % len(steps)], FleetState(),
                         FleetForm.COMMITTED_INTEGER)
        times.append(res.solve_time_s)

    benchmark.pedantic(run, rounds=16, iterations=1, warmup_rounds=1)
    a = np.array(rows)
    benchmark.extra_info.update({
        "lp_s_median": float(np.median(a[:, 0])),
        "committed_integer_s_median": float(np.median(a[:, 1])),
        "committed_integer_warm_s_median": float(np.median(times)),
        "full_milp_s_median": float(np.median(a[:, 2])),
        "committed_vs_full_cost_gap_max": float(a[:, 3].max()),
        "committed_vs_full_cost_gap_mean": float(a[:, 3].mean()),
        "lp_vs_full_gap_mean": float(a[:, 4].mean()),
        "full_milp_reported_gap_max": float(a[:, 5].max()),
        "target_step_s": 0.2, "target_cost_gap": 0.01,
    })
    print(benchmark.extra_info)
