"""Events stage: group burned pixels into fire events in space and time.

Two burned pixels are *linked* when their Chebyshev distance is at most
``max_distance_px`` (``max(|dy|, |dx|) <= max_distance_px``) and their burn dates
differ by at most ``max_gap_days``. An event is a connected component of that
graph. With ``max_distance_px=1`` and a large gap this is plain 8-connected
labelling; a fire whose dates split by more than the gap becomes separate events.

The labelling is exact: it equals the components of the pixel graph above, which
makes chunk-wise labelling with seam merging (:mod:`burnscape.events.chunked`)
reproduce it bit for bit.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from burnscape.errors import EventsError

logger = logging.getLogger(__name__)

__all__ = [
    "DATE_FILL",
    "iso_date",
    "label_events",
    "label_spatial",
    "relabel_sequential",
]

DATE_FILL = -1
"""Fill value of burn-date rasters (days since 1970-01-01) for unburned pixels."""

_EIGHT = np.ones((3, 3), dtype=bool)
_EPOCH = dt.date(1970, 1, 1)


def iso_date(days: int | np.integer) -> str:
    """Return the ISO date (YYYY-MM-DD) of a day count since 1970-01-01."""
    return (_EPOCH + dt.timedelta(days=int(days))).isoformat()


def label_events(
    burn_date: np.ndarray,
    max_distance_px: int = 1,
    max_gap_days: int = 16,
    min_pixels: int = 1,
) -> tuple[np.ndarray, int]:
    """Label fire events in a burn-date raster.

    Parameters
    ----------
    burn_date
        (y, x) integer array: burn day (any integer epoch, e.g. days since
        1970-01-01) of burned pixels, :data:`DATE_FILL` (or any negative value)
        where not burned.
    max_distance_px
        Largest Chebyshev distance, in pixels, between two linked pixels (>= 1).
    max_gap_days
        Largest burn-date difference, in days, between two linked pixels (>= 0).
    min_pixels
        Events with fewer pixels are dropped (their pixels get label 0).

    Returns
    -------
    labels : numpy.ndarray
        (y, x) int32 labels, 0 outside events, 1..n numbered in raster order of
        each event's first pixel (row-major).
    n : int
        Number of events.

    Raises
    ------
    EventsError
        ``burn_date`` is not 2-D integer data or a parameter is out of range.
    """
    dates = _check(burn_date, max_distance_px, max_gap_days)
    burned = dates >= 0
    where = np.flatnonzero(burned)
    grown, n_spatial = _label_grown(burned, max_distance_px)
    owner = grown.ravel()[where].astype(np.int64)
    del grown
    owner = _split_by_date(
        owner,
        n_spatial,
        where,
        dates.ravel()[where].astype(np.int64),
        dates.shape,
        max_distance_px,
        max_gap_days,
    )
    labels, n = _number(owner, where, dates.shape, min_pixels)
    logger.debug("Labelled %d events in a %s raster.", n, dates.shape)
    return labels, n


def label_spatial(mask: np.ndarray, max_distance_px: int) -> tuple[np.ndarray, int]:
    """Label pixels of ``mask`` linked by Chebyshev distance <= ``max_distance_px``.

    Each pixel is grown into a ``d``×``d`` box (``d = max_distance_px``); two such
    boxes touch or overlap, 8-connectedly, exactly when their pixels lie within
    ``d`` of each other, so 8-connected labelling of the grown mask gives the
    components. Labels are then kept on the original pixels only.

    Returns
    -------
    labels : numpy.ndarray
        (y, x) int32 labels, 0 outside ``mask``.
    n : int
        Number of labels; every grown component holds a pixel, so 1..n are used.
    """
    labels, n = _label_grown(mask, max_distance_px)
    if max_distance_px > 1:
        np.multiply(labels, mask, out=labels)
    return labels, n


def relabel_sequential(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber labels 1..n in row-major order of each label's first pixel.

    Returns
    -------
    labels : numpy.ndarray
        (y, x) int32 labels with 0 kept as background.
    n : int
        Number of labels.
    """
    where = np.flatnonzero(labels)
    return _number(labels.ravel()[where].astype(np.int64), where, labels.shape, 1)


def _label_grown(mask: np.ndarray, max_distance_px: int) -> tuple[np.ndarray, int]:
    """Label the mask grown by a ``d``×``d`` box (8-connected), unmasked."""
    grown = mask if max_distance_px == 1 else _dilate(mask, max_distance_px)
    labels, n = ndimage.label(grown, structure=_EIGHT)
    return labels.astype(np.int32, copy=False), int(n)


def _dilate(mask: np.ndarray, length: int) -> np.ndarray:
    """Grow each True pixel into the box of ``length`` pixels below-right of it."""
    out = mask
    for axis in (0, 1):
        out = _run_any(out, length, axis)
    return out


def _run_any(values: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Return ``out[i] = any(values[i - length + 1 .. i])`` along ``axis``.

    Runs of doubling length are ORed together (log2(length) passes), so the
    cost does not grow with the box like a plain maximum filter's.
    """

    def shifted(step: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        head = [slice(None), slice(None)]
        tail = [slice(None), slice(None)]
        head[axis], tail[axis] = slice(step, None), slice(None, -step)
        return tuple(head), tuple(tail)

    out = values.copy()
    span = 1
    while span * 2 <= length:
        head, tail = shifted(span)
        out[head] |= out[tail].copy()
        span *= 2
    if span < length:
        head, tail = shifted(length - span)
        out[head] |= out[tail].copy()
    return out


def _number(
    owner: np.ndarray, where: np.ndarray, shape: tuple[int, ...], min_pixels: int
) -> tuple[np.ndarray, int]:
    """Scatter pixel owners into a label raster numbered by first pixel.

    ``where`` holds the pixels' flat indices in ascending (raster) order and
    ``owner`` any positive group id per pixel; groups smaller than
    ``min_pixels`` are dropped.
    """
    if min_pixels > 1 and owner.size:
        keep = np.bincount(owner)[owner] >= min_pixels
        owner, where = owner[keep], where[keep]
    out = np.zeros(int(np.prod(shape)), dtype=np.int32)
    if owner.size == 0:
        return out.reshape(shape), 0
    unique, first = np.unique(owner, return_index=True)
    lookup = np.empty(unique.size, dtype=np.int32)
    lookup[np.argsort(first, kind="stable")] = np.arange(
        1, unique.size + 1, dtype=np.int32
    )
    out[where] = lookup[np.searchsorted(unique, owner)]
    return out.reshape(shape), int(unique.size)


def _check(
    burn_date: np.ndarray, max_distance_px: int, max_gap_days: int
) -> np.ndarray:
    dates = np.asarray(burn_date)
    if dates.ndim != 2 or not np.issubdtype(dates.dtype, np.integer):
        raise EventsError(
            f"burn_date must be a 2-D integer array (days), got {dates.ndim}-D "
            f"{dates.dtype}; convert dates to integer days with fill {DATE_FILL}"
        )
    if max_distance_px < 1 or max_gap_days < 0:
        raise EventsError(
            f"max_distance_px must be >= 1 and max_gap_days >= 0, got "
            f"{max_distance_px} and {max_gap_days}"
        )
    return dates


def _split_by_date(
    owner: np.ndarray,
    n_spatial: int,
    where: np.ndarray,
    dates: np.ndarray,
    shape: tuple[int, ...],
    max_distance_px: int,
    max_gap_days: int,
) -> np.ndarray:
    """Refine spatial components whose burn dates span more than the gap.

    ``owner`` (spatial label per burned pixel), ``where`` (their flat indices)
    and ``dates`` (their dates) describe the burned pixels; returns new owners.
    """
    if owner.size == 0:
        return owner
    low = np.full(n_spatial + 1, np.iinfo(np.int64).max)
    high = np.full(n_spatial + 1, np.iinfo(np.int64).min)
    np.minimum.at(low, owner, dates)
    np.maximum.at(high, owner, dates)
    present = high >= low  # label 0 and ids absent from owner have no dates
    wide = np.flatnonzero(
        present & (high - np.where(present, low, high) > max_gap_days)
    )
    if wide.size == 0:
        return owner
    owner = owner.copy()
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.stack([wide, wide + 1]))
    next_label = n_spatial + 1
    for start, stop in bounds.T:
        members = order[start:stop]
        rows, cols = np.divmod(where[members], shape[1])
        r0, c0 = rows.min(), cols.min()
        box = (rows.max() - r0 + 1, cols.max() - c0 + 1)
        inside = np.zeros(box, dtype=bool)
        inside[rows - r0, cols - c0] = True
        box_dates = np.full(box, DATE_FILL, dtype=np.int64)
        box_dates[rows - r0, cols - c0] = dates[members]
        parts = _components_in_time(inside, box_dates, max_distance_px, max_gap_days)
        owner[members] = parts[rows - r0, cols - c0] + next_label - 1
        next_label += int(parts.max())
    return owner


def _components_in_time(
    inside: np.ndarray, dates: np.ndarray, max_distance_px: int, max_gap_days: int
) -> np.ndarray:
    """Exact space-time components of one spatial component (in its bounding box).

    Every link joins two pixels whose dates lie in a window ``[s, s + gap]``
    starting at one of the component's dates, and inside such a window every
    spatial link is a valid link. The components are therefore the union of the
    spatial components of each window's pixels. Windows holding the same dates as
    the previous one add nothing and are skipped.
    """
    pixel_index = np.full(inside.shape, -1, dtype=np.int64)
    n = int(inside.sum())
    pixel_index[inside] = np.arange(n)
    own_dates = dates[inside]
    unique = np.unique(own_dates)
    ends = np.searchsorted(unique, unique + max_gap_days, side="right")
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    previous_end = -1
    for start, end in zip(unique, ends, strict=True):
        if end == previous_end:
            continue
        previous_end = end
        members = inside & (dates >= start) & (dates <= unique[end - 1])
        window_labels, _ = label_spatial(members, max_distance_px)
        pixel_ids = pixel_index[members]
        groups = window_labels[members]
        order = np.argsort(groups, kind="stable")
        groups, pixel_ids = groups[order], pixel_ids[order]
        heads = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
        head_of = np.repeat(pixel_ids[heads], np.diff(np.r_[heads, groups.size]))
        rows.append(head_of)
        cols.append(pixel_ids)
    edges_from = np.concatenate(rows)
    edges_to = np.concatenate(cols)
    graph = sparse.coo_matrix(
        (np.ones(edges_from.size, dtype=np.int8), (edges_from, edges_to)), shape=(n, n)
    )
    _, component = csgraph.connected_components(graph, directed=False)
    out = np.zeros(inside.shape, dtype=np.int64)
    out[inside] = component + 1
    return out
