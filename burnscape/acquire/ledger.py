"""Acquire stage: the SQLite download ledger (requests made, files fetched).

The ledger lives in the outputs folder (``ledger.sqlite``). It has two tables:

``requests``
    one row per catalogue request (search page, order): a key derived from the
    method, URL and body, the parameters, the response's SHA-256 digest, the
    response body itself, when it was recorded and the end of the time window
    it searched, so that a re-run reuses the recorded answer instead of asking
    the server again while that is honest (see :mod:`burnscape.acquire.reuse`).
``files``
    one row per destination file: url, path, expected and actual size and
    SHA-256, state (``pending``, ``downloading``, ``verified``, ``failed``,
    ``missing``), attempts, last error, the verified file's mtime and times.

Every state change is its own transaction, committed before the call returns,
so a ``kill -9`` at any moment leaves the ledger consistent. The database runs
in WAL mode; one connection is shared by the threads of a process behind a
lock, and other processes (Dask workers) open their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from burnscape.errors import AcquireError

__all__ = ["FILE_STATES", "FileRecord", "Ledger", "RequestRecord", "request_key"]

logger = logging.getLogger(__name__)

FILE_STATES = ("pending", "downloading", "verified", "failed", "missing")
"""The states a file row can be in."""

_BUSY_TIMEOUT_S = 30.0
"""How long a ledger call waits for another process's lock before failing."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    params TEXT NOT NULL,
    status INTEGER NOT NULL,
    digest TEXT NOT NULL,
    response TEXT NOT NULL,
    created TEXT NOT NULL,
    window_end TEXT
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    item_id TEXT NOT NULL DEFAULT '',
    asset_key TEXT NOT NULL DEFAULT '',
    expected_size INTEGER,
    expected_sha256 TEXT,
    size INTEGER,
    sha256 TEXT,
    mtime_ns INTEGER,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    md5 TEXT
);
"""


@dataclass(frozen=True)
class RequestRecord:
    """A catalogue request the ledger knows, with its recorded response.

    ``created`` is when the answer was recorded and ``window_end`` the end of
    the time window it searched (ISO 8601, UTC; None when it has none).
    """

    key: str
    source: str
    method: str
    url: str
    params: dict[str, Any]
    status: int
    digest: str
    response: str
    created: str
    window_end: str | None = None


@dataclass(frozen=True)
class FileRecord:
    """One destination file and what the ledger knows about it."""

    path: str
    url: str
    source: str
    item_id: str
    asset_key: str
    expected_size: int | None
    expected_sha256: str | None
    size: int | None
    sha256: str | None
    mtime_ns: int | None
    state: str
    attempts: int
    last_error: str | None
    created: str
    updated: str
    md5: str | None = None


def request_key(method: str, url: str, params: dict[str, Any] | None) -> str:
    """Return the stable key of a request: SHA-256 of method, URL and sorted JSON."""
    canonical = json.dumps(
        [method.upper(), url, params or {}], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Ledger:
    """The download ledger: an SQLite file recording requests and files.

    Parameters
    ----------
    path
        The SQLite file, e.g. ``outputs/ledger.sqlite``; created with its parent
        folder if absent.

    Examples
    --------
    >>> with Ledger(Path("outputs/ledger.sqlite")) as ledger:  # doctest: +SKIP
    ...     [row.state for row in ledger.files()]
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if read_only:
            self._open_read_only()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_S,
                check_same_thread=False,
                isolation_level=None,
            )
            self._set_up()
        except sqlite3.OperationalError as err:
            if not _is_busy(err):
                raise AcquireError(
                    f"cannot open the download ledger {self.path}: {err}; "
                    "delete it to start a fresh one"
                ) from err
            raise AcquireError(
                f"the download ledger {self.path} stayed locked by another process "
                f"for {_BUSY_TIMEOUT_S:.0f} s: wait for the other download or run to "
                "end, or stop it"
            ) from err
        except sqlite3.DatabaseError as err:
            raise AcquireError(
                f"cannot open the download ledger {self.path}: {err}; "
                "delete it to start a fresh one"
            ) from err
        self._conn.row_factory = sqlite3.Row

    def _open_read_only(self) -> None:
        """Open an existing ledger for reading; never create or change a file.

        Raises
        ------
        AcquireError
            The file is missing, not SQLite, or a database without the ledger's
            tables (e.g. a GeoPackage).
        """
        try:
            self._conn = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=ro",
                uri=True,
                timeout=_BUSY_TIMEOUT_S,
                check_same_thread=False,
                isolation_level=None,
            )
            tables = {
                row[0]
                for row in self._conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        except sqlite3.DatabaseError as err:
            raise AcquireError(
                f"{self.path} is not a burnscape download ledger ({err})"
            ) from err
        if not {"files", "requests"} <= tables:
            self._conn.close()
            raise AcquireError(
                f"{self.path} is not a burnscape download ledger (an SQLite file "
                "without its files and requests tables)"
            )
        self._conn.row_factory = sqlite3.Row

    def _set_up(self) -> None:
        """Switch to WAL, create the tables, migrate; retry while another opens it.

        Several processes (Dask workers) may open a new ledger at once. Changing
        the journal mode and creating the schema take locks for which SQLite
        does not always wait (it answers "locked" at once to avoid a deadlock),
        so those steps are retried here until the busy timeout.
        """
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        wait = 0.005
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
                self._migrate()
                return
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or time.monotonic() + wait > deadline:
                    raise
                if self._conn.in_transaction:
                    self._conn.rollback()
                time.sleep(wait * random.uniform(1.0, 2.0))
                wait = min(wait * 2, 0.5)

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- requests --------------------------------------------------------------

    def find_request(self, key: str) -> RequestRecord | None:
        """Return the recorded request with this key, or None."""
        row = self._query_one("SELECT * FROM requests WHERE key = ?", (key,))
        if row is None:
            return None
        values = dict(row)
        values["params"] = json.loads(values["params"])
        return RequestRecord(**values)

    def record_request(
        self,
        *,
        source: str,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        status: int,
        response: str,
        key: str | None = None,
        window_end: dt.datetime | None = None,
    ) -> RequestRecord:
        """Record a successful request and its response body; return the record.

        An earlier answer with the same key is replaced. ``key`` overrides the
        default key (method, URL and parameters), e.g. to key a request by its
        path below an API root that may move. ``window_end`` is the end of the
        time window the request searched (aware datetime), if any.
        """
        key = key or request_key(method, url, params)
        record = RequestRecord(
            key=key,
            source=source,
            method=method.upper(),
            url=url,
            params=params or {},
            status=status,
            digest=hashlib.sha256(response.encode()).hexdigest(),
            response=response,
            created=_now(),
            window_end=(
                None
                if window_end is None
                else window_end.astimezone(dt.UTC).isoformat(timespec="seconds")
            ),
        )
        self._execute(
            "INSERT OR REPLACE INTO requests (key, source, method, url, params, "
            "status, digest, response, created, window_end) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.key,
                record.source,
                record.method,
                record.url,
                json.dumps(record.params, sort_keys=True),
                record.status,
                record.digest,
                record.response,
                record.created,
                record.window_end,
            ),
        )
        return record

    def requests(self) -> list[RequestRecord]:
        """Return every recorded request, oldest first."""
        rows = self._query_all("SELECT * FROM requests ORDER BY created, key")
        records = []
        for row in rows:
            values = dict(row)
            values["params"] = json.loads(values["params"])
            records.append(RequestRecord(**values))
        return records

    # --- files -----------------------------------------------------------------

    def find_file(self, path: Path | str) -> FileRecord | None:
        """Return the file row for a destination path, or None."""
        row = self._query_one("SELECT * FROM files WHERE path = ?", (_path_key(path),))
        return None if row is None else FileRecord(**dict(row))

    def start_file(
        self,
        path: Path | str,
        *,
        url: str,
        source: str = "",
        item_id: str = "",
        asset_key: str = "",
        expected_size: int | None = None,
        expected_sha256: str | None = None,
    ) -> int:
        """Mark a file as downloading, count the attempt, return the attempt number."""
        now = _now()
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO files (path, url, source, item_id, asset_key, "
                "expected_size, expected_sha256, state, attempts, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'downloading', 1, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET url = excluded.url, "
                "source = excluded.source, item_id = excluded.item_id, "
                "asset_key = excluded.asset_key, "
                "expected_size = excluded.expected_size, "
                "expected_sha256 = excluded.expected_sha256, state = 'downloading', "
                "attempts = files.attempts + 1, updated = excluded.updated",
                (
                    _path_key(path),
                    url,
                    source,
                    item_id,
                    asset_key,
                    expected_size,
                    expected_sha256,
                    now,
                    now,
                ),
            )
            row = self._conn.execute(
                "SELECT attempts FROM files WHERE path = ?", (_path_key(path),)
            ).fetchone()
        return int(row[0])

    def mark_verified(
        self,
        path: Path | str,
        *,
        url: str,
        size: int,
        sha256: str,
        mtime_ns: int,
        source: str = "",
        item_id: str = "",
        asset_key: str = "",
        expected_size: int | None = None,
        expected_sha256: str | None = None,
        md5: str | None = None,
    ) -> None:
        """Record a file as verified and in place, with its size, digests and mtime.

        ``md5`` is recorded where the source listed one (and it was checked).
        """
        now = _now()
        self._execute(
            "INSERT INTO files (path, url, source, item_id, asset_key, expected_size, "
            "expected_sha256, size, sha256, mtime_ns, state, attempts, last_error, "
            "created, updated, md5) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'verified', 0, NULL, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET url = excluded.url, "
            "size = excluded.size, sha256 = excluded.sha256, md5 = excluded.md5, "
            "mtime_ns = excluded.mtime_ns, state = 'verified', last_error = NULL, "
            "expected_size = excluded.expected_size, "
            "expected_sha256 = excluded.expected_sha256, updated = excluded.updated",
            (
                _path_key(path),
                url,
                source,
                item_id,
                asset_key,
                expected_size,
                expected_sha256,
                size,
                sha256,
                mtime_ns,
                now,
                now,
                md5,
            ),
        )

    def mark_failed(
        self, path: Path | str, error: str, *, state: str = "failed"
    ) -> None:
        """Record that a file failed (``failed``) or is absent at the source."""
        if state not in ("failed", "missing"):
            raise ValueError(f"state must be 'failed' or 'missing', not {state!r}")
        self._execute(
            "UPDATE files SET state = ?, last_error = ?, updated = ? WHERE path = ?",
            (state, error, _now(), _path_key(path)),
        )

    def files(self, state: str | None = None) -> list[FileRecord]:
        """Return the file rows, optionally only those in one state, by path."""
        if state is None:
            rows = self._query_all("SELECT * FROM files ORDER BY path", ())
        else:
            rows = self._query_all(
                "SELECT * FROM files WHERE state = ? ORDER BY path", (state,)
            )
        return [FileRecord(**dict(row)) for row in rows]

    def summary(self) -> dict[str, int]:
        """Return the number of files in each state."""
        rows = self._query_all(
            "SELECT state, COUNT(*) AS n FROM files GROUP BY state", ()
        )
        return {row["state"]: int(row["n"]) for row in rows}

    # --- helpers ---------------------------------------------------------------

    def _migrate(self) -> None:
        """Add the columns that ledgers written by older versions lack."""
        for table, column in (("requests", "window_end"), ("files", "md5")):
            present = {
                row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")
            }
            if column in present:
                continue
            try:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            except sqlite3.OperationalError as err:
                if "duplicate column" not in str(err):  # else another process won
                    raise
            logger.info("Ledger %s: added the %s.%s column.", self.path, table, column)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock, self._conn:
            self._conn.execute(sql, params)

    def _query_one(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def _query_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def _path_key(path: Path | str) -> str:
    """Return the key of a destination path: absolute and normalised.

    ``run`` and ``download`` name the same file from different working folders
    (``outputs/x/...`` and ``/home/me/outputs/x/...``); one key keeps one row.
    """
    return os.path.abspath(path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
