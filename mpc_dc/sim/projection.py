"""What the simulator does with a decision the plant cannot carry out: project it, count it.

A policy may return any :class:`~mpc_dc.sim.policy.Decision`; the engine never
refuses one and never crashes on one. Before serving and the plant run interval
``t`` it projects the decision onto what the site can do in ``t``, rule by rule,
and counts each rule that changed something (once per interval and rule, KPI
``decision_projections``; the ledger row's ``decision_source`` gets
``+projected``). A value within :data:`TOLERANCE` of its limit is left as it is
(the plant absorbs rounding). The rules, with their counter names:

1. ``unknown_campus_in_decision``, ``unknown_pool_in_decision``: entries naming a
   campus or pool the site does not have are dropped.
2. ``non_finite_in_decision``: a NaN or infinite number becomes 0 (an instance
   count, a share, a set-point, a planned flow).
3. ``instances_not_whole``: an instance count that is negative or not a whole
   number becomes ``max(0, floor(n))``.
4. ``gpu_limit_exceeded``: a campus whose committed instances need more GPUs than
   it has in ``t`` (``gpus_available[C]``, else its ``gpus``) has every pool's count
   scaled by ``available / needed`` and rounded down, which always fits.
5. ``routing_share_negative``: a negative share becomes 0;
   ``routing_shares_not_normalised``: a model's shares that do not sum to 1 are
   divided by their sum. A model without any positive share stays unrouted: its
   requests are dropped and counted by serving (``dropped_no_route``).
6. ``battery_setpoint_infeasible``: charge and discharge are clipped to
   ``[0, power_mw]`` and to what the battery's energy allows in the interval
   (:meth:`~mpc_dc.sim.plant.CampusPlant.feasible_battery`).
7. ``negative_setpoint``: negative deferrable work or curtailment becomes 0.
8. ``planned_flow_above_limit``: planned import or export outside
   ``[0, limit]`` is clipped to it (planned flows are reported, and a planned
   import decides whether committed curtailment is executed).

What is *not* a projection but the plant's recourse (:mod:`mpc_dc.sim.plant`),
because it depends on what the interval brings rather than on limits known when
deciding: deferrable work above the backlog or the capacity left by the
non-deferrable work, shedding when the import limit binds, and inference drawing
more than the connection carries (recorded as ``import_over_limit_mw``, KPIs
``import_over_limit_mwh`` and ``import_over_limit_intervals``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from mpc_dc.sim.plant import CampusPlant
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision, PoolKey
from mpc_dc.site.config import Site

TOLERANCE = 1e-6
"""Excess over a limit treated as rounding, not projected [units of the value]."""

PROJECTED = "+projected"
"""Suffix of a projected decision's ``source`` (the ledger's ``decision_source``)."""


def _finite(value: float, counts: Counter[str]) -> float:
    value = float(value)
    if math.isfinite(value):
        return value
    counts["non_finite_in_decision"] += 1
    return 0.0


def _on_known_pools(values: Mapping[PoolKey, float], known: Mapping[PoolKey, int],
                    counts: Counter[str]) -> dict[PoolKey, float]:
    """Rules 1 and 2 on per-pool values: unknown pools dropped, non-finite values 0."""
    out: dict[PoolKey, float] = {}
    for key, raw in values.items():
        if key not in known:
            counts["unknown_pool_in_decision"] += 1
            continue
        out[key] = _finite(raw, counts)
    return out


def _instances(fleet: FleetDecision, known: Mapping[PoolKey, int],
               counts: Counter[str]) -> dict[PoolKey, int]:
    """Rules 1-3 on the instance counts."""
    out: dict[PoolKey, int] = {}
    for key, value in _on_known_pools(fleet.instances, known, counts).items():
        whole = max(0, math.floor(value))
        if whole != value:
            counts["instances_not_whole"] += 1
        out[key] = whole
    return out


def _fit_gpus(site: Site, instances: dict[PoolKey, int], gpus_available: Sequence[float],
             counts: Counter[str]) -> dict[PoolKey, int]:
    """Rule 4: scale each over-committed campus's pools down to its available GPUs."""
    for c, campus in enumerate(site.campuses):
        mine = [k for k in instances if k[0] == campus.name]
        need = sum(instances[k] * site.row(k).gpus_per_instance for k in mine)
        have = float(gpus_available[c])
        if need <= have + TOLERANCE:
            continue
        counts["gpu_limit_exceeded"] += 1
        ratio = max(have, 0.0) / need
        for k in mine:
            instances[k] = math.floor(instances[k] * ratio + 1e-9)
    return instances


def _shares(fleet: FleetDecision, known: Mapping[PoolKey, int],
            counts: Counter[str]) -> dict[PoolKey, float]:
    """Rules 1, 2 and 5 on the routing shares."""
    shares = _on_known_pools(fleet.routing_share, known, counts)
    if any(v < -TOLERANCE for v in shares.values()):
        counts["routing_share_negative"] += 1
    shares = {k: max(v, 0.0) for k, v in shares.items()}
    totals: dict[str, float] = {}
    for key, value in shares.items():
        totals[key[1]] = totals.get(key[1], 0.0) + value
    off = {m for m, total in totals.items() if total > 0 and abs(total - 1.0) > TOLERANCE}
    if off:
        counts["routing_shares_not_normalised"] += 1
        shares = {k: v / totals[k[1]] if k[1] in off else v for k, v in shares.items()}
    return shares


def _campus(plant: CampusPlant, decision: CampusDecision, counts: Counter[str]
            ) -> CampusDecision:
    """Rules 2 and 6-8 on one campus's set-points."""
    grid = plant.campus.grid
    before = sum(counts.values())
    values = {name: _finite(getattr(decision, name), counts) for name in (
        "work_df_wu", "battery_charge_mw", "battery_discharge_mw", "curtailed_mw")}
    for name in ("work_df_wu", "curtailed_mw"):
        if values[name] < -TOLERANCE:
            counts["negative_setpoint"] += 1
            values[name] = 0.0
    charge, discharge = plant.feasible_battery(values["battery_charge_mw"],
                                               values["battery_discharge_mw"])
    if (abs(charge - values["battery_charge_mw"]) > TOLERANCE
            or abs(discharge - values["battery_discharge_mw"]) > TOLERANCE):
        counts["battery_setpoint_infeasible"] += 1
        values["battery_charge_mw"], values["battery_discharge_mw"] = charge, discharge
    planned: dict[str, float] = {}
    for name, limit in (("planned_import_mw", grid.import_limit_mw),
                        ("planned_export_mw", grid.export_limit_mw)):
        value = float(getattr(decision, name))
        # NaN means "no plan" (a rule policy): reported as such, not a projection.
        if not math.isnan(value) and not -TOLERANCE <= value <= limit + TOLERANCE:
            counts["planned_flow_above_limit"] += 1
            value = min(max(value, 0.0), limit) if math.isfinite(value) else 0.0
        planned[name] = value
    # Every count above changed a value; an untouched decision is passed on as it is.
    if sum(counts.values()) == before:
        return decision
    return replace(decision, **values, **planned)


def project_decision(
    site: Site,
    decision: Decision,
    plants: Sequence[CampusPlant],
    pool_index: Mapping[PoolKey, int],
    gpus_available: Sequence[float],
) -> tuple[Decision, Counter[str]]:
    """``decision`` projected on what the site can do now, and what was projected.

    Parameters
    ----------
    site : Site
    decision : Decision
        As the policy returned it.
    plants : sequence of CampusPlant
        The campuses' plants in site order, in their state at the interval start
        (battery energy).
    pool_index : Mapping[PoolKey, int]
        The site's pools (empty without a fleet).
    gpus_available : sequence of float [GPUs]
        Per campus in site order, in this interval.

    Returns
    -------
    decision : Decision
        ``decision`` itself when nothing was projected, else a copy with the
        projected values and :data:`PROJECTED` appended to its ``source``.
    counts : Counter[str]
        Each rule that changed something, counted once (module docstring).
    """
    seen: Counter[str] = Counter()
    names = site.campus_names
    campuses: dict[str, CampusDecision] = {}
    for name, campus_decision in decision.campuses.items():
        if name not in names:
            seen["unknown_campus_in_decision"] += 1
            continue
        campuses[name] = _campus(plants[names.index(name)], campus_decision, seen)
    fleet = decision.fleet
    instances = _fit_gpus(site, _instances(fleet, pool_index, seen), gpus_available, seen)
    shares = _shares(fleet, pool_index, seen)
    counts = Counter(dict.fromkeys(seen, 1))
    if not counts:
        return decision, counts
    planned = {k: v for k, v in fleet.planned_tokens_per_s.items() if k in pool_index}
    projected = replace(decision, campuses=campuses,
                        fleet=FleetDecision(instances, shares, planned),
                        source=decision.source + PROJECTED)
    return projected, counts


__all__ = ["PROJECTED", "TOLERANCE", "project_decision"]
