"""Cube stage: the per-pixel observation count, one Dask task per tile.

``observation_count`` (y, x) int16 counts, for every pixel, the complete slots
with a valid value in any band, so that "not observed" is never read as "not
burned". Its ``counted_days`` attribute maps each slot it counts (ISO key) to
that slot's input fingerprint.

A refresh reads back only what it needs: when every counted slot is still
complete with the same inputs, the slots completed since are added to the
stored count; otherwise (a slot rewritten, or no ``counted_days``) the count is
rebuilt from every complete slot. ``counted_days`` is removed before any tile
is written and written back last, so a crash in between leaves a count that
the next run rebuilds, never one that is counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import zarr

from burnscape.cube.grid import Tile
from burnscape.cube.store import read_days

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["count_tile", "write_observation_count"]

logger = logging.getLogger(__name__)

_COUNTED = "counted_days"
_BATCH = 16
"""Slots read at once by a tile task (bounds its memory: batch x tile x 4 B)."""


def write_observation_count(
    path: Path, tiles: Sequence[Tile], client: Client | None = None
) -> bool:
    """Bring ``observation_count`` up to the cube's complete slots.

    Parameters
    ----------
    path
        The ``cube.zarr`` folder.
    tiles
        Tiles aligned to the count's chunks, covering the grid.
    client
        A Dask client whose workers count the tiles; None counts them here.

    Returns
    -------
    bool
        Whether the count was rewritten (False when already up to date).
    """
    records = read_days(path)
    done = np.flatnonzero(records.complete.astype(bool))
    current = {
        records.key(int(i)): records.inputs.get(records.key(int(i)), "") for i in done
    }
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    array = cast(zarr.Array, group["observation_count"])
    counted = cast(dict[str, str] | None, array.attrs.get(_COUNTED))
    if counted == current:
        return False

    rebuild = counted is None or any(
        current.get(key) != fingerprint for key, fingerprint in counted.items()
    )
    if rebuild:
        add = tuple(int(i) for i in done)
    else:
        add = tuple(int(i) for i in done if records.key(int(i)) not in counted)
    bands = tuple(
        name
        for name in sorted(group.array_keys())
        if group[name].attrs.get("_ARRAY_DIMENSIONS") == ["time", "y", "x"]
    )

    if _COUNTED in array.attrs:
        del array.attrs[_COUNTED]
    if client is None:
        for tile in tiles:
            count_tile(str(path), tile, add, bands, rebuild)
    else:
        futures = [
            client.submit(count_tile, str(path), tile, add, bands, rebuild, pure=False)
            for tile in tiles
        ]
        client.gather(futures)
    array.attrs[_COUNTED] = current
    logger.info(
        "Observation count of %s %s: %d slots read.",
        path,
        "rebuilt" if rebuild else "updated",
        len(add),
    )
    return True


def count_tile(
    path: str, tile: Tile, indices: tuple[int, ...], bands: tuple[str, ...], reset: bool
) -> None:
    """Add the valid pixels of slots ``indices`` to one tile of the count.

    Runs on a Dask worker; ``reset`` starts the tile from zero. Slots are read
    in batches, so memory is bounded by a few tiles whatever the region's size.
    """
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    target = cast(zarr.Array, group["observation_count"])
    window = (slice(tile.y0, tile.y1), slice(tile.x0, tile.x1))
    if reset:
        count = np.zeros(tile.shape, dtype=np.int32)
    else:
        count = np.asarray(target[window], dtype=np.int32)
    for start in range(0, len(indices), _BATCH):
        batch = list(indices[start : start + _BATCH])
        valid = np.zeros((len(batch), *tile.shape), dtype=bool)
        for band in bands:
            source = cast(zarr.Array, group[band])
            valid |= ~np.isnan(source.get_orthogonal_selection((batch, *window)))
        count += valid.sum(axis=0)
    target[window] = count.astype(np.int16)
