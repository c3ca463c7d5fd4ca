"""A Gymnasium environment on the simulator's closed loop (docs/policies.md, "Gymnasium
environment").

:class:`DataCenterEnv` runs a scenario on the one simpy engine
(:func:`mpc_dc.sim.engine.simulation`) and hands the decision of each 15-minute
interval to the caller: ``step(action)`` gives the engine's controller the
:class:`~mpc_dc.policy.Decision` decoded from ``action`` (:meth:`DataCenterEnv.decision`),
runs the engine to the next decision point (the end of the interval: plant, replay,
meter) and returns the state there. Nothing of the loop is re-implemented here: the
controller process asks a relay policy (:class:`_Relay`) that returns the decision
the environment was given, and the environment steps the simpy environment until the
meter has closed the interval.

Spaces are built from the public interface (:mod:`mpc_dc.policy`): the observation
from :class:`~mpc_dc.policy.Observation` and the values published so far, the action
from the fields of :class:`~mpc_dc.policy.Decision`. Reward: minus the interval's net
cost [$] as the meter settles it (energy, export revenue, demand charge, carbon, DR,
the penalties of unserved and missed other-IT work); costs booked after the run
come in the last step's reward, so the rewards of an episode sum to minus the run's
net cost. ``reset(seed=s)`` runs the episode on the scenario with ``run.seed = s``.

Needs the optional dependency ``gymnasium`` (``pip install 'mpc-dc[gym]'``).
Registered as :data:`ENV_ID` on import.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy
from threadpoolctl import ThreadpoolController

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as err:  # pragma: no cover - exercised without the extra only
    raise ImportError("mpc_dc.gym_env needs gymnasium: pip install 'mpc-dc[gym]'") from err

from mpc_dc.policy import (
    CampusDecision,
    Decision,
    FleetDecision,
    Observation,
    PolicyContext,
)
from mpc_dc.runner import fault_injector, prepare, with_meter_history
from mpc_dc.sim.engine import LEDGER_COLUMNS, RunResult, finish, simulation
from mpc_dc.sim.exogenous import SiteExogenous
from mpc_dc.sim.meter import net_cost_usd
from mpc_dc.sim.plant import work_capacity_wu
from mpc_dc.site.data import DataFiles
from mpc_dc.site.scenario import Scenario, default_scenario, load_scenario

ENV_ID = "mpc_dc/DataCenter-v0"
"""Gymnasium id of :class:`DataCenterEnv` (``gymnasium.make(ENV_ID, scenario=...)``)."""

SOURCE = "gym"
"""``decision_source`` of the decisions the environment executes (ledger column)."""

_PREPARED_CACHE = 4
"""Prepared data kept per environment, by run seed (preparing is the slow part of a reset)."""

Obs = dict[str, Any]
Action = dict[str, Any]


class _Relay:
    """The policy the engine's controller asks: the decision the environment was given.

    It also collects what the engine publishes (``observe``), for ``info["published"]``.
    """

    def __init__(self) -> None:
        self.name = SOURCE
        self.pending: Decision | None = None
        self.expected: Observation | None = None
        self.published: list[tuple[pd.Timestamp, dict[str, float]]] = []

    def observe(self, time: pd.Timestamp, values: Mapping[str, float]) -> None:
        """Keep the published values until the environment hands them over."""
        self.published.append((time, dict(values)))

    def decide(self, obs: Observation) -> Decision:
        """The decision the environment was given for ``obs``."""
        decision, self.pending = self.pending, None
        if decision is None or obs != self.expected:
            # The environment steps the engine only after setting both: a mismatch is a
            # defect of this module, not of the caller.
            raise RuntimeError(f"the engine asked for a decision at step {obs.step} that the "
                               "Gymnasium environment did not give")
        return decision


class DataCenterEnv(gymnasium.Env[Obs, Action]):
    """A scenario's closed loop as a Gymnasium environment, one step per 15-min interval.

    Parameters
    ----------
    scenario : Scenario, str or Path, optional
        The scenario (or its TOML file); default: the embedded default scenario
        (:func:`~mpc_dc.site.scenario.default_scenario`). Its ``[controller]`` is not
        used: the caller decides. Its ``[faults]`` are injected as in ``mpc-dc run``.
    prepared : (Scenario, SiteExogenous), optional
        :func:`~mpc_dc.runner.prepare` of ``scenario`` when the caller has it (as
        :func:`~mpc_dc.runner.run_scenario` takes it): the data of episodes with the
        scenario's own ``run.seed``. Otherwise prepared here, once per seed.

    Attributes
    ----------
    scenario : Scenario
        As given; an episode runs it with ``run.seed`` set by :meth:`reset`.
    pools : tuple of (str, str, str)
        The pools ``(campus, model, precision)`` in the order of the fleet entries.
    campuses : tuple of str
        Campus names in the order of the per-campus entries.
    channels : tuple of str
        Exogenous channels in the order of ``observation["published"]``.
    backlog_bins : int
        Columns of ``observation["backlog_wu"]``: deadlines ``0 .. backlog_bins - 1``
        intervals after the current one.

    Notes
    -----
    Observation (a dict; C campuses, P pools, K channels, D backlog bins):

    * ``step`` (Discrete n + 1): the interval about to be decided (n at the end);
    * ``hour_of_day`` (1,) [h]: its local start time (``run.local_tz``);
    * ``battery_energy_mwh`` (C,) [MWh], ``peak_import_to_date_mw`` (C,) [MW] (billing
      period), ``gpus_available`` (C,) [GPUs] (last interval's);
    * ``backlog_wu`` (C, D) [WU]: released, unfinished deferrable work by deadline, column
      ``d`` due by the end of interval ``step + d``;
    * with a fleet: ``instances_running``, ``instances_starting`` (P,) [instances] and
      ``queue_requests`` (P,) [requests];
    * ``published`` (K,): each channel's latest published value (units in its name).

    Action (a dict):

    * with a fleet: ``instances`` (MultiDiscrete, P) instances per pool, at most the
      campus's GPUs over the pool's GPUs per instance; ``routing_share`` (P,) [-] share
      of the model's requests per pool (normalised per model by the simulator);
    * ``work_df_wu`` (C,) [WU] deferrable work to process (at most the interval's
      capacity of the campus's other IT);
    * ``battery_charge_mw``, ``battery_discharge_mw`` (C,) [MW] within the battery's power;
    * ``curtailed_mw`` (C,) [MW] renewable curtailment, within its nameplate;
    * ``planned_import_mw``, ``planned_export_mw`` (C,) [MW] the planned grid flows,
      within the connection's limits (a curtailment is executed only where the plan
      imports; otherwise reported only).

    An action outside the spaces is not refused: the simulator projects it on what
    the site can do and counts it (KPI ``decision_projections``, docs/policies.md).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's convention

    def __init__(self, scenario: Scenario | str | Path | None = None, *,
                 prepared: tuple[Scenario, SiteExogenous] | None = None) -> None:
        super().__init__()
        if scenario is None:
            scenario = default_scenario()
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self.scenario = scenario
        site = scenario.site
        self.campuses = site.campus_names
        self.pools = site.pools
        self.n_steps = scenario.run.n_steps
        self.backlog_bins = 1 + max((c.other_it.window_steps for c in site.campuses
                                     if c.other_it is not None), default=0)
        self._prepared: OrderedDict[int, tuple[Scenario, SiteExogenous]] = OrderedDict()
        if prepared is not None:
            self._prepared[scenario.run.seed] = prepared
        self.channels: tuple[str, ...] = ()
        # Typed as Dict for the entries' bounds (gymnasium declares a bare Space).
        self._observation_dict = self._observation_space()
        self._action_dict = self._action_space()
        self.observation_space = self._observation_dict
        self.action_space = self._action_dict
        self._blas = ThreadpoolController()
        self._run: Any = None
        self._env: simpy.Environment | None = None
        self._loop: Any = None
        self._relay = _Relay()
        self._obs: Observation | None = None
        self._closed = 0
        self._published = np.zeros(0)
        self._costs = 0.0
        self._lateness = 0.0
        self.context: PolicyContext | None = None
        """The episode's :class:`~mpc_dc.policy.PolicyContext` (after :meth:`reset`):
        what a policy written against :mod:`mpc_dc.policy` is built with."""
        self.result: RunResult | None = None
        """The episode's run (ledger, KPIs ...) once it has terminated."""

    # -- spaces ----------------------------------------------------------------------------
    def _observation_space(self) -> spaces.Dict:
        """The observation space (class docstring); ``published`` is sized on the data's
        channels, which :meth:`reset` reads: here from the first prepared run."""
        site = self.scenario.site
        C = len(self.campuses)
        inf = np.inf
        battery = [0.0 if c.battery is None else c.battery.energy_mwh for c in site.campuses]
        entries: dict[str, spaces.Space[Any]] = {
            "step": spaces.Discrete(self.n_steps + 1),
            "hour_of_day": _box(np.zeros(1), np.full(1, 24.0)),
            "battery_energy_mwh": _box(np.zeros(C), battery),
            "peak_import_to_date_mw": _box(np.zeros(C), np.full(C, inf)),
            "gpus_available": _box(np.zeros(C), [float(c.gpus) for c in site.campuses]),
            "backlog_wu": _box(np.zeros((C, self.backlog_bins)),
                               np.full((C, self.backlog_bins), inf)),
        }
        if self.pools:
            most = self._max_instances().astype(float)
            entries["instances_running"] = _box(np.zeros_like(most), most)
            entries["instances_starting"] = _box(np.zeros_like(most), most)
            entries["queue_requests"] = _box(np.zeros(len(self.pools)),
                                             np.full(len(self.pools), inf))
        _, exo = self._prepare(self.scenario.run.seed)
        self.channels = tuple(str(c) for c in exo.history.columns)
        K = len(self.channels)
        entries["published"] = _box(np.full(K, -inf), np.full(K, inf))
        return spaces.Dict(entries)

    def _action_space(self) -> spaces.Dict:
        site = self.scenario.site
        campuses = site.campuses
        entries: dict[str, spaces.Space[Any]] = {}
        if self.pools:
            entries["instances"] = spaces.MultiDiscrete(self._max_instances() + 1)
            entries["routing_share"] = _box(np.zeros(len(self.pools)), np.ones(len(self.pools)))
        power = [0.0 if c.battery is None else c.battery.power_mw for c in campuses]
        highs = {
            "work_df_wu": [work_capacity_wu(c.other_it) for c in campuses],
            "battery_charge_mw": power,
            "battery_discharge_mw": power,
            "curtailed_mw": [c.nameplate_mw for c in campuses],
            "planned_import_mw": [c.grid.import_limit_mw for c in campuses],
            "planned_export_mw": [c.grid.export_limit_mw for c in campuses],
        }
        for name, high in highs.items():
            entries[name] = _box(np.zeros(len(campuses)), high)
        return spaces.Dict(entries)

    def _max_instances(self) -> np.ndarray:
        """Instances per pool the campus's GPUs hold [-], (P,)."""
        site = self.scenario.site
        return np.array([site.campus(k[0]).gpus // site.row(k).gpus_per_instance
                         for k in self.pools], dtype=np.int64)

    # -- actions ---------------------------------------------------------------------------
    def decision(self, action: Mapping[str, Any]) -> Decision:
        """The :class:`~mpc_dc.policy.Decision` an action stands for (as executed)."""
        campuses = {
            name: CampusDecision(**{field: float(np.asarray(action[field])[c])
                                    for field in _CAMPUS_FIELDS})
            for c, name in enumerate(self.campuses)}
        fleet = FleetDecision()
        if self.pools:
            count = np.asarray(action["instances"])
            share = np.asarray(action["routing_share"], dtype=float)
            fleet = FleetDecision(
                instances={k: int(count[i]) for i, k in enumerate(self.pools)},
                routing_share={k: float(share[i]) for i, k in enumerate(self.pools)})
        return Decision(campuses=campuses, fleet=fleet, source=SOURCE)

    def action(self, decision: Decision) -> Action:
        """The action of a :class:`~mpc_dc.policy.Decision`, clipped into the action space
        (a NaN planned flow, "no plan", becomes 0, which the plant treats alike); the
        plan's token throughput, reported only, is dropped."""
        space = self._action_dict
        out: Action = {}
        for field in _CAMPUS_FIELDS:
            values = np.array([getattr(decision.campus(name), field) for name in self.campuses])
            box = _entry(space, field)
            out[field] = np.clip(np.nan_to_num(values, nan=0.0), box.low, box.high)
        if self.pools:
            fleet = decision.fleet
            most = self._max_instances()
            out["instances"] = np.clip(
                np.array([fleet.instances.get(k, 0) for k in self.pools], dtype=np.int64),
                0, most)
            out["routing_share"] = np.clip(
                np.array([fleet.routing_share.get(k, 0.0) for k in self.pools]), 0.0, 1.0)
        return out

    # -- episode ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Start an episode: the scenario with ``run.seed = seed``, or with a seed drawn
        from the environment's generator when ``seed`` is None.

        ``reset(seed=scenario.run.seed)`` runs on the data of ``mpc-dc run``.
        ``info``: ``run_seed``, ``observation`` (the :class:`~mpc_dc.policy.Observation`),
        ``published`` (empty: nothing is published before the first decision).
        """
        super().reset(seed=seed)
        run_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.close()
        scenario, exo = self._prepare(run_seed)
        injector = fault_injector(scenario, exo)
        if injector is not None:
            exo = injector.announce(exo)
        self.context = PolicyContext.from_exogenous(scenario, exo)
        self._relay = _Relay()
        self._closed = 0
        self._costs = self._lateness = 0.0
        self.result = None

        def closed(count: int) -> None:
            self._closed += count

        self._run = simulation(exo, self._relay, serving=scenario.serving.config(),
                               progress=closed, faults=injector,
                               fast_layer=scenario.controller.fast_layer)
        self._env, self._loop = next(self._run)
        history = self.context.history.ffill()
        last = history.iloc[-1] if len(history) else pd.Series(np.nan, index=history.columns)
        self._published = np.nan_to_num(last.reindex(list(self.channels)).to_numpy(
            dtype=float), nan=0.0)
        self._obs = self._loop.observation(0)
        return self._observation(self._obs), {"run_seed": run_seed, "observation": self._obs,
                                              "published": ()}

    def step(self, action: Mapping[str, Any]) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Run the interval with ``action``'s decision; the state at the next one.

        ``info``: ``step`` (the interval run), ``ledger`` (its ledger rows, ``{campus:
        {column: value}}``, :data:`~mpc_dc.sim.engine.LEDGER_COLUMNS`), ``cost_usd``
        (their net cost [$]), ``lateness_usd`` (the price of the SLO lateness that
        became certain during the interval [$]; the reward is minus both),
        ``decision`` (as executed, after projection), ``published`` (``(interval
        start, {channel: value})`` published during the
        interval, what :meth:`~mpc_dc.policy.Policy.observe` receives) and
        ``observation`` (the next :class:`~mpc_dc.policy.Observation`; None at the end).
        At the end also ``kpis`` (the run's) and ``cost_after_run_usd`` (costs booked
        after the run, in this last reward [$]: the lateness of requests whose verdict
        the run end's judgement settles).
        """
        if self._obs is None or self._env is None:
            raise RuntimeError("step() before reset() or after the episode ended; call reset()")
        k = self._obs.step
        self._relay.pending = self.decision(action)
        self._relay.expected = self._obs
        env = self._env
        with self._blas.limit(limits=1, user_api="blas"):
            # The meter closes interval k (progress) right before it opens the next
            # boundary: stop there, before the controller asks for the next decision.
            while self._closed <= k:
                env.step()
        loop = self._loop
        rows = loop.block[k]
        cost = net_cost_usd({name: rows[:, j] for j, name in enumerate(LEDGER_COLUMNS)})
        # Lateness is booked as it becomes certain, not when the run has ended.
        to_date = loop.lateness_to_date_usd(k)
        # (an infinite fluid estimate, no instance ready, is booked once)
        lateness = 0.0 if to_date == self._lateness else to_date - self._lateness
        self._lateness = to_date
        self._costs += cost + lateness
        published = tuple(self._relay.published)
        self._relay.published = []
        index = {name: i for i, name in enumerate(self.channels)}
        for _, values in published:
            for name, value in values.items():
                if name in index and np.isfinite(value):
                    self._published[index[name]] = value
        info: dict[str, Any] = {
            "step": k,
            "ledger": {name: {col: float(rows[c, j]) for j, col in enumerate(LEDGER_COLUMNS)}
                       for c, name in enumerate(self.campuses)},
            "cost_usd": cost,
            "lateness_usd": lateness,
            "decision": loop.decisions[k],
            "published": published,
        }
        reward = -cost - lateness
        terminated = k + 1 >= self.n_steps
        if terminated:
            with self._blas.limit(limits=1, user_api="blas"):
                env.run()
            self.result = finish(self._run)
            self._run = self._env = self._loop = self._obs = None
            after = float(self.result.kpis["cost_usd"]) - self._costs
            reward -= after
            info.update(kpis=self.result.kpis, cost_after_run_usd=after, observation=None)
            obs = self._terminal_observation()
        else:
            self._obs = loop.observation(k + 1)
            obs = self._observation(self._obs)
            info["observation"] = self._obs
        return obs, reward, terminated, False, info

    def close(self) -> None:
        """End the episode under way, if any (its run is dropped)."""
        if self._run is not None:
            self._run.close()
        self._run = self._env = self._loop = self._obs = None

    # -- helpers ---------------------------------------------------------------------------
    def _prepare(self, run_seed: int) -> tuple[Scenario, SiteExogenous]:
        """:func:`~mpc_dc.runner.prepare` of the scenario with ``run.seed = run_seed``
        and the DR programme's meter history before the episode under the scenario's
        controller (:func:`~mpc_dc.runner.with_meter_history`), kept for the last few
        seeds."""
        if run_seed in self._prepared:
            self._prepared.move_to_end(run_seed)
            return self._prepared[run_seed]
        base = self.scenario
        scenario = (base if run_seed == base.run.seed
                    else replace(base, run=replace(base.run, seed=run_seed)))
        files = DataFiles()  # read once for the episode and its DR lead-in
        scenario, exo = prepare(scenario, files=files)
        exo, _ = with_meter_history(scenario, exo, files=files)
        self._prepared[run_seed] = prepared = (scenario, exo)
        while len(self._prepared) > _PREPARED_CACHE:
            self._prepared.popitem(last=False)
        return prepared

    def _observation(self, obs: Observation) -> Obs:
        """The observation-space value of ``obs`` (class docstring)."""
        context = self.context
        assert context is not None
        site = self.scenario.site
        local = obs.time.tz_convert(context.local_tz)
        C, D = len(self.campuses), self.backlog_bins
        backlog = np.zeros((C, D))
        battery = np.zeros(C)
        peak = np.zeros(C)
        gpus = np.zeros(C)
        for c, name in enumerate(self.campuses):
            state = obs.campuses[name]
            for deadline, amount in state.backlog_wu:
                backlog[c, min(max(deadline - obs.step, 0), D - 1)] += amount
            battery[c] = state.battery_energy_mwh
            peak[c] = state.peak_import_to_date_mw
            gpus[c] = (site.campuses[c].gpus if state.gpus_available is None
                       else state.gpus_available)
        space = self._observation_dict
        out: Obs = {
            "step": np.int64(obs.step),
            "hour_of_day": np.array([local.hour + local.minute / 60.0]),
            # Rounding can leave a battery a hair outside [0, capacity].
            "battery_energy_mwh": np.clip(battery, 0.0, _entry(space, "battery_energy_mwh").high),
            "peak_import_to_date_mw": np.maximum(peak, 0.0),
            "gpus_available": np.clip(gpus, 0.0, _entry(space, "gpus_available").high),
            "backlog_wu": np.maximum(backlog, 0.0),
            "published": self._published.copy(),
        }
        if self.pools:
            for name, values in (("instances_running", obs.instances_running),
                                 ("instances_starting", obs.instances_starting),
                                 ("queue_requests", obs.queue_requests)):
                out[name] = np.maximum(
                    np.array([float(values.get(k, 0.0)) for k in self.pools]), 0.0)
        return out

    def _terminal_observation(self) -> Obs:
        """The observation returned with ``terminated``: a marker (``step`` = n, every
        other entry 0) as no decision is left; the final state is in ``info``."""
        out: Obs = {name: np.zeros(space.shape) for name, space in
                    self._observation_dict.items() if name != "step"}
        out["step"] = np.int64(self.n_steps)
        return out


_CAMPUS_FIELDS: tuple[str, ...] = ("work_df_wu", "battery_charge_mw", "battery_discharge_mw",
                                   "curtailed_mw", "planned_import_mw", "planned_export_mw")
"""Action entries that are :class:`~mpc_dc.policy.CampusDecision` fields, one per campus."""


def _box(low: Any, high: Any) -> spaces.Box:
    """A float64 box (decisions and states are float64 in the simulator)."""
    return spaces.Box(np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64),
                      dtype=np.float64)


def _entry(space: spaces.Dict, name: str) -> spaces.Box:
    """The box ``name`` of a dict space."""
    box = space[name]
    assert isinstance(box, spaces.Box)
    return box


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="mpc_dc.gym_env:DataCenterEnv")
