"""Cube stage: read one band of a granule onto a tile of the region grid.

One reader per product, each applying its own conventions, behind one small
protocol (:class:`Reader`) and a registry:

========== ============================================ ==========================
name       product                                      conventions
========== ============================================ ==========================
viirs-l1   VIIRS 750 m L1/SDR LAADS subsets (HDF4)      ``raw*Scale+Offset``;
                                                        fill >= 65527
vnp09ga    VIIRS VNP09GA/VJ109GA surface refl. (HDF5)   ``(raw-offset)*scale``;
                                                        QF1 cloud bits
mod09ga    MODIS MOD09GA/MYD09GA surface refl. (HDF4)   MODIS rule; state_1km
geotiff    Landsat, Sentinel-2, any GeoTIFF/COG         STAC ``raster:bands``,
                                                        S2 baseline offset
========== ============================================ ==========================

A band picks its reader by name (``BandFile.reader``, from the source's
``options.reader``), else the first whose ``matches`` accepts the media type,
file name or signature. Every reader regrids onto the workflow grid with
rasterio (GDAL's warper), whatever the CRS (EPSG:4326, UTM, the MODIS/VIIRS
sinusoidal sphere) or orientation of the file. Add a product with
:func:`register_reader`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from burnscape.cube._geotiff import GeoTiffReader
from burnscape.cube._mod09ga import Mod09gaReader
from burnscape.cube._registry import (
    BandFile,
    Footprint,
    Reader,
    get_reader,
    reader_for,
    reader_names,
    register_reader,
)
from burnscape.cube._scaling import Convention, Scaling, decode
from burnscape.cube._viirs_l1 import ViirsL1Reader
from burnscape.cube._vnp09ga import Vnp09gaReader
from burnscape.cube.grid import Grid, Tile

__all__ = [
    "BandFile",
    "Convention",
    "Footprint",
    "GeoTiffReader",
    "Mod09gaReader",
    "Reader",
    "Scaling",
    "ViirsL1Reader",
    "Vnp09gaReader",
    "band_files_exist",
    "decode",
    "get_reader",
    "probe_band",
    "read_band_tile",
    "read_cloud_tile",
    "reader_for",
    "reader_names",
    "register_reader",
]

logger = logging.getLogger(__name__)

for _reader in (ViirsL1Reader(), Vnp09gaReader(), Mod09gaReader(), GeoTiffReader()):
    register_reader(_reader)


def read_band_tile(band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
    """Read a band onto a tile of ``grid``, regridding when the file's grid differs.

    Parameters
    ----------
    band
        The file, its reader, and (for GeoTIFF) its scaling and nodata value.
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
        The file cannot be opened or read, or no reader recognises it.
    MissingBandError
        The file lacks the band.
    """
    return reader_for(band).read(band, grid, tile)


def read_cloud_tile(band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
    """Read a product's cloud mask onto a tile (bool, True = cloudy)."""
    return reader_for(band).read_cloud(band, grid, tile)


def probe_band(band: BandFile) -> Footprint:
    """Open a band's file, check the band is in it, and return its footprint."""
    return reader_for(band).probe(band)


def band_files_exist(bands: list[BandFile]) -> list[str]:
    """Return the paths among ``bands`` that do not exist."""
    return [band.path for band in bands if not Path(band.path).is_file()]
