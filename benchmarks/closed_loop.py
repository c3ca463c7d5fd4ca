"""Cases and the timer of the closed-loop benchmarks of issue 14 (``bench_closed_loop.py``).

* :func:`wind_fleet` — the product scenario ``nyiso_wind_fleet`` (30 days, real data,
  request level; its seasonal naive or another controller label, e.g. ``sarimax``),
  or a short synthetic version of it for the CI smoke run;
* :func:`dr_scale` — a site at the DR study's scale (3 campuses × 4,096 H100s at the
  CAISO hubs, Qwen3-8B / -32B / -235B-A22B at BF16, FP8 and INT4: 27 pools), fluid
  serving, MPC with seasonal-naive forecasts; demand peaking at 7.2·10⁶ output
  tokens/s (the study's 6·10⁶ on 10,240 GPUs, scaled to 12,288), far beyond what any
  request array holds, so the run carries per-interval aggregates only
  (:class:`~mpc_dc.sim.arrivals.RequestAggregates`).

:func:`measure` runs one closed loop and returns wall and CPU times of setup and
simulation and the controller's step times; :func:`spread` summarises repeats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpc_dc.runner import build_policy, prepare, with_capacity
from mpc_dc.sim.arrivals import RequestAggregates, RequestArrays
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.exogenous import SiteExogenous, column, demand_columns
from mpc_dc.sim.policy import Decision, Observation
from mpc_dc.site.data import build_site_exogenous
from mpc_dc.site.scenario import (
    Scenario,
    controller_variant,
    default_scenario,
    example_path,
    load_scenario,
    scenario_from_table,
    with_overrides,
)


def wind_fleet(data: Path | None, days: float = 30.0, controller: str | None = None
               ) -> Scenario:
    """``nyiso_wind_fleet.toml`` on the real data in ``data``; without data, the embedded
    default (its synthetic version) for ``days``. ``controller``: a ``mpc-dc run
    --controller`` label (:func:`~mpc_dc.site.scenario.controller_variant`, e.g.
    ``sarimax``); None keeps the scenario's (the seasonal naive)."""
    if data is None:
        scenario = with_overrides(default_scenario(), {"run.days": days}, "<bench>")
    else:
        scenario = with_overrides(load_scenario(example_path("nyiso_wind_fleet")),
                                  {"data.dir": str(data), "run.days": days}, "<bench>")
    return scenario if controller is None else controller_variant(scenario, controller)


DR_MODELS = ("qwen3-8b", "qwen3-32b", "qwen3-235b-a22b")
"""The DR study's models, in site order."""
DR_TOKEN_SHARES = (0.5, 0.3, 0.2)
"""The DR study's split of output tokens over :data:`DR_MODELS`."""
DR_PEAK_TOKENS_PER_S = 6e6 * 12_288 / 10_240
"""Peak output-token demand [tokens/s]: the study's 6·10⁶ on 10,240 GPUs, per GPU."""

DR_SCALE = {
    "name": "dr_scale",
    "run": {"start": "2021-07-01T07:00:00Z", "days": 30.0, "history_days": 7, "seed": 2,
            "local_tz": "America/Los_Angeles"},
    "data": {"source": "synthetic"},
    "site": {"carbon_price_usd_per_t": 27.94, "campuses": [
        {"name": node, "price_node": node, "carbon_zone": "US-CAL-CISO", "gpus": 4096,
         "pue": 1.2, "grid": {"import_limit_mw": 100.0}}
        for node in ("NP15", "SP15", "ZP26")]},
    "fleet": {"models": list(DR_MODELS), "allowed_precisions": ["BF16", "FP8", "INT4"],
              "flexibility": "S6"},
    "workload": {"requests": {"source": "synthetic", "rate_multiplier": 20.0,
                              "model_map": {"ChatGPT": "qwen3-32b",
                                            "GPT-4": "qwen3-235b-a22b"}}},
    "serving": {"fidelity": "fluid", "default_ttft_slo_s": 2.0},
    "controller": {"kind": "mpc", "forecaster": "seasonal_naive_daily", "horizon_h": 24.0,
                   "fine_horizon_h": 8.0, "min_instances_per_model": 1, "time_limit_s": 5.0},
}
"""The DR-scale site (:func:`dr_scale`); the request streams are scaled after the build."""


def dr_scale(days: float = 30.0) -> tuple[Scenario, SiteExogenous]:
    """The DR-scale case (module docstring): scenario (capacity filled in) and run data.

    The synthetic ChatGPT stream (20 streams of the calibrated BurstGPT-like rate)
    carries Qwen3-8B's and -32B's tokens, the GPT-4 stream Qwen3-235B's, each scaled
    so that the run's tokens split 0.5 / 0.3 / 0.2 and the total peaks at
    :data:`DR_PEAK_TOKENS_PER_S`; history and tail are scaled alike.
    """
    scenario = with_overrides(scenario_from_table(DR_SCALE, "<dr-scale>"),
                              {"run.days": days}, "<bench>")
    exo = build_site_exogenous(scenario)
    requests = exo.requests
    assert isinstance(requests, RequestArrays)
    n = exo.n_steps
    run = exo.history_steps + np.arange(n)
    frame = exo.frame
    tokens = {m: frame[column("tokens_per_s", m)].to_numpy() for m in DR_MODELS}
    source = {"qwen3-8b": "qwen3-32b", "qwen3-32b": "qwen3-32b",
              "qwen3-235b-a22b": "qwen3-235b-a22b"}
    # Each model's share of its stream: tokens split by DR_TOKEN_SHARES over the run.
    per_run = {m: float(tokens[source[m]][run].sum()) for m in DR_MODELS}
    weight = {m: s / per_run[source[m]] for m, s in zip(DR_MODELS, DR_TOKEN_SHARES, strict=True)}
    total = np.sum([weight[m] * tokens[source[m]][run] for m in DR_MODELS], axis=0)
    scale = DR_PEAK_TOKENS_PER_S / float(total.max())
    shares = np.zeros((len(DR_MODELS), len(requests.models)))
    for j, m in enumerate(DR_MODELS):
        shares[j, requests.models.index(source[m])] = scale * weight[m]
    aggregates = RequestAggregates.scaled(requests, n, shares, DR_MODELS)
    columns = {}
    for j, m in enumerate(DR_MODELS):
        for quantity in ("tokens_per_s", "requests_per_h"):
            columns[column(quantity, m)] = (frame[column(quantity, source[m])].to_numpy()
                                            * shares[j].max())
    scaled = pd.DataFrame(columns, index=frame.index)
    # The run's demand is the aggregates' own (SiteExogenous checks it).
    truth = demand_columns(aggregates, pd.DatetimeIndex(exo.run_index))
    scaled.loc[truth.index, truth.columns] = truth.to_numpy()
    frame = frame.drop(columns=list(columns)).join(scaled)
    mix = {m: exo.request_mix[source[m]] for m in DR_MODELS}
    # The burst statistics are per source stream, as the mix is: without them the
    # renamed models would make controller.congestion_calibration = "auto" fall back.
    bursts = {m: exo.burst_late_share[source[m]] for m in DR_MODELS
              if source[m] in exo.burst_late_share}
    exo = replace(exo, frame=frame, requests=aggregates, request_mix=mix,
                  burst_late_share=bursts)
    scenario = with_capacity(scenario, exo)
    return scenario, replace(exo, site=scenario.site)


def measure(scenario: Scenario, prepared: tuple[Scenario, SiteExogenous] | None = None
            ) -> dict[str, float]:
    """One closed loop as :func:`~mpc_dc.runner.run_scenario` runs it (no run directory),
    timed in parts: wall and CPU time [s] of the setup (data unless ``prepared`` is
    given, forecaster fitting, problem building) and of the simulation, the
    controller's decision time per step, wall and CPU, and its solve time [s] (median,
    95th percentile), the step count, solves stopped at the wall-clock or node limit,
    roundings repaired by a chunk MIP or kept within the repair share,
    fallbacks and the net cost [$].

    CPU time is this process's (``time.process_time``): on a shared machine it is the
    figure to read beside the wall time, which counts the time others held the cores.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    scenario, exo = prepare(scenario) if prepared is None else prepared
    policy = build_policy(scenario, exo)
    setup_wall, setup_cpu = time.perf_counter() - wall, time.process_time() - cpu
    decide, step_cpu = policy.decide, []

    def timed_decide(obs: Observation) -> Decision:
        tick = time.process_time()
        out = decide(obs)
        step_cpu.append(time.process_time() - tick)
        return out

    policy.decide = timed_decide  # type: ignore[method-assign]
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(exo, policy, serving=scenario.serving.config(),
                      fast_layer=scenario.controller.fast_layer)
    sim_wall, sim_cpu = time.perf_counter() - wall, time.process_time() - cpu
    k = result.kpis
    return {"total_wall_s": setup_wall + sim_wall, "total_cpu_s": setup_cpu + sim_cpu,
            "setup_wall_s": setup_wall, "setup_cpu_s": setup_cpu,
            "simulation_wall_s": sim_wall, "simulation_cpu_s": sim_cpu,
            "steps": float(k["intervals"]),
            "decide_median_s": float(k["decide_time_median_s"]),
            "decide_p95_s": float(k["decide_time_p95_s"]),
            "decide_cpu_median_s": float(np.median(step_cpu)),
            "decide_cpu_p95_s": float(np.percentile(step_cpu, 95)),
            "solve_median_s": float(k["solve_time_median_s"]),
            # a solve stopped at its clock makes the run's cost depend on the load
            "solver_time_limit_hits": float(k["solver_time_limit_hits"]),
            "solver_node_limit_hits": float(k["solver_node_limit_hits"]),
            # roundings kept within controller.repair_token_share instead of a chunk MIP
            "chunk_mip_repairs": float(k["chunk_mip_repairs"]),
            "repairs_skipped": float(k["repairs_skipped"]),
            "fallbacks": float(k["fallbacks_total"]), "cost_usd": float(k["cost_usd"])}


def spread(runs: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Median, min and max over repeats of every figure of :func:`measure`."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"median": float(np.median(values)), "min": float(values.min()),
                    "max": float(values.max())}
    return out
