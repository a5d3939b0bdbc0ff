"""Events stage: chunk-wise event labelling on Dask with exact seam merging.

Each chunk of the burn-date raster is labelled on its own
(:func:`burnscape.events.labels.label_events`); the local labels go to a
temporary Zarr store, and each chunk reports its labels' sizes, first pixels,
bounding boxes and its border strips (``max_distance_px`` wide). Along every
chunk seam, the links between pixels on either side (Chebyshev distance and
burn-date gap, as in the whole-array definition) are found from those strips
alone, and a union-find over the labels merges the events that cross seams.
Small events are then dropped and the survivors numbered in row-major order of
their first pixel, so the result equals whole-array labelling exactly, while
each task holds one chunk (plus seam strips) in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from scipy import sparse
from scipy.sparse import csgraph

from burnscape.errors import EventsError
from burnscape.events.labels import label_events

logger = logging.getLogger(__name__)

__all__ = ["ChunkedLabels", "label_events_chunked"]

_SHIFT = np.int64(32)


@dataclass(frozen=True)
class ChunkedLabels:
    """Event labels computed chunk-wise.

    Attributes
    ----------
    labels
        (y, x) int32 Dask array of labels 1..n (0 outside events), with the
        chunks of the input; it reads the temporary store in ``workdir``.
    n
        Number of events.
    boxes
        (n, 4) int64 bounding boxes per event: row start, row stop, column
        start, column stop (stops exclusive), event k in row k - 1.
    pixel_counts
        (n,) int64 pixel count per event.
    """

    labels: da.Array
    n: int
    boxes: np.ndarray
    pixel_counts: np.ndarray

    def window(self, k: int) -> tuple[slice, slice]:
        """Return the (rows, cols) slices of event ``k``'s bounding box."""
        r0, r1, c0, c1 = (int(v) for v in self.boxes[k - 1])
        return slice(r0, r1), slice(c0, c1)


@dataclass(frozen=True)
class _BlockResult:
    index: int
    count: int
    sizes: np.ndarray
    first: np.ndarray
    boxes: np.ndarray
    strips: dict[str, tuple[np.ndarray, np.ndarray]]


def label_events_chunked(
    burn_date: da.Array,
    workdir: Path,
    max_distance_px: int = 1,
    max_gap_days: int = 16,
    min_pixels: int = 1,
) -> ChunkedLabels:
    """Label fire events chunk by chunk; the result equals whole-array labelling.

    Parameters
    ----------
    burn_date
        (y, x) integer Dask array, days (fill -1 or any negative value). Every
        chunk except the last along each axis must be at least
        ``max_distance_px`` wide; smaller chunks are an error.
    workdir
        Folder for the temporary local-label store (``local-labels.zarr``); it
        must outlive the returned array's use and be reachable by the workers.
    max_distance_px, max_gap_days, min_pixels
        As in :func:`burnscape.events.labels.label_events`.

    Returns
    -------
    ChunkedLabels
        The lazy labels, their count, boxes and sizes.

    Raises
    ------
    EventsError
        The array is not 2-D integer data, or its chunks are narrower than
        ``max_distance_px``.
    """
    _check_chunks(burn_date, max_distance_px)
    store = Path(workdir) / "local-labels.zarr"
    zarr.create_array(
        store=str(store),
        shape=burn_date.shape,
        chunks=_regular(burn_date.chunks),
        dtype="int32",
        fill_value=0,
        compressors=None,  # a scratch store: raw chunks cost no CPU to write or read
        overwrite=True,
    )
    blocks, seams = _graph(burn_date, str(store), max_distance_px, max_gap_days)
    block_results, seam_pairs = dask.compute(blocks, seams)
    block_results = sorted(block_results, key=lambda result: result.index)
    offsets = np.cumsum([0] + [result.count for result in block_results])
    lookup, n, boxes, counts = _resolve(block_results, seam_pairs, offsets, min_pixels)
    labels = _final_array(store, burn_date.chunks, lookup, offsets)
    logger.info(
        "Labelled %d events in %d chunks (%d local labels, %d seam links).",
        n,
        len(block_results),
        int(offsets[-1]),
        sum(len(p) for p in seam_pairs),
    )
    return ChunkedLabels(labels=labels, n=n, boxes=boxes, pixel_counts=counts)


def _check_chunks(burn_date: da.Array, max_distance_px: int) -> None:
    if burn_date.ndim != 2 or not np.issubdtype(burn_date.dtype, np.integer):
        raise EventsError(
            f"burn_date must be a 2-D integer array (days), got {burn_date.ndim}-D "
            f"{burn_date.dtype}"
        )
    for axis, sizes in zip(("y", "x"), burn_date.chunks, strict=True):
        if len(sizes) > 1 and min(sizes[:-1]) < max_distance_px:
            raise EventsError(
                f"chunks along {axis} {sizes[:-1]} are narrower than max_distance_px="
                f"{max_distance_px}; rechunk to at least {max_distance_px} pixels"
            )


def _regular(chunks: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Return Zarr chunk sizes matching Dask chunks (all equal but the last)."""
    for sizes in chunks:
        if len(set(sizes[:-1])) > 1 or (len(sizes) > 1 and sizes[-1] > sizes[0]):
            raise EventsError(
                f"irregular chunks {sizes}: rechunk to equal chunks (the last may be "
                "smaller) before labelling"
            )
    return tuple(sizes[0] for sizes in chunks)


def _graph(
    burn_date: da.Array, store: str, distance: int, gap: int
) -> tuple[list[Any], list[Any]]:
    """Build the delayed block tasks and the seam tasks that use their strips."""
    n_rows, n_cols = burn_date.numblocks
    starts = [np.cumsum((0, *sizes[:-1])) for sizes in burn_date.chunks]
    width = burn_date.shape[1]
    delayed_blocks = burn_date.to_delayed()
    blocks = [
        [
            dask.delayed(_label_block)(
                delayed_blocks[i, j],
                i * n_cols + j,
                int(starts[0][i]),
                int(starts[1][j]),
                width,
                store,
                distance,
                gap,
            )
            for j in range(n_cols)
        ]
        for i in range(n_rows)
    ]
    seams = [
        dask.delayed(_seam_pairs)(
            [blocks[i][j] for i in range(n_rows)],
            [blocks[i][j + 1] for i in range(n_rows)],
            "vertical",
            distance,
            gap,
        )
        for j in range(n_cols - 1)
    ] + [
        dask.delayed(_seam_pairs)(blocks[i], blocks[i + 1], "horizontal", distance, gap)
        for i in range(n_rows - 1)
    ]
    return [block for row in blocks for block in row], seams


def _label_block(
    dates: np.ndarray,
    index: int,
    row0: int,
    col0: int,
    width: int,
    store: str,
    distance: int,
    gap: int,
) -> _BlockResult:
    """Label one chunk, store its labels, and report what the merge needs."""
    dates = np.asarray(dates)
    labels, count = label_events(dates, distance, gap, min_pixels=1)
    rows, cols = labels.shape
    zarr.open_array(store, mode="r+")[row0 : row0 + rows, col0 : col0 + cols] = labels
    where = np.flatnonzero(labels)
    local = labels.ravel()[where].astype(np.int64)
    r, c = np.divmod(where, cols)
    sizes = np.bincount(local, minlength=count + 1)[1:].astype(np.int64)
    first = _reduce(np.minimum, local, where, count)  # labels count in raster order
    first = (first // cols + row0) * width + first % cols + col0
    boxes = np.stack(
        [
            _reduce(np.minimum, local, r, count) + row0,
            _reduce(np.maximum, local, r, count) + row0 + 1,
            _reduce(np.minimum, local, c, count) + col0,
            _reduce(np.maximum, local, c, count) + col0 + 1,
        ],
        axis=1,
    )
    d = distance  # copies, not views: a view would keep the whole chunk alive
    strips = {
        side: (_code(labels[window], index), dates[window].copy())
        for side, window in (
            ("top", np.s_[:d]),
            ("bottom", np.s_[-d:]),
            ("left", np.s_[:, :d]),
            ("right", np.s_[:, -d:]),
        )
    }
    return _BlockResult(index, count, sizes, first, boxes, strips)


def _reduce(
    ufunc: np.ufunc, local: np.ndarray, values: np.ndarray, count: int
) -> np.ndarray:
    """Reduce ``values`` per local label 1..count with ``ufunc`` (min or max)."""
    start = np.iinfo(np.int64).max if ufunc is np.minimum else np.iinfo(np.int64).min
    out = np.full(count + 1, start, dtype=np.int64)
    ufunc.at(out, local, values.astype(np.int64))
    return out[1:]


def _code(labels: np.ndarray, index: int) -> np.ndarray:
    """Return labels as block-unique codes: block index in the high 32 bits."""
    labels = labels.astype(np.int64)
    return np.where(labels > 0, (np.int64(index) << _SHIFT) | labels, 0)


def _seam_pairs(
    before: list[_BlockResult],
    after: list[_BlockResult],
    direction: str,
    distance: int,
    gap: int,
) -> np.ndarray:
    """Return the (coded label, coded label) pairs linked across one seam."""
    if direction == "vertical":
        left_codes, left_dates = _join(before, "right", axis=0)
        right_codes, right_dates = _join(after, "left", axis=0)
    else:
        left_codes, left_dates = (a.T for a in _join(before, "bottom", axis=1))
        right_codes, right_dates = (a.T for a in _join(after, "top", axis=1))
    return _links_across(
        left_codes, left_dates, right_codes, right_dates, distance, gap
    )


def _join(
    blocks: list[_BlockResult], side: str, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate one border strip (codes, dates) of blocks along a seam."""
    codes = np.concatenate([block.strips[side][0] for block in blocks], axis=axis)
    dates = np.concatenate([block.strips[side][1] for block in blocks], axis=axis)
    return codes, dates


def _links_across(
    left_codes: np.ndarray,
    left_dates: np.ndarray,
    right_codes: np.ndarray,
    right_dates: np.ndarray,
    distance: int,
    gap: int,
) -> np.ndarray:
    """Find linked pixel pairs between two column strips meeting at a seam.

    ``left_*`` are the last columns before the seam, ``right_*`` the first
    columns after it, all spanning the full length of the seam (rows).
    """
    length, n_left = left_codes.shape
    ly, la = np.nonzero(left_codes > 0)
    if ly.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    codes_a = left_codes[ly, la]
    dates_a = left_dates[ly, la].astype(np.int64)
    found: list[np.ndarray] = []
    for b in range(right_codes.shape[1]):
        near = (n_left - la) + b <= distance  # columns apart across the seam
        for dy in range(-distance, distance + 1):
            rows = ly + dy
            ok = near & (rows >= 0) & (rows < length)
            codes_b = np.where(ok, right_codes[np.clip(rows, 0, length - 1), b], 0)
            dates_b = right_dates[np.clip(rows, 0, length - 1), b].astype(np.int64)
            linked = (codes_b > 0) & (np.abs(dates_a - dates_b) <= gap)
            if linked.any():
                found.append(np.stack([codes_a[linked], codes_b[linked]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return _unique_pairs(np.concatenate(found))


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Return the distinct rows of an (n, 2) int64 array (1-D sorts only)."""
    codes, inverse = np.unique(pairs, return_inverse=True)
    inverse = inverse.reshape(pairs.shape).astype(np.int64)
    packed = np.unique(inverse[:, 0] * codes.size + inverse[:, 1])
    return np.stack([codes[packed // codes.size], codes[packed % codes.size]], axis=1)


def _resolve(
    results: list[_BlockResult],
    seam_pairs: list[np.ndarray],
    offsets: np.ndarray,
    min_pixels: int,
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Merge local labels across seams; return node -> final label and stats."""
    total = int(offsets[-1])
    pairs = np.concatenate([np.zeros((0, 2), dtype=np.int64), *seam_pairs])
    nodes = [_node(pairs[:, i], offsets) for i in (0, 1)]
    graph = sparse.coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (nodes[0], nodes[1])), shape=(total, total)
    )
    _, component = csgraph.connected_components(graph, directed=False)
    sizes = np.concatenate([r.sizes for r in results] or [np.zeros(0, np.int64)])
    first = np.concatenate([r.first for r in results] or [np.zeros(0, np.int64)])
    boxes = np.concatenate([r.boxes for r in results] or [np.zeros((0, 4), np.int64)])
    n_components = int(component.max()) + 1 if total else 0
    comp_size = np.bincount(component, weights=sizes, minlength=n_components).astype(
        np.int64
    )
    comp_first = np.full(n_components, np.iinfo(np.int64).max)
    np.minimum.at(comp_first, component, first)
    kept = np.flatnonzero(comp_size >= min_pixels)
    order = kept[np.argsort(comp_first[kept], kind="stable")]
    final = np.zeros(n_components, dtype=np.int32)
    final[order] = np.arange(1, order.size + 1, dtype=np.int32)
    comp_boxes = np.empty((n_components, 4), dtype=np.int64)
    comp_boxes[:, [0, 2]] = np.iinfo(np.int64).max
    comp_boxes[:, [1, 3]] = -1
    np.minimum.at(comp_boxes[:, 0], component, boxes[:, 0])
    np.maximum.at(comp_boxes[:, 1], component, boxes[:, 1])
    np.minimum.at(comp_boxes[:, 2], component, boxes[:, 2])
    np.maximum.at(comp_boxes[:, 3], component, boxes[:, 3])
    return final[component], int(order.size), comp_boxes[order], comp_size[order]


def _node(codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    block = codes >> _SHIFT
    local = codes & ((np.int64(1) << _SHIFT) - 1)
    return offsets[block] + local - 1


def _final_array(
    store: Path,
    chunks: tuple[tuple[int, ...], ...],
    lookup: np.ndarray,
    offsets: np.ndarray,
) -> da.Array:
    """Return the lazy final labels: each chunk's local labels through the lookup."""
    local = da.from_zarr(str(store), chunks=chunks).to_delayed()
    n_cols = len(chunks[1])
    rows = []
    for i, height in enumerate(chunks[0]):
        row = []
        for j, width in enumerate(chunks[1]):
            k = i * n_cols + j
            piece = lookup[offsets[k] : offsets[k + 1]]
            task = dask.delayed(_apply_lookup)(local[i, j], piece)
            row.append(da.from_delayed(task, (height, width), dtype=np.int32))
        rows.append(row)
    return da.block(rows)


def _apply_lookup(local: np.ndarray, piece: np.ndarray) -> np.ndarray:
    table = np.concatenate([np.zeros(1, dtype=np.int32), piece.astype(np.int32)])
    return table[local]
