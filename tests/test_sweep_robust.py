"""Sweeps that meet damage: corrupt or half-deleted runs, no scheduler, exposed dashboards."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.rundir import MARKER_NAME
from mpc_dc.sweep import (
    DASHBOARD_DEFAULT,
    _dask_client,
    load_sweep,
    results_table,
    run_sweep,
)

SWEEP = """
name = "robust"
[run]
days = 1
history_days = 7
[[site.campuses]]
name = "rcdc"
price_node = "F"
[site.campuses.other_it]
[site.campuses.renewable]
[controller]
kind = "baseline"
[sweep.grid]
"site.campuses[0].other_it.deferrable_share" = [0.2, 0.4, 0.6]
"""


@pytest.fixture
def sweep_path(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(SWEEP, encoding="utf-8")
    return path


def test_resume_reruns_damaged_runs_instead_of_counting_or_crashing(
    sweep_path: Path, tmp_path: Path
) -> None:
    """A deleted ledger, a truncated kpis.json, a marker removed: re-run, same table."""
    out = tmp_path / "out"
    spec = load_sweep(sweep_path)
    first = run_sweep(spec, out)
    ids = [r.run_id for r in spec.runs]
    (out / "runs" / ids[0] / "ledger.parquet").unlink()
    kpis = out / "runs" / ids[1] / "kpis.json"
    kpis.write_text(kpis.read_text(encoding="utf-8")[:40], encoding="utf-8")
    (out / "runs" / ids[2] / MARKER_NAME).unlink()
    again = run_sweep(spec, out)
    assert [r.status for r in again.reports] == ["done", "done", "done"]
    pd.testing.assert_frame_equal(again.table, first.table)
    third = run_sweep(spec, out)
    assert [r.status for r in third.reports] == ["skipped", "skipped", "skipped"]


def test_damaged_run_reads_as_missing_in_the_table(sweep_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = load_sweep(sweep_path)
    run_sweep(spec, out)
    (out / "runs" / spec.runs[1].run_id / "kpis.json").write_text("[]", encoding="utf-8")
    assert results_table(spec, out)["status"].tolist() == ["done", "missing", "done"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_scheduler_fails_fast_and_creates_nothing(
    sweep_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{_closed_port()}"
    assert cli_main(["sweep", str(sweep_path), "--out", str(out), "--scheduler", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"mpc-dc: error: --scheduler: cannot reach the dask scheduler at "
                             f"{address} within 5 s")
    assert not out.exists()


@pytest.mark.parametrize("address", ["127.0.0.1", "tcp://host", "http://h:1", "h:0", "h:99999"])
def test_malformed_scheduler_address_is_refused_at_parse_time(
    sweep_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str
) -> None:
    out = tmp_path / "out"
    assert cli_main(["sweep", str(sweep_path), "--out", str(out), "--scheduler", address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mpc-dc: error: argument --scheduler: ")
    assert not out.exists()


def test_local_cluster_listens_on_loopback_only() -> None:
    """Scheduler, workers and dashboard of a LocalCluster bind 127.0.0.1 (not 0.0.0.0)."""
    with _dask_client(1, None, DASHBOARD_DEFAULT) as client:
        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert all(w.startswith("tcp://127.0.0.1:") for w in info["workers"])
        server = client.cluster.scheduler.http_server
        hosts = {sock.getsockname()[0] for sock in server._sockets.values()}
        assert hosts == {"127.0.0.1"}, hosts


def test_a_folder_that_is_not_a_sweep_is_refused(
    sweep_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    assert cli_main(["sweep", str(sweep_path), "--out", str(folder)]) == 2
    assert "not an mpc-dc output folder" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_sweep_written_before_the_marker_resumes(sweep_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = load_sweep(sweep_path)
    table = run_sweep(spec, out).table
    (out / MARKER_NAME).unlink()  # as written by an earlier version
    assert json.loads((out / "sweep.json").read_text(encoding="utf-8"))["name"] == "robust"
    again = run_sweep(spec, out)
    assert [r.status for r in again.reports] == ["skipped"] * 3
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), table)
