"""Cube stage: the grids an HDF-EOS file declares in its ``StructMetadata.0``.

HDF-EOS2 (HDF4) and HDF-EOS5 (HDF5) grid products state their grid in an ODL
text block, not in per-variable georeferencing: each ``GROUP=GRID_n`` names
the grid, its size, its outer corners (``UpperLeftPointMtrs``,
``LowerRightMtrs``), the GCTP projection and its parameters, the origin corner
and the pixel registration. This module reads that block into a CRS and an
affine transform. Geographic corners are GCTP "packed DMS" (DDDMMMSSS.SS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from affine import Affine
from pyproj import CRS

from burnscape.errors import GranuleReadError

__all__ = ["EosGrid", "SINUSOIDAL_SPHERE_M", "parse_grids", "sinusoidal_crs"]

SINUSOIDAL_SPHERE_M = 6371007.181
"""Radius of the sphere of the MODIS/VIIRS land sinusoidal grid (metres)."""

_GROUP = re.compile(r"GROUP=(GRID_\d+)(.*?)END_GROUP=\1", re.S)
_VALUE = re.compile(r"^\s*(\w+)=(.*?)\s*$", re.M)
_FIELD = re.compile(r'DataFieldName="([^"]+)"')


@dataclass(frozen=True)
class EosGrid:
    """One grid of an HDF-EOS file.

    ``upper_left`` and ``lower_right`` are the outer corners in projection
    units (degrees for geographic grids, metres otherwise); ``origin`` is the
    corner that holds row 0, column 0 (``UL`` or ``LL`` ...).
    """

    name: str
    width: int
    height: int
    upper_left: tuple[float, float]
    lower_right: tuple[float, float]
    projection: str
    proj_params: tuple[float, ...]
    origin: str
    registration: str
    fields: tuple[str, ...]

    @property
    def crs(self) -> CRS:
        """Return the grid's CRS (WGS 84 or the GCTP sphere's sinusoidal)."""
        if self.projection == "GEO":
            return CRS.from_epsg(4326)
        if self.projection == "SNSOID":
            radius = self.proj_params[0] if self.proj_params else 0.0
            return sinusoidal_crs(radius or SINUSOIDAL_SPHERE_M)
        raise GranuleReadError(
            f"grid {self.name!r} uses GCTP projection {self.projection}, which "
            "burnscape does not read; supported: GEO, SNSOID"
        )

    @property
    def transform(self) -> Affine:
        """Return the affine transform of pixel corners, rows from ``origin``.

        The corner points bound the outer pixel edges whatever the pixel
        registration says (it places the sample inside the pixel).
        """
        (west, north), (east, south) = self.upper_left, self.lower_right
        x_size = (east - west) / self.width
        y_size = (north - south) / self.height
        if self.origin.startswith("L"):
            return Affine(x_size, 0.0, west, 0.0, y_size, south)
        return Affine(x_size, 0.0, west, 0.0, -y_size, north)


def parse_grids(struct_metadata: str) -> dict[str, EosGrid]:
    """Return the grids of a ``StructMetadata.0`` text, by grid name.

    Raises
    ------
    GranuleReadError
        A grid lacks its size or corners.
    """
    grids = {}
    for _, body in _GROUP.findall(struct_metadata):
        values = dict(_VALUE.findall(body))
        name = values.get("GridName", "").strip('"')
        try:
            projection = _strip_prefix(values["Projection"], "GCTP_")
            grid = EosGrid(
                name=name,
                width=int(values["XDim"]),
                height=int(values["YDim"]),
                upper_left=_pair(values["UpperLeftPointMtrs"], projection),
                lower_right=_pair(values["LowerRightMtrs"], projection),
                projection=projection,
                proj_params=_numbers(values.get("ProjParams", "")),
                origin=_strip_prefix(values.get("GridOrigin", "UL"), "GD_"),
                registration=_strip_prefix(
                    values.get("PixelRegistration", "CORNER"), "HDFE_"
                ),
                fields=tuple(_FIELD.findall(body)),
            )
        except (KeyError, ValueError) as err:
            raise GranuleReadError(
                f"grid {name!r} in StructMetadata.0 lacks a readable {err}"
            ) from err
        grids[name] = grid
    return grids


def sinusoidal_crs(radius_m: float = SINUSOIDAL_SPHERE_M) -> CRS:
    """Return the sinusoidal CRS on a sphere (the MODIS/VIIRS land grid)."""
    return CRS.from_proj4(f"+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R={radius_m} +units=m")


def _strip_prefix(value: str, marker: str) -> str:
    """Turn ``HE5_GCTP_SNSOID`` or ``GCTP_SNSOID`` into ``SNSOID``."""
    value = value.strip().strip('"')
    return value.split(marker, 1)[1] if marker in value else value


def _numbers(text: str) -> tuple[float, ...]:
    inner = text.strip().strip("()")
    return tuple(float(part) for part in inner.split(",") if part.strip())


def _pair(text: str, projection: str) -> tuple[float, float]:
    x, y = _numbers(text)[:2]
    if projection == "GEO":
        return _packed_dms(x), _packed_dms(y)
    return x, y


def _packed_dms(value: float) -> float:
    """Decode GCTP packed degrees DDDMMMSSS.SS into decimal degrees."""
    sign = -1.0 if value < 0 else 1.0
    value = abs(value)
    degrees = int(value // 1_000_000)
    minutes = int((value - degrees * 1_000_000) // 1_000)
    seconds = value - degrees * 1_000_000 - minutes * 1_000
    return sign * (degrees + minutes / 60.0 + seconds / 3600.0)
