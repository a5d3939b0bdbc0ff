"""Validation: score a burned mask against a reference perimeter.

Stage-free: it reads burned.zarr and a vector file, and imports no stage.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import xarray as xr
from pyproj import Geod
from rasterio.features import rasterize

from burnscape.errors import DataNotFoundError

__all__ = ["ACRE_HA", "MaskScores", "reference_area_ha", "score_burned"]

logger = logging.getLogger(__name__)

ACRE_HA = 0.40468564224
"""Hectares in one international acre."""


@dataclass(frozen=True)
class MaskScores:
    """Pixel-wise agreement of a burned mask with a reference, over observed pixels."""

    precision: float
    recall: float
    f1: float
    iou: float
    true_positive: int
    false_positive: int
    false_negative: int
    reference_pixels: int
    observed_pixels: int

    def to_dict(self) -> dict[str, Any]:
        """Return the scores as a JSON-ready dict (rounded ratios)."""
        out = asdict(self)
        for key in ("precision", "recall", "f1", "iou"):
            out[key] = round(out[key], 4)
        return out


def score_burned(burned_path: Path, reference: Path) -> MaskScores:
    """Rasterise a reference perimeter on burned.zarr's grid and score the mask.

    Parameters
    ----------
    burned_path
        A burned.zarr store (``burned`` 0/1, 255 where not observed).
    reference
        Any vector file geopandas reads (shapefile, GeoPackage, GeoJSON); it is
        reprojected to the grid's CRS.

    Returns
    -------
    MaskScores
        Precision, recall, F1 and IoU over the observed pixels.
    """
    if not Path(reference).exists():
        raise DataNotFoundError(
            f"reference perimeter {reference} does not exist: set BURNSCAPE_DATA_DIR "
            "or fix validation.reference in the workflow"
        )
    burned = xr.open_zarr(burned_path, mask_and_scale=False, decode_times=False)
    mask = burned["burned"].values
    perimeter = gpd.read_file(reference).to_crs(burned.rio.crs)
    truth = rasterize(
        perimeter.geometry, out_shape=mask.shape, transform=burned.rio.transform()
    ).astype(bool)
    observed = mask != 255
    detected = (mask == 1) & observed
    truth &= observed
    tp = int((detected & truth).sum())
    fp = int((detected & ~truth).sum())
    fn = int((~detected & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    logger.info("Validation against %s: F1 %.3f, IoU %.3f.", reference, f1, iou)
    return MaskScores(
        precision, recall, f1, iou, tp, fp, fn, int(truth.sum()), int(observed.sum())
    )


def reference_area_ha(reference: Path) -> float:
    """Return the reference perimeter's area in hectares (geodesic, WGS 84)."""
    frame = gpd.read_file(reference).to_crs("EPSG:4326")
    geod = Geod(ellps="WGS84")
    return float(
        sum(abs(geod.geometry_area_perimeter(geom)[0]) for geom in frame.geometry)
        / 10_000.0
    )
