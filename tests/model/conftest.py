"""Fixtures for the model stage: the real CHROME 2 pair as a cube, the perimeter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from burnscape.utils import find_data_dir

CHROME2 = "chrome2-fire-2018-landsat8"
FIREHR = "firehr-weights/firehr_state_dict.pt"
BANET_EVENTS = "firehr-banet-events"

_CHROME2_FILES = {
    "red": ("Predata/band4afterclip.tif", "Postdata/band4clip.tif"),
    "nir": ("Predata/band5afterclip.tif", "Postdata/band5clip.tif"),
    "swir1": ("Predata/band6afterclip.tif", "Postdata/band6clip.tif"),
    "swir2": ("Predata/band7afterfireclip.tif", "Postdata/band7.tif"),
}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared real-data folder, or skip."""
    found = find_data_dir()
    if found is None:
        pytest.skip("shared real data folder not found (set BURNSCAPE_DATA_DIR)")
    return found


def _need(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.exists():
        pytest.skip(f"real data {relative} not found under {root}")
    return path


@pytest.fixture(scope="session")
def firehr_weights(shared_data: Path) -> Path:
    """Return the real FireHR state dict."""
    return _need(shared_data, FIREHR)


@pytest.fixture(scope="session")
def banet_events_dir(shared_data: Path) -> Path:
    """Return the folder of real BA-Net burn-date rasters."""
    return _need(shared_data, BANET_EVENTS)


@pytest.fixture(scope="session")
def chrome2_cube(shared_data: Path) -> xr.Dataset:
    """Return the CHROME 2 pair as an in-memory cube (TOA = 2e-5 DN - 0.1)."""
    import rasterio
    import rioxarray  # noqa: F401  (registers .rio)

    folder = _need(shared_data, CHROME2)
    bands = {}
    for band, (pre, post) in _CHROME2_FILES.items():
        layers = []
        for name in (pre, post):
            with rasterio.open(folder / name) as src:
                dn = src.read(1).astype(np.float32)
                transform, crs = src.transform, src.crs
            layers.append(
                np.where(dn == 0, np.nan, 2.0e-5 * dn - 0.1).astype(np.float32)
            )
        bands[band] = (("time", "y", "x"), np.stack(layers))
    rows, cols = layers[0].shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    # The acquisition days are unknown: honest windows before/after 2018-06-09.
    time = np.array(["2013-04-11", "2018-06-09"], dtype="datetime64[ns]")
    bounds = np.array(
        [["2013-04-11", "2018-06-08"], ["2018-06-09", "2021-05-02"]],
        dtype="datetime64[ns]",
    )
    cube = xr.Dataset(bands, coords={"time": time, "y": y, "x": x})
    cube["time_bnds"] = (("time", "nv"), bounds)
    cube["day_complete"] = ("time", np.ones(2, np.uint8))
    valid = np.isfinite(cube["nir"].values)
    cube["observation_count"] = (("y", "x"), valid.sum(axis=0).astype(np.int16))
    cube["valid_pixels"] = ("time", valid.reshape(2, -1).sum(axis=1).astype(np.int64))
    return cube.rio.write_crs(crs).rio.write_transform(transform)


@pytest.fixture(scope="session")
def chrome2_perimeter(shared_data: Path, chrome2_cube: xr.Dataset) -> np.ndarray:
    """Return the CAL FIRE perimeter rasterized on the cube's grid (bool y, x)."""
    import geopandas as gpd
    from rasterio.features import rasterize

    path = _need(shared_data, f"{CHROME2}/FireShapefile/Chrome2_Fire.shp")
    perimeter = gpd.read_file(path).to_crs(chrome2_cube.rio.crs)
    shape = (chrome2_cube.sizes["y"], chrome2_cube.sizes["x"])
    return rasterize(
        perimeter.geometry, out_shape=shape, transform=chrome2_cube.rio.transform()
    ).astype(bool)


def f1_score(predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> float:
    """Return the F1 of a boolean mask against a reference, over valid pixels."""
    hits = predicted & valid
    truth = reference & valid
    true_pos = float((hits & truth).sum())
    if true_pos == 0:
        return 0.0
    precision = true_pos / hits.sum()
    recall = true_pos / truth.sum()
    return 2 * precision * recall / (precision + recall)
