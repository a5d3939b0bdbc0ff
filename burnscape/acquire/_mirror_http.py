"""Acquire stage: the HTTP side of the local STAC mirror (routes, queries, ranges).

Private to :mod:`burnscape.acquire.mirror`: the request handler, the parsing of
search parameters (bbox, datetime, collections, paging token) and of ``Range``
headers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import mimetypes
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    from burnscape.acquire.mirror import MirrorServer

logger = logging.getLogger(__name__)

CONFORMANCE = (
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
)
"""The conformance classes the mirror implements."""

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
GEOJSON = "application/geo+json"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# --- query parsing ----------------------------------------------------------------


def as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    return [str(part) for part in value]


def parse_bbox(value: Any) -> tuple[float, float, float, float] | None:
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    numbers = [float(part) for part in parts]
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or numbers[1] > numbers[3]:
        raise ValueError("bbox must be west,south,east,north")
    return (numbers[0], numbers[1], numbers[2], numbers[3])


def parse_datetime(value: Any) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    if value is None or value == "":
        return None
    text = str(value)
    if "/" not in text:
        instant = parse_instant(text)
        return instant, instant
    start_text, end_text = text.split("/", 1)
    start = None if start_text in ("", "..") else parse_instant(start_text)
    end = None if end_text in ("", "..") else parse_instant(end_text)
    if start is None and end is None:
        raise ValueError("datetime interval must have at least one closed end")
    if start and end and end < start:
        raise ValueError("datetime interval ends before it starts")
    return start, end


def parse_instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (
        value.replace(tzinfo=dt.UTC)
        if value.tzinfo is None
        else value.astimezone(dt.UTC)
    )


def bbox_intersects(item_bbox: list[float] | None, query: tuple[float, ...]) -> bool:
    if not item_bbox:
        return False
    west, south, east, north = query
    if west > east:  # crosses the antimeridian
        return bbox_intersects(item_bbox, (west, south, 180.0, north)) or (
            bbox_intersects(item_bbox, (-180.0, south, east, north))
        )
    return not (
        item_bbox[2] < west
        or item_bbox[0] > east
        or item_bbox[3] < south
        or item_bbox[1] > north
    )


def time_intersects(
    properties: dict[str, Any], interval: tuple[dt.datetime | None, dt.datetime | None]
) -> bool:
    start = parse_instant(properties.get("start_datetime") or properties["datetime"])
    end = parse_instant(properties.get("end_datetime") or properties["datetime"])
    query_start, query_end = interval
    return (query_end is None or start <= query_end) and (
        query_start is None or end >= query_start
    )


class MirrorHandler(BaseHTTPRequestHandler):
    """Routes of the mirror; ``mirror`` is bound on a subclass per server."""

    mirror: MirrorServer
    protocol_version = "HTTP/1.1"
    server_version = "burnscape-mirror"

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        self._route(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_POST(self) -> None:  # noqa: N802
        self.mirror.request_log.append(("POST", self.path))
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if parts.path.rstrip("/") != "/search":
            self._json({"code": "NotFound", "description": "no such route"}, 404)
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the search body must be a JSON object")
            self._search(body, method="POST")
        except (ValueError, TypeError) as err:
            self._json({"code": "BadRequest", "description": str(err)}, 400)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("mirror %s - %s", self.address_string(), format % args)

    def _route(self, head: bool) -> None:
        self.mirror.request_log.append(("HEAD" if head else "GET", self.path))
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        mirror = self.mirror
        segments = [segment for segment in path.split("/") if segment]
        try:
            if parts.path in mirror.files:
                self._file(mirror.files[parts.path], head)
            elif not segments:
                self._json(mirror.landing_page(), head=head)
            elif segments == ["conformance"]:
                self._json({"conformsTo": list(CONFORMANCE)}, head=head)
            elif segments == ["search"]:
                self._search(query, method="GET", head=head)
            elif segments == ["collections"]:
                self._json(
                    {
                        "collections": list(mirror.collections.values()),
                        "links": [
                            {
                                "rel": "self",
                                "type": "application/json",
                                "href": mirror.url + "collections",
                            },
                            {
                                "rel": "root",
                                "type": "application/json",
                                "href": mirror.url,
                            },
                        ],
                    },
                    head=head,
                )
            elif segments[0] == "collections" and segments[1] in mirror.collections:
                self._collection_route(segments, query, head)
            else:
                self._json(
                    {"code": "NotFound", "description": "no such route"}, 404, head
                )
        except (ValueError, TypeError) as err:
            self._json({"code": "BadRequest", "description": str(err)}, 400, head)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("Client of the mirror went away during %s.", self.path)

    def _collection_route(
        self, segments: list[str], query: dict[str, str], head: bool
    ) -> None:
        collection_id = segments[1]
        if len(segments) == 2:
            self._json(self.mirror.collections[collection_id], head=head)
        elif len(segments) == 3 and segments[2] == "items":
            self._search(
                {**query, "collections": collection_id}, "GET", head, items=True
            )
        elif len(segments) == 4 and segments[2] == "items":
            for item in self.mirror.items:
                if item["collection"] == collection_id and item["id"] == segments[3]:
                    self._json(item, head=head, content_type=GEOJSON)
                    return
            self._json({"code": "NotFound", "description": "no such item"}, 404, head)
        else:
            self._json({"code": "NotFound", "description": "no such route"}, 404, head)

    def _search(
        self,
        params: dict[str, Any],
        method: str,
        head: bool = False,
        items: bool = False,
    ) -> None:
        mirror = self.mirror
        page, matched, offset = mirror.search(params)
        limit = min(int(params.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
        base = (
            f"{mirror.url}collections/{quote(str(params['collections']))}/items"
            if items
            else mirror.url + "search"
        )
        links: list[dict[str, Any]] = [
            {"rel": "root", "type": "application/json", "href": mirror.url},
        ]
        if offset + len(page) < matched:
            token = str(offset + len(page))
            if method == "POST":
                body = {**params, "token": token}
                links.append(
                    {
                        "rel": "next",
                        "type": GEOJSON,
                        "method": "POST",
                        "href": base,
                        "body": body,
                        "merge": False,
                    }
                )
            else:
                query = {
                    k: v
                    for k, v in params.items()
                    if not (items and k == "collections")
                }
                query.update(token=token, limit=str(limit))
                encoded = "&".join(
                    f"{quote(str(k))}={quote(_query_value(v), safe=',:/.')}"
                    for k, v in query.items()
                )
                links.append(
                    {
                        "rel": "next",
                        "type": GEOJSON,
                        "method": "GET",
                        "href": f"{base}?{encoded}",
                    }
                )
        self._json(
            {
                "type": "FeatureCollection",
                "stac_version": "1.0.0",
                "features": page,
                "numberMatched": matched,
                "numberReturned": len(page),
                "context": {"limit": limit, "matched": matched, "returned": len(page)},
                "links": links,
            },
            head=head,
            content_type=GEOJSON,
        )

    def _file(self, path: Path, head: bool) -> None:
        if not path.is_file():
            self._json(
                {"code": "NotFound", "description": "file not in the mirror"}, 404, head
            )
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        header = self.headers.get("Range")
        if header:
            parsed = _parse_range(header, size)
            if parsed is None:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = parsed
            status = HTTPStatus.PARTIAL_CONTENT
        media = (
            "image/tiff"
            if path.suffix.lower() in (".tif", ".tiff")
            else (mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        )
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with open(path, "rb") as handle:
            handle.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                block = handle.read(min(1 << 20, remaining))
                if not block:
                    break
                self.wfile.write(block)
                remaining -= len(block)

    def _json(
        self,
        payload: Any,
        status: int = 200,
        head: bool = False,
        content_type: str = "application/json",
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Return the (first, last) byte of one ``bytes=`` range; None if unsatisfiable."""
    match = _RANGE.match(header.strip())
    if match is None or size == 0:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        length = int(last)
        return (max(0, size - length), size - 1) if length else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


def _query_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
