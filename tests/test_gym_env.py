"""The Gymnasium environment (mpc_dc/gym_env.py, docs/policies.md "Gymnasium environment").

Our MPC stepped through the environment gives the KPIs of ``run_scenario`` (``mpc-dc run``)
to the cent and its rewards sum to minus the run's net cost; the environment passes
gymnasium's own checker; seeded resets replay; actions outside the spaces are projected
and counted, not refused.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

gymnasium = pytest.importorskip(
    "gymnasium", reason="gymnasium not installed (optional extra: pip install 'mpc-dc[gym]')")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from mpc_dc.gym_env import ENV_ID, DataCenterEnv  # noqa: E402
from mpc_dc.runner import build_policy, prepare, run_scenario  # noqa: E402
from mpc_dc.sim.meter import COST_COLUMNS, net_cost_usd  # noqa: E402
from mpc_dc.site.scenario import Scenario, default_scenario, scenario_from_table  # noqa: E402
from tests.test_policy_interface import TINY_FLEET  # noqa: E402

# The tiny synthetic site of the policy-interface tests (6 h), with a battery and an
# export limit so that every action entry has room.
TINY_GYM = TINY_FLEET + """
[site.campuses.battery]
energy_mwh = 0.02
power_mw = 0.01
[site.campuses.grid]
export_limit_mw = 0.05
"""


@pytest.fixture
def tiny() -> Scenario:
    return scenario_from_table(tomllib.loads(TINY_GYM), "TINY_GYM")


def _episode(env: DataCenterEnv, seed: int, actions: list[dict[str, Any]]
             ) -> tuple[list[float], list[dict[str, Any]], dict[str, Any]]:
    """Rewards and observations of an episode stepped with ``actions`` in turn; last info."""
    obs, info = env.reset(seed=seed)
    rewards, observations = [], [obs]
    terminated = False
    step = 0
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(actions[step % len(actions)])
        assert not truncated
        rewards.append(reward)
        observations.append(obs)
        step += 1
    return rewards, observations, info


def test_our_mpc_stepped_through_the_env_gives_the_run_kpis() -> None:
    """The embedded default scenario (12 h): our MPC as ``build_policy`` makes it, its
    decisions passed as actions and the published values it is handed passed on from
    ``info``, against ``run_scenario`` on the same prepared data."""
    scenario = default_scenario()
    scenario = replace(scenario, run=replace(scenario.run, days=0.5))
    prepared = prepare(scenario)
    plain = run_scenario(scenario, prepared=prepared, plots=False).result.kpis

    env = DataCenterEnv(scenario, prepared=prepared)
    mpc = build_policy(*prepared)
    _, info = env.reset(seed=scenario.run.seed)
    rewards: list[float] = []
    lateness: list[float] = []
    terminated = False
    while not terminated:
        action = env.action(mpc.decide(info["observation"]))
        assert action in env.action_space
        _, reward, terminated, _, info = env.step(action)
        rewards.append(float(reward))
        lateness.append(info["lateness_usd"])
        # Each interval's cost is its ledger rows' (campuses summed).
        rows = info["ledger"].values()
        assert info["cost_usd"] == pytest.approx(
            net_cost_usd({c: sum(row[c] for row in rows) for c in COST_COLUMNS}), abs=1e-9)
        for when, values in info["published"]:
            mpc.observe(when, values)
    kpis = info["kpis"]
    assert len(rewards) == scenario.run.n_steps
    for key in ("cost_usd", *COST_COLUMNS):
        assert round(kpis[key], 2) == round(plain[key], 2), key
    for key in ("import_mwh", "export_mwh", "carbon_t", "tokens_served", "slo_attainment",
                "work_df_done_wu", "work_df_missed_wu", "decision_projections"):
        assert kpis[key] == pytest.approx(plain[key], rel=1e-9, abs=1e-9), key
    # Booked after the run: only the price of lateness the run end's judgement settles
    # (mpc_dc.sim.lateness); every other dollar came in its interval.
    assert info["cost_after_run_usd"] + sum(lateness) == pytest.approx(
        plain["lateness_usd"], abs=1e-9)
    assert round(sum(rewards), 2) == round(-plain["cost_usd"], 2)
    assert env.result is not None
    assert (env.result.ledger["decision_source"] == "gym").all()


def _tiny_env_at_fewest(fidelity: str) -> tuple[DataCenterEnv, dict[str, Any]]:
    """The tiny site with lateness priced (0.01 $ per late request, 0.001 $ per second)
    at ``fidelity``, reset, and an action holding it at its fewest instances."""
    table = tomllib.loads(TINY_GYM)
    table["serving"] = {"fidelity": fidelity, "late_usd_per_request": 0.01,
                        "late_usd_per_s": 0.001}
    env = DataCenterEnv(scenario_from_table(table, "TINY_GYM"))
    env.reset(seed=3)
    env.action_space.seed(5)
    return env, {**env.action_space.sample(),
                 "instances": np.zeros(len(env.pools), dtype=np.int64)}


def test_lateness_is_booked_in_the_step_it_becomes_certain() -> None:
    """The tiny site held at its fewest instances, lateness priced: requests go late
    from the first interval on, and their price comes in the rewards of the steps in
    which it accrues (waits and slow decodes as they happen), not all in the last
    step's."""
    env, fewest = _tiny_env_at_fewest("request")
    terminated = False
    rewards: list[float] = []
    costs: list[float] = []
    while not terminated:
        _, reward, terminated, _, info = env.step(fewest)
        rewards.append(float(reward))
        costs.append(info["cost_usd"])
    led = env.result.ledger if env.result is not None else None
    assert led is not None
    total = info["kpis"]["lateness_usd"]
    assert total > 0 and led["lateness_usd"].iloc[0] > 0
    # minus the rewards before the last step, less their ledger costs: lateness booked
    booked = -sum(rewards[:-1]) - sum(costs[:-1])
    assert booked > 0.5 * total, (booked, total)
    assert -rewards[0] > costs[0]
    assert -sum(rewards) == pytest.approx(info["kpis"]["cost_usd"], rel=1e-9)


def test_fluid_lateness_is_booked_interval_by_interval() -> None:
    """At fluid fidelity each interval's late share is its own estimate, final once the
    interval is served: the lateness in each step's reward (estimated once per
    interval, as the run goes) is the ledger's for that interval, and the rewards sum
    to minus the net cost."""
    env, fewest = _tiny_env_at_fewest("fluid")
    terminated = False
    lateness: list[float] = []
    while not terminated:
        _, reward, terminated, _, info = env.step(fewest)
        lateness.append(-float(reward) - info["cost_usd"])
    assert env.result is not None
    per_interval = env.result.ledger.groupby(level="interval_start_utc")["lateness_usd"].sum()
    assert per_interval.sum() > 0
    np.testing.assert_allclose(lateness, per_interval.to_numpy(), rtol=1e-9, atol=1e-9)


# The spaces are in the site's units ([MW], [WU], [requests]) and some are unbounded
# (prices, queues): by design (docs/policies.md), against two of the checker's hints.
@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space:UserWarning")
@pytest.mark.filterwarnings("ignore:.*Box observation space m..imum value is:UserWarning")
def test_the_env_passes_gymnasiums_checker(tmp_path: Path) -> None:
    """Made through the registry from a scenario file, so the checker also holds seeded
    resets and steps to determinism (it does so only for an environment with a spec)."""
    path = tmp_path / "tiny_gym.toml"
    path.write_text(TINY_GYM, encoding="utf-8")
    env = gymnasium.make(ENV_ID, scenario=path).unwrapped
    assert env.spec is not None
    check_env(env)


def test_a_seeded_reset_replays_the_episode(tiny: Scenario) -> None:
    """Same seed and actions: the same rewards and observations; another seed: other data."""
    env = DataCenterEnv(tiny)
    env.action_space.seed(7)
    actions = [env.action_space.sample() for _ in range(5)]
    first = _episode(env, 11, actions)
    second = _episode(env, 11, actions)
    assert first[0] == second[0]
    for a, b in zip(first[1], second[1], strict=True):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    other = _episode(env, 12, actions)
    assert other[0] != first[0]
    assert not np.array_equal(other[1][1]["published"], first[1][1]["published"])
    # The rewards of an episode sum to minus its net cost.
    assert sum(first[0]) == pytest.approx(-first[2]["kpis"]["cost_usd"], abs=1e-9)


def test_an_action_outside_the_spaces_is_projected_and_counted(tiny: Scenario) -> None:
    env = DataCenterEnv(tiny)
    spaces = env.action_space
    assert isinstance(spaces, gymnasium.spaces.Dict)
    too_much = {name: np.asarray(space.high if hasattr(space, "high") else space.nvec - 1)
                * 3.0 for name, space in spaces.items()}
    too_much["instances"] = too_much["instances"].astype(np.int64)
    *_, info = _episode(env, 3, [too_much])
    counts = info["kpis"]["decision_projections"]
    assert counts["gpu_limit_exceeded"] == env.n_steps
    assert counts["routing_shares_not_normalised"] == env.n_steps
    assert counts["battery_setpoint_infeasible"] >= 1


def test_step_needs_a_reset(tiny: Scenario) -> None:
    env = DataCenterEnv(tiny)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())
    *_, info = _episode(env, 3, [env.action_space.sample()])
    assert info["observation"] is None
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())


def test_lateness_booked_incrementally_matches_judging_the_whole_outcome(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two days of the tiny site at its fewest instances with instance crashes: the
    lateness to date booked incrementally (mpc_dc.sim.lateness.RequestLatenessToDate)
    equals, at every step, the whole outcome judged as it stood then (the way it was
    computed before), and so do the per-step rewards' lateness."""
    from mpc_dc.sim import engine
    from mpc_dc.sim.lateness import request_lateness

    table = tomllib.loads(TINY_GYM)
    table["run"]["days"] = 2
    table["serving"] = {"fidelity": "request", "late_usd_per_request": 0.01,
                        "late_usd_per_s": 0.001}
    table["faults"] = {"instance_crash": 0.2}
    reference: list[float] = []
    booked = engine._Loop.lateness_to_date_usd

    def both(loop: Any, step: int) -> float:
        assert loop.fleet is not None
        outcome = loop.fleet.server.outcome().at((step + 1) * engine.STEP_S)
        late, late_s = request_lateness(outcome, loop.site, loop.serving)
        reference.append(float(loop.serving.lateness_usd(float(late.sum()),
                                                         float(late_s.sum()))))
        return booked(loop, step)

    monkeypatch.setattr(engine._Loop, "lateness_to_date_usd", both)
    env = DataCenterEnv(scenario_from_table(table, "TINY_GYM"))
    env.reset(seed=3)
    env.action_space.seed(5)
    fewest = {**env.action_space.sample(),
              "instances": np.zeros(len(env.pools), dtype=np.int64)}
    lateness: list[float] = []
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(fewest)
        lateness.append(info["lateness_usd"])
    assert len(lateness) == 192 and info["kpis"]["faults_injected"]["instance_crash"] > 0
    expected = np.diff(np.array(reference), prepend=0.0)
    assert expected.sum() > 0 and (expected > 0).sum() > 20
    # the same up to the order of the float sums (the old one summed every request)
    np.testing.assert_allclose(lateness, expected, rtol=1e-9, atol=1e-9)
