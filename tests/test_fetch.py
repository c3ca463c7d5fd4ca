"""Tests of :mod:`traces.fetch` and :mod:`traces.sources` against a local HTTP server.

The server listens on 127.0.0.1 (port chosen by the OS) and serves files written
here in the real public layouts with made-up values (never copies of
../shared/data). Switches on the server simulate an interrupted connection, a
server that ignores Range requests and a server that sends wrong bytes. All
loops are bounded (``retries``) and every request has a timeout.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

import pytest

from traces.errors import ConfigError
from traces.fetch import (
    MANIFEST_NAME,
    ChecksumError,
    FetchError,
    fetch,
    fetch_source,
    load_manifest,
    with_url_base,
)
from traces.sources import SOURCES, get_source

# ---------------------------------------------------------------------------
# files in the real public layouts, made-up values
# ---------------------------------------------------------------------------

NYISO_ZONES = (
    "A - West",
    "B - Genessee",
    "C - Central",
    "D - North",
    "E - Mohawk Valley",
    "F - Capital",
    "G - Hudson Valley",
    "H - Millwood",
    "I - Dunwoodie",
    "J - New York City",
    "K - Long Island",
)


def eia_nyiso_lmp_bytes(days: int = 3) -> bytes:
    """EIA wholesale file 'NYISO Hourly Real-Time LBMP for Zones': 3 title lines + header."""
    title = [
        "NYISO Hourly Real-Time Locational Based Marginal Prices ($/megawatt) for Zones",
        "Hourly real-time locational marginal prices for NYISO",
        "Source: EIA collected from NYISO",
    ]
    header = [
        "UTC Timestamp (Interval Ending)",
        "Local Timestamp Eastern Time (Interval Beginning)",
        "Local Timestamp Eastern Time (Interval Ending)",
        "Local Date",
        "Hour Number",
        *(f"{z} LMP" for z in NYISO_ZONES),
        *(f"{z} (Congestion)" for z in NYISO_ZONES),
        *(f"{z} (Loss)" for z in NYISO_ZONES),
    ]
    rows = [*title, ",".join(header)]
    # January: EST all along (UTC-5), so interval ending UTC = local begin + 6 h.
    for day in range(1, days + 1):
        for hour in range(24):
            begin_h = (day - 1) * 24 + hour

            def stamp(h: int) -> str:
                d, hh = divmod(h, 24)
                return f"2022-01-{d + 1:02d} {hh:02d}:00:00"

            lmps = [round(20 + (hour % 12) * 1.5 + z * 0.7 + day * 0.1, 2) for z in range(11)]
            cong = [round(-0.1 * z - (hour % 5) * 0.2, 2) for z in range(11)]
            loss = [round(0.05 * z + 0.01 * (hour % 3), 2) for z in range(11)]
            cells = [
                stamp(begin_h + 6),
                stamp(begin_h),
                stamp(begin_h + 1),
                f"2022-01-{day:02d}",
                str(hour + 1),
                *map(str, lmps),
                *map(str, cong),
                *map(str, loss),
            ]
            rows.append(",".join(cells))
    return ("\n".join(rows) + "\n").encode()


def burstgpt_bytes(n_rows: int = 3000) -> bytes:
    """BurstGPT release CSV: header + request rows (a few failures with 0 response tokens)."""
    lines = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    t = 5
    for i in range(n_rows):
        t += 7 + (i * 37) % 53
        model = "GPT-4" if i % 5 == 0 else "ChatGPT"
        req = 50 + (i * 131) % 1900
        resp = 0 if i % 97 == 0 else 10 + (i * 71) % 800
        log = "API log" if i % 13 == 0 else "Conversation log"
        lines.append(f"{t},{model},{req},{resp},{req + resp},{log}")
    return ("\n".join(lines) + "\n").encode()


def nyiso_mis_zone_zip_bytes(month: str = "202204", days: int = 2) -> bytes:
    """NYISO MIS monthly zip of daily ``YYYYMMDDrealtime_zone.csv`` files (5-min, Eastern)."""
    names = [("CAPITL", 61757), ("N.Y.C.", 61761), ("WEST", 61752)]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for day in range(1, days + 1):
            lines = [
                '"Time Stamp","Name","PTID","LBMP ($/MWHr)",'
                '"Marginal Cost Losses ($/MWHr)","Marginal Cost Congestion ($/MWHr)"'
            ]
            for k in range(1, 289):
                h, m = divmod(k * 5, 60)
                stamp = f"{month[4:]}/{day:02d}/{month[:4]} {h:02d}:{m:02d}:00"
                if h == 24:
                    stamp = f"{month[4:]}/{day + 1:02d}/{month[:4]} 00:00:00"
                for j, (name, ptid) in enumerate(names):
                    lbmp = 25 + j + (k % 24) * 0.5
                    lines.append(f'"{stamp}","{name}",{ptid},{lbmp:.2f},{0.4 + j:.2f},{-j:.2f}')
            zf.writestr(f"{month}{day:02d}realtime_zone.csv", "\n".join(lines) + "\n")
    return buf.getvalue()


def oasis_zip_bytes() -> bytes:
    """CAISO OASIS SingleZip answer: one CSV with the OASIS LMP columns."""
    header = (
        "INTERVALSTARTTIME_GMT,INTERVALENDTIME_GMT,OPR_DT,OPR_HR,OPR_INTERVAL,NODE_ID_XML,"
        "NODE_ID,NODE,MARKET_RUN_ID,LMP_TYPE,XML_DATA_ITEM,PNODE_RESMRID,GRP_TYPE,POS,MW,GROUP"
    )
    lines = [header]
    for q in range(8):
        start = f"2021-01-01T{8 + q // 4:02d}:{(q % 4) * 15:02d}:00-00:00"
        end_q = q + 1
        end = f"2021-01-01T{8 + end_q // 4:02d}:{(end_q % 4) * 15:02d}:00-00:00"
        lines.append(
            f"{start},{end},2021-01-01,{q // 4 + 1},{q % 4 + 1},TH_NP15_GEN-APND,"
            f"TH_NP15_GEN-APND,TH_NP15_GEN-APND,RTPD,LMP,LMP_PRC,TH_NP15_GEN-APND,ALL,0,"
            f"{30 + q * 0.25:.5f},1"
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(
            "20210101_20210102_PRC_RTPD_LMP_RTPD_20210105_12_00_00_v3.csv", "\n".join(lines)
        )
    return buf.getvalue()


# ---------------------------------------------------------------------------
# the local server
# ---------------------------------------------------------------------------


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves."""

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: int = 0  # body bytes sent before the connection is dropped ...
    cuts_left: int = 0  # ... on this many responses
    ignore_range: bool = False
    corrupt: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ranges(self) -> list[str | None]:
        """Range headers of the requests seen so far (None where absent)."""
        with self.lock:
            return [r["range"] for r in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on ``state.requests`` instead."""

    def do_GET(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        with state.lock:
            state.requests.append(
                {"path": url.path, "query": url.query, "range": self.headers.get("Range")}
            )
            body = state.files.get(url.path)
            cut = state.cuts_left > 0
            if cut:
                state.cuts_left -= 1
        if body is None:
            self.send_error(404, "Not Found")
            return
        if state.corrupt:
            body = bytes(b ^ 0x5A for b in body[:64]) + body[64:]
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not state.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if cut:
            # Content-Length promised the whole payload; closing early is the interruption.
            self.wfile.write(payload[: state.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


@dataclass
class LocalServer:
    """A running test server: its base URL and its state."""

    url: str
    state: ServerState

    def serve(self, path: str, body: bytes) -> str:
        """Serve ``body`` at ``path``; return its full URL."""
        with self.state.lock:
            self.state.files[path] = body
        return self.url + path


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep urllib from sending 127.0.0.1 traffic to a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@contextmanager
def running_server() -> Iterator[LocalServer]:
    """A ThreadingHTTPServer on 127.0.0.1, port chosen by the OS, stopped on exit."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield LocalServer(url=f"http://{host!s}:{port}", state=httpd.state)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """The local test server (see :func:`running_server`)."""
    clear_proxies(monkeypatch)
    with running_server() as local:
        yield local


class _Fast(TypedDict):
    timeout_s: float
    backoff_s: float
    chunk_bytes: int


FAST: _Fast = {"timeout_s": 5.0, "backoff_s": 0.0, "chunk_bytes": 4096}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# fetch()
# ---------------------------------------------------------------------------


def test_full_download_records_manifest(server: LocalServer, tmp_path: Path) -> None:
    body = eia_nyiso_lmp_bytes()
    url = server.serve("/csv/nyiso_lmp_rt_hr_zones_2022.csv", body)
    dest = tmp_path / "cache" / "nyiso_lmp_rt_hr_zones_2022.csv"

    result = fetch(url, dest, **FAST)

    assert dest.read_bytes() == body
    assert not dest.with_name(dest.name + ".part").exists()
    assert (result.status, result.size_bytes, result.sha256) == ("downloaded", len(body), sha(body))
    assert result.attempts == 1 and not result.checksum_verified
    assert server.state.ranges() == [None]
    record = load_manifest(dest.parent / MANIFEST_NAME)[dest.name]
    assert record["url"] == url
    assert record["size_bytes"] == len(body)
    assert record["sha256"] == sha(body)
    assert record["fetched_at"].endswith("+00:00")


def test_published_checksum_is_verified(server: LocalServer, tmp_path: Path) -> None:
    body = burstgpt_bytes(200)
    url = server.serve("/BurstGPT_1.csv", body)
    result = fetch(url, tmp_path / "b.csv", sha256=sha(body).upper(), **FAST)
    assert result.checksum_verified
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["files"]["b.csv"]["sha256_source"] == "published"


def test_interrupted_download_resumes_with_range(server: LocalServer, tmp_path: Path) -> None:
    body = burstgpt_bytes()
    assert len(body) > 60_000
    url = server.serve("/v1.1/BurstGPT_1.csv", body)
    server.state.cut_after, server.state.cuts_left = 25_000, 1
    dest = tmp_path / "BurstGPT_1.csv"

    result = fetch(url, dest, retries=2, **FAST)

    assert dest.read_bytes() == body
    assert result.status == "resumed"
    assert result.attempts == 2 and result.restarts == 0
    assert server.state.ranges() == [None, "bytes=25000-"]


def test_retries_exhausted_keeps_part_and_next_run_resumes(
    server: LocalServer, tmp_path: Path
) -> None:
    body = burstgpt_bytes()
    url = server.serve("/BurstGPT_2.csv", body)
    server.state.cut_after, server.state.cuts_left = 1000, 3
    dest = tmp_path / "BurstGPT_2.csv"
    part = dest.with_name(dest.name + ".part")

    with pytest.raises(FetchError) as info:
        fetch(url, dest, retries=2, **FAST)

    message = str(info.value)
    assert "\n" not in message and "after 3 attempts" in message and part.name in message
    assert not dest.exists() and part.stat().st_size == 3000
    assert server.state.ranges() == [None, "bytes=1000-", "bytes=2000-"]

    result = fetch(url, dest, retries=0, **FAST)
    assert result.status == "resumed" and dest.read_bytes() == body
    assert server.state.ranges()[-1] == "bytes=3000-"


def test_server_ignoring_range_restarts_from_zero(server: LocalServer, tmp_path: Path) -> None:
    body = eia_nyiso_lmp_bytes()
    url = server.serve("/lmp.csv", body)
    server.state.ignore_range = True
    dest = tmp_path / "lmp.csv"
    # A stale prefix that must not survive: appending the 200 body to it would corrupt the file.
    dest.with_name(dest.name + ".part").write_bytes(b"X" * 777)

    result = fetch(url, dest, **FAST)

    assert dest.read_bytes() == body
    assert result.status == "downloaded" and result.restarts == 1
    assert server.state.ranges() == ["bytes=777-"]


def test_part_already_complete_is_accepted_on_416(server: LocalServer, tmp_path: Path) -> None:
    body = burstgpt_bytes(300)
    url = server.serve("/c.csv", body)
    dest = tmp_path / "c.csv"
    dest.with_name("c.csv.part").write_bytes(body)

    result = fetch(url, dest, sha256=sha(body), **FAST)

    assert dest.read_bytes() == body and result.checksum_verified
    assert server.state.ranges() == [f"bytes={len(body)}-"]


def test_checksum_mismatch_fails_loudly_and_leaves_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    body = eia_nyiso_lmp_bytes()
    url = server.serve("/lmp.csv", body)
    server.state.corrupt = True
    dest = tmp_path / "lmp.csv"
    good = sha(body)

    with pytest.raises(ChecksumError) as info:
        fetch(url, dest, sha256=good, **FAST)

    message = str(info.value)
    bad = sha(bytes(b ^ 0x5A for b in body[:64]) + body[64:])
    assert "\n" not in message
    assert str(dest) in message and good in message and bad in message
    assert not dest.exists() and not dest.with_name("lmp.csv.part").exists()
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_complete_file_is_skipped(server: LocalServer, tmp_path: Path) -> None:
    body = burstgpt_bytes(500)
    url = server.serve("/s.csv", body)
    dest = tmp_path / "s.csv"
    fetch(url, dest, **FAST)
    fetch(url, dest, sha256=sha(body), **FAST)

    again = fetch(url, dest, **FAST)

    assert again.status == "skipped" and again.attempts == 0
    assert len(server.state.requests) == 1


def test_corrupted_cache_file_is_downloaded_again(server: LocalServer, tmp_path: Path) -> None:
    body = burstgpt_bytes(500)
    url = server.serve("/s.csv", body)
    dest = tmp_path / "s.csv"
    fetch(url, dest, **FAST)
    dest.write_bytes(body[:-10] + b"0123456789")  # same size, different bytes

    result = fetch(url, dest, **FAST)

    assert result.status == "downloaded" and dest.read_bytes() == body
    assert len(server.state.requests) == 2


def test_http_404_is_not_retried(server: LocalServer, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(server.url + "/missing.csv", tmp_path / "m.csv", retries=3, **FAST)
    assert len(server.state.requests) == 1
    assert not (tmp_path / "m.csv").exists()


def test_bad_digest_argument() -> None:
    with pytest.raises(ConfigError, match="64 hex digits"):
        fetch("http://127.0.0.1:1/x", Path("unused"), sha256="abc")


# ---------------------------------------------------------------------------
# the catalogue and fetch_source()
# ---------------------------------------------------------------------------


def example_params(name: str) -> dict[str, str]:
    return {p.name: p.example for p in get_source(name).params}


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_every_source_resolves_to_a_public_https_url(source: Any) -> None:
    resolved = source.resolve(example_params(source.name))
    url = urlsplit(resolved.url)
    assert url.scheme == "https" and "127.0.0.1" not in url.netloc and "{" not in resolved.url
    assert ".." not in resolved.filename and not resolved.filename.startswith("/")
    assert source.license and source.checksum_note and source.homepage.startswith("http")
    assert (source.reader is None) == (source.format is None)
    # No source publishes a checksum today; the catalogue must say so, not invent one.
    assert resolved.published_sha256 is None and "not published" in source.checksum_note


def test_resolve_rejects_bad_parameters() -> None:
    eia = get_source("eia_nyiso_lmp_rt")
    with pytest.raises(ConfigError, match="did you mean 'year'"):
        eia.resolve({"yeer": "2022"})
    with pytest.raises(ConfigError, match=r"missing required parameter, e\.g\. year=2022"):
        eia.resolve({})
    with pytest.raises(ConfigError, match="key 'year'"):
        eia.resolve({"year": "22"})
    with pytest.raises(ConfigError, match="did you mean 'eia930_balance'"):
        get_source("eia930_balanse")


def test_oasis_bounds_follow_pacific_midnight_across_dst() -> None:
    resolved = get_source("caiso_oasis_rtpd_lmp").resolve({"start": "20210310", "end": "20210315"})
    query = dict(part.split("=", 1) for part in urlsplit(resolved.url).query.split("&"))
    assert query["startdatetime"] == "20210310T08:00-0000"  # PST
    assert query["enddatetime"] == "20210316T07:00-0000"  # PDT
    assert query["queryname"] == "PRC_RTPD_LMP" and query["market_run_id"] == "RTPD"
    with pytest.raises(ConfigError, match="31 days"):
        get_source("caiso_oasis_intvl_lmp").resolve({"start": "20210101", "end": "20210301"})


def test_with_url_base_keeps_path_and_query() -> None:
    url = "https://oasis.caiso.com/oasisapi/SingleZip?resultformat=6&node=X"
    assert with_url_base(url, "http://127.0.0.1:8000") == (
        "http://127.0.0.1:8000/oasisapi/SingleZip?resultformat=6&node=X"
    )
    assert with_url_base(url, "http://127.0.0.1:8000/mirror/") == (
        "http://127.0.0.1:8000/mirror/oasisapi/SingleZip?resultformat=6&node=X"
    )
    with pytest.raises(ConfigError):
        with_url_base(url, "127.0.0.1:8000")


def test_fetch_source_into_cache(server: LocalServer, tmp_path: Path) -> None:
    body = nyiso_mis_zone_zip_bytes()
    server.serve("/public/csv/realtime/20220401realtime_zone_csv.zip", body)
    cache = tmp_path / "cache"

    result = fetch_source(
        "nyiso_rt_zone_month", cache, params={"month": "202204"}, url_base=server.url, **FAST
    )

    assert result.path == cache / "nyiso_rt_zone_month" / "20220401realtime_zone_csv.zip"
    assert result.path.read_bytes() == body
    with zipfile.ZipFile(result.path) as zf:
        assert zf.namelist() == ["20220401realtime_zone.csv", "20220402realtime_zone.csv"]
    record = load_manifest(cache / MANIFEST_NAME)[
        "nyiso_rt_zone_month/20220401realtime_zone_csv.zip"
    ]
    assert record["source"] == "nyiso_rt_zone_month" and record["params"] == {"month": "202204"}
    assert record["sha256"] == sha(body)


def test_fetch_source_oasis_sends_the_query(server: LocalServer, tmp_path: Path) -> None:
    body = oasis_zip_bytes()
    server.serve("/oasisapi/SingleZip", body)
    result = fetch_source(
        "caiso_oasis_rtpd_lmp",
        tmp_path,
        params={"start": "20210101", "end": "20210101"},
        url_base=server.url,
        **FAST,
    )
    assert result.path.read_bytes() == body
    (request,) = server.state.requests
    assert "startdatetime=20210101T08:00-0000" in request["query"]
    assert "enddatetime=20210102T08:00-0000" in request["query"]


# ---------------------------------------------------------------------------
# fetched files are readable by the project's readers
# ---------------------------------------------------------------------------


READABLE_CASES = [
    (
        # 2023: a year without a pinned digest (the made-up file would not match a pin).
        "eia_nyiso_lmp_rt",
        {"year": "2023"},
        "/electricity/wholesalemarkets/csv/nyiso_lmp_rt_hr_zones_2023.csv",
        eia_nyiso_lmp_bytes,
    ),
    ("burstgpt", {}, "/HPMLL/BurstGPT/releases/download/v1.1/BurstGPT_1.csv", burstgpt_bytes),
]


@pytest.mark.parametrize("case", READABLE_CASES, ids=[c[0] for c in READABLE_CASES])
def test_fetched_file_is_readable(server: LocalServer, tmp_path: Path, case: Any) -> None:
    source, params, path, make = case
    body = make()
    server.serve(path, body)
    result = fetch_source(source, tmp_path, params=params, url_base=server.url, **FAST)
    assert result.path.read_bytes() == body

    formats = pytest.importorskip("traces.formats", reason="traces.formats not written yet")
    assert formats.sniff_format(result.path) == get_source(source).format
    frame, meta = formats.read_any(result.path)
    assert len(frame) > 0
    assert meta.rows_read > 0 and meta.rows_kept == len(frame)


def test_catalogue_readers_exist() -> None:
    formats = pytest.importorskip("traces.formats", reason="traces.formats not written yet")
    for source in SOURCES:
        if source.reader is None:
            continue
        assert source.format in formats.READERS, source.name
        module, function = formats.READERS[source.format]
        assert source.reader == f"{module}.{function}", source.name
