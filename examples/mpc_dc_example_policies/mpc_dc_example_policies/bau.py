"""A business-as-usual rule, written only against the public interface (mpc_dc.policy).

* Deferrable work: every released job runs as soon as possible (the whole backlog
  is committed each interval; the plant runs what its capacity allows).
* Inference: each model at BF16 (or its first allowed precision), on every campus
  with GPUs in proportion to the campus's GPUs, sized for the last published token
  demand (persistence): ``n = ceil(share · D / (ρ̄ · μ))`` instances, at least one
  per model, within the GPUs the campus has in the interval; requests routed in
  proportion to the instances.
* No battery, no planned curtailment or grid flows: the plant uses the renewable
  first, imports the deficit and exports a surplus at a positive price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from mpc_dc.policy import (
    CampusDecision,
    Decision,
    FleetDecision,
    Observation,
    PolicyContext,
    PoolKey,
)


class BusinessAsUsual:
    """Persistence-sized BF16 fleet at fixed campus shares, deferrable work at once.

    Parameters
    ----------
    context : PolicyContext
        The site, the history published before the run (the first persistence
        forecast) and the GPUs available over the run.
    """

    name = "example-bau"

    def __init__(self, context: PolicyContext) -> None:
        self.site = context.site
        fleet = self.site.fleet
        self.demand: dict[str, float] = {}
        for model in self.site.models:
            history = context.history.get(f"tokens_per_s[{model}]")
            known = pd.Series(dtype=float) if history is None else history.dropna()
            self.demand[model] = float(known.iloc[-1]) if len(known) else 0.0
        self.gpus = {c.name: context.schedule("gpus_available", c.name)
                     for c in self.site.campuses}
        total = sum(c.gpus for c in self.site.campuses)
        self.share = {c.name: c.gpus / total for c in self.site.campuses} if total else {}
        self.precision = {} if fleet is None else {
            m: "BF16" if "BF16" in fleet.precisions(m) else fleet.precisions(m)[0]
            for m in fleet.models}

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep each model's last published token demand [tokens/s]."""
        for model in self.site.models:
            value = values.get(f"tokens_per_s[{model}]")
            if value is not None and math.isfinite(value):
                self.demand[model] = float(value)

    def decide(self, obs: Observation) -> Decision:
        """The whole backlog now; the persistence-sized fleet."""
        campuses = {name: CampusDecision(work_df_wu=c.backlog_total_wu)
                    for name, c in obs.campuses.items()}
        return Decision(campuses, self._fleet(obs.step), source=self.name)

    def _fleet(self, step: int) -> FleetDecision:
        fleet = self.site.fleet
        if fleet is None:
            return FleetDecision()
        instances: dict[PoolKey, int] = {}
        for campus in self.site.campuses:
            free = int(self.gpus[campus.name][step])
            for model in self.site.models:
                key = (campus.name, model, self.precision[model])
                if key not in self.site.pools:
                    continue
                per = self.site.row(key).gpus_per_instance
                rate = fleet.utilization_cap * fleet.capacity(model, key[2])
                want = math.ceil(self.share[campus.name] * self.demand[model] / rate - 1e-9)
                n = max(min(want, free // per), 0)
                instances[key] = n
                free -= n * per
        for model in self.site.models:
            # A warm instance per model, so a request arriving anyway is served.
            mine = [k for k in instances if k[1] == model]
            if mine and not any(instances[k] for k in mine):
                instances[max(mine, key=lambda k: self.gpus[k[0]][step])] = 1
        routing: dict[PoolKey, float] = {}
        for model in self.site.models:
            total = sum(n for k, n in instances.items() if k[1] == model)
            routing.update({k: n / total for k, n in instances.items()
                            if k[1] == model and total})
        return FleetDecision(instances, routing)
