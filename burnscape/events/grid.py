"""Events stage: read burned.zarr lazily and cut one event's window out of it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from pyproj import CRS

from burnscape.errors import DataNotFoundError, EventsError
from burnscape.events.labels import DATE_FILL

logger = logging.getLogger(__name__)

Array = da.Array | np.ndarray
"""A Dask array, or a numpy array once loaded."""

__all__ = ["BURNED_VARIABLES", "BurnedGrid", "EventWindow", "read_burned"]

BURNED_VARIABLES = (
    "burned",
    "confidence",
    "burn_date",
    "burn_date_min",
    "burn_date_max",
)
"""Variables of burned.zarr that the events stage reads."""


@dataclass(frozen=True)
class BurnedGrid:
    """The burned.zarr arrays events need, as lazy (y, x) Dask arrays.

    Attributes
    ----------
    dates
        int32 burn day (days since 1970-01-01) of burned pixels, -1 elsewhere:
        ``burn_date``, else ``burn_date_min``, where ``burned == 1``. All
        arrays are lazy (Dask) until :meth:`loaded` computes them (numpy).
    date_min, date_max
        int32 interval bounds the acquisitions allow (``dates`` where missing).
    confidence
        float32 confidence 0-1 (NaN where not observed).
    transform, crs
        The grid.
    detector, inputs
        From the store's attributes.
    """

    dates: Array
    date_min: Array
    date_max: Array
    confidence: Array
    transform: Affine
    crs: CRS
    detector: str
    inputs: str

    def rechunked(self, chunk_size: int) -> BurnedGrid:
        """Return the grid with its arrays in square chunks of ``chunk_size``."""
        return replace(
            self,
            dates=da.asarray(self.dates).rechunk(chunk_size),
            date_min=da.asarray(self.date_min).rechunk(chunk_size),
            date_max=da.asarray(self.date_max).rechunk(chunk_size),
            confidence=da.asarray(self.confidence).rechunk(chunk_size),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Return (rows, columns)."""
        return (int(self.dates.shape[0]), int(self.dates.shape[1]))

    def loaded(self) -> BurnedGrid:
        """Return the grid with its arrays computed into memory (numpy-backed)."""
        dates, low, high, confidence = da.compute(
            self.dates, self.date_min, self.date_max, self.confidence
        )
        return replace(
            self, dates=dates, date_min=low, date_max=high, confidence=confidence
        )

    def windows(
        self,
        labels: Any,
        boxes: list[tuple[slice, slice]],
        first: int = 1,
        batch: int = 64,
    ) -> Iterator[EventWindow]:
        """Yield event windows for labels ``first``, ``first + 1``... and ``boxes``.

        Windows are computed ``batch`` at a time, in one Dask computation each.
        """
        for start in range(0, len(boxes), batch):
            chunk = boxes[start : start + batch]
            pieces = _compute(
                *[
                    (
                        labels[r, c],
                        self.dates[r, c],
                        self.date_min[r, c],
                        self.date_max[r, c],
                        self.confidence[r, c],
                    )
                    for r, c in chunk
                ]
            )
            for offset, ((rows, cols), values) in enumerate(
                zip(chunk, pieces, strict=True)
            ):
                k = first + start + offset
                yield EventWindow(
                    rows=rows,
                    cols=cols,
                    inside=np.asarray(values[0]) == k,
                    dates=values[1],
                    date_min=values[2],
                    date_max=values[3],
                    confidence=values[4],
                    transform=self.transform
                    @ Affine.translation(cols.start, rows.start),
                )


@dataclass(frozen=True)
class EventWindow:
    """One event's bounding box: its pixel mask and the burned.zarr values there."""

    rows: slice
    cols: slice
    inside: np.ndarray
    dates: np.ndarray
    date_min: np.ndarray
    date_max: np.ndarray
    confidence: np.ndarray
    transform: Affine


def _compute(*pieces: Any) -> tuple[Any, ...]:
    """Compute Dask pieces in one go; numpy pieces are returned as they are."""
    lazy = any(isinstance(a, da.Array) for piece in pieces for a in piece)
    return tuple(da.compute(*pieces)) if lazy else pieces


def read_burned(path: Path) -> BurnedGrid:
    """Open a burned.zarr store lazily as the arrays the events stage needs.

    Parameters
    ----------
    path
        The store (Zarr v2 or v3, consolidated or not).

    Returns
    -------
    BurnedGrid
        Lazy arrays; burned pixels are those with ``burned == 1`` and a date.

    Raises
    ------
    DataNotFoundError
        The store does not exist.
    EventsError
        A variable or the CRS is missing.
    """
    if not path.exists():
        raise DataNotFoundError(f"burned store {path} does not exist; run the detector")
    dataset = _open_zarr(path)
    missing = [name for name in BURNED_VARIABLES if name not in dataset]
    if missing:
        raise EventsError(
            f"{path} lacks variables {missing}; see burned.zarr in the README's "
            "Data contracts"
        )
    if "spatial_ref" in dataset.data_vars:
        dataset = dataset.set_coords("spatial_ref")
    crs = dataset.rio.crs
    if crs is None:
        raise EventsError(f"{path} has no CRS: write a spatial_ref grid mapping")
    arrays = {name: dataset[name].data for name in BURNED_VARIABLES}
    fills = {name: dataset[name].attrs.get("_FillValue", DATE_FILL) for name in arrays}
    best, low, high = (
        _as_days(arrays[name], fills[name])
        for name in ("burn_date", "burn_date_min", "burn_date_max")
    )
    dates = da.where(best >= 0, best, low)
    dates = da.where((arrays["burned"] == 1) & (dates >= 0), dates, DATE_FILL)
    return BurnedGrid(
        dates=dates.astype(np.int32),
        date_min=da.where(low >= 0, low, dates).astype(np.int32),
        date_max=da.where(high >= 0, high, dates).astype(np.int32),
        confidence=arrays["confidence"].astype(np.float32),
        transform=dataset.rio.transform(),
        crs=CRS.from_user_input(crs),
        detector=str(dataset.attrs.get("detector", "unknown")),
        inputs=str(dataset.attrs.get("inputs", "[]")),
    )


def _open_zarr(path: Path) -> xr.Dataset:
    """Open a Zarr store raw (dates as stored), consolidated or not."""
    meta = path / "zarr.json"
    consolidated = (path / ".zmetadata").exists() or (
        meta.exists() and '"consolidated_metadata"' in meta.read_text()
    )
    return xr.open_zarr(
        path, decode_times=False, mask_and_scale=False, consolidated=consolidated
    )


def _as_days(values: da.Array, fill: Any) -> da.Array:
    """Return a date array as int64 days since 1970-01-01, -1 where missing."""
    if np.issubdtype(values.dtype, np.datetime64):
        days = values.astype("datetime64[D]").astype(np.int64)
        return da.where(da.isnull(values), DATE_FILL, days)
    if np.issubdtype(values.dtype, np.floating):
        return da.where(da.isfinite(values), values, DATE_FILL).astype(np.int64)
    days = values.astype(np.int64)
    return da.where(days == fill, DATE_FILL, days)
