"""Publish stage: bin a GeoPackage point or pixel layer on a grid for the web map.

When the map's view holds more burned pixels or active fires than it can draw
one by one, it asks the server for bins instead: the features that meet the
view's bbox (and fall in a datetime interval) are grouped by the grid cell
holding their centre, and each non-empty cell reports its feature count, the
mean position of its features, their date range and the mean and maximum of
one numeric property. The work is one SQL ``GROUP BY`` over the layer's R-tree
(the envelope centre is the feature centre for pixels and points), so binning
a million features takes about a second; only polygons whose envelope crosses
the bbox's edge are decoded, to test them exactly.

The bbox and datetime filters mean what they mean in burnscape's GeoPackage
provider: a polygon is counted when it intersects the bbox, a point when its
index envelope meets it, and either when its date falls in the interval, so
the bins' total equals the collection's ``numberMatched`` for the same query.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely

from burnscape.errors import PublishError
from burnscape.publish._gpkg import (
    LayerInfo,
    connect_readonly,
    decode_geometry,
    quote_identifier,
    read_layer_info,
    time_sql,
    time_text,
)
from burnscape.publish._time import TimeInterval

__all__ = ["MAX_CELLS_PER_AXIS", "BinQuery", "bin_layer"]

logger = logging.getLogger(__name__)

MAX_CELLS_PER_AXIS = 512
"""The most grid cells a bins request may ask for along x or along y."""

_JULIAN_UNIX_EPOCH = 2440587.5


@dataclass(frozen=True)
class BinQuery:
    """One bins request: the grid over a bbox and the filters.

    Attributes
    ----------
    bbox
        (minx, miny, maxx, maxy) in longitude/latitude (EPSG:4326), with
        ``minx < maxx`` and ``miny < maxy`` (no antimeridian crossing).
    nx, ny
        Grid cells along x and y (1 to :data:`MAX_CELLS_PER_AXIS`).
    interval
        Keep features whose date falls in it; None keeps all.
    """

    bbox: tuple[float, float, float, float]
    nx: int
    ny: int
    interval: TimeInterval | None = None

    def __post_init__(self) -> None:
        minx, miny, maxx, maxy = self.bbox
        if not (minx < maxx and miny < maxy):
            raise ValueError(
                f"bbox {list(self.bbox)} is empty or crosses the antimeridian: "
                "use minx < maxx and miny < maxy"
            )
        for name, value in (("nx", self.nx), ("ny", self.ny)):
            if not 1 <= value <= MAX_CELLS_PER_AXIS:
                raise ValueError(
                    f"{name} must be between 1 and {MAX_CELLS_PER_AXIS}, not {value}"
                )


def bin_layer(
    path: Path,
    table: str,
    query: BinQuery,
    *,
    time_field: str | None,
    value_field: str | None = None,
) -> dict[str, Any]:
    """Count a layer's features per grid cell over a bbox (GeoPackage, EPSG:4326).

    Parameters
    ----------
    path
        The GeoPackage (e.g. an outputs folder's ``burnscape.gpkg``).
    table
        The feature table (e.g. ``burned_pixels``); it needs an R-tree index.
    query
        The bbox, grid size and datetime interval.
    time_field
        The layer's date column (``DATE`` or date-time text); None when the
        layer has none (then ``query.interval`` must be None).
    value_field
        A numeric column summarised per cell (mean and maximum), or None.

    Returns
    -------
    dict
        JSON-ready: ``bbox``, ``nx``, ``ny``, ``cell_size`` (degrees, x and y),
        ``numberMatched`` (features counted) and ``cells``, a dict of equal-length
        lists, one entry per non-empty cell: ``i`` (column from the west), ``j``
        (row from the south), ``count``, ``lon``/``lat`` (mean feature centre),
        ``day_min``/``day_mean``/``day_max`` (days since 1970-01-01, null without
        a time field) and, with ``value_field``, ``<field>_mean``/``<field>_max``.

    Raises
    ------
    PublishError
        The layer lacks the fields or the R-tree index, or the query fails.
    StoreError
        The GeoPackage cannot be opened or has no such table.
    """
    conn = connect_readonly(path)
    try:
        layer = read_layer_info(conn, table)
        exact = "POINT" not in layer.geometry_type
        sql, params = _bins_sql(layer, query, time_field, value_field, exact=exact)
        try:
            rows = conn.execute(sql, params).fetchall()
            if exact:
                rows += _edge_rows(conn, layer, query, time_field, value_field)
        except sqlite3.Error as err:
            raise PublishError(f"binning {table} of {path} failed: {err}") from err
    finally:
        conn.close()
    result = _assemble(rows, query, value_field)
    logger.debug(
        "Binned %d features of %s into %d cells.",
        result["numberMatched"],
        table,
        len(result["cells"]["count"]),
    )
    return result


def _bins_sql(
    layer: LayerInfo,
    query: BinQuery,
    time_field: str | None,
    value_field: str | None,
    *,
    exact: bool,
) -> tuple[str, list[Any]]:
    """Return the GROUP BY statement of a bins query and its parameters.

    With ``exact``, only features whose envelope lies inside the bbox are
    grouped (those certainly intersect it); :func:`_edge_rows` adds the others.
    """
    select, source, params = _query_parts(layer, query, time_field, value_field)
    select = (
        "SELECT CAST((cx - ?) / ? AS INTEGER) AS i, "
        "CAST((cy - ?) / ? AS INTEGER) AS j, "
        "count(*), avg(cx), avg(cy), min(day), avg(day), max(day), avg(value), "
        f"max(value) FROM ({select}{source}"
    )
    minx, miny, maxx, maxy = query.bbox
    if exact:
        select += " AND r.minx >= ? AND r.maxx <= ? AND r.miny >= ? AND r.maxy <= ?"
        params += [minx, maxx, miny, maxy]
    cell_x, cell_y = (maxx - minx) / query.nx, (maxy - miny) / query.ny
    return f"{select}) GROUP BY i, j", [minx, cell_x, miny, cell_y, *params]


def _edge_rows(
    conn: sqlite3.Connection,
    layer: LayerInfo,
    query: BinQuery,
    time_field: str | None,
    value_field: str | None,
) -> list[tuple[Any, ...]]:
    """Return one cell row per feature crossing the bbox's edge that meets it."""
    select, source, params = _query_parts(layer, query, time_field, value_field)
    minx, miny, maxx, maxy = query.bbox
    sql = (
        f"{select}, t.{quote_identifier(layer.geometry_column)}{source} "
        "AND (r.minx < ? OR r.maxx > ? OR r.miny < ? OR r.maxy > ?)"
    )
    box = shapely.box(minx, miny, maxx, maxy)
    cell_x, cell_y = (maxx - minx) / query.nx, (maxy - miny) / query.ny
    rows: list[tuple[Any, ...]] = []
    for cx, cy, day, value, blob in conn.execute(
        sql, [*params, minx, maxx, miny, maxy]
    ):
        geometry = decode_geometry(blob)
        if geometry is None or not geometry.intersects(box):
            continue
        i, j = int((cx - minx) // cell_x), int((cy - miny) // cell_y)
        rows.append((i, j, 1, cx, cy, day, day, day, value, value))
    return rows


def _query_parts(
    layer: LayerInfo,
    query: BinQuery,
    time_field: str | None,
    value_field: str | None,
) -> tuple[str, str, list[Any]]:
    """Return the SELECT of (cx, cy, day, value), its FROM/WHERE and parameters."""
    if layer.rtree is None:
        raise PublishError(
            f"layer {layer.table!r} has no R-tree spatial index; rewrite it with "
            "an index (pyogrio/GDAL create one by default)"
        )
    for name in (time_field, value_field):
        if name is not None and name not in layer.columns:
            raise PublishError(f"layer {layer.table!r} has no column {name!r}")
    minx, miny, maxx, maxy = query.bbox
    day = "NULL" if time_field is None else _day_expression(layer, time_field)
    value = "NULL" if value_field is None else f"t.{quote_identifier(value_field)}"
    select = (
        "SELECT (r.minx + r.maxx) / 2 AS cx, (r.miny + r.maxy) / 2 AS cy, "
        f"{day} AS day, {value} AS value"
    )
    source = (
        f" FROM {quote_identifier(layer.table)} AS t "
        f"JOIN {quote_identifier(layer.rtree)} AS r "
        f"ON t.{quote_identifier(layer.primary_key)} = r.id "
        "WHERE r.minx <= ? AND r.maxx >= ? AND r.miny <= ? AND r.maxy >= ?"
    )
    params: list[Any] = [maxx, minx, maxy, miny]
    if query.interval is not None:
        if time_field is None:
            raise PublishError(f"layer {layer.table!r} has no time field to filter on")
        clause, values = _time_clause(layer, time_field, query.interval)
        source += f" AND {clause}"
        params.extend(values)
    return select, source, params


def _day_expression(layer: LayerInfo, column: str) -> str:
    """Return SQL giving the column as days since 1970-01-01 (fractional)."""
    return f"(julianday(t.{quote_identifier(column)}) - {_JULIAN_UNIX_EPOCH})"


def _time_clause(
    layer: LayerInfo, column: str, interval: TimeInterval
) -> tuple[str, list[Any]]:
    """Return the SQL keeping rows whose date meets ``interval``.

    As in burnscape's GeoPackage provider: ``DATE`` columns compare as ISO
    dates, others as UTC text where a bare date lasts its whole day.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if layer.columns.get(column) == "DATE":
        quoted = quote_identifier(column)
        if interval.end is not None:
            clauses.append(f"{quoted} <= ?")
            params.append(interval.end.date().isoformat())
        if interval.start is not None:
            clauses.append(f"{quoted} >= ?")
            params.append(interval.start.date().isoformat())
    else:
        if interval.end is not None:
            clauses.append(f"{time_sql(column)} <= ?")
            params.append(time_text(interval.end))
        if interval.start is not None:
            clauses.append(f"{time_sql(column, end=True)} >= ?")
            params.append(time_text(interval.start))
    return "(" + (" AND ".join(clauses) or "1") + ")", params


def _assemble(
    rows: list[tuple[Any, ...]], query: BinQuery, value_field: str | None
) -> dict[str, Any]:
    """Merge rows of cells clipped to the grid and lay them out column-wise.

    A feature meeting the bbox may have its centre just outside it; it is
    counted in the nearest edge cell.
    """
    merged: dict[tuple[int, int], list[Any]] = {}
    for i, j, count, lon, lat, day_min, day_mean, day_max, v_mean, v_max in rows:
        key = (min(max(int(i), 0), query.nx - 1), min(max(int(j), 0), query.ny - 1))
        cell = merged.get(key)
        if cell is None:
            merged[key] = [count, lon, lat, day_min, day_mean, day_max, v_mean, v_max]
            continue
        merged[key] = _merge_cells(
            cell, [count, lon, lat, day_min, day_mean, day_max, v_mean, v_max]
        )
    keys = sorted(merged)
    columns: dict[str, list[Any]] = {
        "i": [k[0] for k in keys],
        "j": [k[1] for k in keys],
    }
    names = ["count", "lon", "lat", "day_min", "day_mean", "day_max"]
    if value_field is not None:
        names += [f"{value_field}_mean", f"{value_field}_max"]
    for index, name in enumerate(names):
        columns[name] = [_rounded(name, merged[k][index]) for k in keys]
    minx, miny, maxx, maxy = query.bbox
    return {
        "bbox": list(query.bbox),
        "nx": query.nx,
        "ny": query.ny,
        "cell_size": [(maxx - minx) / query.nx, (maxy - miny) / query.ny],
        "numberMatched": int(sum(columns["count"])),
        "cells": columns,
    }


def _merge_cells(first: list[Any], second: list[Any]) -> list[Any]:
    """Combine two partial cells (count-weighted means, min/max)."""
    n1, n2 = first[0], second[0]
    total = n1 + n2

    def mean(a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return a if b is None else b
        return (a * n1 + b * n2) / total

    def pick(a: float | None, b: float | None, how: Any) -> float | None:
        return a if b is None else b if a is None else how(a, b)

    return [
        total,
        mean(first[1], second[1]),
        mean(first[2], second[2]),
        pick(first[3], second[3], min),
        mean(first[4], second[4]),
        pick(first[5], second[5], max),
        mean(first[6], second[6]),
        pick(first[7], second[7], max),
    ]


def _rounded(name: str, value: Any) -> Any:
    if value is None or name == "count":
        return value
    return round(float(value), 6 if name in ("lon", "lat") else 4)
