"""A simple rule-based fleet policy for serving tests and benchmarks.

Persistence forecast of each model's output-token demand; instances per campus
``ceil(headroom · demand · share_c / (ρ̄ · μ))`` at one precision (at least one
per pool), routing by the campuses' GPU shares.
"""

from __future__ import annotations

import math

import pandas as pd

from mpc_dc.params.fleet import FleetConfig
from mpc_dc.sim.fleet_decision import FleetDecision, PoolKey
from mpc_dc.sim.fleet_engine import ServingObservation


class DemandFollower:
    """Rule policy (see module docstring).

    Parameters
    ----------
    config : FleetConfig
    initial_tokens_per_s : dict[str, float] [tokens/s]
        Demand assumed before the first observation.
    headroom : float [-]
    precision : str
    """

    name = "rule"

    def __init__(
        self,
        config: FleetConfig,
        initial_tokens_per_s: dict[str, float],
        headroom: float = 1.25,
        precision: str = "BF16",
    ) -> None:
        self.config = config
        self.demand = dict(initial_tokens_per_s)
        self.headroom = headroom
        self.precision = precision

    def observe(self, time: pd.Timestamp, values: dict[str, float]) -> None:
        """Keep the last realized demand."""
        for m in self.config.models:
            self.demand[m] = values[f"tokens_per_s[{m}]"]

    def decide(self, obs: ServingObservation) -> FleetDecision:
        """Instances and shares for the coming interval."""
        shares_c = self.config.fixed_shares()
        inst: dict[PoolKey, int] = {}
        route: dict[PoolKey, float] = {}
        planned: dict[PoolKey, float] = {}
        for m in self.config.models:
            row = self.config.table.get(m, self.precision)
            for c, s in shares_c.items():
                key = (c, m, self.precision)
                d = self.demand.get(m, 0.0) * s
                cap = self.config.utilization_cap * row.tokens_per_s_at_slo
                inst[key] = max(1, math.ceil(self.headroom * d / cap))
                route[key] = s
                planned[key] = d
        return FleetDecision(inst, route, planned, "rule")
