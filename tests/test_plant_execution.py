"""The plant does what the plan says, and its books are checked.

* Committed curtailment: at negative import prices the plan curtails its own wind
  and imports; replaying the offline plan must cost exactly what the plan costs,
  and the perfect-foresight MPC must realize the flows it planned.
* Battery state of charge: a battery that delivers energy it does not hold stops
  the run with an :class:`InvariantError` naming the interval, and the CLI prints
  one line (exit 2), not a traceback.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.controllers import BaselinePolicy, Observation, OfflinePolicy
from mpc_dc.params.site import BatteryParams
from mpc_dc.scenario import (
    build_exogenous,
    build_policy,
    controller_variant,
    default_scenario,
    with_overrides,
)
from mpc_dc.sim.engine import check_invariants, simulate
from mpc_dc.sim.exogenous import RcdcExogenous
from mpc_dc.sim.invariants import InvariantError
from mpc_dc.sim.plant import Decision, RcdcPlant
from tests.test_closed_loop import short


def negative_price_exo() -> RcdcExogenous:
    """One synthetic day with the LMP at −40 $/MWh from 10:00 to 14:00 UTC.

    Wind (0.05-0.42 of 150 MW) never covers the ~77 MW site, so paid import and
    own wind compete only through curtailment.
    """
    exo = build_exogenous(short(days=1.0))
    frame = exo.frame.copy()
    hours = pd.DatetimeIndex(frame.index).hour
    frame.loc[(hours >= 10) & (hours < 14), "price_usd_per_mwh"] = -40.0
    return replace(exo, frame=frame)


def test_offline_replay_costs_what_the_plan_costs_at_negative_prices() -> None:
    exo = negative_price_exo()
    policy = OfflinePolicy(exo)
    assert policy.result.cost is not None
    result = simulate(exo, policy)
    led = result.ledger
    # The plan does curtail while importing (the case the plant used to override).
    assert (policy.plan.curtailed_mw > 1.0).sum() >= 8
    assert result.kpis["cost_usd"] == pytest.approx(policy.result.cost.total_usd, abs=0.005)
    np.testing.assert_allclose(led["import_mw"], policy.plan.import_mw, atol=1e-6)
    np.testing.assert_allclose(led["curtailed_mw"], policy.plan.curtailed_mw, atol=1e-6)


def test_perfect_foresight_mpc_realizes_its_planned_flows() -> None:
    exo = negative_price_exo()
    led = simulate(exo, build_policy(controller_variant(short(days=1.0), "perfect"), exo)).ledger
    assert (led["curtailed_mw"] > 1.0).sum() >= 8
    np.testing.assert_allclose(led["import_mw"], led["planned_import_mw"], atol=1e-6)
    np.testing.assert_allclose(led["export_mw"], led["planned_export_mw"], atol=1e-6)


@pytest.mark.shared_data
def test_offline_replay_equals_plan_on_the_two_day_real_case(shared_data: Path) -> None:
    """NYISO zone F, 4-5 April 2022 (eight negative real-time prices): to the cent."""
    exo = build_exogenous(with_overrides(default_scenario(), {
        "run.start": "2022-04-04T04:00:00Z", "run.days": 2.0, "run.history_days": 1,
        "data.source": "nyiso", "data.data_dir": str(shared_data), "data.zone": "F",
    }, "test"))
    assert (exo.frame["price_usd_per_mwh"] < 0).sum() == 8
    policy = OfflinePolicy(exo)
    assert policy.result.cost is not None
    replayed = simulate(exo, policy).kpis["cost_usd"]
    assert replayed == pytest.approx(policy.result.cost.total_usd, abs=0.005)


def test_curtailment_is_given_back_before_load_is_shed() -> None:
    """A plan that curtailed for cheap import meets more load than it planned."""
    exo = build_exogenous(short(days=1.0))
    site = replace(exo.config, grid=replace(exo.config.grid, import_limit_mw=60.0))
    plant = RcdcPlant(site)
    realized = replace(exo.realized(0), renewable_cf=0.2)  # 30 MW of wind
    backlog = exo.initial_backlog()
    decision = Decision(work_df_wu=0.0, curtailed_mw=30.0, planned_import_mw=50.0)
    record = plant.execute(0, decision, realized, backlog)
    # Load 40.4 MW <= 60 MW import limit: the committed curtailment stands.
    assert record.curtailed_mw == pytest.approx(30.0)
    assert record.import_mw == pytest.approx(record.site_load_mw)
    # Twice the work: load 85.2 MW; 25.2 MW of the wind comes back, nothing is shed.
    more = replace(realized, work_nd_wu=2 * realized.work_nd_wu)
    record = plant.execute(1, decision, more, backlog)
    assert record.work_nd_unserved_wu == 0.0
    assert record.site_load_mw > 60.0
    assert record.import_mw == pytest.approx(60.0)
    assert record.curtailed_mw == pytest.approx(30.0 - (record.site_load_mw - 60.0))


# ----------------------------------------------------------------------------- battery


class _ChargeThenDrain(BaselinePolicy):
    """Charge at full power for four intervals, then discharge at full power."""

    name = "charge-then-drain"

    def decide(self, obs: Observation) -> Decision:
        work = obs.backlog.total_wu
        if obs.step < 4:
            return Decision(work_df_wu=work, battery_charge_mw=25.0)
        return Decision(work_df_wu=work, battery_discharge_mw=25.0)


def _leaky(self: RcdcPlant, decision: Decision) -> tuple[float, float]:
    """A patched battery: executes any set-point, whatever energy it holds."""
    return decision.battery_charge_mw, decision.battery_discharge_mw


def battery_exo() -> RcdcExogenous:
    exo = build_exogenous(short(days=1.0))
    return replace(exo, config=replace(exo.config, battery=BatteryParams()))


def test_a_battery_within_its_limits_closes_its_books() -> None:
    exo = battery_exo()
    result = simulate(exo, _ChargeThenDrain())
    energy = result.ledger["battery_energy_mwh"].to_numpy()
    # 4 x 0.25 h x 25 MW x 0.95 = 23.75 MWh stored, then drained to empty.
    assert energy[3] == pytest.approx(23.75)
    assert energy[-1] == pytest.approx(0.0, abs=1e-9)
    assert result.ledger["battery_discharge_mw"].sum() * 0.25 == pytest.approx(23.75 * 0.95)


def test_a_battery_that_creates_energy_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """23.75 MWh stored; each full-power discharge interval takes 25 x 0.25 / 0.95 =
    6.58 MWh, so the fourth one (interval 7) would need energy the battery lacks."""
    monkeypatch.setattr(RcdcPlant, "_battery", _leaky)
    exo = battery_exo()
    with pytest.raises(InvariantError) as caught:
        simulate(exo, _ChargeThenDrain())
    assert caught.value.step == 7
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invariant violated at interval 7 (")
    assert "battery energy would reach -2.5" in message


def test_the_ledger_check_catches_a_state_of_charge_that_does_not_follow() -> None:
    exo = battery_exo()
    result = simulate(exo, _ChargeThenDrain())
    ledger = result.ledger.copy()
    energy = ledger["battery_energy_mwh"].to_numpy(copy=True)
    energy[5] += 1.0
    ledger["battery_energy_mwh"] = energy
    with pytest.raises(InvariantError, match=r"at interval 5 \(.*does not follow"):
        check_invariants(replace(result, ledger=ledger))


def test_cli_prints_one_line_for_an_invariant_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A battery that discharges at full power from empty: one stderr line, exit 2."""

    def drain(self: RcdcPlant, decision: Decision) -> tuple[float, float]:
        return 0.0, 25.0

    monkeypatch.setattr(RcdcPlant, "_battery", drain)
    scenario = tmp_path / "battery.toml"
    scenario.write_text('name = "battery"\n[site.battery]\n', encoding="utf-8")
    code = cli_main(["run", str(scenario), "--days", "1", "--controller", "baseline",
                     "--no-plots", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("mpc-dc: error: invariant violated at interval 0 (")
    assert "battery energy would reach" in err
    assert not (tmp_path / "run").exists()
