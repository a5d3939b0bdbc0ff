from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import zarr

from burnscape.config import RegionConfig
from burnscape.cube.counts import write_observation_count
from burnscape.cube.grid import grid_from_region
from burnscape.cube.store import DayStatus, begin_day, create_cube, finish_day

UTC = dt.UTC


@pytest.fixture()
def cube(tmp_path):
    """An 8x8 two-band cube of four days on 4x4 chunks, nothing written."""
    grid = grid_from_region(
        RegionConfig(crs="EPSG:4326", bbox=(10.0, 40.0, 18.0, 48.0), pixel_size=1.0)
    )
    times = [dt.datetime(2024, 7, day, tzinfo=UTC) for day in (1, 2, 3, 4)]
    path = tmp_path / "cube.zarr"
    create_cube(
        path, grid, times, [(t, t) for t in times], ["red", "nir"], chunk_size=4
    )
    return path, list(grid.tiles(4))


def _write_day(path, index: int, red, nir, fingerprint: str = "f") -> None:
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    begin_day(path, index)
    group["red"][index] = red
    group["nir"][index] = nir
    finish_day(
        path,
        index,
        DayStatus.WRITTEN,
        valid_pixels=1,
        reason=None,
        fingerprint=fingerprint,
    )


def _count(path) -> np.ndarray:
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return np.asarray(group["observation_count"][:])


def _values(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    red = rng.random((8, 8), dtype=np.float32)
    nir = rng.random((8, 8), dtype=np.float32)
    red[rng.random((8, 8)) < 0.4] = np.nan
    nir[rng.random((8, 8)) < 0.4] = np.nan
    return red, nir


def _expected(days: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return sum((np.isfinite(r) | np.isfinite(n)).astype(int) for r, n in days)


def test_count_is_any_valid_band_over_complete_days_only(cube) -> None:
    path, tiles = cube
    day0, day1, day3 = _values(0), _values(1), _values(3)
    _write_day(path, 0, *day0)
    _write_day(path, 1, *day1)
    # Day 3 holds data but is not complete (a crash after writing it).
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group["red"][3] = day3[0]

    assert write_observation_count(path, tiles)
    np.testing.assert_array_equal(_count(path), _expected([day0, day1]))
    assert not write_observation_count(path, tiles)


def test_count_added_incrementally_equals_a_rebuild(cube) -> None:
    path, tiles = cube
    days = [_values(seed) for seed in range(4)]
    _write_day(path, 0, *days[0])
    write_observation_count(path, tiles)
    _write_day(path, 2, *days[2])
    _write_day(path, 3, *days[3])
    write_observation_count(path, tiles)
    incremental = _count(path)

    # A rewritten day (new inputs) cannot be added: the count is rebuilt.
    _write_day(path, 2, *days[1], fingerprint="g")
    write_observation_count(path, tiles)

    np.testing.assert_array_equal(incremental, _expected([days[0], *days[2:]]))
    np.testing.assert_array_equal(_count(path), _expected([days[0], *days[1::2]]))


def test_count_interrupted_mid_update_is_rebuilt_not_doubled(cube) -> None:
    path, tiles = cube
    days = [_values(seed) for seed in range(2)]
    _write_day(path, 0, *days[0])
    write_observation_count(path, tiles)
    _write_day(path, 1, *days[1])
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    # What a crash leaves: the marker removed, one tile already updated.
    del group["observation_count"].attrs["counted_days"]
    group["observation_count"][:4, :4] = _expected(days)[:4, :4]

    assert write_observation_count(path, tiles)
    np.testing.assert_array_equal(_count(path), _expected(days))
