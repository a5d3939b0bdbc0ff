"""Events stage: burned.zarr to fire events, their growth, pixels and GeoTIFFs.

:func:`extract_events` is the stage's entry point: it labels the burned pixels
into events (whole-array in memory, or chunk-wise on Dask for large grids),
describes each event inside its bounding box (geometry, geodesic area, dates,
confidence, ignition point), gives it a stable id, writes one COG per event
and stores the layers ``fire_events``, ``daily_progression`` and
``burned_pixels``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import geopandas as gpd
import numpy as np
import rasterio
from pyproj import CRS
from scipy import ndimage
from shapely.geometry import MultiPolygon, shape

from burnscape.config import EventsConfig
from burnscape.errors import StoreError
from burnscape.events.chunked import label_events_chunked
from burnscape.events.geometry import (
    WGS84,
    as_valid_multipolygon,
    pixel_areas_m2,
    to_wgs84,
    transformer_to_wgs84,
)
from burnscape.events.geotiff import write_event_geotiff
from burnscape.events.grid import BurnedGrid, EventWindow, read_burned
from burnscape.events.ids import assign_event_ids, derive_event_id
from burnscape.events.labels import iso_date, label_events
from burnscape.events.pixels import burned_pixels, pixels_frame
from burnscape.events.progression import daily_progression, progression_frame
from burnscape.events.store import EventStore, open_store

logger = logging.getLogger(__name__)

__all__ = [
    "EVENT_COLUMNS",
    "IN_MEMORY_PIXELS",
    "MAX_PIXEL_POLYGONS",
    "EventsSummary",
    "extract_events",
]

MAX_PIXEL_POLYGONS = 250_000
"""Default cap on the ``burned_pixels`` layer: above it the layer is left empty."""

IN_MEMORY_PIXELS = 64_000_000
"""Grids up to this many pixels are labelled in memory; larger ones chunk-wise."""

EVENT_COLUMNS = (
    "event_id",
    "area_ha",
    "pixel_count",
    "first_burn_date",
    "last_burn_date",
    "duration_days",
    "confidence_mean",
    "confidence_max",
    "centroid_lon",
    "centroid_lat",
    "ignition_lon",
    "ignition_lat",
    "geotiff",
    "run_id",
    "detector",
    "inputs",
)
"""Attribute columns of the ``fire_events`` layer (besides the geometry)."""


@dataclass(frozen=True)
class EventsSummary:
    """What :func:`extract_events` wrote.

    Attributes
    ----------
    n_events
        Number of fire events kept.
    store
        Path or URL of the events store.
    main_event
        The largest event's attributes (as in ``fire_events``, without geometry),
        or None when there is no event.
    geotiffs
        The per-event GeoTIFFs written, in event order.
    """

    n_events: int
    store: str
    main_event: dict[str, Any] | None
    geotiffs: list[Path] = field(default_factory=list)


def extract_events(
    burned_path: Path,
    outputs: Path,
    params: EventsConfig,
    *,
    run_id: str,
    store: str | None = None,
    max_pixel_polygons: int = MAX_PIXEL_POLYGONS,
    chunked: bool | None = None,
    chunk_size: int = 2048,
) -> EventsSummary:
    """Delineate fire events in burned.zarr and write them to the events store.

    Parameters
    ----------
    burned_path
        A burned.zarr store (see README, "Data contracts": ``burned``, ``confidence``,
        ``burn_date``, ``burn_date_min``, ``burn_date_max`` on a grid whose CRS
        rioxarray reads).
    outputs
        The run's outputs folder: GeoTIFFs go to ``outputs/events/<event_id>.tif``
        and, without ``store``, the layers to ``outputs/burnscape.gpkg``.
    params
        Grouping parameters: ``max_distance_px``, ``max_gap_days``, ``min_pixels``.
    run_id
        Identifies the run; re-running with the same id replaces its rows.
    store
        A GeoPackage path or PostGIS URL; default ``outputs/burnscape.gpkg``.
    max_pixel_polygons
        The ``burned_pixels`` layer (one polygon per pixel) is written only when
        the events hold at most this many pixels in all; above it this run's
        rows of that layer are emptied and a warning is logged.
    chunked
        Label chunk-wise on Dask (the current scheduler); default: only grids
        larger than :data:`IN_MEMORY_PIXELS`.
    chunk_size
        Chunk size (pixels, square) of chunk-wise labelling.

    Returns
    -------
    EventsSummary
        Counts, the store, the largest event and the GeoTIFF paths.

    Raises
    ------
    DataNotFoundError
        ``burned_path`` does not exist.
    EventsError
        burned.zarr lacks a variable or a CRS.
    StoreError
        The store cannot be written.

    Examples
    --------
    >>> summary = extract_events(
    ...     Path("out/burned.zarr"), Path("out"), EventsConfig(), run_id="2018-06-09"
    ... )  # doctest: +SKIP
    >>> summary.main_event["area_ha"]  # doctest: +SKIP
    """
    outputs = Path(outputs)
    outputs.mkdir(parents=True, exist_ok=True)
    target = open_store(store if store is not None else outputs / "burnscape.gpkg")
    grid = read_burned(Path(burned_path))
    if chunked is None:
        chunked = grid.shape[0] * grid.shape[1] > IN_MEMORY_PIXELS
    grid = grid.rechunked(chunk_size) if chunked else grid.loaded()
    with tempfile.TemporaryDirectory(prefix=".events-", dir=outputs) as workdir:
        labels, boxes = _label(grid, params, chunked, Path(workdir))
        frames = _events(grid, labels, boxes, run_id, target, max_pixel_polygons)
        events, progression, pixels, superseded = frames
        geotiffs = _write_geotiffs(grid, labels, boxes, events, outputs, run_id)

    if superseded:
        logger.info(
            "Run %s supersedes earlier versions of %d events.", run_id, len(superseded)
        )
    target.replace_run("fire_events", run_id, events, superseded)
    target.replace_run("daily_progression", run_id, progression, superseded)
    target.replace_run("burned_pixels", run_id, pixels, superseded)
    records = events.drop(columns="geometry").to_dict("records")
    main = max(records, key=lambda event: event["pixel_count"], default=None)
    logger.info("Run %s: %d fire events in %s.", run_id, len(records), target.location)
    return EventsSummary(
        n_events=len(records), store=target.location, main_event=main, geotiffs=geotiffs
    )


def _label(
    grid: BurnedGrid, params: EventsConfig, chunked: bool, workdir: Path
) -> tuple[Any, list[tuple[slice, slice]]]:
    """Label events; return the labels (numpy or Dask) and each event's box."""
    distance = params.max_distance_px
    if params.max_distance_m is not None:
        distance = params.distance_px(_pixel_size_m(grid))
        logger.info(
            "Join distance %g m is %d pixels on this grid.",
            params.max_distance_m,
            distance,
        )
    args = (distance, params.max_gap_days, params.min_pixels)
    if chunked:
        result = label_events_chunked(da.asarray(grid.dates), workdir, *args)
        return result.labels, [result.window(k) for k in range(1, result.n + 1)]
    labels, _ = label_events(np.asarray(grid.dates), *args)
    boxes = [box for box in ndimage.find_objects(labels) if box is not None]
    return labels, boxes


def _pixel_size_m(grid: BurnedGrid) -> float:
    """Return a pixel's size in metres.

    On a projected grid, its nominal size in the CRS's linear unit; on a
    geographic one, the edge of a square of the centre pixel's geodesic area.
    """
    crs = CRS.from_user_input(grid.crs)
    if crs.is_projected:
        factor = crs.axis_info[0].unit_conversion_factor
        return float(np.sqrt(abs(grid.transform.a * grid.transform.e))) * factor
    row, col = grid.shape[0] // 2, grid.shape[1] // 2
    area = pixel_areas_m2(
        grid.transform, grid.crs, slice(row, row + 1), slice(col, col + 1)
    )
    return float(np.sqrt(area[0, 0]))


def _events(
    grid: BurnedGrid,
    labels: Any,
    boxes: list[tuple[slice, slice]],
    run_id: str,
    target: EventStore,
    max_pixel_polygons: int,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame, set[str]]:
    """Describe every event.

    Returns the events, progression and pixel layers, and the ids of earlier
    runs' events that this run's events continue or absorb.
    """
    attributes, geometries, derived = [], [], []
    progression: list[list[dict[str, Any]]] = []
    pixels: list[gpd.GeoDataFrame | None] = []
    total = 0
    for window in grid.windows(labels, boxes):
        rows, cols = window.rows, window.cols
        areas = pixel_areas_m2(grid.transform, grid.crs, rows, cols)
        record, geometry, first = _describe(window, areas, grid, run_id)
        attributes.append(record)
        geometries.append(geometry)
        derived.append(
            derive_event_id(first, record["ignition_lon"], record["ignition_lat"])
        )
        progression.append(daily_progression("", window, areas, grid.crs, run_id))
        total += record["pixel_count"]
        keep = total <= max_pixel_polygons
        pixels.append(burned_pixels("", window, grid.crs, run_id) if keep else None)
    if total > max_pixel_polygons:
        logger.warning(
            "Run %s has %d event pixels, more than max_pixel_polygons=%d: the "
            "burned_pixels layer is left empty.",
            run_id,
            total,
            max_pixel_polygons,
        )
        pixels = [None] * len(pixels)

    ids, superseded = assign_event_ids(derived, geometries, _previous(target, run_id))
    for event_id, record, days, frame in zip(
        ids, attributes, progression, pixels, strict=True
    ):
        record["event_id"], record["geotiff"] = event_id, f"events/{event_id}.tif"
        for day in days:
            day["event_id"] = event_id
        if frame is not None:
            frame["event_id"] = event_id
    events = _events_frame(attributes, geometries)
    days = [day for event_days in progression for day in event_days]
    kept = [frame for frame in pixels if frame is not None]
    return events, progression_frame(days), pixels_frame(kept), superseded


def _describe(
    window: EventWindow, areas_m2: np.ndarray, grid: BurnedGrid, run_id: str
) -> tuple[dict[str, Any], MultiPolygon, int]:
    """Return an event's attributes, EPSG:4326 geometry and first burn day."""
    inside = window.inside
    first, last = int(window.date_min[inside].min()), int(window.date_max[inside].max())
    confidence = np.nan_to_num(window.confidence[inside].astype(np.float64))
    earliest = inside & (window.dates == window.dates[inside].min())
    ignition_lon, ignition_lat = _mean_centre(earliest, window, grid)
    geometry = to_wgs84(_polygon(window), grid.crs)
    centroid = geometry.centroid
    record = {
        "event_id": "",
        "area_ha": round(float(areas_m2[inside].sum()) / 1e4, 4),
        "pixel_count": int(inside.sum()),
        "first_burn_date": iso_date(first),
        "last_burn_date": iso_date(last),
        "duration_days": last - first + 1,
        "confidence_mean": round(float(confidence.mean()), 6),
        "confidence_max": round(float(confidence.max()), 6),
        "centroid_lon": round(centroid.x, 6),
        "centroid_lat": round(centroid.y, 6),
        "ignition_lon": round(ignition_lon, 6),
        "ignition_lat": round(ignition_lat, 6),
        "geotiff": "",
        "run_id": run_id,
        "detector": grid.detector,
        "inputs": grid.inputs,
    }
    return record, geometry, first


def _polygon(window: EventWindow) -> MultiPolygon:
    mask = window.inside.astype(np.uint8)
    polygons = [
        shape(geometry)
        for geometry, _ in rasterio.features.shapes(
            mask, mask=window.inside, connectivity=4, transform=window.transform
        )
    ]
    return as_valid_multipolygon(polygons)


def _mean_centre(
    mask: np.ndarray, window: EventWindow, grid: BurnedGrid
) -> tuple[float, float]:
    """Return the lon/lat of the mean pixel centre of ``mask`` (in the window)."""
    r, c = np.nonzero(mask)
    x, y = window.transform @ (float(c.mean()) + 0.5, float(r.mean()) + 0.5)
    lon, lat = transformer_to_wgs84(grid.crs).transform(x, y)
    return float(lon), float(lat)


def _previous(target: EventStore, run_id: str) -> gpd.GeoDataFrame | None:
    """Return the events of other runs in the store, or None."""
    try:
        events = target.read("fire_events")
    except StoreError:
        return None
    return events[events["run_id"] != run_id]


def _events_frame(
    attributes: list[dict[str, Any]], geometries: list[MultiPolygon]
) -> gpd.GeoDataFrame:
    if not attributes:
        empty: dict[str, list[Any]] = {name: [] for name in EVENT_COLUMNS}
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=WGS84))
    return gpd.GeoDataFrame(attributes, geometry=geometries, crs=WGS84)


def _write_geotiffs(
    grid: BurnedGrid,
    labels: Any,
    boxes: list[tuple[slice, slice]],
    events: gpd.GeoDataFrame,
    outputs: Path,
    run_id: str,
) -> list[Path]:
    """Write one COG per event; remove this run's GeoTIFFs of vanished events."""
    folder = outputs / "events"
    written = []
    windows = grid.windows(labels, boxes)
    for window, event_id in zip(windows, events["event_id"], strict=True):
        path = write_event_geotiff(
            folder / f"{event_id}.tif",
            window.confidence,
            window.dates,
            window.inside,
            window.transform,
            grid.crs,
            tags={"event_id": event_id, "run_id": run_id},
        )
        written.append(path)
    _remove_stale(folder, set(written), run_id)
    return written


def _remove_stale(folder: Path, keep: set[Path], run_id: str) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.tif")):
        if path in keep:
            continue
        with rasterio.open(path) as src:
            owner = src.tags().get("run_id")
        if owner == run_id:
            path.unlink()
            logger.info("Removed %s: its event is gone from run %s.", path, run_id)
