from __future__ import annotations

import numpy as np
import pytest
import torch
from distributed import Client, LocalCluster

from burnscape.errors import ModelError
from burnscape.model.banet import BANet, BANetConfig
from burnscape.model.budget import (
    MAX_TILES_PER_BATCH,
    estimate_tile_nbytes,
    memory_budget,
    tiles_per_batch,
)
from burnscape.model.daily import BANetSpec
from burnscape.model.weights import WeightsMetadata, save_banet_weights

CPU = torch.device("cpu")


def test_tiles_per_batch_is_bounded_and_never_zero() -> None:
    assert tiles_per_batch(100, 1_000) == 10
    assert tiles_per_batch(100, 10) == 1  # one tile runs even over budget
    assert tiles_per_batch(1, 10**12) == MAX_TILES_PER_BATCH
    with pytest.raises(ModelError, match="positive"):
        tiles_per_batch(0, 100)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
def test_memory_fraction_outside_zero_one_is_rejected(fraction) -> None:
    with pytest.raises(ModelError, match="memory fraction"):
        memory_budget(CPU, fraction)


def test_budget_follows_the_dask_worker_memory_limit() -> None:
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            memory_limit="1GiB",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        budget = client.submit(memory_budget, CPU, 0.25).result()
    assert budget == 2**30 // 4
    # Outside a worker the machine's memory is the reference.
    assert memory_budget(CPU, 0.5) > 0


def test_generic_estimate_for_models_without_one() -> None:
    assert estimate_tile_nbytes(object(), (3, 8, 8)) == 16 * 4 * 3 * 8 * 8


def test_banet_estimate_grows_with_the_tile_and_the_width(tmp_path) -> None:
    def spec(width: float) -> BANetSpec:
        config = BANetConfig(width=width, sequence_length=32)
        meta = WeightsMetadata(
            architecture=config.to_dict(),
            bands=("red", "nir", "swir2", "frp"),
            mean=(0.0,) * 4,
            std=(1.0,) * 4,
            sequence_length=32,
            training_data_sha256="test",
        )
        path = save_banet_weights(tmp_path / f"w{width}.pt", BANet(config).eval(), meta)
        return BANetSpec(weights=(str(path),), device="cpu")

    narrow, wide = spec(0.25), spec(0.5)
    small = narrow.tile_nbytes((4, 32, 64, 64))
    assert narrow.tile_nbytes((4, 32, 128, 128)) == pytest.approx(4 * small, rel=0.01)
    assert wide.tile_nbytes((4, 32, 64, 64)) > small
    # A tile not a multiple of the network's stride is padded, never undercounted.
    assert narrow.tile_nbytes((4, 32, 50, 50)) == small
    # The whole series is held, however short the sequence window.
    assert narrow.tile_nbytes((4, 96, 64, 64)) > small
    assert np.isfinite(small) and small > 4 * 32 * 64 * 64 * 4
