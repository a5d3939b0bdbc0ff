"""Events stage: active-fire detections to a burn-date raster and a layer.

Each detection (VIIRS 375 m, MODIS 1 km) is drawn as its footprint, a rectangle
of its along-scan by along-track size (``scan``/``track`` in FIRMS files,
``DS``/``DT`` in FEDS files, km) centred on its point, onto the region grid. A
cell's burn date is the local solar day of the first detection covering its
centre (UTC time plus longitude / 15 hours), so day and night overpasses of one
local day share a date. The result has the burned.zarr layout, so the events
stage delineates it like any detector's output.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import rioxarray  # noqa: F401  (registers the .rio accessor)
import shapely
import xarray as xr
from affine import Affine

from burnscape.errors import EmptyResultWarning, EventsError
from burnscape.events.labels import DATE_FILL

if TYPE_CHECKING:
    from burnscape.config import RegionConfig

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIVE_FIRE_COLUMNS",
    "NOMINAL_FOOTPRINT_KM",
    "active_fires_frame",
    "burned_from_detections",
    "local_solar_days",
]

NOMINAL_FOOTPRINT_KM = {"VIIRS": 0.375, "MODIS": 1.0}
"""Footprint side (km) used when a detection carries no scan/track size."""

ACTIVE_FIRE_COLUMNS = (
    "acquired",
    "acq_date",
    "latitude",
    "longitude",
    "frp",
    "satellite",
    "instrument",
    "confidence",
    "confidence_norm",
    "daynight",
    "event_id",
    "run_id",
)
"""Attribute columns of the ``active_fires`` layer."""

_EPOCH = np.datetime64("1970-01-01", "D")
_DATE_ATTRS = {"units": "days since 1970-01-01", "_FillValue": DATE_FILL}


def local_solar_days(detections: pd.DataFrame) -> np.ndarray:
    """Return each detection's local solar day, as int days since 1970-01-01.

    Parameters
    ----------
    detections
        With ``acquired`` (UTC timestamps) and ``longitude`` (degrees).
    """
    utc = pd.to_datetime(detections["acquired"], utc=True).dt.tz_localize(None)
    shift = pd.to_timedelta(detections["longitude"].to_numpy() / 15.0, unit="h")
    local = (utc + shift).to_numpy().astype("datetime64[D]")
    return (local - _EPOCH).astype(np.int64)


def burned_from_detections(
    detections: gpd.GeoDataFrame, region: RegionConfig
) -> xr.Dataset:
    """Rasterise active-fire detections into a burned.zarr-shaped dataset.

    Parameters
    ----------
    detections
        Points in any CRS with ``acquired`` (UTC), ``longitude``, optional
        ``scan``/``track`` or ``DS``/``DT`` (km), ``instrument`` and
        ``confidence_norm`` (0-1), as :func:`burnscape.acquire.firms.read_firms`
        returns them.
    region
        The grid: CRS, bbox and pixel size (e.g. EPSG:32611 at 375 m).

    Returns
    -------
    xarray.Dataset
        (y, x) on the region grid with ``spatial_ref``: ``burned`` uint8 (1
        where a footprint covers the cell centre), ``confidence`` float32 (the
        highest ``confidence_norm`` of those detections, 1 where the source
        gives none), ``burn_date``/``burn_date_min``/``burn_date_max`` int32
        days since 1970-01-01 (the first detection's local solar day; -1 fill),
        ``detection_count`` int16, and attributes ``detector``
        ("active-fire-detections"), ``detector_params``, ``inputs``,
        ``created``.

    Warns
    -----
    EmptyResultWarning
        No detection falls on the grid.
    """
    rows, cols = region.shape
    minx, _, _, maxy = region.bbox
    transform = Affine(region.pixel_size, 0, minx, 0, -region.pixel_size, maxy)
    points = detections.to_crs(region.crs) if detections.crs else detections
    footprints = _footprints(points)
    days = local_solar_days(detections)
    confidence = _confidence(detections)

    by_time = np.argsort(-days, kind="stable")  # the earliest is drawn last, and wins
    first_day = _rasterize(footprints[by_time], days[by_time], (rows, cols), transform)
    by_conf = np.argsort(confidence, kind="stable")
    best = _rasterize(
        footprints[by_conf], confidence[by_conf], (rows, cols), transform, np.float32
    )
    counts = (
        rasterio.features.rasterize(
            ((shape, 1) for shape in footprints),
            out_shape=(rows, cols),
            transform=transform,
            fill=0,
            dtype="int32",
            merge_alg=rasterio.enums.MergeAlg.add,
        )
        if len(footprints)
        else np.zeros((rows, cols), dtype=np.int32)
    )
    burned = first_day >= 0
    if not burned.any():
        import warnings

        warnings.warn(
            f"no detection falls on region {region.name!r}",
            EmptyResultWarning,
            stacklevel=2,
        )
    dataset = _dataset(burned, first_day, best, counts, transform, region)
    logger.info(
        "Rasterised %d detections onto %s: %d burned cells.",
        len(detections),
        region.name,
        int(burned.sum()),
    )
    return dataset


def active_fires_frame(
    detections: gpd.GeoDataFrame, events: gpd.GeoDataFrame | None, run_id: str
) -> gpd.GeoDataFrame:
    """Return detections as the ``active_fires`` layer, tagged with their event.

    Parameters
    ----------
    detections
        Points (any CRS) with the columns :func:`read_firms` gives.
    events
        The run's ``fire_events`` (EPSG:4326) or None; a detection inside an
        event's polygon gets its ``event_id``.
    run_id
        Stored in each row.

    Returns
    -------
    geopandas.GeoDataFrame
        :data:`ACTIVE_FIRE_COLUMNS` (``acquired`` as ISO text, ``acq_date`` the
        local solar date) and Point geometry in EPSG:4326.
    """
    points = detections.to_crs(4326).reset_index(drop=True)
    days = local_solar_days(points) if len(points) else np.zeros(0, dtype=np.int64)
    table = pd.DataFrame(
        {
            "acquired": pd.to_datetime(points["acquired"], utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "acq_date": [str(_EPOCH + int(day)) for day in days],
        }
    )
    for column in ACTIVE_FIRE_COLUMNS[2:-2]:
        table[column] = points[column] if column in points else None
    table["event_id"] = _event_of(points, events)
    table["run_id"] = run_id
    return gpd.GeoDataFrame(table, geometry=points.geometry.values, crs=4326)


def _footprints(points: gpd.GeoDataFrame) -> np.ndarray:
    """Return each detection's footprint rectangle in the points' CRS (metres)."""
    if points.crs is not None and not points.crs.is_projected:
        raise EventsError(
            f"detections are in {points.crs.name}; use a projected region CRS (metres)"
        )
    nominal = points.get("instrument", pd.Series("VIIRS", index=points.index))
    default_km = nominal.map(NOMINAL_FOOTPRINT_KM).fillna(0.375).to_numpy()
    scan = _first_column(points, ("scan", "DS"), default_km)
    track = _first_column(points, ("track", "DT"), default_km)
    x, y = points.geometry.x.to_numpy(), points.geometry.y.to_numpy()
    half_x, half_y = scan * 500.0, track * 500.0
    return shapely.box(x - half_x, y - half_y, x + half_x, y + half_y)


def _first_column(
    frame: pd.DataFrame, names: tuple[str, ...], default: np.ndarray
) -> np.ndarray:
    for name in names:
        if name in frame:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(
                dtype=np.float64
            )
            return np.where(np.isfinite(values) & (values > 0), values, default)
    return default


def _confidence(detections: pd.DataFrame) -> np.ndarray:
    if "confidence_norm" not in detections:
        return np.ones(len(detections), dtype=np.float64)
    values = pd.to_numeric(detections["confidence_norm"], errors="coerce").to_numpy()
    return np.where(np.isfinite(values), np.clip(values, 0.0, 1.0), 1.0)


def _rasterize(
    shapes: np.ndarray,
    values: np.ndarray,
    shape: tuple[int, int],
    transform: Affine,
    dtype: Any = np.int32,
) -> np.ndarray:
    fill = DATE_FILL if np.dtype(dtype).kind == "i" else np.nan
    if len(shapes) == 0:
        return np.full(shape, fill, dtype=dtype)
    return rasterio.features.rasterize(
        zip(shapes, values.tolist(), strict=True),
        out_shape=shape,
        transform=transform,
        fill=fill,
        dtype=np.dtype(dtype).name,
    )


def _dataset(
    burned: np.ndarray,
    first_day: np.ndarray,
    best: np.ndarray,
    counts: np.ndarray,
    transform: Affine,
    region: RegionConfig,
) -> xr.Dataset:
    rows, cols = burned.shape
    dims = ("y", "x")
    date = xr.Variable(dims, first_day.astype(np.int32), attrs=_DATE_ATTRS)
    dataset = xr.Dataset(
        {
            "burned": (
                dims,
                burned.astype(np.uint8),
                {"long_name": "burned (1) or not (0)"},
            ),
            "confidence": (
                dims,
                np.where(burned, best, 0.0).astype(np.float32),
                {"units": "1", "long_name": "highest detection confidence"},
            ),
            "burn_date": date,
            "burn_date_min": date.copy(),
            "burn_date_max": date.copy(),
            "detection_count": (dims, np.minimum(counts, 32767).astype(np.int16)),
        },
        coords={
            "y": transform.f + transform.e * (np.arange(rows) + 0.5),
            "x": transform.c + transform.a * (np.arange(cols) + 0.5),
        },
        attrs={
            "detector": "active-fire-detections",
            "detector_params": json.dumps(
                {"burn_date": "first detection, local solar day"}
            ),
            "inputs": json.dumps([]),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )
    dataset = dataset.rio.write_crs(region.crs).rio.write_transform(transform)
    for variable in dataset.data_vars.values():
        variable.encoding["coordinates"] = "spatial_ref"
    return dataset


def _event_of(points: gpd.GeoDataFrame, events: gpd.GeoDataFrame | None) -> list[Any]:
    if events is None or events.empty or points.empty:
        return [None] * len(points)
    joined = gpd.sjoin(
        points[["geometry"]],
        events[["event_id", "geometry"]].to_crs(4326),
        how="left",
        predicate="within",
    )
    first = joined[~joined.index.duplicated(keep="first")]
    return [None if pd.isna(v) else v for v in first["event_id"].reindex(points.index)]
