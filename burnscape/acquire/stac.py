"""Acquire stage: STAC API item search and the download of a source's assets.

:func:`search_items` runs an item search (bbox, datetime, collections) and
follows ``next`` links to the last page; every page is recorded in the ledger,
so a re-run reads the recorded pages instead of asking again, unless the
window was still open when they were recorded and they have grown old (see
:mod:`burnscape.acquire.reuse`).
:func:`acquire_source` searches (or, offline from a workflow's static items,
builds the origin URLs), picks the assets named by the source's ``bands``
mapping and downloads them, verified, with :class:`Downloader`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
from pyproj import Transformer

from burnscape.acquire.download import (
    Downloader,
    DownloadResult,
    FileRequest,
    State,
    make_session,
    raise_for_failures,
)
from burnscape.acquire.items import AcquiredItem
from burnscape.acquire.ledger import Ledger, request_key
from burnscape.acquire.reuse import ReusePolicy, SearchPass, window_end_of_interval
from burnscape.config import ItemConfig, RegionConfig, SourceConfig, TimeConfig
from burnscape.errors import (
    AcquireError,
    AssetUnavailableError,
    ChecksumError,
    ConfigError,
    SearchError,
)

__all__ = [
    "STAC_COMMON_NAMES",
    "acquire_source",
    "region_bbox_wgs84",
    "search_items",
    "select_assets",
    "time_interval",
]

logger = logging.getLogger(__name__)

_SHA256_MULTIHASH = "1220"

STAC_COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "blue": ("blue",),
    "green": ("green",),
    "red": ("red",),
    "nir": ("nir", "nir08"),
    "swir1": ("swir16",),
    "swir2": ("swir22",),
    "mir": (),
    "tir": ("lwir11", "lwir"),
}
"""burnscape band name to the STAC ``eo`` common names that hold it, preferred
first (the first is what the mirror writes). MIR (about 3.7 um) has no STAC
common name."""


def acquire_source(
    source: SourceConfig,
    region: RegionConfig,
    time: TimeConfig,
    dest: Path,
    ledger: Ledger,
    *,
    api_url: str | None = None,
    max_workers: int = 4,
    session: requests.Session | None = None,
    on_event: Callable[[str, FileRequest, object], None] | None = None,
) -> list[AcquiredItem]:
    """Download a STAC source's selected assets for a region and time window.

    Parameters
    ----------
    source
        A ``kind: stac`` source. Its ``bands`` mapping (common name to asset
        key) selects the assets; ``collection`` is searched. Its ``options``
        ``publication_latency_hours`` and ``search_max_age_hours`` say when a
        recorded search is reused (:meth:`ReusePolicy.from_options`).
    region
        The region; its bbox is transformed to WGS 84 for the search.
    time
        The time window; items whose acquisition window overlaps it are kept.
    dest
        Downloads folder: files go to ``dest/<source.name>/<item id>/<file>``.
    ledger
        Records every search page and every file.
    api_url
        A STAC API root (e.g. a :class:`~burnscape.acquire.mirror.MirrorServer`
        URL). Without it, ``source.url`` is searched, or, for a source with
        static ``items``, the assets are fetched from ``source.origin`` with no
        search at all.
    max_workers
        Parallel downloads.
    session
        HTTP session; a retrying one from :func:`make_session` by default.
    on_event
        Progress callback passed to :class:`Downloader`.

    Returns
    -------
    list of AcquiredItem
        One per item, its selected assets verified on disk, sorted by id.

    Raises
    ------
    SearchError
        The search failed after retries or returned something not STAC.
    ChecksumError
        A file's size or checksum did not match; it was deleted, never placed.
    AssetUnavailableError
        The source lacks an asset (404, or absent from the item); the message
        names each (item id, asset key, url). Every other file is kept.
    DownloadError
        Other failures after retries.
    """
    if source.kind != "stac":
        raise ConfigError(f"source {source.name!r} is kind {source.kind!r}, not stac")
    own_session = session is None
    http = session or make_session(pool_size=max(8, max_workers))
    try:
        search_url = api_url or (None if source.items else source.url)
        if search_url is not None:
            features = search_items(
                http,
                search_url,
                bbox=region_bbox_wgs84(region),
                datetime=time_interval(time),
                collections=[source.collection or source.name],
                ledger=ledger,
                source=source.name,
                reuse=ReusePolicy.from_options(source.options),
            )
        else:
            features = [_static_feature(source, item) for item in source.items]
            features = [f for f in features if _overlaps(f, time)]
        plans = [_plan_item(source, feature, Path(dest)) for feature in features]
        downloader = Downloader(
            ledger, session=http, max_workers=max_workers, on_event=on_event
        )
        requests_ = [request for plan in plans for request in plan.requests]
        results = downloader.fetch_all(requests_)
        problems = [result for plan in plans for result in plan.problems]
        raise_for_failures(problems + results)
    finally:
        if own_session:
            http.close()
    items = [plan.to_item() for plan in plans]
    logger.info(
        "Source %s: %d items, %d files verified (%d fetched now).",
        source.name,
        len(items),
        len(results),
        sum(result.state == "verified" for result in results),
    )
    return sorted(items, key=lambda item: item.id)


def search_items(
    session: requests.Session,
    api_url: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    datetime: str | None = None,
    collections: list[str] | None = None,
    limit: int = 100,
    ledger: Ledger | None = None,
    source: str = "",
    max_pages: int = 10_000,
    timeout_s: float = 60.0,
    reuse: ReusePolicy | None = None,
) -> list[dict[str, Any]]:
    """Search a STAC API and return every matching item, following ``next`` links.

    Parameters
    ----------
    session
        The HTTP session (retries are its adapters' business).
    api_url
        The API's root (landing page). The search endpoint is taken from its
        ``search`` link (POST preferred), else ``<root>/search``.
    bbox
        (west, south, east, north) in WGS 84 degrees.
    datetime
        RFC 3339 instant or interval (``start/end``, ``..`` for an open end).
    collections
        Collection ids to search.
    limit
        Items per page asked for.
    ledger
        Where pages are recorded; a page the ledger knows is not requested
        again while ``reuse`` allows it.
    source
        The source name recorded with each request.
    max_pages
        Stop with :class:`SearchError` after this many pages (a loop guard).
    timeout_s
        Read timeout of each request.
    reuse
        When a recorded answer is reused (:class:`ReusePolicy` defaults): a
        search whose window was still open when recorded is asked again once
        older than the policy's maximum age, all its pages with it.

    Returns
    -------
    list of dict
        The STAC items (GeoJSON features) of every page, in the server's order.
    """
    policy = reuse or ReusePolicy()
    window_end = window_end_of_interval(datetime)
    landing = _request_json(
        session,
        "GET",
        api_url,
        None,
        SearchPass(ledger, policy, source=source, window_end=window_end),
        timeout_s,
        root=api_url,
    )
    pages = SearchPass(ledger, policy, source=source, window_end=window_end)
    method, search_url = _search_endpoint(landing, api_url)
    body: dict[str, Any] = {"limit": limit}
    if bbox is not None:
        body["bbox"] = [round(value, 9) for value in bbox]
    if datetime is not None:
        body["datetime"] = datetime
    if collections:
        body["collections"] = list(collections)

    features: list[dict[str, Any]] = []
    seen: set[str] = set()
    params: dict[str, Any] | None = body
    url = search_url
    for _ in range(max_pages):
        key = request_key(method, url, params)
        if key in seen:
            raise SearchError(
                f"{url}: the 'next' links loop back to a page already read"
            )
        seen.add(key)
        page = _request_json(
            session, method, url, params, pages, timeout_s, root=api_url
        )
        if page.get("type") != "FeatureCollection":
            raise SearchError(f"{url}: the search answer is not a FeatureCollection")
        features.extend(page.get("features", []))
        link = _next_link(page)
        if link is None or not page.get("features"):
            logger.info("Search %s: %d items.", url, len(features))
            return features
        method = str(link.get("method", "GET")).upper()
        url = link["href"]
        if method == "POST":
            extra = link.get("body") or {}
            params = {**(params or {}), **extra} if link.get("merge") else dict(extra)
        else:
            params = None
    raise SearchError(f"{search_url}: more than {max_pages} pages; narrow the search")


def select_assets(
    source: SourceConfig, feature: dict[str, Any]
) -> dict[str, tuple[str | None, dict[str, Any] | None]]:
    """Pick an item's assets by the source's ``bands`` mapping.

    An asset is found by its key (the ``bands`` value), else by its single
    ``eo:bands`` common name (see :data:`STAC_COMMON_NAMES`: ``swir1`` is
    STAC's ``swir16``), preferring a GeoTIFF over other encodings of the same
    band. Without a ``bands`` mapping, every asset with the ``data`` role is
    taken.

    Returns
    -------
    dict
        Asset key to (burnscape band name, asset dict or None when the item
        lacks it).
    """
    assets: dict[str, dict[str, Any]] = feature.get("assets", {})
    if not source.bands:
        return {
            key: (_band_name(_common_name(asset)), asset)
            for key, asset in assets.items()
            if "data" in asset.get("roles", ["data"])
        }
    selected: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
    for band, key in source.bands.items():
        match = key if key in assets else _match_band(assets, band)
        selected[match or key] = (band, assets[match] if match else None)
    return selected


def region_bbox_wgs84(region: RegionConfig) -> tuple[float, float, float, float]:
    """Return the region's bbox in WGS 84 degrees (edges densified)."""
    transformer = Transformer.from_crs(region.crs, "EPSG:4326", always_xy=True)
    west, south, east, north = transformer.transform_bounds(
        *region.bbox, densify_pts=21
    )
    return (west, south, east, north)


def time_interval(time: TimeConfig) -> str:
    """Return the window as an RFC 3339 interval covering both end days."""
    return f"{time.start.isoformat()}T00:00:00Z/{time.end.isoformat()}T23:59:59Z"


# --- planning the downloads of one item ------------------------------------------


class _ItemPlan:
    """The files of one item to fetch, and problems known before fetching."""

    def __init__(self, source: SourceConfig, feature: dict[str, Any]) -> None:
        self.source = source
        self.feature = feature
        self.requests: list[FileRequest] = []
        self.problems: list[DownloadResult] = []
        self.info: dict[str, dict[str, Any]] = {}

    def to_item(self) -> AcquiredItem:
        properties = dict(self.feature.get("properties") or {})
        return AcquiredItem(
            id=self.feature["id"],
            source=self.source.name,
            time_bounds=_time_bounds(properties, self.feature["id"]),
            assets={request.asset_key: request.path for request in self.requests},
            properties=properties,
            asset_info=self.info,
        )


def _plan_item(source: SourceConfig, feature: dict[str, Any], dest: Path) -> _ItemPlan:
    plan = _ItemPlan(source, feature)
    item_id = str(feature["id"])
    static = {item.id: item for item in source.items}.get(item_id)
    folder = dest / source.name / _safe_name(item_id)
    names: set[str] = set()
    for key, (common, asset) in select_assets(source, feature).items():
        if asset is None or not asset.get("href"):
            plan.problems.append(
                _problem(
                    source,
                    item_id,
                    key,
                    "(none)",
                    "the item has no such asset",
                    AssetUnavailableError,
                )
            )
            continue
        href = urljoin(_self_href(feature), asset["href"])
        configured = static.assets.get(key) if static else None
        sha256, size, conflict = _expected(asset, configured)
        if conflict:
            plan.problems.append(
                _problem(source, item_id, key, href, conflict, ChecksumError)
            )
            continue
        filename = _safe_name(PurePosixPath(unquote(urlsplit(href).path)).name or key)
        if filename in names:
            filename = f"{key}-{filename}"
        names.add(filename)
        plan.requests.append(
            FileRequest(
                url=href,
                path=folder / filename,
                size=size,
                sha256=sha256,
                source=source.name,
                item_id=item_id,
                asset_key=key,
            )
        )
        plan.info[key] = _asset_info(source, common, asset, href)
    return plan


def _expected(
    asset: dict[str, Any], configured: Any
) -> tuple[str | None, int | None, str | None]:
    """Return expected sha256 and size, and a conflict message if they disagree."""
    from_workflow = getattr(configured, "sha256", None)
    from_item = None
    checksum = str(asset.get("file:checksum") or "")
    if checksum.startswith(_SHA256_MULTIHASH) and len(checksum) == 68:
        from_item = checksum[4:].lower()
    if from_workflow and from_item and from_workflow != from_item:
        return (
            None,
            None,
            (
                f"the catalogue's file:checksum sha256 {from_item} contradicts the "
                f"workflow's {from_workflow}"
            ),
        )
    size = getattr(configured, "size", None) or asset.get("file:size")
    return from_workflow or from_item, int(size) if size is not None else None, None


def _asset_info(
    source: SourceConfig, common: str | None, asset: dict[str, Any], href: str
) -> dict[str, Any]:
    raster = (asset.get("raster:bands") or [{}])[0]
    return {
        "common_name": common or _band_name(_common_name(asset)),
        "scale": raster.get("scale", source.scale),
        "offset": raster.get("offset", source.offset),
        "nodata": raster.get("nodata", source.nodata),
        "eo:bands": asset.get("eo:bands", []),
        "type": asset.get("type"),
        "href": href,
    }


def _problem(
    source: SourceConfig,
    item_id: str,
    key: str,
    url: str,
    reason: str,
    error_type: type[AcquireError],
) -> DownloadResult:
    request = FileRequest(
        url=url, path=Path(), source=source.name, item_id=item_id, asset_key=key
    )
    state: State = "missing" if error_type is AssetUnavailableError else "failed"
    return DownloadResult(request, state, error=reason, error_type=error_type)


# --- static items (no search) ----------------------------------------------------


def _static_feature(source: SourceConfig, item: ItemConfig) -> dict[str, Any]:
    """Build a minimal STAC item for a workflow item fetched from its origin."""
    if not source.origin:
        raise ConfigError(
            f"source {source.name!r} lists items but no 'origin' to fetch them from; "
            "set origin, or run offline with a mirror (--mirror DIR)"
        )
    origin = source.origin if source.origin.endswith("/") else source.origin + "/"
    start, end = item.time_bounds
    properties: dict[str, Any] = {"datetime": None}
    if item.datetime is not None:
        properties["datetime"] = _iso(start)
    else:
        properties.update(start_datetime=_iso(start), end_datetime=_iso(end))
    assets = {
        key: {"href": urljoin(origin, quote(asset.path)), "roles": ["data"]}
        for key, asset in item.assets.items()
    }
    return {
        "type": "Feature",
        "id": item.id,
        "properties": properties,
        "assets": assets,
    }


def _overlaps(feature: dict[str, Any], time: TimeConfig) -> bool:
    start, end = _time_bounds(feature["properties"], feature["id"])
    window_start = dt.datetime.combine(time.start, dt.time.min, dt.UTC)
    window_end = dt.datetime.combine(time.end, dt.time.max, dt.UTC)
    return start <= window_end and end >= window_start


# --- HTTP helpers ------------------------------------------------------------------


def _request_json(
    session: requests.Session,
    method: str,
    url: str,
    params: dict[str, Any] | None,
    recorded: SearchPass,
    timeout_s: float,
    root: str | None = None,
) -> dict[str, Any]:
    """Return a JSON answer, from the ledger when it may reuse the request's.

    With ``root`` (the API's root URL), the request is keyed by its path below
    the root, and a recorded answer has its old root rewritten to the current
    one: a local mirror on a new port, or an API that moved, is the same search.
    """
    relative = _below_root(url, root)
    key = request_key(method, relative if relative is not None else url, params)
    known = recorded.find(key)
    if known is not None:
        logger.debug("Reusing the recorded answer of %s %s.", method, url)
        text = known.response
        if relative is not None and root is not None and known.url != url:
            old_root = known.url[: len(known.url) - len(relative)]
            text = text.replace(json.dumps(old_root)[1:-1], json.dumps(root)[1:-1])
        return dict(json.loads(text))
    try:
        if method == "POST":
            response = session.post(url, json=params, timeout=(10.0, timeout_s))
        else:
            response = session.get(url, timeout=(10.0, timeout_s))
    except requests.exceptions.RequestException as err:
        raise SearchError(f"{method} {url} failed after retries: {err}") from err
    if response.status_code != 200:
        raise SearchError(
            f"{method} {url} answered HTTP {response.status_code}: "
            f"{response.text[:200]!r}"
        )
    try:
        payload = response.json()
    except ValueError as err:
        raise SearchError(f"{method} {url} did not answer JSON") from err
    if not isinstance(payload, dict):
        raise SearchError(f"{method} {url} answered JSON that is not an object")
    recorded.record(
        method=method,
        url=url,
        params=params,
        status=response.status_code,
        response=response.text,
        key=key,
    )
    return payload


def _below_root(url: str, root: str | None) -> str | None:
    """Return ``url``'s part below ``root`` (None when it is not below it)."""
    if not root:
        return None
    base = root if root.endswith("/") else root + "/"
    if url.rstrip("/") == base.rstrip("/"):
        return ""
    return url[len(base) :] if url.startswith(base) else None


def _search_endpoint(landing: dict[str, Any], api_url: str) -> tuple[str, str]:
    links = [link for link in landing.get("links", []) if link.get("rel") == "search"]
    for wanted in ("POST", "GET"):
        for link in links:
            if str(link.get("method", "GET")).upper() == wanted:
                return wanted, urljoin(api_url, link["href"])
    root = api_url if api_url.endswith("/") else api_url + "/"
    return "POST", urljoin(root, "search")


def _next_link(page: dict[str, Any]) -> dict[str, Any] | None:
    for link in page.get("links", []):
        if link.get("rel") == "next" and link.get("href"):
            return dict(link)
    return None


def _self_href(feature: dict[str, Any]) -> str:
    for link in feature.get("links", []):
        if link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return ""


def _common_name(asset: dict[str, Any]) -> str | None:
    bands = asset.get("eo:bands") or []
    return bands[0].get("common_name") if len(bands) == 1 else None


def _match_band(assets: dict[str, dict[str, Any]], band: str) -> str | None:
    """Return the key of the asset holding ``band``, GeoTIFFs first."""
    for name in STAC_COMMON_NAMES.get(band, (band,)):
        keys = [key for key, asset in assets.items() if _common_name(asset) == name]
        if keys:
            tiffs = [k for k in keys if "tiff" in str(assets[k].get("type", ""))]
            return (tiffs or keys)[0]
    return None


def _band_name(common: str | None) -> str | None:
    """Return burnscape's band name for a STAC common name (None if none)."""
    for band, names in STAC_COMMON_NAMES.items():
        if common in names:
            return band
    return None


def _time_bounds(
    properties: dict[str, Any], item_id: str
) -> tuple[dt.datetime, dt.datetime]:
    instant = properties.get("datetime")
    start = properties.get("start_datetime") or instant
    end = properties.get("end_datetime") or instant
    if start is None or end is None:
        raise SearchError(f"item {item_id!r} has neither datetime nor a time range")
    return _parse_time(start), _parse_time(end)


def _parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
    return cleaned.lstrip(".") or "_"
