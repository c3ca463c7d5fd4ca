"""Sweeps: expansion, run ids, resume after a kill, local and dask executors agree.

All sweeps here run on the embedded synthetic data (1-2 day runs, 7 days of history), so
they need neither ../shared/data nor the network.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc import sweep
from mpc_dc.cli import main as cli_main
from mpc_dc.site.scenario import CHANNEL_GROUPS, example_path
from mpc_dc.sweep import load_sweep, make_run_id, run_sweep
from traces.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

BASE = """
name = "sweep-test"
[run]
start = "2022-04-04T04:00:00Z"
days = {days}
history_days = 7
[data]
source = "synthetic"
[[site.campuses]]
name = "rcdc"
price_node = "F"
[site.campuses.other_it]
it_capacity_mw = 100.0
deferrable_share = 0.4
[site.campuses.renewable]
nameplate_mw = 150.0
[site.campuses.grid]
import_limit_mw = 200.0
export_limit_mw = 200.0
[controller]
forecaster = "persistence"
fine_horizon_h = 24
"""
"""The RCDC site (one campus: other IT, wind, grid), inline in the one schema."""

SHARE = "site.campuses[0].other_it.deferrable_share"

SWEEP = BASE + """
[sweep]
reference = {{ "controller.kind" = "perfect" }}
list = [
    {{ "controller.kind" = "baseline" }},
    {{ "controller.kind" = "perfect" }},
    {{ "controller.forecaster" = "persistence" }},
]
[sweep.grid]
"site.campuses[0].other_it.deferrable_share" = {shares}
"""


def write_sweep(folder: Path, *, days: float = 1, shares: str = "[0.2, 0.6]") -> Path:
    path = folder / "sweep.toml"
    path.write_text(SWEEP.format(days=days, shares=shares), encoding="utf-8")
    return path


def test_expansion_order_overrides_and_ids(tmp_path: Path) -> None:
    spec = load_sweep(write_sweep(tmp_path, shares="[0.2, 0.4, 0.6]"))
    assert len(spec.runs) == 9
    # list entries outer, grid inner, in file order
    assert [r.override_dict for r in spec.runs[:3]] == [
        {"controller.kind": "baseline", SHARE: s} for s in (0.2, 0.4, 0.6)]
    assert spec.runs[4].scenario.controller.kind == "perfect"
    other_it = spec.runs[4].scenario.site.campuses[0].other_it
    assert other_it is not None and other_it.deferrable_share == 0.4
    assert spec.runs[8].scenario.controller.forecaster == "persistence"
    assert spec.override_keys == ["controller.kind", SHARE, "controller.forecaster"]
    ids = [r.run_id for r in spec.runs]
    assert len(set(ids)) == 9
    assert ids[0].startswith("kind=baseline__deferrable_share=0.2__")
    # Deterministic: the same file gives the same ids; the order of keys does not matter.
    assert ids == [r.run_id for r in load_sweep(tmp_path / "sweep.toml").runs]
    assert make_run_id([("a.x", 1), ("b.y", 2)], "h")[-10:] == make_run_id(
        [("b.y", 2), ("a.x", 1)], "h")[-10:]


def test_run_ids_change_with_the_base_scenario(tmp_path: Path) -> None:
    one = load_sweep(write_sweep(tmp_path, days=1))
    (tmp_path / "two").mkdir()
    two = load_sweep(write_sweep(tmp_path / "two", days=2))
    assert {r.run_id for r in one.runs}.isdisjoint({r.run_id for r in two.runs})


def test_sweep_base_file_and_grid_only(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(BASE.format(days=1), encoding="utf-8")
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nbase = "base.toml"\n[sweep.grid]\n'
                    '"controller.kind" = ["baseline", "perfect"]\n', encoding="utf-8")
    spec = load_sweep(path)
    assert spec.name == "sweep-test"
    assert [r.scenario.controller.kind for r in spec.runs] == ["baseline", "perfect"]
    assert all(r.scenario.run.days == 1 for r in spec.runs)


def test_sweep_base_file_of_the_old_schema_is_refused(tmp_path: Path) -> None:
    """A base file of the schemas before (``kind``) is one line naming the new key."""
    (tmp_path / "base.toml").write_text('kind = "rcdc"\n' + BASE.format(days=1),
                                        encoding="utf-8")
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nbase = "base.toml"\n[sweep.grid]\n'
                    '"controller.kind" = ["baseline", "perfect"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="key 'kind': a key of the schema before"):
        load_sweep(path)


def test_the_acceptance_sweep_has_24_real_data_week_runs() -> None:
    spec = load_sweep(example_path("sweep_forecast_error"))
    assert len(spec.runs) >= 24
    assert all(r.scenario.run.days == 7 and r.scenario.data.source == "real"
               for r in spec.runs)
    forecasters = {r.scenario.controller.forecaster for r in spec.runs
                   if r.scenario.controller.kind == "mpc"}
    assert forecasters == {"persistence", "seasonal_naive_daily", "sarimax", "noisy_oracle"}


CHANNELS = BASE + """
[sweep]
reference = {{ "controller.kind" = "perfect" }}
extra = [ {{ "controller.kind" = "perfect" }} ]
list = [
    {{ "controller.channels.price.forecaster" = "noisy_oracle" }},
    {{ "controller.channels.renewable.forecaster" = "noisy_oracle" }},
]
[sweep.grid]
"controller.forecaster" = ["oracle"]
"controller.error_level" = [0.5, 1.0]
"""
"""Error on one channel group at a time, the perfect reference once (``sweep.extra``)."""


def test_extra_runs_once_beside_the_grid(tmp_path: Path) -> None:
    path = tmp_path / "channels.toml"
    path.write_text(CHANNELS.format(days=1), encoding="utf-8")
    spec = load_sweep(path)
    assert [r.override_dict for r in spec.runs] == [
        {f"controller.channels.{g}.forecaster": "noisy_oracle",
         "controller.forecaster": "oracle", "controller.error_level": level}
        for g in ("price", "renewable") for level in (0.5, 1.0)
    ] + [{"controller.kind": "perfect"}]
    # A channel group's key keeps its group in the run id.
    assert spec.runs[0].run_id.startswith("price.forecaster=noisy_oracle__forecaster=oracle")
    assert len({r.run_id for r in spec.runs}) == 5
    path.write_text(CHANNELS.format(days=1).replace(
        "extra = [ {", "extra = [ 3, {"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"key 'sweep.extra\[0\]': expected a table"):
        load_sweep(path)


def test_the_shipped_channel_sweep_errs_on_one_group_per_run() -> None:
    spec = load_sweep(example_path("sweep_forecast_channels"))
    assert len(spec.runs) == 33
    assert all(r.scenario.run.days == 3 and r.scenario.data.source == "real"
               for r in spec.runs)
    perfect = [r for r in spec.runs if r.scenario.controller.kind == "perfect"]
    assert len(perfect) == 1
    noisy: dict[str, int] = {}
    for run in spec.runs:
        ctl = run.scenario.controller
        if ctl.kind == "perfect":
            continue
        erring = [g for g in CHANNEL_GROUPS if ctl.group_forecaster(g) != "oracle"]
        assert len(erring) == 1 and ctl.group_forecaster(erring[0]) == "noisy_oracle"
        noisy[erring[0]] = noisy.get(erring[0], 0) + 1
    # bias x spread x autocorrelation on each of the four groups that move the cost
    assert noisy == {"price": 8, "renewable": 8, "demand": 8, "other_load": 8}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """An uninterrupted local sweep of 6 two-day runs."""
    folder = tmp_path_factory.mktemp("reference")
    spec = load_sweep(write_sweep(folder, days=2))
    outcome = run_sweep(spec, folder / "out")
    assert not outcome.failed
    return folder / "sweep.toml", outcome.table


def test_results_table_rows_columns_and_regret(reference: tuple[Path, pd.DataFrame]) -> None:
    _, table = reference
    assert len(table) == 6 and (table["status"] == "done").all()
    assert list(table.columns[:5]) == ["run_id", "status", "controller.kind", SHARE,
                                       "controller.forecaster"]
    for column in ("cost_usd", "work_df_missed_wu", "fallbacks_total", "regret_usd"):
        assert column in table.columns
    assert not any(c in table.columns for c in ("wall_time_s", "setup_time_s"))
    perfect = table[table["controller.kind"] == "perfect"]
    assert (perfect["regret_usd"] == 0.0).all()
    assert (table["regret_usd"] >= -1e-6).all()
    assert table["reference_run_id"].isin(perfect["run_id"]).all()
    # The wind is sold: regret in % is of the partner's costs, not of its net cost.
    assert (perfect["revenue_usd"] > 0).any()
    partner = table.set_index("run_id").loc[table["reference_run_id"]]
    np.testing.assert_allclose(table["regret_pct"],
                               100.0 * table["regret_usd"] / partner["costs_usd"].to_numpy())


def test_results_of_runs_written_before_the_cost_sides(
        reference: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch) -> None:
    """KPIs without ``costs_usd`` and ``revenue_usd`` (written before they existed) are
    split from their cost components the same way, so their regret % is of costs."""
    path, table = reference
    read = sweep.read_json_object

    def older(file: Path) -> dict[str, object]:
        data = read(file)
        if file.name == "kpis.json":
            del data["costs_usd"], data["revenue_usd"]
        return data

    monkeypatch.setattr(sweep, "read_json_object", older)
    again = sweep.results_table(load_sweep(path), path.parent / "out")
    for column in ("costs_usd", "revenue_usd", "regret_pct"):
        np.testing.assert_allclose(again[column], table[column], rtol=1e-12)


def test_results_files_agree(reference: tuple[Path, pd.DataFrame]) -> None:
    path, table = reference
    out = path.parent / "out"
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)
    csv = pd.read_csv(out / "results.csv")
    assert list(csv["run_id"]) == list(table["run_id"])
    assert csv["cost_usd"].tolist() == pytest.approx(table["cost_usd"].tolist(), rel=1e-12)
    manifest = json.loads((out / "sweep.json").read_text())
    assert [r["run_id"] for r in manifest["runs"]] == list(table["run_id"])
    timings = pd.read_csv(out / "timings.csv")
    assert len(timings) == 6 and (timings["wall_time_s"] > 0).all()


def _finished(out: Path) -> list[Path]:
    """kpis.json of renamed (finished) run directories; a ``.tmp-`` one may hold it too."""
    if not (out / "runs").exists():
        return []
    return sorted(p for p in (out / "runs").glob("*/kpis.json") if ".tmp-" not in str(p))


def test_killed_sweep_resumes_to_the_same_table(
    reference: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL the sweep process after 2 runs finished; the same command finishes it."""
    path, expected = reference
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "mpc_dc", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while len(_finished(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    finished = _finished(out)
    assert 2 <= len(finished) < 6, "the sweep must be killed part-way"
    assert not (out / "results.parquet").exists()
    before = {p.parent.name: p.stat().st_mtime_ns for p in finished}

    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped") == len(before)
    assert printed.count(" done ") == 6 - len(before)
    # Finished runs were kept as they were, nothing is left half-written or duplicated.
    for name, mtime in before.items():
        assert (out / "runs" / name / "kpis.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(expected["run_id"])
    assert not list(out.rglob("*.tmp-*")) and not (out / ".sweep.lock").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), expected)
    # Running it once more does nothing and gives the same table again.
    assert cli_main(argv) == 0
    assert capsys.readouterr().out.count("skipped") == 6
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), expected)


def test_local_pool_and_dask_give_identical_tables(tmp_path: Path) -> None:
    """Same 4-run sweep: in-process, a 2-process pool and a 2-worker dask LocalCluster."""
    spec = load_sweep(write_sweep(tmp_path, days=1, shares="[0.3]"))
    local = run_sweep(spec, tmp_path / "local").table
    dask = run_sweep(spec, tmp_path / "dask", executor="dask", workers=2)
    assert not dask.failed
    pd.testing.assert_frame_equal(dask.table, local)
    pool = run_sweep(spec, tmp_path / "pool", workers=2).table
    pd.testing.assert_frame_equal(pool, local)


def test_a_failing_run_is_reported_and_the_others_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run without its data is refused before any run starts (exit 2, nothing
    written); if its data vanish after that check, it fails alone: exit 2 (bad input,
    no retry hint: it was exit 1, "run the same command again to retry them") names it
    and the finished run is kept."""
    path = tmp_path / "s.toml"
    path.write_text(BASE.format(days=1) + '[sweep]\nlist = [\n'
                    '  { "controller.kind" = "baseline" },\n'
                    '  { "data.source" = "real", "data.dir" = "no/such/data" },\n]\n',
                    encoding="utf-8")
    out = tmp_path / "out"
    monkeypatch.delenv("MPC_DC_DATA", raising=False)
    assert cli_main(["sweep", str(path), "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"mpc-dc: error: {path}: key 'data.dir': data folder no/such/data "
                           "not found; "), line
    assert re.search(r" \(run source=real__[^)]*\)$", line), line
    assert not out.exists()
    monkeypatch.setattr("mpc_dc.commands.sweep.check_sweep_data", lambda spec: 0)
    assert cli_main(["sweep", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[-1].startswith("mpc-dc: error: 1 of 2 runs refused for bad input (first "
                              "source=real__")
    # The sweep file and the list entry that set the key (it was "ConfigError:
    # <scenario>: key 'data.dir': ..."): the run met it only once its data were read.
    assert f": {path}: key 'data.dir': data folder no/such/data not found" in err[-1]
    assert err[-1].endswith(" (override in sweep.list[1]))")
    assert "retry" not in err[-1] and "ConfigError" not in err[-1]
    table = pd.read_parquet(out / "results.parquet")
    assert table["status"].tolist() == ["done", "missing"]
    assert len(list((out / "runs").iterdir())) == 1


def test_a_different_sweep_in_the_same_directory_is_refused(
    reference: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = reference
    out = path.parent / "out"
    other = write_sweep(tmp_path, days=1)
    before = (out / "results.parquet").read_bytes()
    assert cli_main(["sweep", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mpc-dc: error: {out}: holds a sweep with a different base scenario; "
                   "choose another --out")
    assert (out / "results.parquet").read_bytes() == before
