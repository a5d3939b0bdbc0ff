"""Cube stage: read one band of a scene onto a tile of the region grid."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from burnscape.cube.grid import Grid, Tile
from burnscape.errors import GranuleReadError

__all__ = ["BandFile", "read_band_tile"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandFile:
    """One band of a scene on disk and how its raw values become physical values.

    ``value = raw * scale + offset``; raw values equal to ``nodata`` are masked
    (NaN), never scaled.
    """

    band: str
    path: str
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None


def read_band_tile(band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
    """Read a band onto a tile of ``grid``, regridding when the file's grid differs.

    Parameters
    ----------
    band
        The file, its scaling and its nodata value.
    grid
        The region grid.
    tile
        The block of the grid to fill.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``tile.shape``; NaN where the file has no data or
        does not reach.

    Raises
    ------
    GranuleReadError
        The file cannot be opened or read.
    """
    window = Window(tile.x0, tile.y0, tile.x1 - tile.x0, tile.y1 - tile.y0)
    try:
        with rasterio.open(band.path) as src:
            nodata = band.nodata if band.nodata is not None else src.nodata
            if _same_grid(src, grid):
                raw = src.read(1, window=window, boundless=True, masked=False,
                               fill_value=nodata if nodata is not None else 0)
                valid = np.ones(raw.shape, bool) if nodata is None else raw != nodata
                if nodata is None:
                    valid &= _inside(src, grid, tile)
            else:
                with WarpedVRT(
                    src,
                    crs=grid.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=Resampling.nearest,
                    src_nodata=nodata,
                    add_alpha=nodata is None,
                ) as vrt:
                    raw = vrt.read(1, window=window)
                    if nodata is None:
                        valid = vrt.read(vrt.count, window=window) > 0
                    else:
                        valid = raw != nodata
    except (RasterioError, OSError) as err:
        raise GranuleReadError(
            f"cannot read band {band.band!r} from {band.path}: {err}; "
            "delete the file and re-run to download it again"
        ) from err
    values = raw.astype(np.float32) * np.float32(band.scale) + np.float32(band.offset)
    values[~valid] = np.nan
    return values


def _same_grid(src: rasterio.DatasetReader, grid: Grid) -> bool:
    """Tell whether a file shares the grid's CRS, pixel size and pixel alignment."""
    if src.crs is None or src.crs != rasterio.crs.CRS.from_wkt(grid.crs_wkt):
        return False
    ft, gt = src.transform, grid.transform
    if not (np.isclose(ft.a, gt.a) and np.isclose(ft.e, gt.e) and ft.b == 0 and ft.d == 0):
        return False
    col_off = (gt.c - ft.c) / ft.a
    row_off = (gt.f - ft.f) / ft.e
    aligned = np.isclose(col_off, round(col_off), atol=1e-3) and np.isclose(
        row_off, round(row_off), atol=1e-3
    )
    return bool(aligned and round(col_off) == 0 and round(row_off) == 0)


def _inside(src: rasterio.DatasetReader, grid: Grid, tile: Tile) -> np.ndarray:
    """Mask of the tile's pixels that fall inside the file's extent."""
    rows = np.arange(tile.y0, tile.y1)[:, None]
    cols = np.arange(tile.x0, tile.x1)[None, :]
    return (rows < src.height) & (cols < src.width)


def band_files_exist(bands: list[BandFile]) -> list[str]:
    """Return the paths among ``bands`` that do not exist."""
    return [band.path for band in bands if not Path(band.path).is_file()]
