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
from shapely.geometry import shape

from burnscape.events.geometry import WGS84, as_valid_multipolygon, to_wgs84
from burnscape.events.labels import iso_date

if TYPE_CHECKING:
    from pyproj import CRS

    from burnscape.events.grid import EventWindow

logger = logging.getLogger(__name__)

__all__ = ["PROGRESSION_COLUMNS", "daily_progression", "progression_frame"]

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


def daily_progression(
    event_id: str, window: EventWindow, areas_m2: np.ndarray, crs: CRS, run_id: str
) -> list[dict[str, Any]]:
    """Return one row per burn day of an event: that day's polygon and areas.

    Parameters
    ----------
    event_id
        The event's id.
    window
        The event's window; pixels are dated by ``window.dates``.
    areas_m2
        Pixel areas over the window (m²).
    crs
        The grid CRS.
    run_id
        Stored in each row.

    Returns
    -------
    list of dict
        Rows in date order with the :data:`PROGRESSION_COLUMNS` and a
        ``geometry`` (EPSG:4326 MultiPolygon of that day's pixels).
    """
    dates = np.where(window.inside, window.dates, -1).astype(np.int32)
    parts: dict[int, list[Any]] = {}
    for geometry, value in rasterio.features.shapes(
        dates, mask=window.inside, connectivity=4, transform=window.transform
    ):
        parts.setdefault(int(value), []).append(shape(geometry))
    rows: list[dict[str, Any]] = []
    cumulative_m2, cumulative_px = 0.0, 0
    days = sorted(parts)
    for day in days:
        that_day = dates == day
        day_m2 = float(areas_m2[that_day].sum())
        cumulative_m2 += day_m2
        cumulative_px += int(that_day.sum())
        rows.append(
            {
                "event_id": event_id,
                "date": iso_date(day),
                "day_index": int(day - days[0]),
                "pixel_count": int(that_day.sum()),
                "area_ha": round(day_m2 / 1e4, 4),
                "cumulative_area_ha": round(cumulative_m2 / 1e4, 4),
                "cumulative_pixel_count": cumulative_px,
                "run_id": run_id,
                "geometry": to_wgs84(as_valid_multipolygon(parts[day]), crs),
            }
        )
    return rows


def progression_frame(rows: list[dict[str, Any]]) -> gpd.GeoDataFrame:
    """Return the rows of :func:`daily_progression` as the layer's GeoDataFrame."""
    if not rows:
        empty: dict[str, list[Any]] = {name: [] for name in PROGRESSION_COLUMNS}
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=WGS84))
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=WGS84)
