"""The receding horizon on the combined site (inference fleet, wind, other IT, battery, grid
with export, retail demand charge): issue 14's acceptance tests (a) and (b).

(a) Only the first interval of the plan is committed: forecasts changed beyond the first
    interval leave the committed decision as it was whenever they leave the plan's first
    interval as it was (and they change its later intervals: committing any of those would
    show); forecasts changed in the first interval change the decision.
(b) The Oracle MPC whose horizon reaches the run end equals the offline optimum within
    0.1 % on two days of the combined site with a retail demand charge.

Invariant (c), the books of every run, is checked by every ``simulate`` call
(:func:`mpc_dc.sim.engine.check_invariants`; injected bugs: tests/test_engine.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.problem import Plan
from mpc_dc.runner import build_policy
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.policy import Decision, Observation
from tests.loop_cases import combined, offline_to_end_rolling, prepared

Change = Callable[[str, np.ndarray], np.ndarray]
"""A change of one channel's forecast (channel name, values over the horizon)."""

BATTERY = {"energy_mwh": 0.01, "power_mw": 0.005, "initial_energy_mwh": 0.005}
"""A battery at the wind campus of :func:`tests.loop_cases.combined` (10 kWh, 5 kW)."""


def _campus(field: str) -> Callable[[Decision], list[float]]:
    return lambda d: [getattr(d.campuses[c], field) for c in sorted(d.campuses)]


COMMITMENTS: Mapping[str, Callable[[Decision], list[float]]] = {
    "instances": lambda d: [float(d.fleet.instances[k]) for k in sorted(d.fleet.instances)],
    "routing": lambda d: [d.fleet.routing_share.get(k, 0.0) for k in sorted(d.fleet.instances)],
    "planned tokens": lambda d: [d.fleet.planned_tokens_per_s.get(k, 0.0)
                                 for k in sorted(d.fleet.instances)],
    "deferrable work": _campus("work_df_wu"),
    "battery charge": _campus("battery_charge_mw"),
    "battery discharge": _campus("battery_discharge_mw"),
    "curtailment": _campus("curtailed_mw"),
    "import": _campus("planned_import_mw"),
    "export": _campus("planned_export_mw"),
}
"""What a decision commits, as numbers (pools and campuses in name order)."""


def scaled(prefix: str, factor: float, where: slice) -> Change:
    """Multiply the forecast of every channel named ``prefix[...]`` by ``factor`` over
    the horizon intervals ``where``."""
    def change(channel: str, values: np.ndarray) -> np.ndarray:
        if not channel.startswith(prefix + "["):
            return values
        out = np.array(values, dtype=float)
        out[where] *= factor
        return out
    return change


BEYOND_FIRST: Mapping[str, Change] = {
    "negative price in interval 1": scaled("price_usd_per_mwh", -1.0, slice(1, 2)),
    "ten times the price in interval 1": scaled("price_usd_per_mwh", 10.0, slice(1, 2)),
    "twice the token demand after interval 0": scaled("tokens_per_s", 2.0, slice(1, None)),
    "half the other-IT workload after interval 0": scaled("workload_wu", 0.5, slice(1, None)),
}
"""Forecast changes beyond the first interval (each moves later intervals of the plan)."""

IN_FIRST: Mapping[str, Change] = {
    "negative price in interval 0": scaled("price_usd_per_mwh", -1.0, slice(0, 1)),
    "three times the token demand in interval 0": scaled("tokens_per_s", 3.0, slice(0, 1)),
}
"""Forecast changes in the first interval (the counterpart: the decision must move)."""


@contextmanager
def forecasts_changed(policy: MpcPolicy, change: Change) -> Iterator[None]:
    """The policy's point and quantile forecasts with ``change`` applied, for the block."""
    forecasts = policy.forecasts
    predict, quantile = forecasts.predict, forecasts.quantile

    def changed_predict(time: pd.Timestamp, steps: int, only: Sequence[str] | None = None
                        ) -> dict[str, np.ndarray]:
        return {c: change(c, v) for c, v in predict(time, steps, only).items()}

    def changed_quantile(channel: str, time: pd.Timestamp, steps: int, level: float
                         ) -> np.ndarray:
        return change(channel, quantile(channel, time, steps, level))

    forecasts.predict = changed_predict  # type: ignore[method-assign]
    forecasts.quantile = changed_quantile  # type: ignore[method-assign]
    try:
        yield
    finally:
        del forecasts.predict, forecasts.quantile  # back to the class's methods


PLAN_ARRAYS = ("instances", "starts", "tokens_per_s", "unserved_tokens_per_s", "work_df_wu",
               "renewable_used_mw", "curtailed_mw", "import_mw", "export_mw",
               "battery_charge_mw", "battery_discharge_mw", "battery_energy_mwh")
"""The plan's decisions per interval (its first interval is what must not move)."""


def first_interval_moves(a: Plan, b: Plan) -> bool:
    """Whether the first interval of two plans differs (beyond rounding)."""
    return any(not np.allclose(getattr(a, f)[..., 0], getattr(b, f)[..., 0], rtol=1e-7,
                               atol=1e-9) for f in PLAN_ARRAYS)


def moves(a: Decision, b: Decision, what: str) -> bool:
    """Whether two decisions commit ``what`` differently (beyond rounding)."""
    x, y = COMMITMENTS[what](a), COMMITMENTS[what](b)
    return len(x) != len(y) or not np.allclose(x, y, rtol=1e-7, atol=1e-9, equal_nan=True)


def same_decision(a: Decision, b: Decision) -> bool:
    """Equal commitments (:data:`COMMITMENTS`, to rounding)."""
    return set(a.campuses) == set(b.campuses) and not any(moves(a, b, w) for w in COMMITMENTS)


def test_only_the_first_interval_of_the_plan_is_committed() -> None:
    """Twelve hours of the combined site with a battery, forecast MPC (persistence, 6-h
    horizon), fluid serving. At every step the policy decides three more times with a
    forecast changed beyond its first interval, and twice with one changed in it.

    Whenever a change beyond the first interval leaves the plan's first interval as it
    was, the committed decision (instances per pool, routing, deferrable work,
    battery, curtailment, import and export) is the same; each of those is moved in the
    plan's second interval on some of these steps, so a policy committing any of them
    from there fails. A change in the first interval moves the decision at every step.
    """
    scenario, exo = prepared(combined(**{"run.days": 0.5, "serving.fidelity": "fluid",
                                         "workload.requests.rate_multiplier": 20.0,
                                         "site.campuses[0].battery": BATTERY}))
    policy = build_policy(scenario, exo)
    assert isinstance(policy, MpcPolicy)
    decide = policy.decide
    kept: Counter[str] = Counter()
    moved_later: Counter[str] = Counter()
    moved_by_first: Counter[str] = Counter()

    def plan_and_decision(obs: Observation, change: Change) -> tuple[Plan, Decision]:
        with forecasts_changed(policy, change):
            decision = decide(obs)
        assert policy.last_result is not None and policy.last_result.plan is not None
        return policy.last_result.plan, decision

    def checked(obs: Observation) -> Decision:
        changed = {name: plan_and_decision(obs, change)
                   for name, change in {**BEYOND_FIRST, **IN_FIRST}.items()}
        decision = decide(obs)  # the clean one is committed
        assert policy.last_result is not None and policy.last_result.plan is not None
        plan = policy.last_result.plan
        for name in BEYOND_FIRST:
            other_plan, other = changed[name]
            if first_interval_moves(other_plan, plan):
                continue  # the change reached the first interval: nothing to check
            kept[name] += 1
            assert same_decision(other, decision), (name, obs.step)
            for what in COMMITMENTS:
                moved_later[what] += moves(other_plan.decision(1), plan.decision(1), what)
        for name in IN_FIRST:
            moved_by_first[name] += not same_decision(changed[name][1], decision)
        return decision

    policy.decide = checked  # type: ignore[method-assign]
    result = simulate(exo, policy, serving=scenario.serving.config())
    n = exo.n_steps
    assert result.kpis["fallbacks_total"] == 0
    # Each change beyond the first interval left that interval alone on several steps
    # (the price spike in interval 1 least often: the battery charges ahead of it in
    # interval 0; 4 of the 24 steps with the lateness block in the plan, 5 without, 3
    # since the planner prices the batch curve, mpc_dc.params.power_line; twelve hours
    # since the plan prices congestion, controller.congestion_share: in six, a negative
    # price in interval 1 left interval 0 alone on 2 steps, and the battery's charge
    # and the curtailment moved in interval 1 on 1 each) ...
    assert all(kept[name] >= 3 for name in BEYOND_FIRST), kept
    # ... while moving every kind of commitment in the second one on some of them.
    assert all(moved_later[what] >= 2 for what in COMMITMENTS), moved_later
    # The counterpart: the first interval's inputs do reach the decision.
    assert all(moved_by_first[name] == n for name in IN_FIRST), moved_by_first


@pytest.mark.slow
def test_oracle_mpc_reaching_the_end_equals_the_offline_optimum_on_the_combined_site(
) -> None:
    """Two days of the combined site (inference, wind, deferrable other IT at the wind
    campus, which pays a retail demand charge; no export there, so that the net cost is
    the bill and not a small difference of import and export), fluid serving.

    By the principle of optimality the Oracle MPC re-solving the rest of the offline
    problem every 15 minutes adds up to the offline optimum: within 0.1 % (the plant
    serves on its own curves, not the plan's). This holds only if the MPC solves the
    offline problem, whole instances in every interval: with a relaxed tail it cost
    3 x the optimum here (a fraction of an idle instance draws a fraction of its
    power, so the plan deferred work to wind it did not have and set a peak). The
    rolling 12-h horizon cannot see the peak a day ahead and costs more.
    Slow (about 15 s of CPU): 192 solves of the whole 2-day problem.
    """
    scenario = combined(**{
        "serving.fidelity": "fluid", "controller.horizon_h": 12.0,
        "controller.fine_horizon_h": 12.0, "site.campuses[0].grid.export_limit_mw": 0.0,
        "site.campuses[0].grid.tariff": {"kind": "retail", "demand_charge_usd_per_kw": 12.39}})
    offline, perfect_to_end, rolling = offline_to_end_rolling(scenario)
    c_off = offline.kpis["cost_usd"]
    assert offline.kpis["demand_charge_usd"] > 0.5 * c_off  # the charge matters here
    k = offline.kpis
    assert k["tokens_served"] > 0 and k["work_df_done_wu"] > 0 and k["renewable_used_mwh"] > 0
    assert perfect_to_end.kpis["cost_usd"] == pytest.approx(c_off, rel=1e-3)
    assert rolling.kpis["cost_usd"] > c_off * (1 + 1e-3)
