"""CPU time of a closed loop and the share of it spent forecasting (docs/performance.md,
"The wind-fleet month" and "The RCDC month").

Run from a checkout beside ``../shared/data``::

    python -m benchmarks.profile_forecasting wind [DAYS]     # nyiso_wind_fleet
    python -m benchmarks.profile_forecasting rcdc [DAYS]     # rcdc_nyiso_wholesale
    python -m benchmarks.profile_forecasting wind 30 --no-profile
    python -m benchmarks.profile_forecasting rcdc 30 --hash

With the profile (``cProfile`` on process CPU time) it prints the loop's CPU time and
the CPU time of the forecasting entry points: fitting at the run start
(:func:`~mpc_dc.control.forecasting.make_forecasters`) and every forecast the
controller asks for (:meth:`~mpc_dc.control.forecasting.ChannelForecasts.predict`
and ``quantile``, which include feeding the observations and the refits); the
profile's overhead inflates both, the share is the figure to read. With
``--no-profile``: the figures of :func:`benchmarks.closed_loop.measure` (CPU time
without the profiler's overhead). With ``--hash``: the SHA-256 of every forecast the
loop hands out (points and quantiles, in order) and their count, to show two
checkouts forecast the same bits. Diagnostic only: it uses only what the code before
issue 14's forecasting change also has, so the same file can be run against an older
checkout (``PYTHONPATH=<old checkout>``) for a side-by-side comparison.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.closed_loop import measure, wind_fleet
from mpc_dc.control.forecasting import ChannelForecasts
from mpc_dc.site.scenario import Scenario, example_path, load_scenario, with_overrides

FORECASTING = (("control/forecasting.py", "make_forecasters"),
               ("control/forecasting.py", "predict"),
               ("control/forecasting.py", "quantile"))
"""(file suffix, function) of the forecasting entry points (none calls another)."""


def scenario(case: str, days: float, data: Path) -> Scenario:
    """The ``wind`` (``nyiso_wind_fleet``) or ``rcdc`` (``rcdc_nyiso_wholesale``) month
    on the real data in ``data``, ``days`` long."""
    if case == "wind":
        return wind_fleet(data, days=days)
    return with_overrides(load_scenario(example_path("rcdc_nyiso_wholesale")),
                          {"data.dir": str(data), "run.days": days}, "<bench>")


def profile(scenario: Scenario) -> dict[str, Any]:
    """CPU time [s] of one closed loop (:func:`~benchmarks.closed_loop.measure`) under
    ``cProfile`` and of its forecasting entry points (:data:`FORECASTING`)."""
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    figures = measure(scenario)
    profiler.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(
        profiler).stats  # type: ignore[attr-defined]
    parts = {name: sum(row[3] for (path, _, fn), row in stats.items()
                       if path.endswith(suffix) and fn == name)
             for suffix, name in FORECASTING}
    forecasting = sum(parts.values())
    total = figures["total_cpu_s"]
    return {"total_cpu_s_profiled": total, "forecasting_cpu_s_profiled": forecasting,
            "forecasting_share": forecasting / total,
            **{f"{name}_cpu_s_profiled": value for name, value in parts.items()},
            "cost_usd": figures["cost_usd"]}


def hashed(scenario: Scenario) -> dict[str, Any]:
    """SHA-256 and count of every point and quantile forecast of one closed loop, with
    the run's net cost [$] (module docstring)."""
    digest, count = hashlib.sha256(), [0]
    predict, quantile = ChannelForecasts.predict, ChannelForecasts.quantile

    def add(channel: str, values: np.ndarray) -> None:
        digest.update(channel.encode())
        digest.update(np.ascontiguousarray(values, dtype=float).tobytes())
        count[0] += 1

    def hashed_predict(self: ChannelForecasts, time: Any, steps: int,
                       only: Any = None) -> dict[str, np.ndarray]:
        out = predict(self, time, steps, only)
        for channel in sorted(out):
            add(channel, out[channel])
        return out

    def hashed_quantile(self: ChannelForecasts, channel: str, time: Any, steps: int,
                        level: float) -> np.ndarray:
        out = quantile(self, channel, time, steps, level)
        add(channel, out)
        return out

    ChannelForecasts.predict = hashed_predict  # type: ignore[method-assign]
    ChannelForecasts.quantile = hashed_quantile  # type: ignore[method-assign]
    try:
        figures = measure(scenario)
    finally:
        ChannelForecasts.predict = predict  # type: ignore[method-assign]
        ChannelForecasts.quantile = quantile  # type: ignore[method-assign]
    return {"forecasts_sha256": digest.hexdigest(), "forecasts": count[0],
            "cost_usd": repr(figures["cost_usd"])}


def main() -> None:
    """Command line (module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("wind", "rcdc"))
    parser.add_argument("days", type=float, nargs="?", default=30.0)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--hash", action="store_true")
    args = parser.parse_args()
    case = scenario(args.case, args.days, args.data)
    figures = (hashed(case) if args.hash else measure(case) if args.no_profile
               else profile(case))
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
