"""The one engine against the two old ones, side by side, with trivial policies.

* RCDC month: the embedded default site over 30 days of synthetic data (smoke: 2),
  no solver: the old engine with its ``BaselinePolicy`` and the one engine with the
  same as-soon-as-possible rule on the new interface; the simulation's own
  overhead, old and new wall times [s] and new / old.
* Request-level serving: 3 campuses × 3 models, 2 days of generator arrivals scaled
  to at least 1.2 million requests (smoke: 20,000), the rule fleet policy of
  ``tests/fleet_rule.py``; requests simulated per wall-clock second, old and new,
  and new / old wall time. The fluid run of the same case is timed beside it.

Old and new alternate round by round, so machine load hits both alike; medians
over the rounds go into ``benchmark.extra_info``, as wall time and as the process's
CPU time (on a shared machine the wall time also counts the time other processes
hold the cores; the CPU time does not). Nothing is asserted about time.

Run: ``pytest benchmarks/bench_engine2.py --benchmark-only``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from mpc_dc.controllers import BaselinePolicy
from mpc_dc.params.fleet import FleetConfig
from mpc_dc.scenario import build_exogenous, default_scenario
from mpc_dc.sim import engine2
from mpc_dc.sim.arrivals import ArrivalConfig, build_arrivals
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.fleet_engine import FleetExogenous, ServingConfig, simulate_fleet
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision, Observation
from tests.fleet_rule import DemandFollower
from tests.site_adapters import CAMPUS, fleet_exogenous, rcdc_exogenous

START = pd.Timestamp("2022-04-01", tz="UTC")


class Asap:
    """The old baseline's rule on the new interface: the whole backlog now."""

    name = "baseline"

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Nothing to learn."""

    def decide(self, obs: Observation) -> Decision:
        """Run every released deferrable work unit now."""
        work = obs.campuses[CAMPUS].backlog_total_wu
        return Decision({CAMPUS: CampusDecision(work_df_wu=work)}, source="baseline")


class NewFollower:
    """``DemandFollower``'s decisions on the new interface."""

    name = "rule"

    def __init__(self, inner: DemandFollower) -> None:
        self.inner = inner

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep the last realized demand."""
        self.inner.observe(time, dict(values))

    def decide(self, obs: Observation) -> Decision:
        """The rule's instances and shares."""
        d = self.inner.decide(obs)  # type: ignore[arg-type]  # reads nothing of obs
        return Decision(fleet=FleetDecision(d.instances, d.routing_share,
                                            d.planned_tokens_per_s), source=d.source)


def _alternate(old: Callable[[], object], new: Callable[[], object],
               rounds: int) -> dict[str, float]:
    """Median wall and CPU times [s] of ``old`` and ``new`` run alternately, and new/old."""
    times: dict[str, list[float]] = {"old_wall_s": [], "new_wall_s": [], "old_cpu_s": [],
                                     "new_cpu_s": []}
    for _ in range(rounds):
        for fn, who in ((old, "old"), (new, "new")):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[f"{who}_cpu_s"].append(time.process_time() - cpu)
            times[f"{who}_wall_s"].append(time.perf_counter() - wall)
    out = {name: float(np.median(values)) for name, values in times.items()}
    out["new_over_old_wall"] = out["new_wall_s"] / out["old_wall_s"]
    out["new_over_old_cpu"] = out["new_cpu_s"] / out["old_cpu_s"]
    return out


def test_bench_rcdc_month_old_vs_new(benchmark: BenchmarkFixture) -> None:
    days = 2.0 if benchmark.disabled else 30.0
    base = default_scenario()
    exo = build_exogenous(replace(base, run=replace(base.run, days=days, history_days=1)))
    site_exo = rcdc_exogenous(exo)
    rounds = 1 if benchmark.disabled else 5
    times = _alternate(lambda: simulate(exo, BaselinePolicy()),
                       lambda: engine2.simulate(site_exo, Asap()), rounds)
    benchmark.pedantic(lambda: engine2.simulate(site_exo, Asap()), rounds=1, iterations=1)
    benchmark.extra_info.update({"intervals": exo.n_steps, **times})
    assert np.isfinite(times["new_over_old_cpu"])


@pytest.mark.parametrize("fidelity", ["request", "fluid"])
def test_bench_serving_old_vs_new(benchmark: BenchmarkFixture, fidelity: str) -> None:
    n_target = 20_000 if benchmark.disabled else 1_200_000
    config = FleetConfig()
    steps = 2 * 96
    native = build_arrivals(START, steps * 900.0, ArrivalConfig(seed=1), models=config.models)
    requests = build_arrivals(
        START, steps * 900.0,
        ArrivalConfig(rate_multiplier=max(0.05, 1.01 * n_target / len(native)), seed=1),
        models=config.models)
    exo = FleetExogenous.constant(config, START, steps)
    site_exo = fleet_exogenous(config, exo, requests)
    serving = ServingConfig(fidelity=fidelity, request_samples=10_000)
    demand = {m: 1000.0 for m in config.models}
    rounds = 1 if benchmark.disabled else 5

    def old() -> object:
        return simulate_fleet(config, exo, requests, DemandFollower(config, demand), serving)

    def new() -> object:
        return engine2.simulate(site_exo, NewFollower(DemandFollower(config, demand)),
                                serving=serving)

    times = _alternate(old, new, rounds)
    benchmark.pedantic(new, rounds=1, iterations=1)
    benchmark.extra_info.update({
        "requests": len(requests), **times,
        "old_requests_per_wall_s": len(requests) / times["old_wall_s"],
        "new_requests_per_wall_s": len(requests) / times["new_wall_s"]})
    assert np.isfinite(times["new_over_old_cpu"])
