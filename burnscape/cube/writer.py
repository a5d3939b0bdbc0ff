"""Cube stage: create the Zarr cube and fill it tile by tile on Dask workers.

The cube contract (see README, "Data contracts"): dims (time, y, x), north-up,
one float32 variable per band named by its common name, CF attributes,
``_FillValue`` NaN, a ``spatial_ref`` grid mapping readable by rioxarray from a
plain ``xr.open_zarr``, time stored as int64 seconds since 1970-01-01 (fixed
at creation), ``day_complete`` set only after a day is fully written,
``valid_pixels`` per day and ``observation_count`` per pixel.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from burnscape import __version__
from burnscape.cube.grid import Grid, Tile
from burnscape.cube.readers import BandFile, read_band_tile
from burnscape.errors import BurnscapeError, GranuleReadError, GridMismatchError

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "TIME_UNITS",
    "CubeSummary",
    "Scene",
    "build_cube",
    "create_cube",
    "declare_grid_mapping",
    "write_scene_tile",
]

logger = logging.getLogger(__name__)

TIME_UNITS = "seconds since 1970-01-01T00:00:00"

_BAND_ATTRS = {
    "blue": ("Blue reflectance", 0.48),
    "green": ("Green reflectance", 0.56),
    "red": ("Red reflectance", 0.655),
    "nir": ("Near-infrared reflectance", 0.865),
    "swir1": ("Shortwave-infrared 1 reflectance", 1.61),
    "swir2": ("Shortwave-infrared 2 reflectance", 2.2),
    "mir": ("Middle-infrared radiance", 3.7),
    "tir": ("Thermal-infrared radiance", 10.8),
}


@dataclass(frozen=True)
class Scene:
    """One acquisition to ingest: its time, honest time window and band files.

    ``time`` is the acquisition time, or the window's start when only the window
    ``time_bounds`` is known.
    """

    id: str
    time: dt.datetime
    time_bounds: tuple[dt.datetime, dt.datetime]
    bands: tuple[BandFile, ...]


@dataclass
class CubeSummary:
    """What a cube build did: days written and skipped, with reasons."""

    path: Path
    days_written: list[str] = field(default_factory=list)
    days_skipped: dict[str, str] = field(default_factory=dict)
    days_already_complete: list[str] = field(default_factory=list)
    valid_pixels: dict[str, int] = field(default_factory=dict)


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
    """Create an empty cube (metadata and coordinates only) or check an existing one.

    Parameters
    ----------
    path
        The ``cube.zarr`` folder.
    grid
        The region grid; the cube's y/x coordinates are its pixel centres.
    times
        One time per day slot, ascending, UTC.
    time_bounds
        Earliest and latest possible acquisition time of each slot.
    bands
        Common band names, one float32 variable each.
    chunk_size
        Spatial chunk edge in pixels; time chunks are one slot.
    attrs
        Extra global attributes.

    Raises
    ------
    GridMismatchError
        ``path`` holds a cube with another grid, time axis or band set.
    """
    index = pd.DatetimeIndex([_naive_utc(t) for t in times])
    if path.exists():
        _check_existing(path, grid, index, bands)
        return

    chunks3 = (1, chunk_size, chunk_size)
    shape3 = (len(index), grid.height, grid.width)
    dataset = xr.Dataset(coords={"time": index, "y": grid.y_coords(), "x": grid.x_coords()})
    for band in bands:
        long_name, wavelength = _BAND_ATTRS.get(band, (f"{band} band", None))
        dataset[band] = (("time", "y", "x"), da.full(shape3, np.nan, dtype=np.float32, chunks=chunks3))
        dataset[band].attrs = {"long_name": long_name, "units": "1"}
        if wavelength is not None:
            dataset[band].attrs["center_wavelength_um"] = wavelength
    bounds = np.array([[_naive_utc(a), _naive_utc(b)] for a, b in time_bounds], "datetime64[ns]")
    dataset["time_bnds"] = (("time", "nv"), bounds)
    dataset["valid_pixels"] = ("time", da.zeros(len(index), dtype=np.int64, chunks=1))
    dataset["valid_pixels"].attrs = {"long_name": "Pixels with at least one valid band"}
    dataset["day_complete"] = ("time", da.zeros(len(index), dtype=np.uint8, chunks=1))
    dataset["day_complete"].attrs = {
        "long_name": "1 once the day's data is completely written",
        "flag_values": [0, 1],
        "flag_meanings": "incomplete complete",
    }
    dataset["observation_count"] = (
        ("y", "x"),
        da.zeros(grid.shape, dtype=np.int16, chunks=(chunk_size, chunk_size)),
    )
    dataset["observation_count"].attrs = {"long_name": "Days with valid data", "units": "1"}
    dataset = _georeference(dataset, grid)
    dataset.attrs = {
        "title": "burnscape reflectance cube",
        "Conventions": "CF-1.8",
        "burnscape_version": __version__,
        **(attrs or {}),
    }
    dataset["time"].attrs = {"standard_name": "time", "axis": "T", "bounds": "time_bnds"}
    encoding: dict[str, dict[str, Any]] = {
        "time": {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"},
        "time_bnds": {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"},
        "valid_pixels": {"chunks": (1,)},
        "day_complete": {"chunks": (1,)},
    }
    for band in bands:
        encoding[band] = {
            "_FillValue": np.float32(np.nan),
            "chunks": chunks3,
            "grid_mapping": "spatial_ref",
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_zarr(
        path, mode="w-", compute=False, consolidated=True, encoding=encoding, zarr_format=2
    )
    declare_grid_mapping(path, bands)
    logger.info("Created cube %s: %d days, %d x %d pixels.", path, len(index), *grid.shape)


def write_scene_tile(
    path: str, index: int, scene: Scene, grid: Grid, tile: Tile
) -> tuple[int, str | None]:
    """Read a scene's bands onto one tile and write them into slot ``index``.

    Runs on a Dask worker; memory is bounded by one tile of all bands.

    Returns
    -------
    tuple of (int, str or None)
        Pixels of the tile with at least one valid band, and the reason the
        scene could not be read (then nothing was written), or None.
    """
    tiles = []
    for band in scene.bands:
        try:
            tiles.append(read_band_tile(band, grid, tile))
        except GranuleReadError as err:
            return 0, str(err)
    group = zarr.open_group(path, mode="r+")
    any_valid = np.zeros(tile.shape, bool)
    for band, values in zip(scene.bands, tiles, strict=True):
        any_valid |= np.isfinite(values)
        group[band.band][index, tile.y0 : tile.y1, tile.x0 : tile.x1] = values
    logger.debug("Wrote scene %s tile %s: %d valid pixels.", scene.id, tile, any_valid.sum())
    return int(any_valid.sum()), None


def build_cube(
    scenes: Sequence[Scene],
    grid: Grid,
    path: Path,
    client: Client,
    *,
    chunk_size: int = 256,
    attrs: dict[str, Any] | None = None,
) -> CubeSummary:
    """Create or complete a cube from scenes, one Dask task per scene and tile.

    A day already marked complete is skipped; a day whose files cannot be read
    is recorded with its reason and left incomplete, and the run goes on.

    Parameters
    ----------
    scenes
        Acquisitions; their bands must be the same set.
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

    Returns
    -------
    CubeSummary
        Days written, skipped (with reasons) and already complete.
    """
    if not scenes:
        raise BurnscapeError("no scenes to ingest: the search found nothing in the window")
    ordered = sorted(scenes, key=lambda scene: scene.time)
    bands = [band.band for band in ordered[0].bands]
    create_cube(
        path,
        grid,
        [scene.time for scene in ordered],
        [scene.time_bounds for scene in ordered],
        bands,
        chunk_size=chunk_size,
        attrs=attrs,
    )
    summary = CubeSummary(path=path)
    group = zarr.open_group(str(path), mode="r+")
    complete = group["day_complete"][:]
    tiles = list(grid.tiles(chunk_size))

    pending = {}
    for index, scene in enumerate(ordered):
        label = scene.id
        if complete[index]:
            summary.days_already_complete.append(label)
            continue
        futures = [
            client.submit(write_scene_tile, str(path), index, scene, grid, tile, pure=False)
            for tile in tiles
        ]
        pending[index] = (scene, futures)

    for index, (scene, futures) in pending.items():
        results = client.gather(futures)
        errors = sorted({error for _, error in results if error})
        if errors:
            logger.warning("Skipped scene %s: %s", scene.id, errors[0])
            summary.days_skipped[scene.id] = errors[0]
            continue
        valid = int(sum(count for count, _ in results))
        group["valid_pixels"][index] = valid
        summary.valid_pixels[scene.id] = valid
        if valid == 0:
            summary.days_skipped[scene.id] = "no valid pixel inside the region"
            logger.warning("Scene %s has no valid pixel inside the region.", scene.id)
        group["day_complete"][index] = 1
        summary.days_written.append(scene.id)
        logger.info("Scene %s written: %d valid pixels.", scene.id, valid)

    _write_observation_count(path, chunk_size)
    return summary


def declare_grid_mapping(path: Path, names: Sequence[str]) -> None:
    """Name ``spatial_ref`` in the variables' CF ``coordinates`` attribute.

    xarray writes the grid mapping variable without listing it as a coordinate,
    so a plain ``xr.open_zarr`` would read it as a data variable and rioxarray
    would find no CRS. Listing it makes ``xr.open_zarr(p).rio.crs`` work with and
    without ``decode_coords="all"``.
    """
    group = zarr.open_group(str(path), mode="r+")
    for name in names:
        coordinates = set(str(group[name].attrs.get("coordinates", "")).split())
        group[name].attrs["coordinates"] = " ".join(sorted(coordinates | {"spatial_ref"}))
    zarr.consolidate_metadata(str(path))


def _write_observation_count(path: Path, chunk_size: int) -> None:
    """Count the days with any valid band per pixel, over complete days only."""
    cube = xr.open_zarr(path)
    bands = [name for name in cube.data_vars if cube[name].dims == ("time", "y", "x")]
    done = cube["day_complete"].values.astype(bool)
    valid = None
    for band in bands:
        finite = cube[band].isel(time=np.flatnonzero(done)).notnull()
        valid = finite if valid is None else (valid | finite)
    if valid is None or valid.sizes["time"] == 0:
        return
    count = valid.sum("time").astype(np.int16).chunk({"y": chunk_size, "x": chunk_size})
    out = count.to_dataset(name="observation_count").drop_vars(
        [name for name in count.coords if name not in ("y", "x")], errors="ignore"
    )
    out = out.drop_vars(["y", "x"])
    out.to_zarr(path, mode="r+", region={"y": slice(None), "x": slice(None)})


def _georeference(dataset: xr.Dataset, grid: Grid) -> xr.Dataset:
    """Attach the CRS and transform as a CF ``spatial_ref`` grid mapping."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    dataset = dataset.rio.write_crs(grid.crs_wkt)
    dataset = dataset.rio.write_transform(grid.transform)
    dataset["x"].attrs.update({"axis": "X", "long_name": "x coordinate of pixel centre"})
    dataset["y"].attrs.update({"axis": "Y", "long_name": "y coordinate of pixel centre"})
    unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "metre"
    for name in ("x", "y"):
        dataset[name].attrs["units"] = "degrees" if grid.crs.is_geographic else unit
        if grid.crs.is_geographic:
            dataset[name].attrs["standard_name"] = "longitude" if name == "x" else "latitude"
        else:
            dataset[name].attrs["standard_name"] = f"projection_{name}_coordinate"
    return dataset


def _check_existing(path: Path, grid: Grid, index: pd.DatetimeIndex, bands: Sequence[str]) -> None:
    existing = xr.open_zarr(path)
    problems = []
    if existing.sizes.get("y") != grid.height or existing.sizes.get("x") != grid.width:
        problems.append(
            f"shape {existing.sizes.get('y')}x{existing.sizes.get('x')} vs {grid.height}x{grid.width}"
        )
    elif not (
        np.allclose(existing["x"].values, grid.x_coords())
        and np.allclose(existing["y"].values, grid.y_coords())
    ):
        problems.append("pixel coordinates differ")
    if not pd.DatetimeIndex(existing["time"].values).equals(index):
        problems.append("time axis differs")
    missing = sorted(set(bands) - set(existing.data_vars))
    if missing:
        problems.append(f"bands {missing} missing")
    if problems:
        raise GridMismatchError(
            f"{path} holds a cube that does not match this workflow ({'; '.join(problems)}): "
            "point outputs.folder elsewhere or delete the old cube"
        )


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value
