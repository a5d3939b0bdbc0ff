"""Fixtures of the events tests: burned.zarr stores built in code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from burnscape.utils import find_data_dir

BurnedWriter = Callable[..., Path]
UTM_30M = Affine(30.0, 0.0, 600000.0, 0.0, -30.0, 4400000.0)


def make_burned(
    dates: np.ndarray,
    transform: Affine,
    crs: str,
    confidence: np.ndarray | None = None,
    detector: str = "synthetic",
) -> xr.Dataset:
    """Build a burned.zarr-shaped dataset from a burn-date raster (-1 = unburned)."""
    dates = np.asarray(dates, dtype=np.int32)
    rows, cols = dates.shape
    burned = dates >= 0
    if confidence is None:
        confidence = np.where(burned, 0.8, 0.0)
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    date_attrs = {"units": "days since 1970-01-01", "_FillValue": -1}
    dims = ("y", "x")
    dataset = xr.Dataset(
        {
            "burned": (dims, burned.astype(np.uint8)),
            "confidence": (dims, np.asarray(confidence, dtype=np.float32)),
            "burn_date": (dims, dates, date_attrs),
            "burn_date_min": (
                dims,
                np.where(burned, dates - 1, -1).astype(np.int32),
                date_attrs,
            ),
            "burn_date_max": (dims, dates.copy(), date_attrs),
            "observation_count": (dims, np.full(dates.shape, 2, dtype=np.int16)),
        },
        coords={"y": y, "x": x},
        attrs={"detector": detector, "detector_params": "{}", "inputs": "[]"},
    )
    dataset = dataset.rio.write_crs(crs).rio.write_transform(transform)
    for variable in dataset.data_vars.values():
        variable.encoding["coordinates"] = "spatial_ref"
    return dataset


@pytest.fixture
def write_burned(tmp_path: Path) -> BurnedWriter:
    """Return a function writing a burned.zarr from a date raster; gives its path."""
    counter = iter(range(1000))

    def write(
        dates: np.ndarray,
        transform: Affine = UTM_30M,
        crs: str = "EPSG:32610",
        **kwargs: object,
    ) -> Path:
        path = tmp_path / f"burned-{next(counter)}.zarr"
        make_burned(dates, transform, crs, **kwargs).to_zarr(
            path, mode="w", consolidated=True
        )
        return path

    return write


@pytest.fixture
def banet_dir() -> Path:
    """The folder of real BA-Net event rasters, or skip."""
    data = find_data_dir()
    folder = None if data is None else data / "firehr-banet-events"
    if folder is None or not folder.is_dir():
        pytest.skip("real data firehr-banet-events not found (set BURNSCAPE_DATA_DIR)")
    return folder
