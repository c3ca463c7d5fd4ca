"""Every HiGHS run of a short ``nyiso_wind_fleet`` closed loop, counted (docs/performance.md,
"The wind-fleet month").

Run from a checkout beside ``../shared/data``: ``python -m benchmarks.profile_runs [DAYS]``
(default 2). Prints the steps per formulation, how many exact steps needed binaries in
the committed column, the relaxation's start (``cold``, ``same``, ``shift``), and the
HiGHS runs (LP or MIP): count, median HiGHS time [s] and simplex iterations, and the
closed loop's figures of :func:`benchmarks.closed_loop.measure`. Diagnostic only: it
wraps :meth:`~mpc_dc.fastpath.HighsFastPath.solve` and ``Problem._solve_formulation``.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import measure, wind_fleet
from mpc_dc import fastpath
from mpc_dc import problem as problem_module


def profile(days: float, data: Path = Path("../shared/data")) -> dict[str, Any]:
    """Counts and medians of the HiGHS runs of ``days`` of the wind fleet (module doc)."""
    runs: list[tuple[bool, float, int]] = []
    steps: Counter[str] = Counter()
    solve = fastpath.HighsFastPath.solve
    solve_formulation = problem_module.Problem._solve_formulation

    def counted_solve(self: fastpath.HighsFastPath) -> fastpath.FastSolution:
        sol = solve(self)
        iterations = int(self._highs.getInfo().simplex_iteration_count)
        runs.append((self.is_mip, sol.highs_time_s, iterations))
        return sol

    def counted_formulation(self: problem_module.Problem, formulation: Any, *args: Any) -> Any:
        result = solve_formulation(self, formulation, *args)
        steps[f"formulation {formulation}"] += 1
        model = self._last
        if model is not None and model.ctx.exact:
            where = getattr(model, "integer_where", None)  # None before this branch
            needs = where is None or bool(where[:, 0].any())
            steps["exact, binaries in the committed column" if needs
                  else "exact, none in the committed column"] += 1
        steps[f"relaxation start {self.last_warm_start}"] += 1
        return result

    fastpath.HighsFastPath.solve = counted_solve  # type: ignore[method-assign]
    problem_module.Problem._solve_formulation = counted_formulation  # type: ignore[method-assign,assignment]
    try:
        figures = measure(wind_fleet(data, days=days))
    finally:
        fastpath.HighsFastPath.solve = solve  # type: ignore[method-assign]
        problem_module.Problem._solve_formulation = (  # type: ignore[method-assign]
            solve_formulation)
    out: dict[str, Any] = {"counts": dict(steps), **figures}
    table = np.array(runs, dtype=float).reshape(-1, 3)
    for kind, mask in (("lp", table[:, 0] == 0), ("mip", table[:, 0] == 1)):
        out[f"{kind}_runs"] = int(mask.sum())
        if mask.any():
            out[f"{kind}_highs_median_s"] = float(np.median(table[mask, 1]))
            out[f"{kind}_iterations_median"] = float(np.median(table[mask, 2]))
            out[f"{kind}_highs_total_s"] = float(table[mask, 1].sum())
    return out


if __name__ == "__main__":
    for key, value in profile(float(sys.argv[1]) if len(sys.argv) > 1 else 2.0).items():
        print(f"{key}: {value}")
