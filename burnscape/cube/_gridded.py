"""Cube stage: the common path of readers of gridded HDF products.

A product reader only says how to open its file and find a variable, its grid
and its calibration (:class:`GriddedVariable`); this base reads the window a
tile needs, decodes it with the product's convention and regrids it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling

from burnscape.cube._registry import BandFile, Footprint
from burnscape.cube._regrid import SourceWindow, regrid, source_window
from burnscape.cube._scaling import Scaling, decode
from burnscape.cube.grid import Grid, Tile

__all__ = ["GriddedReader", "GriddedVariable", "RawArray"]


class RawArray(Protocol):
    """Anything sliceable into a numpy array (h5py dataset, pyhdf SDS)."""

    def __getitem__(self, key: Any) -> Any:
        """Return the values of a (row slice, column slice) window."""
        ...


@dataclass
class GriddedVariable:
    """An open variable of a gridded file: raw values, grid and calibration."""

    name: str
    array: RawArray
    shape: tuple[int, int]
    transform: Affine
    crs: CRS
    scaling: Scaling

    def read(self, window: SourceWindow) -> np.ndarray:
        """Return the raw values of a window."""
        return np.asarray(self.array[window.slices])

    @property
    def footprint(self) -> Footprint:
        """Return the variable's bounds in its own CRS."""
        rows, cols = self.shape
        xs, ys = zip(
            *(self.transform @ (c, r) for c in (0, cols) for r in (0, rows)),
            strict=True,
        )
        return Footprint(self.crs.to_wkt(), (min(xs), min(ys), max(xs), max(ys)))


class GriddedReader:
    """Base of the HDF product readers; subclasses implement ``_open``."""

    name = "gridded"

    def matches(self, path: str, media_type: str | None) -> bool:
        """Tell whether this reader handles the file."""
        raise NotImplementedError

    def probe(self, band: BandFile) -> Footprint:
        """Open the band's variable and return its footprint."""
        with self._open(band, self.variable_for(band)) as variable:
            return variable.footprint

    def read(self, band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
        """Return the band's values on ``tile`` (float32, NaN = no data)."""
        with self._open(band, self.variable_for(band)) as variable:
            return self._regridded(variable, grid, tile, band, decode_only=True)

    def read_cloud(self, band: BandFile, grid: Grid, tile: Tile) -> np.ndarray:
        """Return the cloud mask on ``tile`` (True = cloudy)."""
        with self._open(band, self.variable_for(band)) as variable:
            cloudy = self._regridded(variable, grid, tile, band, decode_only=False)
        return np.nan_to_num(cloudy, nan=0.0) > 0.5

    def variable_for(self, band: BandFile) -> str | None:
        """Return the dataset holding ``band`` (None: the file's only one).

        The band named ``cloud`` is the product's cloud QA dataset.
        """
        return band.variable

    def cloudy(self, raw: np.ndarray, scaling: Scaling) -> np.ndarray:
        """Return 1.0 where the QA says cloudy, 0.0 where clear, NaN for fill."""
        raise NotImplementedError(f"{self.name} has no cloud mask")

    def _open(
        self, band: BandFile, variable: str | None
    ) -> contextlib.AbstractContextManager[GriddedVariable]:
        raise NotImplementedError

    def _regridded(
        self,
        variable: GriddedVariable,
        grid: Grid,
        tile: Tile,
        band: BandFile,
        *,
        decode_only: bool,
    ) -> np.ndarray:
        window = source_window(
            variable.transform, variable.crs, variable.shape, grid, tile
        )
        if window is None:
            return np.full(tile.shape, np.nan, dtype=np.float32)
        raw = variable.read(window)
        values = (
            decode(raw, variable.scaling)
            if decode_only
            else self.cloudy(raw, variable.scaling)
        )
        return regrid(
            values,
            window.transform(variable.transform),
            variable.crs,
            grid,
            tile,
            Resampling[band.resampling],
        )
