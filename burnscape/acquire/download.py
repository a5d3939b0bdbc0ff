"""Acquire stage: burnscape's file downloader (retries, resume, verification).

Every file streams into ``<dest>.part`` beside its destination, resumes with an
HTTP ``Range`` request after a broken connection (and starts over cleanly when
the server ignores ``Range``), is checked against its expected size and
checksum (or, with none, that it opens as the expected format), and only then
is renamed atomically into place. A file therefore either exists complete and
verified under its own name, or not at all.

Connection errors, 5xx and 429 answers are retried by urllib3's ``Retry`` with
exponential backoff, jitter and ``Retry-After``; a body that breaks off midway
is retried here, resuming where it stopped. Other 4xx answers are not retried.
Each state change is written to the :class:`~burnscape.acquire.ledger.Ledger`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from burnscape.acquire.ledger import Ledger
from burnscape.errors import (
    AcquireError,
    AssetUnavailableError,
    AuthenticationError,
    ChecksumError,
    DownloadError,
)
from burnscape.utils import sha256_file

__all__ = [
    "PART_SUFFIX",
    "DownloadResult",
    "Downloader",
    "FileRequest",
    "RETRY_STATUSES",
    "make_session",
    "raise_for_failures",
]

logger = logging.getLogger(__name__)

PART_SUFFIX = ".part"
"""Suffix of a file being downloaded, beside its final name."""

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses retried with backoff (429 and 503 honour ``Retry-After``)."""

_CHUNK = 1 << 20
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")

State = Literal["verified", "skipped", "failed", "missing"]


@dataclass(frozen=True)
class FileRequest:
    """One file to fetch: where from, where to, and what it must be.

    ``sha256`` and ``md5`` are lower-case hex digests; ``size`` is in bytes.
    ``expect_format`` (``"tiff"``, ``"hdf4"``, ``"hdf5"``, ``"netcdf"``,
    ``"text"``) is checked on the first bytes when no checksum is given.
    """

    url: str
    path: Path
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    source: str = ""
    item_id: str = ""
    asset_key: str = ""
    expect_format: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DownloadResult:
    """The outcome of one :class:`FileRequest`.

    ``state`` is ``verified`` (fetched now), ``skipped`` (already verified on
    disk), ``failed`` (error after retries, or checksum mismatch) or ``missing``
    (the source does not hold it: 404/410).
    """

    request: FileRequest
    state: State
    size: int | None = None
    sha256: str | None = None
    error: str | None = None
    error_type: type[AcquireError] | None = None
    bytes_fetched: int = 0

    @property
    def ok(self) -> bool:
        """Return True when the file is verified and in place."""
        return self.state in ("verified", "skipped")


class _Failure(Exception):
    """Internal: a download attempt failed for a reason that is final.

    ``keep_part``: the partial file is good so far (the transfer gave up), so a
    later run may resume it.
    """

    def __init__(
        self, message: str, error_type: type[AcquireError], keep_part: bool = False
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.keep_part = keep_part


class _Cancelled(Exception):
    """Internal: :meth:`Downloader.cancel` was called during a transfer."""


class _Transfer:
    """What one file's attempts share: the server's validator for ``If-Range``."""

    def __init__(self) -> None:
        self.validator: str | None = None


class _Retryable(Exception):
    """Internal: a download attempt broke off and may resume."""

    def __init__(self, message: str, received: int = 0) -> None:
        super().__init__(message)
        self.received = received


class _CappedRetry(Retry):
    """urllib3 ``Retry`` whose ``Retry-After`` waits never exceed ``backoff_max``."""

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.backoff_max)


def make_session(
    *,
    retries: int = 5,
    backoff_s: float = 0.5,
    backoff_max_s: float = 60.0,
    pool_size: int = 8,
    user_agent: str = "burnscape",
    session: requests.Session | None = None,
) -> requests.Session:
    """Return a requests session that retries connection errors, 5xx and 429.

    Parameters
    ----------
    retries
        Attempts after the first, per request, for connection errors, read errors
        before the response starts, and the statuses in :data:`RETRY_STATUSES`.
    backoff_s
        Backoff factor: waits are ``backoff_s * 2**n`` plus up to ``backoff_s``
        of random jitter, capped at ``backoff_max_s``. ``Retry-After`` wins when
        the server sends it.
    backoff_max_s
        Longest wait between two attempts.
    pool_size
        Connections kept per host (set it to at least the parallel downloads).
    user_agent
        The ``User-Agent`` header.
    session
        A session to equip (e.g. one that adds credentials); a new one if None.

    Returns
    -------
    requests.Session
        A session whose HTTP and HTTPS adapters carry the retry policy.
    """
    retry = _CappedRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff_s,
        backoff_max=backoff_max_s,
        backoff_jitter=backoff_s,
        status_forcelist=sorted(RETRY_STATUSES),
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=pool_size)
    session = session if session is not None else requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    return session


class Downloader:
    """Fetch files into place, verified, recording every step in a ledger.

    Parameters
    ----------
    ledger
        Where each file's state, attempts and errors are recorded.
    session
        The HTTP session; :func:`make_session` by default.
    max_workers
        Files downloaded at the same time by :meth:`fetch_all` (threads).
    max_attempts
        Attempts per file for bodies that break off (each resumes with Range).
    backoff_s
        Base wait between those attempts (doubles each time, with jitter).
    timeout_s
        (connect, read) timeouts in seconds; a stalled body fails after the read
        timeout and is resumed.
    fsync
        Flush each file to disk before the rename. Off by default: a killed
        process loses nothing that was written, and after a power loss a re-run
        finds a damaged file by its size or changed mtime (then re-hashes it)
        and fetches it again. Flushing costs about as much as the download on a
        fast link.
    on_event
        Called as ``on_event(kind, request, value)`` with kind ``bytes`` (value:
        bytes just received) or ``done`` (value: the :class:`DownloadResult`);
        used by progress bars. Called from worker threads.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        session: requests.Session | None = None,
        max_workers: int = 4,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: tuple[float, float] = (10.0, 60.0),
        fsync: bool = False,
        on_event: Callable[[str, FileRequest, object], None] | None = None,
    ) -> None:
        if max_workers < 1 or max_attempts < 1:
            raise ValueError("max_workers and max_attempts must be at least 1")
        self.ledger = ledger
        self.session = session or make_session(pool_size=max(8, max_workers))
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.fsync = fsync
        self.on_event = on_event
        self._cancelled = threading.Event()
        self._active: set[requests.Response] = set()
        self._active_lock = threading.Lock()

    def fetch_all(self, requests_: Iterable[FileRequest]) -> list[DownloadResult]:
        """Fetch many files, at most ``max_workers`` at a time; keep their order.

        A failure of one file never stops the others; inspect the results or
        pass them to :func:`raise_for_failures`.
        """
        todo = list(requests_)
        if self.max_workers == 1 or len(todo) <= 1:
            return [self.fetch(request) for request in todo]
        pool = concurrent.futures.ThreadPoolExecutor(
            self.max_workers, thread_name_prefix="burnscape-download"
        )
        try:
            return list(pool.map(self.fetch, todo))
        except BaseException:
            # Ctrl-C (KeyboardInterrupt) lands here in the calling thread: stop
            # the transfers in the other threads rather than wait out their
            # timeouts. Their partial files stay for a later resume.
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        """Stop every transfer in progress and start no new one (thread-safe).

        Blocked reads are woken by shutting their sockets down; a cancelled
        file keeps its partial download and its ``downloading`` ledger row, so
        ``burnscape status`` calls it interrupted and a re-run resumes it.
        """
        self._cancelled.set()
        with self._active_lock:
            active = list(self._active)
        for response in active:
            with contextlib.suppress(Exception):
                response.raw.shutdown()

    def fetch(self, request: FileRequest) -> DownloadResult:
        """Fetch one file unless it is already verified; never raise for HTTP.

        Returns
        -------
        DownloadResult
            What happened; ``error`` holds the reason of a failure.
        """
        if self._cancelled.is_set():
            return DownloadResult(
                request, "failed", error="cancelled", error_type=DownloadError
            )
        try:
            skipped = self._already_verified(request)
            if skipped is not None:
                self._emit("done", request, skipped)
                return skipped
            request.path.parent.mkdir(parents=True, exist_ok=True)
            result = self._download(request)
        except _Cancelled:
            return DownloadResult(
                request, "failed", error="cancelled", error_type=DownloadError
            )
        except (_Failure, OSError) as err:
            failure = (
                err
                if isinstance(err, _Failure)
                else _Failure(
                    f"{request.path}: {err.strerror or err}; check the destination "
                    "folder and file name",
                    DownloadError,
                )
            )
            if not failure.keep_part:
                with contextlib.suppress(OSError):
                    _unlink(_part_path(request.path))
            state: State = (
                "missing" if failure.error_type is AssetUnavailableError else "failed"
            )
            with contextlib.suppress(OSError):
                self.ledger.mark_failed(request.path, str(failure), state=state)
            # the caller reports failures (a summary, the CLI's FAILED lines)
            logger.info("Download of %s failed: %s", request.url, failure)
            result = DownloadResult(
                request, state, error=str(failure), error_type=failure.error_type
            )
        self._emit("done", request, result)
        return result

    # --- one file --------------------------------------------------------------

    def _already_verified(self, request: FileRequest) -> DownloadResult | None:
        """Return a ``skipped`` result when the file on disk is known good."""
        path = request.path
        if not path.is_file():
            return None
        stat = path.stat()
        record = self.ledger.find_file(path)
        if request.size is not None and stat.st_size != request.size:
            return None
        if (
            record is not None
            and record.state == "verified"
            and record.size == stat.st_size
            and record.mtime_ns == stat.st_mtime_ns
            and (request.sha256 is None or record.sha256 == request.sha256)
            and (request.md5 is None or record.md5 == request.md5)
        ):
            logger.debug("Skipping %s: verified and unchanged.", path)
            return DownloadResult(request, "skipped", stat.st_size, record.sha256)
        if request.sha256 is None and request.md5 is None:
            return None

        # Unknown or changed since verification: hash it again.
        digest = sha256_file(path)
        if request.sha256 is not None and digest != request.sha256:
            return None
        if request.md5 is not None and _md5_file(path) != request.md5:
            return None
        self._record_verified(
            request, stat.st_size, digest, stat.st_mtime_ns, md5=request.md5
        )
        logger.debug("Skipping %s: present and its checksum matches.", path)
        return DownloadResult(request, "skipped", stat.st_size, digest)

    def _download(self, request: FileRequest) -> DownloadResult:
        part = _part_path(request.path)
        if part.exists() and request.sha256 is None and request.md5 is None:
            # Left by an earlier run. Without a checksum, bytes of a file that
            # changed at the source since then could not be told apart: refetch.
            logger.info("Starting %s over: no checksum to check a resume.", part)
            _unlink(part)
        transfer = _Transfer()
        fetched = 0
        resumed = False
        restarted = False
        last_error = ""
        for attempt in range(1, self.max_attempts + 1):
            self.ledger.start_file(
                request.path,
                url=request.url,
                source=request.source,
                item_id=request.item_id,
                asset_key=request.asset_key,
                expected_size=request.size,
                expected_sha256=request.sha256,
            )
            try:
                got, resumed_now, hashes = self._attempt(request, part, transfer)
            except _Retryable as err:
                if self._cancelled.is_set():
                    raise _Cancelled from err
                last_error = str(err)
                fetched += err.received
                self.ledger.mark_failed(request.path, last_error)
                wait = self.backoff_s * 2 ** (attempt - 1)
                wait += random.uniform(0, self.backoff_s)
                logger.info(
                    "Download of %s broke off (%s); attempt %d of %d, retrying "
                    "in %.1f s.",
                    request.url,
                    err,
                    attempt,
                    self.max_attempts,
                    wait,
                )
                if attempt < self.max_attempts and self._cancelled.wait(wait):
                    raise _Cancelled from err
                continue
            fetched += got
            resumed = resumed or resumed_now
            try:
                return self._verify_and_place(request, part, fetched, hashes)
            except _Failure as failure:
                if resumed and not restarted and failure.error_type is ChecksumError:
                    # A resumed file may carry stale bytes: one clean restart.
                    logger.info("Resumed %s failed its check; restarting.", request.url)
                    resumed, restarted = False, True
                    continue
                raise
        raise _Failure(
            f"{request.url}: gave up after {self.max_attempts} attempts: {last_error}",
            DownloadError,
            keep_part=True,  # what arrived is kept for a later run to resume
        )

    def _attempt(
        self, request: FileRequest, part: Path, transfer: _Transfer
    ) -> tuple[int, bool, _Hashes]:
        """Run one GET into ``part``; return bytes received, resumed?, digests.

        The bytes are asked for as they are stored (``Accept-Encoding:
        identity``), so sizes and ranges mean the file's own bytes. A resume
        sends ``If-Range`` with the validator of the first answer: a file that
        changed at the source since then comes back whole.
        """
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Accept-Encoding": "identity", **request.headers}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if transfer.validator:
                headers["If-Range"] = transfer.validator
        try:
            response = self.session.get(
                request.url, headers=headers, stream=True, timeout=self.timeout_s
            )
        except requests.exceptions.RetryError as err:
            raise _Failure(f"{request.url}: {_reason(err)}", DownloadError) from err
        except requests.exceptions.RequestException as err:
            raise _Failure(
                f"{request.url}: connection failed after retries: {_reason(err)}",
                DownloadError,
            ) from err
        with self._active_lock:
            self._active.add(response)
        try:
            with response:
                offset = self._check_response(request, response, offset, part)
                if response.status_code == 200:
                    transfer.validator = _validator(response)
                received, hashes = self._stream(request, response, part, offset)
                return received, offset > 0, hashes
        finally:
            with self._active_lock:
                self._active.discard(response)

    def _check_response(
        self,
        request: FileRequest,
        response: requests.Response,
        offset: int,
        part: Path,
    ) -> int:
        """Raise for a bad status or body; return the offset the body starts at."""
        status = response.status_code
        if status in (404, 410):
            raise _Failure(
                f"{request.url}: not found at the source (HTTP {status})",
                AssetUnavailableError,
            )
        if status in (401, 403):
            raise _Failure(
                f"{request.url}: access refused (HTTP {status}); check the "
                "credentials for this source",
                AuthenticationError,
            )
        if status == 416 and offset:
            _unlink(part)
            raise _Retryable("server refused the resume range; starting over")
        if status >= 400:
            wait = response.headers.get("Retry-After")
            advice = (
                f" (the server asks to wait {wait} s: run again later)" if wait else ""
            )
            raise _Failure(
                f"{request.url}: HTTP {status} {response.reason} after retries{advice}",
                DownloadError,
            )
        content_type = response.headers.get("Content-Type", "").lower()
        if "text/html" in content_type and request.expect_format != "html":
            raise _Failure(
                f"{request.url}: the server answered with an HTML page (a login "
                "or error page?), not the file",
                AuthenticationError if _looks_like_login(response) else DownloadError,
            )
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "").strip().lower() not in (
            "",
            "identity",
        )
        if encoded and offset:
            # a compressed answer to a range: its offsets are not the file's
            _unlink(part)
            raise _Retryable("server compressed a resumed range; starting over")
        if status == 206:
            if not response.headers.get("Content-Range", "").startswith(
                f"bytes {offset}-"
            ):
                raise _Retryable("server sent a range other than the one requested")
        elif offset:
            logger.debug("%s ignored the Range request; starting over.", request.url)
            offset = 0
        if request.size and length is not None and status == 200 and not encoded:
            if int(length) < request.size // 2:
                raise _Failure(
                    f"{request.url}: the server sent {length} bytes for a file listed "
                    f"at {request.size}",
                    DownloadError,
                )
        return offset

    def _stream(
        self, request: FileRequest, response: requests.Response, part: Path, offset: int
    ) -> tuple[int, _Hashes]:
        """Write the body to ``part`` from ``offset``; return bytes received, digests.

        The digests are computed as the bytes arrive (after the kept prefix of a
        resumed file), so the file is not read again to verify it. The body is
        read with ``read1``: each call returns what has arrived (up to 1 MiB), so
        bytes received before a connection breaks are kept for the resume.
        """
        received = 0
        hashes = _Hashes(md5=request.md5 is not None)
        try:
            handle = open(part, "r+b" if offset else "wb")
        except OSError as err:
            raise _Failure(
                f"cannot write {part}: {err.strerror}", DownloadError
            ) from err
        with handle:
            if offset:
                hashes.update_from(handle, offset)
            handle.seek(offset)
            handle.truncate()
            while True:
                try:
                    chunk = response.raw.read1(_CHUNK, decode_content=True)
                except (urllib3.exceptions.HTTPError, OSError) as err:
                    if self._cancelled.is_set():
                        raise _Cancelled from err
                    raise _Retryable(
                        f"body broke off after {received} bytes: {_reason(err)}",
                        received,
                    ) from err
                if not chunk:
                    break
                if self._cancelled.is_set():
                    raise _Cancelled
                if offset == 0 and received == 0 and _is_html(chunk):
                    if request.expect_format != "html":
                        handle.close()
                        _unlink(part)
                        raise _Failure(
                            f"{request.url}: the body is an HTML page, not the file",
                            DownloadError,
                        )
                try:
                    handle.write(chunk)
                except OSError as err:
                    raise _Failure(
                        f"cannot write {part}: {err.strerror}", DownloadError
                    ) from err
                hashes.update(chunk)
                received += len(chunk)
                self._emit("bytes", request, len(chunk))
            if self.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        return received, hashes

    def _verify_and_place(
        self, request: FileRequest, part: Path, fetched: int, hashes: _Hashes
    ) -> DownloadResult:
        """Check size, checksum or format of ``part``, then rename it into place."""
        size = part.stat().st_size
        try:
            if request.size is not None and size != request.size:
                raise _Failure(
                    f"{request.url}: size {size} bytes, expected {request.size}",
                    ChecksumError,
                )
            digest = hashes.sha256.hexdigest()
            if request.sha256 is not None and digest != request.sha256:
                raise _Failure(
                    f"{request.url}: sha256 {digest} does not match the expected "
                    f"{request.sha256}",
                    ChecksumError,
                )
            if request.md5 is not None and hashes.md5 is not None:
                md5 = hashes.md5.hexdigest()
                if md5 != request.md5:
                    raise _Failure(
                        f"{request.url}: md5 {md5} does not match the expected "
                        f"{request.md5}",
                        ChecksumError,
                    )
            if request.sha256 is None and request.md5 is None:
                _check_format(request, part)
        except _Failure:
            _unlink(part)
            raise
        try:
            os.replace(part, request.path)
        except OSError as err:
            raise _Failure(
                f"cannot put the verified file at {request.path}: "
                f"{err.strerror or err}",
                DownloadError,
            ) from err
        mtime_ns = request.path.stat().st_mtime_ns
        self._record_verified(request, size, digest, mtime_ns, md5=request.md5)
        logger.debug("Verified %s (%d bytes).", request.path, size)
        return DownloadResult(request, "verified", size, digest, bytes_fetched=fetched)

    def _record_verified(
        self,
        request: FileRequest,
        size: int,
        digest: str,
        mtime_ns: int,
        md5: str | None = None,
    ) -> None:
        self.ledger.mark_verified(
            request.path,
            url=request.url,
            size=size,
            sha256=digest,
            mtime_ns=mtime_ns,
            source=request.source,
            item_id=request.item_id,
            asset_key=request.asset_key,
            expected_size=request.size,
            expected_sha256=request.sha256,
            md5=md5,
        )

    def _emit(self, kind: str, request: FileRequest, value: object) -> None:
        if self.on_event is not None:
            self.on_event(kind, request, value)


def raise_for_failures(results: Sequence[DownloadResult]) -> None:
    """Raise one error naming every file that is not verified; do nothing if none.

    The class is :class:`ChecksumError` if any file failed its check, else
    :class:`AssetUnavailableError` if any is absent at the source, else
    :class:`AuthenticationError` or :class:`DownloadError`. The message lists
    every failure (item id, asset key, url, reason) on one line.

    Raises
    ------
    AcquireError
        One of the subclasses above, when any result is not ok.
    """
    failed = [result for result in results if not result.ok]
    if not failed:
        return
    priority: tuple[type[AcquireError], ...] = (
        ChecksumError,
        AssetUnavailableError,
        AuthenticationError,
    )
    kinds = {result.error_type for result in failed}
    error_type = next((kind for kind in priority if kind in kinds), DownloadError)
    parts = []
    for result in failed:
        request = result.request
        name = "/".join(part for part in (request.item_id, request.asset_key) if part)
        label = f"{name} ({request.url})" if name else request.url
        parts.append(f"{label}: {result.error}")
    verified = len(results) - len(failed)
    raise error_type(
        f"{len(failed)} of {len(results)} files not acquired ({verified} verified and "
        f"kept): " + "; ".join(parts)
    )


def with_headers(request: FileRequest, headers: dict[str, str]) -> FileRequest:
    """Return a copy of ``request`` with extra HTTP headers."""
    return replace(request, headers={**request.headers, **headers})


class _Hashes:
    """SHA-256 (and optionally MD5) of a file, fed as its bytes arrive."""

    def __init__(self, md5: bool) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None

    def update(self, chunk: bytes) -> None:
        self.sha256.update(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)

    def update_from(self, handle: IO[Any], length: int) -> None:
        """Feed the first ``length`` bytes of an open file."""
        handle.seek(0)
        remaining = length
        while remaining > 0:
            block = handle.read(min(_CHUNK * 16, remaining))
            if not block:
                break
            self.update(block)
            remaining -= len(block)


def _check_format(request: FileRequest, part: Path) -> None:
    """Check that a file without checksum opens as its expected format."""
    fmt = request.expect_format
    if fmt is None:
        return
    with open(part, "rb") as handle:
        head = handle.read(1024)
    signatures = {
        "tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
        "hdf4": (b"\x0e\x03\x13\x01",),
        "hdf5": (b"\x89HDF\r\n\x1a\n",),
        "netcdf": (b"CDF\x01", b"CDF\x02", b"\x89HDF\r\n\x1a\n"),
    }
    if fmt == "text":
        ok = not _is_html(head) and b"\x00" not in head
    elif fmt in signatures:
        ok = head.startswith(signatures[fmt])
    else:
        raise _Failure(f"unknown expected format {fmt!r}", DownloadError)
    if not ok:
        problem: str | None = "wrong signature"
    else:
        problem = None if fmt == "text" else _open_problem(fmt, part)
    if problem is not None:
        raise _Failure(
            f"{request.url}: the content does not open as {fmt} ({problem}; no "
            "checksum was listed, so the format is what is checked)",
            ChecksumError,
        )


def _open_problem(fmt: str, path: Path) -> str | None:
    """Open ``path`` with its format's library; return what fails, or None.

    A truncated file usually still starts with the right signature: TIFFs are
    opened and their last block of every band read (GDAL), HDF5 and netCDF
    files opened (the library checks the file's stored end), HDF4 opened.
    """
    try:
        if fmt == "tiff":
            import rasterio
            from rasterio.windows import Window

            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
                with rasterio.open(path) as dataset:
                    rows, cols = dataset.block_shapes[0]
                    row = (dataset.height - 1) // rows * rows
                    col = (dataset.width - 1) // cols * cols
                    window = Window(
                        col,
                        row,
                        min(cols, dataset.width - col),
                        min(rows, dataset.height - row),
                    )
                    dataset.read(window=window)
        elif fmt in ("hdf5", "netcdf"):
            import h5py

            if fmt == "hdf5" or h5py.is_hdf5(path):
                with h5py.File(path, "r"):
                    pass
            else:
                import netCDF4

                netCDF4.Dataset(path).close()
        elif fmt == "hdf4":
            from pyhdf.SD import SD, SDC

            SD(str(path), SDC.READ).end()
    except Exception as err:  # any library error means: does not open
        first = (str(err).splitlines() or [""])[0][:200]
        return f"{type(err).__name__}: {first}"
    return None


def _is_html(chunk: bytes) -> bool:
    head = chunk[:512].lstrip().lower()
    return head.startswith(_HTML_MARKERS)


def _looks_like_login(response: requests.Response) -> bool:
    final = urlsplit(response.url)
    return any(word in final.path.lower() for word in ("login", "oauth", "signin"))


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _reason(err: BaseException) -> str:
    """Return the innermost readable cause of a requests/urllib3 error."""
    if isinstance(err, urllib3.exceptions.ProtocolError) and err.args:
        text = str(err.args[0])  # not the (message, cause) tuple
    else:
        text = str(err)
    inner = err.__context__ or err.__cause__
    while inner is not None and len(text) > 200:
        text = str(inner)
        inner = inner.__context__ or inner.__cause__
    return text[:300]


def _validator(response: requests.Response) -> str | None:
    """Return what ``If-Range`` may carry: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
