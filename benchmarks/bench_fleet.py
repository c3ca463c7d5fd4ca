"""Fleet problem on the DR study week (3 campuses × 3 models × 3-4 precisions × 96
intervals, CAISO 2021, S6): per-step solve time of the committed-integer form (warm, as
in the closed loop, and cold) vs the LP relaxation vs a reference full MILP, on the same
receding-horizon instances, with the cost gaps.

Steps: a run of consecutive MPC steps (each one interval after the last, the fleet
state carried as in the closed loop) plus random ones. The figures per step:

* ``ci_warm_s`` - committed-integer on a problem that solved the previous step
  (the closed loop's path: shifted basis); ``ci_cold_s`` - the same on a problem
  without a basis; ``lp_s`` - the LP relaxation, cold.
* ``lp_usd`` - LP bound; ``ci_usd`` - committed-integer objective (interval 0
  integral, tail relaxed); ``commit_usd`` - an integral plan over the whole horizon
  that starts with the committed interval (round-and-fix dive), i.e. an upper bound
  on what committing the decision costs; ``dive_usd`` - the same dive without the
  commitment (the full MILP's start).
* full MILP (every ``n`` integer, HiGHS, MIP start = the dive, 1 % gap):
  ``milp_s``, ``milp_status``, ``milp_usd`` (incumbent), ``milp_bound_usd`` (HiGHS's
  dual bound, ≥ the LP bound).
* gaps [-], all against the best lower bound ``lb = max(lp_usd, milp_bound_usd)`` of
  the full-MILP optimum ``z*``: ``gap_ci_bound = max(ci − lb, milp − lb) / lb`` bounds
  ``|ci − z*| / z*`` (the brief's definition); ``gap_commit_bound = (commit − lb) / lb``
  bounds what committing the decision costs against ``z*``; ``milp_gap`` = HiGHS's
  ``(milp − bound) / milp``.

Run: ``pytest benchmarks/bench_fleet.py --benchmark-only -s`` (≈ 10 min: the MILP
references); ``--benchmark-disable`` (CI smoke) does two steps with a 5 s MILP limit.
No timing is asserted; figures in ``benchmark.extra_info``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from pytest_benchmark.fixture import BenchmarkFixture

from mpc_dc.fleet_problem import (
    FleetForm,
    FleetInputs,
    FleetProblem,
    FleetSolverOptions,
    FleetState,
)
from mpc_dc.params.fleet import SCENARIOS, PoolKey
from mpc_dc.studies.dr import DrStudyConfig, load_dr_data

logger = logging.getLogger(__name__)

H = 96
FIRST = 64  # 16:00 local on the first day: the evening ramp
CONSECUTIVE = 6
RANDOM = 3
MILP_LIMIT_S = 60.0


def _state(plan_instances: np.ndarray, pools: tuple[PoolKey, ...]) -> FleetState:
    return FleetState({p: round(plan_instances[i, 0]) for i, p in enumerate(pools)})


def test_bench_fleet_forms(benchmark: BenchmarkFixture, shared_data: Path) -> None:
    smoke = bool(getattr(benchmark, "disabled", False))
    study = DrStudyConfig()
    data = load_dr_data(shared_data, study)
    cfg = replace(study.fleet, flexibility=SCENARIOS["S6"], table=study.fleet.table)
    N = data.demand_tokens_per_s.shape[1]

    def inputs_at(k: int) -> FleetInputs:
        sl = slice(k, k + H)
        return FleetInputs(data.demand_tokens_per_s[:, sl], data.price_usd_per_mwh[:, sl],
                           data.carbon_gco2_per_kwh[:, sl])

    n_consec, n_random, limit = (2, 0, 5.0) if smoke else (CONSECUTIVE, RANDOM, MILP_LIMIT_S)
    rng = np.random.default_rng(7)
    random_steps = sorted(rng.choice(np.arange(H, N - H), n_random, replace=False).tolist())
    loop = FleetProblem(cfg, H)  # the closed loop's problem: committed-integer only
    cold = FleetProblem(cfg, H, FleetSolverOptions(warm_start="cold"))
    ref = FleetProblem(cfg, H, FleetSolverOptions(full_time_limit_s=limit, full_mip_rel_gap=1e-2))

    # the closed loop before the sampled steps (its first solve is cold)
    state = FleetState()
    warm_prev = loop.solve(inputs_at(FIRST - 1), state)
    assert warm_prev.plan is not None
    state = _state(warm_prev.plan.instances, warm_prev.plan.pools)
    rows: list[dict[str, float | str | int]] = []
    for i, k in enumerate([FIRST + j for j in range(n_consec)] + random_steps):
        inputs = inputs_at(k)
        if i >= n_consec:  # a random step: bring the loop there first (one step before)
            prev = loop.solve(inputs_at(k - 1), state)
            assert prev.plan is not None
            state = _state(prev.plan.instances, prev.plan.pools)
        ci = loop.solve(inputs, state)
        ci_c = cold.solve(inputs, state)
        t0 = time.perf_counter()
        ref.reset_warm_start()
        lp = ref.solve(inputs, state, FleetForm.LP)
        lp_s = time.perf_counter() - t0
        assert ci.plan is not None and lp.plan is not None
        dive = ref.solve(inputs, state, integer_intervals=H)
        commit = ref.solve(inputs, state, integer_intervals=H,
                           fix_instances=ci.plan.instances[:, :1])
        assert dive.plan is not None and commit.plan is not None
        t0 = time.perf_counter()
        full = ref.solve(inputs, state, FleetForm.FULL_MILP, start=dive.plan)
        milp_s = time.perf_counter() - t0
        info = ref.model.fast._highs.getInfo()
        bound = float(info.mip_dual_bound) + ref._dr_constant_usd()
        milp = full.objective_usd if full.plan is not None else dive.objective_usd
        lb = max(lp.objective_usd, bound if np.isfinite(bound) else -np.inf)
        row: dict[str, float | str | int] = {
            "step": k, "kind": "consecutive" if i < n_consec else "random",
            "ci_warm_s": ci.solve_time_s, "ci_warm_start": loop.last_warm_start,
            "ci_cold_s": ci_c.solve_time_s, "lp_s": lp_s, "milp_s": milp_s,
            "milp_status": str(full.status), "lp_usd": lp.objective_usd,
            "ci_usd": ci.objective_usd, "commit_usd": commit.objective_usd,
            "dive_usd": dive.objective_usd, "milp_usd": milp, "milp_bound_usd": lb,
            "milp_gap": full.mip_gap,
            "gap_ci_bound": max(ci.objective_usd - lb, milp - lb) / lb,
            "gap_commit_bound": (commit.objective_usd - lb) / lb,
            "ci_over_lp": (ci.objective_usd - lp.objective_usd) / lp.objective_usd,
        }
        assert abs(ci.objective_usd - ci_c.objective_usd) <= 1e-6 * abs(ci.objective_usd)
        logger.info("fleet bench step %s", row)
        rows.append(row)
        state = _state(ci.plan.instances, ci.plan.pools)

    # timed: the closed loop's hot path, a fresh receding run of warm committed-integer steps
    run_from = FIRST + n_consec
    counter = iter(range(10**6))
    times: list[float] = []
    loop_state = [state]

    def step() -> None:
        res = loop.solve(inputs_at(run_from + next(counter)), loop_state[0])
        assert res.plan is not None
        loop_state[0] = _state(res.plan.instances, res.plan.pools)
        times.append(res.solve_time_s)

    benchmark.pedantic(step, rounds=4 if smoke else 24, iterations=1, warmup_rounds=0)

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows])

    extra = {
        "steps": [r["step"] for r in rows],
        "rows": rows,
        "ci_warm_s_median": float(np.median(col("ci_warm_s"))),
        "ci_warm_s_max": float(col("ci_warm_s").max()),
        "ci_warm_loop_s_median": float(np.median(times)),
        "ci_warm_loop_s_max": float(np.max(times)),
        "ci_cold_s_median": float(np.median(col("ci_cold_s"))),
        "lp_cold_s_median": float(np.median(col("lp_s"))),
        "milp_s_median": float(np.median(col("milp_s"))),
        "warm_over_cold_ratio_median": float(np.median(col("ci_warm_s") / col("ci_cold_s"))),
        "gap_ci_bound_max": float(col("gap_ci_bound").max()),
        "gap_commit_bound_max": float(col("gap_commit_bound").max()),
        "ci_over_lp_max": float(col("ci_over_lp").max()),
        "target_step_s": 0.2, "target_cost_gap": 0.01,
    }
    benchmark.extra_info.update(extra)
    header = ("step", "kind", "ci_warm_s", "ci_cold_s", "lp_s", "milp_s", "milp_status",
              "lp_usd", "ci_usd", "commit_usd", "milp_usd", "milp_bound_usd", "gap_ci_bound",
              "gap_commit_bound")
    logger.info("fleet bench\n%s", "\n".join(
        " ".join(f"{r[h]:.4g}" if isinstance(r[h], float) else str(r[h]) for h in header)
        for r in rows))
    logger.info("fleet bench summary %s", {k: v for k, v in extra.items() if k != "rows"})
