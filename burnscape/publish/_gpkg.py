"""Publish stage: read GeoPackage feature tables with plain sqlite3 (no SpatiaLite).

The GeoPackage encoding (OGC 12-128r18) stores each geometry as a small header
(magic ``GP``, version, flags, SRS id, optional envelope) followed by standard
WKB. This module parses that header, decodes the WKB with shapely and reads
the metadata tables (``gpkg_contents``, ``gpkg_geometry_columns``,
``gpkg_spatial_ref_sys``, ``gpkg_extensions``) that describe a layer.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

import shapely
from shapely.geometry.base import BaseGeometry

from burnscape.errors import StoreError

__all__ = [
    "LayerInfo",
    "connect_readonly",
    "decode_geometry",
    "geometry_envelope",
    "list_feature_tables",
    "quote_identifier",
    "read_layer_info",
    "time_sql",
    "time_text",
]

# envelope indicator (flags bits 1-3) -> number of doubles in the envelope
_ENVELOPE_DOUBLES = {0: 0, 1: 4, 2: 6, 3: 6, 4: 8}

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@dataclass(frozen=True)
class LayerInfo:
    """What a GeoPackage feature table holds and how it is indexed.

    Attributes
    ----------
    table, geometry_column
        Table name and the name of its geometry column.
    geometry_type
        ``gpkg_geometry_columns.geometry_type_name`` (e.g. ``MULTIPOLYGON``).
    srs_id
        The layer's ``srs_id``; ``crs_uri`` is its OGC URI (CRS84 for
        EPSG:4326, whose GeoPackage coordinates are longitude, latitude).
    primary_key
        The integer primary key column (``fid`` for GDAL-written files).
    columns
        Attribute columns (neither key nor geometry) -> declared SQL type,
        upper-case.
    rtree
        Name of the ``rtree_<table>_<column>`` spatial index, or None.
    extent
        (minx, miny, maxx, maxy) from ``gpkg_contents``, or None.
    """

    table: str
    geometry_column: str
    geometry_type: str
    srs_id: int
    crs_uri: str
    primary_key: str
    columns: dict[str, str] = field(default_factory=dict)
    rtree: str | None = None
    extent: tuple[float, float, float, float] | None = None


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """Open a GeoPackage read-only; the connection may move between threads.

    Raises
    ------
    StoreError
        The file does not exist or is not an SQLite database.
    """
    target = Path(path)
    if not target.is_file():
        raise StoreError(
            f"GeoPackage {target} does not exist: run the events stage first"
        )
    try:
        conn = sqlite3.connect(
            f"{target.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{target} is not a GeoPackage (SQLite) file: {err}") from err
    return conn


def list_feature_tables(conn: sqlite3.Connection) -> list[str]:
    """Return the names of the feature tables listed in ``gpkg_contents``."""
    rows = conn.execute(
        "SELECT table_name FROM gpkg_contents WHERE data_type = 'features'"
    ).fetchall()
    return [row[0] for row in rows]


def read_layer_info(conn: sqlite3.Connection, table: str) -> LayerInfo:
    """Describe one feature table of an open GeoPackage.

    Raises
    ------
    StoreError
        The table is not a feature table of this GeoPackage.
    """
    row = conn.execute(
        "SELECT column_name, geometry_type_name, srs_id FROM gpkg_geometry_columns "
        "WHERE table_name = ?",
        (table,),
    ).fetchone()
    if row is None:
        valid = ", ".join(list_feature_tables(conn)) or "none"
        raise StoreError(
            f"no feature table {table!r} in the GeoPackage (found: {valid})"
        )
    geometry_column, geometry_type, srs_id = row

    columns: dict[str, str] = {}
    primary_key = "fid"
    for _, name, decl_type, _, _, is_pk in conn.execute(
        f"PRAGMA table_info({quote_identifier(table)})"
    ):
        if is_pk:
            primary_key = name
        elif name != geometry_column:
            columns[name] = (decl_type or "TEXT").upper()

    return LayerInfo(
        table=table,
        geometry_column=geometry_column,
        geometry_type=(geometry_type or "GEOMETRY").upper(),
        srs_id=int(srs_id),
        crs_uri=_crs_uri(conn, int(srs_id)),
        primary_key=primary_key,
        columns=columns,
        rtree=_find_rtree(conn, table, geometry_column),
        extent=_read_extent(conn, table),
    )


def decode_geometry(blob: bytes | None) -> BaseGeometry | None:
    """Decode a GeoPackage geometry blob into a shapely geometry (None if empty).

    Raises
    ------
    StoreError
        The blob lacks the ``GP`` magic or has an unknown envelope code.
    """
    if blob is None:
        return None
    offset, empty = _header_size(blob)
    if empty:
        return None
    return shapely.from_wkb(bytes(blob[offset:]))


def geometry_envelope(blob: bytes | None) -> tuple[float, float, float, float] | None:
    """Return (minx, miny, maxx, maxy) of a geometry blob (header envelope if any)."""
    if blob is None:
        return None
    flags = blob[3]
    indicator = (flags >> 1) & 0b111
    if indicator and not (flags >> 4) & 1:
        order = "<" if flags & 1 else ">"
        minx, maxx, miny, maxy = struct.unpack_from(f"{order}4d", blob, 8)
        return minx, miny, maxx, maxy
    geometry = decode_geometry(blob)
    if geometry is None or geometry.is_empty:
        return None
    minx, miny, maxx, maxy = geometry.bounds
    return minx, miny, maxx, maxy


def time_sql(column: str, *, end: bool = False) -> str:
    """Return SQL turning a date/date-time column into sortable UTC text.

    The text is ``YYYY-MM-DDTHH:MM:SS.SSS`` (SQLite's ``%f``), offsets
    applied. A bare date is its day's first millisecond, or with ``end`` its
    last, so that a day-long record compares as the interval it stands for.
    """
    quoted = quote_identifier(column)
    plain = f"strftime('%Y-%m-%dT%H:%M:%f', {quoted})"
    if not end:
        return plain
    last = f"strftime('%Y-%m-%dT%H:%M:%f', {quoted}, '+1 day', '-0.001 seconds')"
    return f"(CASE WHEN length({quoted}) = 10 THEN {last} ELSE {plain} END)"


def time_text(value: dt.datetime) -> str:
    """Format an aware datetime as :func:`time_sql` does (UTC, milliseconds)."""
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}"


def quote_identifier(name: str) -> str:
    """Quote an SQL identifier (table or column name) for SQLite."""
    return '"' + name.replace('"', '""') + '"'


def _header_size(blob: bytes) -> tuple[int, bool]:
    if len(blob) < 8 or blob[0:2] != b"GP":
        raise StoreError("geometry blob is not GeoPackage-encoded (no 'GP' magic)")
    flags = blob[3]
    indicator = (flags >> 1) & 0b111
    if indicator not in _ENVELOPE_DOUBLES:
        raise StoreError(f"geometry blob has an invalid envelope code {indicator}")
    empty = bool((flags >> 4) & 1)
    return 8 + 8 * _ENVELOPE_DOUBLES[indicator], empty


def _crs_uri(conn: sqlite3.Connection, srs_id: int) -> str:
    row = conn.execute(
        "SELECT organization, organization_coordsys_id FROM gpkg_spatial_ref_sys "
        "WHERE srs_id = ?",
        (srs_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return CRS84_URI
    organization, code = str(row[0]).upper(), int(row[1])
    if organization == "EPSG" and code == 4326:
        return CRS84_URI
    return f"http://www.opengis.net/def/crs/{organization}/0/{code}"


def _find_rtree(conn: sqlite3.Connection, table: str, column: str) -> str | None:
    name = f"rtree_{table}_{column}"
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    try:
        conn.execute(f"SELECT id FROM {quote_identifier(name)} LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        return None
    return name


def _read_extent(
    conn: sqlite3.Connection, table: str
) -> tuple[float, float, float, float] | None:
    row = conn.execute(
        "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?",
        (table,),
    ).fetchone()
    if row is None or any(value is None for value in row):
        return None
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])
