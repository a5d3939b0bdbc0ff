from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer

from burnscape.config import RegionConfig
from burnscape.cube.grid import Grid, Tile, grid_from_region
from burnscape.cube.readers import (
    BandFile,
    probe_band,
    read_band_tile,
    read_cloud_tile,
    reader_for,
)
from burnscape.errors import GranuleReadError, MissingBandError
from tests.cube.granules import (
    REFLECTANCE_FILL,
    SPHERE,
    TILE_LR,
    TILE_UL,
    write_mod09ga,
    write_vnp09ga,
)

L1_PREFIX = "NPP_VMAES_L1.A2017300.1406.001.2017300192651.psrpgscs_000501412525"


def _whole(grid: Grid) -> Tile:
    return Tile(0, grid.height, 0, grid.width)


def _l1(data_dir: Path, sds: str) -> BandFile:
    folder = data_dir / "banet-viirs-l1-2017300"
    path = folder / f"{L1_PREFIX}.{sds}.hdf"
    if not path.is_file():
        pytest.skip(f"{path} is absent from the data folder")
    return BandFile("red", str(path))


# --- VIIRS L1 (real LAADS order) -------------------------------------------------


def test_viirs_l1_real_granule_reads_scaled_valid_pixels(data_dir) -> None:
    # The granule clips the south edge of region PI: 248 valid pixels per band
    # (rows 797-799, lon ~-2.1..-0.9), per the data's PROVENANCE.md.
    region = RegionConfig(
        crs="EPSG:4326", bbox=(-2.2, 35.95, -0.8, 36.1), pixel_size=0.01
    )
    grid = grid_from_region(region)
    red = _l1(data_dir, "Reflectance_M5")
    assert reader_for(red).name == "viirs-l1"
    values = read_band_tile(red, grid, _whole(grid))
    finite = values[np.isfinite(values)]
    assert finite.size == 248
    assert 0.087 <= finite.min() and finite.max() <= 0.110
    tir = read_band_tile(_l1(data_dir, "Radiance_M15"), grid, _whole(grid))
    assert 8.2 <= np.nanmin(tir) and np.nanmax(tir) <= 8.34
    sza = read_band_tile(_l1(data_dir, "SolarZenithAngle"), grid, _whole(grid))
    assert np.nanmin(sza) > 58.0 and np.nanmax(sza) < 60.0
    assert np.isfinite(sza).sum() >= 248


def test_viirs_l1_whole_region_grid_is_identity(data_dir) -> None:
    # Region PI itself (BA-Net's 0.01 degree grid): same 248 pixels, same rows.
    grid = grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(-10, 36, 5, 44), pixel_size=0.01)
    )
    red = _l1(data_dir, "Reflectance_M5")
    total = 0
    for tile in grid.tiles(512):
        values = read_band_tile(red, grid, tile)
        rows = np.flatnonzero(np.isfinite(values).any(axis=1)) + tile.y0
        assert set(rows.tolist()) <= {797, 798, 799}
        total += int(np.isfinite(values).sum())
    assert total == 248


def test_viirs_l1_regrids_onto_utm(data_dir) -> None:
    # UTM 30N at 750 m around the valid strip.
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32630", always_xy=True)
    x, y = to_utm.transform(-1.5, 36.02)
    region = RegionConfig(
        crs="EPSG:32630",
        bbox=(x - 30000, y - 6000, x + 30000, y + 6000),
        pixel_size=750,
    )
    grid = grid_from_region(region)
    values = read_band_tile(_l1(data_dir, "Reflectance_M5"), grid, _whole(grid))
    assert np.isfinite(values).sum() > 20
    assert 0.087 <= np.nanmin(values) and np.nanmax(values) <= 0.110


def test_viirs_l1_footprint_tells_outside_from_fill(data_dir) -> None:
    red = _l1(data_dir, "Reflectance_M5")
    inside = grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(0, 40, 1, 41), pixel_size=0.01)
    )
    outside = grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(10, 40, 11, 41), pixel_size=0.01)
    )
    footprint = probe_band(red)
    assert footprint.bounds == pytest.approx((-10.0, 36.0, 5.0, 44.0))
    assert footprint.intersects(inside) and not footprint.intersects(outside)
    assert np.isnan(read_band_tile(red, inside, _whole(inside))).all()


# --- VNP09GA (HDF5, sinusoidal) ----------------------------------------------------


def _tile_grid(rows: int, cols: int, pixel: float, *, crs: str = SPHERE) -> Grid:
    return grid_from_region(
        RegionConfig(
            crs=crs,
            bbox=(
                TILE_UL[0],
                TILE_UL[1] - rows * pixel,
                TILE_UL[0] + cols * pixel,
                TILE_UL[1],
            ),
            pixel_size=pixel,
        )
    )


@pytest.fixture()
def vnp09ga(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 6000, size=(60, 60)).astype(np.int16)
    raw[0, 0] = REFLECTANCE_FILL
    raw[0, 1] = 16500  # outside valid_range
    qf1 = np.zeros((60, 60), np.uint8)
    qf1[2, :] = 0b0100  # probably clear
    qf1[3, :] = 0b1000  # probably cloudy
    qf1[4, :] = 0b1100  # confident cloudy
    path = write_vnp09ga(
        tmp_path / "VNP09GA.A2024183.h08v05.002.2024185001122.h5",
        {"SurfReflect_M5_1": raw, "SurfReflect_M7_1": raw // 2},
        qf1,
    )
    return path, raw, qf1


def test_vnp09ga_on_its_own_sinusoidal_grid_is_exact(vnp09ga) -> None:
    path, raw, qf1 = vnp09ga
    pixel = (TILE_LR[0] - TILE_UL[0]) / 60
    grid = _tile_grid(20, 30, pixel)
    red = BandFile("red", str(path))
    assert reader_for(red).name == "vnp09ga"
    values = read_band_tile(red, grid, Tile(0, 20, 0, 30))
    expected = raw[:20, :30] * 1e-4
    assert np.isnan(values[0, :2]).all()
    np.testing.assert_allclose(values[1:], expected[1:], rtol=1e-5)
    nir = read_band_tile(BandFile("nir", str(path)), grid, Tile(5, 10, 10, 20))
    np.testing.assert_allclose(nir, (raw[5:10, 10:20] // 2) * 1e-4, rtol=1e-5)
    cloud = read_cloud_tile(BandFile("cloud", str(path)), grid, Tile(0, 20, 0, 30))
    assert cloud[3].all() and cloud[4].all()
    assert not cloud[2].any() and not cloud[5:].any()


def test_vnp09ga_regrids_onto_geographic_grid_by_nearest(vnp09ga) -> None:
    path, raw, _ = vnp09ga
    pixel = (TILE_LR[0] - TILE_UL[0]) / 60
    to_lonlat = Transformer.from_crs(SPHERE, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(TILE_UL[0] + 30.5 * pixel, TILE_UL[1] - 30.5 * pixel)
    grid = grid_from_region(
        RegionConfig(
            crs="EPSG:4326", bbox=(lon - 1, lat - 1, lon + 1, lat + 1), pixel_size=0.1
        )
    )
    values = read_band_tile(BandFile("red", str(path)), grid, _whole(grid))
    # Independent check: each output centre falls in one source pixel.
    to_sinu = Transformer.from_crs("EPSG:4326", SPHERE, always_xy=True)
    xs, ys = np.meshgrid(grid.x_coords(), grid.y_coords())
    sx, sy = to_sinu.transform(xs, ys)
    cols = np.floor((sx - TILE_UL[0]) / pixel).astype(int)
    rows = np.floor((TILE_UL[1] - sy) / pixel).astype(int)
    np.testing.assert_allclose(values, raw[rows, cols] * 1e-4, rtol=1e-5)


def test_vnp09ga_missing_dataset_and_corrupt_file(tmp_path, vnp09ga) -> None:
    path, _, _ = vnp09ga
    with pytest.raises(MissingBandError, match="no dataset 'SurfReflect_M10_1'"):
        probe_band(BandFile("swir1", str(path)))
    broken = tmp_path / "VNP09GA.A2024184.h08v05.002.2024186001122.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(GranuleReadError, match="cannot open HDF5 file"):
        probe_band(BandFile("red", str(broken)))


# --- MOD09GA (HDF4-EOS, sinusoidal) ------------------------------------------------


@pytest.fixture()
def mod09ga(tmp_path) -> tuple[Path, np.ndarray]:
    raw = np.full((80, 80), 500, np.int16)
    raw[0, 0] = REFLECTANCE_FILL
    raw[0, 1] = -150  # below valid_range
    state = np.zeros((40, 40), np.uint16)
    state[5, :] = 0b01  # cloudy
    state[6, :] = 0b10  # mixed
    state[7, :] = 0b100  # cloud shadow
    state[8, :] = 0b11  # not set, assumed clear
    ndvi = np.zeros((80, 80), np.int16)
    ndvi[0, :2] = [-1976, 8390]
    ndvi[0, 2] = -3000
    l2 = np.full((80, 80), 12000, np.int16)
    path = write_mod09ga(
        tmp_path / "MOD09GA.A2024183.h08v05.061.2024185021613.hdf",
        {"sur_refl_b01_1": raw, "sur_refl_b02_1": raw * 4},
        state,
        {
            "NDVI": (ndvi, 10000.0, 0.0, -3000),
            "Cloud_Top_Temperature": (l2, 0.01, -15000.0, -32768),
        },
    )
    return path, raw


def test_mod09ga_reflectance_fill_and_clouds(mod09ga) -> None:
    path, _ = mod09ga
    pixel = (TILE_LR[0] - TILE_UL[0]) / 80
    grid = _tile_grid(20, 20, pixel)
    red = BandFile("red", str(path))
    assert reader_for(red).name == "mod09ga"
    values = read_band_tile(red, grid, _whole(grid))
    assert np.isnan(values[0, :2]).all()
    assert values[1, 1] == pytest.approx(0.05)
    nir = read_band_tile(BandFile("nir", str(path)), grid, _whole(grid))
    assert nir[1, 1] == pytest.approx(0.2)
    cloud = read_cloud_tile(BandFile("cloud", str(path)), grid, _whole(grid))
    # 1 km QA rows 5, 6, 7 cover 500 m rows 10..15.
    assert cloud[10:16].all()
    assert not cloud[:10].any() and not cloud[16:].any()


def test_mod09ga_reader_applies_modis_conventions(mod09ga) -> None:
    # Handed cases through the reader: NDVI divided by 10000, L2-style
    # (raw - add_offset) * scale_factor, fill masked.
    path, _ = mod09ga
    pixel = (TILE_LR[0] - TILE_UL[0]) / 80
    grid = _tile_grid(2, 4, pixel)
    ndvi = read_band_tile(
        BandFile("ndvi", str(path), variable="NDVI"), grid, _whole(grid)
    )
    np.testing.assert_allclose(ndvi[0, :2], [-0.1976, 0.8390], rtol=1e-6)
    assert np.isnan(ndvi[0, 2])
    temperature = read_band_tile(
        BandFile("tir", str(path), variable="Cloud_Top_Temperature"), grid, _whole(grid)
    )
    np.testing.assert_allclose(temperature, 270.0)


# --- GeoTIFF and selection ----------------------------------------------------------


def _tif(
    path: Path, data: np.ndarray, transform: Affine, crs: str, nodata=None
) -> Path:
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
    return path


def test_geotiff_south_up_file_reads_north_up(tmp_path) -> None:
    # Rows stored south to north (positive pixel height).
    data = np.array([[1], [2], [3], [4]], dtype=np.float32)  # row 0 = southernmost
    path = _tif(
        tmp_path / "south_up.tif", data, Affine(1, 0, 110, 0, 1, -44), "EPSG:4326"
    )
    grid = grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(110, -44, 111, -40), pixel_size=1)
    )
    values = read_band_tile(BandFile("red", str(path)), grid, _whole(grid))
    assert values[:, 0].tolist() == [4, 3, 2, 1]


def test_reader_selection_by_option_media_type_and_name(tmp_path, vnp09ga) -> None:
    path, _, _ = vnp09ga
    renamed = tmp_path / "granule.h5"
    renamed.write_bytes(Path(path).read_bytes())
    with pytest.raises(GranuleReadError, match="no reader recognises granule.h5"):
        reader_for(BandFile("red", str(renamed)))
    assert reader_for(BandFile("red", str(renamed), reader="vnp09ga")).name == "vnp09ga"
    cog = BandFile(
        "red",
        str(tmp_path / "B04"),
        media_type="image/tiff; application=geotiff; profile=cloud-optimized",
    )
    assert reader_for(cog).name == "geotiff"
    with pytest.raises(GranuleReadError, match="unknown reader 'nope'"):
        reader_for(BandFile("red", str(renamed), reader="nope"))
