"""The RCDC study against stored figures of real data (shared_data).

The five-day figures are Table II of ``RcdcStudyConfig(days=5)`` (1-5 April 2022, New
York days, NYISO zone F), measured once with ``mpc-dc reproduce rcdc --days 5
--no-sweeps`` and stored here. The study's problem is the closed loop's with perfect
foresight (``tests/test_deferrable_release.py``), so these also pin the loop's optimum.
Changing the data, the tariff or the formulation must change them: retail prices x3 or
the wind halved each make this test fail (checked by hand when the figures were stored).

The month's Table II (``mpc-dc reproduce rcdc``, ~2 s of solves) is stored as the old
problem (``RcdcProblem``) gave it before the study moved to the one problem: optimal
colocation has equal-cost optima (equal prices in consecutive intervals), so its imports,
exports and self-consumption pin which one the solver reaches, not only the cost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc_dc.cli import main
from mpc_dc.studies.rcdc import RcdcStudyConfig, load_rcdc_data, table_ii

pytestmark = pytest.mark.shared_data

TABLE_II_FIVE_DAYS = {
    # (market, configuration): (cost [$], windows solved as MILP)
    ("wholesale", "no colocation"): (457_239.74, 1),
    ("wholesale", "colocation"): (240_109.25, 1),
    ("wholesale", "optimal colocation"): (213_559.26, 1),
    ("retail", "no colocation"): (1_427_879.90, 0),
    ("retail", "colocation"): (1_152_802.14, 0),
    ("retail", "optimal colocation"): (1_002_858.15, 0),
}
"""Table II costs of the first five days of April 2022 (see the module docstring)."""

NO_COLOCATION_IMPORTS_MWH = 8_408.748333
NO_COLOCATION_PEAK_MW = 74.02
"""Work on arrival without wind: imports are the site's energy, the peak its highest load."""


def test_table_ii_matches_the_stored_figures(shared_data: Path) -> None:
    study = RcdcStudyConfig(days=5)
    table = table_ii(load_rcdc_data(shared_data, study), study)
    rows = table.set_index(["market", "configuration"])
    for key, (cost, milp) in TABLE_II_FIVE_DAYS.items():
        assert rows.loc[key, "cost_usd"] == pytest.approx(cost, rel=1e-6, abs=0.01), key
        assert rows.loc[key, "milp_windows"] == milp, key
    for market in ("wholesale", "retail"):
        base = (market, "no colocation")
        assert rows.loc[base, "imports_mwh"] == pytest.approx(NO_COLOCATION_IMPORTS_MWH, rel=1e-9)
        assert rows.loc[base, "peak_demand_mw"] == pytest.approx(NO_COLOCATION_PEAK_MW, rel=1e-9)
        for configuration in ("colocation", "optimal colocation"):
            cost = TABLE_II_FIVE_DAYS[market, configuration][0]
            savings = 100 * (1 - cost / TABLE_II_FIVE_DAYS[market, "no colocation"][0])
            assert rows.loc[(market, configuration), "savings_pct"] == pytest.approx(
                savings, abs=1e-4)


TABLE_II_MONTH = {
    # (market, configuration): (imports [MWh], exports [MWh], self-consumption [MWh],
    #                           peak [MW], cost [$], windows solved as MILP)
    ("wholesale", "no colocation"): (51698.330000, 0.0, 0.0, 76.680000, 3810925.71, 2),
    ("wholesale", "colocation"): (22441.026137, 2329.397780, 29257.303863, 73.280000,
                                  1295756.03, 2),
    ("wholesale", "optimal colocation"): (24791.101586, 3907.673461, 27679.028182, 100.0,
                                          1096362.50, 2),
    ("retail", "no colocation"): (51698.330000, 0.0, 0.0, 76.680000, 4875875.27, 0),
    ("retail", "colocation"): (22414.680335, 2329.397780, 29283.649665, 72.177664,
                               2307634.09, 0),
    ("retail", "optimal colocation"): (23331.712192, 2932.910136, 28680.137310, 60.588988,
                                       2106175.03, 0),
}
"""Table II of April 2022 by the old problem (the module docstring)."""


def test_month_table_ii_matches_the_old_problem(shared_data: Path) -> None:
    study = RcdcStudyConfig()
    rows = table_ii(load_rcdc_data(shared_data, study), study).set_index(
        ["market", "configuration"])
    columns = ("imports_mwh", "exports_mwh", "self_consumption_mwh", "peak_demand_mw")
    for key, (*flows, cost, milp) in TABLE_II_MONTH.items():
        for column, value in zip(columns, flows, strict=True):
            assert rows.loc[key, column] == pytest.approx(value, rel=1e-8, abs=1e-6), \
                (key, column)
        assert rows.loc[key, "cost_usd"] == pytest.approx(cost, rel=1e-9, abs=0.01), key
        assert rows.loc[key, "milp_windows"] == milp, key


def test_cli_writes_outputs(shared_data: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rcdc"
    code = main(["reproduce", "rcdc", "--data", str(shared_data), "--out", str(out),
                 "--days", "2", "--no-sweeps"])
    assert code == 0
    assert (out / "table_ii.csv").is_file() and (out / "table_ii.md").is_file()
    assert "optimal colocation" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_unknown_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reproduce", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown study" in capsys.readouterr().err
