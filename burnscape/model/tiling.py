"""Model stage: overlapping tiles on a global grid, blended with tapered weights.

A large raster is run through a network tile by tile. Tiles overlap by a few
pixels and every output pixel is the weighted mean of the tiles covering it; the
weights ramp up from each tile's inner edges, so no seam shows. The tile grid is
anchored to the whole array (starts at 0, step, 2 step, ..., and a last tile
flush with the far edge), never to the chunk being processed: a chunk that holds
every tile reaching into it computes each of them exactly as a whole-array run
would, so the result does not depend on how the array is chunked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from burnscape.errors import ModelError

logger = logging.getLogger(__name__)

__all__ = [
    "TileGrid",
    "axis_tiles",
    "blend_tiles",
    "taper",
]

Predictor = Callable[[np.ndarray], np.ndarray]
"""Map a batch (batch, ..., tile_y, tile_x) to (batch, n_out, tile_y, tile_x)."""


@dataclass(frozen=True)
class TileGrid:
    """How a raster is cut into overlapping tiles.

    Parameters
    ----------
    tile_size
        Tile edge in pixels (both spatial axes).
    overlap
        Pixels shared by neighbouring tiles; the tile step is
        ``tile_size - overlap``.
    guard
        Pixels at a tile's inner edges that get zero weight: set it to the
        network's receptive-field radius so that only outputs computed with
        full context are kept. ``2 * guard`` must be below ``overlap``.
    """

    tile_size: int
    overlap: int
    guard: int = 0

    def __post_init__(self) -> None:
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            raise ModelError(
                f"tile_size {self.tile_size} and overlap {self.overlap} must "
                "satisfy 0 <= overlap < tile_size"
            )
        if self.guard < 0 or (self.guard and 2 * self.guard >= self.overlap):
            raise ModelError(
                f"guard {self.guard} must be 0 or less than half the overlap "
                f"{self.overlap}; raise the overlap or lower the guard"
            )

    @property
    def step(self) -> int:
        """Return the distance between consecutive tile starts."""
        return self.tile_size - self.overlap

    @property
    def halo(self) -> int:
        """Return the halo that makes chunked runs equal whole-array runs."""
        return self.tile_size - self.guard - 1


def axis_tiles(length: int, tile_size: int, step: int) -> np.ndarray:
    """Return the tile starts along one axis of ``length`` pixels.

    Starts are 0, step, 2 step, ... and a last tile flush with the far edge.
    An axis shorter than a tile has one tile covering it.
    """
    if length <= tile_size:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - tile_size, step, dtype=np.int64)
    return np.append(starts, length - tile_size)


def taper(
    size: int, overlap: int, guard: int, *, taper_start: bool, taper_end: bool
) -> np.ndarray:
    """Return a tile's 1-D blending weights (float64, shape ``(size,)``).

    The weight is 0 over ``guard`` pixels from a tapered edge, then rises
    linearly to 1 across the rest of the overlap. Edges on the array's border
    are not tapered: no other tile covers them.
    """
    weights = np.ones(size, dtype=np.float64)
    ramp_len = max(1, overlap - 2 * guard)
    distance = np.arange(size, dtype=np.float64)
    ramp = np.clip((distance - guard + 1) / (ramp_len + 1), 0.0, 1.0)
    ramp[: min(guard, size)] = 0.0
    if taper_start:
        weights = np.minimum(weights, ramp)
    if taper_end:
        weights = np.minimum(weights, ramp[::-1])
    return weights


def blend_tiles(
    block: np.ndarray,
    predict: Predictor,
    grid: TileGrid,
    *,
    block_origin: tuple[int, int],
    core: tuple[slice, slice],
    array_shape: tuple[int, int],
    batch_size: int = 8,
) -> np.ndarray:
    """Run ``predict`` over the global tiles reaching a block's core; blend them.

    Parameters
    ----------
    block
        Input of shape (..., y, x): the core plus whatever halo is available.
    predict
        Maps a batch (batch, ..., tile_y, tile_x) to (batch, n_out, tile_y,
        tile_x) float32.
    grid
        The tile size, overlap and guard.
    block_origin
        Global (row, column) of ``block[..., 0, 0]``.
    core
        The part of ``block`` (rows, columns) whose output is wanted.
    array_shape
        Global (rows, columns) of the whole array the grid is anchored to.
    batch_size
        Tiles per call of ``predict``.

    Returns
    -------
    numpy.ndarray
        float32 of shape (n_out, core rows, core columns).

    Notes
    -----
    A tile that would reach beyond the block (the halo was smaller than
    ``grid.halo``) is shifted inside it, so that run differs from a
    whole-array run near chunk edges.
    """
    rows = _axis_plan(block.shape[-2], block_origin[0], core[0], array_shape[0], grid)
    cols = _axis_plan(block.shape[-1], block_origin[1], core[1], array_shape[1], grid)
    core_shape = (core[0].stop - core[0].start, core[1].stop - core[1].start)
    total = None
    weight_sum = np.zeros(core_shape, dtype=np.float64)

    for batch in _batches(rows, cols, batch_size):
        inputs = np.stack(
            [block[..., r.start : r.stop, c.start : c.stop] for r, c in batch]
        )
        outputs = predict(inputs)
        if total is None:
            total = np.zeros((outputs.shape[1], *core_shape), dtype=np.float64)
        for output, (r, c) in zip(outputs, batch, strict=True):
            weight = np.outer(r.weights, c.weights)[r.keep, c.keep]
            total[:, r.into, c.into] += output[:, r.keep, c.keep] * weight
            weight_sum[r.into, c.into] += weight

    assert total is not None
    if not np.all(weight_sum > 0):
        raise ModelError("tile weights left pixels uncovered; lower the tile guard")
    return (total / weight_sum).astype(np.float32)


@dataclass(frozen=True)
class _AxisTile:
    """One tile along one axis, in block coordinates."""

    start: int
    stop: int
    weights: np.ndarray
    keep: slice
    into: slice


def _axis_plan(
    block_len: int, origin: int, core: slice, length: int, grid: TileGrid
) -> list[_AxisTile]:
    """List the tiles along one axis whose weighted span meets the core."""
    size = min(grid.tile_size, block_len)
    core_lo, core_hi = origin + core.start, origin + core.stop
    starts = axis_tiles(length, grid.tile_size, grid.step)
    plan: dict[int, _AxisTile] = {}
    for start in starts.tolist():
        lo = min(max(start, origin), origin + block_len - size)
        weights = taper(
            size,
            grid.overlap,
            grid.guard,
            taper_start=lo > 0,
            taper_end=lo + size < length,
        )
        nonzero = np.flatnonzero(weights)
        first, last = lo + int(nonzero[0]), lo + int(nonzero[-1]) + 1
        if last <= core_lo or first >= core_hi or lo in plan:
            continue
        keep_lo, keep_hi = max(lo, core_lo), min(lo + size, core_hi)
        plan[lo] = _AxisTile(
            start=lo - origin,
            stop=lo - origin + size,
            weights=weights,
            keep=slice(keep_lo - lo, keep_hi - lo),
            into=slice(keep_lo - core_lo, keep_hi - core_lo),
        )
    return list(plan.values())


def _batches(
    rows: list[_AxisTile], cols: list[_AxisTile], batch_size: int
) -> Iterator[list[tuple[_AxisTile, _AxisTile]]]:
    """Yield tile pairs in batches of equal tile shape."""
    by_shape: dict[tuple[int, int], list[tuple[_AxisTile, _AxisTile]]] = {}
    for row in rows:
        for col in cols:
            shape = (row.stop - row.start, col.stop - col.start)
            by_shape.setdefault(shape, []).append((row, col))
    for pairs in by_shape.values():
        for first in range(0, len(pairs), batch_size):
            yield pairs[first : first + batch_size]
