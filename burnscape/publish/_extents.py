"""Publish stage: fill a pygeoapi resource's extents and CRS from its data."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

from burnscape.errors import PublishError, StoreError
from burnscape.publish._gpkg import (
    CRS84_URI,
    LayerInfo,
    connect_readonly,
    quote_identifier,
    read_layer_info,
)

__all__ = ["describe_resource"]

logger = logging.getLogger(__name__)

_GPKG_PROVIDER = "burnscape.publish.geopackage.GeoPackageProvider"
_ZARR_PROVIDER = "burnscape.publish.coverage.ZarrCoverageProvider"
_POSTGIS_PROVIDER = "burnscape.publish.postgis.PostGISProvider"


def describe_resource(name: str, resource: dict[str, Any]) -> dict[str, Any] | None:
    """Return ``resource`` with extents filled in, or None if its data is absent.

    Only burnscape's own providers are inspected; any other resource (a
    process, a PostGIS collection) is returned unchanged.
    """
    if resource.get("type") == "process":
        return _describe_process(name, resource)
    if resource.get("type") != "collection":
        return resource
    providers = resource.get("providers") or []
    if not providers:
        return resource
    provider = providers[0]
    if provider.get("name") == _GPKG_PROVIDER:
        return _describe_gpkg(name, resource, provider)
    if provider.get("name") == _ZARR_PROVIDER:
        return _describe_zarr(name, resource, provider)
    if provider.get("name") == _POSTGIS_PROVIDER:
        return _describe_postgis(name, resource, provider)
    return resource


def _describe_process(name: str, resource: dict[str, Any]) -> dict[str, Any] | None:
    processor = resource.get("processor") or {}
    folder = processor.get("workflows_dir")
    if folder is not None and not any(Path(folder).glob("*.yml")):
        logger.info("Process %s left out: no workflow templates in %s.", name, folder)
        return None
    return resource


def _describe_gpkg(
    name: str, resource: dict[str, Any], provider: dict[str, Any]
) -> dict[str, Any] | None:
    path = Path(provider["data"])
    if not path.is_file():
        logger.info("Collection %s left out: %s does not exist.", name, path)
        return None
    try:
        conn = connect_readonly(path)
    except StoreError as err:
        logger.warning("Collection %s left out: %s", name, err)
        return None
    try:
        try:
            layer = read_layer_info(conn, provider["table"])
        except (StoreError, sqlite3.Error) as err:
            logger.info("Collection %s left out: %s", name, err)
            return None
        provider = _check_time_fields(name, provider, layer)
        bbox = _layer_bbox(conn, layer)
        begin, end = _layer_time_range(conn, layer, provider)
    finally:
        conn.close()

    if layer.crs_uri != CRS84_URI:
        provider["storage_crs"] = layer.crs_uri
        provider["crs"] = [CRS84_URI, layer.crs_uri]
    out = dict(resource)
    out["providers"] = [provider, *resource["providers"][1:]]
    out["extents"] = _extents(bbox, layer.crs_uri, begin, end)
    return out


def _describe_zarr(
    name: str, resource: dict[str, Any], provider: dict[str, Any]
) -> dict[str, Any] | None:
    from burnscape.publish.coverage import ZarrCoverageProvider

    path = Path(provider["data"])
    if not path.exists():
        logger.info("Collection %s left out: %s does not exist.", name, path)
        return None
    try:
        coverage = ZarrCoverageProvider({**provider, "name": provider["name"]})
    except Exception as err:  # noqa: BLE001  (any unreadable store is left out)
        logger.warning(
            "Collection %s left out: %s cannot be served (%s).", name, path, err
        )
        return None
    properties = coverage._coverage_properties
    begin, end = _coverage_time_range(coverage)
    out = dict(resource)
    out["extents"] = _extents(properties["bbox"], coverage.native_crs, begin, end)
    return out


def _describe_postgis(
    name: str, resource: dict[str, Any], provider: dict[str, Any]
) -> dict[str, Any] | None:
    from sqlalchemy.exc import SQLAlchemyError

    from burnscape.publish.postgis import describe_table

    try:
        described = describe_table(provider)
    except SQLAlchemyError as err:
        raise PublishError(
            f"cannot read the events store (PostGIS) for {name}: {err}"
        ) from err
    if described is None:
        logger.info("Collection %s left out: no table %s.", name, provider["table"])
        return None
    begin = _to_datetime(described["begin"], False)
    end = _to_datetime(described["end"], True)
    out = dict(resource)
    out["extents"] = _extents(described["bbox"], CRS84_URI, begin, end)
    return out


def _check_time_fields(
    name: str, provider: dict[str, Any], layer: LayerInfo
) -> dict[str, Any]:
    checked = dict(provider)
    for key in ("time_field", "end_time_field", "id_field", "title_field"):
        field = checked.get(key)
        if field and field not in layer.columns:
            logger.warning(
                "Collection %s: %s %r is not a column of %s; ignoring it.",
                name,
                key,
                field,
                layer.table,
            )
            checked.pop(key)
    return checked


def _layer_bbox(
    conn: sqlite3.Connection, layer: LayerInfo
) -> tuple[float, float, float, float] | None:
    if layer.rtree:
        row = conn.execute(
            f"SELECT min(minx), min(miny), max(maxx), max(maxy) "
            f"FROM {quote_identifier(layer.rtree)}"
        ).fetchone()
        if row and row[0] is not None:
            return float(row[0]), float(row[1]), float(row[2]), float(row[3])
    return layer.extent


def _layer_time_range(
    conn: sqlite3.Connection, layer: LayerInfo, provider: dict[str, Any]
) -> tuple[dt.datetime | None, dt.datetime | None]:
    start = provider.get("time_field")
    if not start:
        return None, None
    end = provider.get("end_time_field") or start
    row = conn.execute(
        f"SELECT min({quote_identifier(start)}), max({quote_identifier(end)}) "
        f"FROM {quote_identifier(layer.table)}"
    ).fetchone()
    return _to_datetime(row[0], False), _to_datetime(row[1], True)


def _coverage_time_range(
    coverage: Any,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    properties = coverage._coverage_properties
    if "time_range" in properties:
        first, last = properties["time_range"]
        return _to_datetime(first, False), _to_datetime(last, True)
    name = coverage.time_variable
    if not name or name not in coverage._dataset:
        return None, None
    days = coverage._dataset[name]
    fill = days.attrs.get("_FillValue", -1)
    valid = days.where(days != fill)
    low, high = valid.min().compute().item(), valid.max().compute().item()
    if not (np.isfinite(low) and np.isfinite(high)):
        return None, None
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    end_of_day = dt.timedelta(days=1) - dt.timedelta(seconds=1)
    return epoch + dt.timedelta(days=int(low)), epoch + dt.timedelta(
        days=int(high)
    ) + end_of_day


def _extents(
    bbox: tuple[float, float, float, float] | list[float] | None,
    crs: str | CRS,
    begin: dt.datetime | None,
    end: dt.datetime | None,
) -> dict[str, Any]:
    extents: dict[str, Any] = {
        "spatial": {"bbox": _to_crs84(bbox, crs), "crs": CRS84_URI},
    }
    if begin is not None or end is not None:
        extents["temporal"] = {"begin": begin, "end": end}
    return extents


def _to_crs84(
    bbox: tuple[float, float, float, float] | list[float] | None, crs: str | CRS
) -> list[float]:
    if bbox is None:
        return [-180.0, -90.0, 180.0, 90.0]
    source = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
    target = CRS.from_user_input(CRS84_URI)
    if source == target:
        return [float(value) for value in bbox]
    transformer = Transformer.from_crs(source, target, always_xy=True)
    minx, miny, maxx, maxy = bbox
    bounds = transformer.transform_bounds(minx, miny, maxx, maxy, densify_pts=21)
    return [round(float(value), 7) for value in bounds]


def _to_datetime(value: Any, as_end: bool) -> dt.datetime | None:
    from burnscape.publish._time import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(str(value), as_end=as_end).replace(microsecond=0)
    except ValueError:
        logger.warning("Time value %r is not RFC 3339; extent left open.", value)
        return None
