"""Cube stage: Landsat, Sentinel-2 and other GeoTIFF/COG bands (rasterio).

Calibration comes from outside the file: STAC ``raster:bands`` scale and offset
(``value = raw * scale + offset``) or the workflow source's values, and, for
Sentinel-2 L2A/L1C from processing baseline 04.00 on, the radiometric offset
of -1000 DN (see :func:`burnscape.cube.scenes.sentinel2_offset`); the reader
only applies the :class:`BandFile`'s numbers. The nodata value is the band
file's, else the GeoTIFF's own. A file on another grid (CRS, pixel size,
alignment or orientation, south-up included) is warped by GDAL onto the tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from burnscape.cube._registry import TIFF_MAGICS, BandFile, Footprint, file_magic
from burnscape.cube._scaling import Scaling, decode
from burnscape.cube.grid import Grid, Tile
from burnscape.errors import GranuleReadError

__all__ = ["GeoTiffReader"]

_SUFFIXES = (".tif", ".tiff", ".gtiff")


class GeoTiffReader:
    """Reader of single-band GeoTIFF/COG files (``geotiff``)."""

    name = "geotiff"

    def matches(self, path: str, media_type: str | None) -> bool:
        """Match TIFF media types, ``.tif`` names or the TIFF signature."""
        if media_type and "tiff" in media_type.lower():
            return True
        if Path(path).suffix.lower() in _SUFFIXES:
            return True
        return file_magic(path, 4) in TIFF_MAGICS

    def probe(self, band: BandFile) -> Footprint:
        """Open the file and return its bounds and CRS."""
        with _open(band) as src:
            if src.crs is None:
                raise GranuleReadError(
                    f"{Path(band.path).name} has no CRS; burnscape cannot place it"
                )
            left, bottom, right, top = src.bounds  # bottom > top when south-up
            return Footprint(
                src.crs.to_wkt(),
                (
                    min(left, right),
                    min(bottom, top),
                    max(left, right),
                    max(bottom, top),
                ),
            )

    def read(self, band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
        """Return the band's values on ``tile`` (float32, NaN = no data)."""
        window = Window(tile.x0, tile.y0, tile.x1 - tile.x0, tile.y1 - tile.y0)
        try:
            with _open(band) as src:
                nodata = band.nodata if band.nodata is not None else src.nodata
                if _same_grid(src, grid):
                    raw, outside = _read_direct(src, window, nodata, tile)
                else:
                    raw, outside = _read_warped(src, band, grid, window, nodata)
        except RasterioError as err:
            raise GranuleReadError(
                f"cannot read band {band.band!r} from {band.path}: {err}"
            ) from err
        scaling = Scaling(
            scale=band.scale,
            offset=band.offset,
            fill=() if nodata is None else (float(nodata),),
        )
        values = decode(raw, scaling)
        values[outside] = np.nan
        return values

    def read_cloud(self, band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
        """Return a mask band as clouds: any non-zero, non-nodata value."""
        values = self.read(band, grid, tile)
        return np.nan_to_num(values, nan=0.0) != 0


def _open(band: BandFile) -> rasterio.DatasetReader:
    try:
        return rasterio.open(band.path)
    except (RasterioError, OSError) as err:
        raise GranuleReadError(
            f"cannot read band {band.band!r} from {band.path}: {err}; "
            "delete the file and re-run to download it again"
        ) from err


def _read_direct(
    src: rasterio.DatasetReader, window: Window, nodata: float | None, tile: Tile
) -> tuple[np.ndarray, np.ndarray]:
    raw = src.read(
        1,
        window=window,
        boundless=True,
        masked=False,
        fill_value=nodata if nodata is not None else 0,
    )
    rows = np.arange(tile.y0, tile.y1)[:, None]
    cols = np.arange(tile.x0, tile.x1)[None, :]
    outside = ~((rows < src.height) & (cols < src.width))
    return raw, outside


def _read_warped(
    src: rasterio.DatasetReader,
    band: BandFile,
    grid: Grid,
    window: Window,
    nodata: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    with WarpedVRT(
        src,
        crs=grid.crs.to_wkt(),
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=Resampling[band.resampling],
        src_nodata=nodata,
        nodata=nodata,
        add_alpha=nodata is None,
    ) as vrt:
        raw = vrt.read(1, window=window)
        if nodata is None:
            outside = vrt.read(vrt.count, window=window) == 0
        else:
            outside = np.zeros(raw.shape, dtype=bool)
    return raw, outside


def _same_grid(src: rasterio.DatasetReader, grid: Grid) -> bool:
    """Tell whether a file shares the grid's CRS, pixel size and origin."""
    if src.crs is None or src.crs != rasterio.crs.CRS.from_wkt(grid.crs_wkt):
        return False
    ft, gt = src.transform, grid.transform
    if not (
        np.isclose(ft.a, gt.a) and np.isclose(ft.e, gt.e) and ft.b == 0 and ft.d == 0
    ):
        return False
    col_off = (gt.c - ft.c) / ft.a
    row_off = (gt.f - ft.f) / ft.e
    return bool(
        np.isclose(col_off, 0.0, atol=1e-3) and np.isclose(row_off, 0.0, atol=1e-3)
    )
