from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from burnscape.acquire import AcquiredItem
from burnscape.config import RegionConfig, SourceConfig
from burnscape.cube.grid import Tile, grid_from_region
from burnscape.cube.readers import read_band_tile
from burnscape.cube.scenes import granule_time, scene_from_item, sentinel2_offset

UTC = dt.UTC
T0 = dt.datetime(2022, 7, 1, 18, 0, tzinfo=UTC)


def _tif(path: Path, value: int) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=4,
        width=4,
        count=1,
        dtype="uint16",
        crs="EPSG:32610",
        transform=from_origin(500000, 4000040, 10, 10),
        nodata=0,
    ) as dst:
        dst.write(np.full((4, 4), value, np.uint16), 1)
    return path


def _s2_item(tmp_path: Path, properties: dict, raster: dict | None) -> AcquiredItem:
    files = {
        "B08": _tif(tmp_path / "B08.tif", 3539),
        "B12": _tif(tmp_path / "B12.tif", 2438),
    }
    info = {
        key: {
            "common_name": common,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            **(raster if raster else {"scale": 1e-4, "offset": 0.0, "nodata": 0}),
        }
        for key, common in (("B08", "nir"), ("B12", "swir2"))
    }
    return AcquiredItem(
        "S2B_10SEG_20220701_0_L2A", "s2", (T0, T0), files, properties, info
    )


def _read(scene, band: str) -> float:
    grid = grid_from_region(
        RegionConfig(
            crs="EPSG:32610", bbox=(500000, 4000000, 500040, 4000040), pixel_size=10
        )
    )
    band_file = next(b for b in scene.bands if b.band == band)
    return float(read_band_tile(band_file, grid, Tile(0, 4, 0, 4))[1, 1])


@pytest.fixture()
def s2_source() -> SourceConfig:
    return SourceConfig(
        kind="stac", name="s2", bands={"nir": "B08", "swir2": "B12"}, scale=1e-4
    )


def test_sentinel2_baseline_04_offset_gives_handed_reflectance(
    tmp_path, s2_source
) -> None:
    # Handed case: L2A DN 3539 and 2438 at baseline 04.00 read 0.2539 and 0.1438.
    item = _s2_item(tmp_path, {"s2:processing_baseline": "04.00"}, None)
    scene = scene_from_item(item, s2_source)
    nir, swir2 = _read(scene, "nir"), _read(scene, "swir2")
    assert nir == pytest.approx(0.2539, abs=1e-6)
    assert swir2 == pytest.approx(0.1438, abs=1e-6)
    assert (nir - swir2) / (nir + swir2) == pytest.approx(0.277, abs=5e-4)


def test_sentinel2_offset_stated_by_catalogue_is_not_applied_twice(
    tmp_path, s2_source
) -> None:
    # Earth Search v1 style: raster:bands offset -0.1 and boa_offset_applied.
    properties = {
        "s2:processing_baseline": "05.09",
        "earthsearch:boa_offset_applied": True,
    }
    raster = {"scale": 1e-4, "offset": -0.1, "nodata": 0}
    scene = scene_from_item(_s2_item(tmp_path, properties, raster), s2_source)
    assert _read(scene, "nir") == pytest.approx(0.2539, abs=1e-6)


def test_sentinel2_before_baseline_04_has_no_offset(tmp_path, s2_source) -> None:
    scene = scene_from_item(
        _s2_item(tmp_path, {"s2:processing_baseline": "02.12"}, None), s2_source
    )
    assert _read(scene, "nir") == pytest.approx(0.3539, abs=1e-6)
    assert sentinel2_offset({}, 1e-4, 0.0) == 0.0
    assert sentinel2_offset({"s2:processing_baseline": "04.00"}, 1.0, 0.0) == -1000.0


def test_container_product_maps_bands_to_datasets_and_cloud_mask(tmp_path) -> None:
    granule = tmp_path / "VNP09GA.A2024183.h08v05.002.2024185001122.h5"
    granule.write_bytes(b"x")
    source = SourceConfig(
        kind="stac",
        name="vnp09ga",
        bands={"red": "SurfReflect_M5_1", "nir": "SurfReflect_M7_1"},
        options={"cloud_mask": True, "reader": "vnp09ga"},
    )
    item = AcquiredItem(
        "VNP09GA.A2024183.h08v05",
        "vnp09ga",
        (T0, T0),
        {"data": granule},
        {},
        {"data": {"type": "application/x-hdf5"}},
    )
    scene = scene_from_item(item, source, {str(granule): "ab" * 32})
    assert [(b.band, b.variable, b.reader) for b in scene.bands] == [
        ("red", "SurfReflect_M5_1", "vnp09ga"),
        ("nir", "SurfReflect_M7_1", "vnp09ga"),
    ]
    assert scene.cloud is not None and scene.cloud.path == str(granule)
    assert scene.cloud.variable is None  # the product's own QA dataset
    assert scene.fingerprint == "ab" * 32


def test_item_lacking_an_asset_leaves_the_band_out(tmp_path) -> None:
    source = SourceConfig(kind="stac", name="l8", bands={"red": "B4", "nir": "B5"})
    item = AcquiredItem(
        "l8",
        "l8",
        (T0, T0),
        {"B4": _tif(tmp_path / "b4.tif", 1), "B9": tmp_path / "b9.tif"},
        {},
    )
    scene = scene_from_item(item, source)
    assert [b.band for b in scene.bands] == ["red"]


def test_granule_time_reads_nasa_names() -> None:
    assert granule_time(
        "NPP_VMAES_L1.A2017300.1406.001.2017300192651.x.hdf"
    ) == dt.datetime(2017, 10, 27, 14, 6, tzinfo=UTC)
    assert granule_time("VNP09GA.A2024183.h08v05.002.2024185001122.h5") == dt.datetime(
        2024, 7, 1, tzinfo=UTC
    )
    assert granule_time("band4.tif") is None
