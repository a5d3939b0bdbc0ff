"""Events stage: the ``daily_progression`` layer, how each event grew day by day.

For each event and each burn day it holds the polygon of the pixels that burned
that day, the day's area and the cumulative area up to and including that day
(the growth curve).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import rasterio.features
from scipy import ndimage
from shapely.geometry import shape

from burnscape.events.geometry import (
    WGS84,
    as_valid_multipolygon,
    pixel_areas_m2,
    to_wgs84,
)
from burnscape.events.labels import iso_date

if TYPE_CHECKING:
    from burnscape.events.extract import BurnedGrid

logger = logging.getLogger(__name__)

__all__ = ["PROGRESSION_COLUMNS", "daily_progression_frame"]

PROGRESSION_COLUMNS = (
    "event_id",
    "date",
    "day_index",
    "pixel_count",
    "area_ha",
    "cumulative_area_ha",
    "cumulative_pixel_count",
    "run_id",
)
"""Attribute columns of the ``daily_progression`` layer."""


def daily_progression_frame(
    labels: np.ndarray,
    events: list[dict[str, Any]],
    grid: BurnedGrid,
    run_id: str,
) -> gpd.GeoDataFrame:
    """Return one row per event and burn day: that day's polygon and areas.

    Parameters
    ----------
    labels
        (y, x) event labels 1..n; label k is ``events[k - 1]``.
    events
        The events' attributes (``event_id`` is used).
    grid
        The burned grid; pixels are dated by ``grid.dates`` (days since 1970).
    run_id
        Stored in each row.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``event_id``, ``date`` (ISO), ``day_index`` (0 on the event's
        first day), ``pixel_count``, ``area_ha``, ``cumulative_area_ha``,
        ``cumulative_pixel_count``, ``run_id``; MultiPolygon geometries in
        EPSG:4326, sorted by event then date.
    """
    records: list[dict[str, Any]] = []
    geometries = []
    for k, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        rows, cols = box
        inside = labels[rows, cols] == k + 1
        dates = np.where(inside, grid.dates[rows, cols], -1).astype(np.int32)
        areas = pixel_areas_m2(grid.transform, grid.crs, rows, cols)
        window = grid.transform @ grid.transform.translation(cols.start, rows.start)
        parts: dict[int, list[Any]] = {}
        for geometry, value in rasterio.features.shapes(
            dates, mask=inside, connectivity=4, transform=window
        ):
            parts.setdefault(int(value), []).append(shape(geometry))
        days = sorted(parts)
        cumulative_m2, cumulative_px = 0.0, 0
        for day in days:
            that_day = dates == day
            day_m2 = float(areas[that_day].sum())
            cumulative_m2 += day_m2
            cumulative_px += int(that_day.sum())
            records.append(
                {
                    "event_id": events[k]["event_id"],
                    "date": iso_date(day),
                    "day_index": int(day - days[0]),
                    "pixel_count": int(that_day.sum()),
                    "area_ha": round(day_m2 / 1e4, 4),
                    "cumulative_area_ha": round(cumulative_m2 / 1e4, 4),
                    "cumulative_pixel_count": cumulative_px,
                    "run_id": run_id,
                }
            )
            geometries.append(to_wgs84(as_valid_multipolygon(parts[day]), grid.crs))
    if not records:
        empty: dict[str, list[Any]] = {name: [] for name in PROGRESSION_COLUMNS}
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=WGS84))
    return gpd.GeoDataFrame(records, geometry=geometries, crs=WGS84)
