"""Publish stage: translate CQL2 filters (pygeofilter AST) to SQLite with bound values.

pygeoapi parses ``filter=`` (CQL2 text) and CQL2 JSON bodies into a
pygeofilter AST; this module turns that AST into an SQLite ``WHERE`` clause
for a GeoPackage layer. Every value becomes a bound parameter and every
property name must be a column of the layer, so no request text reaches the
SQL itself. Spatial predicates call ``bs_spatial(op, geometry, wkb)``, a
Python function registered on the connection (shapely), since SpatiaLite is
not available.

Supported: AND, OR, NOT; =, <>, <, <=, >, >=; BETWEEN; LIKE (case-sensitive
unless ILIKE/CASEI); IN; IS NULL; INCLUDE/EXCLUDE; the spatial predicates
INTERSECTS, DISJOINT, CONTAINS, WITHIN, TOUCHES, CROSSES, OVERLAPS, EQUALS
(``s_intersects`` ... in CQL2 JSON) and BBOX; the temporal predicates BEFORE,
AFTER, DURING and TEQUALS (an instant).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import shapely
import shapely.errors
from pygeofilter import ast, values
from shapely.geometry import shape

from burnscape.publish._gpkg import (
    decode_geometry,
    quote_identifier,
    time_sql,
    time_text,
)

__all__ = ["CqlError", "spatial_predicate", "to_sql"]

logger = logging.getLogger(__name__)

_COMPARISON = {
    ast.ComparisonOp.EQ: "=",
    ast.ComparisonOp.NE: "<>",
    ast.ComparisonOp.LT: "<",
    ast.ComparisonOp.LE: "<=",
    ast.ComparisonOp.GT: ">",
    ast.ComparisonOp.GE: ">=",
}
_SPATIAL: dict[str, Callable[[Any, Any], bool]] = {
    "INTERSECTS": shapely.intersects,
    "DISJOINT": shapely.disjoint,
    "CONTAINS": shapely.contains,
    "WITHIN": shapely.within,
    "TOUCHES": shapely.touches,
    "CROSSES": shapely.crosses,
    "OVERLAPS": shapely.overlaps,
    "EQUALS": shapely.equals,
}
_GEOMETRY_NAMES = ("geometry", "geom", "the_geom")


class CqlError(ValueError):
    """A filter uses an unknown property or an unsupported construct."""


def to_sql(
    node: Any, columns: dict[str, str], geometry_column: str
) -> tuple[str, list[Any]]:
    """Return (SQL condition, parameters) for a pygeofilter AST node.

    Parameters
    ----------
    node
        The parsed filter.
    columns
        The layer's attribute columns -> declared SQL type.
    geometry_column
        The layer's geometry column (``geometry`` in a filter names it too).

    Raises
    ------
    CqlError
        Unknown property or unsupported operator.
    """
    return _Translator(columns, geometry_column).visit(node)


def spatial_predicate(op: str, blob: bytes | None, wkb: bytes) -> int:
    """Evaluate ``op`` between a GeoPackage geometry blob and WKB (for SQLite)."""
    geometry = decode_geometry(blob)
    if geometry is None:
        return 0
    try:
        return int(bool(_SPATIAL[op](geometry, shapely.from_wkb(wkb))))
    except shapely.errors.GEOSException:
        logger.warning("Spatial predicate %s failed on a stored geometry.", op)
        return 0


class _Translator:
    def __init__(self, columns: dict[str, str], geometry_column: str) -> None:
        self.columns = columns
        self.geometry_column = geometry_column

    def visit(self, node: Any) -> tuple[str, list[Any]]:
        if isinstance(node, ast.Not):
            sql, params = self.visit(node.sub_node)
            return f"(NOT {sql})", params
        if isinstance(node, ast.Combination):
            left, lparams = self.visit(node.lhs)
            right, rparams = self.visit(node.rhs)
            return f"({left} {node.op.value} {right})", [*lparams, *rparams]
        if isinstance(node, ast.Include):
            return ("0" if node.not_ else "1"), []
        if isinstance(node, ast.Comparison):
            return self._comparison(node)
        if isinstance(node, ast.Between):
            negate = "NOT " if node.not_ else ""
            params = [_literal(node.low), _literal(node.high)]
            return f"({self._column(node.lhs)} {negate}BETWEEN ? AND ?)", params
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.In):
            marks = ", ".join("?" for _ in node.sub_nodes)
            negate = "NOT " if node.not_ else ""
            params = [_literal(item) for item in node.sub_nodes]
            return f"({self._column(node.lhs)} {negate}IN ({marks}))", params
        if isinstance(node, ast.IsNull):
            negate = "NOT " if node.not_ else ""
            return f"({self._column(node.lhs)} IS {negate}NULL)", []
        if isinstance(node, ast.BBox):
            box = shapely.box(node.minx, node.miny, node.maxx, node.maxy)
            return self._spatial("INTERSECTS", node.lhs, box)
        if isinstance(node, ast.SpatialComparisonPredicate):
            return self._spatial(node.op.value, node.lhs, _geometry(node.rhs))
        if isinstance(node, ast.TemporalPredicate):
            return self._temporal(node)
        raise CqlError(f"filter construct {type(node).__name__} is not supported")

    def _column(self, node: Any) -> str:
        if not isinstance(node, ast.Attribute):
            raise CqlError("the left side of a comparison must be a property name")
        if node.name not in self.columns:
            raise CqlError(f"unknown property {node.name!r} in filter")
        return quote_identifier(node.name)

    def _comparison(self, node: Any) -> tuple[str, list[Any]]:
        lhs, rhs, op = node.lhs, node.rhs, _COMPARISON[node.op]
        if isinstance(rhs, ast.Attribute) and not isinstance(lhs, ast.Attribute):
            lhs, rhs = rhs, lhs
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        return f"({self._column(lhs)} {op} ?)", [_literal(rhs)]

    def _like(self, node: Any) -> tuple[str, list[Any]]:
        pattern = str(node.pattern)
        column = self._column(node.lhs)
        negate = "NOT " if node.not_ else ""
        if node.nocase:
            converted = _convert_pattern(pattern, node, "%", "_", "\\", "%_\\")
            return f"({column} {negate}LIKE ? ESCAPE '\\')", [converted]
        converted = _convert_pattern(pattern, node, "*", "?", None, "*?[")
        return f"({column} {negate}GLOB ?)", [converted]

    def _spatial(self, op: str, lhs: Any, geometry: Any) -> tuple[str, list[Any]]:
        if not isinstance(lhs, ast.Attribute) or (
            lhs.name not in _GEOMETRY_NAMES and lhs.name != self.geometry_column
        ):
            raise CqlError("spatial predicates take the geometry property first")
        column = quote_identifier(self.geometry_column)
        return f"(bs_spatial(?, {column}, ?) = 1)", [op, shapely.to_wkb(geometry)]

    def _temporal(self, node: Any) -> tuple[str, list[Any]]:
        self._column(node.lhs)
        start = time_sql(node.lhs.name)
        end = time_sql(node.lhs.name, end=True)
        low, high = _instant_bounds(node.rhs)
        op = node.op.name
        if op == "BEFORE":
            return f"({end} < ?)", [low]
        if op == "AFTER":
            return f"({start} > ?)", [high]
        if op == "DURING":
            return f"({start} >= ? AND {end} <= ?)", [low, high]
        if op == "TEQUALS":
            return f"({start} = ? AND {end} = ?)", [low, high]
        raise CqlError(f"temporal operator {op} is not supported")


def _literal(node: Any) -> Any:
    if isinstance(node, bool):
        return int(node)
    if isinstance(node, int | float | str):
        return node
    if isinstance(node, dt.datetime):
        return node.isoformat()
    if isinstance(node, dt.date):
        return node.isoformat()
    raise CqlError(f"value {node!r} is not a number, string, boolean or date")


def _geometry(value: Any) -> Any:
    if isinstance(value, values.Geometry | values.Envelope):
        try:
            geometry = shape(value.geometry)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            raise CqlError(f"invalid geometry in filter: {err}") from err
        if geometry.is_empty or not geometry.is_valid:
            raise CqlError("the filter's geometry is empty or invalid")
        return geometry
    raise CqlError("spatial predicates need a geometry or envelope value")


def _instant_bounds(value: Any) -> tuple[str, str]:
    if isinstance(value, values.Interval):
        start, end = value.start, value.end
        if not isinstance(start, dt.date) or not isinstance(end, dt.date):
            raise CqlError("temporal intervals need a start and an end")
        return _bound(start, end_of_day=False), _bound(end, end_of_day=True)
    if isinstance(value, dt.date):
        return _bound(value, end_of_day=False), _bound(value, end_of_day=True)
    raise CqlError("temporal predicates need a date, timestamp or interval")


def _bound(value: dt.date, *, end_of_day: bool) -> str:
    if not isinstance(value, dt.datetime):
        time = dt.time(23, 59, 59, 999000) if end_of_day else dt.time.min
        value = dt.datetime.combine(value, time, tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return time_text(value)


def _convert_pattern(
    pattern: str,
    node: Any,
    wildcard: str,
    single: str,
    escape: str | None,
    special: str,
) -> str:
    """Rewrite a CQL LIKE pattern for SQLite LIKE (``escape``) or GLOB (brackets)."""
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == node.escapechar and index + 1 < len(pattern):
            index += 1
            out.append(_literal_char(pattern[index], escape, special))
        elif char == node.wildcard:
            out.append(wildcard)
        elif char == node.singlechar:
            out.append(single)
        else:
            out.append(_literal_char(char, escape, special))
        index += 1
    return "".join(out)


def _literal_char(char: str, escape: str | None, special: str) -> str:
    if char not in special:
        return char
    return f"{escape}{char}" if escape else f"[{char}]"
