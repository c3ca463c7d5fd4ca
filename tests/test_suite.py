"""``mpc-dc benchmark``: suite files, the scorecard's arithmetic, the standard suite at its
tiny size with a policy from a separate package (docs/benchmark.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.suite import load_suite, scorecard, suite_sweep, summary
from traces.errors import ConfigError

# ----------------------------------------------------------------------------- arithmetic


def _results(rows: dict[str, dict[str, float]], scenario: str = "s") -> pd.DataFrame:
    table = pd.DataFrame([{"run_id": f"{scenario}-{p}", "status": "done", "scenario": scenario,
                           "policy": p, "controller": p, "carbon_t": 1.0,
                           "peak_import_mw": 1.0, "dr_compliance": math.nan,
                           "work_df_missed_wu": 0.0, "decision_projections_total": 0,
                           **kpis} for p, kpis in rows.items()])
    return table


def test_gap_closed_is_the_share_of_the_achievable_saving_with_the_slo_penalty() -> None:
    results = _results({
        "baseline": {"cost_usd": 100.0, "costs_usd": 100.0, "slo_missed_requests": 0.0},
        "offline": {"cost_usd": 60.0, "costs_usd": 60.0, "slo_missed_requests": 0.0},
        "cheap": {"cost_usd": 70.0, "costs_usd": 70.0, "slo_missed_requests": 0.0},
        # Saves more than the optimum by missing SLOs: the penalty (0.5 $/request) counts.
        "shirker": {"cost_usd": 50.0, "costs_usd": 50.0, "slo_missed_requests": 40.0},
    })
    timings = pd.DataFrame({"run_id": results["run_id"], "decide_time_median_s": 0.01})
    card = scorecard(results, timings, 0.5).set_index("policy")
    assert card.loc["cheap", "gap_closed"] == pytest.approx(0.75)
    assert card.loc["shirker", "gap_closed"] == pytest.approx((100 - 70) / 40)
    assert card.loc["baseline", "gap_closed"] == 0.0 and card.loc["offline", "gap_closed"] == 1.0
    assert card.loc["cheap", "regret_usd"] == pytest.approx(10.0)
    assert card.loc["cheap", "cost_vs_baseline_pct"] == pytest.approx(-30.0)
    totals = summary(card.reset_index()).set_index("policy")
    assert totals.loc["cheap", "score"] == pytest.approx(0.75)


def test_the_cost_against_business_as_usual_is_a_share_of_its_costs_not_of_its_net() -> None:
    """Issue 16's rule: a percentage of cost is of costs (no revenue), the difference one
    of net costs. In ``a`` export revenue makes BAU's net cost negative (costs 40 $,
    revenue 50 $): ``p`` saves 15 $, 37.5 % of BAU's costs; a ratio of the nets (2.5)
    would say it costs more. In ``b`` BAU's net is positive but mostly offset by revenue
    (costs 55 $, revenue 50 $): ``p``'s extra 1 $ is 1.82 % of them, not the nets' 20 %.
    In ``c`` BAU has no costs: no share. The summary's mean skips that NaN."""
    results = pd.concat([
        _results({"baseline": {"cost_usd": -10.0, "costs_usd": 40.0},
                  "offline": {"cost_usd": -30.0, "costs_usd": 30.0},
                  "p": {"cost_usd": -25.0, "costs_usd": 35.0}}, "a"),
        _results({"baseline": {"cost_usd": 5.0, "costs_usd": 55.0},
                  "offline": {"cost_usd": 5.0, "costs_usd": 55.0},
                  "p": {"cost_usd": 6.0, "costs_usd": 56.0}}, "b"),
        _results({"baseline": {"cost_usd": -3.0, "costs_usd": 0.0},
                  "offline": {"cost_usd": -3.0, "costs_usd": 0.0},
                  "p": {"cost_usd": -3.5, "costs_usd": 0.0}}, "c")])
    timings = pd.DataFrame({"run_id": results["run_id"], "decide_time_median_s": 0.01})
    card = scorecard(results, timings, 0.0)
    a = card[card["scenario"] == "a"].set_index("policy")
    assert a.loc["p", "cost_vs_baseline_pct"] == pytest.approx(-37.5)
    assert a.loc["offline", "cost_vs_baseline_pct"] == pytest.approx(-50.0)
    assert a.loc["baseline", "cost_vs_baseline_pct"] == 0.0
    assert a.loc["p", "gap_closed"] == pytest.approx(0.75)
    b = card[card["scenario"] == "b"].set_index("policy")
    assert b.loc["p", "cost_vs_baseline_pct"] == pytest.approx(100.0 / 55.0)
    # Nothing to gain over business as usual: no score from this scenario.
    assert math.isnan(b.loc["p", "gap_closed"])
    c = card[card["scenario"] == "c"].set_index("policy")
    assert math.isnan(c.loc["p", "cost_vs_baseline_pct"])
    totals = summary(card).set_index("policy")
    assert totals.loc["p", "score"] == pytest.approx(0.75)
    assert totals.loc["p", "scenarios_scored"] == 1
    assert totals.loc["p", "cost_vs_baseline_pct"] == pytest.approx((-37.5 + 100.0 / 55.0) / 2)


# ----------------------------------------------------------------------------- suite files


def _suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
[suite]
name = "t"
controllers = ["persistence"]
[suite.sizes.tiny]
days = 0.25
[[scenarios]]
name = "a"
scenario = "rcdc_default"
overrides = { "run.history_days" = 7 }
"""


def test_a_suite_expands_to_every_controller_and_policy(tmp_path: Path) -> None:
    suite = load_suite(str(_suite(tmp_path, GOOD)), size="tiny")
    assert suite.controllers == ("baseline", "persistence", "offline")
    assert suite.scenarios[0].scenario.run.days == 0.25
    spec = suite_sweep(suite, ["pkg.mod:Cls"])
    assert [dict(r.overrides)["policy"] for r in spec.runs] == [
        "baseline", "persistence", "offline", "pkg.mod:Cls"]
    assert [r.policy for r in spec.runs] == [None, None, None, "pkg.mod:Cls"]
    assert spec.runs[1].scenario.controller.forecaster == "persistence"
    assert len({r.run_id for r in spec.runs}) == 4


@pytest.mark.parametrize(("text", "size", "key"), [
    (GOOD.replace('name = "t"', 'name = "t"\ncontroler = []'), "default", "suite.controler"),
    (GOOD, "huge", "suite.sizes"),
    (GOOD.replace("scenario = \"rcdc_default\"", "scenario = \"nope\""), "default",
     "scenarios[0].scenario"),
    (GOOD.replace("run.history_days", "run.histroy_days"), "default", "run.histroy_days"),
    (GOOD.replace("days = 0.25", "days = -1"), "tiny", "suite.sizes.tiny.days"),
])
def test_a_bad_suite_is_one_line_naming_the_key(tmp_path: Path, text: str, size: str,
                                                key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_suite(str(_suite(tmp_path, text)), size=size)
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- standard


@pytest.mark.slow
def test_the_standard_suite_at_its_tiny_size_scores_a_separate_package(
        example_installed: None, shared_data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every scenario of ``standard`` for 6 hours under every controller and the example
    policy (installed as a separate package), then its HTML report."""
    out = tmp_path / "bench"
    assert cli_main(["benchmark", "standard", "--size", "tiny", "--policy", "example-bau",
                     "--data", str(shared_data), "--out", str(out)]) == 0
    card = pd.read_csv(out / "scorecard.csv")
    suite = load_suite("standard", size="tiny")
    policies = ["baseline", "sarimax", "seasonal_naive", "perfect", "offline", "example-bau"]
    assert list(card["scenario"].unique()) == [s.name for s in suite.scenarios]
    assert card.groupby("scenario")["policy"].apply(list).to_dict() == {
        s.name: policies for s in suite.scenarios}
    by = card.set_index(["scenario", "policy"])
    scored = by["gap_closed"].notna()
    assert (by.loc[(slice(None), "baseline"), "gap_closed"] == 0).all()
    assert (by["gap_closed"][scored].xs("offline", level="policy") == 1).all()
    # Regret is measured against the offline optimum: none below it beyond its gap.
    assert (by["regret_usd"].xs("offline", level="policy") == 0).all()
    assert (by.loc[(slice(None), "example-bau"), "projections"] == 0).all()
    totals = pd.read_csv(out / "summary.csv").set_index("policy")
    assert list(totals.index) == policies
    assert totals.loc["offline", "score"] == 1.0 and totals.loc["baseline", "score"] == 0.0
    assert "## stress-day" in (out / "scorecard.md").read_text(encoding="utf-8")
    assert cli_main(["report", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("<table") == 1 + len(suite.scenarios) and "example-bau" in html
    assert "score" in capsys.readouterr().out


@pytest.mark.parametrize("size", ["default", "tiny"])
def test_every_solver_limit_of_the_standard_suite_is_deterministic(size: str) -> None:
    """The executors must give the same scorecard (issue 19): every MIP run is capped by
    a node limit, and the wall-clock limits are the far looser safety nets (a hit is
    counted in the scorecard as not reproducible)."""
    for entry in load_suite("standard", size=size).scenarios:
        ctl = entry.scenario.controller
        assert ctl.mip_max_nodes is not None and ctl.offline_mip_max_nodes is not None
        assert ctl.time_limit_s >= 60.0 and ctl.offline_time_limit_s >= 600.0, entry.name


# ----------------------------------------------------------------------------- stress keys


def test_an_outage_leaves_the_campus_its_gpus_available_for_its_hours() -> None:
    from mpc_dc.site.data import build_site_exogenous
    from mpc_dc.site.scenario import default_scenario, with_overrides

    scenario = with_overrides(default_scenario(), {"run.days": 0.5, "outages": [
        {"campus": "nyc", "start": "2022-04-01T06:00:00Z", "hours": 1.5,
         "gpus_available": 16}]}, "<test>")
    gpus = build_site_exogenous(scenario).realized_array("gpus")
    nyc = scenario.site.campus_names.index("nyc")
    # Run from 04:00 UTC: intervals 8..13 are 06:00-07:30.
    assert (gpus[8:14, nyc] == 16).all()
    assert (gpus[:8, nyc] == 32).all() and (gpus[14:, nyc] == 32).all()
    assert (gpus[:, 0] == 40).all()


def test_first_day_places_a_burstgpt_burst_day_at_the_run_start(shared_data: Path) -> None:
    from mpc_dc.site.data import check_data
    from mpc_dc.site.scenario import example_path, load_scenario, with_overrides

    base = with_overrides(load_scenario(example_path("nyiso_wind_fleet")), {
        "run.start": "2022-04-10T04:00:00Z", "run.days": 1.0,
        "data.dir": str(shared_data)}, "<test>")
    rates = {}
    for day in (0, 9):
        data = check_data(with_overrides(base, {"workload.requests.first_day": day}, "<t>"))
        assert data.counts is not None
        run = data.index[data.history_steps: data.history_steps + data.run_steps]
        rates[day] = float(data.counts["requests_per_h"].reindex(run).sum())
        # Day 0's request rows are replayed only when day 0 is the run start.
        assert (data.rows is not None) == (day == 0)
    # Day 9 is BurstGPT's first API burst: tens of times day 0's requests.
    assert rates[9] > 20 * rates[0]
