"""Model stage: how many tiles one forward pass may take (a memory budget).

A chunk task cuts its block into tiles and runs them through the network in
batches. The batch size decides the task's peak memory far more than the chunk
size does: BA-Net needs about half a GiB of activations per 64-day 128 x 128
tile. So the batch is not a fixed number but follows a budget: a fraction of
what the worker may use (the Dask worker's memory limit, or free GPU memory),
divided by the model's estimate of one tile's peak bytes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import torch

from burnscape.errors import ModelError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MEMORY_FRACTION",
    "MAX_TILES_PER_BATCH",
    "estimate_tile_nbytes",
    "memory_budget",
    "tiles_per_batch",
]

DEFAULT_MEMORY_FRACTION = 0.5
"""Share of a worker's memory limit (or free GPU memory) one batch may use."""

MAX_TILES_PER_BATCH = 32
"""Upper bound on tiles per forward pass, however much memory there is."""

_GENERIC_FACTOR = 16  # activations per input value of a model giving no estimate


def memory_budget(
    device: torch.device, fraction: float = DEFAULT_MEMORY_FRACTION
) -> int:
    """Return the bytes one forward pass may use on ``device`` in this process.

    Parameters
    ----------
    device
        Where the model runs.
    fraction
        Share of the reference memory: free memory of a CUDA device; on the
        CPU the memory limit of the Dask worker running this code, or, outside
        a worker or without a limit, the machine's available memory.

    Returns
    -------
    int
        The budget in bytes.
    """
    if not 0 < fraction <= 1:
        raise ModelError(f"memory fraction {fraction} must be in (0, 1]")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    limit = _worker_memory_limit()
    if limit is None:
        limit = _available_memory()
    return int(limit * fraction)


def tiles_per_batch(
    tile_nbytes: int, budget: int, max_tiles: int = MAX_TILES_PER_BATCH
) -> int:
    """Return how many tiles of ``tile_nbytes`` fit in ``budget`` (at least 1).

    One tile always runs, even over budget: a tile is the smallest unit of
    work, so a model that cannot fit one tile needs smaller tiles.
    """
    if tile_nbytes <= 0:
        raise ModelError(f"tile estimate {tile_nbytes} bytes must be positive")
    return max(1, min(max_tiles, budget // tile_nbytes))


def estimate_tile_nbytes(spec: object, tile_shape: Sequence[int]) -> int:
    """Return a model's peak bytes for one tile of ``tile_shape`` (..., y, x).

    Uses ``spec.tile_nbytes(tile_shape)`` where the model gives it; otherwise
    a generic guess of 16 float32 activations per input value.
    """
    estimate = getattr(spec, "tile_nbytes", None)
    if estimate is not None:
        return int(estimate(tuple(tile_shape)))
    return _GENERIC_FACTOR * 4 * math.prod(tile_shape)


def _worker_memory_limit() -> int | None:
    """Return the memory limit of the Dask worker running this code, if any."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    return int(limit) if limit else None


def _available_memory() -> int:
    """Return the machine's available memory in bytes (Linux: MemAvailable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
