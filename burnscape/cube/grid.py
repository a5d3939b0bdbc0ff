"""Cube stage: the region grid (CRS, transform, shape, coordinates, tiles)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from burnscape.config import RegionConfig

__all__ = ["Grid", "Tile", "grid_from_region"]


@dataclass(frozen=True)
class Tile:
    """A rectangular block of the grid: rows ``y0:y1`` and columns ``x0:x1``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """Return the tile's (rows, columns)."""
        return self.y1 - self.y0, self.x1 - self.x0


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, upper-left origin, pixel size and shape.

    Frozen and hashable so that Dask tokenises it deterministically.
    """

    crs_wkt: str
    x_min: float
    y_max: float
    pixel_size: float
    height: int
    width: int

    @property
    def crs(self) -> CRS:
        """Return the grid's CRS."""
        return CRS.from_wkt(self.crs_wkt)

    @property
    def transform(self) -> Affine:
        """Return the affine transform from (col, row) to (x, y) of pixel corners."""
        return Affine(
            self.pixel_size, 0.0, self.x_min, 0.0, -self.pixel_size, self.y_max
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Return (rows, columns)."""
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Return (minx, miny, maxx, maxy) in the grid's CRS."""
        return (
            self.x_min,
            self.y_max - self.height * self.pixel_size,
            self.x_min + self.width * self.pixel_size,
            self.y_max,
        )

    def x_coords(self) -> np.ndarray:
        """Return pixel-centre x coordinates, ascending (float64)."""
        return self.x_min + self.pixel_size * (np.arange(self.width) + 0.5)

    def y_coords(self) -> np.ndarray:
        """Return pixel-centre y coordinates, descending (north-up, float64)."""
        return self.y_max - self.pixel_size * (np.arange(self.height) + 0.5)

    def bounds_wgs84(self) -> tuple[float, float, float, float]:
        """Return the grid's bounds in longitude/latitude (densified edges)."""
        to_wgs84 = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        return to_wgs84.transform_bounds(*self.bounds, densify_pts=21)

    def tiles(self, size: int) -> Iterator[Tile]:
        """Yield tiles of at most ``size`` × ``size`` pixels aligned to ``size``."""
        for y0 in range(0, self.height, size):
            for x0 in range(0, self.width, size):
                yield Tile(
                    y0, min(y0 + size, self.height), x0, min(x0 + size, self.width)
                )

    def pixel_area_m2(self) -> float | None:
        """Return a pixel's area in square metres for projected grids, else None."""
        crs = self.crs
        if crs.is_geographic:
            return None
        factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        return (self.pixel_size * factor) ** 2


def grid_from_region(region: RegionConfig) -> Grid:
    """Build the grid of a workflow's region: origin at the bbox's upper-left corner."""
    minx, miny, maxx, maxy = region.bbox
    height = max(1, math.ceil(round((maxy - miny) / region.pixel_size, 6)))
    width = max(1, math.ceil(round((maxx - minx) / region.pixel_size, 6)))
    return Grid(
        crs_wkt=CRS.from_user_input(region.crs).to_wkt(),
        x_min=minx,
        y_max=maxy,
        pixel_size=region.pixel_size,
        height=height,
        width=width,
    )
