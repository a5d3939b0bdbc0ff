from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from burnscape.errors import ModelError
from burnscape.model.spectral import (
    SpectralParams,
    _clean,
    detect_spectral,
    robust_stats,
)

SIZE = 96


def _cube(chunk: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = (2, SIZE, SIZE)
    nir = 0.30 + rng.normal(0, 0.005, shape)
    swir1 = 0.20 + rng.normal(0, 0.005, shape)
    swir2 = 0.12 + rng.normal(0, 0.005, shape)
    # A 30x30 burned patch, and a 2-pixel speck smaller than the mapping unit.
    for rows, cols in ((slice(20, 50), slice(30, 60)), (slice(80, 81), slice(5, 7))):
        nir[1, rows, cols] = 0.15
        swir2[1, rows, cols] = 0.22
    nir[:, 0, 0] = np.nan  # never observed
    x = 500000 + 30 * (np.arange(SIZE) + 0.5)
    y = 4000000 - 30 * (np.arange(SIZE) + 0.5)
    times = pd.to_datetime(["2024-06-01", "2024-06-17"])
    cube = xr.Dataset(
        {
            name: (("time", "y", "x"), values.astype(np.float32))
            for name, values in (("nir", nir), ("swir1", swir1), ("swir2", swir2))
        },
        coords={"time": times, "y": y, "x": x},
    )
    cube["day_complete"] = ("time", np.ones(2, np.uint8))
    cube["observation_count"] = (("y", "x"), np.isfinite(nir).sum(0).astype(np.int16))
    cube = cube.rio.write_crs("EPSG:32610")
    return cube.chunk({"time": 1, "y": chunk, "x": chunk})


def test_detect_spectral_finds_patch_and_drops_speck() -> None:
    result = detect_spectral(_cube(32), SpectralParams(min_area_ha=1.0)).compute()
    burned = result["burned"].values
    assert (burned[20:50, 30:60] == 1).all()
    assert (burned[80, 5:7] == 0).all()  # 2 px < 1 ha at 30 m (12 px)
    assert burned[0, 0] == 255
    outside = burned.copy()
    outside[20:50, 30:60] = 0
    assert (outside == 1).sum() == 0
    day = (np.datetime64("2024-06-17") - np.datetime64("1970-01-01")).astype(int)
    assert (result["burn_date"].values[20:50, 30:60] == day).all()
    assert (result["burn_date"].values[burned == 0] == -1).all()
    assert result["confidence"].values[25, 40] > 0.9
    assert result["confidence"].dtype == np.float32


def test_detect_spectral_same_answer_for_any_chunking() -> None:
    a = detect_spectral(_cube(16), SpectralParams()).compute()
    b = detect_spectral(_cube(SIZE), SpectralParams()).compute()
    for name in ("burned", "burn_date", "burn_date_min", "burn_date_max"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_allclose(a["confidence"].values, b["confidence"].values)


def test_detect_spectral_needs_two_complete_days() -> None:
    cube = _cube(32)
    cube["day_complete"] = ("time", np.array([1, 0], np.uint8))
    with pytest.raises(ModelError, match="two complete observations"):
        detect_spectral(cube, SpectralParams())


def test_detect_spectral_names_missing_band() -> None:
    with pytest.raises(ModelError, match=r"lacks \['swir1'\]"):
        detect_spectral(_cube(32).drop_vars("swir1"), SpectralParams())


def test_clean_fills_small_holes_only() -> None:
    block = np.zeros((20, 20), bool)
    block[2:18, 2:18] = True
    block[5, 5] = False  # small hole: filled
    block[10:16, 10:16] = False  # 36 px hole: kept with min_pixels=12
    out = _clean(block, min_pixels=12)
    assert out[5, 5]
    assert not out[12, 12]


def test_robust_stats_median_and_mad() -> None:
    values = np.arange(1, 10, dtype=float).reshape(3, 3)
    median, mad = robust_stats(values)
    assert median == 5
    assert mad == pytest.approx(1.4826 * 2)
