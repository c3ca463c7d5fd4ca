"""A scenario-based stochastic MPC, written against the public interface (mpc_dc.policy).

Its inputs are the :class:`~mpc_dc.policy.PolicyContext`, what ``observe`` receives
and the ``Observation`` of ``decide``; it uses mpc-dc as a library for the rest:
the scenario's forecast-driven MPC built from the context alone
(:func:`mpc_dc.context_mpc.context_mpc`: its forecasters, horizon, state and
fallback chain) and the two-stage problem over scenarios
(:mod:`mpc_dc.control.stochastic`).

Every 15 minutes, with S = ``controller.scenarios`` (default 5):

* **Scenarios.** Scenario 0 is the deterministic MPC's own horizon (point forecasts;
  token demand at ``controller.demand_quantile`` plus the queue now). Scenarios
  1..S−1 draw every forecast channel (price, carbon, renewable capacity factor,
  other-IT workload, token demand per model) from its calibrated quantile forecast
  (``predict_quantiles`` at :data:`~mpc_dc.control.stochastic.SAMPLE_LEVELS`): one
  quantile path per channel and scenario at a level drawn uniformly
  (:func:`~mpc_dc.control.stochastic.sample_paths`), channels independent, from a
  generator seeded with ``(run.seed, step)`` — the same run gives the same
  scenarios. The first interval is the point forecast's in every scenario (it is
  decided now; the plant's recourse absorbs its error, as it does the MPC's). A
  channel whose forecaster has no spread yet (too little history) or fails keeps its
  point forecast.
* **One two-stage problem** (:class:`~mpc_dc.control.stochastic.ScenarioProblem`):
  the sample-average approximation — equal weights 1/S — of the expected cost (with
  the MPC's lateness block: backlog and congestion priced), as
  one LP with the first interval's decisions (instances, routing, deferrable work,
  battery, import/export, curtailment) shared by all scenarios (non-anticipativity)
  and the later intervals per scenario; the first interval's instances are rounded
  as the MPC's round-and-fix rounds them and the LP re-solved with them fixed.
* **Commit** the first interval, with the MPC's warm floor of instances per model and
  its curtailment rule (a curtailment while importing only where the price is negative
  with ``controller.curtail_confidence``,
  :meth:`~mpc_dc.control.mpc.MpcPolicy.confident_curtailment`).
  Where the two-stage LP fails (solver status, a relaxation its repair cannot make
  exact under negative prices, inputs no schedule satisfies), the deterministic MPC
  decides instead (its own fallback chain), counted as ``fallbacks["deterministic_mpc"]``.

With S = 1 it is the deterministic MPC (``tests/test_example_policies.py`` checks the
first-interval decisions match).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from forecasters.base import LookaheadError
from mpc_dc.context_mpc import context_mpc
from mpc_dc.control.baseline import with_min_instances
from mpc_dc.control.faults import known_now
from mpc_dc.control.forecasting import FORECAST_EXCEPTIONS
from mpc_dc.control.mpc import SOLVER_EXCEPTIONS, build_horizon, project
from mpc_dc.control.stochastic import SAMPLE_LEVELS, ScenarioProblem, sample_paths
from mpc_dc.policy import Decision, Observation, PolicyContext
from mpc_dc.problem import HorizonInputs, PlantState

logger = logging.getLogger(__name__)


class StochasticMpc:
    """Two-stage scenario MPC on samples of the calibrated quantile forecasts.

    Parameters
    ----------
    context : PolicyContext
        The scenario as run (its ``[controller]``: forecaster, horizon, demand
        quantile, ``scenarios``; ``run.seed``), the history and the schedules.
    """

    name = "example-smpc"

    def __init__(self, context: PolicyContext) -> None:
        self.mpc = context_mpc(context)
        self.site = context.site
        self.n_scenarios = context.scenario.controller.scenarios
        self.seed = context.scenario.run.seed
        # The KPIs read the solver counters of the policy they are given.
        self.stats = self.mpc.stats
        self.problem = ScenarioProblem(self.site, self.mpc.horizon_steps, self.mpc.options,
                                       self.n_scenarios,
                                       demand_response=self.mpc.demand_response,
                                       lateness=self.mpc.lateness)

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Pass the published values to the forecasters."""
        self.mpc.observe(time, values)

    def decide(self, obs: Observation) -> Decision:
        """Scenarios, the two-stage LP, its first interval (module docstring)."""
        inputs, state = project(self.site, *self.mpc.horizon_inputs(obs), self.stats.faults)
        horizons = [(inputs, state), *self.sampled_horizons(obs, inputs)]
        try:
            result = self.problem.solve(horizons)
        except SOLVER_EXCEPTIONS as err:  # InfeasibleInputError is a ValueError
            return self._deterministic(obs, f"{type(err).__name__}: {err}")
        self.stats.solves += 1
        self.stats.solve_times_s.append(result.solve_time_s)
        self.stats.highs_times_s.append(result.highs_time_s)
        self.stats.forms["scenario_lp"] += 1
        self.stats.formulations["relaxed"] += 1
        self.stats.statuses[str(result.status)] += 1
        self.stats.time_limit_hits += int(result.time_limit_hit)
        if not result.ok or result.plan is None:
            return self._deterministic(obs, result.message)
        decision = result.plan.decision(0, self.name)
        if self.mpc.curtail_confidence > 0.5:
            # As the MPC commits it: a curtailment while importing (paid to import) only
            # where the price is negative with confidence (controller.curtail_confidence);
            # the plan's is on the point forecast's sign, which the plant would execute
            # whatever the realized price.
            decision = self.mpc.confident_curtailment(obs, decision)
        fleet = with_min_instances(self.site, decision.fleet, obs.fleet(),
                                   self.mpc.min_instances_per_model)
        return decision if fleet is decision.fleet else replace(decision, fleet=fleet)

    def sampled_horizons(self, obs: Observation, central: HorizonInputs
                         ) -> list[tuple[HorizonInputs, PlantState]]:
        """Scenarios 1..S−1 of the horizon from ``obs`` (module docstring)."""
        S = self.n_scenarios
        if S == 1:
            return []
        mpc = self.mpc
        n = min(mpc.horizon_steps, mpc.exo.n_steps - obs.step)
        point = mpc.forecasts.predict(obs.time, n)
        rng = np.random.default_rng([self.seed, obs.step])
        u = rng.uniform(size=(len(point), S - 1))
        paths: dict[str, np.ndarray] = {}
        for k, (channel, values) in enumerate(point.items()):
            quantiles = self._quantiles(channel, obs.time, n)
            paths[channel] = (np.repeat(values[None, :], S - 1, axis=0) if quantiles is None
                              else sample_paths(quantiles, SAMPLE_LEVELS, u[k],
                                                first=float(values[0]) if n else None))
        models = [f"tokens_per_s[{m}]" for m in self.site.models]
        out: list[tuple[HorizonInputs, PlantState]] = []
        for s in range(S - 1):
            values_s = {c: p[s] for c, p in paths.items()}
            demand = (np.vstack([np.maximum(values_s[c], 0.0) for c in models]) if models
                      else np.zeros((0, n)))
            if models and n:
                # The first interval is shared: the MPC's demand there (with the queue).
                demand[:, 0] = central.demand_tokens_per_s[:, 0]
            inputs, state = build_horizon(mpc.exo, obs, values_s, mpc.horizon_steps,
                                          demand_tokens_per_s=demand,
                                          deadline_margin_steps=mpc.deadline_margin_steps,
                                          may_reprovision=mpc.may_reprovision(obs))
            if n:
                # Shared too: the MPC's non-deferrable work there (its quantile reserve,
                # controller.work_nd_quantile), or the first column would differ.
                work_nd = inputs.work_nd_wu.copy()
                work_nd[:, 0] = central.work_nd_wu[:, 0]
                inputs = replace(inputs, work_nd_wu=work_nd)
            # Projected as the MPC's horizon is, but not counted: a sampled path above
            # capacity is a draw from the forecast's tail, not a fault met.
            out.append(project(self.site, known_now(mpc.exo, obs, inputs), state, Counter()))
        return out

    def _quantiles(self, channel: str, time: pd.Timestamp, n: int) -> np.ndarray | None:
        """Quantile forecasts (n, levels) of ``channel``; None where the forecaster has
        seen nothing, fails or has no finite spread yet."""
        forecaster = self.mpc.forecasts.forecasters[channel]
        if forecaster.cutoff is None or n == 0:
            return None
        try:
            frame = forecaster.predict_quantiles(time, n, list(SAMPLE_LEVELS))
        except LookaheadError:
            raise
        except FORECAST_EXCEPTIONS:
            # The point forecast's own fault handling has counted a failing forecaster;
            # a scenario of it is its point forecast.
            return None
        values = frame.to_numpy(dtype=float)
        return values if np.all(np.isfinite(values)) else None

    def _deterministic(self, obs: Observation, reason: str) -> Decision:
        """The deterministic MPC's decision (its fallback chain), counted."""
        self.stats.fallbacks["deterministic_mpc"] += 1
        logger.warning("step %d: two-stage LP failed (%s); the deterministic MPC decides",
                       obs.step, reason)
        return self.mpc.decide(obs)
