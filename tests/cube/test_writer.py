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


# --- time axis, orientation, CRS (handed cases) ---------------------------------


def test_build_cube_appends_later_scenes_with_exact_times(
    tmp_path, utm_region, dask_client
) -> None:
    # Handed case (1) through the writer: 00:00, then 13:30 and 00:00 appended.
    grid = grid_from_region(utm_region)
    data = np.ones(grid.shape, np.float32)
    first = _scene(tmp_path, "a", 1, {"red": data}, grid.transform)
    path = tmp_path / "cube.zarr"
    build_cube([first], grid, path, dask_client, chunk_size=16)
    later = dt.datetime(2024, 7, 2, 13, 30, tzinfo=UTC)
    second = Scene(
        "b",
        later,
        (later, later),
        _scene(tmp_path, "b", 2, {"red": 2 * data}, grid.transform).bands,
    )
    third = _scene(tmp_path, "c", 3, {"red": 3 * data}, grid.transform)
    summary = build_cube([first, second, third], grid, path, dask_client, chunk_size=16)
    assert summary.days_already_complete == ["a"]
    assert summary.days_written == ["b", "c"]
    cube = xr.open_zarr(path)
    np.testing.assert_array_equal(
        cube["time"].values,
        np.array(
            ["2024-07-01T00:00", "2024-07-02T13:30", "2024-07-03T00:00"],
            "datetime64[ns]",
        ),
    )
    assert cube["red"].values[:, 5, 5].tolist() == [1.0, 2.0, 3.0]
    assert cube["day_complete"].values.tolist() == [1, 1, 1]
    assert int(cube["observation_count"].max()) == 3


def test_build_cube_8x8_geographic_keeps_crs_and_transform(
    tmp_path, dask_client
) -> None:
    # Handed case (2): a 2-day 8x8 EPSG:4326 cube with known bounds.
    region = RegionConfig(
        crs="EPSG:4326", bbox=(110.0, -44.0, 118.0, -36.0), pixel_size=1.0
    )
    grid = grid_from_region(region)
    data = np.arange(64, dtype=np.float32).reshape(8, 8)
    scenes = [
        _scene(tmp_path, name, day, {"red": data}, grid.transform, crs="EPSG:4326")
        for name, day in (("a", 1), ("b", 2))
    ]
    path = tmp_path / "cube.zarr"
    build_cube(scenes, grid, path, dask_client, chunk_size=16)
    for cube in (xr.open_zarr(path), xr.open_zarr(path, decode_coords="all")):
        assert cube.rio.crs.to_epsg() == 4326
        assert cube.rio.transform() == from_origin(110.0, -36.0, 1.0, 1.0)
        assert cube.rio.bounds() == (110.0, -44.0, 118.0, -36.0)
        assert cube["red"].sizes == {"time": 2, "y": 8, "x": 8}
        np.testing.assert_array_equal(cube["red"].values[1], data)
        assert cube["y"].values[0] == -36.5 and cube["x"].values[0] == 110.5


@pytest.mark.slow
def test_south_up_input_is_north_up_in_cube_burned_and_events(
    tmp_path, dask_client
) -> None:
    # Handed case (3): latitudes ascending -43.5 .. -40.5, longitudes 110.5 ..
    # 112.5, only the southernmost row burned.
    from affine import Affine

    from burnscape.config import EventsConfig
    from burnscape.events import extract_events
    from burnscape.model.burned import write_burned
    from burnscape.model.spectral import SpectralParams, detect_spectral

    region = RegionConfig(
        crs="EPSG:4326", bbox=(110.0, -44.0, 113.0, -40.0), pixel_size=1.0
    )
    grid = grid_from_region(region)
    south_up = Affine(1.0, 0.0, 110.0, 0.0, 1.0, -44.0)  # row 0 = lat -44..-43
    jitter = np.array(
        [
            [0.0, 0.004, -0.003],
            [0.002, -0.004, 0.003],
            [0.001, 0.0, -0.002],
            [0.003, -0.001, 0.004],
        ]
    )
    pre = {"nir": 0.30 + jitter, "swir1": 0.20 + jitter, "swir2": 0.10 + jitter}
    # Unburned pixels change a little between the dates (the rule needs spread).
    post = {band: values + jitter[::-1, ::-1] * 0.5 for band, values in pre.items()}
    post["nir"][0] = 0.10  # rows stored south first: row 0 is the south
    post["swir1"][0] = 0.22
    post["swir2"][0] = 0.30
    scenes = [
        _scene(
            tmp_path,
            name,
            day,
            {b: v.astype(np.float32) for b, v in values.items()},
            south_up,
            crs="EPSG:4326",
        )
        for name, day, values in (("pre", 1, pre), ("post", 20, post))
    ]
    cube_path = tmp_path / "cube.zarr"
    build_cube(scenes, grid, cube_path, dask_client, chunk_size=16)
    cube = xr.open_zarr(cube_path)
    assert cube["y"].values.tolist() == [-40.5, -41.5, -42.5, -43.5]
    assert cube["nir"].values[1, -1].tolist() == pytest.approx([0.10] * 3)
    assert cube["nir"].values[0, 0].tolist() == pytest.approx(0.30 + jitter[3])

    burned_path = tmp_path / "burned.zarr"
    write_burned(
        detect_spectral(cube, SpectralParams()),
        burned_path,
        detector="spectral",
        params={},
        inputs=[str(cube_path)],
        chunk_size=16,
    )
    burned = xr.open_zarr(burned_path, mask_and_scale=False, decode_times=False)
    assert burned.rio.crs.to_epsg() == 4326
    rows = np.flatnonzero((burned["burned"].values == 1).any(axis=1))
    assert burned["y"].values[rows].tolist() == [-43.5]
    assert (burned["burned"].values[-1] == 1).all()

    summary = extract_events(burned_path, tmp_path, EventsConfig(), run_id="south-up")
    assert summary.n_events == 1
    import geopandas as gpd

    events = gpd.read_file(tmp_path / "burnscape.gpkg", layer="fire_events")
    minx, miny, maxx, maxy = events.total_bounds
    assert (miny, maxy) == pytest.approx((-44.0, -43.0))
    assert (minx, maxx) == pytest.approx((110.0, 113.0))


# --- daily slots: mosaics, bad input, crash safety --------------------------------


def _sinusoidal_grid():
    from tests.cube.granules import SPHERE, TILE_LR, TILE_UL

    pixel = (TILE_LR[0] - TILE_UL[0]) / 60
    return grid_from_region(
        RegionConfig(
            crs=SPHERE,
            bbox=(
                TILE_UL[0],
                TILE_UL[1] - 12 * pixel,
                TILE_UL[0] + 12 * pixel,
                TILE_UL[1],
            ),
            pixel_size=pixel,
        )
    )


def _vnp(tmp_path: Path, name: str, day: int, hour: int, **kwargs) -> Scene:
    from tests.cube.granules import write_vnp09ga

    raw = kwargs.pop("raw", np.full((60, 60), 1000, np.int16))
    bands = kwargs.pop("bands", ("SurfReflect_M5_1", "SurfReflect_M7_1"))
    qf1 = kwargs.pop("qf1", np.zeros((60, 60), np.uint8))
    path = tmp_path / f"VNP09GA.A2024{182 + day:03d}.h08v05.002.{name}.h5"
    write_vnp09ga(path, {band: raw for band in bands}, qf1, **kwargs)
    time = dt.datetime(2024, 7, day, hour, tzinfo=UTC)
    files = tuple(
        BandFile(common, str(path), variable=dataset)
        for common, dataset in (
            ("red", "SurfReflect_M5_1"),
            ("nir", "SurfReflect_M7_1"),
        )
    )
    return Scene(name, time, (time, time), files, cloud=BandFile("cloud", str(path)))


@pytest.fixture()
def bad_week(tmp_path):
    from tests.cube.granules import REFLECTANCE_FILL

    partial = np.full((60, 60), 1000, np.int16)
    partial[:6] = REFLECTANCE_FILL  # the first granule misses the north half
    corrupt = tmp_path / "VNP09GA.A2024184.h08v05.002.corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x01" * 512)
    time = dt.datetime(2024, 7, 2, 10, tzinfo=UTC)
    far = ((2223901.039333, 4447802.078667), (3335851.559000, 3335851.559000))  # h20v05
    scenes = [
        _vnp(tmp_path, "a", 1, 10, raw=partial),
        _vnp(tmp_path, "b", 1, 12, raw=np.full((60, 60), 2000, np.int16)),
        Scene(
            "corrupt",
            time,
            (time, time),
            (BandFile("red", str(corrupt)), BandFile("nir", str(corrupt))),
        ),
        _vnp(tmp_path, "nonir", 3, 10, bands=("SurfReflect_M5_1",)),
        _vnp(
            tmp_path, "fill", 4, 10, raw=np.full((60, 60), REFLECTANCE_FILL, np.int16)
        ),
        _vnp(tmp_path, "cloud", 5, 10, qf1=np.full((60, 60), 0b1100, np.uint8)),
        _vnp(tmp_path, "far", 6, 10, corners=far),
    ]
    from burnscape.cube.timeaxis import daily_slots

    return scenes, daily_slots(dt.date(2024, 7, 1), dt.date(2024, 7, 7))


def test_bad_input_is_recorded_with_reasons_and_the_run_goes_on(
    tmp_path, bad_week, dask_client
) -> None:
    from burnscape.cube.store import DayStatus, digest_store, read_days

    scenes, slots = bad_week
    grid = _sinusoidal_grid()
    path = tmp_path / "cube.zarr"
    summary = build_cube(scenes, grid, path, dask_client, chunk_size=16, slots=slots)

    assert summary.day_status == {
        "2024-07-01": "written",
        "2024-07-02": "corrupt",
        "2024-07-03": "missing_band",
        "2024-07-04": "all_fill",
        "2024-07-05": "cloud_only",
        "2024-07-06": "outside_region",
        "2024-07-07": "no_granule",
    }
    skipped = summary.days_skipped
    assert "2024-07-01" not in skipped
    assert "cannot open HDF5 file" in skipped["2024-07-02"]
    assert "no dataset 'SurfReflect_M7_1'" in skipped["2024-07-03"]
    assert "only fill values" in skipped["2024-07-04"]
    assert "cloud-masked" in skipped["2024-07-05"]
    assert "do not reach the region" in skipped["2024-07-06"]
    assert "no granule" in skipped["2024-07-07"]
    assert set(summary.granules_skipped) == {"corrupt", "nonir"}

    # The reasons persist in the store; only days with data written are complete.
    records = read_days(path)
    assert records.status.tolist() == [
        DayStatus.WRITTEN,
        DayStatus.CORRUPT,
        DayStatus.MISSING_BAND,
        DayStatus.ALL_FILL,
        DayStatus.CLOUD_ONLY,
        DayStatus.OUTSIDE_REGION,
        DayStatus.NO_GRANULE,
    ]
    assert records.complete.tolist() == [1, 0, 0, 1, 1, 1, 0]
    assert records.reasons["2024-07-02T00:00:00Z"] == skipped["2024-07-02"]
    cube = xr.open_zarr(path)
    assert cube["valid_pixels"].values.tolist() == [144, 0, 0, 0, 0, 0, 0]
    assert (cube["observation_count"].values == 1).all()
    # Mosaic of day 1: the 10:00 granule first, the 12:00 one where it has fill.
    red = cube["red"].values[0]
    assert (red[:6] == np.float32(0.2)).all() and (red[6:] == np.float32(0.1)).all()
    assert np.isnan(cube["red"].values[1:]).all()

    # A second run retries only the incomplete days and changes nothing.
    before = digest_store(path)
    again = build_cube(scenes, grid, path, dask_client, chunk_size=16, slots=slots)
    assert again.days_already_complete == [
        "2024-07-01",
        "2024-07-04",
        "2024-07-05",
        "2024-07-06",
    ]
    assert sorted(again.days_skipped) == ["2024-07-02", "2024-07-03", "2024-07-07"]
    assert digest_store(path) == before


def test_interrupted_day_is_rewritten_identically(
    tmp_path, bad_week, dask_client
) -> None:
    from burnscape.cube.store import begin_day, digest_store

    scenes, slots = bad_week
    grid = _sinusoidal_grid()
    path = tmp_path / "cube.zarr"
    build_cube(scenes, grid, path, dask_client, chunk_size=16, slots=slots)
    clean = digest_store(path)

    # A crash while rewriting day 1: flag cleared, half its tile overwritten.
    begin_day(path, 0)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group["red"][0, :6, :] = 99.0
    group["nir"][0] = np.nan
    summary = build_cube(scenes, grid, path, dask_client, chunk_size=16, slots=slots)
    assert summary.days_written == ["2024-07-01"]
    assert summary.days_already_complete == ["2024-07-04", "2024-07-05", "2024-07-06"]
    assert digest_store(path) == clean


def test_changed_inputs_rewrite_a_complete_day(tmp_path, bad_week, dask_client) -> None:
    import dataclasses

    scenes, slots = bad_week
    grid = _sinusoidal_grid()
    path = tmp_path / "cube.zarr"
    build_cube(scenes[:2], grid, path, dask_client, chunk_size=16, slots=slots[:1])
    # The ledger now holds another file for granule b (a new checksum).
    newer = _vnp(tmp_path / "..", "b2", 1, 12, raw=np.full((60, 60), 3000, np.int16))
    replaced = dataclasses.replace(newer, id="b", fingerprint="new-sha256")
    summary = build_cube(
        [scenes[0], replaced], grid, path, dask_client, chunk_size=16, slots=slots[:1]
    )
    assert summary.days_written == ["2024-07-01"]
    red = xr.open_zarr(path)["red"].values[0]
    assert (red[:6] == np.float32(0.3)).all() and (red[6:] == np.float32(0.1)).all()
