"""One release rule for deferrable work, shared by the closed loop and the RCDC study.

``site.campuses[i].other_it.release`` = ``"window_start"`` (each window's batch at its
start) or ``"on_arrival"`` (each interval's share as it arrives). The rule is computed
by :func:`~mpc_dc.sim.exogenous.deferrable_releases` for the plant, the MPC horizon
and the study, so the study's figures are the closed loop's perfect-foresight costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc_dc.runner import build_policy, prepare
from mpc_dc.sim.engine import simulate
from mpc_dc.sim.exogenous import DeferrableRelease, deferrable_releases, window_end
from mpc_dc.site.config import Campus
from mpc_dc.site.scenario import controller_variant
from mpc_dc.studies.rcdc import (
    Configuration,
    Market,
    RcdcData,
    RcdcStudyConfig,
    load_rcdc_data,
    run_month,
)
from tests.loop_cases import rcdc_short

C = "rcdc"
WORK = f"workload_wu[{C}]"


def test_release_rule_by_hand() -> None:
    work = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_allclose(deferrable_releases(work, 0.5, 3, "window_start"),
                               [3.0, 0, 0, 7.5, 0, 0])
    np.testing.assert_allclose(deferrable_releases(work, 0.5, 3, "on_arrival"), 0.5 * work)
    # A span from step 1 whose second window reaches past it: estimated from the
    # covered part, mean(4, 5) x 3 intervals x 0.5.
    np.testing.assert_allclose(
        deferrable_releases(work[1:5], 0.5, 3, "window_start", first_step=1, run_steps=6),
        [0, 0, 6.75, 0])
    # The last window is cut at the run end.
    np.testing.assert_array_equal(window_end(np.arange(7), 3, 7), [2, 2, 2, 5, 5, 5, 6])


@pytest.mark.parametrize("rule", ["window_start", "on_arrival"])
def test_the_loop_releases_the_deferrable_share(rule: DeferrableRelease) -> None:
    _, exo = prepare(rcdc_short(2.0, overrides={"site.campuses[0].other_it.release": rule}))
    work = exo.frame[WORK].to_numpy()[exo.history_steps: exo.history_steps + exo.n_steps]
    released = exo.initial_backlog(C).total_wu + sum(
        exo.deferrable_arrival_wu(C, k) for k in range(exo.n_steps))
    assert released == pytest.approx(0.4 * work.sum(), rel=1e-12)
    assert (exo.initial_backlog(C).total_wu == 0.0) == (rule == "on_arrival")


@pytest.mark.parametrize("label", ["perfect", "persistence"])
def test_on_arrival_work_is_delayed_never_advanced(label: str) -> None:
    scenario, exo = prepare(rcdc_short(2.0, overrides={"site.campuses[0].other_it.release":
                                                       "on_arrival"}))
    result = simulate(exo, build_policy(controller_variant(scenario, label), exo))
    led = result.campus_ledger(C)
    work = exo.frame[WORK].to_numpy()[exo.history_steps: exo.history_steps + exo.n_steps]
    arrived = np.cumsum(0.4 * work)
    done = np.cumsum(led["work_df_done_wu"].to_numpy())
    assert np.all(done <= arrived + 1e-9)
    assert result.kpis["work_df_arrived_wu"] == pytest.approx(arrived[-1], rel=1e-12)
    if label == "perfect":
        assert result.kpis["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-9)
        # Scheduling moved work: some interval runs less deferrable work than arrived in it.
        assert np.any(done < arrived - 1.0)


# ----------------------------------------------------------------------------- study = loop

START = "2022-04-01T04:00:00Z"
"""The study month's first local midnight (April 2022, New York)."""


@pytest.fixture(scope="module")
def study_data(shared_data: Path) -> dict[tuple[int, DeferrableRelease], RcdcData]:
    out: dict[tuple[int, DeferrableRelease], RcdcData] = {}
    rules: tuple[DeferrableRelease, ...] = ("window_start", "on_arrival")
    for days in (1, 2):
        for rule in rules:
            study = RcdcStudyConfig(days=days, deferrable_release=rule)
            out[days, rule] = load_rcdc_data(shared_data, study)
    return out


CASES = [
    # Wholesale: windows are independent, so the rolling 24-h perfect-foresight MPC
    # over two days is the study's window-by-window optimum.
    ("wholesale", 2, "perfect", configuration, "window_start")
    for configuration in ("no colocation", "colocation", "optimal colocation")
] + [
    # Retail: the demand charge couples the windows; one window = one offline solve.
    ("retail", 1, "offline", configuration, "window_start")
    for configuration in ("no colocation", "colocation", "optimal colocation")
] + [
    ("wholesale", 2, "perfect", "optimal colocation", "on_arrival"),
    ("retail", 1, "offline", "optimal colocation", "on_arrival"),
]


@pytest.mark.shared_data
@pytest.mark.parametrize(("market", "days", "controller", "configuration", "rule"), CASES)
def test_study_equals_closed_loop_with_perfect_foresight(
    shared_data: Path, study_data: dict[tuple[int, DeferrableRelease], RcdcData],
    market: Market, days: int, controller: str, configuration: Configuration,
    rule: DeferrableRelease,
) -> None:
    study = RcdcStudyConfig(days=days, deferrable_release=rule)
    expected = run_month(study_data[days, rule], study, market, configuration).cost_usd
    campus = campus_table(study.configuration_site(market, configuration).campuses[0])
    scenario = rcdc_short(float(days), 1, overrides={
        "name": f"study-{market}-{configuration}", "run.start": START, "data.source": "real",
        "data.dir": str(shared_data), "site.campuses[0]": campus})
    scenario, exo = prepare(scenario)
    result = simulate(exo, build_policy(controller_variant(scenario, controller), exo))
    assert result.kpis["work_df_missed_wu"] == pytest.approx(0.0, abs=1e-9)
    assert result.kpis["cost_usd"] == pytest.approx(expected, abs=0.01)


def campus_table(campus: Campus) -> dict[str, Any]:
    """The study's campus (the RCDC parameters) as the one campus of a scenario table."""
    other, grid = campus.other_it, campus.grid
    assert other is not None
    tariff = grid.tariff
    table: dict[str, Any] = {
        "name": C, "price_node": campus.price_node, "gpus": 0, "pue": campus.pue,
        "other_it": {"it_capacity_mw": other.it_capacity_mw,
                     "deferrable_share": other.deferrable_share,
                     "window_h": other.window_h, "release": other.release,
                     "processing": {"power_frac": list(other.processing.power_frac),
                                    "work_frac": list(other.processing.work_frac)}},
        "grid": {"import_limit_mw": grid.import_limit_mw,
                 "export_limit_mw": grid.export_limit_mw,
                 "tariff": {"kind": tariff.kind,
                            "demand_charge_usd_per_kw": tariff.demand_charge_usd_per_kw,
                            "import_adder_usd_per_mwh": tariff.import_adder_usd_per_mwh,
                            "export_credit_factor": tariff.export_credit_factor}}}
    if campus.renewable is not None:
        table["renewable"] = {"nameplate_mw": campus.renewable.nameplate_mw}
    return table
