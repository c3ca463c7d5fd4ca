"""A policy for engine tests: commits what a function of the observation says, keeps what it saw."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd

from mpc_dc.sim.policy import Decision, Observation


class Scripted:
    """Commits ``decide(obs)``; keeps the observations and what was published."""

    name = "scripted"

    def __init__(self, decide: Callable[[Observation], Decision]) -> None:
        self._decide = decide
        self.observations: list[Observation] = []
        self.observed: list[tuple[pd.Timestamp, dict[str, float]]] = []

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep the published values."""
        self.observed.append((time, dict(values)))

    def decide(self, obs: Observation) -> Decision:
        """Keep the observation; commit the script's decision."""
        self.observations.append(obs)
        return self._decide(obs)
