from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from burnscape.errors import ModelError, WeightsError
from burnscape.model.banet import BANet, BANetConfig
from burnscape.model.daily import BANetSpec, SequencePredictor, to_daily
from burnscape.model.inference import predict_burned
from burnscape.model.summary import summarize_daily
from burnscape.model.tiling import TileGrid
from burnscape.model.weights import (
    WeightsMetadata,
    load_banet_weights,
    save_banet_weights,
)
from tests.model.conftest import requires_cuda

SMALL = BANetConfig(width=0.125, sequence_length=16)


def _random_model(seed: int = 0, config: BANetConfig = SMALL) -> BANet:
    torch.manual_seed(seed)
    model = BANet(config).eval()
    for module in model.modules():  # batch-norm statistics that are not identity
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def _metadata(config: BANetConfig = SMALL) -> WeightsMetadata:
    return WeightsMetadata(
        architecture=config.to_dict(),
        bands=("red", "nir", "swir2", "frp"),
        mean=(0.08, 0.18, 0.15, 0.01),
        std=(0.03, 0.05, 0.06, 0.2),
        sequence_length=config.sequence_length,
        training_data_sha256="0" * 64,
    )


@pytest.fixture
def weight_files(tmp_path):
    return tuple(
        str(
            save_banet_weights(
                tmp_path / f"m{seed}.pt", _random_model(seed), _metadata()
            )
        )
        for seed in (0, 1)
    )


def _daily_cube(rows: int = 40, cols: int = 52, days: int = 20) -> xr.Dataset:
    rng = np.random.default_rng(3)
    time = np.datetime64("2018-07-01") + np.arange(days).astype("timedelta64[D]")
    keep = np.ones(days, bool)
    keep[[4, 9]] = False  # days without an acquisition
    data = {}
    for band, level in (("red", 0.08), ("nir", 0.2), ("swir2", 0.15)):
        values = rng.normal(level, 0.01, (keep.sum(), rows, cols)).astype(np.float32)
        values[3, 10:20, 10:30] = np.nan  # a cloud
        data[band] = (("time", "y", "x"), values)
    frp = np.zeros((keep.sum(), rows, cols), np.float32)
    frp[7, 20:25, 20:25] = 30.0
    data["frp"] = (("time", "y", "x"), frp)
    coords = {
        "time": time[keep].astype("datetime64[ns]"),
        "y": 4000.0 - 100 * np.arange(rows),
        "x": 100.0 * np.arange(cols),
    }
    cube = xr.Dataset(data, coords=coords)
    cube["observation_count"] = np.isfinite(cube["nir"]).sum("time").astype(np.int16)
    return cube


def test_full_width_has_the_original_parameter_count():
    model = BANet(BANetConfig())
    assert sum(p.numel() for p in model.parameters()) == 3_415_361


def test_output_is_one_logit_per_pixel_and_day():
    out = _random_model()(torch.zeros(2, 4, 16, 32, 64))
    assert out.shape == (2, 1, 16, 32, 64) and out.dtype == torch.float32


def test_weights_round_trip_with_metadata(tmp_path):
    model = _random_model()
    path = save_banet_weights(tmp_path / "w.pt", model, _metadata(), half=True)
    raw = torch.load(path, weights_only=True)
    assert raw["metadata"]["training_data_sha256"] == "0" * 64
    loaded, meta = load_banet_weights(path)
    assert meta.bands == ("red", "nir", "swir2", "frp") and meta.sequence_length == 16
    assert meta.code_version and "saved" in meta.extra
    x = torch.randn(1, 4, 16, 32, 32)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded(x), model(x), atol=5e-2)


def test_foreign_weight_files_are_refused(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(_random_model().state_dict(), path)
    with pytest.raises(WeightsError, match="not a burnscape-banet/1 file"):
        load_banet_weights(path)


def test_predictor_pads_space_and_time_and_blends_windows():
    model = _random_model()
    eager = SequencePredictor(
        [model], device=torch.device("cpu"), sequence_length=16, time_overlap=8
    )
    batch = np.random.default_rng(0).normal(size=(2, 4, 40, 20, 45)).astype(np.float32)
    out = eager(batch)
    assert out.shape == (2, 40, 20, 45) and np.all((out >= 0) & (out <= 1))
    short = eager(batch[:, :, :10])
    assert short.shape == (2, 10, 20, 45)
    folded = SequencePredictor(
        [model],
        device=torch.device("cpu"),
        sequence_length=16,
        time_overlap=8,
        fold_norms=True,
    )
    np.testing.assert_allclose(folded(batch), out, atol=1e-5)


def test_ensemble_averages_members():
    first, second = _random_model(0), _random_model(1)
    batch = np.random.default_rng(1).normal(size=(1, 4, 16, 32, 32)).astype(np.float32)
    kwargs = {"device": torch.device("cpu"), "sequence_length": 16}
    both = SequencePredictor([first, second], **kwargs)(batch)
    mean = (
        SequencePredictor([first], **kwargs)(batch)
        + SequencePredictor([second], **kwargs)(batch)
    ) / 2
    np.testing.assert_allclose(both, mean, atol=1e-6)


def test_daily_summary_dates_and_interval():
    days = np.datetime64("2020-01-01") + np.arange(5).astype("timedelta64[D]")
    prob = np.zeros((5, 1, 3), np.float32)
    prob[:, 0, 0] = [0.0, 0.1, 0.2, 0.7, 0.1]  # burned, most probable day 3
    prob[:, 0, 1] = [0.1, 0.1, 0.1, 0.0, 0.0]  # not burned (sum 0.3)
    prob[:, 0, 2] = [0.0, 0.0, 0.0, 0.0, 0.0]
    values = np.ones((5, 1, 3), np.float32)
    values[1:3, 0, 0] = np.nan  # clouds before the burn day
    values[:, 0, 2] = np.nan  # never observed
    cube = xr.Dataset(
        {"nir": (("time", "y", "x"), values)},
        coords={
            "time": days.astype("datetime64[ns]"),
            "y": [0.0],
            "x": [0.0, 1.0, 2.0],
        },
    )
    probability = xr.DataArray(prob, dims=("time", "y", "x")).chunk({"x": 2})
    out = summarize_daily(probability, cube, bands=("nir",)).compute()
    base = int(days[0].astype(np.int64))
    assert out["burned"].values.tolist() == [[1, 0, 255]]
    assert out["confidence"].values[0, 0] == pytest.approx(1.0)
    assert np.isnan(out["confidence"].values[0, 2])
    assert out["burn_date"].values[0, 0] == base + 3
    assert out["burn_date_min"].values[0, 0] == base + 1  # day after the last clear day
    assert out["burn_date_max"].values[0, 0] == base + 3
    assert out["burn_date"].values[0, 1] == -1


def test_spec_chunked_equals_whole_and_dates_on_daily_axis(weight_files):
    spec = BANetSpec(weights=weight_files, grid=TileGrid(32, 8, 0))
    cube = _daily_cube()
    whole = predict_burned(cube.chunk({"y": -1, "x": -1}), spec, halo=0).compute()
    assert whole.sizes["time"] == 20  # gaps filled in
    for chunks in ({"y": 20, "x": 26}, {"y": 13, "x": 30}):
        part = predict_burned(cube.chunk(chunks), spec, halo=spec.exact_halo).compute()
        np.testing.assert_allclose(part["probability"], whole["probability"], atol=1e-5)
        np.testing.assert_array_equal(part["burn_date"], whole["burn_date"])
    conf = np.clip(whole["probability"].sum("time").values, 0, 1)
    np.testing.assert_allclose(whole["confidence"].values, conf, atol=1e-5)
    best = whole["probability"].argmax("time").values
    days = whole["time"].values.astype("datetime64[D]").astype(np.int64)
    burned = whole["burned"].values == 1
    np.testing.assert_array_equal(whole["burn_date"].values[burned], days[best][burned])


def test_ensemble_members_must_share_normalisation(tmp_path, weight_files):
    other = _metadata()
    other = WeightsMetadata(**{**other.__dict__, "mean": (0.0, 0.0, 0.0, 0.0)})
    odd = save_banet_weights(tmp_path / "odd.pt", _random_model(), other)
    with pytest.raises(WeightsError, match="ensemble must share"):
        _ = BANetSpec(weights=(weight_files[0], str(odd))).metadata


def test_to_daily_rejects_two_slots_on_one_day():
    time = np.array(["2020-01-01T10", "2020-01-01T20"], dtype="datetime64[ns]")
    cube = xr.Dataset(
        {"nir": (("time", "y", "x"), np.ones((2, 1, 1)))}, coords={"time": time}
    )
    with pytest.raises(ModelError, match="two time slots on one day"):
        to_daily(cube)


@pytest.mark.gpu
@requires_cuda
def test_gpu_bfloat16_matches_cpu():
    model = _random_model()
    batch = np.random.default_rng(2).normal(size=(2, 4, 16, 64, 64)).astype(np.float32)
    cpu = SequencePredictor([model], device=torch.device("cpu"), sequence_length=16)(
        batch
    )
    gpu = SequencePredictor(
        [_random_model()], device=torch.device("cuda"), sequence_length=16
    )(batch)
    np.testing.assert_allclose(gpu, cpu, atol=3e-2)
