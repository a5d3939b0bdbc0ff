"""Cube stage: VIIRS daily surface reflectance VNP09GA / VJ109GA (HDF-EOS5).

The product is an HDF5 file per sinusoidal tile (hHHvVV, 10° square) and day.
Its variables sit under ``HDFEOS/GRIDS/<grid>/Data Fields/``: the 1 km grid
``VNP_Grid_1km_2D`` (1200 x 1200) holds ``SurfReflect_M<n>_1`` and the quality
flags ``SurfReflect_QF1_1`` ...; the 500 m grid ``VNP_Grid_500m_2D``
(2400 x 2400) holds ``SurfReflect_I<n>_1``. The grid (corners in metres, GCTP
sinusoidal on the 6371007.181 m sphere) is stated in
``HDFEOS INFORMATION/StructMetadata.0``. Conventions:

- calibration ``value = (raw - add_offset) * scale_factor`` (the HDF4 rule of
  the VIIRS land products; ``scale_factor`` 0.0001, ``add_offset`` 0);
- fill ``_FillValue`` (-28672) and values outside ``valid_range``
  (-100 .. 16000) are masked;
- clouds: ``SurfReflect_QF1_1`` bits 2-3 (cloud mask confidence: 0 confident
  clear, 1 probably clear, 2 probably cloudy, 3 confident cloudy); 2 and 3 are
  masked.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from burnscape.cube._gridded import GriddedReader, GriddedVariable
from burnscape.cube._hdfeos import EosGrid, parse_grids
from burnscape.cube._registry import HDF5_MAGIC, BandFile, file_magic
from burnscape.cube._scaling import Scaling
from burnscape.errors import GranuleReadError, MissingBandError

__all__ = ["DEFAULT_DATASETS", "QA_DATASET", "Vnp09gaReader"]

DEFAULT_DATASETS = {
    "blue": "SurfReflect_M3_1",
    "green": "SurfReflect_M4_1",
    "red": "SurfReflect_M5_1",
    "nir": "SurfReflect_M7_1",
    "swir1": "SurfReflect_M10_1",
    "swir2": "SurfReflect_M11_1",
}
"""Common band name to the VNP09GA 1 km dataset."""

QA_DATASET = "SurfReflect_QF1_1"
"""The quality-flag dataset whose bits 2-3 give the cloud mask confidence."""

GRIDS_GROUP = "HDFEOS/GRIDS"
STRUCT_METADATA = "HDFEOS INFORMATION/StructMetadata.0"

_NAME = re.compile(r"^(VNP|VJ1|VJ2)09GA\.", re.I)


class Vnp09gaReader(GriddedReader):
    """Reader of VIIRS VNP09GA-family HDF5 files (``vnp09ga``)."""

    name = "vnp09ga"

    def matches(self, path: str, media_type: str | None) -> bool:
        """Match ``VNP09GA.*``/``VJ109GA.*`` files with the HDF5 signature."""
        return bool(_NAME.match(Path(path).name)) and (
            file_magic(path) in (HDF5_MAGIC, b"")
        )

    def variable_for(self, band: BandFile) -> str | None:
        """Return the band's dataset: as named, else the product default."""
        if band.variable:
            return band.variable
        return QA_DATASET if band.band == "cloud" else DEFAULT_DATASETS.get(band.band)

    def cloudy(self, raw: np.ndarray, scaling: Scaling) -> np.ndarray:
        """Decode QF1 bits 2-3: probably or confidently cloudy."""
        confidence = (raw.astype(np.int64) >> 2) & 0b11
        out = (confidence >= 2).astype(np.float32)
        out[scaling.invalid(raw)] = np.nan
        return out

    @contextlib.contextmanager
    def _open(self, band: BandFile, variable: str | None) -> Iterator[GriddedVariable]:
        import h5py

        name = Path(band.path).name
        try:
            handle = h5py.File(band.path, "r")
        except OSError as err:
            raise GranuleReadError(f"cannot open HDF5 file {name}: {err}") from err
        with handle:
            try:
                dataset, grid = _find(handle, variable, name)
                attrs = dict(dataset.attrs)
            except (OSError, KeyError, ValueError) as err:
                raise GranuleReadError(
                    f"cannot read {variable} of {name}: {err}"
                ) from err
            try:
                yield GriddedVariable(
                    name=str(variable),
                    array=dataset,
                    shape=(int(dataset.shape[0]), int(dataset.shape[1])),
                    transform=grid.transform,
                    crs=grid.crs,
                    scaling=_scaling(attrs),
                )
            except OSError as err:
                raise GranuleReadError(
                    f"cannot read {variable} of {name}: {err}"
                ) from err


def _find(handle: Any, variable: str | None, name: str) -> tuple[Any, EosGrid]:
    """Return the dataset ``variable`` and the HDF-EOS grid it belongs to."""
    if variable is None:
        raise MissingBandError(f"{name}: no dataset named for this band")
    if GRIDS_GROUP not in handle or STRUCT_METADATA not in handle:
        raise GranuleReadError(
            f"{name} is not an HDF-EOS5 grid file (no {GRIDS_GROUP} or "
            f"{STRUCT_METADATA})"
        )
    text = handle[STRUCT_METADATA][()]
    grids = parse_grids(text.decode() if isinstance(text, bytes) else str(text))
    available = []
    for grid_name in handle[GRIDS_GROUP]:
        fields = handle[GRIDS_GROUP][grid_name].get("Data Fields")
        if fields is None:
            continue
        available.extend(fields)
        if variable in fields and grid_name in grids:
            dataset = fields[variable]
            if dataset.ndim != 2:
                raise GranuleReadError(f"{name}: {variable} is not 2-D")
            return dataset, grids[grid_name]
    raise MissingBandError(f"{name} has no dataset {variable!r}; it holds {available}")


def _scaling(attrs: dict[str, Any]) -> Scaling:
    def number(key: str, default: float) -> float:
        value = attrs.get(key)
        return default if value is None else float(np.asarray(value).ravel()[0])

    fill = attrs.get("_FillValue")
    valid = attrs.get("valid_range")
    return Scaling(
        scale=number("scale_factor", 1.0),
        offset=number("add_offset", 0.0),
        convention="hdf4",
        fill=() if fill is None else (float(np.asarray(fill).ravel()[0]),),
        valid_range=None
        if valid is None
        else (float(np.asarray(valid).ravel()[0]), float(np.asarray(valid).ravel()[1])),
    )
