"""Events stage: the ``burned_pixels`` layer, one polygon per burned pixel.

The web map draws every burned pixel coloured by burn date or confidence. Each
pixel becomes the quadrilateral of its four corners reprojected to EPSG:4326
(an exact rectangle on a geographic grid).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from burnscape.events.geometry import WGS84, grid_to_xy, transformer_to_wgs84
from burnscape.events.labels import iso_date

if TYPE_CHECKING:
    from burnscape.events.grid import EventWindow

logger = logging.getLogger(__name__)

__all__ = ["PIXEL_COLUMNS", "burned_pixels", "pixels_frame"]

PIXEL_COLUMNS = ("event_id", "burn_date", "confidence", "run_id")
"""Attribute columns of the ``burned_pixels`` layer (besides the geometry)."""


def burned_pixels(
    event_id: str, window: EventWindow, crs: CRS, run_id: str
) -> gpd.GeoDataFrame:
    """Return one EPSG:4326 polygon per pixel of an event.

    Parameters
    ----------
    event_id
        The event's id, stored in each row.
    window
        The event's window (mask, dates, confidence, transform).
    crs
        The grid CRS.
    run_id
        Stored in each row.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``event_id``, ``burn_date`` (ISO date), ``confidence`` (0-1),
        ``run_id``; Polygon geometries in EPSG:4326, in row-major pixel order.
    """
    rows, cols = np.nonzero(window.inside)
    days = window.dates[rows, cols]
    unique_days, day_index = np.unique(days, return_inverse=True)
    iso = np.array([iso_date(day) for day in unique_days], dtype=object)
    table = pd.DataFrame(
        {
            "event_id": np.full(rows.size, event_id, dtype=object),
            "burn_date": iso[day_index],
            "confidence": window.confidence[rows, cols].astype(np.float64),
            "run_id": np.full(rows.size, run_id, dtype=object),
        }
    )
    geometry = _pixel_polygons(rows, cols, window, crs)
    return gpd.GeoDataFrame(table, geometry=geometry, crs=WGS84)


def pixels_frame(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """Concatenate per-event pixel frames into the layer (empty if none)."""
    if not frames:
        empty: dict[str, list[object]] = {name: [] for name in PIXEL_COLUMNS}
        return gpd.GeoDataFrame(empty, geometry=gpd.GeoSeries([], crs=WGS84))
    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=WGS84)


def _pixel_polygons(
    rows: np.ndarray, cols: np.ndarray, window: EventWindow, crs: CRS
) -> gpd.GeoSeries:
    """Return the EPSG:4326 quadrilaterals of window pixels (row, col)."""
    corner_cols = cols[:, None] + np.array([0, 1, 1, 0, 0])[None, :]
    corner_rows = rows[:, None] + np.array([0, 0, 1, 1, 0])[None, :]
    xs, ys = grid_to_xy(
        window.transform, corner_cols.astype(np.float64), corner_rows.astype(np.float64)
    )
    if not CRS.from_user_input(crs).equals(WGS84):
        xs, ys = transformer_to_wgs84(crs).transform(xs, ys)
    coords = np.stack([np.asarray(xs), np.asarray(ys)], axis=-1).reshape(-1, 5, 2)
    return gpd.GeoSeries(shapely.polygons(coords), crs=WGS84)
