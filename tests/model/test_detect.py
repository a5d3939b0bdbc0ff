from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from burnscape.config import DetectorConfig
from burnscape.errors import ModelError
from burnscape.model import detect, shipped_banet_weights
from burnscape.model.weights import save_banet_weights
from burnscape.utils import sha256_file
from tests.model.conftest import f1_score
from tests.model.test_banet import _daily_cube, _metadata, _random_model


def _write_cube(cube: xr.Dataset, path, chunk: int = 16) -> None:
    cube = cube.rio.write_crs("EPSG:32610")
    cube = cube.chunk({"time": 1, "y": chunk, "x": chunk})
    for name in cube.data_vars:
        cube[name].encoding.clear()
    cube.to_zarr(path, mode="w", consolidated=True, zarr_format=2)


def test_banet_detect_writes_burned_zarr(tmp_path):
    weights = save_banet_weights(tmp_path / "w.pt", _random_model(), _metadata())
    cube_path, burned_path = tmp_path / "cube.zarr", tmp_path / "burned.zarr"
    _write_cube(_daily_cube(), cube_path)
    detect(
        cube_path, burned_path, DetectorConfig(kind="banet", weights=(str(weights),))
    )

    burned = xr.open_zarr(burned_path, mask_and_scale=False, decode_times=False)
    assert burned.attrs["detector"] == "banet"
    assert burned.attrs["weights_sha256"] == sha256_file(weights)
    assert json.loads(burned.attrs["detector_params"])["sequence_length"] == 16
    for name in (
        "burned",
        "confidence",
        "burn_date",
        "burn_date_min",
        "burn_date_max",
        "observation_count",
        "probability",
    ):
        assert name in burned
    assert burned["burned"].dtype == np.uint8 and burned["burn_date"].dtype == np.int32
    assert burned["probability"].sizes["time"] == 20
    assert xr.open_zarr(burned_path).rio.crs.to_epsg() == 32610
    cube = xr.open_zarr(cube_path)
    np.testing.assert_array_equal(burned["x"], cube["x"])
    np.testing.assert_array_equal(burned["y"], cube["y"])
    assert burned.attrs["date_epoch"] == "1970-01-01"
    for name in ("burn_date", "burn_date_min", "burn_date_max"):
        assert burned[name].attrs["units"] == "days since 1970-01-01"
        assert burned[name].attrs["_FillValue"] == -1
    assert burned["burned"].attrs["_FillValue"] == 255
    dates = burned["burn_date"].values
    first = int(cube["time"].values[0].astype("datetime64[D]").astype(np.int64))
    flags = burned["burned"].values
    on_window = (dates >= first) & (dates < first + 20)
    assert np.all(on_window[flags == 1]) and np.all(dates[flags != 1] == -1)
    values = burned["burned"].values
    assert set(np.unique(values)) <= {0, 1, 255}


def test_firehr_needs_its_weights(tmp_path):
    with pytest.raises(ModelError, match="needs detector.weights"):
        detect(
            tmp_path / "cube.zarr", tmp_path / "b.zarr", DetectorConfig(kind="firehr")
        )


def test_banet_without_weights_runs_the_shipped_weights(tmp_path):
    cube_path, burned_path = tmp_path / "cube.zarr", tmp_path / "burned.zarr"
    _write_cube(_daily_cube(rows=32, cols=32), cube_path)
    detect(cube_path, burned_path, DetectorConfig(kind="banet"))
    burned = xr.open_zarr(burned_path, mask_and_scale=False, decode_times=False)
    assert burned.attrs["weights_sha256"] == sha256_file(shipped_banet_weights())
    assert json.loads(burned.attrs["detector_params"])["sequence_length"] == 64


def test_banet_refuses_multi_year_cubes(tmp_path):
    weights = save_banet_weights(tmp_path / "w.pt", _random_model(), _metadata())
    cube = _daily_cube(rows=8, cols=8, days=12).isel(time=[0, 1, 2])
    cube = cube.assign_coords(
        time=np.array(
            ["2013-04-11", "2016-01-01", "2018-06-09"], dtype="datetime64[ns]"
        )
    )
    _write_cube(cube, tmp_path / "cube.zarr", chunk=8)
    with pytest.raises(ModelError, match="at most 731"):
        detect(
            tmp_path / "cube.zarr",
            tmp_path / "b.zarr",
            DetectorConfig(kind="banet", weights=(str(weights),)),
        )


@pytest.mark.slow
def test_firehr_detect_on_chrome2(
    tmp_path, firehr_weights, chrome2_cube, chrome2_perimeter, record_property
):
    cube_path, burned_path = tmp_path / "cube.zarr", tmp_path / "burned.zarr"
    cube = chrome2_cube.chunk({"time": 1, "y": 256, "x": 256})
    for name in cube.data_vars:
        cube[name].encoding.clear()
    cube.to_zarr(cube_path, mode="w", consolidated=True, zarr_format=2)
    detect(
        cube_path,
        burned_path,
        DetectorConfig(kind="firehr", weights=(str(firehr_weights),)),
    )

    burned = xr.open_zarr(burned_path, mask_and_scale=False, decode_times=False)
    params = json.loads(burned.attrs["detector_params"])
    assert params["split_date"] == "2018-06-09" and params["filter_size"] == 33
    mask = burned["burned"].values == 1
    valid = burned["burned"].values != 255
    score = f1_score(mask, chrome2_perimeter, valid)
    record_property("f1_firehr_detect", round(score, 4))
    assert score > 0.6
    dates = burned["burn_date"].values[mask]
    assert np.all(dates == 17691)  # 2018-06-09, the first slot after the split
    assert np.all(burned["burn_date_min"].values[mask] == 15806)  # 2013-04-11
