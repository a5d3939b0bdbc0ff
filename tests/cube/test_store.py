from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import xarray as xr
import zarr
from affine import Affine

from burnscape.config import RegionConfig
from burnscape.cube.grid import grid_from_region
from burnscape.cube.store import (
    DayStatus,
    begin_day,
    create_cube,
    finish_day,
    finish_pending_append,
    read_days,
)
from burnscape.cube.timeaxis import TIME_UNITS, daily_slots, to_seconds
from burnscape.errors import GridMismatchError

UTC = dt.UTC


@pytest.fixture()
def grid():
    return grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(10.0, 40.0, 18.0, 48.0), pixel_size=1.0)
    )


def _day(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 7, day, hour, minute, tzinfo=UTC)


def test_append_keeps_exact_times_and_fixed_units(tmp_path, grid) -> None:
    # Handed case (1): one day at 00:00, then 13:30 and 00:00 appended.
    path = tmp_path / "cube.zarr"
    first = [_day(1)]
    create_cube(path, grid, first, [(t, t) for t in first], ["red"], chunk_size=4)
    later = [_day(1), _day(2, 13, 30), _day(3)]
    create_cube(path, grid, later, [(t, t) for t in later], ["red"], chunk_size=4)

    cube = xr.open_zarr(path)
    expected = np.array(
        ["2024-07-01T00:00", "2024-07-02T13:30", "2024-07-03T00:00"], "datetime64[ns]"
    )
    np.testing.assert_array_equal(cube["time"].values, expected)
    assert cube["red"].shape == (3, 8, 8)
    assert cube["time"].encoding["units"] == TIME_UNITS
    raw = zarr.open_group(str(path))["time"]
    assert raw.dtype == np.int64
    assert raw[:].tolist() == [to_seconds(t) for t in later]
    assert np.isnan(cube["red"].values).all()
    assert cube["day_complete"].values.tolist() == [0, 0, 0]
    bounds = cube["time_bnds"].values
    np.testing.assert_array_equal(bounds[:, 0], expected)


def test_append_refuses_a_time_before_the_last(tmp_path, grid) -> None:
    path = tmp_path / "cube.zarr"
    times = [_day(1), _day(3)]
    create_cube(path, grid, times, [(t, t) for t in times], ["red"], chunk_size=4)
    with pytest.raises(GridMismatchError, match="falls before the cube's last time"):
        create_cube(path, grid, [_day(2)], [(_day(2), _day(2))], ["red"], chunk_size=4)


def test_existing_cube_of_other_grid_or_bands_is_refused(tmp_path, grid) -> None:
    path = tmp_path / "cube.zarr"
    create_cube(path, grid, [_day(1)], [(_day(1), _day(1))], ["red"], chunk_size=4)
    other = grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(10.0, 40.0, 20.0, 48.0), pixel_size=1.0)
    )
    with pytest.raises(GridMismatchError, match="shape 8x8 vs 8x10"):
        create_cube(path, other, [_day(1)], [(_day(1), _day(1))], ["red"])
    with pytest.raises(GridMismatchError, match=r"bands \['nir'\] missing"):
        create_cube(path, grid, [_day(1)], [(_day(1), _day(1))], ["red", "nir"])


def test_crs_and_transform_survive_plain_open(tmp_path, grid) -> None:
    # Handed case (2), metadata level: a 2-day 8x8 EPSG:4326 cube.
    path = tmp_path / "cube.zarr"
    times = [_day(1), _day(2)]
    create_cube(path, grid, times, [(t, t) for t in times], ["red"], chunk_size=4)
    for cube in (xr.open_zarr(path), xr.open_zarr(path, decode_coords="all")):
        assert cube.rio.crs.to_epsg() == 4326
        assert cube.rio.transform() == Affine(1.0, 0.0, 10.0, 0.0, -1.0, 48.0)
        assert cube.rio.bounds() == (10.0, 40.0, 18.0, 48.0)
        assert cube["red"].rio.crs.to_epsg() == 4326
        assert "spatial_ref" in cube.coords
        assert (
            cube["red"].attrs.get(
                "grid_mapping", cube["red"].encoding.get("grid_mapping")
            )
            == "spatial_ref"
        )
    assert zarr.open_group(str(path)).attrs["Conventions"] == "CF-1.8"


def test_interrupted_append_is_finished_on_next_open(tmp_path, grid) -> None:
    path = tmp_path / "cube.zarr"
    create_cube(path, grid, [_day(1)], [(_day(1), _day(1))], ["red"], chunk_size=4)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    # What a crash leaves after recording the append and resizing one array.
    group.attrs["pending_append"] = {
        "start": 1,
        "times": [to_seconds(_day(2))],
        "bounds": [[to_seconds(_day(2)), to_seconds(_day(2))]],
    }
    group["red"].resize((2, 8, 8))
    finish_pending_append(path)
    cube = xr.open_zarr(path)
    assert cube.sizes["time"] == 2
    assert cube["time"].values[1] == np.datetime64("2024-07-02T00:00", "ns")
    assert "pending_append" not in zarr.open_group(str(path)).attrs


def test_day_records_complete_flag_is_written_last(tmp_path, grid) -> None:
    path = tmp_path / "cube.zarr"
    slots = daily_slots(dt.date(2024, 7, 1), dt.date(2024, 7, 2))
    create_cube(
        path,
        grid,
        [s.time for s in slots],
        [s.bounds for s in slots],
        ["red"],
        chunk_size=4,
    )
    begin_day(path, 1)
    records = read_days(path)
    assert records.complete.tolist() == [0, 0]
    assert records.status.tolist() == [0, int(DayStatus.WRITING)]
    finish_day(
        path,
        1,
        DayStatus.CLOUD_ONLY,
        valid_pixels=0,
        reason="all cloud",
        fingerprint="f",
    )
    finish_day(
        path, 0, DayStatus.CORRUPT, valid_pixels=0, reason="bad file", fingerprint="g"
    )
    records = read_days(path)
    assert records.complete.tolist() == [0, 1]
    assert records.reasons == {
        "2024-07-01T00:00:00Z": "bad file",
        "2024-07-02T00:00:00Z": "all cloud",
    }
    assert records.inputs == {"2024-07-02T00:00:00Z": "f"}
    status = xr.open_zarr(path, consolidated=False)["day_status"]
    assert (
        status.attrs["flag_meanings"].split()[int(DayStatus.CLOUD_ONLY)] == "cloud_only"
    )


@pytest.mark.parametrize(
    ("crs", "bbox", "pixel", "names", "units"),
    [
        ("EPSG:4326", (10.0, 40.0, 18.0, 48.0), 1.0, ("longitude", "latitude"), None),
        (
            "EPSG:32610",
            (500000, 4000000, 500240, 4000240),
            30,
            ("projection_x_coordinate", "projection_y_coordinate"),
            "metre",  # UDUNITS spelling, as pyproj names the axis unit
        ),
    ],
)
def test_cube_metadata_is_cf_consolidated_and_chunk_aligned(
    tmp_path, crs, bbox, pixel, names, units
) -> None:
    path = tmp_path / "cube.zarr"
    region = grid_from_region(RegionConfig(crs=crs, bbox=bbox, pixel_size=pixel))
    times = [_day(1), _day(2)]
    create_cube(path, region, times, [(t, t) for t in times], ["red"], chunk_size=4)

    # Consolidated metadata that xarray reads without falling back.
    assert (path / ".zmetadata").is_file()
    cube = xr.open_zarr(path, consolidated=True)
    assert cube.attrs["Conventions"] == "CF-1.8"

    # One float32 variable per band, NaN fill, chunks of one slot by c x c.
    red = cube["red"]
    assert red.dims == ("time", "y", "x") and red.dtype == np.float32
    assert np.isnan(red.encoding["_FillValue"])
    assert red.encoding["chunks"] == (1, 4, 4)
    assert np.isnan(zarr.open_group(str(path))["red"].fill_value)
    assert red.attrs["units"] == "1" and red.attrs["long_name"]
    assert red.attrs["grid_mapping"] == "spatial_ref"

    # CF coordinates: time with fixed units and bounds, x/y named by the CRS.
    assert cube["time"].attrs["standard_name"] == "time"
    assert cube["time"].attrs["bounds"] == "time_bnds"
    assert cube["time"].encoding["units"] == TIME_UNITS
    x_name, y_name = names
    assert cube["x"].attrs["standard_name"] == x_name
    for axis in ("x", "y"):  # CF: no fill value on coordinate variables
        assert "_FillValue" not in cube[axis].encoding
    assert cube["y"].attrs["standard_name"] == y_name
    if units:
        assert cube["x"].attrs["units"] == cube["y"].attrs["units"] == units
    else:
        assert cube["x"].attrs["units"] == "degrees_east"
        assert cube["y"].attrs["units"] == "degrees_north"
    mapping = cube["spatial_ref"].attrs
    assert mapping["grid_mapping_name"] and mapping["crs_wkt"]
    assert float(cube["y"][0]) > float(cube["y"][-1])  # north-up

    # The per-slot records are CF flags, one chunk per slot.
    status = cube["day_status"]
    assert status.encoding["chunks"] == (1,)
    meanings = status.attrs["flag_meanings"].split()
    assert len(status.attrs["flag_values"]) == len(meanings)
