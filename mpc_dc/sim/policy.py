"""What the simulator asks of a controller: the Policy protocol and its two messages.

The simulator (:mod:`mpc_dc.sim.engine`) defines this interface and calls nothing
else of a controller, so it never imports the optimizer (cvxpy, HiGHS). At the start
of every 15-minute interval ``[t, t + Δ)`` it builds an :class:`Observation` (the
state of the site at ``t``) and asks the policy to :meth:`Policy.decide` the
:class:`Decision` of that interval; whenever exogenous values are published (a
15-min value at the end of its interval, an hourly one at the end of its hour) it
hands them to :meth:`Policy.observe`. A policy sees nothing else: no future value
and no simulator internals.

Observed channels are the columns of the run's exogenous frame
(:class:`~mpc_dc.sim.exogenous.SiteExogenous`), named ``quantity_unit[NAME]`` with a
campus name ``C`` or a model name ``M``: ``price_usd_per_mwh[C]`` (the market price
the campus's tariff is built on) [$/MWh], ``carbon_gco2_per_kwh[C]`` [gCO2/kWh],
``renewable_cf[C]`` [-], ``workload_wu[C]`` [WU per interval], ``tokens_per_s[M]``
and ``requests_per_h[M]`` (demand offered in the interval), ``dr_event[C]``,
``dr_baseline_mw[C]`` [MW] and ``gpus_available[C]`` where the run has them.

A *pool* is all instances of one model family at one precision on one campus,
keyed ``(campus, model, precision)``.

A decision the plant cannot carry out (more instances than GPUs, routing shares
that do not sum to 1, a battery set-point beyond its power ...) is projected on what
the site can do and counted, never refused (:mod:`mpc_dc.sim.projection`).

Versioning: :data:`POLICY_INTERFACE_VERSION` names this interface. A change a
policy written against it could notice (a field removed or renamed, a meaning
changed) raises the major number; a field added with a default, or a decision
accepted that was refused before, raises the minor. The public face of this module,
with the context a policy is built with and the loader of ``--policy``, is
:mod:`mpc_dc.policy` (docs/policies.md).

History: 1.0, the first interface; 1.1, infeasible decisions are projected and
counted instead of raising ``ValueError`` in :class:`FleetDecision`, and policies
named on the command line are built with a :class:`mpc_dc.policy.PolicyContext`;
1.2, :attr:`CampusDecision.export_price_usd_per_mwh`, the price a surplus is exported
or spilled on (the plant used the realized price of the running interval before, which
an hourly price is not known at).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from mpc_dc.sim.backlog import Backlog
from mpc_dc.site.config import PoolKey

POLICY_INTERFACE_VERSION = "1.2"
"""Version of this interface, ``MAJOR.MINOR`` (see the module docstring)."""



# ----------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class CampusObservation:
    """The state of one campus at an interval start.

    Attributes
    ----------
    backlog_wu : tuple of (int, float)
        Released, unfinished deferrable work as ``(deadline step, amount [WU])`` in
        deadline order; the work must be done by the end of interval ``deadline``.
    peak_import_to_date_mw : float [MW]
        Highest 15-min import so far in the current billing period.
    battery_energy_mwh : float [MWh]
        Battery energy now (0 without a battery).
    gpus_available : float or None [GPUs]
        GPUs the campus had in the last interval (a GPU loss shows here first, one
        interval after it struck); None: not reported (as planned). Since 1.1.
    """

    backlog_wu: tuple[tuple[int, float], ...] = ()
    peak_import_to_date_mw: float = 0.0
    battery_energy_mwh: float = 0.0
    gpus_available: float | None = None

    @property
    def backlog_total_wu(self) -> float:
        """All released, unfinished deferrable work [WU]."""
        return float(sum(amount for _, amount in self.backlog_wu))

    def backlog_cumulative(
        self, now: int, horizon_steps: int, *, margin_steps: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The backlog as cumulative due and available work over ``[now, now + H)`` [WU].

        See :meth:`mpc_dc.sim.backlog.Backlog.cumulative` (same rule: work already
        late is due at once; ``margin_steps`` brings every deadline forward).
        """
        return Backlog(pending=dict(self.backlog_wu)).cumulative(
            now, horizon_steps, margin_steps=margin_steps)


@dataclass(frozen=True)
class Observation:
    """What a policy sees at the start of interval ``step``.

    Attributes
    ----------
    step : int
        Interval index from the run start.
    time : Timestamp
        Interval start (UTC).
    campuses : Mapping[str, CampusObservation]
        Per campus, in site order.
    instances_running : Mapping[PoolKey, int]
        Instances ready to serve at ``time``.
    instances_starting : Mapping[PoolKey, int]
        Instances committed but still loading at ``time``.
    queue_requests : Mapping[PoolKey, float] [requests]
        Requests waiting for a slot per pool at ``time``.
    """

    step: int
    time: pd.Timestamp
    campuses: Mapping[str, CampusObservation] = field(default_factory=dict)
    instances_running: Mapping[PoolKey, int] = field(default_factory=dict)
    instances_starting: Mapping[PoolKey, int] = field(default_factory=dict)
    queue_requests: Mapping[PoolKey, float] = field(default_factory=dict)

    def fleet(self) -> dict[PoolKey, int]:
        """Running plus starting instances per pool."""
        out = dict(self.instances_running)
        for k, v in self.instances_starting.items():
            out[k] = out.get(k, 0) + v
        return out

    def queue_by_model(self) -> dict[str, float]:
        """Requests waiting per model [requests]."""
        out: dict[str, float] = {}
        for (_, model, _), q in self.queue_requests.items():
            out[model] = out.get(model, 0.0) + float(q)
        return out


# ----------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class CampusDecision:
    """What a policy commits for one campus for one interval.

    Attributes
    ----------
    work_df_wu : float [WU]
        Deferrable work to process (other IT).
    battery_charge_mw, battery_discharge_mw : float [MW]
        Battery set-points.
    curtailed_mw : float [MW]
        Planned renewable curtailment; the plant executes it where the plan also
        imports (see :mod:`mpc_dc.sim.plant`).
    planned_import_mw, planned_export_mw : float [MW]
        The plan's grid flows (reported beside the realized ones).
    export_price_usd_per_mwh : float [$/MWh]
        The export price π⁻ of the interval the decision was committed on: the
        controller's expectation of it (a forecast, the Oracle's truth), known when
        deciding. The plant exports a surplus where it is positive and spills it
        elsewhere (:mod:`mpc_dc.sim.plant`, step 6); it is settled at the realized
        price. NaN (not given): the engine uses the last published price, through the
        campus's tariff. Since 1.2.
    """

    work_df_wu: float = 0.0
    battery_charge_mw: float = 0.0
    battery_discharge_mw: float = 0.0
    curtailed_mw: float = 0.0
    planned_import_mw: float = float("nan")
    planned_export_mw: float = float("nan")
    export_price_usd_per_mwh: float = float("nan")


@dataclass(frozen=True)
class FleetDecision:
    """Instances and routing of one interval.

    Attributes
    ----------
    instances : Mapping[PoolKey, int]
        Instances that should be running in the interval (scale-up takes the load
        time to arrive; scale-down drains); whole numbers >= 0 within each campus's
        GPUs.
    routing_share : Mapping[PoolKey, float]
        Share [-] of a model's requests sent to each pool; for each model the shares
        over its pools sum to 1 (pools of a model with no demand may be absent).

    Values outside these rules are not refused here: the simulator projects them
    on what the site can do and counts each projection (:mod:`mpc_dc.sim.projection`).
    planned_tokens_per_s : Mapping[PoolKey, float]
        The plan's output-token throughput of each pool [tokens/s], for reporting.
    """

    instances: Mapping[PoolKey, int] = field(default_factory=dict)
    routing_share: Mapping[PoolKey, float] = field(default_factory=dict)
    planned_tokens_per_s: Mapping[PoolKey, float] = field(default_factory=dict)

    def shares_of(self, model: str) -> dict[PoolKey, float]:
        """Routing shares of one model's pools."""
        return {k: v for k, v in self.routing_share.items() if k[1] == model and v > 0}


@dataclass(frozen=True)
class Decision:
    """What a policy commits for one interval.

    Attributes
    ----------
    campuses : Mapping[str, CampusDecision]
        Per campus; a campus left out gets :class:`CampusDecision` defaults.
    fleet : FleetDecision
        Instances and routing (empty without inference pools).
    source : str
        Which policy path produced it (``"mpc"``, ``"fallback:lp_repair"``, ``"rule"``...).
    """

    campuses: Mapping[str, CampusDecision] = field(default_factory=dict)
    fleet: FleetDecision = field(default_factory=FleetDecision)
    source: str = "rule"

    def campus(self, name: str) -> CampusDecision:
        """The decision of campus ``name`` (defaults when absent)."""
        return self.campuses.get(name, _NO_CAMPUS_DECISION)


_NO_CAMPUS_DECISION = CampusDecision()


# ----------------------------------------------------------------------------- protocol


class Policy(Protocol):
    """A controller, as the simulator sees it."""

    name: str

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Receive realized values of the interval that started at ``time``.

        Called when the values are published, possibly several intervals at once
        (an hour's four quarters at its end); ``values`` holds the channels published
        for that interval (see :mod:`mpc_dc.sim.publication`).
        """
        ...

    def decide(self, obs: Observation) -> Decision:
        """The decision for the interval starting at ``obs.time``."""
        ...
