"""The plant holds each DR event interval's committed cap (``site.dr.enforce_cap``).

The committed cap is ``K = max(f · b, planned import)``
(:func:`mpc_dc.sim.plant.committed_cap_mw`). A surprise in an event interval (less wind
than planned, more requests than planned) would take the import above it; the plant's
levers hold it there: curtailment given back, charge given up, deferrable work
deferred, the battery discharged (:mod:`mpc_dc.sim.plant`, step 7), and inside the
interval the fast layer's power cap on the inference pools (:mod:`mpc_dc.sim.fast_layer`).
Off, the plant runs as if there were no cap.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.params.quant_table import QuantTable
from mpc_dc.sim.arrivals import RequestArrays
from mpc_dc.sim.backlog import Backlog
from mpc_dc.sim.engine import RunResult, simulate
from mpc_dc.sim.exogenous import CampusRealized, SiteExogenous, column, demand_columns
from mpc_dc.sim.fast_layer import FastLayerConfig
from mpc_dc.sim.plant import CampusPlant, CampusRecord, committed_cap_mw
from mpc_dc.sim.policy import CampusDecision, Decision, FleetDecision
from mpc_dc.site.config import Campus, DemandResponse, Fleet, Grid, Site
from mpc_dc.studies.dr_cap import by_day, event_rows, main
from tests.scripted_policy import Scripted
from tests.test_engine import MODEL, POOL, W, hand_table, plant_campus
from tests.test_policy_interface import TINY_FLEET


def event(work_nd_wu: float, baseline_mw: float, cf: float = 0.0) -> CampusRealized:
    """An event interval at 50 $/MWh with ``work_nd_wu`` of ND work and wind ``cf``."""
    return CampusRealized(50.0, 50.0, 50.0, 300.0, cf, work_nd_wu, True, baseline_mw, 0.0)


def charged_campus() -> Campus:
    """:func:`tests.test_engine.plant_campus` (PUE 1, F(P) = P on 10 MW: 1 WU in an
    interval is 4 MW; 10 MW of wind; a lossless 10 MWh / 5 MW battery) holding 5 MWh."""
    campus = plant_campus(import_limit_mw=20.0, export_limit_mw=0.0)
    assert campus.battery is not None
    return replace(campus, battery=replace(campus.battery, initial_energy_mwh=5.0))


def run_plant(decision: CampusDecision, realized: CampusRealized, df_wu: float,
              enforce: bool) -> CampusRecord:
    plant = CampusPlant(charged_campus())
    backlog = Backlog()
    backlog.release(df_wu, 10)
    cap = committed_cap_mw(realized, decision, 1.0)
    return plant.execute(0, decision, realized, backlog, 0.0, cap, enforce)


@pytest.mark.parametrize(
    ("case", "decision", "realized", "df_wu", "uncapped", "expect"),
    [
        # The plan counted on 2 MW of wind (0.2 × 10) for 4 MW ND + 1 MW deferrable + 1 MW
        # charge: 4 MW planned, cap max(4.5, 4) = 4.5 MW. No wind: 6 MW. The charge goes
        # (5 MW), then 0.5 MW of deferrable work (0.125 WU of 0.25) is deferred.
        ("charge, then deferrable work",
         CampusDecision(work_df_wu=0.25, battery_charge_mw=1.0, planned_import_mw=4.0),
         event(1.0, 4.5), 0.25, 6.0,
         {"import_mw": 4.5, "battery_charge_mw": 0.0, "work_df_done_wu": 0.125,
          "dr_deferred_wu": 0.125, "dr_relief_mw": 1.5, "dr_committed_cap_mw": 4.5}),
        # 6 MW of ND work the plan put at 4 MW: nothing to give up or defer, the battery
        # discharges 1.5 MW (5 MWh → 4.625 MWh).
        ("then the battery",
         CampusDecision(planned_import_mw=4.0), event(1.5, 4.5), 0.0, 6.0,
         {"import_mw": 4.5, "battery_discharge_mw": 1.5, "battery_energy_mwh": 4.625,
          "dr_relief_mw": 1.5}),
        # The plan is above the programme's cap (4.8 MW against 4 MW): the committed cap is
        # the plan; 5 MW drawn, 0.2 MW discharged.
        ("a plan above the programme's cap",
         CampusDecision(planned_import_mw=4.8), event(1.25, 4.0), 0.0, 5.0,
         {"import_mw": 4.8, "battery_discharge_mw": 0.2, "dr_committed_cap_mw": 4.8}),
        # 5 MW of wind, 2 MW of it curtailed while importing 1 MW as planned; ND work is
        # 6 MW, so 3 MW are imported: 0.5 MW of the curtailment is given back (cap 2.5).
        ("curtailment given back",
         CampusDecision(curtailed_mw=2.0, planned_import_mw=1.0), event(1.5, 2.5, cf=0.5),
         0.0, 3.0,
         {"import_mw": 2.5, "curtailed_mw": 1.5, "battery_discharge_mw": 0.0,
          "dr_relief_mw": 0.5}),
    ],
)
def test_plant_holds_the_committed_cap_with_its_levers_in_order(
        case: str, decision: CampusDecision, realized: CampusRealized, df_wu: float,
        uncapped: float, expect: dict[str, float]) -> None:
    record = run_plant(decision, realized, df_wu, enforce=True)
    for name, value in expect.items():
        assert getattr(record, name) == pytest.approx(value, abs=1e-12), (case, name)
    # The power balance of the plant's books (mpc_dc.sim.invariants.check_campus_ledger).
    balance = (record.import_mw - record.export_mw) - (
        record.facility_power_mw + record.battery_charge_mw - record.battery_discharge_mw
        - record.renewable_used_mw)
    assert balance == pytest.approx(0.0, abs=1e-12), case
    assert record.facility_power_mw == pytest.approx(record.it_other_mw, abs=1e-12)
    # Off: as if there were no cap.
    off = run_plant(decision, realized, df_wu, enforce=False)
    assert off.import_mw == pytest.approx(uncapped, abs=1e-12), case
    assert off.dr_relief_mw == 0.0 and off.dr_deferred_wu == 0.0


def test_committed_cap_outside_events_and_without_a_plan() -> None:
    """No cap outside events; without a planned import the programme's cap ``f · b``."""
    outside = CampusRealized(50.0, 50.0, 50.0, 300.0, 0.0, 0.0, False, 0.0, 0.0)
    assert committed_cap_mw(outside, CampusDecision(planned_import_mw=1.0), 1.0) is None
    assert committed_cap_mw(event(0.0, 4.0), CampusDecision(), 0.8) == pytest.approx(3.2)
    assert committed_cap_mw(event(0.0, 4.0), CampusDecision(planned_import_mw=1.0),
                            0.8) == pytest.approx(3.2)


# ----------------------------------------------------------------------------- in a run


def two_intervals(baseline_mw: float, columns: dict[str, list[float]]) -> pd.DataFrame:
    """Campus ``W``'s data of two intervals at 30 $/MWh, the second a DR event with
    ``baseline_mw`` [MW], plus ``columns``."""
    index = pd.date_range("2022-06-01T04:00Z", periods=2, freq="15min",
                          name="interval_start_utc")
    return pd.DataFrame({
        column("price_usd_per_mwh", W): [30.0, 30.0],
        column("carbon_gco2_per_kwh", W): [400.0, 400.0],
        column("dr_event", W): [0.0, 1.0],
        column("dr_baseline_mw", W): [0.0, baseline_mw],
        **columns,
    }, index=index)


def wind_site(enforce: bool) -> SiteExogenous:
    """One campus: PUE 1, 10 MW of wind, a lossless 10 MWh / 5 MW battery with 5 MWh,
    other IT with 1 WU of ND work per interval (4 MW); two intervals, an event in the
    second (baseline 3 MW, known before the run). The wind blows at 0.2 in the first and
    falls to 0 in the second, where the plan counted on 0.2 (2 MW)."""
    campus = charged_campus()
    assert campus.other_it is not None
    campus = replace(campus, name=W, other_it=replace(campus.other_it, deferrable_share=0.0))
    site = Site(campuses=(campus,),
                dr=DemandResponse(baseline="s1_plan", enforce_cap=enforce))
    frame = two_intervals(3.0, {column("renewable_cf", W): [0.2, 0.0],
                                column("workload_wu", W): [1.0, 1.0]})
    return SiteExogenous(site, frame, frame.index[0], 2, None)


def planned() -> Scripted:
    """Imports 2 MW as planned (4 MW of ND work, 2 MW of wind), no battery set-point."""
    return Scripted(lambda obs: Decision({W: CampusDecision(planned_import_mw=2.0)}))


def test_a_wind_shortfall_in_an_event_is_held_at_the_cap_by_the_battery() -> None:
    """Interval 1: 4 MW drawn, no wind, cap max(3, 2) = 3 MW. Held: the battery
    discharges 1 MW, 3 MW imported; the run's books close (``simulate`` checks every
    invariant: energy balance, battery, settlement). Off: 4 MW imported, as in the same
    run with no event at all."""
    on = simulate(wind_site(True), planned())
    led = on.campus_ledger(W)
    np.testing.assert_allclose(led["import_mw"], [2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(led["battery_discharge_mw"], [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(led["battery_energy_mwh"], [5.0, 4.75], atol=1e-12)
    assert led["dr_committed_cap_mw"].iloc[1] == pytest.approx(3.0)
    assert led["dr_committed_cap_mw"].iloc[0] == np.inf  # no cap outside events
    k = on.kpis
    assert k["dr_compliance"] == 1.0 and k["dr_under_programme_cap"] == 1.0
    assert k["dr_relief_mwh"] == pytest.approx(0.25) and k["dr_cap_enforced"] is True
    # Settlement is the programme's, unchanged: reward 1 $/kWh × (3 − 3) MW.
    assert k["dr_reward_usd"] == pytest.approx(0.0, abs=1e-9)

    off = simulate(wind_site(False), planned())
    np.testing.assert_allclose(off.campus_ledger(W)["import_mw"], [2.0, 4.0], atol=1e-12)
    assert off.kpis["dr_compliance"] == 0.0 and off.kpis["dr_relief_mwh"] == 0.0
    assert off.kpis["dr_penalty_usd"] == pytest.approx(1000.0 * 2.0 * 1.0 * 0.25)
    exo = wind_site(False)
    no_event = replace(exo, frame=exo.frame.assign(**{column("dr_event", W): 0.0}))
    flows = ["import_mw", "battery_discharge_mw", "battery_energy_mwh", "facility_power_mw"]
    pd.testing.assert_frame_equal(off.ledger[flows],
                                  simulate(no_event, planned()).ledger[flows])


def burst_site(enforce: bool, baseline_mw: float = 1.25e-3) -> SiteExogenous:
    """One campus with one GPU and the hand pool of :func:`tests.test_engine.hand_table`
    (flat curve: ``P(B) = 1000 W + 50 W × B``, 10 slots, 1000 output tokens in 10 s),
    PUE 1, nothing else. Interval 0 brings no request; interval 1 is an event (baseline
    ``baseline_mw``, 1.25 kW) in which a request arrives every 1.1 s: ~9 running, ~1.45
    kW."""
    campus = Campus(name=W, price_node="F", gpus=1, pue=1.0,
                    grid=Grid(import_limit_mw=1.0, export_limit_mw=0.0))
    table: QuantTable = hand_table()
    site = Site(campuses=(campus,), fleet=Fleet(models=(MODEL,), flexibility="S2", table=table),
                dr=DemandResponse(baseline="s1_plan", enforce_cap=enforce))
    n = 818
    requests = RequestArrays.from_arrays(900.0 + 1.1 * np.arange(n), np.zeros(n),
                                         np.full(n, 100), np.full(n, 1000), (MODEL,))
    frame = two_intervals(baseline_mw, {})
    frame = frame.join(demand_columns(requests, frame.index))
    return SiteExogenous(site, frame, frame.index[0], 2, requests)


def burst_run(enforce: bool, baseline_mw: float = 1.25e-3) -> RunResult:
    """The plan: one instance, 1.1 kW of import (below the cap, ``baseline_mw``)."""
    policy = Scripted(lambda obs: Decision({W: CampusDecision(planned_import_mw=1.1e-3)},
                                           FleetDecision({POOL: 1}, {POOL: 1.0})))
    # The periodic wake-ups alone (a surge wake-up would set the cap once more).
    return simulate(burst_site(enforce, baseline_mw), policy,
                    fast_layer=FastLayerConfig(surge_window_s=0.0))


def test_a_request_burst_in_an_event_is_held_at_the_cap_by_a_power_cap() -> None:
    """Without the cap the instance runs ~9 requests (~1.45 kW) through the event
    interval, within the SLO. Held: at the boundary the pool may admit at most 5
    requests per instance, the largest batch whose bound fits the cap (1000 + 50 × 5 =
    1.25 kW, the cap itself: it binds with nothing to spare). At each wake-up what the
    rest may average is at least 1.25 kW (the instance drew at most that so far), short
    of the 1.3 kW a batch of 6 needs (the ramp-up at 900 s left the energy so far ~0.5 kJ
    under the cap's share, against 50 W × the 60 to 840 s left): 5 again. The interval's
    import stays within the cap to rounding, the requests queue and nearly all of them
    are late (their lateness is priced). The layer's old 1 % reserve (1.2375 kW) held the
    pool at 4 for the first three minutes, requests waiting while the cap had room."""
    on = burst_run(True)
    led = on.campus_ledger(W)
    assert led["import_mw"].iloc[1] <= 1.25e-3 * (1 + 1e-9)
    assert led["import_mw"].iloc[1] > 1.2e-3  # served throughout, at the caps' batches
    assert on.kpis["dr_compliance"] == 1.0
    assert on.fast_actions is not None
    caps = on.fast_actions[on.fast_actions["action"] == "cap"]
    assert len(caps) == 15  # the boundary and 14 wake-ups
    assert caps["count"].tolist() == [5] * 15
    assert on.kpis["dr_capped_s"] == 900.0  # one pool, the whole interval

    off = burst_run(False)
    assert off.campus_ledger(W)["import_mw"].iloc[1] > 1.4e-3
    assert off.kpis["dr_compliance"] == 0.0 and off.kpis["dr_capped_s"] == 0.0
    assert on.kpis["late_requests"] > off.kpis["late_requests"]


def test_event_rows_split_the_burst_into_tokens_not_planned() -> None:
    """:func:`mpc_dc.studies.dr_cap.event_rows` on the burst: the plan committed its one
    instance and planned no tokens, so the row is above both caps by the tokens served
    at the plan's 0.5 J/token (``d_tokens``), not by instances (``d_instances`` 0); the
    flat curve's active power is that energy per token (``d_occupancy`` ~ 0: only the
    first tokens counted in the interval they were admitted differ)."""
    off = burst_run(False)
    assert off.pools is not None
    rows = event_rows(off.ledger, off.pools, off.site)
    assert len(rows) == 1
    row = rows.iloc[0]
    served = float(off.campus_ledger(W)["tokens_served"].iloc[1])
    assert row["d_tokens"] == pytest.approx(0.5 * served / 900.0 / 1e3, rel=1e-12)
    assert row["d_instances"] == 0.0 and abs(row["d_occupancy"]) < 0.01 * row["d_tokens"]
    assert row["over_programme_cap"] and row["over_committed_cap"]
    assert not row["plan_over_programme_cap"]
    day = by_day(rows, "America/New_York").loc[("2022-06-01", W)]
    assert (day["rows"], day["over_fb"], day["over_k"], day["plan_over"]) == (1, 1, 1, 0)
    on = burst_run(True)
    assert on.pools is not None
    assert not event_rows(on.ledger, on.pools, on.site)["over_committed_cap"].any()


def test_off_switch_reproduces_the_code_before_the_committed_cap() -> None:
    """``enforce_cap = false`` runs the burst exactly as the code before the committed cap
    did. Stored figures, measured on commit 1fd7bba (the branch point) with this site,
    policy and ``FastLayerConfig()`` built without the key."""
    off = burst_run(False)
    led = off.campus_ledger(W)
    np.testing.assert_allclose(led["import_mw"], [0.001, 0.001456338333333325],
                               rtol=1e-12, atol=0.0)
    np.testing.assert_allclose(led["tokens_served"], [0.0, 814092.0], rtol=1e-12, atol=0.0)
    assert off.kpis["late_requests"] == 0.0
    assert off.kpis["cost_usd"] == pytest.approx(0.17317628749999373, rel=1e-12)


def test_the_split_of_a_run_without_a_fleet_is_refused_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The split needs the fleet's power line: a site without a fleet is refused with
    a ValueError (library) or one stderr line naming the scenario file and exit code 2
    (the study's command line), not an AssertionError."""
    site = Site(campuses=(plant_campus(import_limit_mw=20.0, export_limit_mw=0.0),))
    ledger = pd.DataFrame({"dr_event": [False]})
    pools = pd.DataFrame({"instances": [1]}, index=pd.MultiIndex.from_tuples(
        [("a", MODEL, "BF16")], names=["campus", "model", "precision"]))
    with pytest.raises(ValueError, match="no fleet; expected the site of a run with a"):
        event_rows(ledger, pools, site)
    scenario = tmp_path / "no_fleet.toml"
    scenario.write_text(TINY_FLEET.split("[fleet]")[0].replace("gpus = 16", "gpus = 0"),
                        encoding="utf-8")
    assert main([str(tmp_path), str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{scenario}: key 'fleet': the scenario has no fleet") and "\n" not in err
