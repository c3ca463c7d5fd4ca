"""The one problem (:mod:`mpc_dc.problem`) on the DR study week's site (3 campuses ×
3 models × 3-4 precisions × 96 intervals, CAISO 2021, S6): per-step solve time of the
committed-integer form (warm, as in the closed loop, and cold) vs the LP relaxation, on
the same receding-horizon instances, with the cost of committing the decision against a
cold reference MILP.

Steps: a run of consecutive MPC steps (each one interval after the last, the fleet
state carried as in the closed loop) plus random ones. The figures per step:

* ``ci_warm_s`` - committed-integer on a problem that solved the previous step
  (the closed loop's path: shifted basis); ``ci_cold_s`` - the same on a problem
  without a basis; ``lp_s`` - the LP relaxation, cold.
* ``lp_usd`` - LP bound; ``ci_usd`` - committed-integer objective (interval 0
  integral, tail relaxed); ``plan_usd`` - an integral plan over the whole horizon
  that starts with the committed interval (round-and-fix dive), i.e. an upper bound
  on what committing the decision costs.
* reference: the full MILP (every ``n`` integer), HiGHS, cold - no basis and no MIP
  start (:func:`mpc_dc.studies.dr_gap.milp_reference`) - ``MILP_LIMIT_S``, relative
  gap 10⁻⁴: ``milp_time_s``, ``milp_status`` (``feasible`` = stopped by the limit),
  ``milp_usd`` (incumbent), ``milp_bound_usd`` (HiGHS's dual bound, net of the DR
  constant like every objective).
* gaps [-] of ``plan_usd`` relative to its operating cost
  (:func:`mpc_dc.studies.dr_gap.gap_row`): ``gap_to_milp`` (negative where the
  reference stopped above the plan) and ``gap_certified`` against
  ``max(LP bound, MILP bound)``, an upper bound on the gap to the optimum.

The distribution over a fixed instance set with DR and low-load days is
``mpc-dc bench gap`` (docs/fleet.md); these steps have no DR event.

Run: ``pytest benchmarks/bench_fleet.py --benchmark-only -s`` (≈ 10-15 min: the MILP
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

from mpc_dc.blocks import STEP_S
from mpc_dc.problem import Form, HorizonInputs, PlantState, Problem, SolverOptions
from mpc_dc.studies.dr import DrStudyConfig, ScenarioProblems, end_state, load_dr_data
from mpc_dc.studies.dr_gap import MILP_REL_GAP, GapInstance, gap_row, milp_reference

logger = logging.getLogger(__name__)

H = 96
FIRST = 64  # 16:00 local on the first day: the evening ramp
CONSECUTIVE = 6
RANDOM = 3
MILP_LIMIT_S = 60.0


def test_bench_fleet_forms(benchmark: BenchmarkFixture, shared_data: Path) -> None:
    smoke = bool(getattr(benchmark, "disabled", False))
    study = DrStudyConfig()
    data = load_dr_data(shared_data, study)
    site = ScenarioProblems(study.site).config("S6")
    N = data.demand_tokens_per_s.shape[1]

    def inputs_at(k: int) -> HorizonInputs:
        return replace(data.window(k, H), dr_event=None)  # these steps price no DR event

    n_consec, n_random, limit = (2, 0, 5.0) if smoke else (CONSECUTIVE, RANDOM, MILP_LIMIT_S)
    rng = np.random.default_rng(7)
    random_steps = sorted(rng.choice(np.arange(H, N - H), n_random, replace=False).tolist())
    loop = Problem(site, H)  # the closed loop's problem: committed-integer only
    cold = Problem(site, H, SolverOptions(warm_start="cold"))
    ref = Problem(site, H, SolverOptions(full_time_limit_s=limit, full_mip_rel_gap=MILP_REL_GAP,
                                         warm_start="cold"))

    # the closed loop before the sampled steps (its first solve is cold)
    state = PlantState()
    warm_prev = loop.solve(inputs_at(FIRST - 1), state)
    assert warm_prev.plan is not None
    state = end_state(warm_prev.plan, 0)
    rows: list[dict[str, object]] = []
    for i, k in enumerate([FIRST + j for j in range(n_consec)] + random_steps):
        inputs = inputs_at(k)
        if i >= n_consec:  # a random step: bring the loop there first (one step before)
            prev = loop.solve(inputs_at(k - 1), state)
            assert prev.plan is not None
            state = end_state(prev.plan, 0)
        ci = loop.solve(inputs, state)
        ci_c = cold.solve(inputs, state)
        assert ci.plan is not None
        commit = cold.solve(inputs, state, integer_intervals=H,
                            fix_instances=ci.plan.instances[:, :1])
        assert commit.plan is not None
        t0 = time.perf_counter()
        cold.reset_warm_start()
        lp = cold.solve(inputs, state, Form.LP)
        lp_s = time.perf_counter() - t0
        ref_lp, full = milp_reference(ref, inputs, state)
        instance = GapInstance("step", f"step {k}", "S6", False,
                               float(inputs.demand_tokens_per_s.sum() * STEP_S), inputs, state,
                               commit)
        row: dict[str, object] = {
            **gap_row(instance, ref_lp, full, limit),
            "step": k, "kind": "consecutive" if i < n_consec else "random",
            "ci_warm_s": ci.solve_time_s, "ci_warm_start": loop.last_warm_start,
            "ci_cold_s": ci_c.solve_time_s, "lp_s": lp_s, "lp_usd": lp.objective_usd,
            "ci_usd": ci.objective_usd,
        }
        assert abs(ci.objective_usd - ci_c.objective_usd) <= 1e-6 * abs(ci.objective_usd)
        logger.info("fleet bench step %s", row)
        rows.append(row)
        state = end_state(ci.plan, 0)

    # timed: the closed loop's hot path, a fresh receding run of warm committed-integer steps
    run_from = FIRST + n_consec
    counter = iter(range(10**6))
    times: list[float] = []
    loop_state = [state]

    def step() -> None:
        res = loop.solve(inputs_at(run_from + next(counter)), loop_state[0])
        assert res.plan is not None
        loop_state[0] = end_state(res.plan, 0)
        times.append(res.solve_time_s)

    benchmark.pedantic(step, rounds=4 if smoke else 24, iterations=1, warmup_rounds=0)

    def col(name: str) -> np.ndarray:
        return np.array([float(r[name]) for r in rows])  # type: ignore[arg-type]

    extra = {
        "steps": [r["step"] for r in rows],
        "rows": rows,
        "ci_warm_s_median": float(np.median(col("ci_warm_s"))),
        "ci_warm_s_max": float(col("ci_warm_s").max()),
        "ci_warm_loop_s_median": float(np.median(times)),
        "ci_warm_loop_s_max": float(np.max(times)),
        "ci_cold_s_median": float(np.median(col("ci_cold_s"))),
        "lp_cold_s_median": float(np.median(col("lp_s"))),
        "milp_s_median": float(np.median(col("milp_time_s"))),
        "milp_at_time_limit": int(col("milp_at_time_limit").sum()),
        "warm_over_cold_ratio_median": float(np.median(col("ci_warm_s") / col("ci_cold_s"))),
        "gap_to_milp_max": float(col("gap_to_milp").max()),
        "gap_certified_max": float(col("gap_certified").max()),
        "target_step_s": 0.2, "target_cost_gap": 0.01,
    }
    benchmark.extra_info.update(extra)
    header = ("step", "kind", "ci_warm_s", "ci_cold_s", "lp_s", "milp_time_s", "milp_status",
              "lp_usd", "ci_usd", "plan_usd", "milp_usd", "milp_bound_usd", "gap_to_milp",
              "gap_certified")
    logger.info("fleet bench\n%s", "\n".join(
        " ".join(f"{r[h]:.4g}" if isinstance(r[h], float) else str(r[h]) for h in header)
        for r in rows))
    logger.info("fleet bench summary %s", {k: v for k, v in extra.items() if k != "rows"})
