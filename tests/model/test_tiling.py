import numpy as np
import pytest

from burnscape.errors import ModelError
from burnscape.model.tiling import TileGrid, axis_tiles, blend_tiles, taper


def _box_mean(batch: np.ndarray) -> np.ndarray:
    """A 'network' with receptive-field radius 1: 3x3 mean, zero padding."""
    padded = np.pad(batch[:, 0], ((0, 0), (1, 1), (1, 1)))
    rows, cols = batch.shape[-2:]
    total = sum(
        padded[:, dy : dy + rows, dx : dx + cols] for dy in range(3) for dx in range(3)
    )
    return (total / 9.0)[:, None].astype(np.float32)


def _whole(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    rows, cols = image.shape[-2:]
    return blend_tiles(
        image,
        _box_mean,
        grid,
        block_origin=(0, 0),
        core=(slice(0, rows), slice(0, cols)),
        array_shape=(rows, cols),
        batch_size=3,
    )[0]


def test_axis_tiles_cover_axis_flush_with_edge():
    starts = axis_tiles(100, 32, 24)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert np.all(np.diff(starts) <= 24)
    assert axis_tiles(20, 32, 24).tolist() == [0]


def test_taper_zero_in_guard_and_one_inside():
    weights = taper(16, overlap=8, guard=2, taper_start=True, taper_end=True)
    assert np.all(weights[:2] == 0) and np.all(weights[-2:] == 0)
    assert np.all(weights[6:10] == 1)
    edge = taper(16, overlap=8, guard=2, taper_start=False, taper_end=True)
    assert edge[0] == 1


def test_grid_rejects_guard_wider_than_half_overlap():
    with pytest.raises(ModelError, match="guard"):
        TileGrid(tile_size=32, overlap=4, guard=2)


def test_tiled_equals_untiled_with_guard():
    image = np.random.default_rng(0).random((1, 70, 53)).astype(np.float32)
    expected = _box_mean(image[None])[0, 0]
    tiled = _whole(image, TileGrid(tile_size=16, overlap=6, guard=1))
    np.testing.assert_allclose(tiled, expected, rtol=1e-6, atol=1e-6)


def test_blocks_with_full_halo_equal_whole_array():
    image = np.random.default_rng(1).random((1, 60, 45)).astype(np.float32)
    grid = TileGrid(tile_size=16, overlap=6, guard=1)
    whole = _whole(image, grid)
    halo = grid.halo
    out = np.zeros_like(whole)
    for r0 in range(0, 60, 25):
        for c0 in range(0, 45, 20):
            r1, c1 = min(r0 + 25, 60), min(c0 + 20, 45)
            b0, b1 = max(0, r0 - halo), min(60, r1 + halo)
            d0, d1 = max(0, c0 - halo), min(45, c1 + halo)
            out[r0:r1, c0:c1] = blend_tiles(
                image[:, b0:b1, d0:d1],
                _box_mean,
                grid,
                block_origin=(b0, d0),
                core=(slice(r0 - b0, r1 - b0), slice(c0 - d0, c1 - d0)),
                array_shape=(60, 45),
            )[0]
    np.testing.assert_array_equal(out, whole)
