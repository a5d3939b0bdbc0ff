from __future__ import annotations

from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from burnscape.errors import ModelError
from burnscape.model.inference import map_tiles, predict_burned
from burnscape.model.tiling import TileGrid


def _identity(batch: np.ndarray) -> np.ndarray:
    return batch[:, :1].astype(np.float32)


def _box_mean(batch: np.ndarray) -> np.ndarray:
    """Receptive-field radius 1: 3x3 mean with zero padding."""
    padded = np.pad(batch[:, 0], ((0, 0), (1, 1), (1, 1)))
    rows, cols = batch.shape[-2:]
    total = sum(
        padded[:, i : i + rows, j : j + cols] for i in range(3) for j in range(3)
    )
    return (total / 9.0)[:, None].astype(np.float32)


@dataclass(frozen=True)
class ArraySpec:
    """A stand-in 'model': a NumPy function over the cube's ``red`` band."""

    kind: str = "identity"
    grid: TileGrid = field(default_factory=lambda: TileGrid(4, 2, 0))
    device: str = "cpu"

    def load(self, device):
        return _identity if self.kind == "identity" else _box_mean

    def prepare(self, cube):
        return cube["red"].expand_dims("channel")

    def output_channels(self, inputs):
        return "band", 1

    def summarize(self, probability, cube):
        return probability.isel(band=0).to_dataset()


def _cube(values: np.ndarray, chunks: dict[str, int]) -> xr.Dataset:
    rows, cols = values.shape
    coords = {"y": np.arange(rows)[::-1] * 1.0, "x": np.arange(cols) * 1.0}
    return xr.Dataset({"red": (("y", "x"), values)}, coords=coords).chunk(chunks)


@pytest.mark.parametrize("axis", ["y", "x"])
@pytest.mark.parametrize("halo", [(0, 5), (5, 0), 3])
def test_identity_model_returns_input_with_one_sided_halo(axis, halo):
    values = np.arange(20, dtype=np.float32)
    values = values[:, None] if axis == "y" else values[None, :]
    cube = _cube(values, {axis: 10})
    result = predict_burned(cube, ArraySpec(), halo=halo)["probability"]
    np.testing.assert_array_equal(result.values, values)
    np.testing.assert_array_equal(
        result[{axis: slice(1, None)}].values.ravel(), np.arange(1, 20)
    )
    np.testing.assert_array_equal(
        result[{axis: slice(None, -1)}].values.ravel(), np.arange(19)
    )
    for part in (slice(1, None), slice(None, -1)):
        sliced = predict_burned(cube[{axis: part}], ArraySpec(), halo=halo)[
            "probability"
        ]
        np.testing.assert_array_equal(sliced.values.ravel(), values.ravel()[part])


def test_two_chunkings_and_whole_array_agree():
    values = np.random.default_rng(0).random((45, 38)).astype(np.float32)
    spec = ArraySpec(kind="box", grid=TileGrid(12, 6, 1))
    whole = predict_burned(_cube(values, {"y": -1, "x": -1}), spec, halo=0)[
        "probability"
    ]
    first = predict_burned(_cube(values, {"y": 16, "x": 20}), spec, halo=spec.grid.halo)
    second = predict_burned(
        _cube(values, {"y": 23, "x": 13}), spec, halo=spec.grid.halo
    )
    np.testing.assert_allclose(first["probability"].values, whole.values, atol=1e-6)
    np.testing.assert_allclose(second["probability"].values, whole.values, atol=1e-6)
    expected = _box_mean(values[None, None])[0, 0]
    np.testing.assert_allclose(whole.values, expected, atol=1e-6)


def test_chunks_thinner_than_the_halo_are_merged():
    values = np.random.default_rng(1).random((30, 30)).astype(np.float32)
    spec = ArraySpec(kind="box", grid=TileGrid(8, 4, 1))
    out = map_tiles(
        da.from_array(values[None], chunks=(1, 4, 7)), spec, halo=6, n_outputs=1
    )
    assert all(size >= 6 for size in out.chunks[1])
    np.testing.assert_allclose(
        out.compute()[0], _box_mean(values[None, None])[0, 0], atol=1e-6
    )


def test_negative_halo_is_rejected():
    with pytest.raises(ModelError, match="non-negative"):
        map_tiles(da.zeros((1, 8, 8), chunks=4), ArraySpec(), halo=(-1, 2), n_outputs=1)
