"""Reports of hostile names: Markdown escaped, matplotlib never parses them as mathtext."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from mpc_dc.cli import main as cli_main
from mpc_dc.report import Figure, Report, Section, md_code, md_escape, render_markdown
from mpc_dc.runner import run_scenario
from mpc_dc.site.scenario import controller_variant, default_scenario

HOSTILE = r"$\notacommand{x}^_$ *bold* | [link](javascript:alert(1)) <script>x</script> #1"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = default_scenario()
    scenario = replace(base, name=HOSTILE, run=replace(base.run, days=1, history_days=7))
    out = tmp_path_factory.mktemp("hostile") / "run"
    run_scenario(controller_variant(scenario, "baseline"), out=out, plots=False)
    return out


def test_a_mathtext_name_does_not_crash_the_figures(
    hostile_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old code: matplotlib parsed ``$\\notacommand...$`` as mathtext and raised."""
    assert cli_main(["report", str(hostile_run)]) == 0
    text = (hostile_run / "report.html").read_text(encoding="utf-8")
    assert "<script>x</script>" not in text and "&lt;script&gt;" in text
    assert len(re.findall(r"data:image/png;base64,", text)) == 3
    capsys.readouterr()


def test_markdown_report_escapes_the_name(hostile_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    assert cli_main(["report", str(hostile_run), "--format", "md", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    title = text.splitlines()[0]
    assert title == "# Run report: " + md_escape(HOSTILE)
    assert "<script>" not in text and "](javascript:" not in text and "*bold*" not in text
    assert r"\<script\>" in title and r"\*bold\*" in title and r"\$" in title
    # Figures sit in an mpc-dc output folder beside the report.
    assert (tmp_path / "r_files" / ".mpc-dc-output.json").is_file()


def test_markdown_escaping_covers_tables_headings_and_captions() -> None:
    table = pd.DataFrame({"run | x": ["a|b", "*c*", "line\nbreak"], "v": [1, 2, 3]})
    report = Report(title="T *x*", kind="run", source=Path("/data/`odd` dir"), sections=[
        Section("H [1](u)", ("para _y_ <b>",), (table,),
                (Figure("f", "fig [t]", b"", "cap *z*"),)),
    ])
    text = render_markdown(report, "my files")
    lines = text.splitlines()
    assert lines[0] == r"# T \*x\*"
    assert lines[2] == "Source: ``/data/`odd` dir``"
    assert r"## H \[1\]\(u\)" in lines and r"para \_y\_ \<b\>" in lines
    rows = [line for line in lines if line.startswith("|")]
    assert all(row.count(" | ") == 1 for row in rows if "---" not in row), rows
    assert r"| a\|b | 1 |" in rows and "| line break | 3 |" in rows
    assert r"![fig \[t\]](my%20files/f.png)" in lines and r"*cap \*z\**" in lines


def test_md_code_fences_backticks() -> None:
    assert md_code("a") == "`a`"
    assert md_code("a``b") == "```a``b```"
    assert md_code("`a") == "`` `a ``"


def test_report_out_must_be_a_file(
    hostile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["report", str(hostile_run), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"mpc-dc: error: argument --out: {tmp_path} is a directory; expected a "
                   "file path (see 'mpc-dc report --help')\n")


def test_report_figures_never_land_in_a_foreign_folder(
    hostile_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "r_files"
    folder.mkdir()
    (folder / "holiday.png").write_bytes(b"\x89PNG")
    assert cli_main(["report", str(hostile_run), "--format", "md", "--out",
                     str(tmp_path / "r.md")]) == 2
    assert "not an mpc-dc output folder" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["holiday.png"]
    assert not (tmp_path / "r.md").exists()
