from __future__ import annotations

import numpy as np
import pytest

from burnscape.cube.readers import Scaling, decode


def test_decode_modis_ndvi_divides_by_scale_factor() -> None:
    # Handed case: MODIS-style int16 NDVI, scale_factor 10000, add_offset 0.
    ndvi = Scaling(scale=10000.0, offset=0.0, convention="modis", fill=(-3000,))
    values = decode(np.array([-1976, 8390], dtype=np.int16), ndvi)
    np.testing.assert_allclose(values, [-0.1976, 0.8390], rtol=1e-6)
    assert values.dtype == np.float32


def test_decode_l2_style_subtracts_offset_then_scales() -> None:
    # Handed case: raw 12000, scale_factor 0.01, add_offset -15000 -> 270.0.
    l2 = Scaling(scale=0.01, offset=-15000.0, convention="hdf4")
    assert decode(np.array([12000], dtype=np.int16), l2)[0] == pytest.approx(270.0)
    modis = Scaling(scale=0.01, offset=-15000.0, convention="modis")
    assert decode(np.array([12000], dtype=np.int16), modis)[0] == pytest.approx(270.0)


def test_decode_linear_is_raw_times_scale_plus_offset() -> None:
    landsat = Scaling(scale=2.75e-5, offset=-0.2, fill=(0,))
    values = decode(np.array([10000, 0], dtype=np.uint16), landsat)
    assert values[0] == pytest.approx(0.075, rel=1e-5)
    assert np.isnan(values[1])


@pytest.mark.parametrize("convention", ["linear", "hdf4", "modis"])
def test_decode_fill_is_masked_never_scaled(convention) -> None:
    scaling = Scaling(scale=0.0001, offset=0.0, convention=convention, fill=(-28672,))
    values = decode(np.array([-28672, 100], dtype=np.int16), scaling)
    assert np.isnan(values[0])
    assert values[1] == pytest.approx(0.01)


def test_decode_masks_viirs_fill_range_and_valid_range() -> None:
    sdr = Scaling(scale=2e-5, fill_at_or_above=65527)
    raw = np.array([65527, 65535, 65526], dtype=np.uint16)
    assert np.isnan(decode(raw, sdr)[:2]).all()
    assert np.isfinite(decode(raw, sdr)[2])
    angles = Scaling(fill_at_or_below=-999.0)
    assert np.isnan(decode(np.array([-999.9], np.float32), angles)[0])
    ranged = Scaling(scale=1e-4, valid_range=(-100, 16000), convention="hdf4")
    values = decode(np.array([-101, 16001, 16000], dtype=np.int16), ranged)
    assert np.isnan(values[:2]).all() and values[2] == pytest.approx(1.6)
