"""Events stage: read BA-Net event rasters as burned.zarr-like datasets.

BA-Net's post-processing writes one GeoTIFF per fire event: band 1 the burn
confidence scaled to 0-255 and band 2 the burn day of year, both 0 where not
burned (e.g. FireHR's ``sample_data/ba100m_*.tif``, EPSG:4326 at 0.001°).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from burnscape.errors import DataNotFoundError, EventsError
from burnscape.events.labels import DATE_FILL

logger = logging.getLogger(__name__)

__all__ = ["burned_from_banet_geotiff"]

_EPOCH = dt.date(1970, 1, 1)
_DATE_ATTRS = {"units": "days since 1970-01-01", "_FillValue": DATE_FILL}


def burned_from_banet_geotiff(path: str | Path, year: int) -> xr.Dataset:
    """Convert a BA-Net event GeoTIFF into a dataset shaped like burned.zarr.

    Parameters
    ----------
    path
        The GeoTIFF (band 1 confidence 0-255, band 2 burn day of year; 0 = not
        burned).
    year
        The year the days of year count in (BA-Net names files by it, e.g.
        ``ba100m_PT2017_1.tif`` is 2017).

    Returns
    -------
    xarray.Dataset
        Dims (y, x), y descending, coords at pixel centres in the file's CRS,
        with ``spatial_ref`` written by rioxarray and the variables of
        burned.zarr: ``burned`` uint8 (1/0; the file marks every pixel as
        observed), ``confidence`` float32 0-1, ``burn_date``, ``burn_date_min``
        and ``burn_date_max`` int32 days since 1970-01-01 (-1 fill; BA-Net gives
        one day, so the interval is that day). Attributes: ``detector``
        ("banet"), ``detector_params``, ``inputs`` and ``created``.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    EventsError
        The file has fewer than two bands or a day of year outside the year.

    Examples
    --------
    >>> burned = burned_from_banet_geotiff("ba100m_PT2017_1.tif", 2017)
    >>> burned.to_zarr("burned.zarr", mode="w")  # doctest: +SKIP
    """
    source = Path(path)
    if not source.is_file():
        raise DataNotFoundError(f"BA-Net GeoTIFF {source} does not exist")
    with rasterio.open(source) as src:
        if src.count < 2:
            raise EventsError(
                f"{source} has {src.count} band(s); BA-Net event rasters have "
                "confidence (band 1) and burn day of year (band 2)"
            )
        score, doy = src.read(1).astype(np.int64), src.read(2).astype(np.int64)
        transform, crs = src.transform, src.crs
    days = _days_since_epoch(doy, year, source)
    dataset = _dataset(score, days, transform)
    dataset = dataset.rio.write_crs(crs).rio.write_transform(transform)
    for variable in dataset.data_vars.values():
        # so that plain xr.open_zarr() of a written store restores the coordinate
        variable.encoding["coordinates"] = "spatial_ref"
    dataset.attrs.update(
        detector="banet",
        detector_params=json.dumps({"source": "BA-Net event GeoTIFF", "year": year}),
        inputs=json.dumps([source.name]),
        created=dt.datetime.fromtimestamp(source.stat().st_mtime, dt.UTC).isoformat(),
    )
    logger.info(
        "Read BA-Net raster %s: %d burned pixels.", source, int((days >= 0).sum())
    )
    return dataset


def _days_since_epoch(doy: np.ndarray, year: int, source: Path) -> np.ndarray:
    length = (dt.date(year + 1, 1, 1) - dt.date(year, 1, 1)).days
    if doy.max(initial=0) > length or doy.min(initial=0) < 0:
        raise EventsError(
            f"{source}: band 2 holds days of year up to {doy.max()}, beyond {year}'s "
            f"{length} days; is the year right?"
        )
    first = (dt.date(year, 1, 1) - _EPOCH).days - 1
    return np.where(doy > 0, doy + first, DATE_FILL).astype(np.int32)


def _dataset(score: np.ndarray, days: np.ndarray, transform: Affine) -> xr.Dataset:
    rows, cols = days.shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    burned = days >= 0
    confidence = np.where(burned, score / 255.0, 0.0).astype(np.float32)
    dims = ("y", "x")
    date = xr.Variable(dims, days, attrs=_DATE_ATTRS)
    return xr.Dataset(
        {
            "burned": (
                dims,
                burned.astype(np.uint8),
                {"long_name": "burned (1) or not (0)"},
            ),
            "confidence": (
                dims,
                confidence,
                {"units": "1", "long_name": "burn confidence"},
            ),
            "burn_date": date,
            "burn_date_min": date.copy(),
            "burn_date_max": date.copy(),
        },
        coords={"y": y, "x": x},
    )
