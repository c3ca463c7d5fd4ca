"""Each step of a short ``nyiso_wind_fleet`` loop solved twice on the same inputs: by the
controller, and by a second problem with every committed binary integer and no
enumeration (HiGHS's MIP, as before issue 14's change; docs/performance.md, "The
wind-fleet month").

``python -m benchmarks.compare_steps [DAYS]`` (default 2) prints, over the steps, the
largest relative difference of the relaxation's objective (``lp_bound_usd``) and of the
committed plan's objective, the steps where each differs by more than 10⁻⁶ relative,
how many of those the controller's plan is lower on, and the steps whose first-interval
instances or deferrable work differ. Diagnostic only: it wraps ``MpcPolicy._decide``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import measure, wind_fleet
from mpc_dc import problem as problem_module
from mpc_dc.control import mpc
from mpc_dc.problem import Form, Problem


def compare(days: float, data: Path = Path("../shared/data")) -> dict[str, Any]:
    """Step-by-step comparison of ``days`` of the wind fleet (module docstring)."""
    rows: list[tuple[float, ...]] = []
    reference: dict[str, Problem] = {}
    decide = mpc.MpcPolicy._decide

    def both(self: mpc.MpcPolicy, obs: Any, inputs: Any, state: Any) -> Any:
        decision = decide(self, obs, inputs, state)
        if "problem" not in reference:
            reference["problem"] = Problem(self.site, self.horizon_steps, self.options,
                                           demand_response=self.demand_response,
                                           lateness=self.lateness)
            reference["problem"]._relax_exact = False
        saved = problem_module._ENUMERATE_MAX_BINARIES
        problem_module._ENUMERATE_MAX_BINARIES = 0
        try:
            old = reference["problem"].solve(inputs, state, Form.COMMITTED_INTEGER)
        finally:
            problem_module._ENUMERATE_MAX_BINARIES = saved
        new = self.last_result
        assert new is not None and new.plan is not None and old.plan is not None
        rows.append((new.lp_bound_usd, old.lp_bound_usd, new.objective_usd, old.objective_usd,
                     float(np.abs(new.plan.instances[:, 0] - old.plan.instances[:, 0]).sum()),
                     float(np.abs(new.plan.work_df_wu[:, 0] - old.plan.work_df_wu[:, 0]).sum())))
        return decision

    mpc.MpcPolicy._decide = both  # type: ignore[method-assign]
    try:
        figures = measure(wind_fleet(data, days=days))
    finally:
        mpc.MpcPolicy._decide = decide  # type: ignore[method-assign]
    a = np.array(rows)
    out: dict[str, Any] = {"steps": len(rows), "cost_usd": figures["cost_usd"]}
    for name, i in (("lp_bound", 0), ("objective", 2)):
        rel = np.abs(a[:, i] - a[:, i + 1]) / np.maximum(np.abs(a[:, i + 1]), 1e-6)
        differ = rel > 1e-6
        out[f"{name}_max_rel_diff"] = float(rel.max())
        out[f"{name}_steps_differing"] = int(differ.sum())
        out[f"{name}_steps_lower_now"] = int((differ & (a[:, i] < a[:, i + 1])).sum())
    out["instances_steps_differing"] = int((a[:, 4] > 1e-6).sum())
    out["work_steps_differing"] = int((a[:, 5] > 1e-6).sum())
    return out


if __name__ == "__main__":
    for key, value in compare(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0).items():
        print(f"{key}: {value}")
