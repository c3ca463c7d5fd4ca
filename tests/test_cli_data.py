"""End-to-end tests of ``mpc-dc data list | fetch | check`` through :func:`mpc_dc.cli.main`.

Downloads go to the local HTTP server of :mod:`tests.test_fetch` on 127.0.0.1
(``--url-base``), serving made-up files in the real public layouts.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpc_dc.cli import main
from mpc_dc.commands import data as data_command
from tests.test_fetch import (
    LocalServer,
    burstgpt_bytes,
    clear_proxies,
    eia_nyiso_lmp_bytes,
    running_server,
)
from traces.fetch import MANIFEST_NAME
from traces.sources import SOURCES

# 2023: a year without a pinned digest (the made-up file would not match a pin).
EIA_PATH = "/electricity/wholesalemarkets/csv/nyiso_lmp_rt_hr_zones_2023.csv"
FAST = ["--timeout", "5", "--backoff", "0", "--no-progress"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """Local test server on 127.0.0.1."""
    clear_proxies(monkeypatch)
    with running_server() as local:
        yield local


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_data_list_shows_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for source in SOURCES:
        assert f"{source.name}: " in out
    assert "https://mis.nyiso.com/public/csv/realtime/{month}01realtime_zone_csv.zip" in out
    assert "not published by the source" in out


def test_data_without_action_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data"]) == 2
    assert "ACTION" in capsys.readouterr().err


def test_data_fetch_end_to_end(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = eia_nyiso_lmp_bytes()
    server.serve(EIA_PATH, body)
    cache = tmp_path / "cache"
    argv = ["data", "fetch", "eia_nyiso_lmp_rt", "-p", "year=2023", "--cache", str(cache)]
    argv += ["--url-base", server.url, *FAST]

    assert main(argv) == 0
    out = capsys.readouterr().out
    dest = cache / "eia_nyiso_lmp_rt" / "nyiso_lmp_rt_hr_zones_2023.csv"
    assert dest.read_bytes() == body
    assert out.startswith(f"downloaded: {dest}")
    assert hashlib.sha256(body).hexdigest() in out
    manifest = json.loads((cache / MANIFEST_NAME).read_text())
    record = manifest["files"]["eia_nyiso_lmp_rt/nyiso_lmp_rt_hr_zones_2023.csv"]
    assert record["url"] == server.url + EIA_PATH and record["size_bytes"] == len(body)

    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("skipped: ")
    assert len(server.state.requests) == 1


def test_data_fetch_resumes_after_interruption(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = burstgpt_bytes()
    server.serve("/HPMLL/BurstGPT/releases/download/v1.1/BurstGPT_1.csv", body)
    server.state.cut_after, server.state.cuts_left = 20_000, 1
    argv = ["data", "fetch", "burstgpt", "--cache", str(tmp_path), "--url-base", server.url]

    assert main([*argv, *FAST]) == 0
    assert capsys.readouterr().out.startswith("resumed: ")
    assert (tmp_path / "burstgpt" / "v1.1" / "BurstGPT_1.csv").read_bytes() == body
    assert server.state.ranges() == [None, "bytes=20000-"]


def test_data_fetch_checksum_mismatch_exit_2_one_line(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = eia_nyiso_lmp_bytes()
    server.serve(EIA_PATH, body)
    wrong = "0" * 64
    argv = ["data", "fetch", "eia_nyiso_lmp_rt", "-p", "year=2023", "--cache", str(tmp_path)]
    argv += ["--url-base", server.url, "--sha256", wrong, "--retries", "0", *FAST]

    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = _error_lines(captured.err)
    assert len(lines) == 1, captured.err
    assert "nyiso_lmp_rt_hr_zones_2023.csv" in lines[0]
    assert wrong in lines[0] and hashlib.sha256(body).hexdigest() in lines[0]
    folder = tmp_path / "eia_nyiso_lmp_rt"
    assert not any(folder.iterdir()), list(folder.iterdir())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["data", "fetch", "eia_nyiso_lmp", "-p", "year=2023"], "did you mean 'eia_nyiso_lmp_rt'"),
        (["data", "fetch", "eia_nyiso_lmp_rt", "-p", "yeer=2022"], "did you mean 'year'"),
        (["data", "fetch", "eia_nyiso_lmp_rt", "-p", "2022"], "expected K=V"),
        (["data", "fetch", "eia_nyiso_lmp_rt", "-p", "year=2023", "--url-base", "x"], "URL"),
    ],
)
def test_data_fetch_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main([*argv, "--cache", str(tmp_path), *FAST]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and expected in lines[0]
    assert not any(tmp_path.iterdir())


def test_data_fetch_http_404_exit_2(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server knows no such file: HTTP 404 is permanent, one request, one line.
    argv = ["data", "fetch", "eia_nyiso_lmp_rt", "-p", "year=1999", "--cache", str(tmp_path)]
    assert main([*argv, "--url-base", server.url, *FAST]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "HTTP 404" in lines[0]
    assert len(server.state.requests) == 1


def test_data_fetch_connection_refused_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_proxies(monkeypatch)
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["data", "fetch", "burstgpt", "--cache", str(tmp_path), "--retries", "1"]
    assert main([*argv, "--url-base", f"http://127.0.0.1:{port}", *FAST]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "after 2 attempts" in lines[0] and "cannot reach" in lines[0]


def test_progress_bar_follows_callback(capsys: pytest.CaptureFixture[str]) -> None:
    with data_command._progress_bar(True, "demo") as update:
        assert update is not None
        update(10, None)
        update(100, 100)
    assert "demo" in capsys.readouterr().err
    with data_command._progress_bar(False, "demo") as update:
        assert update is None


def test_data_check_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("traces.formats", reason="traces.formats not written yet")
    path = tmp_path / "nyiso_lmp_rt_hr_zones_2023.csv"
    path.write_bytes(eia_nyiso_lmp_bytes(days=2))

    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format:      eia_lmp" in out
    assert "rows:        read 48, kept 48, dropped 0" in out
    assert "span:        2022-01-01 05:00Z .. 2022-01-03 04:00Z" in out
    assert "resolution:  1h" in out
    assert "gaps:        none" in out
    assert "[$/MWh]" in out

    assert main(["data", "check", str(path), "--format", "eia_lmp"]) == 0


def test_data_check_bad_file_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("traces.formats", reason="traces.formats not written yet")
    lines = eia_nyiso_lmp_bytes(days=1).decode().splitlines()
    lines[9] = lines[9].replace("2022-01-01 ", "2022-13-01 ", 1)  # file line 10
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")

    assert main(["data", "check", str(path)]) == 2
    captured = capsys.readouterr()
    errors = _error_lines(captured.err)
    assert len(errors) == 1, captured.err
    assert str(path) in errors[0] and "line 10" in errors[0]
    assert captured.out == ""


def test_data_check_wrong_format_and_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(tmp_path / "absent.csv")]) == 2
    assert len(_error_lines(capsys.readouterr().err)) == 1

    pytest.importorskip("traces.formats", reason="traces.formats not written yet")
    path = tmp_path / "b.csv"
    path.write_bytes(burstgpt_bytes(50))
    assert main(["data", "check", str(path), "--format", "no_such_format"]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "unknown format 'no_such_format'" in errors[0]
