"""Where a DR-scale closed loop's CPU time goes (docs/performance.md, "The DR-scale month:
where the CPU goes").

Run from a checkout: ``python -m benchmarks.cpu_split DAYS [--time-limit S]``. Prints the
closed loop's figures of :func:`benchmarks.closed_loop.measure` and the process CPU time
[s] (``time.process_time``) of

* the HiGHS runs (:meth:`~mpc_dc.fastpath.HighsFastPath.solve`, its few Python lines
  included) by kind: the step's LP relaxation, the warm-start probe
  (``Problem._probe_start``), the fixed re-solves of round-and-fix, other;
* the controller's decisions (``MpcPolicy.decide``) less those runs, with three of their
  parts: the horizon's inputs (forecasts), the post-processing of every run and the
  basis handed to HiGHS (``HighsFastPath.set_basis``);
* the simulation outside the decisions, and the setup.

To compare two checkouts, run this file in each (``cd OLD && PYTHONPATH=. python
NEW/benchmarks/cpu_split.py 5``). ``--time-limit`` overrides
``controller.time_limit_s`` so that the load cannot stop a solve. Diagnostic only: it
wraps the functions named above.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from benchmarks.closed_loop import dr_scale, measure
from mpc_dc import fastpath
from mpc_dc import problem as problem_module
from mpc_dc.control import mpc
from mpc_dc.site.scenario import with_overrides

KINDS = {"_probe_start": "probe", "_round_and_fix": "fixed re-solve",
         "_committed_integer": "relaxation"}
"""HiGHS run kinds by the innermost of these callers (a probe runs inside a relaxation's
step, a fixed re-solve inside round-and-fix)."""


def _kind() -> str:
    """The kind (:data:`KINDS`) of the HiGHS run whose wrapper calls this."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name in KINDS:
            return KINDS[frame.f_code.co_name]
        frame = frame.f_back  # type: ignore[assignment]
    return "other"


def split(days: float, time_limit_s: float | None = None) -> dict[str, Any]:
    """CPU time [s] of each part (module docstring) of ``days`` of :func:`dr_scale`,
    runs and simplex iterations of each HiGHS run kind, and :func:`measure`'s figures."""
    cpu: defaultdict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    iterations: Counter[str] = Counter()
    solve = fastpath.HighsFastPath.solve

    def timed_solve(self: fastpath.HighsFastPath) -> fastpath.FastSolution:
        kind = _kind()
        tick = time.process_time()
        sol = solve(self)
        cpu["highs " + kind] += time.process_time() - tick
        calls["highs " + kind] += 1
        iterations[kind] += sol.simplex_iterations
        return sol

    def timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tick = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu[label] += time.process_time() - tick
                calls[label] += 1
        return wrapper

    saved = [(fastpath.HighsFastPath, "solve", solve),
             (fastpath.HighsFastPath, "set_basis", fastpath.HighsFastPath.set_basis),
             (mpc.MpcPolicy, "decide", mpc.MpcPolicy.decide),
             (mpc.MpcPolicy, "horizon_inputs", mpc.MpcPolicy.horizon_inputs),
             (problem_module.Problem, "_post_process", problem_module.Problem._post_process)]
    fastpath.HighsFastPath.solve = timed_solve  # type: ignore[method-assign]
    fastpath.HighsFastPath.set_basis = timed(  # type: ignore[method-assign]
        "basis handed to HiGHS", fastpath.HighsFastPath.set_basis)
    mpc.MpcPolicy.decide = timed("decide", mpc.MpcPolicy.decide)  # type: ignore[method-assign]
    mpc.MpcPolicy.horizon_inputs = timed(  # type: ignore[method-assign]
        "horizon inputs (forecasts)", mpc.MpcPolicy.horizon_inputs)
    problem_module.Problem._post_process = timed(  # type: ignore[method-assign]
        "post-processing", problem_module.Problem._post_process)
    try:
        scenario, exo = dr_scale(days)
        if time_limit_s is not None:
            scenario = with_overrides(scenario, {"controller.time_limit_s": time_limit_s},
                                      "<cpu_split>")
            exo = replace(exo, site=scenario.site)
        loop = measure(scenario, (scenario, exo))
    finally:
        for owner, name, function in saved:
            setattr(owner, name, function)
    highs = sum(v for k, v in cpu.items() if k.startswith("highs "))
    parts = dict(cpu)  # a copy: the parts below are not wrapped functions
    parts["decide less HiGHS"] = cpu["decide"] - highs
    parts["simulation outside decide"] = loop["simulation_cpu_s"] - cpu["decide"]
    parts["setup"] = loop["setup_cpu_s"]
    return {"loop": loop, "cpu_s": parts, "highs_s": highs, "calls": dict(calls),
            "iterations": dict(iterations)}


def main(argv: list[str] | None = None) -> int:
    """Print :func:`split` (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_split")
    parser.add_argument("days", type=float)
    parser.add_argument("--time-limit", type=float, default=None,
                        help="controller.time_limit_s [s] (default: the case's 5 s)")
    args = parser.parse_args(argv)
    out = split(args.days, args.time_limit)
    loop, total = out["loop"], out["loop"]["total_cpu_s"]
    for key in ("total_cpu_s", "setup_cpu_s", "simulation_cpu_s", "decide_cpu_median_s",
                "solver_time_limit_hits", "cost_usd"):
        print(f"{key}: {loop[key]}")
    print(f"HiGHS runs: {out['highs_s']:.2f} s ({100 * out['highs_s'] / total:.1f} %)")
    for key, value in sorted(out["cpu_s"].items()):
        runs = out["calls"].get(key)
        extra = f", {runs} calls" if runs is not None else ""
        print(f"  {key}: {value:.2f} s ({100 * value / total:.1f} %{extra})")
    print(f"simplex iterations by kind: {out['iterations']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
