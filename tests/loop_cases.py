"""Scenarios and data surgery shared by the closed-loop tests (one stack).

* :func:`rcdc_short` — the RCDC site (one campus: other IT, wind, grid; the
  migrated ``rcdc_default.toml``), shortened;
* :func:`fleet_short` — the fleet example (``fleet_default.toml``), shortened;
* :func:`combined` — a small site with everything: inference pools on two campuses,
  other IT with a deferrable backlog, wind, export, a retail tariff with a demand
  charge at one campus;
* :func:`offline_to_end_rolling` — the offline optimum and the Oracle MPC with a horizon
  to the run end and with the scenario's rolling horizon, on the same data;
* :func:`poisoned` — a run's data with everything not yet published at an issue
  time replaced by garbage (the causality tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mpc_dc.runner import build_policy, prepare
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.exogenous import SiteExogenous, demand_columns
from mpc_dc.site.scenario import (
    Scenario,
    controller_variant,
    example_path,
    load_scenario,
    with_overrides,
)
from traces.grid import STEP, Publication


def rcdc_short(days: float = 1.5, history_days: int = 7,
               overrides: Mapping[str, Any] | None = None) -> Scenario:
    """``rcdc_default.toml`` shortened (``overrides``: more dotted keys)."""
    base = load_scenario(example_path("rcdc_default"))
    return with_overrides(base, {"run.days": days, "run.history_days": history_days,
                                 **(overrides or {})}, "<test>")


def fleet_short(days: float = 0.25, history_days: int = 2,
                overrides: Mapping[str, Any] | None = None) -> Scenario:
    """``fleet_default.toml`` shortened, 5 request streams, a 2-h horizon (``overrides``:
    more dotted keys)."""
    base = load_scenario(example_path("fleet_default"))
    return with_overrides(base, {"run.days": days, "run.history_days": history_days,
                                 "workload.requests.rate_multiplier": 5.0,
                                 "controller.horizon_h": 2.0, **(overrides or {})}, "<test>")


COMBINED: dict[str, Any] = {
    "name": "combined",
    "run": {"start": "2022-04-29T04:00:00Z", "days": 2.0, "history_days": 1, "seed": 5},
    "data": {"source": "synthetic"},
    "site": {"campuses": [
        {"name": "wind", "price_node": "D", "gpus": 16, "pue": 1.15,
         "other_it": {"it_capacity_mw": 0.02, "deferrable_share": 0.6, "window_h": 12},
         "renewable": {"nameplate_mw": 0.04},
         "grid": {"import_limit_mw": 0.2, "export_limit_mw": 0.03}},
        {"name": "city", "price_node": "F", "gpus": 16, "pue": 1.3,
         "grid": {"import_limit_mw": 0.2,
                  "tariff": {"kind": "retail", "demand_charge_usd_per_kw": 12.39}}},
    ]},
    "fleet": {"models": ["qwen3-32b"], "allowed_precisions": ["BF16", "FP8"]},
    "workload": {"requests": {"source": "synthetic", "rate_multiplier": 3.0,
                              "model_map": {"ChatGPT": "qwen3-32b", "GPT-4": "qwen3-32b"}}},
    "controller": {"forecaster": "persistence", "horizon_h": 6.0, "fine_horizon_h": 6.0},
}
"""The combined site (:func:`combined`): 2 days across the end of April (two billing
periods of the retail campus), one model family at BF16 and FP8."""


def combined(**overrides: Any) -> Scenario:
    """:data:`COMBINED` with dotted-key ``overrides``."""
    from mpc_dc.site.scenario import scenario_from_table

    return with_overrides(scenario_from_table(COMBINED, "<combined>"), overrides, "<test>")


FAST: dict[str, dict[str, object]] = {
    "sarimax": {"min_fit_hours": 24, "maxiter": 10},
    "ets": {"min_fit_hours": 24, "maxiter": 10},
    "auto_sarimax": {"min_fit_hours": 24, "maxiter": 10, "orders": ((1, 0, 0), (2, 0, 0)),
                     "daily_harmonics_grid": (1,)},
    "direct_lad": {"min_fit_hours": 24},
}
"""Statistical-model settings that fit in a blink on a day or two of history."""


def fast_fits(name: str, channels: Sequence[str]) -> dict[str, dict[str, object]]:
    """``make_forecasters(..., params=)`` giving forecaster ``name`` the :data:`FAST`
    settings on every channel (a combination's members too)."""
    # Each series' preset members (sarimax, direct_lad, ets, seasonal naive), fast.
    fast: dict[str, object] = ({"member_params": FAST} if name.startswith("combination")
                               else FAST.get(name, {}))
    return dict.fromkeys(channels, fast)


def prepared(scenario: Scenario) -> tuple[Scenario, SiteExogenous]:
    """:func:`mpc_dc.runner.prepare` (data, capacity, DR baseline)."""
    return prepare(scenario)


def offline_to_end_rolling(scenario: Scenario) -> tuple[RunResult, RunResult, RunResult]:
    """The offline optimum, the Oracle MPC with a horizon to the run end and the Oracle
    MPC with the scenario's rolling horizon, on the same data (and serving); none
    misses a deadline."""
    scenario, exo = prepare(scenario)
    serving = scenario.serving.config()

    def run(variant: Scenario) -> RunResult:
        return simulate(exo, build_policy(variant, exo), serving=serving)

    offline = run(controller_variant(scenario, "offline"))
    perfect_to_end = run(replace(scenario, controller=replace(
        scenario.controller, kind="perfect", horizon_to_end=True)))
    rolling = run(controller_variant(scenario, "perfect"))
    for result in (offline, perfect_to_end, rolling):
        assert result.kpis["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-6)
    return offline, perfect_to_end, rolling


def first_unpublished(exo: SiteExogenous, column: str, step: int) -> int:
    """Frame position of the first interval of ``column`` not published at the start of
    run interval ``step``."""
    rule = exo.publication.get(column, Publication())
    boundary = rule.observable_before(exo.time(step))
    return int((boundary - exo.frame.index[0]) // STEP)


def poisoned(exo: SiteExogenous, step: int, seed: int) -> SiteExogenous:
    """``exo`` with every value not yet published at the start of ``step`` garbage.

    Each exogenous column is poisoned from its first unpublished interval (an hourly
    series from the start of the hour holding ``step``, its garbage held over each
    hour as the real values are); requests arriving from ``step`` on get ``9 n + 50``
    response tokens (the demand columns follow them). A deferrable batch released
    before ``step`` stays as it was (:func:`_keep_released_batch`).
    """
    rng = np.random.default_rng(seed)
    frame = exo.frame.copy()
    demand = [c for c in frame.columns if c.startswith(("tokens_per_s[", "requests_per_h["))]
    for col in frame.columns:
        if col in demand or col.startswith(("dr_", "gpus_")):
            continue
        first = first_unpublished(exo, col, step)
        hold = max(1, int(exo.publication.get(col, Publication()).source_step // STEP))
        n = len(frame) - first
        values = np.abs(frame[col].to_numpy(dtype=float))
        scale = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
        garbage = np.repeat(rng.uniform(0.0, 1.0, -(-n // hold) + 1), hold)
        if col.startswith("renewable_cf"):
            frame.iloc[first:, frame.columns.get_loc(col)] = garbage[:n]
        elif col.startswith("price_"):
            frame.iloc[first:, frame.columns.get_loc(col)] = (3 * garbage[:n] - 1) * scale
        else:  # work and carbon stay non-negative
            frame.iloc[first:, frame.columns.get_loc(col)] = 2 * garbage[:n] * scale
        if col.startswith("workload_wu["):
            _keep_released_batch(exo, frame, col, step, first)
    requests = exo.requests
    # per-interval aggregates carry no request to lengthen (fluid runs)
    if isinstance(requests, RequestArrays):
        late = requests.arrival_s >= step * STEP.total_seconds()
        requests = replace(requests, response_tokens=np.where(
            late, requests.response_tokens * 9 + 50, requests.response_tokens))
        run = pd.DatetimeIndex(exo.run_index)
        truth = demand_columns(requests, run)
        frame.loc[run, truth.columns] = truth.to_numpy()
        frame.iloc[exo.history_steps + exo.n_steps:, [frame.columns.get_loc(c)
                                                      for c in demand]] *= 9.0
    return replace(exo, frame=frame, requests=requests)


def _keep_released_batch(exo: SiteExogenous, frame: pd.DataFrame, col: str, step: int,
                         first: int) -> None:
    """Rescale the poisoned workload of the window holding ``step`` so that its total is
    the real one: under ``window_start`` that window's batch (``share`` × its total) was
    submitted before it opened and released at its start, before ``step``."""
    campus = exo.site.campus(col[len("workload_wu["):-1])
    oit = campus.other_it
    if oit is None or oit.release != "window_start":
        return
    hist, W = exo.history_steps, oit.window_steps
    end = hist + min((step // W + 1) * W, exo.n_steps)
    j = frame.columns.get_loc(col)
    real = exo.frame.iloc[first:end, j].to_numpy(dtype=float).sum()
    dirty = frame.iloc[first:end, j].to_numpy(dtype=float)
    frame.iloc[first:end, j] = dirty * (real / dirty.sum())
