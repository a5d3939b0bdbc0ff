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
import threading
from collections.abc import Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from burnscape.acquire._mirror_http import (
    CONFORMANCE,
    DEFAULT_LIMIT,
    GEOJSON,
    MAX_LIMIT,
    MirrorHandler,
    as_list,
    bbox_intersects,
    parse_bbox,
    parse_datetime,
    time_intersects,
)
from burnscape.acquire.stac import STAC_COMMON_NAMES
from burnscape.config import ItemConfig, SourceConfig
from burnscape.errors import DataNotFoundError

__all__ = ["CONFORMANCE", "MirrorServer", "build_items"]

logger = logging.getLogger(__name__)

_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
]


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
        handler = type("_BoundHandler", (MirrorHandler,), {"mirror": self})
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

    def landing_page(self) -> dict[str, Any]:
        """Return the API's landing page: a STAC Catalog with its links."""
        base = self.url
        links = [
            {"rel": "self", "type": "application/json", "href": base},
            {"rel": "root", "type": "application/json", "href": base},
            {"rel": "data", "type": "application/json", "href": base + "collections"},
            {
                "rel": "conformance",
                "type": "application/json",
                "href": base + "conformance",
            },
            {
                "rel": "search",
                "type": GEOJSON,
                "href": base + "search",
                "method": "GET",
            },
            {
                "rel": "search",
                "type": GEOJSON,
                "href": base + "search",
                "method": "POST",
            },
        ]
        links += [
            {
                "rel": "child",
                "type": "application/json",
                "title": cid,
                "href": f"{base}collections/{quote(cid)}",
            }
            for cid in self.collections
        ]
        return {
            "type": "Catalog",
            "id": "burnscape-mirror",
            "title": "burnscape local mirror",
            "description": f"Files of {self.mirror_dir} served as a STAC API.",
            "stac_version": "1.0.0",
            "conformsTo": list(CONFORMANCE),
            "links": links,
        }

    def search(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int, int]:
        """Filter the items by search parameters; return the page, matched, offset.

        Raises
        ------
        ValueError
            A parameter is malformed (answered as HTTP 400).
        """
        bbox = parse_bbox(params.get("bbox"))
        interval = parse_datetime(params.get("datetime"))
        collections = as_list(params.get("collections"))
        ids = as_list(params.get("ids"))
        limit = min(int(params.get("limit") or DEFAULT_LIMIT), MAX_LIMIT)
        offset = int(params.get("token") or 0)
        if limit < 1 or offset < 0:
            raise ValueError("limit must be positive and token non-negative")
        matched = [
            item
            for item in self.items
            if (not collections or item["collection"] in collections)
            and (not ids or item["id"] in ids)
            and (bbox is None or bbox_intersects(item.get("bbox"), bbox))
            and (interval is None or time_intersects(item["properties"], interval))
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
            {"rel": "self", "type": GEOJSON, "href": self_href},
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
            {"rel": "items", "type": GEOJSON, "href": href + "/items"},
            {"rel": "parent", "type": "application/json", "href": base_url},
            {"rel": "root", "type": "application/json", "href": base_url},
        ],
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


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- HTTP handler ----------------------------------------------------------------
