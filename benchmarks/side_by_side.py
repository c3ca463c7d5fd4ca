"""Old/new ratio of one closed loop between two checkouts, runs alternating in one session.

On the shared 2-core machine absolute times move with other people's load; a ratio of
two checkouts measured alternately (old, new, old, new, …) in the same minutes does
not. Each run is a fresh process in its checkout (its own ``.venv``, ``PYTHONPATH``
the checkout), timing :func:`benchmarks.closed_loop.measure` of ``nyiso_wind_fleet``
on the real data with a controller label (``sarimax`` by default: issue 14's
command), so both sides run the code of their own commit; the child uses only
functions main had before this script (``measure``, ``wind_fleet``,
``controller_variant``).

Run from a checkout beside ``../shared/data``::

    python -m benchmarks.side_by_side OLD_DIR NEW_DIR [--days 30] [--rounds 2]
        [--controller sarimax] [--json out.json]

Prints one line per run (side, wall and CPU [s], cost [$], the 1-min load average
before and after) and the medians with the new/old ratios of total CPU and wall time.
A script, not a pytest benchmark: pytest-benchmark times one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

CHILD = """
import json, sys
from pathlib import Path
from benchmarks.closed_loop import measure, wind_fleet
from mpc_dc.site.scenario import controller_variant
scenario = controller_variant(wind_fleet(Path(sys.argv[1]), days=float(sys.argv[2])),
                              sys.argv[3])
print("FIGURES " + json.dumps(measure(scenario)))
"""
"""The child process: one closed loop, its :func:`~benchmarks.closed_loop.measure` as JSON."""


def run_once(checkout: Path, data: Path, days: float, controller: str) -> dict[str, Any]:
    """One closed loop in ``checkout`` (its ``.venv``), with the load around it."""
    python = checkout / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    done = subprocess.run([str(python), "-c", CHILD, str(data), str(days), controller],
                          cwd=checkout, env=env, capture_output=True, text=True, check=True)
    process_wall = time.perf_counter() - wall
    line = next(x for x in done.stdout.splitlines() if x.startswith("FIGURES "))
    figures: dict[str, Any] = json.loads(line.removeprefix("FIGURES "))
    figures.update(load_before=load_before, load_after=os.getloadavg()[0],
                   process_wall_s=process_wall)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Alternate the two checkouts' runs and print the ratios (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--controller", default="sarimax")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data = args.data.resolve()
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for k in range(args.rounds):
        for side in ("old", "new") if k % 2 == 0 else ("new", "old"):
            checkout = (args.old if side == "old" else args.new).resolve()
            figures = run_once(checkout, data, args.days, args.controller)
            runs[side].append(figures)
            print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC {side}: wall "
                  f"{figures['total_wall_s']:.1f} s, CPU {figures['total_cpu_s']:.1f} s "
                  f"(setup {figures['setup_cpu_s']:.1f}, simulation "
                  f"{figures['simulation_cpu_s']:.1f}), cost {figures['cost_usd']:.2f} $, "
                  f"fallbacks {figures['fallbacks']:.0f}, load {figures['load_before']:.1f}"
                  f" -> {figures['load_after']:.1f}", flush=True)
    summary: dict[str, Any] = {}
    for key in ("total_cpu_s", "total_wall_s", "setup_cpu_s", "simulation_cpu_s"):
        old = float(np.median([r[key] for r in runs["old"]]))
        new = float(np.median([r[key] for r in runs["new"]]))
        summary[key] = {"old_median": old, "new_median": new, "ratio_new_over_old": new / old}
        print(f"{key}: median old {old:.1f}, new {new:.1f}, new/old {new / old:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary,
                                         "controller": args.controller, "days": args.days},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
