"""Publish stage: a pygeoapi feature provider for GeoPackage layers, with datetime.

pygeoapi's own SQLite/GeoPackage provider needs SpatiaLite loaded as an SQLite
extension and cannot filter by time. This provider reads GeoPackages with the
standard library's ``sqlite3`` only: geometries are decoded from the GeoPackage
binary encoding with shapely, bbox queries use the layer's R-tree index
(``rtree_<table>_<column>``) when it exists, and ``datetime`` filters compare
against one time field or a start/end pair (an event matches when its interval
overlaps the requested one).

Configuration (one entry of a collection's ``providers`` list)::

    - type: feature
      name: burnscape.publish.geopackage.GeoPackageProvider
      data: /path/to/outputs/burnscape.gpkg
      table: fire_events              # the layer
      id_field: event_id              # optional; default: the integer key
      time_field: first_burn_date     # optional; needed for datetime queries
      end_time_field: last_burn_date  # optional; makes each record an interval
      title_field: event_id           # optional
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shapely
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
    ProviderQueryError,
)
from pygeoapi.util import crs_transform

from burnscape.errors import StoreError
from burnscape.publish._cql import CqlError, spatial_predicate, to_sql
from burnscape.publish._gpkg import (
    LayerInfo,
    connect_readonly,
    decode_geometry,
    geometry_envelope,
    quote_identifier,
    read_layer_info,
    time_sql,
    time_text,
)
from burnscape.publish._time import TimeInterval, parse_datetime_parameter

__all__ = ["GeoPackageProvider"]

logger = logging.getLogger(__name__)

_INTEGER_TYPES = ("INT", "INTEGER", "MEDIUMINT", "SMALLINT", "TINYINT", "BIGINT")
_NUMBER_TYPES = ("REAL", "DOUBLE", "FLOAT", "NUMERIC")

_local = threading.local()
_layer_cache: dict[tuple[str, int, str], LayerInfo] = {}
_layer_lock = threading.Lock()


class GeoPackageProvider(BaseProvider):
    """Serve one GeoPackage feature table through OGC API Features.

    Supports bbox (exact intersection, R-tree accelerated), datetime
    (instants, intervals, open ends), limit/offset, property equality
    filters, CQL2 filters (see :mod:`burnscape.publish._cql`), sortby,
    properties selection, skipGeometry, ``resulttype=hits``, get by id and
    queryables. See the module docstring for the YAML block.
    """

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        self.table: str = provider_def.get("table") or ""
        if not self.table:
            raise ProviderConnectionError("GeoPackage provider needs a 'table' key")
        self.end_time_field: str | None = provider_def.get("end_time_field")
        try:
            self._conn = _connection(Path(self.data))
            self.layer = _layer_info(self._conn, Path(self.data), self.table)
        except StoreError as err:
            logger.error("Cannot open layer %s of %s: %s", self.table, self.data, err)
            raise ProviderConnectionError() from err
        for name in (self.id_field, self.time_field, self.end_time_field):
            if (
                name
                and name not in self.layer.columns
                and name != self.layer.primary_key
            ):
                raise ProviderConnectionError(
                    f"field {name!r} is not a column of {self.table!r}"
                )
        self._fields = self.get_fields()

    def get_fields(self) -> dict[str, dict[str, str]]:
        """Return the layer's attribute columns as JSON Schema types."""
        fields: dict[str, dict[str, str]] = {}
        for name, decl_type in self.layer.columns.items():
            schema = _json_schema_type(decl_type)
            if schema is not None:
                fields[name] = schema
        return fields

    @crs_transform
    def query(
        self,
        offset: int = 0,
        limit: int = 10,
        resulttype: str = "results",
        bbox: Sequence[float] | None = None,
        datetime_: str | None = None,
        properties: Sequence[tuple[str, str]] | None = None,
        sortby: Sequence[dict[str, str]] | None = None,
        select_properties: Sequence[str] | None = None,
        skip_geometry: bool = False,
        q: str | None = None,
        filterq: Any = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Query the layer; return a GeoJSON FeatureCollection with counts.

        Raises
        ------
        ProviderInvalidQueryError
            A parameter cannot be applied to this layer (HTTP 400).
        ProviderQueryError
            The database failed while answering (HTTP 500, detail logged).
        """
        where, params = self._where(bbox or [], datetime_, properties or [])
        if filterq is not None:
            try:
                clause, values = to_sql(
                    filterq, self.layer.columns, self.layer.geometry_column
                )
            except CqlError as err:
                raise ProviderInvalidQueryError(user_msg=str(err)) from err
            where.append(clause)
            params.extend(values)
        order = self._order_by(sortby or [])
        exact = bool(bbox) and "POINT" not in self.layer.geometry_type

        try:
            if exact and self.layer.rtree:
                where.append(
                    f"{quote_identifier(self.layer.primary_key)} NOT IN "
                    "(SELECT value FROM json_each(?))"
                )
                params.append(json.dumps(self._envelope_only(_exact_box(bbox or []))))
            if exact and not self.layer.rtree:
                matched, rows = self._fetch_exact(
                    where,
                    params,
                    order,
                    limit,
                    offset,
                    _exact_box(bbox or []),
                    resulttype,
                )
            else:
                matched = self._count(where, params)
                rows = (
                    []
                    if resulttype == "hits"
                    else self._fetch(where, params, order, limit, offset)
                )
        except sqlite3.Error as err:
            logger.error("Query of %s failed: %s", self.table, err, exc_info=True)
            raise ProviderQueryError() from err

        features = [
            self._to_feature(row, select_properties or [], skip_geometry)
            for row in rows
        ]
        return {
            "type": "FeatureCollection",
            "features": features,
            "numberMatched": matched,
            "numberReturned": len(features),
        }

    @crs_transform
    def get(self, identifier: str, **kwargs: Any) -> dict[str, Any]:
        """Return one feature by its id (``id_field``, else the integer key).

        Raises
        ------
        ProviderItemNotFoundError
            No feature has this id (HTTP 404).
        """
        column = self.id_field or self.layer.primary_key
        try:
            value = self._cast(column, str(identifier))
        except ProviderInvalidQueryError as err:
            raise ProviderItemNotFoundError(user_msg=f"no item {identifier!r}") from err
        sql = f"{self._select()} WHERE {quote_identifier(column)} = ? LIMIT 1"
        row = self._conn.execute(sql, (value,)).fetchone()
        if row is None:
            raise ProviderItemNotFoundError(user_msg=f"no item {identifier!r}")
        return self._to_feature(row, [], False)

    def __repr__(self) -> str:
        return f"<GeoPackageProvider> {self.data}:{self.table}"

    # --- query building -------------------------------------------------

    def _where(
        self,
        bbox: Sequence[float],
        datetime_: str | None,
        properties: Sequence[tuple[str, str]],
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if bbox:
            clause, values = self._bbox_clause(bbox)
            where.append(clause)
            params.extend(values)
        if datetime_:
            clause, values = self._time_clause(datetime_)
            where.append(clause)
            params.extend(values)
        for name, value in properties:
            if name not in self.layer.columns:
                raise ProviderInvalidQueryError(user_msg=f"unknown property {name!r}")
            where.append(f"{quote_identifier(name)} = ?")
            params.append(self._cast(name, value))
        return where, params

    def _bbox_clause(self, bbox: Sequence[float]) -> tuple[str, list[float]]:
        boxes = _split_antimeridian(_exact_box(bbox))
        pk = quote_identifier(self.layer.primary_key)
        clauses: list[str] = []
        params: list[float] = []
        for minx, miny, maxx, maxy in boxes:
            if self.layer.rtree:
                clauses.append(
                    f"{pk} IN (SELECT id FROM {quote_identifier(self.layer.rtree)} "
                    "WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ?)"
                )
                params.extend([maxx, minx, maxy, miny])
            else:
                geom = quote_identifier(self.layer.geometry_column)
                clauses.append(f"bs_envelope_meets({geom}, ?, ?, ?, ?)")
                params.extend([minx, miny, maxx, maxy])
        return "(" + " OR ".join(clauses) + ")", params

    def _time_clause(self, text: str) -> tuple[str, list[Any]]:
        if not self.time_field:
            raise ProviderInvalidQueryError(
                user_msg=f"collection {self.name!r} has no time field to filter on"
            )
        try:
            interval = parse_datetime_parameter(text)
        except ValueError as err:
            raise ProviderInvalidQueryError(user_msg=str(err)) from err
        assert interval is not None
        start_col = self.time_field
        end_col = self.end_time_field or self.time_field
        if self._is_date(start_col) and self._is_date(end_col):
            return _date_clause(start_col, end_col, interval)
        return _text_clause(start_col, end_col, interval)

    def _order_by(self, sortby: Sequence[dict[str, str]]) -> str:
        terms = []
        for item in sortby:
            name = item["property"]
            if name not in self.layer.columns:
                raise ProviderInvalidQueryError(user_msg=f"cannot sort by {name!r}")
            direction = "DESC" if item.get("order") == "-" else "ASC"
            terms.append(f"{quote_identifier(name)} {direction}")
        terms.append(quote_identifier(self.layer.primary_key))
        return "ORDER BY " + ", ".join(terms)

    def _envelope_only(self, box: tuple[float, float, float, float]) -> list[int]:
        """Return keys whose envelope meets ``box`` but whose geometry does not.

        Only features whose envelope crosses the box's edge need the exact
        test; those inside it intersect it for certain.
        """
        assert self.layer.rtree is not None
        rtree = quote_identifier(self.layer.rtree)
        pk = quote_identifier(self.layer.primary_key)
        geom = quote_identifier(self.layer.geometry_column)
        parts = _split_antimeridian(box)
        shapes = [shapely.box(*part) for part in parts]
        misses: list[int] = []
        seen: set[int] = set()
        for minx, miny, maxx, maxy in parts:
            sql = (
                f"SELECT {pk}, {geom} FROM {quote_identifier(self.table)} "
                f"WHERE {pk} IN "
                f"(SELECT id FROM {rtree} WHERE minx <= ? AND maxx >= ? AND miny <= ? "
                "AND maxy >= ? AND (minx < ? OR maxx > ? OR miny < ? OR maxy > ?))"
            )
            values = [maxx, minx, maxy, miny, minx, maxx, miny, maxy]
            for key, blob in self._conn.execute(sql, values):
                if key in seen:
                    continue
                seen.add(key)
                geometry = decode_geometry(blob)
                if geometry is None or not any(geometry.intersects(b) for b in shapes):
                    misses.append(int(key))
        return misses

    def _select(self) -> str:
        columns = [
            self.layer.primary_key,
            self.layer.geometry_column,
            *self.layer.columns,
        ]
        names = ", ".join(quote_identifier(name) for name in columns)
        return f"SELECT {names} FROM {quote_identifier(self.table)}"

    # --- execution ------------------------------------------------------

    def _count(self, where: list[str], params: list[Any]) -> int:
        sql = f"SELECT count(*) FROM {quote_identifier(self.table)}{_where_sql(where)}"
        return int(self._conn.execute(sql, params).fetchone()[0])

    def _fetch(
        self, where: list[str], params: list[Any], order: str, limit: int, offset: int
    ) -> list[tuple[Any, ...]]:
        sql = f"{self._select()}{_where_sql(where)} {order} LIMIT ? OFFSET ?"
        return self._conn.execute(sql, [*params, limit, offset]).fetchall()

    def _fetch_exact(
        self,
        where: list[str],
        params: list[Any],
        order: str,
        limit: int,
        offset: int,
        box: tuple[float, float, float, float],
        resulttype: str,
    ) -> tuple[int, list[tuple[Any, ...]]]:
        boxes = [shapely.box(*part) for part in _split_antimeridian(box)]
        sql = f"{self._select()}{_where_sql(where)} {order}"
        matched = 0
        rows: list[tuple[Any, ...]] = []
        for row in self._conn.execute(sql, params):
            geometry = decode_geometry(row[1])
            if geometry is None or not any(geometry.intersects(b) for b in boxes):
                continue
            if resulttype != "hits" and offset <= matched < offset + limit:
                rows.append(row)
            matched += 1
        return matched, rows

    def _to_feature(
        self, row: tuple[Any, ...], select: Sequence[str], skip_geometry: bool
    ) -> dict[str, Any]:
        key, blob, *values = row
        properties = dict(zip(self.layer.columns, values, strict=True))
        identifier = properties[self.id_field] if self.id_field in properties else key
        if select:
            properties = {k: v for k, v in properties.items() if k in select}
        geometry = None
        if not skip_geometry:
            shape = decode_geometry(blob)
            geometry = None if shape is None else shapely.geometry.mapping(shape)
        return {
            "type": "Feature",
            "id": identifier,
            "geometry": geometry,
            "properties": properties,
        }

    # --- types ----------------------------------------------------------

    def _is_date(self, column: str) -> bool:
        return self.layer.columns.get(column) == "DATE"

    def _cast(self, column: str, value: str) -> Any:
        decl_type = (
            "INTEGER"
            if column == self.layer.primary_key
            else self.layer.columns[column]
        )
        try:
            if decl_type.startswith(_INTEGER_TYPES):
                return int(value)
            if decl_type.startswith(_NUMBER_TYPES):
                return float(value)
            if decl_type == "BOOLEAN":
                return {"true": 1, "false": 0, "1": 1, "0": 0}[value.lower()]
        except (ValueError, KeyError) as err:
            raise ProviderInvalidQueryError(
                user_msg=f"{column} expects a {decl_type.lower()} value, not {value!r}"
            ) from err
        return value


def _json_schema_type(decl_type: str) -> dict[str, str] | None:
    if decl_type == "BLOB":
        return None
    if decl_type == "DATE":
        return {"type": "string", "format": "date"}
    if decl_type == "DATETIME":
        return {"type": "string", "format": "date-time"}
    if decl_type == "BOOLEAN":
        return {"type": "boolean"}
    if decl_type.startswith(_INTEGER_TYPES):
        return {"type": "integer"}
    if decl_type.startswith(_NUMBER_TYPES):
        return {"type": "number"}
    return {"type": "string"}


def _exact_box(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    if len(bbox) == 6:
        return bbox[0], bbox[1], bbox[3], bbox[4]
    if len(bbox) != 4:
        raise ProviderInvalidQueryError(user_msg="bbox needs 4 or 6 numbers")
    return bbox[0], bbox[1], bbox[2], bbox[3]


def _split_antimeridian(
    box: tuple[float, float, float, float],
) -> list[tuple[float, float, float, float]]:
    minx, miny, maxx, maxy = box
    if minx <= maxx:
        return [box]
    return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]


def _where_sql(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def _date_clause(
    start_col: str, end_col: str, interval: TimeInterval
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if interval.end is not None:
        clauses.append(f"{quote_identifier(start_col)} <= ?")
        params.append(interval.end.date().isoformat())
    if interval.start is not None:
        clauses.append(f"{quote_identifier(end_col)} >= ?")
        params.append(interval.start.date().isoformat())
    return "(" + " AND ".join(clauses) + ")", params


def _text_clause(
    start_col: str, end_col: str, interval: TimeInterval
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if interval.end is not None:
        clauses.append(f"{time_sql(start_col)} <= ?")
        params.append(time_text(interval.end))
    if interval.start is not None:
        clauses.append(f"{time_sql(end_col, end=True)} >= ?")
        params.append(time_text(interval.start))
    return "(" + " AND ".join(clauses) + ")", params


def _envelope_meets(
    blob: bytes | None, minx: float, miny: float, maxx: float, maxy: float
) -> int:
    envelope = geometry_envelope(blob)
    if envelope is None:
        return 0
    return int(
        envelope[0] <= maxx
        and envelope[2] >= minx
        and envelope[1] <= maxy
        and envelope[3] >= miny
    )


def _connection(path: Path) -> sqlite3.Connection:
    """Return this thread's read-only connection to ``path``, reopened if it changed."""
    connections: dict[str, tuple[int, sqlite3.Connection]] = getattr(
        _local, "connections", {}
    )
    _local.connections = connections
    key = str(path.resolve())
    stamp = _stamp(path)
    cached = connections.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    if cached is not None:
        cached[1].close()
    conn = connect_readonly(path)
    conn.create_function("bs_envelope_meets", 5, _envelope_meets, deterministic=True)
    conn.create_function("bs_spatial", 3, spatial_predicate, deterministic=True)
    connections[key] = (stamp, conn)
    return conn


def _layer_info(conn: sqlite3.Connection, path: Path, table: str) -> LayerInfo:
    key = (str(path.resolve()), _stamp(path), table)
    with _layer_lock:
        info = _layer_cache.get(key)
    if info is None:
        info = read_layer_info(conn, table)
        with _layer_lock:
            _layer_cache[key] = info
    return info


def _stamp(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError as err:
        raise StoreError(f"GeoPackage {path} does not exist") from err
