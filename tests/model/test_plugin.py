from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import xarray as xr
from distributed import Client, LocalCluster, Scheduler, SpecCluster, Worker, get_worker

from burnscape.model.inference import gpu_workers, predict_burned
from burnscape.model.plugin import autocast_dtype, load_counts, select_device
from burnscape.model.tiling import TileGrid
from tests.model.test_inference import ArraySpec


def _worker_id(batch: np.ndarray) -> np.ndarray:
    marker = 1.0 if get_worker().name == "gpu" else 2.0
    return np.full((batch.shape[0], 1, *batch.shape[-2:]), marker, np.float32)


@dataclass(frozen=True)
class WhereSpec(ArraySpec):
    """Outputs 1 on the worker named 'gpu', 2 elsewhere."""

    grid: TileGrid = field(default_factory=lambda: TileGrid(8, 2, 0))

    def load(self, device):
        return _worker_id


def _cube(rows: int = 40, cols: int = 40, chunk: int = 10) -> xr.Dataset:
    values = np.random.default_rng(0).random((rows, cols)).astype(np.float32)
    coords = {"y": np.arange(rows)[::-1] * 1.0, "x": np.arange(cols) * 1.0}
    return xr.Dataset({"red": (("y", "x"), values)}, coords=coords).chunk(chunk)


def test_device_selection_and_autocast_on_cpu():
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device("auto") == torch.device("cpu")
    assert autocast_dtype(torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cpu"), cpu_bf16=True) is torch.bfloat16


@pytest.mark.integration
def test_model_is_loaded_once_per_worker():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        cube = _cube(chunk=8)
        result = predict_burned(cube, ArraySpec(kind="box"), halo=1)
        probability = result["probability"].compute()
        assert probability.shape == (40, 40)
        counts = client.run(load_counts)
        assert len(counts) == 2
        for per_worker in counts.values():
            assert list(per_worker.values()) == [1]
        # a second run reuses the loaded model
        predict_burned(cube, ArraySpec(kind="box"), halo=1)["probability"].compute()
        assert all(list(c.values()) == [1] for c in client.run(load_counts).values())


@pytest.mark.integration
def test_gpu_annotation_survives_graph_optimisation():
    workers = {
        "gpu": {"cls": Worker, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": Worker, "options": {"nthreads": 1}},
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    with (
        SpecCluster(workers=workers, scheduler=scheduler) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        assert len(gpu_workers(client)) == 1
        result = predict_burned(_cube(), WhereSpec(), halo=2)  # gpu=None: detected
        # later blockwise work fuses with the model's graph unless it was kept apart
        values = ((result["probability"] * 2.0) - 1.0).compute()
        np.testing.assert_array_equal(np.unique(values), [1.0])
        cpu_only = predict_burned(_cube(), WhereSpec(), halo=2, gpu=False)
        assert set(np.unique(cpu_only["probability"].compute())) <= {1.0, 2.0}
