from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from rasterio.transform import from_origin

from burnscape.config import RegionConfig
from burnscape.cube.grid import grid_from_region
from burnscape.cube.readers import BandFile
from burnscape.cube.writer import Scene, build_cube
from burnscape.errors import GridMismatchError

pytestmark = pytest.mark.integration

UTC = dt.UTC


def _tif(
    path: Path, data: np.ndarray, transform, crs: str = "EPSG:32610", nodata=None
) -> str:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return str(path)


def _scene(
    tmp_path: Path,
    name: str,
    day: int,
    values: dict[str, np.ndarray],
    transform,
    crs="EPSG:32610",
    scale=1.0,
    offset=0.0,
    nodata=None,
) -> Scene:
    bands = tuple(
        BandFile(
            band,
            _tif(tmp_path / f"{name}_{band}.tif", arr, transform, crs, nodata),
            scale,
            offset,
            nodata,
        )
        for band, arr in values.items()
    )
    time = dt.datetime(2024, 7, day, tzinfo=UTC)
    return Scene(name, time, (time, time), bands)


@pytest.fixture()
def utm_region() -> RegionConfig:
    return RegionConfig(
        crs="EPSG:32610",
        bbox=(500000, 4000000, 500000 + 40 * 30, 4000000 + 30 * 30),
        pixel_size=30,
    )


def test_build_cube_scales_masks_and_georeferences(
    tmp_path, utm_region, dask_client
) -> None:
    grid = grid_from_region(utm_region)
    transform = grid.transform
    raw = np.full(grid.shape, 10000, np.uint16)
    raw[0, 0] = 0  # nodata: masked, never scaled
    scenes = [
        _scene(
            tmp_path,
            "a",
            1,
            {"red": raw, "nir": raw},
            transform,
            scale=2e-5,
            offset=-0.1,
            nodata=0,
        ),
        _scene(
            tmp_path,
            "b",
            2,
            {"red": raw, "nir": raw},
            transform,
            scale=2e-5,
            offset=-0.1,
            nodata=0,
        ),
    ]
    path = tmp_path / "cube.zarr"
    summary = build_cube(scenes, grid, path, dask_client, chunk_size=16)
    assert summary.days_written == ["a", "b"]

    cube = xr.open_zarr(path)
    assert cube["red"].dims == ("time", "y", "x")
    assert cube["red"].dtype == np.float32
    assert np.isnan(cube["red"].values[0, 0, 0])
    np.testing.assert_allclose(
        cube["red"].values[0, 1, 1], 10000 * 2e-5 - 0.1, rtol=1e-6
    )
    assert cube.rio.crs.to_epsg() == 32610
    assert cube.rio.transform() == transform
    assert float(cube.y[0]) > float(cube.y[-1])  # north-up
    assert cube["day_complete"].values.tolist() == [1, 1]
    assert int(cube["observation_count"].max()) == 2
    assert int(cube["observation_count"].values[0, 0]) == 0
    assert cube["valid_pixels"].values.tolist() == [grid.height * grid.width - 1] * 2
    # With decode_coords="all" too.
    cube_all = xr.open_zarr(path, decode_coords="all")
    assert cube_all.rio.crs.to_epsg() == 32610
    assert cube_all.rio.transform() == transform


def test_build_cube_rerun_skips_complete_days(
    tmp_path, utm_region, dask_client
) -> None:
    grid = grid_from_region(utm_region)
    data = np.ones(grid.shape, np.float32)
    scenes = [_scene(tmp_path, "a", 1, {"red": data}, grid.transform)]
    path = tmp_path / "cube.zarr"
    build_cube(scenes, grid, path, dask_client, chunk_size=16)
    before = zarr.open_group(str(path))["red"][:]
    again = build_cube(scenes, grid, path, dask_client, chunk_size=16)
    assert again.days_written == [] and again.days_already_complete == ["a"]
    np.testing.assert_array_equal(zarr.open_group(str(path))["red"][:], before)


def test_build_cube_corrupt_file_is_skipped_with_reason(
    tmp_path, utm_region, dask_client
) -> None:
    grid = grid_from_region(utm_region)
    good = _scene(
        tmp_path, "good", 1, {"red": np.ones(grid.shape, np.float32)}, grid.transform
    )
    broken = tmp_path / "broken_red.tif"
    broken.write_bytes(b"II*\x00not really a tiff")
    time = dt.datetime(2024, 7, 2, tzinfo=UTC)
    bad = Scene("bad", time, (time, time), (BandFile("red", str(broken)),))
    path = tmp_path / "cube.zarr"
    summary = build_cube([good, bad], grid, path, dask_client, chunk_size=16)
    assert summary.days_written == ["good"]
    assert "cannot read band 'red'" in summary.days_skipped["bad"]
    cube = xr.open_zarr(path)
    assert cube["day_complete"].values.tolist() == [1, 0]
    assert int(cube["observation_count"].max()) == 1


def test_build_cube_regrids_other_crs_north_up(tmp_path, dask_client) -> None:
    # A geographic grid; the input is a UTM raster covering part of it.
    region = RegionConfig(
        crs="EPSG:4326", bbox=(-123.0, 39.0, -122.9, 39.1), pixel_size=0.01
    )
    grid = grid_from_region(region)
    transform = from_origin(495000, 4330000, 90, 90)  # covers the region's west half
    scene = _scene(
        tmp_path, "a", 1, {"red": np.full((100, 100), 5, np.float32)}, transform
    )
    path = tmp_path / "cube.zarr"
    build_cube([scene], grid, path, dask_client, chunk_size=16)
    cube = xr.open_zarr(path)
    assert cube.rio.crs.to_epsg() == 4326
    values = cube["red"].values[0]
    assert np.nanmax(values) == 5 and np.isnan(values).any()


def test_create_cube_refuses_other_grid(tmp_path, utm_region, dask_client) -> None:
    grid = grid_from_region(utm_region)
    scenes = [
        _scene(
            tmp_path, "a", 1, {"red": np.ones(grid.shape, np.float32)}, grid.transform
        )
    ]
    path = tmp_path / "cube.zarr"
    build_cube(scenes, grid, path, dask_client, chunk_size=16)
    other = grid_from_region(
        RegionConfig(crs="EPSG:32610", bbox=(0, 0, 300, 300), pixel_size=30)
    )
    with pytest.raises(GridMismatchError, match="does not match this workflow"):
        build_cube(scenes, other, path, dask_client, chunk_size=16)
