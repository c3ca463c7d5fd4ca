"""Download public data files into a cache directory, resumably and verifiably.

:func:`fetch` streams a URL into ``<dest>.part``. When a previous attempt left a
``.part`` behind (interrupted connection, killed process), the next attempt asks
only for the missing tail with ``Range: bytes=N-``; a server that ignores the
range and answers ``200`` with the whole file is handled by starting the
``.part`` over. A short body (connection closed before ``Content-Length``
bytes) counts as an interruption and is retried, resuming, up to ``retries``
times.

When the download is complete its SHA-256 is compared with the expected digest
(a published one, or one the caller pins). On a mismatch the ``.part`` is
**deleted**, not kept: its bytes are known to be wrong, and resuming from a
wrong prefix would only reproduce the mismatch. Nothing is left at ``dest``
either (a stale file there is removed too), and :class:`ChecksumError` names the
file and both digests on one line. A verified (or unverifiable, when no digest
is known) file is renamed atomically onto ``dest``, so ``dest`` never holds a
partial file.

Every completed file is recorded in ``manifest.json`` in the cache directory
(url, size, sha256, whether the digest was published or computed here,
fetched_at in UTC). A later fetch of a file that is already present is skipped
when its digest matches the expected digest or, failing that, the manifest
record; a file present but not yet recorded (no digest to compare with) is
adopted and recorded; a file that no longer matches is downloaded again. With
``force=True`` any ``.part`` is discarded and the file downloaded afresh. One
process per cache directory is assumed (the ``.part`` and manifest are not
locked).

Safety: only ``https://`` URLs are fetched (``http://`` too when the URL given is
http, e.g. a local mirror), and a redirect may lead only to https (or http from
an http URL), never to ``ftp://``, ``file://`` or a downgrade. A ``.part`` that is
a symbolic link is removed, never written through (it is opened with
``O_NOFOLLOW``). ``deadline_s`` bounds the whole fetch, retries and pauses
included: a server that trickles bytes cannot hold it past the deadline (each
read waits at most until the deadline), and what arrived is kept for a resume.

Only the standard library is used (``urllib``); nothing here prints.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from traces.errors import ConfigError, TraceError
from traces.sources import get_source

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
DEFAULT_CHUNK_BYTES = 1 << 20
SOCKET_TIMEOUT_S = 30.0
"""Default wait for one network read or connect [s]."""
MAX_REDIRECTS = 5
USER_AGENT = "mpc-dc-data-fetch/0.1 (python-urllib)"
_RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE_RE = re.compile(r"bytes\s+\*/(\d+)")

#: ``progress(bytes_done, bytes_total_or_None)`` after every chunk.
ProgressCallback = Callable[[int, int | None], None]
FetchStatus = Literal["downloaded", "resumed", "skipped"]


class FetchError(TraceError):
    """A download that failed (HTTP error, network error after retries); one line.

    ``path`` is the destination file; the message names the URL and what went wrong.
    """


class ChecksumError(FetchError):
    """A downloaded file whose SHA-256 is not the expected one."""


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did.

    Attributes
    ----------
    url
        URL fetched (after any ``url_base`` substitution).
    path
        Final file.
    size_bytes
        Size of the final file [bytes].
    sha256
        Hex SHA-256 of the final file.
    status
        ``"downloaded"`` (in one go), ``"resumed"`` (at least one Range request was
        honoured) or ``"skipped"`` (already complete).
    checksum_verified
        True when the digest was compared with a published or pinned one; False
        when only recorded (no digest known in advance).
    attempts
        HTTP requests made (0 when skipped).
    restarts
        Times a server ignored a Range request and the download began again.
    """

    url: str
    path: Path
    size_bytes: int
    sha256: str
    status: FetchStatus
    checksum_verified: bool
    attempts: int = 0
    restarts: int = 0


class _RetryableError(Exception):
    """A transient failure; the ``.part`` file (if any) is kept for resuming."""


class _Deadline:
    """The overall time limit of one fetch (``None``: no limit)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left [s] (infinite without a limit, never negative)."""
        return float("inf") if self.end is None else max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        """Whether the limit has passed."""
        return self.remaining() <= 0.0

    def timeout(self, socket_s: float) -> float:
        """The socket timeout of the next wait: ``socket_s`` or less near the deadline [s]."""
        return max(0.01, min(socket_s, self.remaining()))


def check_url(url: str, *, allow_http: bool) -> None:
    """Refuse a URL fetch() may not open: only https, or http when ``allow_http``.

    Raises
    ------
    ConfigError
        Another scheme (``file://``, ``ftp://`` ...) or a URL without a host.
    """
    parts = urllib.parse.urlsplit(url)
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in allowed or not parts.netloc:
        raise ConfigError(
            "url", f"refusing {url!r}; expected an {' or '.join(allowed)} URL with a host"
        )


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https (or http when the first URL was http)."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def http_error_302(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any
    ) -> Any:
        """Refuse a redirect to another scheme (``ftp://``, ``file://``) or to plain http."""
        location = headers.get("Location") or headers.get("URI") or ""
        target = urllib.parse.urljoin(req.full_url, location)
        try:
            check_url(target, allow_http=self.allow_http)
        except ConfigError as err:
            raise _RedirectRefusedError(
                f"redirect from {req.full_url} refused: {err.message}") from None
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _RedirectRefusedError(Exception):
    """A redirect to a URL fetch() may not open (not retried)."""


def _opener(url: str) -> urllib.request.OpenerDirector:
    """An opener with http(s) handlers only: no ``file:``, ``ftp:`` or ``data:`` handler."""
    allow_http = urllib.parse.urlsplit(url).scheme.lower() == "http"
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _SafeRedirects(allow_http),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


@dataclass
class _Progress:
    resumed: bool = False
    restarts: int = 0


def sha256_file(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> str:
    """Return the hex SHA-256 of a file, read in chunks of ``chunk_bytes`` [bytes]."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def with_url_base(url: str, url_base: str | None) -> str:
    """Replace the scheme and host of ``url`` by those of ``url_base``.

    The path of ``url_base`` (if any) is prefixed to the original path; query
    strings are kept. Used to point the catalogue at a mirror or a local test
    server, e.g. ``with_url_base("https://www.eia.gov/a.csv", "http://127.0.0.1:8000")``
    gives ``"http://127.0.0.1:8000/a.csv"``.
    """
    if not url_base:
        return url
    base = urllib.parse.urlsplit(url_base)
    if base.scheme.lower() not in ("https", "http") or not base.netloc:
        raise ConfigError(
            "--url-base",
            f"expected an https:// (or http://) URL like https://mirror.example.org, "
            f"got {url_base!r}",
        )
    orig = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + orig.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, orig.query, ""))


def load_manifest(path: str | Path) -> dict[str, dict[str, Any]]:
    """Return the manifest's file records keyed by path relative to its directory.

    A missing manifest is empty. An unreadable one is reported and treated as
    empty: it is a cache index, rebuilt as files are fetched or verified again.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("%s: unreadable manifest (%s); starting a new one", path, err)
        return {}
    return files


def _write_manifest_record(manifest: Path, key: str, record: Mapping[str, Any]) -> None:
    """Insert or replace one record; the manifest is rewritten atomically."""
    files = load_manifest(manifest)
    files[key] = dict(record)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{manifest.name}.", dir=manifest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "files": dict(sorted(files.items()))}, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, manifest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _manifest_key(dest: Path, manifest: Path) -> str:
    return Path(os.path.relpath(dest.resolve(), manifest.parent.resolve())).as_posix()


def _check_digest(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    digest = sha256.strip().lower()
    if not _SHA256_RE.fullmatch(digest):
        raise ConfigError("sha256", f"expected 64 hex digits, got {sha256!r}")
    return digest


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    timeout_s: float = SOCKET_TIMEOUT_S,
    retries: int = 3,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    backoff_s: float = 1.0,
    force: bool = False,
    manifest_path: str | Path | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    deadline_s: float | None = None,
    sha256_source: str = "published",
) -> FetchResult:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming and verifying.

    Parameters
    ----------
    url
        https URL (http is accepted for an http URL given explicitly, e.g. a mirror
        on a local network or a test server).
    dest
        Final path; its parent is created.
    sha256
        Expected hex digest (published or pinned); ``None`` when unknown, in which
        case the computed digest is only recorded.
    timeout_s
        Socket timeout per connect / read [s].
    deadline_s
        Overall time limit of the fetch, retries and pauses included [s]; ``None``:
        none. When it passes, :class:`FetchError` says how many bytes are kept in the
        ``.part`` for a resume.
    retries
        Further attempts after the first one for transient failures (network
        errors, short bodies, HTTP 408/425/429/5xx); each resumes from the ``.part``.
    chunk_bytes
        Read size [bytes].
    backoff_s
        Pause before retry k (1-based) is ``backoff_s * 2**(k-1)`` [s].
    force
        Download from byte 0 even when ``dest`` is present and matches (a ``.part``
        is discarded).
    manifest_path
        Manifest file; default ``dest.parent / "manifest.json"``.
    manifest_extra
        Extra fields stored in the manifest record (e.g. source name, parameters).
    progress
        Called as ``progress(bytes_done, bytes_total_or_None)`` after each chunk.
    sha256_source
        Where ``sha256`` comes from (``"published"``, ``"pinned"``, ``"given"``); recorded
        in the manifest and named in a mismatch.

    Returns
    -------
    FetchResult

    Raises
    ------
    ChecksumError
        Digest mismatch; neither ``dest`` nor ``dest.part`` is left behind.
    FetchError
        HTTP error, a refused redirect, the deadline passed, or still failing after
        ``retries`` retries (the ``.part`` is kept so a later call resumes).
    ConfigError
        Malformed ``sha256``, a URL that is not https (or http), a negative limit.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    expected = _check_digest(sha256)
    check_url(url, allow_http=url.lower().startswith("http://"))
    for name, value in (("timeout_s", timeout_s), ("deadline_s", deadline_s),
                        ("backoff_s", backoff_s)):
        if value is not None and not (value >= 0 and value < float("inf")):
            raise ConfigError("fetch", f"expected a finite number >= 0, got {value!r}", key=name)
    if retries < 0:
        raise ConfigError("fetch", f"expected a whole number >= 0, got {retries!r}",
                          key="retries")
    deadline = _Deadline(deadline_s)
    manifest = Path(manifest_path) if manifest_path is not None else dest.parent / MANIFEST_NAME
    key = _manifest_key(dest, manifest)

    def record(actual: str) -> None:
        """Write the manifest entry of ``dest`` (digest ``actual``)."""
        entry: dict[str, Any] = {
            "url": url,
            "size_bytes": dest.stat().st_size,
            "sha256": actual,
            "sha256_source": sha256_source if expected else "computed after download",
            "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if manifest_extra:
            entry.update(manifest_extra)
        _write_manifest_record(manifest, key, entry)

    if dest.exists() and not force:
        actual = sha256_file(dest, chunk_bytes)
        recorded = load_manifest(manifest).get(key, {}).get("sha256")
        reference = expected or recorded
        if reference is None or actual == reference:
            logger.info("%s: already complete (sha256 %s); skipped", dest, actual)
            if recorded != actual:
                record(actual)
            return FetchResult(
                url=url,
                path=dest,
                size_bytes=dest.stat().st_size,
                sha256=actual,
                status="skipped",
                checksum_verified=expected is not None,
            )
        logger.warning(
            "%s: sha256 %s differs from the %s digest %s; downloading again",
            dest,
            actual,
            "expected" if expected else "recorded",
            reference,
        )

    dest.parent.mkdir(parents=True, exist_ok=True)
    if part.is_symlink():
        logger.warning("%s: is a symbolic link; removed, not followed", part)
        part.unlink()
    if force:
        part.unlink(missing_ok=True)
    state = _Progress()
    attempts = 0
    while True:
        attempts += 1
        try:
            _download_once(
                url,
                dest=dest,
                part=part,
                timeout_s=timeout_s,
                chunk_bytes=chunk_bytes,
                progress=progress,
                state=state,
                deadline=deadline,
            )
            break
        except _RetryableError as err:
            if attempts > retries or deadline.expired():
                why = (f"stopped at the {deadline.seconds:g} s time limit" if deadline.expired()
                       else f"failed after {attempts} attempts")
                raise FetchError(dest, f"download of {url} {why}: {err}{_kept(part)}") from err
            pause = min(backoff_s * 2 ** (attempts - 1), deadline.remaining())
            logger.warning(
                "%s: attempt %d failed (%s); retrying in %.1f s", dest, attempts, err, pause
            )
            time.sleep(pause)

    actual = sha256_file(part, chunk_bytes)
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        dest.unlink(missing_ok=True)
        hint = ("; if the publisher changed the file on purpose, pass --sha256 with the new "
                "digest" if sha256_source == "pinned" else "")
        raise ChecksumError(
            dest,
            f"sha256 mismatch: expected {expected} ({sha256_source}), actual {actual} "
            f"(downloaded from {url}; download deleted){hint}",
        )
    os.replace(part, dest)
    record(actual)
    status: FetchStatus = "resumed" if state.resumed else "downloaded"
    size = dest.stat().st_size
    logger.info("%s: %s, %d bytes, sha256 %s", dest, status, size, actual)
    return FetchResult(
        url=url,
        path=dest,
        size_bytes=size,
        sha256=actual,
        status=status,
        checksum_verified=expected is not None,
        attempts=attempts,
        restarts=state.restarts,
    )


def _kept(part: Path) -> str:
    """``; N bytes kept in X.part, run again to resume`` (empty when nothing is kept)."""
    if not part.exists():
        return ""
    return f"; {part.stat().st_size} bytes kept in {part.name}, run again to resume"


def _open_part(part: Path, append: bool) -> BinaryIO:
    """Open ``part`` for writing without following a symbolic link there."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(part, flags, 0o644), "ab" if append else "wb")


def _set_read_timeout(response: Any, seconds: float) -> None:
    """Shorten the socket timeout of an open response (so a read ends by the deadline).

    Reaches the socket through ``http.client`` internals; when they differ (another
    Python), the timeout set at connect time stays, which bounds a read anyway.
    """
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _download_once(
    url: str,
    *,
    dest: Path,
    part: Path,
    timeout_s: float,
    chunk_bytes: int,
    progress: ProgressCallback | None,
    state: _Progress,
    deadline: _Deadline | None = None,
) -> None:
    """One HTTP request; leaves a complete ``part`` or raises.

    Raises ``_RetryableError`` for transient failures (``part`` keeps what arrived)
    and :class:`FetchError` for permanent ones (including the deadline passing).
    """
    deadline = deadline or _Deadline(None)
    offset = part.lstat().st_size if part.exists() else 0
    request = urllib.request.Request(
        url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    )
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = _opener(url).open(request, timeout=deadline.timeout(timeout_s))
    except _RedirectRefusedError as err:
        raise FetchError(dest, str(err)) from None
    except urllib.error.HTTPError as err:
        with err:
            if err.code == 416 and offset:
                match = _UNSATISFIED_RANGE_RE.fullmatch(err.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    logger.info("%s: partial file was already complete", dest)
                    state.resumed = True
                    return
                part.unlink(missing_ok=True)
                state.restarts += 1
                raise _RetryableError(
                    f"server refused to resume at byte {offset} (HTTP 416); starting over"
                ) from err
            if err.code in _RETRY_HTTP_CODES:
                raise _RetryableError(f"HTTP {err.code} {err.reason}") from err
            raise FetchError(dest, f"HTTP {err.code} {err.reason} for {url}") from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", err)
        host = urllib.parse.urlsplit(url).netloc
        raise _RetryableError(f"cannot reach {host}: {reason}") from err

    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if offset and response.status == 206:
            match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)
                state.restarts += 1
                raise _RetryableError(
                    f"server answered the resume at byte {offset} with Content-Range "
                    f"{response.headers.get('Content-Range')!r}; starting over"
                )
            total: int | None = None if match.group(3) == "*" else int(match.group(3))
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
            state.resumed = True
            logger.info("%s: resuming at byte %d", dest, offset)
        else:
            if offset:
                logger.info(
                    "%s: server ignored the Range request (HTTP %d); downloading from byte 0",
                    dest,
                    response.status,
                )
                state.restarts += 1
            offset = 0
            total = length
            mode = "wb"
        done = offset
        with _open_part(part, append=mode == "ab") as fh:
            while True:
                if deadline.expired():
                    fh.flush()
                    raise FetchError(
                        dest, f"download of {url} stopped at the {deadline.seconds:g} s time "
                        f"limit after {done} of {total or '?'} bytes{_kept(part)}")
                _set_read_timeout(response, deadline.timeout(timeout_s))
                try:
                    # read1: whatever has arrived (a trickling server cannot hold a read
                    # until chunk_bytes are in, past the deadline).
                    chunk = response.read1(chunk_bytes)
                except (http.client.HTTPException, OSError) as err:
                    raise _RetryableError(
                        f"connection lost after {done} of {total or '?'} bytes ({err!r})"
                    ) from err
                if not chunk:
                    break
                fh.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise _RetryableError(f"connection closed after {done} of {total} bytes")
    if total is not None and done > total:
        part.unlink(missing_ok=True)
        raise _RetryableError(f"received {done} bytes but {total} were announced; starting over")


def fetch_source(
    name: str,
    cache_dir: str | Path,
    *,
    params: Mapping[str, str] | None = None,
    url_base: str | None = None,
    sha256: str | None = None,
    timeout_s: float = SOCKET_TIMEOUT_S,
    retries: int = 3,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    backoff_s: float = 1.0,
    force: bool = False,
    progress: ProgressCallback | None = None,
    deadline_s: float | None = None,
) -> FetchResult:
    """Fetch one file of the catalogued source ``name`` into ``cache_dir/name/``.

    Parameters
    ----------
    name
        Catalogue name (see :data:`traces.sources.SOURCES`).
    cache_dir
        Cache root; the manifest is ``cache_dir/manifest.json``.
    params
        Template parameters, e.g. ``{"year": "2022"}``; defaults fill the rest.
    url_base
        Replace the public host (scheme and netloc) by this one, e.g. a mirror.
    sha256
        Expect this digest; otherwise the catalogue's published digest, else the one
        it pins for a known file (:attr:`traces.sources.Source.pinned_sha256`).
    timeout_s, retries, chunk_bytes, backoff_s, force, progress, deadline_s
        As for :func:`fetch`.

    Returns
    -------
    FetchResult

    Raises
    ------
    ConfigError
        Unknown source or bad parameters (before any network access).
    FetchError, ChecksumError
        As for :func:`fetch`.
    """
    source = get_source(name)
    resolved = source.resolve(params or {})
    cache = Path(cache_dir)
    digest: str | None
    if sha256:
        digest, digest_source = sha256, "given"
    elif resolved.published_sha256:
        digest, digest_source = resolved.published_sha256, "published"
    else:
        digest, digest_source = resolved.pinned_sha256, "pinned"
    return fetch(
        with_url_base(resolved.url, url_base),
        cache / source.name / resolved.filename,
        sha256=digest,
        sha256_source=digest_source,
        deadline_s=deadline_s,
        timeout_s=timeout_s,
        retries=retries,
        chunk_bytes=chunk_bytes,
        backoff_s=backoff_s,
        force=force,
        manifest_path=cache / MANIFEST_NAME,
        manifest_extra={
            "source": source.name,
            "params": dict(resolved.params),
            "format": source.format,
        },
        progress=progress,
    )
