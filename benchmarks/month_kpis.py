"""One ``nyiso_wind_fleet`` closed loop with the decision KPIs beside its times, to compare
two commits (docs/performance.md, "The wind-fleet month").

``python -m benchmarks.month_kpis DAYS TAG`` from a checkout (any commit: copy the file
in) prints one JSON line: wall and CPU time [s] of the whole run (data, forecasters,
problem, simulation), the net cost [$], SLO attainment (all, TTFT, TPOT), missed
requests, fallbacks, median decision and solve times [s] and the step count.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.closed_loop import wind_fleet
from mpc_dc.runner import build_policy, prepare
from mpc_dc.sim.engine import simulate

KPIS = ("cost_usd", "slo_attainment", "slo_missed_requests", "slo_ttft_attainment",
        "slo_tpot_attainment", "fallbacks_total", "decide_time_median_s",
        "solve_time_median_s", "intervals")
"""The KPIs printed (:func:`mpc_dc.sim.engine.simulate`)."""


def month(days: float, tag: str, data: Path = Path("../shared/data")) -> dict[str, object]:
    """Run ``days`` of the wind fleet on ``data``; times and :data:`KPIS`."""
    wall, cpu = time.perf_counter(), time.process_time()
    scenario, exo = prepare(wind_fleet(data, days=days))
    policy = build_policy(scenario, exo)
    result = simulate(exo, policy, serving=scenario.serving.config(),
                      fast_layer=scenario.controller.fast_layer)
    out: dict[str, object] = {"tag": tag, "days": days,
                              "wall_s": time.perf_counter() - wall,
                              "cpu_s": time.process_time() - cpu}
    out.update({key: result.kpis.get(key) for key in KPIS})
    return out


if __name__ == "__main__":
    print(json.dumps(month(float(sys.argv[1]), sys.argv[2])))
