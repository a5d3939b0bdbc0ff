"""Cube stage: put values read on a product's own grid onto a tile of the region.

Resampling is rasterio's (GDAL's warper); burnscape only works out which window
of the source a tile needs, so that a worker reads no more than one tile's
worth of a granule whatever the region's size.
"""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from pyproj import CRS
from rasterio.crs import CRS as RioCRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError
from rasterio.warp import reproject, transform_bounds

from burnscape.cube.grid import Grid, Tile
from burnscape.errors import GranuleReadError

__all__ = ["SourceWindow", "regrid", "source_window", "tile_transform"]

_PAD = 2


class SourceWindow:
    """Rows ``row0:row1`` and columns ``col0:col1`` of a source array."""

    def __init__(self, row0: int, row1: int, col0: int, col1: int) -> None:
        self.row0, self.row1, self.col0, self.col1 = row0, row1, col0, col1

    def transform(self, source: Affine) -> Affine:
        """Return the transform of the window's first pixel corner."""
        return source @ Affine.translation(self.col0, self.row0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """Return the (row, column) slices of the window."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)


def tile_transform(grid: Grid, tile: Tile) -> Affine:
    """Return the affine transform of a tile's upper-left pixel corner."""
    return grid.transform @ Affine.translation(tile.x0, tile.y0)


def source_window(
    source_transform: Affine,
    source_crs: CRS,
    source_shape: tuple[int, int],
    grid: Grid,
    tile: Tile,
) -> SourceWindow | None:
    """Return the source window a tile needs, or None when they do not meet.

    The tile's bounds are carried into the source CRS (edges densified), turned
    into rows and columns through the inverse transform (any orientation), and
    padded by two pixels for the resampling kernel.
    """
    transform = tile_transform(grid, tile)
    height, width = tile.shape
    west, north = transform @ (0, 0)
    east, south = transform @ (width, height)
    try:
        bounds = transform_bounds(
            _rio_crs(grid.crs),
            _rio_crs(source_crs),
            west,
            min(south, north),
            east,
            max(south, north),
            densify_pts=21,
        )
    except CRSError as err:
        raise GranuleReadError(
            f"cannot relate the source CRS to the grid: {err}"
        ) from err
    rows, cols = source_shape
    if not all(math.isfinite(value) for value in bounds):
        return SourceWindow(0, rows, 0, cols)
    inverse = ~source_transform
    corners = [
        inverse @ (x, y) for x in (bounds[0], bounds[2]) for y in (bounds[1], bounds[3])
    ]
    col0 = max(0, math.floor(min(c for c, _ in corners)) - _PAD)
    col1 = min(cols, math.ceil(max(c for c, _ in corners)) + _PAD)
    row0 = max(0, math.floor(min(r for _, r in corners)) - _PAD)
    row1 = min(rows, math.ceil(max(r for _, r in corners)) + _PAD)
    if row0 >= row1 or col0 >= col1:
        return None
    return SourceWindow(row0, row1, col0, col1)


def regrid(
    values: np.ndarray,
    source_transform: Affine,
    source_crs: CRS,
    grid: Grid,
    tile: Tile,
    resampling: Resampling = Resampling.nearest,
) -> np.ndarray:
    """Resample float32 values (NaN = no data) onto a tile of the grid.

    Parameters
    ----------
    values
        2-D float32 source values, NaN where there is no data.
    source_transform, source_crs
        Where ``values`` lie; any orientation (south-up too).
    grid, tile
        The destination.
    resampling
        rasterio's resampling method (nearest by default: values stay
        observed values, no blending across fill).

    Returns
    -------
    numpy.ndarray
        float32 of ``tile.shape``, NaN where the source has no data.
    """
    destination = np.full(tile.shape, np.nan, dtype=np.float32)
    if values.size == 0:
        return destination
    reproject(
        source=np.ascontiguousarray(values, dtype=np.float32),
        destination=destination,
        src_transform=source_transform,
        src_crs=_rio_crs(source_crs),
        src_nodata=np.nan,
        dst_transform=tile_transform(grid, tile),
        dst_crs=_rio_crs(grid.crs),
        dst_nodata=np.nan,
        resampling=resampling,
    )
    return destination


def _rio_crs(crs: CRS) -> RioCRS:
    return RioCRS.from_wkt(crs.to_wkt())
