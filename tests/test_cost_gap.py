"""The cost-gap split of run directories (mpc_dc/cost_gap.py, ``mpc-dc cost-gap``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.cost_gap import PARTS, breakdown, gap_table, lateness_gap
from mpc_dc.runner import run_scenario
from mpc_dc.site.scenario import with_overrides
from tests.loop_cases import fleet_short

STARTS = pd.DatetimeIndex(["2022-04-01T04:00Z", "2022-04-01T04:15Z"],
                          name="interval_start_utc")


def _run_dir(path: Path, *, cost_without_slo: float, lateness: tuple[float, float],
             late: tuple[float, float], starts: pd.DatetimeIndex = STARTS) -> Path:
    """A two-interval, one-campus, one-pool run directory with hand-checkable figures."""
    path.mkdir()
    index = pd.MultiIndex.from_arrays([starts, ["north", "north"]],
                                      names=["interval_start_utc", "campus"])
    ledger = pd.DataFrame({
        "price_usd_per_mwh": [10.0, 100.0],
        "facility_power_mw": [0.4, 0.2],          # 0.1 and 0.05 MWh
        "renewable_available_mw": [0.2, 0.0],     # 0.05 MWh at 10 $/MWh
        "curtailed_mw": [0.0, 0.0],
        "late_requests": list(late),
        "lateness_usd": list(lateness),
    }, index=index)
    ledger.to_parquet(path / "ledger.parquet")
    pools = pd.DataFrame({
        "facility_energy_kwh": [20.0, 10.0],
        "idle_energy_j": [3.0, 1.0],              # idle 15 and 5 kWh, active 5 and 5
        "active_energy_j": [1.0, 1.0],
    }, index=pd.MultiIndex.from_arrays(
        [starts, ["north"] * 2, ["m"] * 2, ["BF16"] * 2],
        names=["interval_start_utc", "campus", "model", "precision"]))
    pools.to_parquet(path / "pools.parquet")
    (path / "kpis.json").write_text(json.dumps({
        "cost_usd": cost_without_slo + sum(lateness),
        "cost_without_slo_usd": cost_without_slo}))
    (path / "metadata.json").write_text(json.dumps({"local_tz": "America/New_York"}))
    return path


def test_breakdown_by_hand(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "a", cost_without_slo=5.7, lateness=(0.25, 0.75), late=(1, 3))
    parts = breakdown(run)
    # idle 10 x 0.015 + 100 x 0.005; active 10 x 0.005 + 100 x 0.005; other IT
    # 10 x 0.08 + 100 x 0.04; renewable -10 x 0.05; the rest of 5.7 is the residual.
    expected = {"inference_idle_usd": 0.65, "inference_active_usd": 0.55,
                "other_it_usd": 4.8, "renewable_usd": -0.5, "residual_usd": 0.2,
                "lateness_usd": 1.0, "cost_usd": 6.7, "inference_idle_mwh": 0.02,
                "inference_active_mwh": 0.01, "other_it_mwh": 0.12,
                "other_it_price_usd_per_mwh": 40.0, "late_requests": 4.0,
                # 0.12 MWh of the one local day at its mean price, 55 $/MWh
                "other_it_flat_usd": 6.6}
    for key, value in expected.items():
        assert parts[key] == pytest.approx(value), key
    assert parts[list(PARTS)].sum() == pytest.approx(parts["cost_usd"])


def test_gap_table_and_lateness_gap_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    ref = _run_dir(tmp_path / "ref", cost_without_slo=5.5, lateness=(0.5, 0.0), late=(1, 0))
    run = _run_dir(tmp_path / "run", cost_without_slo=5.5, lateness=(0.5, 2.0), late=(1, 9))
    table = gap_table({"ref": ref, "run": run})
    assert table.loc["lateness_usd", "run − ref"] == pytest.approx(2.0)
    assert table.loc["residual_usd", "ref"] == pytest.approx(0.0, abs=1e-12)
    top = lateness_gap(ref, run, top=1)
    assert list(top.index) == [STARTS[1]]
    assert top.iloc[0].to_dict() == pytest.approx({"late_requests_reference": 0.0,
                                                   "late_requests_run": 9.0,
                                                   "gap_usd": 2.0, "share_of_gap": 1.0})
    assert cli_main(["cost-gap", str(ref), str(run), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "| lateness_usd | 0.50 | 2.50 | 2.00 |" in out


def test_parts_of_a_closed_loop_run_leave_no_residual(tmp_path: Path) -> None:
    """On a wholesale site without battery, carbon price or DR the parts account for the
    whole energy cost: the pools' facility energy and the ledger agree, and the grid
    books are the price times the facility less renewable energy."""
    scenario = with_overrides(fleet_short(), {"site.carbon_price_usd_per_t": 0.0}, "<test>")
    out = run_scenario(scenario, tmp_path / "run", plots=False)
    assert out.path is not None
    parts = breakdown(out.path)
    k = out.result.kpis
    assert parts["residual_usd"] == pytest.approx(0.0, abs=1e-9 * (1 + abs(k["cost_usd"])))
    assert parts["lateness_usd"] == pytest.approx(k["lateness_usd"])
    assert parts["inference_idle_mwh"] + parts["inference_active_mwh"] > 0


def test_runs_over_different_intervals_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs of different periods used to be split and subtracted (exit 0): sums over
    different intervals, whose difference is no gap."""
    a = _run_dir(tmp_path / "a", cost_without_slo=5.7, lateness=(0.25, 0.75), late=(1, 3))
    b = _run_dir(tmp_path / "b", cost_without_slo=5.7, lateness=(0.25, 0.75), late=(1, 3),
                 starts=STARTS + pd.Timedelta(days=1))
    assert cli_main(["cost-gap", str(a), str(b)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"mpc-dc: error: {b / 'ledger.parquet'}: covers 2022-04-02 04:00 to 2022-04-02 04:30 "
        f"UTC (2 intervals) at north; expected the intervals and campuses of the reference "
        f"{a} (2022-04-01 04:00 to 2022-04-01 04:30 UTC (2 intervals) at north): cost-gap "
        "compares runs of one scenario\n")


def test_cost_gap_reads_each_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`mpc-dc cost-gap REF A B` read the reference's ledger 4 times (the span check, the
    split, the lateness gap of each further run) and each further run's 3 times."""
    ref = _run_dir(tmp_path / "ref", cost_without_slo=5.5, lateness=(0.5, 0.0), late=(1, 0))
    a = _run_dir(tmp_path / "a", cost_without_slo=5.5, lateness=(0.5, 2.0), late=(1, 9))
    b = _run_dir(tmp_path / "b", cost_without_slo=5.0, lateness=(1.0, 0.0), late=(2, 0))
    reads: list[str] = []
    read_parquet = pd.read_parquet

    def counted(path: Path, *args: object, **kwargs: object) -> pd.DataFrame:
        reads.append(f"{Path(path).parent.name}/{Path(path).name}")
        return read_parquet(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", counted)
    assert cli_main(["cost-gap", str(ref), str(a), str(b)]) == 0
    assert sorted(reads) == sorted(f"{run}/{name}" for run in ("ref", "a", "b")
                                   for name in ("ledger.parquet", "pools.parquet"))
    assert "| lateness_usd | 0.50 | 2.50 | 1.00 | 2.00 | 0.50 |" in capsys.readouterr().out


def test_runs_of_one_name_get_a_column_each(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`cost-gap a/run b/run` keyed both by "run": one column, the reference compared
    with nothing ("| part | run |", exit 0). Each is now named by the path parts that
    tell them apart."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref = _run_dir(tmp_path / "a" / "run", cost_without_slo=5.5, lateness=(0.5, 0.0),
                   late=(1, 0))
    run = _run_dir(tmp_path / "b" / "run", cost_without_slo=5.5, lateness=(0.5, 2.0),
                   late=(1, 9))
    assert cli_main(["cost-gap", str(ref), str(run), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "| part | a/run | b/run | b/run − a/run |" in out
    assert "| lateness_usd | 0.50 | 2.50 | 2.00 |" in out
    assert "lateness gap by interval, b/run − a/run (top 1):" in out


def test_one_run_given_twice_is_refused(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A run against itself (here once through a link) was one column, exit 0."""
    ref = _run_dir(tmp_path / "ref", cost_without_slo=5.5, lateness=(0.5, 0.0), late=(1, 0))
    link = tmp_path / "link"
    link.symlink_to(ref)
    assert cli_main(["cost-gap", str(ref), str(link)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"mpc-dc: error: RUN: {link} given twice (as {ref} and {link}); expected "
                   "different run directories\n")
