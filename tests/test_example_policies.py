"""The example scenario-based stochastic MPC (``example-smpc``,
examples/mpc_dc_example_policies/mpc_dc_example_policies/smpc.py) run closed-loop on the
tiny synthetic fleet site of tests/test_policy_interface.py (6 h, 2-h horizon).

The example package is registered as pip would register it (fixture
``example_installed``, tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.policy import PolicyContext, installed_policies
from mpc_dc.runner import run_scenario
from mpc_dc.sim.meter import COST_COLUMNS
from mpc_dc.site.scenario import load_scenario
from tests.test_policy_interface import TINY_FLEET

# Decisions of the interval, as the ledger records them (the plant's recourse aside).
DECISIONS = ("work_df_committed_wu", "planned_import_mw", "planned_export_mw",
             "battery_charge_mw", "battery_discharge_mw")


def _scenario_file(tmp_path: Path, scenarios: int) -> Path:
    path = tmp_path / f"tiny_fleet_s{scenarios}.toml"
    path.write_text(TINY_FLEET + f"scenarios = {scenarios}\n", encoding="utf-8")
    return path


def _kpis(run: Path) -> dict[str, object]:
    kpis: dict[str, object] = json.loads((run / "kpis.json").read_text(encoding="utf-8"))
    return kpis


def test_the_stochastic_mpc_runs_by_its_entry_point_name(
        example_installed: None, tmp_path: Path) -> None:
    """``mpc-dc run --policy example-smpc`` with 3 scenarios: every interval decided by
    the two-stage LP (one solve each, no fallback), nothing projected."""
    assert installed_policies()["example-smpc"] == (
        "mpc_dc_example_policies.smpc:StochasticMpc")
    run = tmp_path / "run"
    assert cli_main(["run", str(_scenario_file(tmp_path, 3)), "--policy", "example-smpc",
                     "--no-plots", "--out", str(run)]) == 0
    kpis = _kpis(run)
    ledger = pd.read_parquet(run / "ledger.parquet")
    assert kpis["controller"] == "example-smpc" and kpis["policy"] == "example-smpc"
    assert kpis["decision_projections"] == {} and kpis["decision_projections_total"] == 0
    assert kpis["fallbacks_total"] == 0
    assert kpis["solves"] == len(ledger) == 24
    assert kpis["forms"] == {"scenario_lp": 24}
    assert set(ledger["decision_source"]) == {"example-smpc"}


def test_one_scenario_is_the_deterministic_mpc(example_installed: None, tmp_path: Path) -> None:
    """With ``controller.scenarios = 1`` the one scenario is the MPC's own horizon, so
    the two-stage LP must decide every interval as our MPC does (built from the same
    context, tests/public_mpc.py): same instances, routing and planned flows in every
    interval, same KPIs to the cent."""
    scenario = _scenario_file(tmp_path, 1)
    smpc, mpc = tmp_path / "smpc", tmp_path / "mpc"
    assert cli_main(["run", str(scenario), "--policy", "example-smpc", "--no-plots",
                     "--out", str(smpc)]) == 0
    assert cli_main(["run", str(scenario), "--policy", "tests.public_mpc:PublicMpc",
                     "--no-plots", "--out", str(mpc)]) == 0
    a, b = pd.read_parquet(smpc / "ledger.parquet"), pd.read_parquet(mpc / "ledger.parquet")
    fleet = [c for c in a.columns if c.startswith(("instances[", "routing_share["))]
    assert fleet
    pd.testing.assert_frame_equal(a[fleet], b[fleet])
    pd.testing.assert_frame_equal(a[list(DECISIONS)], b[list(DECISIONS)], rtol=0, atol=1e-9)
    ka, kb = _kpis(smpc), _kpis(mpc)
    for key in ("cost_usd", *COST_COLUMNS):
        assert round(float(ka[key]), 2) == round(float(kb[key]), 2), key  # type: ignore[arg-type]
    for key in ("tokens_served", "slo_attainment", "decision_projections"):
        assert ka[key] == kb[key], key


def test_the_scenarios_are_reproducible(example_installed: None, tmp_path: Path) -> None:
    """Scenarios are drawn from a generator seeded with (run.seed, step): two runs give
    the same ledger."""
    scenario = load_scenario(_scenario_file(tmp_path, 3))
    runs = [run_scenario(scenario, plots=False, policy="example-smpc").result.ledger
            for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0], runs[1])


@pytest.mark.parametrize("scenarios", [0, -2])
def test_a_bad_number_of_scenarios_is_one_line(tmp_path: Path, scenarios: int,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", str(_scenario_file(tmp_path, scenarios)), "--no-plots",
                     "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"key 'controller.scenarios': expected an integer >= 1, got {scenarios}" in err


@pytest.mark.parametrize(("upper_price", "committed"), [(5.0, False), (-5.0, True)])
def test_a_curtailment_is_committed_as_the_mpc_commits_it(
        example_installed: None, upper_price: float, committed: bool) -> None:
    """The plan (one scenario, the point forecast at −20 $/MWh: paid to import) curtails
    its wind and imports. As the MPC (tests/test_mpc_hedges.py), the stochastic MPC
    commits that curtailment only where the price's ``controller.curtail_confidence``
    quantile (0.9, pinned at ``upper_price``) is negative too: at +5 $/MWh the wind
    serves the load. Before, it committed the plan's curtailment on the point
    forecast's sign, and the plant curtailed free wind to import at a positive price
    (nyiso_wind_fleet, docs/fleet_closed_loop.md, "Scenario MPC on the product month")."""
    from mpc_dc_example_policies.smpc import StochasticMpc

    from mpc_dc.control.mpc import start_observation
    from mpc_dc.policy import PolicyContext
    from mpc_dc.runner import prepare
    from tests.loop_cases import rcdc_short
    from tests.test_mpc_hedges import C, pinned

    scenario, exo = prepare(rcdc_short(0.25, history_days=2, overrides={
        "controller.forecaster": "persistence", "controller.scenarios": 1,
        "controller.curtail_confidence": 0.9}))
    policy = StochasticMpc(PolicyContext.from_exogenous(scenario, exo))
    policy.mpc.forecasts = pinned(policy.mpc.exo, -20.0, upper_price)
    obs = start_observation(exo, 0)
    planned = policy.problem.solve([policy.mpc.horizon_inputs(obs)]).plan
    assert planned is not None and planned.decision(0, "plan").campus(C).curtailed_mw > 1.0
    curtailed = policy.decide(obs).campus(C).curtailed_mw
    assert curtailed == (pytest.approx(planned.decision(0, "plan").campus(C).curtailed_mw)
                         if committed else 0.0)
    assert policy.stats.fallbacks == {}


def test_the_scenario_problem_prices_lateness_as_the_mpc(
        example_installed: None, tmp_path: Path) -> None:
    """Each scenario's copy has the cost terms of our MPC's problem, the price of the
    backlog and of the pools' congestion (``controller.lateness_weight``, on by default)
    included. Before, the copies had neither: the stochastic MPC provisioned for the
    forecast without pricing the requests a short plan leaves late (nyiso_wind_fleet,
    30 days: 2.1 times the MPC's late requests; docs/fleet_closed_loop.md, "Scenario MPC
    on the product month")."""
    from mpc_dc_example_policies.smpc import StochasticMpc

    from mpc_dc.runner import prepare

    scenario, exo = prepare(load_scenario(_scenario_file(tmp_path, 2)))
    policy = StochasticMpc(PolicyContext.from_exogenous(scenario, exo))
    mpc_costs = set(policy.mpc.problem.ctx.costs)
    assert {"lateness_usd", "congestion_usd"} <= mpc_costs  # the MPC does price them
    for ctx in policy.problem.contexts:
        assert set(ctx.costs) == mpc_costs
