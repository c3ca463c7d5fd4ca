"""A simple rule-based fleet policy for serving tests and benchmarks.

Persistence forecast of each model's output-token demand; instances per campus
``ceil(headroom · demand · share_c / (ρ̄ μ))`` at one precision (at least one
per pool), routing by the campuses' GPU shares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from mpc_dc.sim.policy import Decision, FleetDecision, Observation
from mpc_dc.site.config import PoolKey, Site


class DemandFollower:
    """Rule policy (see module docstring).

    Parameters
    ----------
    site : Site
    initial_tokens_per_s : dict[str, float] [tokens/s]
        Demand assumed before the first observation.
    headroom : float [-]
    precision : str
    """

    name = "rule"

    def __init__(self, site: Site, initial_tokens_per_s: dict[str, float],
                 headroom: float = 1.25, precision: str = "BF16") -> None:
        self.site = site
        self.demand = dict(initial_tokens_per_s)
        self.headroom = headroom
        self.precision = precision

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep the last realized demand."""
        for m in self.site.models:
            self.demand[m] = values[f"tokens_per_s[{m}]"]

    def decide(self, obs: Observation) -> Decision:
        """Instances and shares for the coming interval."""
        fleet = self.site.fleet
        assert fleet is not None
        inst: dict[PoolKey, int] = {}
        route: dict[PoolKey, float] = {}
        planned: dict[PoolKey, float] = {}
        for m in self.site.models:
            cap = fleet.utilization_cap * fleet.capacity(m, self.precision)
            for c, s in self.site.fixed_shares().items():
                key = (c, m, self.precision)
                d = self.demand.get(m, 0.0) * s
                inst[key] = max(1, math.ceil(self.headroom * d / cap))
                route[key] = s
                planned[key] = d
        return Decision(fleet=FleetDecision(inst, route, planned), source="rule")
