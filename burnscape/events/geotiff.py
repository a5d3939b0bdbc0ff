"""Events stage: write one Cloud-Optimised GeoTIFF per fire event.

Band 1 is the burn confidence (0-1) and band 2 the burn date in days since
1970-01-01, both cropped to the event's bounding box, in the burned.zarr grid
CRS. A GeoTIFF holds one data type for all its bands, so both bands are float32:
day numbers up to 2**24 (year 47,900) are exact in float32, and band 2 holds
whole days only. Pixels outside the event are nodata (NaN, declared).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio

if TYPE_CHECKING:
    from affine import Affine
    from pyproj import CRS

logger = logging.getLogger(__name__)

__all__ = ["BAND_DESCRIPTIONS", "write_event_geotiff"]

BAND_DESCRIPTIONS = ("confidence", "burn_date")
"""Descriptions of the two bands of an event GeoTIFF, in band order."""

_COG_OPTIONS = {
    "compress": "deflate",
    "predictor": "2",
    "blocksize": 256,
    "overviews": "auto",
    "overview_resampling": "nearest",
}


def write_event_geotiff(
    path: Path,
    confidence: np.ndarray,
    burn_date: np.ndarray,
    inside: np.ndarray,
    transform: Affine,
    crs: CRS,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write an event's confidence and burn date as a COG with overviews.

    Parameters
    ----------
    path
        Target ``.tif``; replaced atomically, so a re-run gives the same bytes.
    confidence
        (y, x) float confidence 0-1 over the event's bounding box.
    burn_date
        (y, x) integer burn dates (days since 1970-01-01) over the same box.
    inside
        (y, x) bool: the event's pixels; everything else is written as nodata.
    transform
        Affine transform of the box (its upper-left corner).
    crs
        The grid CRS.
    tags
        Extra dataset tags (event id, run id).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    stack = np.full((2, *inside.shape), np.nan, dtype=np.float32)
    stack[0][inside] = np.asarray(confidence, dtype=np.float32)[inside]
    stack[1][inside] = np.asarray(burn_date, dtype=np.float64)[inside]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    profile = {
        "driver": "COG",
        "width": inside.shape[1],
        "height": inside.shape[0],
        "count": 2,
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "nodata": np.nan,
        **_COG_OPTIONS,
    }
    with rasterio.open(partial, "w", **profile) as dst:
        dst.write(stack)
        for band, description in enumerate(BAND_DESCRIPTIONS, start=1):
            dst.set_band_description(band, description)
        dst.update_tags(1, units="1")
        dst.update_tags(2, units="days since 1970-01-01")
        if tags:
            dst.update_tags(**tags)
    os.replace(partial, path)
    logger.debug("Wrote event GeoTIFF %s (%d x %d).", path, *inside.shape[::-1])
    return path
