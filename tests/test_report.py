"""``mpc-dc report``: structure of the HTML and Markdown reports of a run and a sweep."""

from __future__ import annotations

import base64
import json
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.report import build_report, pareto_front, render_html
from mpc_dc.runner import run_scenario
from mpc_dc.site.scenario import controller_variant
from mpc_dc.sweep import load_sweep, run_sweep
from tests.loop_cases import rcdc_short
from tests.test_sweep import BASE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SWEEP = BASE.format(days=1) + """
[sweep]
reference = { "controller.kind" = "perfect" }
list = [
    { "controller.kind" = "perfect" },
    { "controller.forecaster" = "persistence" },
    { "controller.forecaster" = "noisy_oracle", "controller.error_level" = 0.2 },
    { "controller.forecaster" = "noisy_oracle", "controller.error_level" = 0.6 },
]
[sweep.grid]
"site.campuses[0].other_it.deferrable_share" = [0.3]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = rcdc_short(2.0, 7)
    out = tmp_path_factory.mktemp("run") / "run"
    run_scenario(controller_variant(scenario, "persistence"), out=out, plots=False)
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "s.toml").write_text(SWEEP, encoding="utf-8")
    out = folder / "out"
    assert not run_sweep(load_sweep(folder / "s.toml"), out).failed
    return out


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


class _Cells(HTMLParser):
    """Rows of the first HTML table (stdlib parser: no lxml needed)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tables = 0
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables += 1
        elif tag == "tr" and self.tables == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self.tables == 1:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.rows:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _first_table(text: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(text)
    return parser.rows


def _headings(text: str, level: int) -> list[str]:
    return re.findall(rf"<h{level}>(.*?)</h{level}>", text)


def test_run_report_html_structure(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", str(run_dir), "--day", "2022-04-05"]) == 0
    path = run_dir / "report.html"
    assert capsys.readouterr().out.strip() == f"report: {path}"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert _headings(text, 1) == ["Run report: default"]
    assert _headings(text, 2)[:4] == ["Summary", "Cost components", "Power flows on 2022-04-05",
                                      "Prices"]
    # The KPI table: one row per KPI with value and unit.
    rows = _first_table(text)
    assert rows[0] == ["KPI", "value", "unit"]
    kpis = {r[0]: r[1:] for r in rows[1:]}
    value, unit = kpis["net cost"]
    assert unit == "$" and float(value.replace(",", "")) > 0
    assert kpis["peak import"][1] == "MW" and kpis["grid import"][1] == "MWh"
    images = _images(text)
    assert len(images) == 3
    for data in images:
        width, height = _png_size(data)
        assert width >= 600 and height >= 200
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched


def test_run_report_markdown(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    assert cli_main(["report", str(run_dir), "--format", "md", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Run report: default")
    assert "## Cost components" in text and "| KPI | value | unit |" in text
    links = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", text)
    assert len(links) == 3
    for link in links:
        assert _png_size((out.parent / link).read_bytes())[0] >= 600


def test_sweep_report_structure(sweep_dir: Path) -> None:
    report = build_report(sweep_dir)
    assert report.kind == "sweep"
    assert [s.heading for s in report.sections] == [
        "Summary", "Regret vs forecast error", "Cost components per run", "SLO attainment"]
    table = report.sections[0].tables[0]
    assert len(table) == 4
    assert {"run", "status", "controller.kind", "controller.error_level", "net cost [$]",
            "costs [$]", "revenue [$]", "regret [% of reference's costs]"} <= set(table.columns)
    # No fleet runs here: the SLO section says so instead of plotting nothing.
    assert "No SLO KPIs" in report.sections[3].paragraphs[0]
    assert [f.name for f in report.figures] == ["regret_vs_error", "cost_components"]
    text = render_html(report)
    assert len(_images(text)) == 2 and all(_png_size(d)[0] >= 600 for d in _images(text))


def test_sweep_report_with_slo_and_a_chosen_run_day(sweep_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    copy.mkdir()
    for name in ("sweep.json", "results.parquet"):
        (copy / name).write_bytes((sweep_dir / name).read_bytes())
    table = pd.read_parquet(copy / "results.parquet")
    table["slo_attainment"] = [1.0, 0.97, 0.99, 0.95]  # as fleet runs report it
    table.to_parquet(copy / "results.parquet", index=False)
    (copy / "runs").symlink_to(sweep_dir / "runs")
    run_id = str(table["run_id"].iloc[1])
    report = build_report(copy, run_id=run_id, day="2022-04-04")
    assert [f.name for f in report.figures] == ["regret_vs_error", "cost_components",
                                                "slo_attainment", "cost_vs_slo",
                                                "power_flows_day"]
    assert report.sections[-1].heading == f"Power flows of {run_id} on 2022-04-04"


def test_pareto_front_by_hand() -> None:
    """Runs (cost $, SLO): a (10, 0.90), b (12, 0.95), c (11, 0.85) beaten by a,
    d (12, 0.93) beaten by b, e (10, 0.90) tied with a (neither beats the other),
    f (20, 0.99): the front is a, e, b, f by ascending SLO attainment."""
    cost = np.array([10.0, 12.0, 11.0, 12.0, 10.0, 20.0])
    slo = np.array([0.90, 0.95, 0.85, 0.93, 0.90, 0.99])
    assert pareto_front(cost, slo).tolist() == [0, 4, 1, 5]


def test_report_errors_are_one_line(run_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["report", str(run_dir), "--day", "2030-01-01", "--out",
                     str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("mpc-dc: error: --day: 2030-01-01 is not in the run; expected a day from "
                   "2022-04-04 to 2022-04-05")
    assert cli_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mpc-dc: error: {tmp_path}: not a run or sweep directory")
    assert not list(tmp_path.iterdir())


def test_sweep_report_draws_regret_against_the_mae_of_the_erring_channel(
        tmp_path: Path) -> None:
    """Error on one channel group per run (the Oracle elsewhere): one panel per group,
    one curve over the error level, x = that group's forecast MAE."""
    from tests.test_sweep import CHANNELS

    path = tmp_path / "channels.toml"
    path.write_text(CHANNELS.format(days=0.5), encoding="utf-8")
    outcome = run_sweep(load_sweep(path), tmp_path / "out")
    assert not outcome.failed
    table = outcome.table.set_index("run_id")
    report = build_report(tmp_path / "out")
    headings = [s.heading for s in report.sections]
    assert "Regret vs forecast error per channel" in headings
    section = report.sections[headings.index("Regret vs forecast error per channel")]
    summary = section.tables[0]
    assert list(summary["channel group"]) == ["price", "renewable"]
    assert list(summary["runs"]) == [2, 2]
    assert [f.name for f in report.figures][:2] == ["regret_vs_error", "regret_vs_channel_mae"]
    # The MAE of a group grows with its error level and is zero on the Oracle's groups.
    for g, other in (("price", "renewable"), ("renewable", "price")):
        runs = table[table[f"controller.channels.{g}.forecaster"] == "noisy_oracle"]
        mae = runs.sort_values("controller.error_level")[f"forecast_mae_by_group.{g}"]
        assert 0.0 < mae.iloc[0] < mae.iloc[1]
        assert (runs[f"forecast_mae_by_group.{other}"] == 0.0).all()


def test_sweep_report_with_list_and_fault_overrides(sweep_dir: Path, tmp_path: Path) -> None:
    """A sweep over a list (``dr.days``, ``sweep_faults.toml``) used to end the report in an
    internal error (a list in the override column is neither NaN-testable nor hashable);
    a ``[faults]`` rate it overrides is not a fault the run counted."""
    copy = tmp_path / "sweep"
    copy.mkdir()
    for name in ("sweep.json", "results.parquet"):
        (copy / name).write_bytes((sweep_dir / name).read_bytes())
    manifest = json.loads((copy / "sweep.json").read_text(encoding="utf-8"))
    for run in manifest["runs"]:
        run["overrides"]["faults.main_solve"] = 1.0
    (copy / "sweep.json").write_text(json.dumps(manifest), encoding="utf-8")
    table = pd.read_parquet(copy / "results.parquet")
    table["controller.kind"] = [["2022-04-04", "2022-04-05"]] * len(table)
    table["faults.main_solve"] = 1.0
    table["faults.solver_exception"] = 3.0
    table.to_parquet(copy / "results.parquet", index=False)
    report = build_report(copy)
    shown = report.sections[0].tables[0]
    assert (shown["controller.kind"] == "2022-04-04, 2022-04-05").all()
    assert (shown["faults"] == "3").all()  # not 4: the rate is no count
    assert [f.name for f in report.figures] == ["regret_vs_error", "cost_components"]
