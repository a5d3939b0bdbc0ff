"""A fault-injecting HTTP server on 127.0.0.1 for the downloader's tests.

It serves in-memory files with Range support and, per path, a queue of faults
that the next requests meet (then a default behaviour): connection reset
mid-body, a body truncated under the full Content-Length, 500/503/429 with
``Retry-After``, a 200 HTML login page, a redirect (to another host), ignoring
``Range``, wrong bytes, a stall, 404. It also answers a small STAC API
(landing page, POST ``/search`` with paging through ``next`` links) over its
files, and logs every request with its headers and body.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[str, dict[str, str]], tuple[int, bytes, dict[str, str]]]
"""A dynamic route: (path with query, request headers) -> (status, body, headers).

A route key ending in "/" matches every path below it; any other matches exactly.
It is checked before the built-in files and STAC answers. POST bodies are in
``FaultServer.log``."""

LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Earthdata Login</title></head>"
    b"<body><form action='/login' method='post'><input name='username'>"
    b"<input name='password' type='password'></form></body></html>\n"
)


@dataclass
class Fault:
    """One misbehaviour: ``kind`` plus its parameters."""

    kind: str
    status: int = 500
    retry_after: str | None = None
    location: str = ""
    seconds: float = 0.0
    fraction: float = 0.5


@dataclass
class Entry:
    data: bytes
    faults: list[Fault] = field(default_factory=list)
    then: Fault | None = None
    ignore_range: bool = False
    content_type: str = "application/octet-stream"
    rate_bps: float | None = None
    gzip: bool = False  # compress every answer, whatever the client accepts
    etag: str | None = None  # sent, and compared with If-Range
    after_serving: Callable[[Entry], None] | None = None  # e.g. change the file


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float


class FaultServer:
    """Start with ``with FaultServer() as server:``; ``server.url`` is the root."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.entries: dict[str, Entry] = {}
        self.log: list[LoggedRequest] = []
        self.items: list[dict[str, Any]] = []
        self.routes: dict[str, Route] = {}
        self.page_size = 2
        self.page_delay_s = 0.0
        self._lock = threading.Lock()
        self.active_bodies = 0
        self.peak_bodies = 0
        """File bodies being sent now, and the most sent at once."""
        handler = type("_Bound", (_Handler,), {"server_state": self})
        self._server = ThreadingHTTPServer((host, 0), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(
        self,
        path: str,
        data: bytes,
        *faults: Fault,
        then: Fault | None = None,
        ignore_range: bool = False,
        content_type: str = "application/octet-stream",
        rate_bps: float | None = None,
        **options: Any,
    ) -> str:
        """Serve ``data`` at ``path``; return its URL.

        ``options``: the other :class:`Entry` fields (``gzip``, ``etag``,
        ``after_serving``).
        """
        self.entries[path] = Entry(
            data, list(faults), then, ignore_range, content_type, rate_bps, **options
        )
        return self.url + path.lstrip("/")

    def requests_for(self, path: str) -> list[LoggedRequest]:
        return [entry for entry in self.log if entry.path.split("?")[0] == path]

    def add_stac_items(
        self, count: int, size: int, collection: str = "synthetic"
    ) -> None:
        """Add ``count`` items with one asset each, listed by ``/search``."""
        for index in range(count):
            data = make_bytes(size, seed=index)
            path = f"/files/item-{index:03d}.bin"
            self.add(path, data)
            self.items.append(
                {
                    "type": "Feature",
                    "stac_version": "1.0.0",
                    "id": f"item-{index:03d}",
                    "collection": collection,
                    "geometry": {"type": "Point", "coordinates": [10.0, 45.0]},
                    "bbox": [10.0, 45.0, 10.0, 45.0],
                    "properties": {"datetime": "2020-08-01T10:00:00Z"},
                    "links": [],
                    "assets": {
                        "data": {
                            "href": self.url + path.lstrip("/"),
                            "roles": ["data"],
                            "file:size": size,
                            "file:checksum": "1220" + hashlib.sha256(data).hexdigest(),
                        }
                    },
                }
            )


def make_bytes(size: int, seed: int = 0) -> bytes:
    """Return ``size`` reproducible pseudo-random bytes."""
    block = hashlib.sha256(f"seed-{seed}".encode()).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(block + counter.to_bytes(8, "big")).digest() * 64
        counter += 1
    return bytes(out[:size])


class _Handler(BaseHTTPRequestHandler):
    server_state: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        state = self.server_state
        state.log.append(
            LoggedRequest(
                self.command, self.path, dict(self.headers), body, time.time()
            )
        )
        path = self.path.split("?")[0]
        for prefix, handler in state.routes.items():
            if path == prefix or (
                len(prefix) > 1 and prefix.endswith("/") and path.startswith(prefix)
            ):
                status, payload, headers = handler(self.path, dict(self.headers))
                self._plain(status, payload, headers)
                return
        if path == "/":
            self._json(
                {
                    "type": "Catalog",
                    "id": "faults",
                    "stac_version": "1.0.0",
                    "description": "fault server",
                    "conformsTo": ["https://api.stacspec.org/v1.0.0/item-search"],
                    "links": [
                        {
                            "rel": "search",
                            "href": state.url + "search",
                            "method": "POST",
                        }
                    ],
                }
            )
            return
        if path == "/search" and self.command == "POST":
            self._search(json.loads(body or b"{}"))
            return
        entry = state.entries.get(path)
        if entry is None:
            self._plain(404, b"not found")
            return
        with state._lock:
            fault = entry.faults.pop(0) if entry.faults else entry.then
        self._serve(entry, fault)

    def _search(self, body: dict[str, Any]) -> None:
        state = self.server_state
        time.sleep(state.page_delay_s)
        offset = int(body.get("token") or 0)
        page = state.items[offset : offset + state.page_size]
        links = []
        if offset + len(page) < len(state.items):
            links.append(
                {
                    "rel": "next",
                    "href": state.url + "search",
                    "method": "POST",
                    "body": {**body, "token": str(offset + len(page))},
                }
            )
        self._json({"type": "FeatureCollection", "features": page, "links": links})

    def _serve(self, entry: Entry, fault: Fault | None) -> None:
        data = entry.data
        kind = fault.kind if fault else "ok"
        if kind == "status":
            assert fault is not None
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._plain(fault.status, b"server trouble", headers)
            return
        if kind == "html":
            self._plain(200, LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})
            return
        if kind == "html-no-type":
            self._plain(200, LOGIN_PAGE, {"Content-Type": "application/octet-stream"})
            return
        if kind == "redirect":
            assert fault is not None
            self._plain(302, b"", {"Location": fault.location})
            return
        if kind == "wrong":
            data = bytes(b ^ 0x5A for b in data)

        start, status = 0, 200
        header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        changed = if_range is not None and if_range != entry.etag
        if header and not entry.ignore_range and kind != "ignore-range" and not changed:
            start = int(header.split("=")[1].split("-")[0])
            status = 206
        body = data[start:]
        if entry.gzip:
            body = gzip.compress(body)
        self.send_response(status)
        self.send_header("Content-Type", entry.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "none" if entry.ignore_range else "bytes")
        if entry.gzip:
            self.send_header("Content-Encoding", "gzip")
        if entry.etag is not None:
            self.send_header("ETag", entry.etag)
        if status == 206:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
            )
        self.end_headers()
        try:
            self._send(entry, body, kind, fault)
        finally:
            if entry.after_serving is not None:
                entry.after_serving(entry)

    def _send(self, entry: Entry, body: bytes, kind: str, fault: Fault | None) -> None:
        cut = int(len(body) * (fault.fraction if fault else 1.0))
        if kind == "reset":
            self._write(entry, body[:cut])
            self.wfile.flush()
            time.sleep(0.3)  # let the client read what was sent before the RST
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
            self.close_connection = True
        elif kind == "truncate":
            self._write(entry, body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif kind == "stall":
            assert fault is not None
            self._write(entry, body[:cut])
            self.wfile.flush()
            time.sleep(fault.seconds)
            self.close_connection = True
        else:
            self._write(entry, body)

    def _write(self, entry: Entry, body: bytes) -> None:
        state = self.server_state
        with state._lock:
            state.active_bodies += 1
            state.peak_bodies = max(state.peak_bodies, state.active_bodies)
        try:
            self._send_body(entry, body)
        finally:
            with state._lock:
                state.active_bodies -= 1

    def _send_body(self, entry: Entry, body: bytes) -> None:
        try:
            if entry.rate_bps is None:
                self.wfile.write(body)
                return
            step = max(1, int(entry.rate_bps / 20))
            for offset in range(0, len(body), step):
                if offset:
                    time.sleep(0.05)
                self.wfile.write(body[offset : offset + step])
                self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _plain(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        merged = {"Content-Type": "text/plain", **(headers or {})}
        for key, value in merged.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client went away (killed, timed out)
            self.close_connection = True

    def _json(self, payload: Any) -> None:
        self._plain(
            200, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
