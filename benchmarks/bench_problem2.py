"""The one problem (:mod:`mpc_dc.problem2`) against the two it replaces, re-solve speed
measured side by side in one process on the closed loops' hot paths.

* RCDC: the default 100 MW site, 96-interval receding windows (each one interval after
  the last, :func:`mpc_dc.benchmarking.rcdc_receding_cases`), :class:`RcdcProblem`
  vs :class:`Problem` on the same site (one campus, no DR block; and with the DR
  block for what it costs).
* Fleet: the DR study's week (3 campuses × 3 models × 3-4 precisions = 30 pools,
  96 intervals, S6), consecutive committed-integer MPC steps with the fleet state
  carried from the committed instances, :class:`FleetProblem` vs :class:`Problem`.

Old and new are solved alternately (old first on even steps, new first on odd ones)
so load on the shared machine hits both alike; both must reach the same objective.
Figures in ``benchmark.extra_info``: medians of the wall time of ``solve`` [s], of
HiGHS's own time (and, RCDC, of the process's CPU time, which other jobs on a shared
machine disturb less than the wall clock, and of HiGHS's dual simplex iterations),
and the median over steps of new / old. No timing is asserted.

Run: ``pytest benchmarks/bench_problem2.py --benchmark-only -s``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from mpc_dc import fleet_problem as old_fleet
from mpc_dc import problem as old_rcdc
from mpc_dc import problem2 as new
from mpc_dc.benchmarking import rcdc_receding_cases, rcdc_site
from mpc_dc.params.fleet import SCENARIOS, FleetConfig
from tests.problem2_equiv import (
    inputs_of_fleet,
    inputs_of_rcdc,
    options_of_fleet,
    site_of_fleet,
    site_of_rcdc,
    state_of_rcdc,
)

H = 96


def _summary(old_wall: list[float], new_wall: list[float], old_highs: list[float],
             new_highs: list[float]) -> dict[str, float]:
    ow, nw = np.asarray(old_wall), np.asarray(new_wall)
    return {"steps": float(ow.size),
            "old_wall_median_s": float(np.median(ow)), "new_wall_median_s": float(np.median(nw)),
            "old_highs_median_s": float(np.median(old_highs)),
            "new_highs_median_s": float(np.median(new_highs)),
            "ratio_of_medians_new_over_old": float(np.median(nw) / np.median(ow)),
            "median_ratio_new_over_old": float(np.median(nw / ow))}


@pytest.mark.parametrize("market", ["wholesale", "retail"])
def test_bench_rcdc_old_vs_new(benchmark: BenchmarkFixture, market: str, smoke: bool) -> None:
    n = 8 if smoke else 200
    cfg = rcdc_site(market)
    cases = rcdc_receding_cases(H, n=n, seed=0)
    converted = [(inputs_of_rcdc(i), state_of_rcdc(s)) for i, s in cases]
    old = old_rcdc.RcdcProblem(cfg, H)
    plain = new.Problem(site_of_rcdc(cfg), H, demand_response=False)
    with_dr = new.Problem(site_of_rcdc(cfg), H)
    rec: dict[str, list[float]] = {k: [] for k in ("ow", "nw", "oh", "nh", "dw", "oi", "ni",
                                                   "oc", "nc")}
    step = iter(range(10**9))
    highs = {"o": old.model(old_rcdc.Formulation.RELAXED).fast._highs,
             "n": plain.model(False).fast._highs}

    def pair() -> None:
        k = next(step)
        runs: list[tuple[str, Any]] = [("o", lambda: old.solve(*cases[k % n])),
                                       ("n", lambda: plain.solve(*converted[k % n]))]
        objective = {}
        for name, fn in runs if k % 2 == 0 else runs[::-1]:
            c0, t0 = time.process_time(), time.perf_counter()
            res = fn()
            rec[name + "w"].append(time.perf_counter() - t0)
            rec[name + "c"].append(time.process_time() - c0)
            rec[name + "h"].append(res.highs_time_s)
            rec[name + "i"].append(float(highs[name].getInfo().simplex_iteration_count))
            objective[name] = res.objective_usd
        assert objective["n"] == pytest.approx(objective["o"], rel=1e-6)
        t0 = time.perf_counter()
        with_dr.solve(*converted[k % n])
        rec["dw"].append(time.perf_counter() - t0)

    for _ in range(3):  # first solves (cold) are not the hot path
        pair()
    for v in rec.values():
        v.clear()
    benchmark.pedantic(pair, rounds=n - 3, iterations=1, warmup_rounds=0)
    info = _summary(rec["ow"], rec["nw"], rec["oh"], rec["nh"])
    oc, nc = np.asarray(rec["oc"]), np.asarray(rec["nc"])
    info.update(old_cpu_median_s=float(np.median(oc)), new_cpu_median_s=float(np.median(nc)),
                ratio_of_mean_cpu_new_over_old=float(nc.mean() / oc.mean()))
    info["old_simplex_iterations_median"] = float(np.median(rec["oi"]))
    info["new_simplex_iterations_median"] = float(np.median(rec["ni"]))
    info["new_with_dr_block_wall_median_s"] = float(np.median(rec["dw"]))
    info["median_ratio_with_dr_over_old"] = float(np.median(np.asarray(rec["dw"])
                                                            / np.asarray(rec["ow"])))
    benchmark.extra_info.update(info)


def test_bench_fleet_old_vs_new(benchmark: BenchmarkFixture, shared_data: Path,
                                smoke: bool) -> None:
    from mpc_dc.studies.dr import DrStudyConfig, load_dr_data

    study = DrStudyConfig()
    data = load_dr_data(shared_data, study)
    cfg = dataclasses.replace(FleetConfig(), flexibility=SCENARIOS["S6"])  # the study's fleet
    old = old_fleet.FleetProblem(cfg, H)
    prob = new.Problem(site_of_fleet(cfg), H, options_of_fleet(old.options))
    first = 100
    n = 4 if smoke else 48

    def inputs_at(k: int) -> old_fleet.FleetInputs:
        sl = slice(k, k + H)
        return old_fleet.FleetInputs(data.demand_tokens_per_s[:, sl],
                                     data.price_usd_per_mwh[:, sl],
                                     data.carbon_gco2_per_kwh[:, sl])

    state = [old_fleet.FleetState()]
    rec: dict[str, list[float]] = {k: [] for k in ("ow", "nw", "oh", "nh")}
    step = iter(range(10**9))

    def pair() -> None:
        k = next(step)
        inputs = inputs_at(first + k)
        s = state[0]
        runs: list[tuple[str, Any]] = [
            ("o", lambda: old.solve(inputs, s)),
            ("n", lambda: prob.solve(inputs_of_fleet(inputs),
                                     new.PlantState(dict(s.instances_running))))]
        results = {}
        for name, fn in runs if k % 2 == 0 else runs[::-1]:
            res = fn()
            results[name] = res
            rec[name + "w"].append(res.solve_time_s)
            rec[name + "h"].append(res.highs_time_s)
        assert results["n"].objective_usd == pytest.approx(results["o"].objective_usd,
                                                           rel=1e-6)
        plan = results["o"].plan
        state[0] = old_fleet.FleetState({p: round(plan.instances[i, 0])
                                         for i, p in enumerate(plan.pools)})

    pair()  # the first (cold) step is not the hot path
    for v in rec.values():
        v.clear()
    benchmark.pedantic(pair, rounds=n, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(_summary(rec["ow"], rec["nw"], rec["oh"], rec["nh"]))
