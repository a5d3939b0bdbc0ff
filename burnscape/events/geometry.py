"""Events stage: pixel areas on the ellipsoid and event polygons in EPSG:4326.

Areas are computed per pixel on the WGS 84 ellipsoid: each pixel's corners are
projected to the cylindrical equal-area grid EPSG:6933 and the cell's area is
the shoelace area of that quadrilateral. On a geographic (lat/lon) grid a cell
is an exact rectangle there, so the area is exact; on a projected grid (UTM at
30 m) the quadrilateral differs from the true cell by far less than 1e-6.
An event's ``area_ha`` is the sum of its pixels' areas, never square degrees.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import numpy as np
import rasterio.features
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Polygon, shape

if TYPE_CHECKING:
    from affine import Affine

logger = logging.getLogger(__name__)

__all__ = [
    "EQUAL_AREA_CRS",
    "WGS84",
    "as_valid_multipolygon",
    "grid_to_xy",
    "transformer_to_wgs84",
    "pixel_areas_m2",
    "polygonize_labels",
    "to_wgs84",
]

EQUAL_AREA_CRS = CRS.from_epsg(6933)
"""WGS 84 / NSIDC EASE-Grid 2.0 Global: cylindrical equal-area, used for areas."""

WGS84 = CRS.from_epsg(4326)
"""The CRS of every vector layer burnscape writes."""


def pixel_areas_m2(transform: Affine, crs: CRS, rows: slice, cols: slice) -> np.ndarray:
    """Return the ellipsoidal area in m² of each pixel of a window of a grid.

    Parameters
    ----------
    transform
        The grid's affine transform (pixel corners).
    crs
        The grid's CRS (geographic or projected).
    rows, cols
        The window, as slices with explicit start and stop.

    Returns
    -------
    numpy.ndarray
        (rows, cols) float64 areas in square metres.
    """
    n_rows, n_cols = rows.stop - rows.start, cols.stop - cols.start
    geographic = CRS.from_user_input(crs).is_geographic
    if geographic and not transform.b and not transform.d:
        column_areas = _cell_areas(
            transform, crs, rows, slice(cols.start, cols.start + 1)
        )
        return np.broadcast_to(column_areas, (n_rows, n_cols)).copy()
    return _cell_areas(transform, crs, rows, cols)


def polygonize_labels(labels: np.ndarray, transform: Affine) -> dict[int, MultiPolygon]:
    """Turn a label raster into one valid MultiPolygon per label, in the grid CRS.

    Parameters
    ----------
    labels
        (y, x) int32 labels, 0 = background.
    transform
        Affine transform of ``labels``.

    Returns
    -------
    dict
        Label -> MultiPolygon (valid; repaired with :func:`shapely.make_valid`
        where GDAL's polygons touch themselves).
    """
    parts: dict[int, list[Polygon]] = {}
    for geometry, value in rasterio.features.shapes(
        labels.astype(np.int32, copy=False),
        mask=labels > 0,
        connectivity=4,
        transform=transform,
    ):
        parts.setdefault(int(value), []).append(shape(geometry))
    return {label: as_valid_multipolygon(polygons) for label, polygons in parts.items()}


def grid_to_xy(
    transform: Affine, cols: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return CRS coordinates of fractional (column, row) grid positions."""
    xs = transform.a * cols + transform.b * rows + transform.c
    ys = transform.d * cols + transform.e * rows + transform.f
    return xs, ys


def transformer_to_wgs84(crs: CRS) -> Transformer:
    """Return a (cached) always-xy transformer from ``crs`` to EPSG:4326."""
    return _transformer(CRS.from_user_input(crs).to_wkt(), WGS84.to_wkt())


def to_wgs84(geometry: shapely.Geometry, crs: CRS) -> shapely.Geometry:
    """Reproject a geometry from ``crs`` to EPSG:4326 (lon, lat order), kept valid."""
    if CRS.from_user_input(crs).equals(WGS84):
        return geometry
    transformer = transformer_to_wgs84(crs)

    def move(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    moved = shapely.transform(geometry, move)
    if not moved.is_valid:
        moved = _only_polygons(shapely.make_valid(moved))
    return moved


def _cell_areas(transform: Affine, crs: CRS, rows: slice, cols: slice) -> np.ndarray:
    corner_rows = np.arange(rows.start, rows.stop + 1, dtype=np.float64)
    corner_cols = np.arange(cols.start, cols.stop + 1, dtype=np.float64)
    col_grid, row_grid = np.meshgrid(corner_cols, corner_rows)
    xs, ys = grid_to_xy(transform, col_grid, row_grid)
    transformer = _transformer(
        CRS.from_user_input(crs).to_wkt(), EQUAL_AREA_CRS.to_wkt()
    )
    ex, ey = transformer.transform(xs, ys)
    # shift to a local origin so the shoelace products keep their precision
    ex = np.asarray(ex) - ex[0, 0]
    ey = np.asarray(ey) - ey[0, 0]
    # corners in order: top-left, top-right, bottom-right, bottom-left
    x0, y0 = ex[:-1, :-1], ey[:-1, :-1]
    x1, y1 = ex[:-1, 1:], ey[:-1, 1:]
    x2, y2 = ex[1:, 1:], ey[1:, 1:]
    x3, y3 = ex[1:, :-1], ey[1:, :-1]
    twice = (
        (x0 * y1 - x1 * y0)
        + (x1 * y2 - x2 * y1)
        + (x2 * y3 - x3 * y2)
        + (x3 * y0 - x0 * y3)
    )
    return np.abs(twice) / 2.0


@functools.lru_cache(maxsize=16)
def _transformer(source_wkt: str, target_wkt: str) -> Transformer:
    return Transformer.from_crs(source_wkt, target_wkt, always_xy=True)


def as_valid_multipolygon(polygons: list[Polygon]) -> MultiPolygon:
    """Join polygons into a MultiPolygon, repaired with make_valid if needed."""
    multi = MultiPolygon(polygons)
    if not multi.is_valid:
        multi = _only_polygons(shapely.make_valid(multi))
    return multi


def _only_polygons(geometry: shapely.Geometry) -> MultiPolygon:
    """Keep the polygonal parts of a geometry as a MultiPolygon."""
    if isinstance(geometry, MultiPolygon):
        return geometry
    if isinstance(geometry, Polygon):
        return MultiPolygon([geometry])
    polygons: list[Polygon] = []
    for part in getattr(geometry, "geoms", []):
        if isinstance(part, Polygon):
            polygons.append(part)
        elif isinstance(part, MultiPolygon):
            polygons.extend(part.geoms)
    return MultiPolygon(polygons)
