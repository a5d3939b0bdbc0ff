"""Cube stage: fill the Zarr cube with granules, one Dask task per slot and tile.

The cube contract (see README, "Data contracts", and :mod:`.store`): dims
(time, y, x), north-up, one float32 variable per band named by its common name,
CF attributes, ``_FillValue`` NaN, a ``spatial_ref`` grid mapping readable by
rioxarray from a plain ``xr.open_zarr``, time stored as int64 seconds since
1970-01-01 (fixed at creation), ``day_complete`` set only after a slot is
fully written, ``day_status`` with the reason of every slot without data,
``valid_pixels`` per slot and ``observation_count`` per pixel.

A run (:func:`build_cube`):

1. creates the cube or appends the new slots to it;
2. skips every complete slot whose inputs are unchanged (fingerprint);
3. probes each remaining granule on a worker (opens it, checks its bands and
   footprint); a corrupt granule, one lacking a band or one outside the
   region is set aside with its reason, and the slot is written from the rest;
4. writes each slot tile by tile (one task per slot and chunk-aligned tile,
   so a worker holds one tile of one slot, whatever the region's size), the
   granules of a slot mosaicked in time order, first valid pixel wins;
5. records each slot when its tiles are done, ``day_complete`` last; a slot
   whose tiles failed is cleared back to fill and recorded incomplete;
6. refreshes ``observation_count`` and the consolidated metadata.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from burnscape.cube.counts import write_observation_count
from burnscape.cube.grid import Grid, Tile
from burnscape.cube.readers import (
    BandFile,
    probe_band,
    read_band_tile,
    read_cloud_tile,
)
from burnscape.cube.store import (
    COMPLETE_STATUSES,
    DayStatus,
    begin_day,
    consolidate,
    create_cube,
    declare_grid_mapping,
    finish_day,
    open_cube,
    read_days,
)
from burnscape.cube.timeaxis import TIME_UNITS, TimeSlot, scene_slots
from burnscape.errors import BurnscapeError, GranuleReadError, MissingBandError

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "TIME_UNITS",
    "CubeSummary",
    "Scene",
    "TileResult",
    "build_cube",
    "create_cube",
    "declare_grid_mapping",
    "probe_scene",
    "write_slot_tile",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scene:
    """One granule (acquisition) to ingest: its time, window and band files.

    ``time`` is the acquisition time, or the window's start when only the
    window ``time_bounds`` is known. ``cloud`` names the product's cloud mask
    (a QA dataset), if any. ``fingerprint`` identifies the inputs (e.g. the
    ledger's SHA-256 of the files); when empty, file names and sizes stand in.
    """

    id: str
    time: dt.datetime
    time_bounds: tuple[dt.datetime, dt.datetime]
    bands: tuple[BandFile, ...]
    cloud: BandFile | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class TileResult:
    """What one slot-tile task did."""

    valid: int = 0
    cloudy: int = 0
    error: str | None = None
    missing_band: bool = False


@dataclass(frozen=True)
class ProbeResult:
    """What opening a granule found: an error, or whether it meets the region."""

    scene_id: str
    error: str | None = None
    missing_band: bool = False
    outside: bool = False


@dataclass
class CubeSummary:
    """What a cube build did: slots written and skipped, with reasons.

    Slots are named by their label: the scene id (one slot per acquisition)
    or the ISO date (daily slots).
    """

    path: Path
    days_written: list[str] = field(default_factory=list)
    days_skipped: dict[str, str] = field(default_factory=dict)
    days_already_complete: list[str] = field(default_factory=list)
    valid_pixels: dict[str, int] = field(default_factory=dict)
    day_status: dict[str, str] = field(default_factory=dict)
    granules_skipped: dict[str, str] = field(default_factory=dict)
    scenes_outside_slots: list[str] = field(default_factory=list)


@dataclass
class _Slot:
    """A slot this run works on."""

    slot: TimeSlot
    index: int
    scenes: list[Scene]
    fingerprint: str
    dirty: bool
    notes: list[str] = field(default_factory=list)
    missing_band: bool = False
    outside: bool = False
    futures: list[Future] = field(default_factory=list)


def build_cube(
    scenes: Sequence[Scene],
    grid: Grid,
    path: Path,
    client: Client,
    *,
    chunk_size: int = 256,
    attrs: dict[str, Any] | None = None,
    slots: Sequence[TimeSlot] | None = None,
    bands: Sequence[str] | None = None,
) -> CubeSummary:
    """Create, extend or complete a cube from granules on a Dask cluster.

    Parameters
    ----------
    scenes
        Granules; each goes into the slot whose bounds hold its time.
    grid
        The region grid.
    path
        The ``cube.zarr`` folder.
    client
        A Dask distributed client; tasks run on its workers.
    chunk_size
        Spatial chunk edge in pixels (tiles are aligned to chunks).
    attrs
        Extra global attributes for a new cube.
    slots
        The time slots to hold (e.g. :func:`~.timeaxis.daily_slots`); default
        one per distinct scene time.
    bands
        The cube's bands; default every band named by the scenes.

    Returns
    -------
    CubeSummary
        Slots written, skipped (with reasons) and already complete.

    Raises
    ------
    BurnscapeError
        There is nothing to ingest (no scenes and no slots).
    GridMismatchError
        ``path`` holds a cube of another grid or band set.
    """
    ordered = sorted(scenes, key=lambda scene: (scene.time, scene.id))
    if slots is None:
        slots = scene_slots((s.id, s.time, s.time_bounds) for s in ordered)
    if not slots:
        raise BurnscapeError(
            "no scenes to ingest: the search found nothing in the window"
        )
    names = list(bands) if bands else _band_names(ordered)
    indices = open_cube(path, grid, slots, names, chunk_size=chunk_size, attrs=attrs)
    summary = CubeSummary(path=path)
    work = _plan(path, slots, indices, ordered, summary)
    _probe(work, grid, names, client, summary)
    tiles = list(grid.tiles(chunk_size))
    _write(path, work, grid, tiles, names, client, summary)

    write_observation_count(path, tiles, client)
    consolidate(path)
    return summary


def probe_scene(scene: Scene, grid: Grid, bands: tuple[str, ...]) -> ProbeResult:
    """Open a granule's band files; report a problem or whether it meets the grid.

    Runs on a Dask worker.
    """
    present = {band.band for band in scene.bands}
    missing = [band for band in bands if band not in present]
    if missing:
        return ProbeResult(
            scene.id, f"granule {scene.id} lacks bands {missing}", missing_band=True
        )
    meets = False
    try:
        for band in scene.bands:
            meets |= probe_band(band).intersects(grid)
        if scene.cloud is not None:
            probe_band(scene.cloud)
    except MissingBandError as err:
        return ProbeResult(scene.id, str(err), missing_band=True)
    except GranuleReadError as err:
        return ProbeResult(scene.id, str(err))
    return ProbeResult(scene.id, outside=not meets)


def write_slot_tile(
    path: str,
    index: int,
    scenes: tuple[Scene, ...],
    bands: tuple[str, ...],
    grid: Grid,
    tile: Tile,
) -> TileResult:
    """Mosaic a slot's granules onto one tile and write it into slot ``index``.

    Runs on a Dask worker; memory is bounded by one tile of all bands. The
    granules are taken in order, each pixel from the first granule with a
    valid, cloud-free value in any band. With no granules the tile is written
    as fill (clearing it). Nothing is written when a granule cannot be read.

    Returns
    -------
    TileResult
        Valid and cloud-masked pixel counts, or the read error.
    """
    out = {band: np.full(tile.shape, np.nan, dtype=np.float32) for band in bands}
    filled = np.zeros(tile.shape, dtype=bool)
    cloudy = np.zeros(tile.shape, dtype=bool)
    try:
        for scene in scenes:
            values = {
                band.band: read_band_tile(band, grid, tile)
                for band in scene.bands
                if band.band in out
            }
            valid = np.zeros(tile.shape, dtype=bool)
            for array in values.values():
                valid |= np.isfinite(array)
            if scene.cloud is not None:
                clouds = read_cloud_tile(scene.cloud, grid, tile)
                cloudy |= valid & clouds
                valid &= ~clouds
            take = valid & ~filled
            for band, array in values.items():
                out[band][take] = array[take]
            filled |= take
    except GranuleReadError as err:
        return TileResult(
            error=str(err), missing_band=isinstance(err, MissingBandError)
        )
    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    for band in bands:
        target = group[band]
        assert isinstance(target, zarr.Array)
        target[index, tile.y0 : tile.y1, tile.x0 : tile.x1] = out[band]
    logger.debug("Wrote slot %d tile %s: %d valid pixels.", index, tile, filled.sum())
    return TileResult(valid=int(filled.sum()), cloudy=int((cloudy & ~filled).sum()))


# --- planning ------------------------------------------------------------------


def _plan(
    path: Path,
    slots: Sequence[TimeSlot],
    indices: np.ndarray,
    scenes: Sequence[Scene],
    summary: CubeSummary,
) -> list[_Slot]:
    """Assign scenes to slots and keep the slots that need work."""
    members: list[list[Scene]] = [[] for _ in slots]
    for scene in scenes:
        hits = [k for k, slot in enumerate(slots) if slot.holds(scene.time)]
        if not hits:
            summary.scenes_outside_slots.append(scene.id)
            logger.info("Scene %s lies outside the cube's slots; ignored.", scene.id)
            continue
        exact = [k for k in hits if slots[k].time == scene.time]
        members[(exact or hits)[0]].append(scene)

    records = read_days(path)
    work = []
    for k, slot in enumerate(slots):
        index = int(indices[k])
        status = DayStatus(int(records.status[index]))
        fingerprint = _fingerprint(members[k])
        complete = bool(records.complete[index])
        if complete and records.inputs.get(records.key(index)) == fingerprint:
            summary.days_already_complete.append(slot.label)
            summary.day_status[slot.label] = status.name.lower()
            continue
        dirty = complete or status == DayStatus.WRITING
        if complete:
            logger.info("Slot %s: its inputs changed; rewriting it.", slot.label)
        work.append(_Slot(slot, index, list(members[k]), fingerprint, dirty))
    return work


def _probe(
    work: list[_Slot],
    grid: Grid,
    bands: Sequence[str],
    client: Client,
    summary: CubeSummary,
) -> None:
    """Open every granule of the pending slots on the workers; set bad ones aside."""
    scenes = {scene.id: scene for item in work for scene in item.scenes}
    futures = {
        scene_id: client.submit(probe_scene, scene, grid, tuple(bands), pure=False)
        for scene_id, scene in scenes.items()
    }
    results: dict[str, ProbeResult] = dict(
        zip(futures, client.gather(list(futures.values())), strict=True)
    )
    for item in work:
        usable, outside = [], 0
        for scene in item.scenes:
            result = results[scene.id]
            if result.error:
                item.notes.append(f"granule {scene.id} skipped: {result.error}")
                item.missing_band |= result.missing_band
                summary.granules_skipped[scene.id] = result.error
                logger.warning("Skipped granule %s: %s", scene.id, result.error)
            elif result.outside:
                outside += 1
            else:
                usable.append(scene)
        item.outside = bool(outside) and not usable
        item.scenes = usable


# --- writing -------------------------------------------------------------------


def _write(
    path: Path,
    work: list[_Slot],
    grid: Grid,
    tiles: list[Tile],
    bands: Sequence[str],
    client: Client,
    summary: CubeSummary,
) -> None:
    """Submit the slots' tile tasks and record each slot as it completes."""
    from distributed import as_completed

    names = tuple(bands)
    owner: dict[Any, _Slot] = {}
    for order, item in enumerate(work):
        if not item.scenes and not item.dirty:
            _record_empty(path, item, summary)
            continue
        begin_day(path, item.index)
        item.futures = [
            client.submit(
                write_slot_tile,
                str(path),
                item.index,
                tuple(item.scenes),
                names,
                grid,
                tile,
                pure=False,
                priority=-order,
            )
            for tile in tiles
        ]
        owner.update({future.key: item for future in item.futures})

    remaining = {id(item): len(item.futures) for item in work if item.futures}
    failed: list[tuple[_Slot, list[TileResult]]] = []
    for future in as_completed([f for item in work for f in item.futures]):
        item = owner[future.key]
        remaining[id(item)] -= 1
        if remaining[id(item)]:
            continue
        results = client.gather(item.futures)
        if any(result.error for result in results):
            failed.append((item, results))
            continue
        _record_written(path, item, results, summary)

    for item, results in failed:
        _clear_and_record_failure(
            path, item, results, grid, tiles, names, client, summary
        )


def _record_written(
    path: Path, item: _Slot, results: list[TileResult], summary: CubeSummary
) -> None:
    valid = sum(result.valid for result in results)
    cloudy = sum(result.cloudy for result in results)
    reason: str | None
    if not item.scenes:
        status, reason = _empty_status(item)
    elif valid:
        status, reason = DayStatus.WRITTEN, "; ".join(item.notes) or None
    elif cloudy:
        status, reason = DayStatus.CLOUD_ONLY, "every observed pixel is cloud-masked"
    else:
        status, reason = (
            DayStatus.ALL_FILL,
            "the granules hold only fill values inside the region",
        )
    finish_day(
        path,
        item.index,
        status,
        valid_pixels=valid,
        reason=reason,
        fingerprint=item.fingerprint,
    )
    label = item.slot.label
    summary.valid_pixels[label] = valid
    summary.day_status[label] = status.name.lower()
    if status in COMPLETE_STATUSES:
        summary.days_written.append(label)
    if reason:
        summary.days_skipped[label] = reason
        logger.warning("Slot %s: %s", label, reason)
    logger.info("Slot %s recorded %s: %d valid pixels.", label, status.name, valid)


def _record_empty(path: Path, item: _Slot, summary: CubeSummary) -> None:
    """Record a clean slot that gets no data (no tiles to write or clear)."""
    status, reason = _empty_status(item)
    finish_day(
        path,
        item.index,
        status,
        valid_pixels=0,
        reason=reason,
        fingerprint=item.fingerprint,
    )
    label = item.slot.label
    summary.day_status[label] = status.name.lower()
    summary.valid_pixels[label] = 0
    summary.days_skipped[label] = reason
    if status in COMPLETE_STATUSES:
        summary.days_written.append(label)
    logger.warning("Slot %s: %s", label, reason)


def _empty_status(item: _Slot) -> tuple[DayStatus, str]:
    """Say why a slot has no usable granule."""
    reason = "; ".join(item.notes)
    if item.missing_band:
        return DayStatus.MISSING_BAND, reason
    if item.notes:
        return DayStatus.CORRUPT, reason
    if item.outside:
        return DayStatus.OUTSIDE_REGION, "the granules do not reach the region"
    return DayStatus.NO_GRANULE, "no granule for this slot"


def _clear_and_record_failure(
    path: Path,
    item: _Slot,
    results: list[TileResult],
    grid: Grid,
    tiles: list[Tile],
    bands: tuple[str, ...],
    client: Client,
    summary: CubeSummary,
) -> None:
    """Reset a failed slot's tiles to fill, then record it incomplete."""
    clears = [
        client.submit(
            write_slot_tile, str(path), item.index, (), bands, grid, tile, pure=False
        )
        for tile in tiles
    ]
    client.gather(clears)
    errors = sorted({result.error for result in results if result.error})
    missing = any(result.missing_band for result in results)
    status = DayStatus.MISSING_BAND if missing else DayStatus.CORRUPT
    reason = "; ".join(item.notes + errors[:1])
    finish_day(
        path, item.index, status, valid_pixels=0, reason=reason, fingerprint=None
    )
    label = item.slot.label
    summary.day_status[label] = status.name.lower()
    summary.days_skipped[label] = errors[0]
    logger.warning("Slot %s not written: %s", label, errors[0])


# --- helpers -------------------------------------------------------------------


def _band_names(scenes: Sequence[Scene]) -> list[str]:
    names: list[str] = []
    for scene in scenes:
        names.extend(band.band for band in scene.bands if band.band not in names)
    return names


def _fingerprint(scenes: Sequence[Scene]) -> str:
    """Identify a slot's inputs: granules, files (name, size), conventions."""
    parts = []
    for scene in sorted(scenes, key=lambda scene: scene.id):
        files = list(scene.bands) + ([scene.cloud] if scene.cloud else [])
        parts.append(
            [
                scene.id,
                scene.time.isoformat(),
                scene.fingerprint,
                [_describe(band) for band in files],
            ]
        )
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _describe(band: BandFile) -> list[Any]:
    try:
        size = os.path.getsize(band.path)
    except OSError:
        size = -1
    return [
        band.band,
        Path(band.path).name,
        size,
        band.scale,
        band.offset,
        band.nodata,
        band.reader,
        band.variable,
        band.resampling,
    ]
