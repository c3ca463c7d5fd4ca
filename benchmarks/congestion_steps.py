"""Each step of a short ``burstgpt_caiso_month`` loop solved twice on the same inputs: by
the controller (with the congestion price, ``controller.congestion_share``) and by a
second problem without it (σ = 0, the plan before), each with its own resident HiGHS
model warm from its previous step (docs/fleet_closed_loop.md, "Even split").

``python -m benchmarks.congestion_steps [DAYS]`` (default 2; needs ../shared/data) prints
the CPU time of the two solves per step (median, 95th percentile, total; CPU time, so a
loaded machine slows both alike) and how many committed intervals split a model's tokens
differently. Diagnostic only: it wraps ``MpcPolicy._decide``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import measure
from mpc_dc.control import mpc
from mpc_dc.problem import Form, Problem
from mpc_dc.site.scenario import example_path, load_scenario, with_overrides


def compare(days: float, data: Path = Path("../shared/data")) -> dict[str, Any]:
    """CPU time of each step's solve with and without the congestion price."""
    rows: list[tuple[float, float, float]] = []
    reference: dict[str, Problem] = {}
    decide = mpc.MpcPolicy._decide
    solve = Problem.solve
    clock: dict[str, float] = {}

    def timed_solve(self: Problem, *args: Any, **kwargs: Any) -> Any:
        tick = time.process_time()
        out = solve(self, *args, **kwargs)
        clock["last"] = time.process_time() - tick
        return out

    def both(self: mpc.MpcPolicy, obs: Any, inputs: Any, state: Any) -> Any:
        decision = decide(self, obs, inputs, state)
        with_price = clock["last"]
        if "problem" not in reference:
            assert self.lateness is not None
            reference["problem"] = Problem(
                self.site, self.horizon_steps, self.options,
                demand_response=self.demand_response,
                lateness=replace(self.lateness, congestion_share=0.0))
        old = reference["problem"].solve(inputs, state, Form.COMMITTED_INTEGER)
        new = self.last_result
        assert new is not None and new.plan is not None and old.plan is not None
        moved = float(np.abs(new.plan.tokens_per_s[:, 0] - old.plan.tokens_per_s[:, 0]).sum())
        rows.append((with_price, clock["last"], moved))
        return decision

    mpc.MpcPolicy._decide = both  # type: ignore[method-assign]
    Problem.solve = timed_solve  # type: ignore[method-assign]
    try:
        scenario = with_overrides(load_scenario(example_path("burstgpt_caiso_month")),
                                  {"data.dir": str(data), "run.days": days}, "<bench>")
        measure(scenario)
    finally:
        mpc.MpcPolicy._decide = decide  # type: ignore[method-assign]
        Problem.solve = solve  # type: ignore[method-assign]
    a = np.array(rows)
    out: dict[str, Any] = {"steps": len(rows)}
    for name, i in (("with_congestion", 0), ("without", 1)):
        out[f"{name}_cpu_median_ms"] = round(1e3 * float(np.median(a[:, i])), 1)
        out[f"{name}_cpu_p95_ms"] = round(1e3 * float(np.percentile(a[:, i], 95)), 1)
        out[f"{name}_cpu_total_s"] = round(float(a[:, i].sum()), 2)
    out["steps_with_another_split"] = int((a[:, 2] > 1.0).sum())
    return out


if __name__ == "__main__":
    for key, value in compare(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0).items():
        print(f"{key}: {value}")
