"""Events stage: the ``burned_pixels`` layer, one polygon per burned pixel.

The web map draws every burned pixel coloured by burn date or confidence. Each
pixel becomes the quadrilateral of its four corners reprojected to EPSG:4326
(an exact rectangle on a geographic grid).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from burnscape.events.geometry import WGS84, grid_to_xy
from burnscape.events.labels import iso_date

if TYPE_CHECKING:
    from burnscape.events.extract import BurnedGrid

logger = logging.getLogger(__name__)

__all__ = ["PIXEL_COLUMNS", "burned_pixel_frame"]

PIXEL_COLUMNS = ("event_id", "burn_date", "confidence", "run_id")
"""Attribute columns of the ``burned_pixels`` layer (besides the geometry)."""


def burned_pixel_frame(
    labels: np.ndarray,
    events: list[dict[str, Any]],
    grid: BurnedGrid,
    run_id: str,
    max_pixels: int,
) -> gpd.GeoDataFrame:
    """Return one EPSG:4326 polygon per pixel of the labelled events.

    Parameters
    ----------
    labels
        (y, x) event labels 1..n, 0 elsewhere; label k is ``events[k - 1]``.
    events
        The events' attributes (``event_id`` is used).
    grid
        The burned grid (dates, confidence, transform, CRS).
    run_id
        Stored in each row.
    max_pixels
        Above this many pixels the frame is returned empty and a warning logged:
        a layer of millions of polygons helps no map.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``event_id``, ``burn_date`` (ISO date), ``confidence`` (0-1),
        ``run_id``; Polygon geometries in EPSG:4326.
    """
    rows, cols = np.nonzero(labels)
    if rows.size > max_pixels:
        logger.warning(
            "Run %s has %d burned pixels, more than max_pixel_polygons=%d: "
            "the burned_pixels layer is left empty.",
            run_id,
            rows.size,
            max_pixels,
        )
        rows, cols = rows[:0], cols[:0]
    event_ids = np.array([event["event_id"] for event in events] or [""], dtype=object)
    days = grid.dates[rows, cols]
    unique_days, day_index = np.unique(days, return_inverse=True)
    iso = np.array([iso_date(day) for day in unique_days], dtype=object)
    table = pd.DataFrame(
        {
            "event_id": event_ids[labels[rows, cols] - 1] if rows.size else [],
            "burn_date": iso[day_index] if rows.size else [],
            "confidence": grid.confidence[rows, cols].astype(np.float64),
            "run_id": run_id,
        }
    )
    geometry = _pixel_polygons(rows, cols, grid)
    return gpd.GeoDataFrame(table, geometry=geometry, crs=WGS84)


def _pixel_polygons(
    rows: np.ndarray, cols: np.ndarray, grid: BurnedGrid
) -> gpd.GeoSeries:
    """Return the EPSG:4326 quadrilaterals of pixels (row, col)."""
    corner_cols = cols[:, None] + np.array([0, 1, 1, 0, 0])[None, :]
    corner_rows = rows[:, None] + np.array([0, 0, 1, 1, 0])[None, :]
    xs, ys = grid_to_xy(
        grid.transform, corner_cols.astype(np.float64), corner_rows.astype(np.float64)
    )
    if not grid.crs.equals(WGS84):
        transformer = Transformer.from_crs(grid.crs, WGS84, always_xy=True)
        xs, ys = transformer.transform(xs, ys)
    coords = np.stack([np.asarray(xs), np.asarray(ys)], axis=-1).reshape(-1, 5, 2)
    return gpd.GeoSeries(shapely.polygons(coords), crs=WGS84)
