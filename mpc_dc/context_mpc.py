"""Our MPC built from a :class:`~mpc_dc.policy.PolicyContext` alone (a library for
policies written against the public interface, docs/policies.md).

:func:`context_exogenous` rebuilds the run's exogenous data from what the context
holds — the history published before the run and the schedules published ahead of
it — with every run-period channel value set to 0 and no requests: whatever is built
on it cannot read a future value (it would read these zeros and decide otherwise;
``tests/test_policy_interface.py`` checks that the MPC built so gives the KPIs of
``mpc-dc run``). :func:`context_mpc` builds the scenario's forecast-driven MPC on it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from mpc_dc.control.forecasting import ORACLES
from mpc_dc.control.mpc import MpcPolicy
from mpc_dc.policy import PolicyContext
from mpc_dc.runner import build_policy
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.exogenous import SiteExogenous

DEFAULT_FORECASTER = "sarimax"
"""Forecaster of :func:`context_mpc` where the scenario names an oracle (the truth is
not in the context)."""


def context_exogenous(context: PolicyContext) -> SiteExogenous:
    """The run's exogenous data as the context knows it (module docstring)."""
    site = context.site
    run = pd.DataFrame(0.0, index=context.run_index, columns=context.history.columns)
    run[context.schedules.columns] = context.schedules
    frame = pd.concat([context.history, run])
    frame.index.name = "interval_start_utc"
    requests = None
    if site.fleet is not None:
        empty = np.zeros(0)
        requests = RequestArrays.from_arrays(empty, empty.astype(np.int32),
                                             empty.astype(np.int64), empty.astype(np.int64),
                                             site.models)
    return SiteExogenous(site, frame, context.run_index[0], context.n_steps, requests,
                         publication=context.publication, local_tz=context.local_tz,
                         request_mix=context.request_mix,
                         burst_late_share=context.burst_late_share)


def context_mpc(context: PolicyContext) -> MpcPolicy:
    """The scenario's ``[controller]`` as a forecast-driven MPC on
    :func:`context_exogenous`: ``kind = "mpc"`` whatever the scenario's kind, an
    oracle forecaster replaced by :data:`DEFAULT_FORECASTER` and published day-ahead
    prices off (both read the truth, which the context does not hold)."""
    spec = context.scenario.controller
    forecaster = DEFAULT_FORECASTER if spec.forecaster in ORACLES else spec.forecaster
    scenario = replace(context.scenario, controller=replace(
        spec, kind="mpc", forecaster=forecaster, price_known_ahead=False))
    policy = build_policy(scenario, context_exogenous(context))
    if not isinstance(policy, MpcPolicy):  # build_policy's contract for kind "mpc"
        raise TypeError(f"expected an MpcPolicy for kind 'mpc', got {type(policy).__name__}")
    return policy
