"""Cube stage: the cube.zarr store: creation, time-axis appends, day records.

Layout (Zarr v2, consolidated; README, "Data contracts"): dims (time, y, x), north-up;
one float32 variable per band (``_FillValue`` NaN, chunks (1, c, c)); ``time``
and ``time_bnds`` as int64 :data:`~burnscape.cube.timeaxis.TIME_UNITS`;
``valid_pixels``, ``day_complete`` and ``day_status`` per slot;
``observation_count`` per pixel (:mod:`.counts`); ``spatial_ref`` grid mapping.

Crash safety rests on three rules:

1. every write is one whole Zarr chunk or metadata file, and the store writes
   files atomically (temporary file, then rename);
2. a slot's ``day_complete`` is set to 1 last, after its data, its
   ``valid_pixels``, its status and its input fingerprint; it is set to 0
   before a slot is rewritten;
3. a time-axis append first records what it will do (``pending_append``
   attribute), then resizes and writes, then clears the record: a run that
   finds the record finishes the append before anything else.

``day_status`` codes (also in its ``flag_values``/``flag_meanings``) and the
free-text reason of each slot (its ``reasons`` attribute, keyed by ISO time)
say why a slot holds no data.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from burnscape import __version__
from burnscape.cube.grid import Grid
from burnscape.cube.timeaxis import TIME_UNITS, TimeSlot, from_seconds, slot_seconds
from burnscape.errors import GridMismatchError

__all__ = [
    "BAND_ATTRS",
    "COMPLETE_STATUSES",
    "DayRecords",
    "DayStatus",
    "begin_day",
    "consolidate",
    "create_cube",
    "declare_grid_mapping",
    "digest_store",
    "finish_day",
    "open_cube",
    "read_days",
]

logger = logging.getLogger(__name__)

BAND_ATTRS: dict[str, tuple[str, float | None, str]] = {
    "blue": ("Blue reflectance", 0.48, "1"),
    "green": ("Green reflectance", 0.56, "1"),
    "red": ("Red reflectance", 0.655, "1"),
    "nir": ("Near-infrared reflectance", 0.865, "1"),
    "swir1": ("Shortwave-infrared 1 reflectance", 1.61, "1"),
    "swir2": ("Shortwave-infrared 2 reflectance", 2.2, "1"),
    "mir": ("Middle-infrared radiance", 3.7, "W m-2 sr-1 um-1"),
    "tir": ("Thermal-infrared radiance", 10.8, "W m-2 sr-1 um-1"),
}
"""Long name, centre wavelength (um) and units of each cube band."""

_TIME_CHUNK = 512
_PENDING = "pending_append"


class DayStatus(enum.IntEnum):
    """What happened to a time slot (``day_status`` codes)."""

    PENDING = 0
    WRITTEN = 1
    NO_GRANULE = 2
    CORRUPT = 3
    MISSING_BAND = 4
    ALL_FILL = 5
    CLOUD_ONLY = 6
    OUTSIDE_REGION = 7
    WRITING = 8


COMPLETE_STATUSES = frozenset(
    {
        DayStatus.WRITTEN,
        DayStatus.ALL_FILL,
        DayStatus.CLOUD_ONLY,
        DayStatus.OUTSIDE_REGION,
    }
)
"""Statuses of a slot whose data is fully written (``day_complete`` 1)."""


@dataclass
class DayRecords:
    """The per-slot records of a cube, as read from the store."""

    times: np.ndarray
    complete: np.ndarray
    status: np.ndarray
    valid_pixels: np.ndarray
    reasons: dict[str, str]
    inputs: dict[str, str]

    def key(self, index: int) -> str:
        """Return the ISO key of slot ``index`` in ``reasons``/``inputs``."""
        return slot_key(int(self.times[index]))


def slot_key(seconds: int) -> str:
    """Return a slot's ISO key, e.g. ``2024-07-02T13:30:00Z``."""
    return from_seconds(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_cube(
    path: Path,
    grid: Grid,
    times: Sequence[dt.datetime],
    time_bounds: Sequence[tuple[dt.datetime, dt.datetime]],
    bands: Sequence[str],
    *,
    chunk_size: int = 256,
    attrs: dict[str, Any] | None = None,
) -> None:
    """Create a cube, or check an existing one and append any later times.

    Parameters
    ----------
    path
        The ``cube.zarr`` folder.
    grid
        The region grid; the cube's y/x coordinates are its pixel centres.
    times
        One time per slot, ascending, UTC (naive means UTC).
    time_bounds
        Earliest and latest possible acquisition time of each slot.
    bands
        Common band names, one float32 variable each.
    chunk_size
        Spatial chunk edge in pixels; time chunks are one slot.
    attrs
        Extra global attributes of a new cube.

    Raises
    ------
    GridMismatchError
        ``path`` holds a cube with another grid or band set, or a new time
        falls before the cube's last one.
    """
    slots = [
        TimeSlot(time, bounds, "")
        for time, bounds in zip(times, time_bounds, strict=True)
    ]
    open_cube(path, grid, slots, bands, chunk_size=chunk_size, attrs=attrs)


def open_cube(
    path: Path,
    grid: Grid,
    slots: Sequence[TimeSlot],
    bands: Sequence[str],
    *,
    chunk_size: int = 256,
    attrs: dict[str, Any] | None = None,
) -> np.ndarray:
    """Create the cube or bring an existing one up to ``slots``.

    An existing cube is checked (grid, bands), any interrupted append is
    finished, and slots later than its last time are appended.

    Returns
    -------
    numpy.ndarray
        The index of each of ``slots`` on the cube's time axis.
    """
    times, bounds = slot_seconds(slots)
    if not path.exists():
        _create(path, grid, times, bounds, bands, chunk_size, attrs)
    else:
        _check_existing(path, grid, bands)
        finish_pending_append(path)
        _append(path, times, bounds)
    existing = _open(path, "r")
    axis = _values(existing, "time")
    return np.searchsorted(axis, times)


def finish_pending_append(path: Path) -> None:
    """Finish a time-axis append that a crash interrupted (no-op otherwise)."""
    group = _open(path)
    pending = cast(dict[str, Any] | None, group.attrs.get(_PENDING))
    if not pending:
        return
    logger.warning("Finishing an interrupted time-axis append in %s.", path)
    _resize_and_write(
        group,
        int(pending["start"]),
        np.asarray(pending["times"], dtype=np.int64),
        np.asarray(pending["bounds"], dtype=np.int64).reshape(-1, 2),
    )
    del group.attrs[_PENDING]
    consolidate(path)


def read_days(path: Path) -> DayRecords:
    """Return the cube's per-slot records (from the store, not consolidated)."""
    group = _open(path, "r")
    status = _array(group, "day_status")
    return DayRecords(
        times=_values(group, "time"),
        complete=_values(group, "day_complete"),
        status=np.asarray(status[:]),
        valid_pixels=_values(group, "valid_pixels"),
        reasons=_mapping(status, "reasons"),
        inputs=_mapping(status, "inputs"),
    )


def begin_day(path: Path, index: int) -> None:
    """Mark slot ``index`` incomplete and being written (before its data)."""
    group = _open(path)
    _array(group, "day_complete")[index] = 0
    _array(group, "day_status")[index] = int(DayStatus.WRITING)


def finish_day(
    path: Path,
    index: int,
    status: DayStatus,
    *,
    valid_pixels: int,
    reason: str | None,
    fingerprint: str | None,
) -> None:
    """Record a slot's outcome; ``day_complete`` is written last.

    Parameters
    ----------
    path
        The cube.
    index
        The slot.
    status
        Its outcome; complete for :data:`COMPLETE_STATUSES`.
    valid_pixels
        Pixels with at least one valid band.
    reason
        Why it holds no (or partial) data; None clears a former reason.
    fingerprint
        The inputs it was written from (compared on the next run).
    """
    group = _open(path)
    records = _array(group, "day_status")
    key = slot_key(int(_values(group, "time")[index]))
    reasons = _mapping(records, "reasons")
    inputs = _mapping(records, "inputs")
    if reason:
        reasons[key] = reason
    else:
        reasons.pop(key, None)
    if fingerprint and status in COMPLETE_STATUSES:
        inputs[key] = fingerprint
    else:
        inputs.pop(key, None)
    records.attrs.update({"reasons": _sorted(reasons), "inputs": _sorted(inputs)})
    _array(group, "valid_pixels")[index] = int(valid_pixels)
    records[index] = int(status)
    _array(group, "day_complete")[index] = int(status in COMPLETE_STATUSES)


def consolidate(path: Path) -> None:
    """Rewrite the consolidated metadata (one atomic file)."""
    zarr.consolidate_metadata(str(path))


def declare_grid_mapping(path: Path, names: Sequence[str]) -> None:
    """Name ``spatial_ref`` in the variables' CF ``coordinates`` attribute.

    xarray writes the grid mapping variable without listing it as a coordinate,
    so a plain ``xr.open_zarr`` would read it as a data variable and rioxarray
    would find no CRS. Listing it makes ``xr.open_zarr(p).rio.crs`` work with and
    without ``decode_coords="all"``.
    """
    group = zarr.open_group(str(path), mode="r+")
    for name in names:
        coordinates = set(str(_array(group, name).attrs.get("coordinates", "")).split())
        _array(group, name).attrs["coordinates"] = " ".join(
            sorted(coordinates | {"spatial_ref"})
        )
    zarr.consolidate_metadata(str(path))


def digest_store(path: Path) -> dict[str, str]:
    """Return a SHA-256 per array of a Zarr store: values, shape, dtype, attributes.

    Two stores with equal digests hold identical data and metadata, whatever
    their chunk files' history (a chunk of fill values may be absent or
    present). Arrays are read whole: meant for tests and benchmarks.
    """
    group = _open(path, "r")
    digests = {".attrs": _digest(dict(group.attrs))}
    for name in sorted(group.array_keys()):
        array = _array(group, name)
        values = np.ascontiguousarray(array[...])
        digest = hashlib.sha256(values.tobytes())
        digest.update(f"{values.dtype}{values.shape}".encode())
        digest.update(_digest(dict(array.attrs)).encode())
        digests[name] = digest.hexdigest()
    return digests


# --- creation ------------------------------------------------------------------


def _create(
    path: Path,
    grid: Grid,
    times: np.ndarray,
    bounds: np.ndarray,
    bands: Sequence[str],
    chunk_size: int,
    attrs: dict[str, Any] | None,
) -> None:
    """Write the cube's metadata and coordinates (no band data)."""
    chunks3 = (1, chunk_size, chunk_size)
    shape3 = (len(times), grid.height, grid.width)
    dataset = xr.Dataset(
        coords={
            "time": ("time", times, _TIME_ATTRS),
            "y": grid.y_coords(),
            "x": grid.x_coords(),
        }
    )
    dataset["time_bnds"] = (("time", "nv"), bounds, {"units": TIME_UNITS})
    for band in bands:
        long_name, wavelength, units = BAND_ATTRS.get(band, (f"{band} band", None, "1"))
        dataset[band] = (
            ("time", "y", "x"),
            da.full(shape3, np.nan, dtype=np.float32, chunks=chunks3),
            {"long_name": long_name, "units": units},
        )
        if wavelength is not None:
            dataset[band].attrs["center_wavelength_um"] = wavelength
    per_slot = {"chunks": (1,)}
    dataset["valid_pixels"] = (
        "time",
        da.zeros(len(times), dtype=np.int64, chunks=1),
        {"long_name": "Pixels with at least one valid band", "units": "1"},
    )
    dataset["day_complete"] = (
        "time",
        da.zeros(len(times), dtype=np.uint8, chunks=1),
        {
            "long_name": "1 once the slot's data is completely written",
            "flag_values": [0, 1],
            "flag_meanings": "incomplete complete",
        },
    )
    dataset["day_status"] = (
        "time",
        da.zeros(len(times), dtype=np.uint8, chunks=1),
        {
            "long_name": "What happened to the slot; its reason in 'reasons'",
            "flag_values": [int(status) for status in DayStatus],
            "flag_meanings": " ".join(status.name.lower() for status in DayStatus),
            "reasons": {},
            "inputs": {},
        },
    )
    dataset["observation_count"] = (
        ("y", "x"),
        da.zeros(grid.shape, dtype=np.int16, chunks=(chunk_size, chunk_size)),
        {"long_name": "Complete days with valid data", "units": "1"},
    )
    dataset = _georeference(dataset, grid)
    dataset.attrs = {
        "title": "burnscape reflectance cube",
        "Conventions": "CF-1.8",
        "burnscape_version": __version__,
        "chunk_size": chunk_size,
        **(attrs or {}),
    }
    encoding: dict[str, dict[str, Any]] = {
        "time": {"chunks": (_TIME_CHUNK,)},
        "time_bnds": {"chunks": (_TIME_CHUNK, 2)},
        "valid_pixels": per_slot,
        "day_complete": per_slot,
        "day_status": per_slot,
        # CF: coordinate variables carry no fill value
        "x": {"_FillValue": None},
        "y": {"_FillValue": None},
    }
    for band in bands:
        encoding[band] = {
            "_FillValue": np.float32(np.nan),
            "chunks": chunks3,
            "grid_mapping": "spatial_ref",
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_zarr(
        path,
        mode="w-",
        compute=False,
        consolidated=True,
        encoding=encoding,
        zarr_format=2,
    )
    declare_grid_mapping(path, bands)
    logger.info(
        "Created cube %s: %d slots, %d x %d pixels.", path, len(times), *grid.shape
    )


_TIME_ATTRS = {
    "standard_name": "time",
    "long_name": "time",
    "axis": "T",
    "bounds": "time_bnds",
    "units": TIME_UNITS,
    "calendar": "proleptic_gregorian",
}


def _georeference(dataset: xr.Dataset, grid: Grid) -> xr.Dataset:
    """Attach the CRS and transform as a CF ``spatial_ref`` grid mapping."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    dataset = dataset.rio.write_crs(grid.crs_wkt)
    dataset = dataset.rio.write_transform(grid.transform)
    crs = grid.crs
    unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
    for name, axis in (("x", "X"), ("y", "Y")):
        dataset[name].attrs.update(
            {"axis": axis, "long_name": f"{name} coordinate of pixel centre"}
        )
        if crs.is_geographic:
            dataset[name].attrs["units"] = (
                "degrees_east" if name == "x" else "degrees_north"
            )
            dataset[name].attrs["standard_name"] = (
                "longitude" if name == "x" else "latitude"
            )
        else:
            dataset[name].attrs["units"] = unit
            dataset[name].attrs["standard_name"] = f"projection_{name}_coordinate"
    return dataset


# --- checks and appends ----------------------------------------------------------


def _check_existing(path: Path, grid: Grid, bands: Sequence[str]) -> None:
    group = _open(path, "r")
    problems = []
    x, y = _values(group, "x"), _values(group, "y")
    if (y.size, x.size) != grid.shape:
        problems.append(f"shape {y.size}x{x.size} vs {grid.height}x{grid.width}")
    elif not (np.allclose(x, grid.x_coords()) and np.allclose(y, grid.y_coords())):
        problems.append("pixel coordinates differ")
    missing = sorted(set(bands) - set(group.array_keys()))
    if missing:
        problems.append(f"bands {missing} missing")
    if problems:
        raise GridMismatchError(
            f"{path} holds a cube that does not match this workflow "
            f"({'; '.join(problems)}): point outputs.folder elsewhere or delete "
            "the old cube"
        )


def _append(path: Path, times: np.ndarray, bounds: np.ndarray) -> None:
    """Append the slots later than the cube's last time; refuse insertions."""
    group = _open(path)
    existing = _values(group, "time")
    new = ~np.isin(times, existing)
    if not new.any():
        return
    last = existing.max() if existing.size else np.iinfo(np.int64).min
    early = times[new][times[new] <= last]
    if early.size:
        raise GridMismatchError(
            f"{path}: new time {slot_key(int(early[0]))} falls before the cube's last "
            f"time {slot_key(int(last))}; the time axis only grows at its end: "
            "point outputs.folder elsewhere to build a new cube"
        )
    order = np.argsort(times[new])
    add_times, add_bounds = times[new][order], bounds[new][order]
    group.attrs[_PENDING] = {
        "start": int(existing.size),
        "times": add_times.tolist(),
        "bounds": add_bounds.tolist(),
    }
    _resize_and_write(group, int(existing.size), add_times, add_bounds)
    del group.attrs[_PENDING]
    consolidate(path)
    logger.info("Appended %d slots to %s.", add_times.size, path)


def _resize_and_write(
    group: zarr.Group, start: int, times: np.ndarray, bounds: np.ndarray
) -> None:
    """Grow every time-dimension array to ``start + len(times)``; write coords."""
    length = start + times.size
    for name in group.array_keys():
        array = _array(group, name)
        dims = cast(list[str], array.attrs.get("_ARRAY_DIMENSIONS", []))
        if dims and dims[0] == "time" and array.shape[0] != length:
            array.resize((length, *array.shape[1:]))
    _array(group, "time")[start:length] = times
    _array(group, "time_bnds")[start:length] = bounds
    for name in ("valid_pixels", "day_complete", "day_status"):
        _array(group, name)[start:length] = 0


def _sorted(mapping: dict[str, str]) -> dict[str, str]:
    return {key: mapping[key] for key in sorted(mapping)}


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _open(path: Path, mode: Literal["r", "r+"] = "r+") -> zarr.Group:
    """Open the cube's group without consolidated metadata (never stale)."""
    return zarr.open_group(str(path), mode=mode, use_consolidated=False)


def _array(group: zarr.Group, name: str) -> zarr.Array:
    array = group[name]
    if not isinstance(array, zarr.Array):
        raise GridMismatchError(f"{name!r} in the cube is a group, not an array")
    return array


def _values(group: zarr.Group, name: str) -> np.ndarray:
    return np.asarray(_array(group, name)[:])


def _mapping(array: zarr.Array, name: str) -> dict[str, str]:
    return dict(cast(dict[str, str], array.attrs.get(name) or {}))
