"""The business-as-usual rule: no optimizer, no forecast beyond persistence.

* Other IT: every released deferrable job runs as soon as possible (the whole
  backlog is committed each interval; the plant runs what its capacity allows).
* Inference: each model at its rule precision (BF16 where allowed) on every campus
  with GPUs, at the fixed campus shares ``G[c] / Σ G``, sized for the persistence
  forecast of its demand (the last published interval):
  ``n[c,m] = ceil(φ[c] D[m] / (ρ̄ μ[m]))`` with ``μ`` the capacity the optimizer
  plans with (:meth:`~mpc_dc.site.config.Fleet.capacity`), capped by the campus's
  free GPUs (those observed when fewer than installed: a GPU loss); at least
  ``min_instances_per_model`` instances per model stay warm
  (:func:`with_min_instances`).
* No battery, no planned curtailment, no planned import or export: the plant uses
  the renewable first, imports the deficit and exports a surplus when the last
  published price is positive (no export price committed: the engine's persistence of
  the price, :mod:`mpc_dc.sim.plant`, step 6).

:func:`rule_decision` is also the MPC's last fallback (the safe action).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mpc_dc.problem import routing_shares
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.policy import (
    CampusDecision,
    Decision,
    FleetDecision,
    Observation,
    PoolKey,
)
from mpc_dc.site.config import Site


def rule_precision(site: Site, model: str) -> str:
    """The precision the rule serves ``model`` at: BF16 when the fleet allows it, else
    the first allowed one."""
    if site.fleet is None:
        raise ValueError(f"rule_precision: the site has no fleet to serve {model!r} on; "
                         "expected a site with a [fleet]")
    allowed = site.fleet.precisions(model)
    return "BF16" if "BF16" in allowed else allowed[0]


def capacities(site: Site) -> dict[PoolKey, float]:
    """μ of every pool [tokens/s] (:meth:`~mpc_dc.site.config.Fleet.capacity`)."""
    fleet = site.fleet
    if fleet is None:
        return {}
    return {k: fleet.capacity(k[1], k[2]) for k in site.pools}


def rule_fleet(site: Site, demand_tokens_per_s: Sequence[float],
               gpus: Mapping[str, float] | None = None) -> FleetDecision:
    """Instances at the rule precision and fixed shares for ``demand`` (module docstring).

    Parameters
    ----------
    demand_tokens_per_s : sequence [tokens/s]
        One value per model in ``site.models`` order.
    gpus : Mapping[str, float], optional [GPUs]
        GPUs each campus has (default and at most: its installed ones).
    """
    fleet = site.fleet
    if fleet is None:
        return FleetDecision()
    shares = site.fixed_shares()
    inst: dict[PoolKey, int] = {}
    planned: dict[PoolKey, float] = {}
    for campus in site.campuses:
        if campus.gpus <= 0:
            continue
        free = min(campus.gpus, int((gpus or {}).get(campus.name, campus.gpus)))
        for model, d in zip(site.models, demand_tokens_per_s, strict=True):
            q = rule_precision(site, model)
            key = (campus.name, model, q)
            row = fleet.table.get(model, q)
            cap = fleet.utilization_cap * fleet.capacity(model, q)
            want = max(float(d), 0.0) * shares[campus.name]
            n = min(int(np.ceil(want / cap - 1e-9)), free // row.gpus_per_instance)
            free -= n * row.gpus_per_instance
            inst[key] = n
            planned[key] = min(want, n * cap)
    # Shares only to pools that get instances (a share on a pool without capacity
    # leaves its requests queued forever).
    return FleetDecision(inst, routing_shares(inst, planned, site.models, capacities(site)),
                         planned)


def with_min_instances(site: Site, fleet: FleetDecision, current: Mapping[PoolKey, int],
                       min_per_model: int) -> FleetDecision:
    """Keep at least ``min_per_model`` instances of every model (a warm floor).

    A plan for zero forecast demand leaves a model without an instance, so a request
    arriving anyway could not be served (and, unrouted, would not be seen by the
    demand forecaster either). Missing instances go to the model's pool with the most
    instances now (no start), else to the rule precision at the campus with the most
    free GPUs; routing is then recomputed over the pools with instances.

    Parameters
    ----------
    current : Mapping[PoolKey, int]
        Instances running or starting now.
    min_per_model : int [instances]
    """
    if min_per_model <= 0 or site.fleet is None:
        return fleet
    table = site.fleet.table
    inst = {k: int(v) for k, v in fleet.instances.items()}
    changed = False
    for model in site.models:
        have = sum(v for k, v in inst.items() if k[1] == model)
        if have >= min_per_model:
            continue
        pools = [k for k in site.pools if k[1] == model]
        running = [k for k in pools if current.get(k, 0) > 0]
        if running:
            pool = max(running, key=lambda k: current.get(k, 0))
        else:
            used = {c.name: sum(table.get(k[1], k[2]).gpus_per_instance * v
                                for k, v in inst.items() if k[0] == c.name)
                    for c in site.campuses}
            free = {c.name: c.gpus - used[c.name] for c in site.campuses}
            q = rule_precision(site, model)
            pool = max((k for k in pools if k[2] == q), key=lambda k: free[k[0]])
        inst[pool] = inst.get(pool, 0) + (min_per_model - have)
        changed = True
    if not changed:
        return fleet
    planned = dict(fleet.planned_tokens_per_s)
    return FleetDecision(inst, routing_shares(inst, planned, site.models, capacities(site)),
                         planned)


def rule_decision(site: Site, obs: Observation, demand_tokens_per_s: Sequence[float],
                  source: str, min_instances_per_model: int = 0) -> Decision:
    """The rule's decision at ``obs``: the whole backlog of every campus, the rule fleet
    for ``demand`` on the GPUs observed with the warm floor; no battery, curtailment or
    planned flows."""
    campuses = {name: CampusDecision(work_df_wu=obs.campuses[name].backlog_total_wu)
                for name in site.campus_names if name in obs.campuses}
    gpus = {name: o.gpus_available for name, o in obs.campuses.items()
            if o.gpus_available is not None}
    fleet = with_min_instances(site, rule_fleet(site, demand_tokens_per_s, gpus), obs.fleet(),
                               min_instances_per_model)
    return Decision(campuses, fleet, source)


class BaselinePolicy:
    """Business as usual (module docstring): persistence demand, fixed shares, ASAP work.

    Parameters
    ----------
    exo : SiteExogenous
        Its site, and the demand published at the run start (the persistence forecast
        of the first interval).
    min_instances_per_model : int [instances]
        Warm floor.
    """

    name = "baseline"

    def __init__(self, exo: SiteExogenous, min_instances_per_model: int = 1) -> None:
        self.site = exo.site
        self.min_instances_per_model = min_instances_per_model
        self.demand: dict[str, float] = {}
        for model in self.site.models:
            history = exo.published_history(column("tokens_per_s", model)).dropna()
            self.demand[model] = float(history.iloc[-1]) if len(history) else 0.0

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep each model's last published demand (values arrive in time order)."""
        for model in self.site.models:
            value = values.get(column("tokens_per_s", model))
            if value is not None and np.isfinite(value):
                self.demand[model] = float(value)

    def decide(self, obs: Observation) -> Decision:
        """Run the backlog now; size the rule fleet for the last published demand."""
        return rule_decision(self.site, obs, [self.demand[m] for m in self.site.models],
                             "baseline", self.min_instances_per_model)
