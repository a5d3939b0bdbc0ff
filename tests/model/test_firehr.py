import numpy as np
import pytest
import torch
import xarray as xr
from affine import Affine

from burnscape.errors import ModelError, WeightsError
from burnscape.model.firehr import (
    FireHR,
    FireHRSpec,
    coarse_filter_size,
    load_firehr,
    predict_firehr,
    prepare_firehr_input,
    resample_coarse_doy,
    smooth_coarse_doy,
)
from burnscape.model.inference import predict_burned
from burnscape.model.tiling import TileGrid
from tests.model.conftest import f1_score


def _random_input(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.0, 0.5, (6, rows, cols)).astype(np.float32)
    doy = np.zeros((rows, cols), np.float32)
    doy[rows // 3 : rows // 2, cols // 4 : cols // 2] = 160.0
    return prepare_firehr_input(image[:3], image[3:], smooth_coarse_doy(doy, 11))


def test_real_weights_load_strictly(firehr_weights):
    model = load_firehr(firehr_weights)
    assert not model.training
    state = torch.load(firehr_weights, weights_only=True)
    assert set(model.state_dict()) == set(state)
    assert torch.equal(model.finalconv.bias, state["finalconv.bias"])


def test_weights_with_missing_key_are_rejected(tmp_path):
    state = FireHR().state_dict()
    del state["finalconv.bias"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="finalconv.bias"):
        load_firehr(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": FireHR()}, path)
    with pytest.raises(WeightsError, match="weights_only"):
        load_firehr(path)


def test_output_shape_dtype_range_and_determinism(firehr_weights):
    model = load_firehr(firehr_weights)
    inputs = _random_input(40, 50)
    first = predict_firehr(model, inputs)
    second = predict_firehr(model, inputs)
    assert first.shape == (40, 50) and first.dtype == np.float32
    assert np.all((first >= 0) & (first <= 1))
    np.testing.assert_array_equal(first, second)


def test_tiles_blend_to_the_untiled_result(firehr_weights):
    model = load_firehr(firehr_weights)
    inputs = _random_input(70, 90, seed=3)
    whole = predict_firehr(model, inputs, grid=TileGrid(128, 16, 3))
    tiled = predict_firehr(model, inputs, grid=TileGrid(32, 8, 3), batch_size=5)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def test_smoothing_matches_torch_reflect_mean():
    doy = np.random.default_rng(2).uniform(0, 200, (30, 40)).astype(np.float32)
    kernel = torch.ones(1, 1, 7, 7) / 49.0
    padded = torch.nn.functional.pad(
        torch.from_numpy(doy)[None, None], (3,) * 4, "reflect"
    )
    expected = torch.nn.functional.conv2d(padded, kernel)[0, 0].numpy()
    np.testing.assert_allclose(
        smooth_coarse_doy(doy, 7), expected, rtol=1e-5, atol=1e-3
    )


def test_filter_keeps_the_ground_width():
    assert coarse_filter_size(10.0) == 101
    assert coarse_filter_size(30.0) == 33
    assert coarse_filter_size(1000.0) == 3


def test_coarse_doy_resamples_bilinearly():
    coarse = np.array([[0.0, 100.0], [0.0, 100.0]], np.float32)
    fine = resample_coarse_doy(
        coarse,
        src_transform=Affine(100, 0, 0, 0, -100, 200),
        src_crs="EPSG:32610",
        dst_transform=Affine(10, 0, 0, 0, -10, 200),
        dst_crs="EPSG:32610",
        dst_shape=(20, 20),
    )
    row = fine[10]
    assert row[0] == pytest.approx(0.0) and row[-1] == pytest.approx(100.0)
    assert np.all(np.diff(row) >= 0) and 0 < row[10] < 100


@pytest.mark.slow
def test_chrome2_refined_by_real_weights(
    firehr_weights, chrome2_cube, chrome2_perimeter, record_property
):
    """FireHR on the CHROME 2 pair with the spectral detector's mask as coarse input."""
    from burnscape.model.spectral import SpectralParams, detect_spectral

    spectral = detect_spectral(
        chrome2_cube.chunk({"y": 256, "x": 256}), SpectralParams()
    )
    coarse = spectral["burned"].values == 1
    doy = np.where(coarse, 160.0, 0.0).astype(np.float32)  # alarm date 2018-06-09
    bands = ("red", "nir", "swir2")
    before = np.stack([chrome2_cube[b].values[0] for b in bands])
    after = np.stack([chrome2_cube[b].values[1] for b in bands])
    valid = np.isfinite(before).all(0) & np.isfinite(after).all(0)
    model = load_firehr(firehr_weights)

    scores = {"spectral": f1_score(coarse, chrome2_perimeter, valid)}
    for size in (101, coarse_filter_size(30.0)):
        inputs = prepare_firehr_input(before, after, smooth_coarse_doy(doy, size))
        burned = predict_firehr(model, inputs) >= 0.5
        scores[f"firehr_filter{size}"] = f1_score(burned, chrome2_perimeter, valid)
    for name, score in scores.items():
        record_property(f"f1_{name}", round(score, 4))

    assert scores["spectral"] >= 0.85
    # FireHR keeps nearly all of the fire but, fed Landsat TOA instead of the
    # Sentinel-2 reflectance it was trained on, also flags browned grass nearby.
    assert scores["firehr_filter33"] > 0.6
    assert scores["firehr_filter33"] > scores["firehr_filter101"]


def _small_cube(rows: int = 64, cols: int = 72) -> xr.Dataset:
    rng = np.random.default_rng(5)
    times = np.array(["2018-05-01", "2018-05-20", "2018-06-20"], dtype="datetime64[ns]")
    bands = {}
    for band in ("red", "nir", "swir2"):
        values = rng.uniform(0.05, 0.4, (3, rows, cols)).astype(np.float32)
        values[:, :5, :5] = np.nan  # never observed
        bands[band] = (("time", "y", "x"), values)
    cube = xr.Dataset(
        bands,
        coords={
            "time": times,
            "y": 1000.0 - 30 * np.arange(rows),
            "x": 30.0 * np.arange(cols),
        },
    )
    doy = np.zeros((rows, cols), np.float32)
    doy[20:40, 30:60] = 160.0
    cube["coarse_burn_doy"] = (("y", "x"), doy)
    return cube


def test_spec_chunked_equals_whole_array(firehr_weights):
    spec = FireHRSpec(
        weights=str(firehr_weights), split_date="2018-06-09", filter_size=11
    )
    cube = _small_cube()
    whole = predict_burned(cube.chunk({"y": -1, "x": -1}), spec, halo=0).compute()
    for chunks in ({"y": 20, "x": 30}, {"y": 33, "x": 17}):
        part = predict_burned(cube.chunk(chunks), spec, halo=spec.exact_halo).compute()
        np.testing.assert_allclose(part["confidence"], whole["confidence"], atol=1e-6)
        np.testing.assert_array_equal(part["burned"], whole["burned"])
    assert whole["burned"].values[0, 0] == 255
    assert np.isnan(whole["confidence"].values[0, 0])
    burned = whole["burned"].values == 1
    assert np.all(whole["burn_date"].values[burned] == 17702)  # 2018-06-20
    assert np.all(whole["burn_date_min"].values[burned] == 17671)  # 2018-05-20
    assert np.all(whole["burn_date"].values[~burned] == -1)


def test_spec_needs_observations_on_both_sides(firehr_weights):
    spec = FireHRSpec(weights=str(firehr_weights), split_date="2019-01-01")
    with pytest.raises(ModelError, match="before and after 2019-01-01"):
        spec.prepare(_small_cube())
