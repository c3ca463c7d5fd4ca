"""``data fetch`` safety: symlinked .part, overall deadline, schemes and redirects, pins.

A local HTTP server on 127.0.0.1 (a thread, port chosen by the OS) misbehaves on
purpose: it trickles bytes, or redirects to ftp:// or file://. Never the internet.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mpc_dc.cli import main as cli_main
from tests.test_fetch import clear_proxies, eia_nyiso_lmp_bytes, running_server
from traces.errors import ConfigError
from traces.fetch import ChecksumError, FetchError, fetch, fetch_source
from traces.sources import SOURCES, get_source

BODY = b"timestamp,value\n" + b"".join(b"2022-01-01 %02d:00:00,%d\n" % (h, h) for h in range(24))
FAST: dict[str, Any] = {"timeout_s": 5.0, "backoff_s": 0.0, "retries": 0}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        mode = self.server.mode
        if mode.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", mode.removeprefix("redirect:"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if mode == "trickle":  # one byte per second, as a stalled mirror would
            for byte in BODY:
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(1.0)
            return
        self.wfile.write(BODY)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "plain"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    clear_proxies(monkeypatch)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _url(httpd: _Server, path: str = "/data.csv") -> str:
    host, port = httpd.server_address[:2]
    return f"http://{host!s}:{port}{path}"


def test_a_symlinked_part_file_is_not_followed(server: _Server, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"important")
    dest = tmp_path / "cache" / "data.csv"
    dest.parent.mkdir()
    dest.with_name("data.csv.part").symlink_to(victim)
    result = fetch(_url(server), dest, **FAST)
    assert victim.read_bytes() == b"important"
    assert dest.read_bytes() == BODY and result.status == "downloaded"
    assert not dest.with_name("data.csv.part").exists()


def test_a_trickling_server_cannot_outlive_the_deadline(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 byte/s; ``--timeout 2`` ends the command after about 2 s, keeping the bytes."""
    server.mode = "trickle"
    outcome: dict[str, Any] = {}

    def fetch_it() -> None:
        tick = time.monotonic()
        outcome["code"] = cli_main(["data", "fetch", "eia_nyiso_lmp_rt", "-p", "year=2023",
                                    "--cache", str(tmp_path), "--url-base", _url(server, ""),
                                    "--timeout", "2", "--backoff", "0", "--no-progress"])
        outcome["seconds"] = time.monotonic() - tick

    worker = threading.Thread(target=fetch_it, daemon=True)
    worker.start()
    worker.join(timeout=30)  # the old code would read 1 MiB chunks for ~6 minutes
    assert not worker.is_alive(), "the download outlived its deadline"
    assert outcome["code"] == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "stopped at the 2 s time limit" in line
    assert "bytes kept in nyiso_lmp_rt_hr_zones_2023.csv.part, run again to resume" in line
    assert outcome["seconds"] < 10


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.csv", "gopher://h/x"])
def test_only_http_urls_are_fetched(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected an https URL with a host"):
        fetch(url, tmp_path / "x.csv", **FAST)
    assert not list(tmp_path.iterdir())


def test_an_https_url_may_not_fall_back_to_http(tmp_path: Path) -> None:
    from traces.fetch import check_url

    check_url("https://www.eia.gov/x.csv", allow_http=False)
    with pytest.raises(ConfigError, match="expected an https URL"):
        check_url("http://www.eia.gov/x.csv", allow_http=False)


def test_url_base_file_is_refused_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["data", "fetch", "eia_nyiso_lmp_rt", "-p", "year=2023", "--cache", str(tmp_path),
            "--url-base", "file:///etc"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "key" not in err and "https://" in err
    assert not list(tmp_path.iterdir())


def test_a_redirect_to_ftp_is_not_followed(server: _Server, tmp_path: Path) -> None:
    """The ftp 'server' is a listening socket: no connection may reach it."""
    with socket.socket() as ftp:
        ftp.bind(("127.0.0.1", 0))
        ftp.listen()
        ftp.settimeout(0.5)
        server.mode = f"redirect:ftp://127.0.0.1:{ftp.getsockname()[1]}/data.csv"
        with pytest.raises(FetchError, match=r"redirect from .* refused: refusing 'ftp://"):
            fetch(_url(server), tmp_path / "data.csv", **FAST)
        with pytest.raises(TimeoutError):
            ftp.accept()
    assert not (tmp_path / "data.csv").exists()


def test_a_redirect_to_a_local_file_is_not_followed(server: _Server, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_bytes(b"password")
    server.mode = f"redirect:file://{secret}"
    with pytest.raises(FetchError, match=r"redirect from .* refused: refusing 'file://"):
        fetch(_url(server), tmp_path / "data.csv", **FAST)
    assert not (tmp_path / "data.csv").exists()


def test_a_redirect_within_http_is_followed(server: _Server, tmp_path: Path) -> None:
    server.mode = "plain"
    with running_server() as other:
        target = other.serve("/moved.csv", BODY)
        server.mode = f"redirect:{target}"
        assert fetch(_url(server), tmp_path / "d.csv", **FAST).sha256 == hashlib.sha256(
            BODY).hexdigest()


# ----------------------------------------------------------------------------- pinned digests


def test_pinned_digests_are_those_of_the_verified_copies(shared_data: Path) -> None:
    sums = {}
    for line in (shared_data / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        sums[Path(name).name] = digest
    pinned = {name: digest for s in SOURCES for name, digest in s.pinned_sha256.items()}
    assert len(pinned) == 6
    for name, digest in pinned.items():
        assert sums[name] == digest, name


def test_a_download_that_differs_from_the_pin_is_refused(tmp_path: Path) -> None:
    assert get_source("eia_nyiso_lmp_rt").resolve({"year": "2022"}).pinned_sha256
    with running_server() as local:
        local.serve("/electricity/wholesalemarkets/csv/nyiso_lmp_rt_hr_zones_2022.csv",
                    eia_nyiso_lmp_bytes(1))
        with pytest.raises(ChecksumError) as info:
            fetch_source("eia_nyiso_lmp_rt", tmp_path, params={"year": "2022"},
                         url_base=local.url, **FAST)
    message = str(info.value)
    assert "(pinned)" in message and "pass --sha256 with the new digest" in message
    assert not list((tmp_path / "eia_nyiso_lmp_rt").iterdir())


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["nyiso_rt_zone_day", "-p", "date=20220231"],
         "key 'date': got '20220231', which is not a calendar date"),
        (["caiso_oasis_rtpd_lmp", "-p", "start=20210230", "-p", "end=20210302"],
         "key 'start': got '20210230', which is not a calendar date"),
        (["burstgpt", "--timeout", "-5"], "argument --timeout: expected a finite number > 0"),
        (["burstgpt", "--timeout", "nan"], "argument --timeout: expected a finite number > 0"),
        (["burstgpt", "--backoff", "nan"], "argument --backoff: expected a finite number >= 0"),
        (["burstgpt", "--retries", "-1"], "argument --retries: expected a whole number >= 0"),
    ],
)
def test_bad_fetch_arguments_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    # A dead local address: were a check to slip, nothing would leave the machine.
    argv = [*argv, "--url-base", "http://127.0.0.1:9", "--backoff", "0"]
    assert cli_main(["data", "fetch", *argv, "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "cache").exists()


def test_a_cache_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    cache.write_text("not a folder", encoding="utf-8")
    assert cli_main(["data", "fetch", "burstgpt", "--cache", str(cache)]) == 2
    assert capsys.readouterr().err == (
        f"mpc-dc: error: argument --cache: {cache} is a file; expected a directory path (new, "
        "or an mpc-dc output folder) (see 'mpc-dc data fetch --help')\n")
