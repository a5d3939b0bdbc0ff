"""Cube stage: what a reader is given, what it answers, and how one is chosen."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from pyproj import CRS, Transformer

from burnscape.cube.grid import Grid, Tile
from burnscape.errors import GranuleReadError

__all__ = [
    "BandFile",
    "Footprint",
    "Reader",
    "get_reader",
    "reader_for",
    "reader_names",
    "register_reader",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandFile:
    """One band of a granule on disk, and how to read it.

    Frozen and hashable: it travels to Dask workers inside task arguments.

    Attributes
    ----------
    band
        The cube variable it fills (common name: ``red``, ``nir`` ...).
    path
        The local file.
    scale, offset, nodata
        ``value = raw * scale + offset`` and the raw fill value, for formats
        that do not carry their own calibration (GeoTIFF/COG: STAC
        ``raster:bands`` or the workflow source). HDF readers take these from
        the file's attributes and ignore the fields.
    reader
        The reader's registry name; None picks one from the media type, the
        file name or the file's first bytes.
    variable
        The dataset inside a container file (HDF SDS or HDF5 dataset name);
        None lets the reader pick the product's dataset for ``band``.
    media_type
        The asset's media type as the catalogue gave it, if any.
    resampling
        rasterio resampling method name used to regrid (``nearest`` keeps
        observed values).
    """

    band: str
    path: str
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    reader: str | None = None
    variable: str | None = None
    media_type: str | None = None
    resampling: str = "nearest"


@dataclass(frozen=True)
class Footprint:
    """A granule's extent: bounds (minx, miny, maxx, maxy) in its own CRS."""

    crs_wkt: str
    bounds: tuple[float, float, float, float]

    def intersects(self, grid: Grid) -> bool:
        """Tell whether the granule's bounds meet the grid's bounds."""
        to_own = Transformer.from_crs(
            grid.crs, CRS.from_wkt(self.crs_wkt), always_xy=True
        )
        try:
            west, south, east, north = to_own.transform_bounds(
                *grid.bounds, densify_pts=21
            )
        except Exception:  # noqa: BLE001  (pyproj raises plain errors off-domain)
            return True
        if not all(np.isfinite([west, south, east, north])):
            return True
        minx, miny, maxx, maxy = self.bounds
        return west < maxx and east > minx and south < maxy and north > miny


@runtime_checkable
class Reader(Protocol):
    """Reads one product's files onto tiles of a grid, applying its conventions.

    A reader is stateless; its methods open the file on each call, so that a
    Dask worker holds at most one tile of one band in memory.
    """

    name: str

    def matches(self, path: str, media_type: str | None) -> bool:
        """Tell whether this reader handles the file (name, media type, magic)."""
        ...

    def probe(self, band: BandFile) -> Footprint:
        """Open the file, check the band is there, and return its footprint.

        Raises
        ------
        GranuleReadError
            The file cannot be opened (corrupt, wrong format).
        MissingBandError
            The file lacks the band.
        """
        ...

    def read(self, band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
        """Return the band's physical values on ``tile`` (float32, NaN = no data)."""
        ...

    def read_cloud(self, band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
        """Return the product's cloud mask on ``tile`` (bool, True = cloudy)."""
        ...


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    """Add a reader to the registry under ``reader.name`` (last one wins)."""
    _READERS[reader.name] = reader
    return reader


def reader_names() -> list[str]:
    """Return the registered readers' names, in selection order."""
    return list(_READERS)


def get_reader(name: str) -> Reader:
    """Return the reader registered as ``name``.

    Raises
    ------
    GranuleReadError
        No reader has that name; the message lists the known ones.
    """
    try:
        return _READERS[name]
    except KeyError:
        raise GranuleReadError(
            f"unknown reader {name!r}; known readers: {reader_names()}"
        ) from None


def reader_for(band: BandFile) -> Reader:
    """Pick the reader of a band: by name if given, else the first that matches.

    Raises
    ------
    GranuleReadError
        No reader recognises the file.
    """
    if band.reader:
        return get_reader(band.reader)
    for reader in _READERS.values():
        if reader.matches(band.path, band.media_type):
            return reader
    raise GranuleReadError(
        f"no reader recognises {Path(band.path).name} (media type "
        f"{band.media_type or 'unknown'}); set the source's options.reader to one "
        f"of {reader_names()}"
    )


def file_magic(path: str, size: int = 8) -> bytes:
    """Return the first bytes of a file (empty when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


HDF4_MAGIC = b"\x0e\x03\x13\x01"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
