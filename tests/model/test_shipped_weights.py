"""The BA-Net weights that ship with burnscape, and the figures they carry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from burnscape.model import shipped_banet_weights
from burnscape.model.banet import BANetConfig
from burnscape.model.synthetic import SimulationConfig, load_sources
from burnscape.model.training import TrainingConfig, evaluate_fires
from burnscape.model.weights import load_banet_weights


@pytest.fixture(scope="module")
def shipped():
    path = shipped_banet_weights()
    assert path.is_file(), f"{path} is missing: rerun 'burnscape train --out {path}'"
    return load_banet_weights(path)


def test_shipped_weights_load_and_carry_their_metadata(shipped):
    model, meta = shipped
    assert meta.bands == ("red", "nir", "swir2", "frp")
    assert len(meta.mean) == len(meta.std) == 4 and min(meta.std) > 0
    config = BANetConfig(**meta.architecture)
    assert meta.sequence_length == config.sequence_length == 64
    assert len(meta.training_data_sha256) == 64 and meta.code_version
    assert "simulated" in meta.extra["semi_synthetic"]
    training = meta.extra["training"]
    assert not set(training["train_fires"]) & set(training["heldout_fires"])
    heldout = meta.extra["heldout"]
    assert heldout["burned_pixels"] > 0
    # Detection must beat calling every pixel burned (precision = burned share,
    # about 0.47 on these fires), which a confidence summed over 64 days of
    # small background probabilities would do.
    assert heldout["f1"] > 0.9 and heldout["precision"] > 0.9
    assert 0 <= heldout["dated_within_1_day"] <= heldout["dated_within_2_days"] <= 1
    assert set(heldout["per_fire"]) == set(training["heldout_fires"])
    out = model(torch.zeros(1, 4, 16, 32, 32))
    assert out.shape == (1, 1, 16, 32, 32)


@pytest.mark.slow
def test_shipped_heldout_scores_are_reproduced(shipped, shared_data):
    """Re-score the held-out fires: the same data hash and the same figures."""
    model, meta = shipped
    training = meta.extra["training"]
    simulation = SimulationConfig(**meta.extra["simulation"])
    sources = load_sources(shared_data)
    assert sources.data_hash(simulation, training["seed"]) == meta.training_data_sha256

    defaults = TrainingConfig()
    score = evaluate_fires(
        [model],
        sources,
        list(training["heldout_fires"]),
        simulation,
        np.asarray(meta.mean, np.float32),
        np.asarray(meta.std, np.float32),
        repeats=training.get("heldout_repeats", defaults.heldout_repeats),
        seed=training["seed"] + 1,
    )
    stored = meta.extra["heldout"]
    assert score.f1 == pytest.approx(stored["f1"], abs=0.01)
    assert score.dated_within_1_day == pytest.approx(
        stored["dated_within_1_day"], abs=0.01
    )
    assert score.dated_within_2_days == pytest.approx(
        stored["dated_within_2_days"], abs=0.01
    )
