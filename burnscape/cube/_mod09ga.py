"""Cube stage: MODIS daily surface reflectance MOD09GA / MYD09GA (HDF-EOS2).

One HDF4 file per sinusoidal tile and day, read through the SD interface. The
500 m grid ``MODIS_Grid_500m_2D`` (2400 x 2400) holds ``sur_refl_b01_1`` ..
``sur_refl_b07_1``; the 1 km grid ``MODIS_Grid_1km_2D`` (1200 x 1200) holds
``state_1km_1``. Both grids (GCTP sinusoidal, 6371007.181 m sphere) are stated
in the ``StructMetadata.0`` global attribute. Conventions:

- calibration by the MODIS land rule (``modis`` in :mod:`._scaling`):
  ``(raw - add_offset) * scale_factor``, a ``scale_factor`` above 1 being a
  divisor (MOD13 NDVI: 10000); reflectance has ``scale_factor`` 0.0001;
- fill ``_FillValue`` (-28672) and values outside ``valid_range`` masked;
- clouds: ``state_1km_1`` bits 0-1 (cloud state 1 cloudy, 2 mixed) and bit 2
  (cloud shadow) are masked; the 1 km mask is regridded like any band.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from burnscape.cube._gridded import GriddedReader, GriddedVariable
from burnscape.cube._hdf4 import grid_for, open_sds
from burnscape.cube._registry import HDF4_MAGIC, BandFile, file_magic
from burnscape.cube._scaling import Scaling

__all__ = ["DEFAULT_SDS", "QA_SDS", "Mod09gaReader"]

DEFAULT_SDS = {
    "red": "sur_refl_b01_1",
    "nir": "sur_refl_b02_1",
    "blue": "sur_refl_b03_1",
    "green": "sur_refl_b04_1",
    "swir1": "sur_refl_b06_1",
    "swir2": "sur_refl_b07_1",
}
"""Common band name to the MOD09GA 500 m SDS (band 6: 1.64 um, band 7: 2.13 um)."""

QA_SDS = "state_1km_1"
"""The 1 km state QA whose bits 0-2 give cloud state and cloud shadow."""

_NAME = re.compile(r"^(MOD|MYD)09GA\.", re.I)


class Mod09gaReader(GriddedReader):
    """Reader of MODIS MOD09GA/MYD09GA HDF4 files (``mod09ga``)."""

    name = "mod09ga"

    def matches(self, path: str, media_type: str | None) -> bool:
        """Match ``MOD09GA.*``/``MYD09GA.*`` files with the HDF4 signature."""
        return bool(_NAME.match(Path(path).name)) and (
            file_magic(path, 4) in (HDF4_MAGIC, b"")
        )

    def variable_for(self, band: BandFile) -> str | None:
        """Return the band's SDS: as named, else the product default."""
        if band.variable:
            return band.variable
        return QA_SDS if band.band == "cloud" else DEFAULT_SDS.get(band.band)

    def cloudy(self, raw: np.ndarray, scaling: Scaling) -> np.ndarray:
        """Decode state_1km: cloudy or mixed cloud state, or cloud shadow."""
        state = raw.astype(np.int64)
        cloud_state = state & 0b11
        shadow = (state >> 2) & 1
        out = ((cloud_state == 1) | (cloud_state == 2) | (shadow == 1)).astype(
            np.float32
        )
        out[scaling.invalid(raw)] = np.nan
        return out

    @contextlib.contextmanager
    def _open(self, band: BandFile, variable: str | None) -> Iterator[GriddedVariable]:
        with open_sds(band.path, variable) as (sds, attributes, grids, shape):
            name = sds.info()[0]
            grid = grid_for(grids, name, shape, band.path)
            yield GriddedVariable(
                name=name,
                array=sds,
                shape=shape,
                transform=grid.transform,
                crs=grid.crs,
                scaling=_scaling(attributes),
            )


def _scaling(attributes: dict[str, Any]) -> Scaling:
    fill = attributes.get("_FillValue")
    valid = attributes.get("valid_range")
    return Scaling(
        scale=float(attributes.get("scale_factor", 1.0)),
        offset=float(attributes.get("add_offset", 0.0)),
        convention="modis",
        fill=() if fill is None else (float(fill),),
        valid_range=None if valid is None else (float(valid[0]), float(valid[1])),
    )
