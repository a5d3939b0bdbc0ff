"""Cube stage: VIIRS L1/SDR bands as LAADS subset orders deliver them (HDF4).

A LAADS "subset and reproject" order of ``NPP_VMAES_L1`` gives one HDF-EOS2
file per band, named ``NPP_VMAES_L1.AYYYYDDD.HHMM.<...>.<SDS>.hdf``, each with
a single SDS on a geographic grid (``GCTP_GEO``, e.g. 0.01°) stated in
``StructMetadata.0``. Conventions:

- calibration ``value = raw * Scale + Offset`` (attributes ``Scale`` and
  ``Offset``): TOA reflectance for ``Reflectance_M*``, radiance
  (W m-2 sr-1 um-1) for ``Radiance_M*``;
- fill: uint16 values at or above ``FILL_TEST_VALUE`` (65527; 65528-65535 are
  the SDR fill codes) and float32 at or below -999;
- no cloud mask in the order.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from burnscape.cube._gridded import GriddedReader, GriddedVariable
from burnscape.cube._hdf4 import fill_test, grid_for, open_sds
from burnscape.cube._registry import HDF4_MAGIC, BandFile, file_magic
from burnscape.cube._scaling import Scaling

__all__ = ["DEFAULT_SDS", "ViirsL1Reader"]

DEFAULT_SDS = {
    "red": "Reflectance_M5",
    "nir": "Reflectance_M7",
    "swir1": "Reflectance_M10",
    "swir2": "Reflectance_M11",
    "mir": "Radiance_M12",
    "tir": "Radiance_M15",
}
"""Common band name to the SDS of an ``NPP_VMAES_L1`` order (BA-Net's set)."""

_NAME = re.compile(r"(^|[._])(NPP|VNP|VJ1|VJ2)_?VMAES_L1\.", re.I)
_UINT16_FILL_TEST = 65527.0
_FLOAT_FILL_TEST = -999.0


class ViirsL1Reader(GriddedReader):
    """Reader of LAADS-ordered VIIRS 750 m L1 band files (``viirs-l1``)."""

    name = "viirs-l1"

    def matches(self, path: str, media_type: str | None) -> bool:
        """Match ``*VMAES_L1.*.hdf`` files that start with the HDF4 magic."""
        return bool(_NAME.search(Path(path).name)) and (
            file_magic(path, 4) in (HDF4_MAGIC, b"")
        )

    def variable_for(self, band: BandFile) -> str | None:
        """Return the SDS named by the band, else the file's only SDS."""
        return band.variable

    @contextlib.contextmanager
    def _open(self, band: BandFile, variable: str | None) -> Iterator[GriddedVariable]:
        with open_sds(band.path, variable) as (sds, attributes, grids, shape):
            name = sds.info()[0]
            grid = grid_for(grids, name, shape, band.path)
            threshold = fill_test(attributes)
            is_float = sds.info()[3] in (5, 6)  # DFNT_FLOAT32, DFNT_FLOAT64
            scaling = Scaling(
                scale=float(attributes.get("Scale", 1.0)),
                offset=float(attributes.get("Offset", 0.0)),
                convention="linear",
                fill=_fill_values(attributes),
                fill_at_or_above=None
                if is_float
                else (threshold if threshold is not None else _UINT16_FILL_TEST),
                fill_at_or_below=(
                    threshold if threshold is not None else _FLOAT_FILL_TEST
                )
                if is_float
                else None,
            )
            yield GriddedVariable(
                name=name,
                array=sds,
                shape=shape,
                transform=grid.transform,
                crs=grid.crs,
                scaling=scaling,
            )


def _fill_values(attributes: dict[str, object]) -> tuple[float, ...]:
    value = attributes.get("_FillValue")
    if value is None:
        return ()
    return tuple(float(v) for v in np.atleast_1d(np.asarray(value, dtype=float)))
