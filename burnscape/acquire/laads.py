"""Acquire stage: LAADS DAAC granules found through NASA CMR, fetched with a token.

:func:`search_granules` asks CMR (``/search/granules.umm_json``) for a
product's granules by date range and bbox, splitting the window into chunks of
``max_days`` and paging each with ``CMR-Search-After``; every page is recorded
in the ledger. :func:`acquire_laads` resolves each granule's file URL, size and
checksum and downloads it with an Earthdata token read from the environment,
sent only to the provider's own hosts (also after redirects), never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

import requests

from burnscape.acquire.download import (
    Downloader,
    FileRequest,
    make_session,
    raise_for_failures,
)
from burnscape.acquire.items import AcquiredItem
from burnscape.acquire.ledger import Ledger, request_key
from burnscape.acquire.reuse import ReusePolicy, SearchPass, window_end_of_days
from burnscape.acquire.stac import region_bbox_wgs84
from burnscape.config import RegionConfig, SourceConfig, TimeConfig
from burnscape.errors import AuthenticationError, ConfigError, SearchError

__all__ = [
    "CMR_URL",
    "EarthdataSession",
    "Granule",
    "LAADS_HOSTS",
    "acquire_laads",
    "search_granules",
    "split_window",
]

logger = logging.getLogger(__name__)

CMR_URL = "https://cmr.earthdata.nasa.gov/"
"""NASA CMR, where LAADS granules are searched."""

LAADS_HOSTS = frozenset(
    {
        "ladsweb.modaps.eosdis.nasa.gov",
        "cmr.earthdata.nasa.gov",
        "urs.earthdata.nasa.gov",
    }
)
"""Hosts that may receive the Earthdata token (the provider's own)."""

_FORMATS = {".hdf": "hdf4", ".h5": "hdf5", ".he5": "hdf5", ".nc": "netcdf"}
_PAGE_SIZE = 2000


@dataclass(frozen=True)
class Granule:
    """A LAADS granule as CMR describes it."""

    id: str
    name: str
    url: str
    size: int | None
    md5: str | None
    sha256: str | None
    start: dt.datetime
    end: dt.datetime
    properties: dict[str, Any]


class EarthdataSession(requests.Session):
    """A session that sends a bearer token to trusted hosts only.

    The token is added to every request, and re-applied after every redirect,
    whose host is in ``hosts``; it is removed from requests to any other host,
    so a redirect to a CDN or another site never carries it.
    """

    def __init__(self, token: str | None, hosts: Iterable[str]) -> None:
        super().__init__()
        self._token = token
        self.hosts = frozenset(host.lower() for host in hosts)

    def __repr__(self) -> str:
        return f"EarthdataSession(hosts={sorted(self.hosts)}, token=***)"

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        """Prepare a request, with the token only if its host is trusted."""
        prepared = super().prepare_request(request)
        self._apply(prepared)
        return prepared

    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        """Re-apply the token after a redirect to a trusted host; drop it elsewhere."""
        super().rebuild_auth(prepared_request, response)
        self._apply(prepared_request)

    def _apply(self, prepared: requests.PreparedRequest) -> None:
        host = (urlsplit(prepared.url or "").hostname or "").lower()
        if self._token and host in self.hosts:
            prepared.headers["Authorization"] = f"Bearer {self._token}"
        else:
            prepared.headers.pop("Authorization", None)


def split_window(
    start: dt.date, end: dt.date, max_days: int
) -> list[tuple[dt.date, dt.date]]:
    """Split ``start`` .. ``end`` (inclusive) into chunks of at most ``max_days``."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    chunks = []
    day = start
    while day <= end:
        last = min(end, day + dt.timedelta(days=max_days - 1))
        chunks.append((day, last))
        day = last + dt.timedelta(days=1)
    return chunks


def search_granules(
    session: requests.Session,
    cmr_url: str,
    *,
    product: str,
    bbox: tuple[float, float, float, float],
    start: dt.date,
    end: dt.date,
    provider: str = "LAADS",
    version: str | None = None,
    max_days: int = 31,
    page_size: int = _PAGE_SIZE,
    ledger: Ledger | None = None,
    source: str = "",
    reuse: ReusePolicy | None = None,
) -> list[Granule]:
    """Return a product's granules in a window and bbox, searching chunk by chunk.

    Parameters
    ----------
    session
        HTTP session (an :class:`EarthdataSession` adds the token).
    cmr_url
        CMR root, e.g. :data:`CMR_URL`.
    product
        Collection short name (``VNP14IMG``, ``MOD09GA``, ...).
    bbox
        (west, south, east, north), WGS 84 degrees.
    start, end
        The window, both days included (UTC).
    provider
        CMR provider id.
    version
        Collection version, if several exist.
    max_days
        Days per search request; longer windows are split.
    page_size
        Granules per page (CMR allows at most 2000).
    ledger
        Records each page; a page it knows is not requested again while
        ``reuse`` allows it.
    source
        Source name recorded with the requests.
    reuse
        When recorded pages are reused (:class:`ReusePolicy` defaults). Each
        chunk of the window is judged alone: chunks closed long ago are read
        from the ledger, the recent one is searched again once its pages age.

    Returns
    -------
    list of Granule
        Unique by id, in time order.
    """
    root = cmr_url if cmr_url.endswith("/") else cmr_url + "/"
    url = root + "search/granules.umm_json"
    found: dict[str, Granule] = {}
    for first, last in split_window(start, end, max_days):
        params: dict[str, Any] = {
            "short_name": product,
            "provider": provider,
            "temporal": f"{first.isoformat()}T00:00:00Z,{last.isoformat()}T23:59:59Z",
            "bounding_box": ",".join(f"{v:.6f}" for v in bbox),
            "page_size": page_size,
        }
        if version:
            params["version"] = version
        recorded = SearchPass(
            ledger,
            reuse or ReusePolicy(),
            source=source,
            window_end=window_end_of_days(last),
        )
        for page in _pages(session, url, params, recorded):
            for item in page.get("items", []):
                granule = _granule(item)
                found.setdefault(granule.id, granule)
    granules = sorted(found.values(), key=lambda g: (g.start, g.id))
    logger.info("CMR search for %s: %d granules.", product, len(granules))
    return granules


def acquire_laads(
    source: SourceConfig,
    region: RegionConfig,
    time: TimeConfig,
    dest: Path,
    ledger: Ledger,
    *,
    api_url: str | None = None,
    max_workers: int = 4,
    on_event: Callable[[str, FileRequest, object], None] | None = None,
) -> list[AcquiredItem]:
    """Search and download a LAADS product's granules for a region and window.

    ``source.options``: ``product`` (required), ``provider`` (``LAADS``),
    ``version``, ``max_days`` (31), ``page_size`` (2000), ``token_env``
    (``EARTHDATA_TOKEN``), ``hosts`` (extra hosts trusted with the token),
    ``publication_latency_hours`` and ``search_max_age_hours`` (when recorded
    searches are reused, see :meth:`ReusePolicy.from_options`). ``api_url`` (else
    ``source.url``, else :data:`CMR_URL`) is the CMR root. ``on_event`` goes to
    the :class:`~burnscape.acquire.download.Downloader` (progress bars).

    Returns
    -------
    list of AcquiredItem
        One per granule, asset ``"data"`` the verified file in
        ``dest/<source>/<granule>/``.

    Raises
    ------
    AuthenticationError
        No token in the environment, or the server refused it.
    SearchError, ChecksumError, AssetUnavailableError, DownloadError
        As for :func:`~burnscape.acquire.stac.acquire_source`.
    """
    if source.kind != "laads":
        raise ConfigError(f"source {source.name!r} is kind {source.kind!r}, not laads")
    options = source.options
    product = options.get("product")
    if not product:
        raise ConfigError(f"LAADS source {source.name!r} needs options.product")
    token_env = str(options.get("token_env", "EARTHDATA_TOKEN"))
    token = os.environ.get(token_env)
    if not token:
        raise AuthenticationError(
            f"LAADS source {source.name!r} needs an Earthdata token: set the "
            f"environment variable {token_env} (https://urs.earthdata.nasa.gov)"
        )
    cmr = api_url or source.url or CMR_URL
    hosts = set(LAADS_HOSTS) | set(options.get("hosts", ()))
    hosts.add(urlsplit(cmr).hostname or "")
    session = make_session(
        pool_size=max(8, max_workers),
        session=EarthdataSession(token, hosts),
    )
    with session:
        granules = search_granules(
            session,
            cmr,
            product=str(product),
            bbox=region_bbox_wgs84(region),
            start=time.start,
            end=time.end,
            provider=str(options.get("provider", "LAADS")),
            version=options.get("version"),
            max_days=int(options.get("max_days", 31)),
            page_size=int(options.get("page_size", _PAGE_SIZE)),
            ledger=ledger,
            source=source.name,
            reuse=ReusePolicy.from_options(options),
        )
        requests_ = [_file_request(source, granule, Path(dest)) for granule in granules]
        downloader = Downloader(
            ledger, session=session, max_workers=max_workers, on_event=on_event
        )
        results = downloader.fetch_all(requests_)
    raise_for_failures(results)
    return [
        AcquiredItem(
            id=granule.id,
            source=source.name,
            time_bounds=(granule.start, granule.end),
            assets={"data": request.path},
            properties=granule.properties,
            asset_info={"data": {"href": granule.url, "type": None}},
        )
        for granule, request in zip(granules, requests_, strict=True)
    ]


# --- helpers -------------------------------------------------------------------


def _pages(
    session: requests.Session,
    url: str,
    params: dict[str, Any],
    recorded: SearchPass,
) -> Iterable[dict[str, Any]]:
    """Yield CMR result pages, following ``CMR-Search-After``."""
    search_after: str | None = None
    while True:
        key_params = dict(params, search_after=search_after) if search_after else params
        known = recorded.find(request_key("GET", url, key_params))
        if known is not None:
            record = json.loads(known.response)
            page, search_after = record["body"], record["search_after"]
        else:
            page, search_after = _fetch_page(session, url, params, search_after)
            recorded.record(
                method="GET",
                url=url,
                params=key_params,
                status=200,
                response=json.dumps({"body": page, "search_after": search_after}),
            )
        yield page
        if not search_after or len(page.get("items", [])) < int(params["page_size"]):
            return


def _fetch_page(
    session: requests.Session,
    url: str,
    params: dict[str, Any],
    search_after: str | None,
) -> tuple[dict[str, Any], str | None]:
    headers = {"CMR-Search-After": search_after} if search_after else {}
    full = f"{url}?{urlencode(params)}"
    try:
        response = session.get(full, headers=headers, timeout=(10.0, 120.0))
    except requests.exceptions.RequestException as err:
        raise SearchError(f"CMR search {full} failed after retries: {err}") from err
    if response.status_code in (401, 403):
        raise AuthenticationError(f"CMR refused the search {full} (HTTP 401/403)")
    if response.status_code != 200:
        raise SearchError(
            f"CMR search {full} answered HTTP {response.status_code}: "
            f"{response.text[:200]!r}"
        )
    try:
        page = response.json()
    except ValueError as err:
        raise SearchError(f"CMR search {full} did not answer JSON") from err
    return page, response.headers.get("CMR-Search-After")


def _granule(item: dict[str, Any]) -> Granule:
    umm, meta = item.get("umm", {}), item.get("meta", {})
    granule_id = meta.get("concept-id") or umm.get("GranuleUR")
    urls = [
        entry["URL"]
        for entry in umm.get("RelatedUrls", [])
        if entry.get("Type") in ("GET DATA", "GET DATA VIA DIRECT ACCESS")
        and str(entry.get("URL", "")).startswith("http")
    ]
    if not granule_id or not urls:
        raise SearchError(f"CMR granule {granule_id!r} has no id or no GET DATA URL")
    info = (
        umm.get("DataGranule", {}).get("ArchiveAndDistributionInformation") or [{}]
    )[0]
    checksum = info.get("Checksum") or {}
    algorithm = str(checksum.get("Algorithm", "")).upper().replace("-", "")
    value = str(checksum.get("Value", "")).lower() or None
    extent = umm.get("TemporalExtent", {}).get("RangeDateTime", {})
    start = _parse(extent.get("BeginningDateTime"), granule_id)
    end = _parse(
        extent.get("EndingDateTime") or extent.get("BeginningDateTime"), granule_id
    )
    name = PurePosixPath(unquote(urlsplit(urls[0]).path)).name
    return Granule(
        id=str(granule_id),
        name=name,
        url=urls[0],
        size=int(info["SizeInBytes"]) if info.get("SizeInBytes") else None,
        md5=value if algorithm == "MD5" else None,
        sha256=value if algorithm == "SHA256" else None,
        start=start,
        end=end,
        properties={
            "granule_ur": umm.get("GranuleUR"),
            "collection": umm.get("CollectionReference", {}),
            "day_night": umm.get("DataGranule", {}).get("DayNightFlag"),
            "spatial_extent": umm.get("SpatialExtent", {}),
        },
    )


def _file_request(source: SourceConfig, granule: Granule, dest: Path) -> FileRequest:
    suffix = PurePosixPath(granule.name).suffix.lower()
    no_checksum = granule.md5 is None and granule.sha256 is None
    return FileRequest(
        url=granule.url,
        path=dest / source.name / granule.id / granule.name,
        size=granule.size,
        sha256=granule.sha256,
        md5=granule.md5,
        source=source.name,
        item_id=granule.id,
        asset_key="data",
        expect_format=_FORMATS.get(suffix) if no_checksum else None,
    )


def _parse(value: str | None, granule_id: str) -> dt.datetime:
    if not value:
        raise SearchError(f"CMR granule {granule_id} has no temporal extent")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
