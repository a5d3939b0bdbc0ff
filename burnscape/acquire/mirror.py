"""Acquire stage: a local STAC API serving a mirror folder of a workflow's files.

:class:`MirrorServer` serves ``<mirror_dir>/<source.mirror_folder>/<asset path>``
on 127.0.0.1 behind the routes of a real STAC API (landing page, conformance,
collections, items, ``/search`` by GET and POST with paging), so that the same
client and downloader run offline as against a public catalogue. Items come
from the workflow's static ``items``; their footprint is read from the local
rasters. File downloads support HTTP ``Range``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import mimetypes
import re
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from burnscape.acquire.stac import STAC_COMMON_NAMES
from burnscape.config import ItemConfig, SourceConfig
from burnscape.errors import DataNotFoundError

__all__ = ["CONFORMANCE", "MirrorServer", "build_items"]

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

_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
]
_DEFAULT_LIMIT = 10
_MAX_LIMIT = 1000
_GEOJSON = "application/geo+json"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class MirrorServer:
    """Serve a mirror folder as a STAC API on 127.0.0.1 (a context manager).

    Parameters
    ----------
    mirror_dir
        The folder holding each source's ``mirror_folder`` (e.g. the shared
        data folder).
    sources
        Workflow sources; those with static ``items`` and a ``mirror_folder``
        become collections (id: ``collection``, else ``name``).
    host
        Interface to listen on.
    port
        Port; 0 picks a free one.

    Attributes
    ----------
    url
        The API root, e.g. ``"http://127.0.0.1:PORT/"`` (set by :meth:`start`).
    request_log
        (method, path and query) of every request served, in order.

    Examples
    --------
    >>> with MirrorServer(data_dir, workflow.sources) as mirror:  # doctest: +SKIP
    ...     items = acquire_source(src, region, time, dest, ledger, api_url=mirror.url)
    """

    def __init__(
        self,
        mirror_dir: Path,
        sources: Sequence[SourceConfig],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.mirror_dir = Path(mirror_dir)
        if not self.mirror_dir.is_dir():
            raise DataNotFoundError(
                f"mirror folder {self.mirror_dir} does not exist; pass --mirror DIR "
                "or set BURNSCAPE_MIRROR"
            )
        self.sources = [s for s in sources if s.items and s.mirror_folder]
        self.host = host
        self.port = port
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.collections: dict[str, dict[str, Any]] = {}
        self.items: list[dict[str, Any]] = []
        self.files: dict[str, Path] = {}
        self.request_log: list[tuple[str, str]] = []

    def start(self) -> MirrorServer:
        """Build the catalogue, bind the port and serve in a daemon thread."""
        if self._server is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"mirror": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{self.host}:{self.port}/"
        self._build()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="burnscape-mirror", daemon=True
        )
        self._thread.start()
        logger.info(
            "Mirror of %s serving %d items at %s.",
            self.mirror_dir,
            len(self.items),
            self.url,
        )
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- catalogue ------------------------------------------------------------

    def _build(self) -> None:
        self.collections.clear()
        self.items.clear()
        self.files.clear()
        for source in self.sources:
            collection_id = source.collection or source.name
            folder = self.mirror_dir / str(source.mirror_folder)
            if not folder.is_dir():
                logger.warning(
                    "Mirror lacks the folder %s of source %s.", folder, source.name
                )
            items = build_items(source, folder, self.url, self.files)
            self.items.extend(items)
            self.collections[collection_id] = _collection(source, items, self.url)

    def search(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int, int]:
        """Filter the items by search parameters; return the page, matched, offset.

        Raises
        ------
        ValueError
            A parameter is malformed (answered as HTTP 400).
        """
        bbox = _parse_bbox(params.get("bbox"))
        interval = _parse_datetime(params.get("datetime"))
        collections = _as_list(params.get("collections"))
        ids = _as_list(params.get("ids"))
        limit = min(int(params.get("limit") or _DEFAULT_LIMIT), _MAX_LIMIT)
        offset = int(params.get("token") or 0)
        if limit < 1 or offset < 0:
            raise ValueError("limit must be positive and token non-negative")
        matched = [
            item
            for item in self.items
            if (not collections or item["collection"] in collections)
            and (not ids or item["id"] in ids)
            and (bbox is None or _bbox_intersects(item.get("bbox"), bbox))
            and (interval is None or _time_intersects(item["properties"], interval))
        ]
        return matched[offset : offset + limit], len(matched), offset


def build_items(
    source: SourceConfig, folder: Path, base_url: str, files: dict[str, Path]
) -> list[dict[str, Any]]:
    """Build STAC 1.0 items for a source's static items from its mirror folder.

    Footprints are read from the first local raster of each item and reprojected
    to WGS 84. Asset hrefs point at ``<base_url>files/<source>/<path>``; the
    route is registered in ``files`` (route path to local file) whether or not
    the file exists, so a missing file answers 404.
    """
    collection_id = source.collection or source.name
    items = []
    for item in source.items:
        assets: dict[str, Any] = {}
        footprint: dict[str, Any] | None = None
        for key, asset in item.assets.items():
            local = folder / asset.path
            route = f"files/{quote(source.name)}/{quote(asset.path)}"
            files["/" + route] = local
            meta = _raster_meta(local) if local.is_file() else None
            if footprint is None and meta is not None:
                footprint = meta
            assets[key] = _asset(source, key, asset, local, base_url + route, meta)
        items.append(_item(source, item, collection_id, assets, footprint, base_url))
    return items


# --- STAC documents -------------------------------------------------------------


def _item(
    source: SourceConfig,
    item: ItemConfig,
    collection_id: str,
    assets: dict[str, Any],
    footprint: dict[str, Any] | None,
    base_url: str,
) -> dict[str, Any]:
    start, end = item.time_bounds
    properties: dict[str, Any] = {"datetime": None}
    if item.datetime is not None:
        properties["datetime"] = _iso(start)
    else:
        properties["start_datetime"] = _iso(start)
        properties["end_datetime"] = _iso(end)
    if footprint is not None:
        properties["proj:code"] = footprint["crs"]
        properties["proj:shape"] = footprint["shape"]
        properties["proj:transform"] = footprint["transform"]
    properties.update(source.options.get("properties", {}))
    self_href = f"{base_url}collections/{quote(collection_id)}/items/{quote(item.id)}"
    document: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": _EXTENSIONS,
        "id": item.id,
        "collection": collection_id,
        "geometry": footprint["geometry"] if footprint else None,
        "properties": properties,
        "links": [
            {"rel": "self", "type": _GEOJSON, "href": self_href},
            {
                "rel": "parent",
                "type": "application/json",
                "href": f"{base_url}collections/{quote(collection_id)}",
            },
            {
                "rel": "collection",
                "type": "application/json",
                "href": f"{base_url}collections/{quote(collection_id)}",
            },
            {"rel": "root", "type": "application/json", "href": base_url},
        ],
        "assets": assets,
    }
    if footprint is not None:
        document["bbox"] = footprint["bbox"]
    return document


def _asset(
    source: SourceConfig,
    key: str,
    asset: Any,
    local: Path,
    href: str,
    meta: dict[str, Any] | None,
) -> dict[str, Any]:
    band = {v: k for k, v in source.bands.items()}.get(key)
    common = STAC_COMMON_NAMES[band][0] if band and STAC_COMMON_NAMES[band] else None
    media = (
        "image/tiff; application=geotiff"
        if local.suffix.lower() in (".tif", ".tiff")
        else (mimetypes.guess_type(local.name)[0] or "application/octet-stream")
    )
    document: dict[str, Any] = {
        "href": href,
        "type": media,
        "title": key,
        "roles": ["data"],
    }
    eo_band: dict[str, Any] = {"name": key}
    if common:
        eo_band["common_name"] = common
    document["eo:bands"] = [eo_band]
    raster: dict[str, Any] = {"scale": source.scale, "offset": source.offset}
    if source.nodata is not None:
        raster["nodata"] = source.nodata
    if meta is not None:
        raster["data_type"] = meta["dtype"]
    document["raster:bands"] = [raster]
    if asset.sha256:
        document["file:checksum"] = "1220" + asset.sha256
    size = local.stat().st_size if local.is_file() else asset.size
    if size is not None:
        document["file:size"] = size
    return document


def _collection(
    source: SourceConfig, items: list[dict[str, Any]], base_url: str
) -> dict[str, Any]:
    collection_id = source.collection or source.name
    boxes = [item["bbox"] for item in items if "bbox" in item]
    bbox = (
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ]
        if boxes
        else [-180.0, -90.0, 180.0, 90.0]
    )
    starts = [
        item["properties"].get("start_datetime") or item["properties"]["datetime"]
        for item in items
    ]
    ends = [
        item["properties"].get("end_datetime") or item["properties"]["datetime"]
        for item in items
    ]
    href = f"{base_url}collections/{quote(collection_id)}"
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": collection_id,
        "title": source.name,
        "description": f"Workflow source {source.name!r} served from a local mirror.",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [bbox]},
            "temporal": {
                "interval": [[min(starts, default=None), max(ends, default=None)]]
            },
        },
        "links": [
            {"rel": "self", "type": "application/json", "href": href},
            {"rel": "items", "type": _GEOJSON, "href": href + "/items"},
            {"rel": "parent", "type": "application/json", "href": base_url},
            {"rel": "root", "type": "application/json", "href": base_url},
        ],
    }


def _landing(mirror: MirrorServer) -> dict[str, Any]:
    base = mirror.url
    links = [
        {"rel": "self", "type": "application/json", "href": base},
        {"rel": "root", "type": "application/json", "href": base},
        {"rel": "data", "type": "application/json", "href": base + "collections"},
        {
            "rel": "conformance",
            "type": "application/json",
            "href": base + "conformance",
        },
        {"rel": "search", "type": _GEOJSON, "href": base + "search", "method": "GET"},
        {"rel": "search", "type": _GEOJSON, "href": base + "search", "method": "POST"},
    ]
    links += [
        {
            "rel": "child",
            "type": "application/json",
            "title": cid,
            "href": f"{base}collections/{quote(cid)}",
        }
        for cid in mirror.collections
    ]
    return {
        "type": "Catalog",
        "id": "burnscape-mirror",
        "title": "burnscape local mirror",
        "description": f"Files of {mirror.mirror_dir} served as a STAC API.",
        "stac_version": "1.0.0",
        "conformsTo": list(CONFORMANCE),
        "links": links,
    }


def _raster_meta(path: Path) -> dict[str, Any] | None:
    """Read a raster's CRS, grid and WGS 84 footprint; None if unreadable."""
    import rasterio
    import shapely
    from pyproj import Transformer
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as dataset:
            bounds, crs = dataset.bounds, dataset.crs
            shape, transform, dtype = (
                dataset.shape,
                dataset.transform,
                dataset.dtypes[0],
            )
    except RasterioError as err:
        logger.warning("Cannot read the footprint of %s: %s", path, err)
        return None
    if crs is None:
        return None
    edge = max(bounds.right - bounds.left, bounds.top - bounds.bottom)
    box = shapely.segmentize(shapely.box(*bounds), max_segment_length=edge / 4)
    transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    footprint = shapely.transform(box, lambda xy: _transform_xy(transformer, xy))
    epsg = crs.to_epsg()
    return {
        "geometry": json.loads(shapely.to_geojson(footprint)),
        "bbox": [round(value, 7) for value in footprint.bounds],
        "crs": f"EPSG:{epsg}" if epsg else crs.to_wkt(),
        "shape": list(shape),
        "transform": list(transform)[:6],
        "dtype": dtype,
    }


def _transform_xy(transformer: Any, xy: Any) -> Any:
    import numpy as np

    x, y = transformer.transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


# --- query parsing ----------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part for part in value.split(",") if part]
    return [str(part) for part in value]


def _parse_bbox(value: Any) -> tuple[float, float, float, float] | None:
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    numbers = [float(part) for part in parts]
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or numbers[1] > numbers[3]:
        raise ValueError("bbox must be west,south,east,north")
    return (numbers[0], numbers[1], numbers[2], numbers[3])


def _parse_datetime(value: Any) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    if value is None or value == "":
        return None
    text = str(value)
    if "/" not in text:
        instant = _parse_instant(text)
        return instant, instant
    start_text, end_text = text.split("/", 1)
    start = None if start_text in ("", "..") else _parse_instant(start_text)
    end = None if end_text in ("", "..") else _parse_instant(end_text)
    if start is None and end is None:
        raise ValueError("datetime interval must have at least one closed end")
    if start and end and end < start:
        raise ValueError("datetime interval ends before it starts")
    return start, end


def _parse_instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (
        value.replace(tzinfo=dt.UTC)
        if value.tzinfo is None
        else value.astimezone(dt.UTC)
    )


def _bbox_intersects(item_bbox: list[float] | None, query: tuple[float, ...]) -> bool:
    if not item_bbox:
        return False
    west, south, east, north = query
    if west > east:  # crosses the antimeridian
        return _bbox_intersects(item_bbox, (west, south, 180.0, north)) or (
            _bbox_intersects(item_bbox, (-180.0, south, east, north))
        )
    return not (
        item_bbox[2] < west
        or item_bbox[0] > east
        or item_bbox[3] < south
        or item_bbox[1] > north
    )


def _time_intersects(
    properties: dict[str, Any], interval: tuple[dt.datetime | None, dt.datetime | None]
) -> bool:
    start = _parse_instant(properties.get("start_datetime") or properties["datetime"])
    end = _parse_instant(properties.get("end_datetime") or properties["datetime"])
    query_start, query_end = interval
    return (query_end is None or start <= query_end) and (
        query_start is None or end >= query_start
    )


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- HTTP handler ----------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
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
                self._json(_landing(mirror), head=head)
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
                    self._json(item, head=head, content_type=_GEOJSON)
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
        limit = min(int(params.get("limit") or _DEFAULT_LIMIT), _MAX_LIMIT)
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
                        "type": _GEOJSON,
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
                        "type": _GEOJSON,
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
            content_type=_GEOJSON,
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
