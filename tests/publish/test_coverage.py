import numpy as np
import pytest
import rasterio
import xarray as xr
from pygeoapi.provider.base import (
    ProviderInvalidQueryError,
    ProviderRequestEntityTooLargeError,
)
from pyproj import Transformer

from burnscape.publish.coverage import ZarrCoverageProvider

from .conftest import COLS, FIRE_DAY, LATE_DAY, ORIGIN_X, ORIGIN_Y, PIXEL_M, ROWS


@pytest.fixture(scope="module")
def burned(outputs_dir):
    return ZarrCoverageProvider(
        {
            "name": "burned-area",
            "type": "coverage",
            "data": str(outputs_dir / "burned.zarr"),
            "format": {"name": "GTiff", "mimetype": "image/tiff"},
            "options": {"time_variable": "burn_date"},
        }
    )


@pytest.fixture(scope="module")
def cube(outputs_dir):
    return ZarrCoverageProvider(
        {
            "name": "reflectance",
            "type": "coverage",
            "data": str(outputs_dir / "cube.zarr"),
            "format": {"name": "NetCDF", "mimetype": "application/x-netcdf"},
        }
    )


def values(coverage, name):
    array = coverage["ranges"][name]
    return np.array([np.nan if v is None else v for v in array["values"]]).reshape(
        array["shape"]
    )


def test_coverage_domain_carries_native_grid_and_crs(burned):
    coverage = burned.query()
    domain = coverage["domain"]
    assert domain["domainType"] == "Grid"
    assert domain["axes"]["x"] == {
        "start": ORIGIN_X + 15,
        "stop": ORIGIN_X + PIXEL_M * COLS - 15,
        "num": COLS,
    }
    assert domain["axes"]["y"] == {
        "start": ORIGIN_Y - 15,
        "stop": ORIGIN_Y - PIXEL_M * ROWS + 15,
        "num": ROWS,
    }
    system = domain["referencing"][0]["system"]
    assert system["type"] == "ProjectedCRS"
    assert system["id"] == "http://www.opengis.net/def/crs/EPSG/0/32610"
    assert set(coverage["ranges"]) == {
        "burned",
        "confidence",
        "burn_date",
        "burn_date_min",
        "burn_date_max",
        "observation_count",
    }
    burn_date = values(coverage, "burn_date")
    assert burn_date[5, 5] == FIRE_DAY and np.isnan(burn_date[0, 0])
    assert coverage["ranges"]["burn_date"]["dataType"] == "integer"
    assert np.isnan(values(coverage, "confidence")[0, -1])


def test_coverage_properties_describe_extent(burned):
    props = burned._coverage_properties
    assert props["width"] == COLS and props["height"] == ROWS
    assert props["resx"] == props["resy"] == PIXEL_M
    assert props["bbox"] == [
        ORIGIN_X,
        ORIGIN_Y - ROWS * PIXEL_M,
        ORIGIN_X + COLS * PIXEL_M,
        ORIGIN_Y,
    ]


def test_coverage_bbox_in_crs84_selects_cells(burned):
    to_lonlat = Transformer.from_crs(32610, 4326, always_xy=True)
    lon0, lat0 = to_lonlat.transform(ORIGIN_X + 150, ORIGIN_Y - 450)
    lon1, lat1 = to_lonlat.transform(ORIGIN_X + 600, ORIGIN_Y - 150)
    axes = burned.query(bbox=[lon0, lat0, lon1, lat1], properties=["burned"])["domain"][
        "axes"
    ]
    assert 14 <= axes["x"]["num"] <= 17 and 9 <= axes["y"]["num"] <= 12
    assert ORIGIN_X + 100 < axes["x"]["start"] < ORIGIN_X + 200


def test_coverage_native_subset_and_bbox_crs(burned):
    axes = burned.query(subsets={"x": [ORIGIN_X, ORIGIN_X + 300]})["domain"]["axes"]
    assert axes["x"]["num"] == 10
    native = burned.query(
        bbox=[ORIGIN_X, ORIGIN_Y - 90, ORIGIN_X + 90, ORIGIN_Y],
        bbox_crs="http://www.opengis.net/def/crs/EPSG/0/32610",
    )
    assert native["domain"]["axes"]["x"]["num"] == 3


def test_coverage_bbox_outside_is_invalid(burned):
    with pytest.raises(ProviderInvalidQueryError, match="does not intersect"):
        burned.query(bbox=[10, 10, 11, 11])


def test_burned_area_datetime_keeps_cells_burned_in_interval(burned):
    coverage = burned.query(
        datetime_="2018-06-20", properties=["burn_date", "confidence"]
    )
    burn_date = values(coverage, "burn_date")
    assert set(np.unique(burn_date[~np.isnan(burn_date)])) == {LATE_DAY}
    assert np.isnan(values(coverage, "confidence")[5, 5])
    everything = values(
        burned.query(datetime_="2018-06-01/..", properties=["burn_date"]), "burn_date"
    )
    assert set(np.unique(everything[~np.isnan(everything)])) == {FIRE_DAY, LATE_DAY}


def test_daily_cube_instant_returns_that_day(cube):
    coverage = cube.query(datetime_="2024-07-02", properties=["red"])
    assert coverage["domain"]["axes"]["t"]["values"] == ["2024-07-02T00:00:00Z"]
    assert values(coverage, "red")[0, 0, 0] == pytest.approx(0.2)
    noon = cube.query(datetime_="2024-07-02T12:00:00Z", properties=["red"])
    assert noon["domain"]["axes"]["t"]["values"] == ["2024-07-02T00:00:00Z"]
    both = cube.query(datetime_="2024-07-02/..", properties=["red"])
    assert len(both["domain"]["axes"]["t"]["values"]) == 2
    assert both["ranges"]["red"]["axisNames"] == ["t", "y", "x"]


def test_daily_cube_datetime_outside_is_invalid(cube):
    with pytest.raises(ProviderInvalidQueryError, match="2024-07-01 .. 2024-07-03"):
        cube.query(datetime_="2025-01-01")


def test_cube_serves_bands_not_bookkeeping(cube):
    assert set(cube.variables) == {"red", "nir"}
    assert cube.axes == ["x", "y", "time"]
    assert cube._coverage_properties["time_range"] == [
        "2024-07-01T00:00:00Z",
        "2024-07-03T23:59:59Z",
    ]


def test_cell_limit_refuses_large_requests(outputs_dir):
    small = ZarrCoverageProvider(
        {
            "name": "reflectance",
            "type": "coverage",
            "data": str(outputs_dir / "cube.zarr"),
            "options": {"max_cells": 1000},
        }
    )
    with pytest.raises(ProviderRequestEntityTooLargeError, match="limit of 1000"):
        small.query()
    assert (
        small.query(
            subsets={"x": [ORIGIN_X, ORIGIN_X + 150]},
            properties=["red"],
            datetime_="2024-07-01",
        )["domain"]["axes"]["x"]["num"]
        == 5
    )


def test_unknown_field_is_invalid(burned):
    with pytest.raises(ProviderInvalidQueryError, match="unknown field"):
        burned.query(properties=["nope"])


def test_geotiff_output_keeps_grid(burned):
    data = burned.query(format_="GTiff", properties=["burn_date", "confidence"])
    with rasterio.MemoryFile(data) as memory, memory.open() as tif:
        assert tif.crs.to_epsg() == 32610
        assert tif.transform.c == ORIGIN_X and tif.transform.f == ORIGIN_Y
        assert tif.count == 2 and tif.descriptions == ("burn_date", "confidence")
        band = tif.read(1)
        assert band[5, 5] == FIRE_DAY and np.isnan(band[0, 0])


def test_netcdf_output_keeps_grid_and_time(cube, tmp_path):
    data = cube.query(format_="NetCDF", datetime_="2024-07-02/2024-07-03")
    path = tmp_path / "out.nc"
    path.write_bytes(data)
    with xr.open_dataset(path, decode_coords="all") as dataset:
        assert dataset.rio.crs.to_epsg() == 32610
        assert dataset.sizes == {"time": 2, "y": ROWS, "x": COLS}
        assert str(dataset.time.values[0])[:10] == "2024-07-02"
        assert float(dataset.red[0, 0, 0]) == pytest.approx(0.2)


def test_cube_with_acquisition_windows_matches_by_window(tmp_path):
    from .conftest import grid_coords

    x, y, transform = grid_coords()
    starts = np.array(["2013-04-11", "2018-06-09"], dtype="datetime64[ns]")
    ends = np.array(
        ["2018-06-08T23:59:59", "2021-05-02T23:59:59"], dtype="datetime64[ns]"
    )
    epoch = np.datetime64("1970-01-01T00:00:00", "ns")
    bounds = np.stack([(starts - epoch), (ends - epoch)], axis=1) // np.timedelta64(
        1, "s"
    )
    red = np.stack([np.full((ROWS, COLS), v, np.float32) for v in (0.1, 0.2)])
    dataset = xr.Dataset(
        {
            "red": (("time", "y", "x"), red),
            "time_bnds": (
                ("time", "nv"),
                bounds.astype(np.int64),
                {"units": "seconds since 1970-01-01"},
            ),
        },
        coords={"time": ("time", starts, {"bounds": "time_bnds"}), "x": x, "y": y},
    )
    dataset = dataset.rio.write_crs("EPSG:32610").rio.write_transform(transform)
    dataset.to_zarr(
        tmp_path / "cube.zarr",
        mode="w",
        consolidated=True,
        encoding={"time": {"units": "days since 1970-01-01", "dtype": "int64"}},
    )
    cube = ZarrCoverageProvider(
        {"name": "reflectance", "type": "coverage", "data": str(tmp_path / "cube.zarr")}
    )
    after = cube.query(datetime_="2018-06-20")
    assert after["domain"]["axes"]["t"]["values"] == ["2018-06-09T00:00:00Z"]
    assert values(after, "red")[0, 0, 0] == pytest.approx(0.2)
    assert (
        len(
            cube.query(datetime_="2018-06-08/2018-06-09")["domain"]["axes"]["t"][
                "values"
            ]
        )
        == 2
    )
    assert cube._coverage_properties["time_range"] == [
        "2013-04-11T00:00:00Z",
        "2021-05-02T23:59:59Z",
    ]


@pytest.fixture
def scaled():
    """Set the request's scale-factor as the application does."""
    from burnscape.publish.coverage import SCALE_FACTOR

    tokens = []

    def set_factor(factor):
        tokens.append(SCALE_FACTOR.set(factor))

    yield set_factor
    for token in reversed(tokens):
        SCALE_FACTOR.reset(token)


def test_scale_factor_answers_a_coarser_grid_of_native_values(burned, scaled):
    native = values(burned.query(properties=["burn_date"]), "burn_date")
    scaled(4)  # 40 x 60 cells of 30 m: 10 x 15 cells of 120 m
    coverage = burned.query(properties=["burn_date"])
    axes = coverage["domain"]["axes"]
    assert axes["x"] == {
        "start": ORIGIN_X + 60,
        "stop": ORIGIN_X + PIXEL_M * COLS - 60,
        "num": COLS // 4,
    }
    assert axes["y"]["num"] == ROWS // 4
    assert axes["y"]["start"] == ORIGIN_Y - 60
    coarse = values(coverage, "burn_date")
    # each coarse cell holds one of the native cells it covers, never a mean
    for row in range(ROWS // 4):
        for col in range(COLS // 4):
            block = native[row * 4 : row * 4 + 4, col * 4 : col * 4 + 4]
            value = coarse[row, col]
            assert (np.isnan(value) and np.isnan(block).any()) or value in block


def test_scale_factor_not_dividing_the_grid_keeps_its_extent(burned, scaled):
    scaled(7)
    axes = burned.query(properties=["burn_date"])["domain"]["axes"]
    assert axes["x"]["num"] == 9 and axes["y"]["num"] == 6  # ceil(60/7), ceil(40/7)
    half = PIXEL_M * COLS / 9 / 2
    assert axes["x"]["start"] == pytest.approx(ORIGIN_X + half)
    assert axes["x"]["stop"] == pytest.approx(ORIGIN_X + PIXEL_M * COLS - half)


def test_scale_factor_geotiff_carries_the_coarser_transform(burned, scaled):
    scaled(2)
    data = burned.query(format_="GTiff", properties=["burn_date"])
    with rasterio.MemoryFile(data) as memory, memory.open() as tif:
        assert (tif.width, tif.height) == (COLS // 2, ROWS // 2)
        assert tif.transform.a == 2 * PIXEL_M and tif.transform.e == -2 * PIXEL_M
        assert tif.transform.c == ORIGIN_X and tif.transform.f == ORIGIN_Y


def test_scale_factor_brings_a_large_request_under_the_limit(outputs_dir, scaled):
    small = ZarrCoverageProvider(
        {
            "name": "burned-area",
            "type": "coverage",
            "data": str(outputs_dir / "burned.zarr"),
            "options": {"max_cells": 500, "time_variable": "burn_date"},
        }
    )
    with pytest.raises(ProviderRequestEntityTooLargeError):
        small.query(properties=["burn_date"])
    scaled(3)
    assert small.query(properties=["burn_date"])["domain"]["axes"]["x"]["num"] == 20


def test_a_huge_scale_factor_keeps_two_cells_per_axis(burned, scaled):
    scaled(1e9)
    data = burned.query(format_="GTiff", properties=["burn_date"])
    with rasterio.MemoryFile(data) as memory, memory.open() as tif:
        assert (tif.width, tif.height) == (2, 2)
        assert tif.transform.a == PIXEL_M * COLS / 2
        assert tif.bounds.left == ORIGIN_X and tif.bounds.top == ORIGIN_Y


def test_scale_factor_with_datetime_masks_the_coarser_grid(burned, scaled):
    native = values(
        burned.query(properties=["burn_date"], datetime_="2018-06-09"), "burn_date"
    )
    for factor in (2, 2.5, 4):
        scaled(factor)
        coverage = burned.query(properties=["burn_date"], datetime_="2018-06-09")
        coarse = values(coverage, "burn_date")
        kept = coarse[~np.isnan(coarse)]
        assert kept.size and set(kept) <= set(native[~np.isnan(native)])
