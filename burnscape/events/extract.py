"""Events stage: burned.zarr to fire events, burned-pixel polygons and GeoTIFFs.

:func:`extract_events` is the stage's entry point: it labels the burned pixels
into events (:mod:`burnscape.events.labels`), describes each event (geometry,
geodesic area, dates, confidence, stable id), writes one COG per event and
stores the layers ``fire_events`` and ``burned_pixels`` (and, where the burn
dates span several days, ``daily_progression``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import CRS, Transformer
from scipy import ndimage

from burnscape.config import EventsConfig
from burnscape.errors import DataNotFoundError, EventsError
from burnscape.events.geometry import WGS84, pixel_areas_m2, polygonize_labels, to_wgs84
from burnscape.events.geotiff import write_event_geotiff
from burnscape.events.labels import DATE_FILL, iso_date, label_events
from burnscape.events.pixels import burned_pixel_frame
from burnscape.events.progression import daily_progression_frame
from burnscape.events.store import open_store

logger = logging.getLogger(__name__)

__all__ = ["MAX_PIXEL_POLYGONS", "EventsSummary", "extract_events", "read_burned"]

MAX_PIXEL_POLYGONS = 250_000
"""Default cap on the ``burned_pixels`` layer: above it the layer is left empty."""

_EPOCH = dt.date(1970, 1, 1)


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


@dataclass(frozen=True)
class BurnedGrid:
    """The arrays of burned.zarr needed for events, on one grid."""

    dates: np.ndarray
    date_min: np.ndarray
    date_max: np.ndarray
    confidence: np.ndarray
    transform: Any
    crs: CRS
    detector: str
    inputs: str


def extract_events(
    burned_path: Path,
    outputs: Path,
    params: EventsConfig,
    *,
    run_id: str,
    store: str | None = None,
    max_pixel_polygons: int = MAX_PIXEL_POLYGONS,
) -> EventsSummary:
    """Delineate fire events in burned.zarr and write them to the events store.

    Parameters
    ----------
    burned_path
        A burned.zarr store (see CONTRACTS: ``burned``, ``confidence``,
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
        the events hold at most this many pixels; above it the run's rows of
        that layer are emptied and a warning is logged.

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
    """
    outputs = Path(outputs)
    grid = read_burned(Path(burned_path))
    labels, n = label_events(
        grid.dates, params.max_distance_px, params.max_gap_days, params.min_pixels
    )
    events, geometries = _describe_events(labels, n, grid, run_id)
    geotiffs = _write_geotiffs(labels, events, grid, outputs, run_id)

    frame = gpd.GeoDataFrame(events, geometry=geometries, crs=WGS84)
    target = open_store(store if store is not None else outputs / "burnscape.gpkg")
    target.replace_run("fire_events", run_id, _with_schema(frame))
    target.replace_run(
        "daily_progression",
        run_id,
        daily_progression_frame(labels, events, grid, run_id),
    )
    pixels = burned_pixel_frame(labels, events, grid, run_id, max_pixel_polygons)
    target.replace_run("burned_pixels", run_id, pixels)

    main = max(events, key=lambda event: event["pixel_count"], default=None)
    logger.info("Run %s: %d fire events in %s.", run_id, n, target.location)
    return EventsSummary(
        n_events=n, store=target.location, main_event=main, geotiffs=geotiffs
    )


def read_burned(path: Path) -> BurnedGrid:
    """Read the arrays of a burned.zarr store that events need.

    Burned pixels are those with ``burned == 1`` and a burn date (``burn_date``,
    else ``burn_date_min``); their date is that day. Returns a
    :class:`BurnedGrid` with dates as int32 days since 1970-01-01 (-1 elsewhere).
    """
    if not path.exists():
        raise DataNotFoundError(f"burned store {path} does not exist; run the detector")
    dataset = _open_zarr(path)
    missing = [
        name
        for name in (
            "burned",
            "confidence",
            "burn_date",
            "burn_date_min",
            "burn_date_max",
        )
        if name not in dataset
    ]
    if missing:
        raise EventsError(
            f"{path} lacks variables {missing}; see CONTRACTS (burned.zarr)"
        )
    if "spatial_ref" in dataset.data_vars:
        dataset = dataset.set_coords("spatial_ref")
    crs = dataset.rio.crs
    if crs is None:
        raise EventsError(f"{path} has no CRS: write a spatial_ref grid mapping")
    burned = dataset["burned"].values == 1
    best = _as_days(dataset["burn_date"])
    low = _as_days(dataset["burn_date_min"])
    high = _as_days(dataset["burn_date_max"])
    dates = np.where(best >= 0, best, low)
    dates = np.where(burned & (dates >= 0), dates, DATE_FILL).astype(np.int32)
    return BurnedGrid(
        dates=dates,
        date_min=np.where(low >= 0, low, dates).astype(np.int32),
        date_max=np.where(high >= 0, high, dates).astype(np.int32),
        confidence=dataset["confidence"].values.astype(np.float32),
        transform=dataset.rio.transform(),
        crs=CRS.from_user_input(crs),
        detector=str(dataset.attrs.get("detector", "unknown")),
        inputs=str(dataset.attrs.get("inputs", "[]")),
    )


def _open_zarr(path: Path) -> xr.Dataset:
    """Open a Zarr store raw (dates as stored), consolidated or not."""
    consolidated = (path / ".zmetadata").exists() or _has_consolidated_v3(path)
    return xr.open_zarr(
        path, decode_times=False, mask_and_scale=False, consolidated=consolidated
    )


def _has_consolidated_v3(path: Path) -> bool:
    meta = path / "zarr.json"
    return meta.exists() and '"consolidated_metadata"' in meta.read_text()


def _as_days(variable: xr.DataArray) -> np.ndarray:
    """Return a date variable as int64 days since 1970-01-01, -1 where missing."""
    values = variable.values
    if np.issubdtype(values.dtype, np.datetime64):
        missing = np.isnat(values)
        days = values.astype("datetime64[D]").astype(np.int64)
        return np.where(missing, DATE_FILL, days)
    if np.issubdtype(values.dtype, np.floating):
        return np.where(np.isfinite(values), values, DATE_FILL).astype(np.int64)
    fill = variable.attrs.get("_FillValue", DATE_FILL)
    days = values.astype(np.int64)
    return np.where(days == fill, DATE_FILL, days)


def _describe_events(
    labels: np.ndarray, n: int, grid: BurnedGrid, run_id: str
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Return each event's attributes and its EPSG:4326 MultiPolygon."""
    if n == 0:
        return [], []
    index = np.arange(1, n + 1)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    confidence = np.where(np.isfinite(grid.confidence), grid.confidence, np.nan)
    conf_mean = ndimage.mean(np.nan_to_num(confidence), labels, index)
    conf_max = ndimage.maximum(np.nan_to_num(confidence), labels, index)
    first = ndimage.minimum(grid.date_min, labels, index)
    last = ndimage.maximum(grid.date_max, labels, index)
    earliest = ndimage.minimum(grid.dates, labels, index)
    boxes = ndimage.find_objects(labels)
    polygons = polygonize_labels(labels, grid.transform)
    to_lonlat = Transformer.from_crs(grid.crs, WGS84, always_xy=True)

    events: list[dict[str, Any]] = []
    geometries: list[Any] = []
    seen: set[str] = set()
    for k in range(n):
        rows, cols = boxes[k]
        inside = labels[rows, cols] == k + 1
        area_m2 = float(
            pixel_areas_m2(grid.transform, grid.crs, rows, cols)[inside].sum()
        )
        ignition = inside & (grid.dates[rows, cols] == earliest[k])
        lon, lat = _centre(ignition, rows, cols, grid.transform, to_lonlat)
        geometry = to_wgs84(polygons[k + 1], grid.crs)
        centroid = geometry.centroid
        event_id = _unique(_event_id(int(first[k]), lon, lat), seen)
        events.append(
            {
                "event_id": event_id,
                "area_ha": round(area_m2 / 1e4, 4),
                "pixel_count": int(counts[k]),
                "first_burn_date": iso_date(first[k]),
                "last_burn_date": iso_date(last[k]),
                "duration_days": int(last[k] - first[k]) + 1,
                "confidence_mean": round(float(conf_mean[k]), 6),
                "confidence_max": round(float(conf_max[k]), 6),
                "centroid_lon": round(centroid.x, 6),
                "centroid_lat": round(centroid.y, 6),
                "geotiff": f"events/{event_id}.tif",
                "run_id": run_id,
                "detector": grid.detector,
                "inputs": grid.inputs,
            }
        )
        geometries.append(geometry)
    return events, geometries


def _centre(
    inside: np.ndarray, rows: slice, cols: slice, transform: Any, to_lonlat: Transformer
) -> tuple[float, float]:
    """Return the lon/lat of the mean pixel centre of ``inside`` (a window mask)."""
    r, c = np.nonzero(inside)
    x, y = transform @ (c.mean() + cols.start + 0.5, r.mean() + rows.start + 0.5)
    lon, lat = to_lonlat.transform(x, y)
    return float(lon), float(lat)


def _event_id(first_day: int, lon: float, lat: float) -> str:
    day = (_EPOCH + dt.timedelta(days=first_day)).strftime("%Y%m%d")
    east = f"{abs(lon):.4f}{'W' if lon < 0 else 'E'}"
    north = f"{abs(lat):.4f}{'S' if lat < 0 else 'N'}"
    return f"{day}-{east}-{north}"


def _unique(event_id: str, seen: set[str]) -> str:
    candidate, suffix = event_id, 2
    while candidate in seen:
        candidate, suffix = f"{event_id}-{suffix}", suffix + 1
    seen.add(candidate)
    return candidate


def _write_geotiffs(
    labels: np.ndarray,
    events: list[dict[str, Any]],
    grid: BurnedGrid,
    outputs: Path,
    run_id: str,
) -> list[Path]:
    """Write one COG per event; remove this run's GeoTIFFs of vanished events."""
    folder = outputs / "events"
    boxes = ndimage.find_objects(labels)
    written = []
    for k, event in enumerate(events):
        rows, cols = boxes[k]
        window_transform = grid.transform @ grid.transform.translation(
            cols.start, rows.start
        )
        path = write_event_geotiff(
            folder / f"{event['event_id']}.tif",
            grid.confidence[rows, cols],
            grid.dates[rows, cols],
            labels[rows, cols] == k + 1,
            window_transform,
            grid.crs,
            tags={"event_id": event["event_id"], "run_id": run_id},
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


def _with_schema(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Give an empty events frame the columns and geometry type of the layer."""
    if not frame.empty:
        return frame
    columns = [
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
        "geotiff",
        "run_id",
        "detector",
        "inputs",
    ]
    return gpd.GeoDataFrame(
        {name: [] for name in columns}, geometry=gpd.GeoSeries([], crs=WGS84)
    )
