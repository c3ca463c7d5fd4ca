"""The fleet decision committed for one interval: the contract between the fleet MPC and serving.

A *pool* is all instances of one model family at one precision on one campus,
keyed ``(campus, model, precision)``; its per-instance characteristics come from
the quantization-to-power table (:mod:`mpc_dc.params.quant_table`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PoolKey = tuple[str, str, str]
"""``(campus, model, precision)``."""


@dataclass(frozen=True)
class FleetDecision:
    """Instances and routing of one interval.

    Attributes
    ----------
    instances : Mapping[PoolKey, int]
        Instances that should be running in the interval (scale-up takes the load
        time to arrive; scale-down drains).
    routing_share : Mapping[PoolKey, float]
        Share [-] of a model's requests sent to each pool; for each model the shares
        over its pools sum to 1 (pools of a model with no demand may be absent).
    planned_tokens_per_s : Mapping[PoolKey, float]
        The plan's output-token throughput of each pool [tokens/s], for reporting.
    source : str
        Which policy path produced it.
    """

    instances: Mapping[PoolKey, int]
    routing_share: Mapping[PoolKey, float]
    planned_tokens_per_s: Mapping[PoolKey, float] = field(default_factory=dict)
    source: str = "rule"

    def __post_init__(self) -> None:
        for key, count in self.instances.items():
            if count < 0:
                raise ValueError(f"FleetDecision: negative instance count for pool {key}")
        totals: dict[str, float] = {}
        for (_, model, _), share in self.routing_share.items():
            if share < -1e-9:
                raise ValueError(f"FleetDecision: negative routing share for model {model}")
            totals[model] = totals.get(model, 0.0) + share
        for model, total in totals.items():
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"FleetDecision: routing shares of model {model} sum to {total}")

    def shares_of(self, model: str) -> dict[PoolKey, float]:
        """Routing shares of one model's pools."""
        return {k: v for k, v in self.routing_share.items() if k[1] == model and v > 0}
