"""DR study on the real data: S6 never costs more, every token is served."""

from __future__ import annotations

from pathlib import Path

from mpc_dc.studies.dr import DrStudyConfig, reproduce


def test_dr_study_two_days(shared_data: Path, tmp_path: Path) -> None:
    study = DrStudyConfig(first_day="2021-07-08", days=2)
    out = reproduce(shared_data, tmp_path / "dr", study, sweeps=False)
    daily = out.daily
    assert set(daily["scenario"]) == {"S1", "S2", "S3", "S4", "S5", "S6"}
    for _, g in daily.groupby("day"):
        cost = g.set_index("scenario")["total_usd"]
        assert cost["S6"] <= cost.drop("S6").min() + 1e-6
    assert (daily["unserved_tokens"] <= 1.0).all()
    assert (abs(daily["tokens_served"] - daily["tokens_demanded"])
            <= 1e-6 * daily["tokens_demanded"]).all()
    assert "34.3" in out.note
    assert (tmp_path / "dr" / "cost_summary.md").is_file()
