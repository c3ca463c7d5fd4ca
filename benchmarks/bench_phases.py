"""Each phase of the MPC loop timed separately (specs in ``benchmarks/registry.py``).

RCDC problem: build, first solve, parameter update + re-solve (the hot path),
result extraction; SARIMAX update + predict; simulator events; settlement.
Every solve records HiGHS's own run time beside our wall time, and the ratio
wall / HiGHS of the same calls goes into ``benchmark.extra_info``; rates
(steps, events, intervals per second) too. No timing is asserted.

Run: ``pytest benchmarks/bench_phases.py --benchmark-only``. Under
``--benchmark-disable`` (CI smoke) every spec runs its ``smoke_sizes`` once or
twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.conftest import is_smoke
from benchmarks.registry import PhaseSpec, iter_params, param_id, timed_run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize over the registry with the sizes of the current mode."""
    if {"spec", "size"} <= set(metafunc.fixturenames):
        params = iter_params(is_smoke(metafunc.config))
        metafunc.parametrize("spec,size", params, ids=[param_id(s, n) for s, n in params])


def test_phase(benchmark: Any, spec: PhaseSpec, size: int, smoke: bool) -> None:
    case = spec.prepare(size)
    walls: list[float] = []
    highs: list[float] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        case.reset()
        return (), {}

    def run() -> None:
        wall, h = timed_run(case)
        walls.append(wall)
        if h is not None:
            highs.append(h)

    rounds = spec.rounds_for(smoke)
    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1,
                       warmup_rounds=0 if smoke else min(2, rounds // 5))
    wall = np.asarray(walls)
    info: dict[str, Any] = {"phase": spec.phase, spec.axis: size,
                            "wall_median_s": float(np.median(wall)),
                            "wall_min_s": float(wall.min()), "wall_max_s": float(wall.max()),
                            f"{case.unit}s_per_s": case.units / float(np.median(wall)),
                            **case.info}
    if highs:
        h = np.asarray(highs)
        info.update({
            "highs_median_s": float(np.median(h)),
            "ratio_wall_over_highs": float(np.median(wall) / np.median(h)),
            "median_ratio_wall_over_highs": float(np.median(wall / h)),
            "overhead_median_s": float(np.median(wall - h)),
        })
        assert np.all(np.isfinite(h))
    benchmark.extra_info.update(info)
