"""The plant does what the plan says, and its books are checked.

* Committed curtailment: at negative import prices the plan curtails its own wind
  and imports; replaying the offline plan must cost exactly what the plan costs,
  and the perfect-foresight MPC must realize the flows it planned (the RCDC site,
  ``rcdc_default.toml``).
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
from mpc_dc.control.baseline import BaselinePolicy
from mpc_dc.control.offline import OfflinePolicy
from mpc_dc.runner import build_policy, offline_options, prepare
from mpc_dc.sim.engine import check_invariants, simulate
from mpc_dc.sim.exogenous import SiteExogenous, column
from mpc_dc.sim.invariants import InvariantError
from mpc_dc.sim.plant import CampusPlant
from mpc_dc.sim.policy import CampusDecision, Decision, Observation
from mpc_dc.site.scenario import Scenario, controller_variant, example_path
from tests.loop_cases import rcdc_short

C = "rcdc"
PRICE = column("price_usd_per_mwh", C)


def negative_price_case() -> tuple[Scenario, SiteExogenous]:
    """One synthetic day with the LMP at −40 $/MWh from 10:00 to 14:00 UTC.

    Wind (0.05-0.42 of 150 MW) never covers the ~77 MW site, so paid import and
    own wind compete only through curtailment.
    """
    scenario, exo = prepare(rcdc_short(1.0))
    frame = exo.frame.copy()
    hours = pd.DatetimeIndex(frame.index).hour
    frame.loc[(hours >= 10) & (hours < 14), PRICE] = -40.0
    return scenario, replace(exo, frame=frame)


def test_offline_replay_costs_what_the_plan_costs_at_negative_prices() -> None:
    scenario, exo = negative_price_case()
    policy = OfflinePolicy(exo, offline_options(scenario.controller))
    assert policy.result.cost is not None
    result = simulate(exo, policy)
    led = result.campus_ledger(C)
    # The plan does curtail while importing (the case the plant used to override).
    assert (policy.plan.curtailed_mw[0] > 1.0).sum() >= 8
    assert result.kpis["cost_usd"] == pytest.approx(policy.result.cost.total_usd, abs=0.005)
    np.testing.assert_allclose(led["import_mw"], policy.plan.import_mw[0], atol=1e-6)
    np.testing.assert_allclose(led["curtailed_mw"], policy.plan.curtailed_mw[0], atol=1e-6)


def test_perfect_foresight_mpc_realizes_its_planned_flows() -> None:
    scenario, exo = negative_price_case()
    led = simulate(exo, build_policy(controller_variant(scenario, "perfect"), exo)
                   ).campus_ledger(C)
    assert (led["curtailed_mw"] > 1.0).sum() >= 8
    np.testing.assert_allclose(led["import_mw"], led["planned_import_mw"], atol=1e-6)
    np.testing.assert_allclose(led["export_mw"], led["planned_export_mw"], atol=1e-6)


@pytest.mark.shared_data
def test_offline_replay_equals_plan_on_the_two_day_real_case(shared_data: Path) -> None:
    """NYISO zone F, 4-5 April 2022 (eight negative real-time prices): to the cent."""
    scenario, exo = prepare(rcdc_short(2.0, 1, overrides={
        "run.start": "2022-04-04T04:00:00Z", "data.source": "real",
        "data.dir": str(shared_data)}))
    assert (exo.realized_array("price")[:, 0] < 0).sum() == 8
    policy = OfflinePolicy(exo, offline_options(scenario.controller))
    assert policy.result.cost is not None
    replayed = simulate(exo, policy).kpis["cost_usd"]
    assert replayed == pytest.approx(policy.result.cost.total_usd, abs=0.005)


# Committed curtailment given back before load is shed:
# tests/test_engine.py::test_committed_curtailment_is_given_back_before_shedding.


# ----------------------------------------------------------------------------- battery


class _ChargeThenDrain(BaselinePolicy):
    """Charge at full power for four intervals, then discharge at full power."""

    name = "charge-then-drain"

    def decide(self, obs: Observation) -> Decision:
        work = obs.campuses[C].backlog_total_wu
        if obs.step < 4:
            return Decision({C: CampusDecision(work_df_wu=work, battery_charge_mw=25.0)})
        return Decision({C: CampusDecision(work_df_wu=work, battery_discharge_mw=25.0)})


def _leaky(self: CampusPlant, charge_mw: float, discharge_mw: float) -> tuple[float, float]:
    """A patched battery: executes any set-point, whatever energy it holds."""
    return charge_mw, discharge_mw


def battery_exo() -> SiteExogenous:
    return prepare(rcdc_short(1.0, overrides={"site.campuses[0].battery": {}}))[1]


def test_a_battery_within_its_limits_closes_its_books() -> None:
    exo = battery_exo()
    led = simulate(exo, _ChargeThenDrain(exo)).campus_ledger(C)
    energy = led["battery_energy_mwh"].to_numpy()
    # 4 x 0.25 h x 25 MW x 0.95 = 23.75 MWh stored, then drained to empty.
    assert energy[3] == pytest.approx(23.75)
    assert energy[-1] == pytest.approx(0.0, abs=1e-9)
    assert led["battery_discharge_mw"].sum() * 0.25 == pytest.approx(23.75 * 0.95)


def test_a_battery_that_creates_energy_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """23.75 MWh stored; each full-power discharge interval takes 25 x 0.25 / 0.95 =
    6.58 MWh, so the fourth one (interval 7) would need energy the battery lacks."""
    monkeypatch.setattr(CampusPlant, "feasible_battery", _leaky)
    exo = battery_exo()
    with pytest.raises(InvariantError) as caught:
        simulate(exo, _ChargeThenDrain(exo))
    assert caught.value.step == 7
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("invariant violated at interval 7 (")
    assert "campus rcdc: battery energy would reach -2.5" in message


def test_the_ledger_check_catches_a_state_of_charge_that_does_not_follow() -> None:
    exo = battery_exo()
    result = simulate(exo, _ChargeThenDrain(exo))
    ledger = result.ledger.copy()
    energy = ledger["battery_energy_mwh"].to_numpy(copy=True)
    energy[5] += 1.0  # one campus: row 5 is interval 5
    ledger["battery_energy_mwh"] = energy
    with pytest.raises(InvariantError, match=r"at interval 5 \(.*does not follow"):
        check_invariants(replace(result, ledger=ledger))


def test_cli_prints_one_line_for_an_invariant_violation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A battery that discharges at full power from empty: one stderr line, exit 2."""

    def drain(self: CampusPlant, charge_mw: float, discharge_mw: float) -> tuple[float, float]:
        return 0.0, 25.0

    monkeypatch.setattr(CampusPlant, "feasible_battery", drain)
    scenario = tmp_path / "battery.toml"
    scenario.write_text(example_path("rcdc_default").read_text(encoding="utf-8")
                        + "\n[site.campuses.battery]\n", encoding="utf-8")
    code = cli_main(["run", str(scenario), "--days", "1", "--controller", "baseline",
                     "--no-plots", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("mpc-dc: error: invariant violated at interval 0 (")
    assert "battery energy would reach" in err
    assert not (tmp_path / "run").exists()
