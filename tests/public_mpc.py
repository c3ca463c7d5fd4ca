"""Our MPC behind the public policy interface: built from a PolicyContext alone.

:class:`PublicMpc` rebuilds a :class:`~mpc_dc.sim.exogenous.SiteExogenous` from what
the context holds (:func:`mpc_dc.context_mpc.context_exogenous`) — the history
published before the run, the schedules published ahead of it — with every run-period
channel value set to 0 and no requests, and builds the scenario's controller on it
(:func:`mpc_dc.runner.build_policy`). If the MPC read any future exogenous value, it
would read these zeros and decide otherwise:
``tests/test_policy_interface.py`` checks that it gives the KPIs of ``mpc-dc run``.
Forecast-driven MPC only: the Oracle and published day-ahead prices
(``controller.price_known_ahead``) read the truth, which the context does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from mpc_dc.context_mpc import context_exogenous
from mpc_dc.policy import Decision, Observation, PolicyContext
from mpc_dc.runner import build_policy

__all__ = ["PublicMpc", "context_exogenous"]


class PublicMpc:
    """The scenario's ``[controller]`` built on :func:`context_exogenous`."""

    def __init__(self, context: PolicyContext) -> None:
        self.inner = build_policy(context.scenario, context_exogenous(context))
        self.name = f"public-{self.inner.name}"
        # The KPIs read the solver counters of the policy they are given.
        self.stats = getattr(self.inner, "stats", None)

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Pass the published values on."""
        self.inner.observe(time, values)

    def decide(self, obs: Observation) -> Decision:
        """The inner MPC's decision."""
        return self.inner.decide(obs)
