from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from burnscape.cli import main
from burnscape.errors import ModelError
from burnscape.model.synthetic import (
    SimulationConfig,
    load_sources,
    simulate_fire,
    simulate_sequences,
)
from burnscape.model.training import TrainingConfig, train_banet
from burnscape.model.weights import load_banet_weights


@pytest.fixture(scope="module")
def sources(shared_data):
    for name in (
        "firehr-banet-events",
        "chrome2-fire-2018-landsat8",
        "creek-fire-2020-viirs-snpp-detections",
    ):
        if not (shared_data / name).exists():
            pytest.skip(f"real data {name} not found")
    return load_sources(shared_data)


def test_sources_are_real_and_hashed(sources, shared_data):
    assert set(sources.fires) >= {"PT2017_1", "Attica2018_1"}
    assert (
        sources.spectra.burned_post.shape[1] == 3
        and len(sources.spectra.burned_post) > 1000
    )
    # burned spectra: NBR fell (the CHROME 2 scar)
    pre, post = sources.spectra.burned_pre, sources.spectra.burned_post
    nbr = lambda s: (s[:, 1] - s[:, 2]) / (s[:, 1] + s[:, 2])  # noqa: E731
    assert np.median(nbr(pre) - nbr(post)) > 0.27
    assert sources.frp.min() > 0
    config = SimulationConfig()
    assert load_sources(shared_data).data_hash(config, 0) == sources.data_hash(
        config, 0
    )
    assert sources.data_hash(config, 0) != sources.data_hash(config, 1)


def test_simulated_burn_shows_on_its_labelled_day(sources):
    config = SimulationConfig(
        tile_size=32,
        sequence_length=32,
        cloud_day_probability=0.0,
        gap_day_probability=0.0,
        noise_std=0.0,
        day_offset_std=0.0,
    )
    batch = simulate_fire(sources, "FRiv2017_1", config, np.random.default_rng(0))
    x, index = batch.x[0], batch.burn_index[0]
    assert x.shape == (4, 32, *sources.fires["FRiv2017_1"].doy.shape)
    burns = np.argwhere(index >= 0)
    assert len(burns) == (sources.fires["FRiv2017_1"].doy > 0).sum()
    row, col = burns[0]
    day = index[row, col]
    nbr = (x[1, :, row, col] - x[2, :, row, col]) / (
        x[1, :, row, col] + x[2, :, row, col]
    )
    assert nbr[day - 1] - nbr[day] > 0.1  # the scar appears on the burn day
    assert np.allclose(nbr[day:], nbr[day])


def test_clouds_and_gaps_are_missing_values(sources):
    batch = simulate_sequences(
        sources,
        ["PT2017_1"],
        4,
        SimulationConfig(sequence_length=32),
        np.random.default_rng(1),
    )
    missing = np.isnan(batch.x[:, :3]).mean()
    assert 0.05 < missing < 0.6
    assert not np.isnan(batch.x[:, 3]).any()


def test_tiny_training_writes_loadable_weights_with_metadata(
    shared_data, sources, tmp_path
):
    config = TrainingConfig(
        width=0.125,
        sequence_length=16,
        tile_size=32,
        batch_size=2,
        steps=3,
        heldout_repeats=1,
        normalisation_samples=4,
    )
    steps = []
    path, score = train_banet(
        shared_data,
        tmp_path / "w.pt",
        config,
        progress=lambda step, loss: steps.append((step, loss)),
    )
    assert [s for s, _ in steps] == [1, 2, 3]
    model, meta = load_banet_weights(path)
    assert meta.bands == ("red", "nir", "swir2", "frp")
    assert meta.training_data_sha256 == sources.data_hash(
        SimulationConfig(tile_size=32, sequence_length=16), 0
    )
    assert meta.extra["heldout"]["burned_pixels"] > 0
    assert (
        "semi-synthetic" in meta.extra["semi_synthetic"] or meta.extra["semi_synthetic"]
    )
    assert set(meta.extra["training"]["heldout_fires"]) == {
        "Attica2018_1",
        "FRiv2017_2",
    }
    assert (
        0.0 <= score.f1 <= 1.0
        and 0 <= score.dated_within_1_day <= score.dated_within_2_days
    )
    assert isinstance(model(torch.zeros(1, 4, 16, 32, 32)), torch.Tensor)


def test_train_command_reports_heldout_scores(shared_data, tmp_path):
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data-dir",
            str(shared_data),
            "--out",
            str(out),
            "--steps",
            "2",
            "--width",
            "0.125",
            "--sequence-length",
            "16",
            "--batch-size",
            "2",
            "--heldout",
            "FRiv2017_1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "held-out detection F1" in result.output and "within 2 days" in result.output
    assert out.exists()


def test_train_command_rejects_bad_sequence_length(tmp_path):
    result = CliRunner().invoke(main, ["train", "--sequence-length", "20"])
    assert result.exit_code != 0 and "multiple of 16" in result.output


def test_a_fire_cannot_be_both_trained_on_and_held_out(tmp_path):
    config = TrainingConfig(train_fires=("PT2017_1", "FRiv2017_2"))
    with pytest.raises(ModelError, match="both trained on and held out"):
        train_banet(tmp_path, tmp_path / "w.pt", config)
