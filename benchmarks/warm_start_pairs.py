"""Both warm starts of every receding LP relaxation, on the same data (docs/performance.md,
"Warm start: shifted or unshifted basis").

``SolverOptions.warm_start="auto"`` starts a receding step's LP relaxation from the last
relaxation's basis moved forward one interval whenever the new inputs match the last ones
shifted better than unshifted. This script measures that premise on a closed loop: before
each relaxation that has a last basis it solves the LP twice more, from the shifted and
from the unshifted basis, and records HiGHS's simplex iterations and run time of both;
then the loop's own run goes on from the basis it would have used (the extra runs leave
the stored basis as it was, so the plan is the loop's own).

Run from a checkout (``../shared/data`` beside it for the real-data scenarios)::

    python -m benchmarks.warm_start_pairs dr_scale 3
    python -m benchmarks.warm_start_pairs nyiso_wind_fleet 3 --controller sarimax
    python -m benchmarks.warm_start_pairs rcdc_nyiso_wholesale 10 --controller sarimax

``--count`` solves nothing extra: it sums the simplex iterations and HiGHS time of every
run the loop makes, to compare two checkouts on a load-independent figure (run this file
in each: ``cd OLD && PYTHONPATH=. python NEW/benchmarks/warm_start_pairs.py dr_scale 3
--count --time-limit 120``; a time limit the load cannot reach keeps both on one path).

Diagnostic only: it wraps ``Problem._warm_start_lp`` and ``HighsFastPath.solve``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import dr_scale, measure
from mpc_dc import fastpath
from mpc_dc import problem as problem_module
from mpc_dc.site.scenario import controller_variant, example_path, load_scenario, with_overrides


def paired_starts(scenario: str, days: float, controller: str | None = None,
                  data: Path = Path("../shared/data"), *, count: bool = False,
                  time_limit_s: float | None = None) -> dict[str, Any]:
    """Iterations [-] and HiGHS time [s] of the shifted and the unshifted start at every
    receding step of ``days`` of ``scenario`` (``dr_scale`` or a shipped scenario's
    name), with the closed loop's figures of :func:`benchmarks.closed_loop.measure`;
    with ``count`` only the sums over the loop's own runs (module docstring).
    ``time_limit_s`` overrides ``controller.time_limit_s``."""
    pairs: list[tuple[int, int, float, float]] = []
    totals = {"highs_runs": 0, "simplex_iterations": 0, "highs_s": 0.0}
    warm_start_lp = problem_module.Problem._warm_start_lp
    solve = fastpath.HighsFastPath.solve

    def counted(self: fastpath.HighsFastPath) -> fastpath.FastSolution:
        sol = solve(self)
        totals["highs_runs"] += 1
        totals["simplex_iterations"] += int(self._highs.getInfo().simplex_iteration_count)
        totals["highs_s"] += sol.highs_time_s
        return sol

    def paired(self: problem_module.Problem, model: problem_module.CompiledModel,
               series: np.ndarray) -> None:
        if self.n_columns > 1 and model.series is not None:
            self._save_basis(model)
            basis, fast = model.basis, model.fast
            if basis is not None:
                if model.shift_maps is None:
                    model.shift_maps = fast.shift_maps(self.n_columns,
                                                       time_src=self._time_source)
                runs = []
                for start in (fast.shift_basis(basis, model.shift_maps), basis):
                    if not fast.set_basis(*start):
                        break
                    sol = fast.solve()
                    if sol.model_status != "kOptimal":
                        break
                    runs.append((int(fast._highs.getInfo().simplex_iteration_count),
                                 sol.highs_time_s))
                if len(runs) == 2:
                    pairs.append((runs[0][0], runs[1][0], runs[0][1], runs[1][1]))
        warm_start_lp(self, model, series)

    if scenario == "dr_scale":
        built, exo = dr_scale(days)
        prepared: Any = (built, exo)
    else:
        built = with_overrides(load_scenario(example_path(scenario)),
                               {"data.dir": str(data), "run.days": days}, "<pairs>")
        prepared = None
    if controller is not None:
        built = controller_variant(built, controller)
    if time_limit_s is not None:
        built = with_overrides(built, {"controller.time_limit_s": time_limit_s}, "<pairs>")
    if prepared is not None:
        prepared = (built, replace(prepared[1], site=built.site))
    if count:
        fastpath.HighsFastPath.solve = counted  # type: ignore[method-assign]
    else:
        problem_module.Problem._warm_start_lp = paired  # type: ignore[method-assign]
    try:
        figures = measure(built, prepared)
    finally:
        problem_module.Problem._warm_start_lp = warm_start_lp  # type: ignore[method-assign]
        fastpath.HighsFastPath.solve = solve  # type: ignore[method-assign]
    if count:
        return {**totals, **figures}
    table = np.array(pairs, dtype=float).reshape(-1, 4)
    fewer = table[:, 1] < table[:, 0]
    return {"steps_paired": len(table),
            "shifted_iterations_median": float(np.median(table[:, 0])) if len(table) else 0.0,
            "unshifted_iterations_median": float(np.median(table[:, 1])) if len(table) else 0.0,
            "shifted_iterations_mean": float(table[:, 0].mean()) if len(table) else 0.0,
            "unshifted_iterations_mean": float(table[:, 1].mean()) if len(table) else 0.0,
            "unshifted_fewer_steps": int(fewer.sum()),
            "shifted_fewer_steps": int((table[:, 1] > table[:, 0]).sum()),
            "shifted_highs_s": float(table[:, 2].sum()),
            "unshifted_highs_s": float(table[:, 3].sum()),
            **figures}


def main(argv: list[str] | None = None) -> None:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.warm_start_pairs")
    parser.add_argument("scenario", help="dr_scale or a shipped scenario's name")
    parser.add_argument("days", type=float)
    parser.add_argument("--controller", default=None, help="e.g. sarimax (mpc-dc run's labels)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--count", action="store_true",
                        help="only sum the loop's own runs (no paired solves)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="controller.time_limit_s [s]")
    args = parser.parse_args(argv)
    for key, value in paired_starts(args.scenario, args.days, args.controller, args.data,
                                    count=args.count, time_limit_s=args.time_limit).items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
