"""Smoke test of the RCDC study on four days of real data (shared_data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpc_dc.cli import main
from mpc_dc.studies.rcdc import RcdcStudyConfig, load_rcdc_data, table_ii

pytestmark = pytest.mark.shared_data


def test_paper_ordering_on_four_days(shared_data: Path) -> None:
    """Optimal colocation < colocation < no colocation in cost, both markets; the
    retail peak import is lower with scheduling than with work on arrival."""
    study = RcdcStudyConfig(days=4)
    data = load_rcdc_data(shared_data, study)
    assert data.n_windows == 4
    assert np.all((data.power_util > 0.5) & (data.power_util < 0.9))
    table = table_ii(data, study)
    for market in ("wholesale", "retail"):
        sub = table[table["market"] == market].set_index("configuration")
        cost = sub["cost_usd"].to_dict()
        assert cost["optimal colocation"] < cost["colocation"] < cost["no colocation"]
        if market == "retail":
            peak = sub["peak_demand_mw"].to_dict()
            assert peak["optimal colocation"] < peak["colocation"]


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
