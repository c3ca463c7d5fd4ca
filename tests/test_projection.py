"""An infeasible decision is projected on what the site can do and counted, never refused.

One run of the two-campus site (tests/test_engine.py) under a policy that breaks every
rule of :mod:`mpc_dc.sim.projection` on every interval; the ledger and the pool table
show what was executed, the KPIs count each rule once per interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import cast

import numpy as np
import pytest

from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision, Observation
from tests.scripted_policy import Scripted
from tests.test_engine import STEPS, busy_policy, two_campus_exo, two_campus_site

RULES = ("unknown_campus_in_decision", "unknown_pool_in_decision", "non_finite_in_decision",
         "instances_not_whole", "gpu_limit_exceeded", "routing_share_negative",
         "routing_shares_not_normalised", "battery_setpoint_infeasible", "negative_setpoint",
         "planned_flow_above_limit")


@pytest.fixture(scope="module")
def projected() -> RunResult:
    site = two_campus_site()
    inner = busy_policy(site)

    def decide(obs: Observation) -> Decision:
        good = inner.decide(obs)
        inst: dict[tuple[str, str, str], float] = dict(good.fleet.instances)
        inst[("Z", "qwen3-8b", "BF16")] = 2                  # no campus Z
        inst[("B", "qwen3-8b", "BF16")] = 500                # 500 GPUs on a 64-GPU campus
        inst[("A", "qwen3-32b", "BF16")] = 2.5               # not a whole number
        inst[("A", "qwen3-8b", "FP8")] = math.nan
        shares = {k: 2.0 * v for k, v in good.fleet.routing_share.items()}  # sum to 2
        shares[("A", "qwen3-8b", "FP8")] = -0.3
        a = CampusDecision(work_df_wu=-1.0, battery_charge_mw=50.0,          # 2 MW battery
                           planned_import_mw=99.0)                           # 12 MW limit
        campuses = {"A": a, "nowhere": CampusDecision(work_df_wu=5.0)}
        # Non-whole and NaN counts are outside FleetDecision's static type on purpose: a
        # policy is untyped at run time, and the projection must catch what it returns.
        counts = cast("Mapping[tuple[str, str, str], int]", inst)
        return Decision(campuses, FleetDecision(counts, shares), good.source)

    return simulate(two_campus_exo(site), Scripted(decide))


def test_every_rule_is_counted_once_per_interval(projected: RunResult) -> None:
    k = projected.kpis
    assert k["decision_projections"] == dict.fromkeys(RULES, STEPS)
    assert k["decision_projections_total"] == len(RULES) * STEPS
    assert set(projected.ledger["decision_source"]) == {"busy+projected"}


def test_the_plant_executes_the_projection(projected: RunResult) -> None:
    site = projected.site
    pools = projected.pools
    assert pools is not None
    inst = pools["instances"].unstack(["campus", "model", "precision"])
    gpus = sum(inst[k] * site.row(k).gpus_per_instance for k in inst.columns if k[0] == "B")
    assert (gpus <= 64).all() and (gpus > 32).all()      # scaled down, not dropped
    assert (inst[("A", "qwen3-32b", "BF16")] == 2).all()  # 2.5 rounded down
    assert (inst[("A", "qwen3-8b", "FP8")] == 0).all()    # NaN
    shares = pools["routing_share"].groupby(level=["interval_start_utc", "model"]).sum()
    np.testing.assert_allclose(shares, 1.0)
    assert (pools["routing_share"] >= 0).all()
    a = projected.campus_ledger("A")
    assert (a["battery_charge_mw"] <= 2.0 + 1e-9).all()
    assert (a["planned_import_mw"] == 12.0).all()
    assert (a["work_df_committed_wu"] == 0.0).all()


def test_a_feasible_decision_is_passed_on_untouched() -> None:
    site = two_campus_site()
    inner = busy_policy(site)

    def decide(obs: Observation) -> Decision:
        # The busy policy without its battery cycling (which discharges an empty battery).
        good = inner.decide(obs)
        a = CampusDecision(work_df_wu=good.campus("A").work_df_wu)
        return Decision({"A": a}, good.fleet, good.source)

    result = simulate(two_campus_exo(site), Scripted(decide))
    assert result.kpis["decision_projections"] == {}
    assert set(result.ledger["decision_source"]) == {"busy"}
