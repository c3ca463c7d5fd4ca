"""The DR programme's baseline (``site.dr.baseline = "prior_days"``, mpc_dc/sim/dr_program.py):
hand-checked reference days, profile, day-of adjustment and settlement; the lead-in's
meter history before the run (hand-checked length and baseline; a run's baseline is the
rule on its lead-in's and its own meter); no look-ahead (the baseline of a run equals
the rule applied to its ledger poisoned after each notice); the MPC plans only on
events it has been told of; one-line errors for bad keys and for a lead-in the data
do not cover."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.control.dr_notices import DrNotices
from mpc_dc.control.offline import planned_baseline
from mpc_dc.policy import PolicyContext
from mpc_dc.problem import HorizonInputs
from mpc_dc.runner import (
    RunOutcome,
    build_policy,
    lead_in_scenario,
    offline_options,
    prepare,
    run_scenario,
    with_meter_history,
)
from mpc_dc.sim.dr_program import (
    ProgramBaseline,
    event_baseline,
    exogenous_events,
    exogenous_lead_in_days,
    lead_in_days,
    program_events,
)
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.exogenous import CampusRealized
from mpc_dc.sim.meter import CampusMeter
from mpc_dc.site.config import Campus, DemandResponse
from mpc_dc.site.data import DataFiles, build_site_exogenous, check_data
from mpc_dc.site.scenario import (
    Scenario,
    example_path,
    load_scenario,
    scenario_from_table,
    scenario_to_mapping,
    with_overrides,
)
from traces.datasets import DEFAULT_MAX_GAP
from traces.errors import ConfigError

TZ = "America/New_York"
DAY = 96
# Monday 2022-04-04 00:00 EDT; four weekdays, Monday to Thursday.
INDEX = pd.date_range("2022-04-04T04:00Z", periods=4 * DAY, freq="15min")
EVENT = slice(64, 84)  # 16:00-21:00 local
DR = DemandResponse(reward_usd_per_kwh=1.0, penalty_usd_per_kwh=2.0,
                    cap_fraction_of_baseline=1.0, notice_h=2.0, adjustment_h=3.0,
                    adjustment_cap=0.2)


def _flags(*days: int) -> np.ndarray:
    flags = np.zeros((len(INDEX), 1), dtype=bool)
    for d in days:
        flags[d * DAY + EVENT.start: d * DAY + EVENT.stop, 0] = True
    return flags


def _metered(event_day_mw: float) -> np.ndarray:
    """2, 3 and 4 MW flat on Monday to Wednesday; ``event_day_mw`` on Thursday."""
    return np.repeat([2.0, 3.0, 4.0, event_day_mw], DAY)[:, None]


def test_hand_checked_baseline() -> None:
    """Thursday's event (16-21 h, notice 2 h ahead: 14:00, step 3·96 + 56 = 344): the
    reference days are Wednesday, Tuesday, Monday (most recent first); the profile is
    (2 + 3 + 4) / 3 = 3 MW; the day-of window 11:00-14:00 on Thursday holds 3.3 MW
    against the profile's 3 MW: factor 1.1, baseline 3.3 MW; at 6 MW the factor is
    capped at 1.2 (3.6 MW); without a window it is 1 (3 MW)."""
    (e,) = program_events(INDEX, TZ, _flags(3), DR)
    assert e.day == "2022-04-07" and e.notice_step == 3 * DAY + 56
    assert e.reference_firsts == (2 * DAY, DAY, 0)
    assert list(e.window_offsets) == list(range(44, 56))
    base, factor = event_baseline(e, _metered(3.3), DR)
    assert factor == pytest.approx(1.1) and base == pytest.approx(np.full(20, 3.3))
    base, factor = event_baseline(e, _metered(6.0), DR)
    assert factor == pytest.approx(1.2) and base == pytest.approx(np.full(20, 3.6))
    (e0,) = program_events(INDEX, TZ, _flags(3), replace(DR, adjustment_h=0.0))
    assert event_baseline(e0, _metered(6.0), DR)[0] == pytest.approx(np.full(20, 3.0))


def test_event_days_and_limits_select_the_reference_days() -> None:
    """An event day is no reference day: with Tuesday's event, Thursday's are
    Wednesday and Monday ((2 + 4) / 2 = 3 MW); Tuesday's only Monday (2 MW, and its
    window's 3 MW against 2 MW is capped at 1.2: 2.4 MW); ``baseline_days = 1``
    keeps the most recent (Wednesday: 4 MW, window 3.3 / 4 → 0.825)."""
    tue, thu = program_events(INDEX, TZ, _flags(1, 3), DR)
    assert tue.reference_firsts == (0,) and thu.reference_firsts == (2 * DAY, 0)
    metered = _metered(3.3)
    assert event_baseline(thu, metered, DR)[0] == pytest.approx(np.full(20, 3.3))
    assert event_baseline(tue, metered, DR)[0] == pytest.approx(np.full(20, 2.4))
    (one,) = program_events(INDEX, TZ, _flags(3), replace(DR, baseline_days=1))
    assert one.reference_firsts == (2 * DAY,)
    assert event_baseline(one, metered, DR)[1] == pytest.approx(0.825)


def test_settled_at_programme_prices() -> None:
    """The meter settles Thursday's event against the published 3.3 MW: importing 3 MW
    earns 1 $/kWh × 1000 × 0.3 MW × 0.25 h = 75 $ an interval; importing 3.5 MW
    loses 50 $ and pays 2 $/kWh × 1000 × 0.2 MW × 0.25 h = 100 $ above the cap."""
    events = program_events(INDEX, TZ, _flags(3), DR)
    program = ProgramBaseline(events, DR, len(INDEX), 1)
    metered = _metered(3.3)
    assert program.publish(events[0].notice_step - 1, metered) == []
    assert program.publish(events[0].notice_step, metered) == events
    step = 3 * DAY + 70
    realized = CampusRealized(50.0, 50.0, 50.0, 0.0, 0.0, 0.0, True, 0.0, 0.0)
    (seen,) = program.realized(step, (realized,))
    assert seen.dr_baseline_mw == pytest.approx(3.3)
    meter = CampusMeter(Campus(name="a", price_node="F"), 0.0, DR)
    under, over = (meter.settle(1, import_mw=m, export_mw=0.0, realized=seen, unserved_wu=0.0,
                                missed_wu=0.0, period_ends=False) for m in (3.0, 3.5))
    assert (under[4], under[5]) == pytest.approx((75.0, 0.0))
    assert (over[4], over[5]) == pytest.approx((-50.0, 100.0))


def test_baseline_reads_nothing_from_the_notice_on() -> None:
    """Poisoning every metered value from the notice on leaves the baseline as it is."""
    rng = np.random.default_rng(3)
    metered = rng.uniform(1.0, 5.0, (len(INDEX), 1))
    for e in program_events(INDEX, TZ, _flags(1, 3), DR):
        poisoned = metered.copy()
        poisoned[e.notice_step:] = np.nan
        assert np.array_equal(event_baseline(e, metered, DR)[0],
                              event_baseline(e, poisoned, DR)[0])
        assert np.array_equal(event_baseline(e, metered, DR)[0],
                              event_baseline(e, metered[: e.notice_step], DR)[0])


# ----------------------------------------------------------------------------- lead-in


def test_lead_in_is_the_shortest_whole_weeks_that_fill_the_baseline() -> None:
    """Monday 4 April's event wants 10 weekdays: 1 April back to Monday 21 March, 14
    days before the run (two weeks); 3 weekdays: 1 April, 31 and 30 March, 5 days (one
    week); Thursday's 3 are in the run (none); a 3-day look-back holds only Friday 1
    April (one week); ``lead_in = false``: none."""
    assert lead_in_days(INDEX, TZ, _flags(0), DR) == 14
    three = replace(DR, baseline_days=3)
    assert lead_in_days(INDEX, TZ, _flags(0), three) == 7
    assert lead_in_days(INDEX, TZ, _flags(3), three) == 0
    (short,) = program_events(INDEX, TZ, _flags(0), replace(DR, lookback_days=3), 14 * DAY)
    assert short.reference_firsts == (-3 * DAY,)
    assert lead_in_days(INDEX, TZ, _flags(0), replace(DR, lookback_days=3)) == 7
    assert lead_in_days(INDEX, TZ, _flags(0), replace(DR, lead_in=False)) == 0


def test_cold_start_baseline_comes_from_the_lead_in() -> None:
    """Tuesday 5 April's event after a run start on Monday that imported nothing: the
    run alone gives Monday only, a 0 MW baseline; with the week's lead-in (Monday 28
    March to Sunday 3 April at 1, 2, 3, 4, 6, 9, 9 MW) the 3 reference weekdays are
    Monday 4 April, Friday 1 and Thursday 31 March: (0 + 6 + 4) / 3 MW."""
    dr = replace(DR, baseline_days=3, adjustment_h=0.0)
    history = np.repeat([1.0, 2.0, 3.0, 4.0, 6.0, 9.0, 9.0], DAY)[:, None]
    run = np.zeros((len(INDEX), 1))
    (cold,) = program_events(INDEX, TZ, _flags(1), dr)
    assert cold.reference_firsts == (0,)
    assert event_baseline(cold, run, dr)[0] == pytest.approx(np.zeros(20))
    (e,) = program_events(INDEX, TZ, _flags(1), dr, 7 * DAY)
    assert e.reference_firsts == (0, -3 * DAY, -4 * DAY)
    assert (e.notice_step, list(e.steps)) == (cold.notice_step, list(cold.steps))
    assert event_baseline(e, run, dr, history)[0] == pytest.approx(np.full(20, 10.0 / 3.0))
    # Monday's 18-h day-of window starts in the lead-in's Sunday night: 16 intervals at
    # 9 MW and 56 at 0 against the reference days' (16·4 + 56·6, 16·3 + 56·4,
    # 16·2 + 56·3) / 3 = 290.67: 0.50, clipped to 0.8.
    adjusted = replace(dr, adjustment_h=18.0)
    (first,) = program_events(INDEX, TZ, _flags(0), adjusted, 7 * DAY)
    assert first.day_first + first.window_offsets.min() < 0
    assert event_baseline(first, run, adjusted, history)[1] == pytest.approx(0.8)


def test_baseline_with_lead_in_reads_nothing_from_the_notice_on() -> None:
    """With a lead-in, poisoning every metered value of the run from the notice on
    leaves each baseline as it is."""
    rng = np.random.default_rng(5)
    history = rng.uniform(1.0, 5.0, (14 * DAY, 1))
    metered = rng.uniform(1.0, 5.0, (len(INDEX), 1))
    for e in program_events(INDEX, TZ, _flags(0, 2), DR, 14 * DAY):
        assert min(e.reference_firsts) < 0
        poisoned = metered.copy()
        poisoned[max(e.notice_step, 0):] = np.nan
        want = event_baseline(e, metered, DR, history)[0]
        assert np.isfinite(want).all()
        assert np.array_equal(want, event_baseline(e, poisoned, DR, history)[0])


# ----------------------------------------------------------------------------- a run


def _small_run_scenario(**dr: object) -> Scenario:
    """rcdc_default (synthetic, other IT, wind), Monday to Thursday, an event on Thursday."""
    overrides: dict[str, object] = {
        "run.days": 4, "run.history_days": 7, "dr.days": ["2022-04-07"],
        "controller.forecaster": "seasonal_naive_daily"}
    overrides.update({f"site.dr.{k}": v for k, v in dr.items()})
    return with_overrides(load_scenario(example_path("rcdc_default")), overrides, "test")


@pytest.fixture(scope="module")
def program_run() -> tuple[Scenario, object, object, list[np.ndarray]]:
    """The small run under the default rule, recording the DR events of every
    horizon the MPC planned on."""
    scenario, exo = prepare(_small_run_scenario())
    policy = build_policy(scenario, exo)
    planned: list[np.ndarray] = []
    decide = policy.decide

    def recording(obs):  # type: ignore[no-untyped-def]
        decision = decide(obs)
        inputs = policy.last_inputs[0]
        planned.append(np.zeros(1) if inputs.dr_event is None else inputs.dr_event[0].copy())
        return decision

    policy.decide = recording  # type: ignore[method-assign]
    result = simulate(exo, policy, serving=scenario.serving.config())
    return scenario, exo, result, planned


def test_run_is_settled_on_its_own_meter_before_the_notice(program_run) -> None:  # type: ignore[no-untyped-def]
    """The default baseline is the programme's: the ledger's baseline on the event
    equals the rule applied to the run's own metered import with everything from the
    notice on poisoned (the old ``s1_plan`` baseline, the offline plan of the day,
    does not)."""
    scenario, exo, result, _ = program_run
    assert scenario.site.dr.baseline == "prior_days"
    led = result.ledger
    metered = led["import_mw"].to_numpy().reshape(exo.n_steps, 1)
    (e,) = exogenous_events(exo)
    poisoned = metered.copy()
    poisoned[e.notice_step:] = 1e9
    want, _ = event_baseline(e, poisoned, scenario.site.dr)
    got = led["dr_baseline_mw"].to_numpy()[e.steps]
    assert got == pytest.approx(want, rel=1e-12)
    assert want.min() > 0
    kpis = result.kpis
    assert kpis["dr_energy_savings_mwh"] == pytest.approx(
        float(np.sum(want - metered[e.steps, 0])) * 0.25)
    assert kpis["dr_revenue_usd"] == pytest.approx(kpis["dr_reward_usd"]
                                                   - kpis["dr_penalty_usd"])


def test_mpc_plans_only_on_what_it_was_told(program_run) -> None:  # type: ignore[no-untyped-def]
    """Before the notice no horizon carries the event (the old rule announced it
    before the run); from the notice on every horizon carries it, and the MPC's
    record of baselines is the published one."""
    _, exo, result, planned = program_run
    (e,) = exogenous_events(exo)
    assert not any(p.any() for p in planned[: e.notice_step])
    assert all(planned[k].any() for k in range(e.notice_step, int(e.steps[0]) + 1))
    told = DrNotices(exo)
    assert np.isnan(told.baseline_mw).all()
    led = result.ledger["dr_baseline_mw"].to_numpy()
    for k in e.steps:
        told.observe(exo.run_index[k], {"dr_baseline_mw[rcdc]": float(led[k])})
    H = 8
    inputs = HorizonInputs.build(exo.site, H, price_usd_per_mwh=np.zeros((1, H)),
                                 dr_event=np.ones((1, H)), dr_baseline_mw=np.full((1, H), 9.0))
    seen = told.apply(int(e.steps[0]) - 2, inputs)
    assert seen.dr_event is not None and seen.dr_baseline_mw is not None
    assert list(seen.dr_event[0]) == [0, 0, 1, 1, 1, 1, 1, 1]
    assert seen.dr_baseline_mw[0, 2:] == pytest.approx(led[e.steps[:6]])


def test_offline_optimum_plans_on_a_baseline_and_is_settled_on_its_meter() -> None:
    """The offline optimum plans against the programme's baseline of its own plan
    without the programme (a positive baseline on the event), and is
    settled against the baseline of what it metered."""
    scenario, exo = prepare(_small_run_scenario())
    (e,) = exogenous_events(exo)
    planned, _ = planned_baseline(exo, offline_options(scenario.controller))
    assert planned.site.dr.baseline == "s1_plan"
    column = planned.realized_array("baseline")[:, 0]
    assert (column[e.steps] > 0).all()
    policy = build_policy(replace(scenario, controller=replace(scenario.controller,
                                                               kind="offline")), exo)
    result = simulate(exo, policy, serving=scenario.serving.config())
    metered = result.ledger["import_mw"].to_numpy()[:, None]
    want, _ = event_baseline(e, metered, scenario.site.dr)
    assert result.ledger["dr_baseline_mw"].to_numpy()[e.steps] == pytest.approx(want)


def test_policy_context_has_no_baseline_ahead() -> None:
    """A policy's context holds no DR schedule under the programme's rule (it learns
    each event at its notice), and the S1 plan's baseline under ``s1_plan``."""
    scenario, exo = prepare(_small_run_scenario(adjustment_h=0.0))
    assert not [c for c in PolicyContext.from_exogenous(scenario, exo).schedules.columns
                if c.startswith("dr_")]
    assert exo.dr_announced_at["rcdc"].max() == exogenous_events(exo)[0].notice_step
    scenario, exo = prepare(_small_run_scenario(baseline="s1_plan"))
    schedules = PolicyContext.from_exogenous(scenario, exo).schedules
    assert schedules["dr_baseline_mw[rcdc]"].max() > 0


# ----------------------------------------------------------------------------- bad keys


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("baseline", "yesterday", "expected one of"),
    ("notice_h", 0.3, "multiple of 0.25"),
    ("adjustment_cap", 1.5, "0 <= value < 1"),
    ("baseline_days", 0, "> 0"),
    ("baseline_min_days", 5, "at most baseline_days"),
])
def test_bad_key_is_one_line(key: str, value: object, expected: str) -> None:
    table = scenario_to_mapping(load_scenario(example_path("rcdc_default")))
    table["site"].setdefault("dr", {})[key] = value
    with pytest.raises(ConfigError) as err:
        scenario_from_table(table, "x.toml")
    message = str(err.value)
    assert "\n" not in message and f"dr.{key}" in message and expected in message


def test_too_few_reference_days_is_one_line(tmp_path: Path) -> None:
    """An event on the run's first day has no prior day in the run (without a lead-in)."""
    scenario = with_overrides(_small_run_scenario(lead_in=False), {"dr.days": ["2022-04-04"]},
                              "test")
    with pytest.raises(ConfigError) as err:
        prepare(scenario, source="x.toml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("x.toml: key 'site.dr.baseline_min_days': DR day 2022-04-04")
    assert "0 whole non-event weekdays" in message and 's1_plan' in message


@pytest.fixture(scope="module")
def lead_in_run() -> RunOutcome:
    """Tuesday's event, 3 reference weekdays: a week's lead-in before the small run."""
    scenario = with_overrides(_small_run_scenario(baseline_days=3),
                              {"dr.days": ["2022-04-05"]}, "test")
    return run_scenario(scenario, plots=False)


def test_run_is_settled_on_its_lead_in_and_own_meter(lead_in_run: RunOutcome) -> None:
    """Tuesday's event, 3 reference weekdays: the run is preceded by a week's lead-in,
    simulated with the same controller and not reported (the ledger and the KPIs are
    the run's 4 days); the ledger's baseline is the rule applied to the lead-in's
    meter (an independent run of :func:`lead_in_scenario`) and the run's own with
    everything from the notice on poisoned."""
    outcome = lead_in_run
    scenario = outcome.scenario
    kpis = outcome.result.kpis
    assert kpis["dr_lead_in_days"] == 7 and kpis["dr_lead_in_time_s"] > 0
    assert kpis["dr_lead_in_solver_time_limit_hits"] == kpis["dr_lead_in_fallbacks_total"] == 0
    led = outcome.result.ledger
    run_start = outcome.scenario.run.start_ts
    assert len(led) == 4 * DAY and led.index[0][0] == run_start
    lead = run_scenario(lead_in_scenario(outcome.scenario, 7), plots=False)
    history = lead.result.ledger["import_mw"].to_numpy()[:, None]
    assert lead.result.ledger.index[-1][0] == run_start - pd.Timedelta(minutes=15)
    _, exo = prepare(outcome.scenario)
    (e,) = exogenous_events(exo, 7 * DAY)
    assert e.reference_firsts == (0, -3 * DAY, -4 * DAY)
    poisoned = led["import_mw"].to_numpy()[:, None].copy()
    poisoned[e.notice_step:] = 1e9
    want, _ = event_baseline(e, poisoned, scenario.site.dr, history)
    assert led["dr_baseline_mw"].to_numpy()[e.steps] == pytest.approx(want, rel=1e-12)
    cold, _ = event_baseline(exogenous_events(exo, 0)[0], poisoned, scenario.site.dr)
    assert not np.allclose(want, cold)


def test_lead_in_leaves_the_run_alone_until_the_notice(lead_in_run: RunOutcome) -> None:
    """Nothing of the lead-in reaches the run's state (forecaster history, backlog,
    battery, fleet): with and without it, the run's ledger is the same row for row
    until the event's notice, the first instant the lead-in's meter is read."""
    cold = with_overrides(lead_in_run.scenario, {"site.dr.lead_in": False}, "test")
    runs = [lead_in_run, run_scenario(cold, plots=False)]
    assert [r.result.kpis["dr_lead_in_days"] for r in runs] == [7, 0]
    _, exo = prepare(runs[0].scenario)
    (e,) = exogenous_events(exo, 7 * DAY)
    with_lead, without = (r.result.ledger.iloc[: e.notice_step] for r in runs)
    pd.testing.assert_frame_equal(with_lead, without)
    later = [r.result.ledger["dr_baseline_mw"].to_numpy()[e.steps] for r in runs]
    assert not np.allclose(*later)


def test_lead_in_before_the_data_is_one_line(shared_data: Path) -> None:
    """A lead-in reaching before the data (US-NY-NYIS carbon starts in 2022) is refused
    in one line naming ``site.dr.lead_in``, before anything is simulated."""
    scenario = with_overrides(load_scenario(example_path("nyiso_wind_fleet")), {
        "data.dir": str(shared_data), "run.start": "2022-01-15T05:00:00Z", "run.days": 3,
        "run.history_days": 7, "dr.days": ["2022-01-17"]}, "test")
    scenario, exo = prepare(scenario, source="x.toml")
    with pytest.raises(ConfigError) as err:
        with_meter_history(scenario, exo, source="x.toml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("x.toml: key 'site.dr.lead_in': the DR baseline's lead-in of "
                              "14 d from 2022-01-01 05:00 UTC: ")


@pytest.mark.parametrize("override", [{"faults.main_solve": 1.0},
                                      {"controller.time_limit_s": 1e-6}])
def test_a_lead_in_that_fell_back_says_so(override: dict[str, object],
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """The lead-in's KPIs are not kept, so a solve of it that fell back or stopped at the
    wall clock is a warning naming it and counted for the run's KPIs
    (``dr_lead_in_fallbacks_total``, ``dr_lead_in_solver_time_limit_hits``): here every
    main solve of the lead-in fails, or every HiGHS run of it reaches a 1-µs limit."""
    from mpc_dc import runner

    scenario = with_overrides(_small_run_scenario(baseline_days=3),
                              {"dr.days": ["2022-04-05"]}, "test")
    plain = runner.lead_in_scenario

    def failing(sc: Scenario, days: int) -> Scenario:
        return with_overrides(plain(sc, days), override, "test")

    monkeypatch.setattr(runner, "lead_in_scenario", failing)
    _, exo = prepare(scenario)
    with caplog.at_level("WARNING", logger="mpc_dc.runner"):
        _, lead_in = with_meter_history(scenario, exo)
    assert any("DR lead-in" in r.getMessage() and "fallbacks" in r.getMessage()
               for r in caplog.records if r.name == "mpc_dc.runner")
    assert lead_in.fallbacks_total > 0 and lead_in.time_s > 0
    timed_out = "controller.time_limit_s" in override
    assert (lead_in.solver_time_limit_hits > 0) is timed_out


def test_a_lead_in_that_stopped_on_its_node_limit_says_so(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A node-limit stop of the lead-in (an incumbent plan behind every baseline) is a
    warning and a run KPI (``dr_lead_in_solver_node_limit_hits``), as a wall-clock stop
    is. This small site solves no MIP, so every solve of the lead-in is marked as one
    that stopped on its node limit, where the controller counts its solves."""
    from mpc_dc import runner
    from mpc_dc.control.mpc import ControllerStats

    scenario = with_overrides(_small_run_scenario(baseline_days=3),
                              {"dr.days": ["2022-04-05"]}, "test")
    plain_scenario, plain_record = runner.lead_in_scenario, ControllerStats.record
    in_lead_in = False

    def lead_in(sc: Scenario, days: int) -> Scenario:
        nonlocal in_lead_in
        in_lead_in = True
        return plain_scenario(sc, days)

    def record(self: ControllerStats, result: object) -> None:
        plain_record(self, replace(result, node_limit_hit=in_lead_in))  # type: ignore[type-var, arg-type]

    monkeypatch.setattr(runner, "lead_in_scenario", lead_in)
    monkeypatch.setattr(ControllerStats, "record", record)
    _, exo = prepare(scenario)
    with caplog.at_level("WARNING", logger="mpc_dc.runner"):
        _, lead = with_meter_history(scenario, exo)
    steps = exogenous_lead_in_days(exo) * DAY
    assert lead.solver_node_limit_hits == steps > 0
    assert (lead.solver_time_limit_hits, lead.fallbacks_total) == (0, 0)
    assert any("DR lead-in" in r.getMessage() and f"{steps} at the node limit"
               in r.getMessage() for r in caplog.records if r.name == "mpc_dc.runner")


def test_the_lead_in_bridges_a_short_gap_the_run_refuses(
        shared_data: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """NY wind missing one interval in the lead-in's run: the lead-in interpolates it (a
    warning names it) and is simulated; a reported run on those data refuses it."""
    import traces.datasets

    scenario = with_overrides(_small_run_scenario(baseline_days=3), {
        "dr.days": ["2022-04-05"], "data.dir": str(shared_data),
        "site.campuses[0].renewable.source": "real"}, "test")
    scenario, exo = prepare(scenario)
    lead = lead_in_scenario(scenario, exogenous_lead_in_days(exo))
    plain = traces.datasets.ny_wind_cf

    def gappy(data_dir: Path) -> tuple[pd.DataFrame, object]:
        frame, meta = plain(data_dir)
        return frame.drop(lead.run.start_ts + pd.Timedelta(hours=2)), meta

    monkeypatch.setattr(traces.datasets, "ny_wind_cf", gappy)
    with pytest.raises(ConfigError, match="misses 1 intervals of the run"):
        prepare(lead)
    with caplog.at_level("WARNING", logger="mpc_dc.site.data"):
        led, _ = with_meter_history(scenario, exo)
    assert led.dr_meter_history_mw is not None
    assert any("NY wind" in r.getMessage() and "interpolated" in r.getMessage()
               for r in caplog.records)


def _daily_requests(scenario: Scenario) -> tuple[np.ndarray, np.ndarray, pd.Timestamp]:
    """Requests [-] per day of ``scenario``'s history and of its run (the truth columns
    :func:`~mpc_dc.site.data.build_site_exogenous` hands the forecasters), and where its
    BurstGPT day 0 lies."""
    sources = check_data(scenario)
    exo = build_site_exogenous(scenario, sources=sources)
    rate = exo.frame.filter(like="requests_per_h[").sum(axis=1).to_numpy() / 4.0
    days = rate[: (len(rate) // DAY) * DAY].reshape(-1, DAY).sum(axis=1)
    hist = sources.history_steps // DAY
    assert sources.counts is not None
    return days[:hist], days[hist: hist + sources.run_steps // DAY], sources.counts.index[0]


@pytest.fixture(scope="module")
def caiso_week(shared_data: Path) -> Scenario:
    """``dr_caiso.toml`` (BurstGPT's day 0 at the run start) at one request stream."""
    return with_overrides(load_scenario(example_path("dr_caiso")), {
        "data.dir": str(shared_data), "site.dr.lead_in": True,
        "workload.requests.rate_multiplier": 1.0}, "test")


def test_the_lead_in_reads_no_data_file_again(caiso_week: Scenario) -> None:
    """The lead-in's data through the run's :class:`DataFiles` (as ``run_scenario``
    passes them): no file is read again, and its series are those read afresh."""
    files = DataFiles()
    check_data(caiso_week, files=files)
    read = files.reads
    lead = lead_in_scenario(caiso_week, 14)
    shared = check_data(lead, max_gap_steps=DEFAULT_MAX_GAP, files=files)
    # CAISO LMP, the carbon zone, BurstGPT's hourly counts and its first rows
    assert read == 4 and files.reads == read
    fresh = check_data(lead, max_gap_steps=DEFAULT_MAX_GAP)
    assert shared.index.equals(fresh.index) and shared.columns.keys() == fresh.columns.keys()
    for name, values in fresh.columns.items():
        np.testing.assert_array_equal(shared.columns[name], values, err_msg=name)
    assert shared.publication == fresh.publication and shared.rows is fresh.rows is None
    assert shared.counts is not None and fresh.counts is not None
    pd.testing.assert_frame_equal(shared.counts, fresh.counts)


def test_lead_in_workload_is_the_sites_pre_run_load(caiso_week: Scenario) -> None:
    """A 14-day lead-in before BurstGPT's day 0 carries the history's conversation stream,
    not BurstGPT restarted: no lead-in day reaches 1.5 x the busiest history day (BurstGPT's
    API-burst days 9 and 10 carry 44 and 27 x day 0's requests)."""
    lead = lead_in_scenario(caiso_week, 14)
    assert lead.run.start_ts == caiso_week.run.start_ts - pd.Timedelta(days=14)
    history, days, _ = _daily_requests(lead)
    assert len(days) == 14
    assert days.max() < 1.5 * history.max()
    assert days.min() > 0.5 * history.min()


def test_lead_in_keeps_burstgpt_where_the_run_places_it(caiso_week: Scenario) -> None:
    """BurstGPT's day 0 stays at its place in time in the lead-in, whether it lies inside
    the lead-in (``first_day`` 3 < 14 days: the lead-in's last 3 days are BurstGPT's days
    0..2, the 11 before are pre-run load) or before it (``first_day`` 20: the trace runs on
    into the run)."""
    for first_day in (3, 20):
        run = with_overrides(caiso_week, {"workload.requests.first_day": first_day}, "test")
        lead = lead_in_scenario(run, 14)
        *_, origin = _daily_requests(run)
        *_, lead_origin = _daily_requests(lead)
        assert lead_origin == origin == run.run.start_ts - pd.Timedelta(days=first_day)


def test_burstgpt_day_0_after_the_run_end_is_one_line(caiso_week: Scenario) -> None:
    """A negative ``first_day`` (BurstGPT's day 0 within the run) beyond the run's days is
    refused in one line naming the key."""
    with pytest.raises(ConfigError) as err:
        with_overrides(caiso_week, {"workload.requests.first_day": -8}, "x.toml")
    assert "\n" not in str(err.value)
    assert "workload.requests.first_day" in str(err.value)


def _by_local_hour_and_weekday(scenario: Scenario, pre_run: bool) -> tuple[pd.Series, pd.Series]:
    """Mean requests per interval [-] of ``scenario``'s pre-run days (history, and the
    run too when ``pre_run``) or of its run, by local hour and by local weekday."""
    sources = check_data(scenario)
    exo = build_site_exogenous(scenario, sources=sources)
    rate = exo.frame.filter(like="requests_per_h[").sum(axis=1) / 4.0
    start = 0 if pre_run else sources.history_steps
    rate = rate.iloc[start: sources.history_steps + sources.run_steps]
    local = rate.index.tz_convert(scenario.run.local_tz)
    return rate.groupby(local.hour).mean(), rate.groupby(local.day_of_week).mean()


def test_pre_run_stream_keeps_burstgpt_hours_and_weekdays(caiso_week: Scenario) -> None:
    """The lead-in's (and the history's) conversation stream has the day and week of the
    BurstGPT week it precedes, on the run's clock: the generator's profiles are fitted
    with BurstGPT's day 0 at a Friday midnight in New York, the run places it on a
    Tuesday midnight Pacific (drawn on the run's clock: hourly profiles correlated 0.43,
    weekday profiles -0.43, so the 10-in-10 baselines came from the wrong hours and days)."""
    pre_hour, pre_day = _by_local_hour_and_weekday(lead_in_scenario(caiso_week, 14), True)
    run_hour, run_day = _by_local_hour_and_weekday(caiso_week, False)
    assert np.corrcoef(pre_hour, run_hour)[0, 1] > 0.9
    assert np.corrcoef(pre_day, run_day)[0, 1] > 0.8
