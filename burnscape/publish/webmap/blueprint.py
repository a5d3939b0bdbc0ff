"""Publish stage: the web map at ``/map``, a Flask blueprint beside the OGC API.

The page (Leaflet, Leaflet.markercluster and Plotly.js, installed with npm
into ``burnscape/publish/webmap/node_modules`` and served from ``/map/vendor``,
never from a CDN) reads everything it shows from the OGC API of the same
server: fire events, daily progression, burned pixels and active fires for
the view's bbox and a datetime interval. Two routes support it:

``/map/api/bins/<collection>``
    Counts of a layer's features per grid cell over a bbox (see
    :mod:`burnscape.publish.webmap.bins`). The scale rule: when the view holds
    more than ``pixel_limit`` burned pixels (or ``fire_limit`` active fires) in
    the interval, the map draws these bins instead of the features.
``/map/files/events/<event_id>.tif``
    An event's GeoTIFF, linked from the event's popup.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    send_from_directory,
)

from burnscape.errors import BurnscapeError
from burnscape.publish._time import parse_datetime_parameter
from burnscape.publish.webmap.bins import BinQuery, bin_layer

__all__ = [
    "ASSETS_DIR",
    "BINNED_COLLECTIONS",
    "FIRE_LIMIT",
    "PIXEL_LIMIT",
    "REQUIRED_ASSETS",
    "missing_assets",
    "webmap_blueprint",
]

logger = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).parent / "node_modules"
"""Where ``npm ci`` (run in this folder) installs the page's libraries."""

REQUIRED_ASSETS = (
    "leaflet/dist/leaflet.js",
    "leaflet/dist/leaflet.css",
    "leaflet.markercluster/dist/leaflet.markercluster.js",
    "leaflet.markercluster/dist/MarkerCluster.css",
    "leaflet.markercluster/dist/MarkerCluster.Default.css",
    "plotly.js-dist-min/plotly.min.js",
    "topojson-client/dist/topojson-client.min.js",
    "world-atlas/countries-10m.json",
)
"""Files of ``node_modules`` the page loads (paths below ``ASSETS_DIR``)."""

OPENAPI_ASSETS = (
    "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui-dist/swagger-ui-standalone-preset.js",
    "swagger-ui-dist/swagger-ui.css",
)
"""Files of ``node_modules`` the OpenAPI page (``/openapi?f=html``) loads. Where
they are missing, pygeoapi's own page (Swagger UI from a CDN) is served."""

PIXEL_LIMIT = 10_000
"""Above this many burned pixels in the view, the map draws server-side bins."""

FIRE_LIMIT = 10_000
"""Above this many active fires in the view, the map draws server-side bins."""

BINNED_COLLECTIONS = {"burned-pixels": "confidence", "active-fires": "frp"}
"""Collections the bins route serves, with the numeric property it summarises."""

_SERVED_PACKAGES = frozenset(
    path.split("/", 1)[0] for path in (*REQUIRED_ASSETS, *OPENAPI_ASSETS)
)
_GEOPACKAGE_PROVIDER = "burnscape.publish.geopackage.GeoPackageProvider"
_DEFAULT_CELLS = (128, 64)


def webmap_blueprint(
    config: dict[str, Any],
    *,
    outputs: Path | None = None,
    assets_dir: Path | None = None,
    pixel_limit: int = PIXEL_LIMIT,
    fire_limit: int = FIRE_LIMIT,
    basemaps: Sequence[dict[str, str]] = (),
) -> Blueprint:
    """Return the blueprint serving the web map under ``/map``.

    Parameters
    ----------
    config
        The loaded pygeoapi configuration the server runs (collections, their
        providers, ``server.limits`` and ``server.map``).
    outputs
        The outputs folder whose ``events/*.tif`` the popups link to; default:
        the folder of the ``fire-events`` GeoPackage.
    assets_dir
        The ``node_modules`` folder holding the page's libraries; default
        :data:`ASSETS_DIR`.
    pixel_limit, fire_limit
        The scale rule: above these many burned pixels / active fires in the
        view, the page draws server-side bins (:data:`PIXEL_LIMIT`,
        :data:`FIRE_LIMIT`).
    basemaps
        Extra tile base maps offered besides the offline ones, each a dict
        with ``name``, ``url`` (``{z}/{x}/{y}`` template; a local tile server
        keeps the map offline) and ``attribution``. ``server.map`` of the
        configuration is offered too, marked online.

    Returns
    -------
    flask.Blueprint
        Register it on the application: ``app.register_blueprint(...)``.
    """
    assets = Path(assets_dir) if assets_dir is not None else ASSETS_DIR
    events_folder = _events_folder(config, outputs)
    page_settings = {
        "pixelLimit": int(pixel_limit),
        "fireLimit": int(fire_limit),
        "pageSize": _page_size(config),
        "collections": _served_collections(config),
        "binned": sorted(_binnable(config)),
        "basemaps": _basemaps(config, basemaps),
    }
    blueprint = Blueprint(
        "webmap",
        __name__,
        url_prefix="/map",
        static_folder="static",
        static_url_path="/static",
        template_folder="templates",
    )

    @blueprint.route("")
    @blueprint.route("/")
    def page() -> Response | tuple[str, int]:
        missing = missing_assets(assets)
        if missing:
            logger.warning("Web map assets missing in %s: %s.", assets, missing)
            html = render_template(
                "webmap/missing.html", assets=str(assets), missing=missing
            )
            return html, HTTPStatus.SERVICE_UNAVAILABLE
        root = request.script_root.rstrip("/")
        settings = {**page_settings, "apiRoot": root, "mapRoot": f"{root}/map"}
        return Response(
            render_template("webmap/map.html", settings=json.dumps(settings)),
            mimetype="text/html",
        )

    @blueprint.route("/vendor/<path:name>")
    def vendor(name: str) -> Response:
        if name.split("/", 1)[0] not in _SERVED_PACKAGES:
            abort(HTTPStatus.NOT_FOUND)
        return send_from_directory(assets, name, max_age=3600)

    @blueprint.before_app_request
    def openapi_page() -> Response | None:
        """Answer ``/openapi`` in HTML with Swagger UI served from here."""
        if request.path.rstrip("/") != "/openapi" or not _wants_html():
            return None
        if any(not (assets / name).is_file() for name in OPENAPI_ASSETS):
            return None  # pygeoapi's page, which loads Swagger UI from a CDN
        root = request.script_root.rstrip("/")
        title = config.get("metadata", {}).get("identification", {}).get("title")
        return Response(
            render_template(
                "webmap/swagger.html",
                title=str(title or "burnscape"),
                vendor=f"{root}/map/vendor",
                document_url=f"{root}/openapi?f=json",
            ),
            mimetype="text/html",
        )

    @blueprint.route("/files/<path:name>")
    def event_file(name: str) -> Response:
        folder, _, file_name = name.partition("/")
        if (
            events_folder is None
            or folder != "events"
            or not file_name.endswith(".tif")
        ):
            abort(HTTPStatus.NOT_FOUND)
        return send_from_directory(
            events_folder, file_name, mimetype="image/tiff", as_attachment=True
        )

    @blueprint.route("/api/bins/<collection_id>")
    def bins(collection_id: str) -> Response | tuple[Response, int]:
        provider = _binnable(config).get(collection_id)
        if provider is None:
            return _problem(
                HTTPStatus.NOT_FOUND,
                "NotFound",
                f"no binned collection {collection_id!r}: use one of "
                f"{sorted(_binnable(config))}",
            )
        try:
            query = _bin_query(request.args)
        except ValueError as err:
            return _problem(HTTPStatus.BAD_REQUEST, "InvalidParameterValue", str(err))
        try:
            result = bin_layer(
                Path(provider["data"]),
                provider["table"],
                query,
                time_field=provider.get("time_field"),
                value_field=BINNED_COLLECTIONS[collection_id],
            )
        except BurnscapeError:
            logger.error("Bins of %s failed.", collection_id, exc_info=True)
            return _problem(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "NoApplicableCode",
                "binning failed (details are in the server log)",
            )
        result["collection"] = collection_id
        return jsonify(result)

    return blueprint


def _wants_html() -> bool:
    """Return whether the request asks for HTML.

    ``f=html`` does, and so does a browser's ``Accept`` header when no ``f`` is
    given.
    """
    requested = (request.args.get("f") or "").strip().lower()
    if requested:
        return requested == "html"
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def missing_assets(assets_dir: Path = ASSETS_DIR) -> list[str]:
    """Return the :data:`REQUIRED_ASSETS` absent from ``assets_dir``."""
    return [name for name in REQUIRED_ASSETS if not (assets_dir / name).is_file()]


def _bin_query(args: Any) -> BinQuery:
    """Parse ``bbox``, ``datetime``, ``nx`` and ``ny``; raise ValueError if bad."""
    text = args.get("bbox")
    if not text:
        raise ValueError("bbox is required: minx,miny,maxx,maxy in degrees")
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as err:
        raise ValueError(f"bbox {text!r} holds a value that is not a number") from err
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError("bbox needs 4 finite numbers: minx,miny,maxx,maxy")
    minx, miny, maxx, maxy = values
    bbox = (max(minx, -180.0), max(miny, -90.0), min(maxx, 180.0), min(maxy, 90.0))
    cells = []
    for name, default in zip(("nx", "ny"), _DEFAULT_CELLS, strict=True):
        raw = args.get(name, str(default))
        try:
            cells.append(int(raw))
        except ValueError as err:
            raise ValueError(f"{name} must be an integer, not {raw!r}") from err
    interval = parse_datetime_parameter(args.get("datetime"))
    return BinQuery(bbox=bbox, nx=cells[0], ny=cells[1], interval=interval)


def _problem(status: HTTPStatus, code: str, description: str) -> tuple[Response, int]:
    """Return an error body shaped like pygeoapi's (``code``, ``description``)."""
    return jsonify({"code": code, "description": description}), int(status)


def _feature_provider(resource: dict[str, Any]) -> dict[str, Any] | None:
    for provider in resource.get("providers") or []:
        if provider.get("type") == "feature":
            return dict(provider)
    return None


def _served_collections(config: dict[str, Any]) -> list[str]:
    resources = config.get("resources") or {}
    return [
        name
        for name, resource in resources.items()
        if resource.get("type") == "collection" and _feature_provider(resource)
    ]


def _binnable(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the collections the bins route can serve -> their provider block."""
    found: dict[str, dict[str, Any]] = {}
    resources = config.get("resources") or {}
    for name in BINNED_COLLECTIONS:
        provider = _feature_provider(resources.get(name) or {})
        if provider and provider.get("name") == _GEOPACKAGE_PROVIDER:
            found[name] = provider
    return found


def _events_folder(config: dict[str, Any], outputs: Path | None) -> Path | None:
    if outputs is not None:
        return Path(outputs) / "events"
    provider = _feature_provider((config.get("resources") or {}).get("fire-events", {}))
    if provider and provider.get("name") == _GEOPACKAGE_PROVIDER:
        return Path(provider["data"]).parent / "events"
    return None


def _page_size(config: dict[str, Any]) -> int:
    limits = (config.get("server") or {}).get("limits") or {}
    return int(limits.get("max_items", 10_000))


def _basemaps(
    config: dict[str, Any], extra: Sequence[dict[str, str]]
) -> list[dict[str, str]]:
    maps = [
        {
            "name": item["name"],
            "url": item["url"],
            "attribution": item.get("attribution", ""),
        }
        for item in extra
    ]
    online = (config.get("server") or {}).get("map") or {}
    if online.get("url"):
        maps.append(
            {
                "name": "OpenStreetMap (online)"
                if "openstreetmap" in online["url"]
                else "Tiles (online)",
                "url": online["url"],
                "attribution": online.get("attribution", ""),
            }
        )
    return maps
