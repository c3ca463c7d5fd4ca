"""The public policy interface: what a controller sees, returns and is built with.

This is the one module a policy written outside mpc-dc imports (docs/policies.md).
It re-exports the simulator's messages (:mod:`mpc_dc.sim.policy`) and adds the
context a policy is built with and the loader behind ``--policy``.

A policy is a class with

* ``name: str`` — its label in tables and run directories;
* ``observe(time, values)`` — receives each realized exogenous value when it is
  published (a 15-min value at the end of its interval, an hourly one at the end
  of its hour), as ``{channel: value}`` for the interval starting at ``time``;
* ``decide(obs) -> Decision`` — the :class:`Decision` of the interval starting at
  ``obs.time``, from the :class:`Observation` (the site's state then);
* a constructor ``Class(context)`` taking one :class:`PolicyContext`: the scenario
  as run, the run's interval grid, the history published before the run and the
  schedules published ahead of it.

That is all a policy can read: no future value, no simulator internals. Its
forecasts are its own (it may use :mod:`forecasters` on the history and the
values it observes). A decision the plant cannot carry out is projected on what
the site can do and counted (:mod:`mpc_dc.sim.projection`), never refused.

Policies are named on the command line, never in scenario files: ``--policy
package.module:Class``, or ``--policy NAME`` for a class registered under the
entry-point group :data:`ENTRY_POINT_GROUP` (``[project.entry-points."mpc_dc.policies"]``
in the policy package's ``pyproject.toml``). :func:`load_policy_class` resolves a
name; :func:`make_policy` builds the policy.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mpc_dc.sim.policy import (
    POLICY_INTERFACE_VERSION,
    CampusDecision,
    CampusObservation,
    Decision,
    FleetDecision,
    Observation,
    Policy,
    PoolKey,
)
from traces.grid import Publication

if TYPE_CHECKING:
    from mpc_dc.sim.exogenous import SiteExogenous
    from mpc_dc.sim.serving import RequestMix
    from mpc_dc.site.config import Site
    from mpc_dc.site.scenario import Scenario

ENTRY_POINT_GROUP = "mpc_dc.policies"
"""Entry-point group of installed policies: ``NAME = "package.module:Class"``."""

KNOWN_AHEAD: tuple[str, ...] = ("dr_event", "dr_baseline_mw", "gpus_available")
"""Quantities published ahead of the run, per campus: the demand-response event
calendar and baseline of the programme, and the GPUs available (announced outages)."""


@dataclass(frozen=True)
class PolicyContext:
    """What a policy is built with (its constructor's one argument).

    Attributes
    ----------
    scenario : Scenario
        The scenario as run (the site, its fleet with the planning capacity filled
        in, serving SLOs, the run period, the ``[controller]`` settings a policy may
        take as hints). Read only.
    run_index : DatetimeIndex
        Start (UTC) of every run interval ``[t, t + 15 min)``; ``obs.step`` indexes it.
    history : DataFrame
        Every channel before the run (index ``interval_start_utc``), as published at
        the run start: a value not yet published then is NaN.
    schedules : DataFrame
        Over the run intervals (index ``run_index``): the :data:`KNOWN_AHEAD`
        columns the run has (``dr_event[C]`` 1 in an event interval, ``dr_baseline_mw[C]``
        [MW], ``gpus_available[C]`` [GPUs]); a campus without a column has no events
        and all its GPUs. Under ``site.dr.baseline = "prior_days"`` the DR columns
        are not here: each event interval's ``dr_event[C]`` (1) and
        ``dr_baseline_mw[C]`` reach ``observe`` at the event's notice
        (``site.dr.notice_h`` before it; docs/policies.md).
    publication : Mapping[str, Publication]
        When each channel's realized value is published (absent: at the end of its
        15-min interval); hourly channels arrive at the end of their hour.
    request_mix : Mapping[str, RequestMix]
        Per model, the token lengths of the requests before the run.
    burst_late_share : Mapping[str, ndarray]
        Per model, the late share of its bursts over the history before the run at each
        planned utilisation of :data:`mpc_dc.sim.bursts.BURST_UTILISATIONS` [-]
        (:attr:`SiteExogenous.burst_late_share
        <mpc_dc.sim.exogenous.SiteExogenous.burst_late_share>`): what the MPC's default
        congestion calibration reads (``controller.congestion_calibration``); empty
        where not measured.
    """

    scenario: Scenario
    run_index: pd.DatetimeIndex
    history: pd.DataFrame
    schedules: pd.DataFrame
    publication: Mapping[str, Publication]
    request_mix: Mapping[str, RequestMix]
    burst_late_share: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def site(self) -> Site:
        """The site (campuses, their blocks and limits, the fleet and its pools)."""
        return self.scenario.site

    @property
    def n_steps(self) -> int:
        """Run intervals."""
        return len(self.run_index)

    @property
    def local_tz(self) -> str:
        """Billing calendar and DR days' time zone."""
        return self.scenario.run.local_tz

    def schedule(self, quantity: str, campus: str) -> np.ndarray:
        """One :data:`KNOWN_AHEAD` quantity of ``campus`` over the run (n_steps,): the
        column's values, or its default (no event, baseline 0, all the campus's GPUs)."""
        if quantity not in KNOWN_AHEAD:
            raise KeyError(f"{quantity!r} is not published ahead; expected one of "
                           f"{', '.join(KNOWN_AHEAD)}")
        name = f"{quantity}[{campus}]"
        if name in self.schedules.columns:
            return self.schedules[name].to_numpy(dtype=float)
        default = float(self.site.campus(campus).gpus) if quantity == "gpus_available" else 0.0
        return np.full(self.n_steps, default)

    @classmethod
    def from_exogenous(cls, scenario: Scenario, exo: SiteExogenous) -> PolicyContext:
        """The context of a run of ``scenario`` on ``exo``: only what is published at
        the run start (history) or ahead of it (schedules) is copied out."""
        history = exo.history.copy()
        for j, col in enumerate(history.columns):
            known = len(exo.published_history(str(col)))
            history.iloc[known:, j] = np.nan
        run = exo.frame.iloc[exo.history_steps: exo.history_steps + exo.n_steps]
        ahead = [c for c in run.columns if str(c).partition("[")[0] in KNOWN_AHEAD]
        if scenario.site.dr.baseline == "prior_days":
            # The programme announces each event with its baseline at its notice, by observe.
            ahead = [c for c in ahead if not str(c).startswith("dr_")]
        return cls(scenario=scenario, run_index=exo.run_index, history=history,
                   schedules=run[ahead].copy(), publication=dict(exo.publication),
                   request_mix=dict(exo.request_mix),
                   burst_late_share=dict(exo.burst_late_share))


# ----------------------------------------------------------------------------- loading


class PolicyLoadError(ValueError):
    """A ``--policy`` value that names no policy: one line saying why."""


def _check_policy_class(obj: object, spec: str) -> type:
    if not isinstance(obj, type) or not all(
            callable(getattr(obj, method, None)) for method in ("decide", "observe")):
        raise PolicyLoadError(f"{spec!r} is not a Policy: expected a class with "
                              "decide(obs) and observe(time, values) (docs/policies.md)")
    return obj


def installed_policies() -> dict[str, str]:
    """Entry points of :data:`ENTRY_POINT_GROUP`: name -> ``package.module:Class``."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_policy_class(spec: str) -> type:
    """The policy class named by ``spec``: ``package.module:Class`` or an installed
    entry-point name (:data:`ENTRY_POINT_GROUP`).

    Raises
    ------
    PolicyLoadError
        One line: no such module, no such class, no such entry point, or not a
        policy class.
    """
    spec = spec.strip()
    if ":" not in spec:
        found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not found:
            names = sorted(installed_policies())
            known = f"installed: {', '.join(names)}" if names else "none is installed"
            raise PolicyLoadError(f"no policy named {spec!r} in the entry-point group "
                                  f"{ENTRY_POINT_GROUP} ({known}); expected "
                                  "package.module:Class or an installed name")
        try:
            loaded = found[0].load()
        except (ImportError, AttributeError) as err:
            raise PolicyLoadError(f"entry point {spec!r} ({found[0].value}) does not "
                                  f"load: {err}") from None
        return _check_policy_class(loaded, spec)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PolicyLoadError(f"expected package.module:Class, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name.startswith(err.name):
            raise PolicyLoadError(f"no module named {module_name!r} (for {spec!r}); is its "
                                  "package installed or on PYTHONPATH?") from None
        raise PolicyLoadError(f"module {module_name!r} does not import: {err}") from None
    except ImportError as err:
        raise PolicyLoadError(f"module {module_name!r} does not import: {err}") from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicyLoadError(f"module {module_name!r} has no class {attr!r}")
        obj = getattr(obj, part)
    return _check_policy_class(obj, spec)


def make_policy(spec: str, context: PolicyContext) -> Policy:
    """Build the policy named by ``spec`` (:func:`load_policy_class`) with ``context``.

    Raises
    ------
    PolicyLoadError
        As :func:`load_policy_class`, or a built policy without a string ``name``.
    """
    policy = load_policy_class(spec)(context)
    if not isinstance(getattr(policy, "name", None), str):
        raise PolicyLoadError(f"{spec!r} is not a Policy: its instances have no str 'name'")
    built: Policy = policy
    return built


__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_AHEAD",
    "POLICY_INTERFACE_VERSION",
    "CampusDecision",
    "CampusObservation",
    "Decision",
    "FleetDecision",
    "Observation",
    "Policy",
    "PolicyContext",
    "PolicyLoadError",
    "PoolKey",
    "installed_policies",
    "load_policy_class",
    "make_policy",
]
