"""Cube stage: turn downloaded items into granules, with each product's conventions.

An :class:`~burnscape.acquire.AcquiredItem` names its files by asset key; the
workflow source maps common band names to asset keys (``bands``). This module
builds the :class:`~burnscape.cube.writer.Scene` the writer ingests:

- each band's file, and, for container products (one HDF file holding every
  band), the dataset inside it: a ``bands`` value that is not an asset key
  names a dataset of the item's single data file; or map the bands to the
  file's asset key and name the datasets in ``options.variables`` (common
  name to dataset), or let the product reader pick its default dataset;
- calibration for GeoTIFF/COG bands: the asset's STAC ``raster:bands`` scale,
  offset and nodata, else the source's; for Sentinel-2 from processing
  baseline 04.00 on, the -1000 DN radiometric offset when the catalogue has
  not already folded it into ``raster:bands`` (:func:`sentinel2_offset`);
- the reader (source ``options.reader``, else chosen per file), the cloud mask
  (``options.cloud_mask``: ``true`` for the product's QA dataset, or a
  dataset or asset name) and the resampling (``options.resampling``);
- a fingerprint of the inputs from the download ledger's SHA-256.

A band the item lacks is left out, so that the writer records the slot as
missing a band instead of stopping the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from burnscape.cube.readers import BandFile
from burnscape.cube.writer import Scene

if TYPE_CHECKING:
    from burnscape.acquire import AcquiredItem
    from burnscape.config import SourceConfig

__all__ = [
    "S2_BOA_OFFSET_DN",
    "granule_time",
    "scene_from_item",
    "sentinel2_offset",
]

logger = logging.getLogger(__name__)

S2_BOA_OFFSET_DN = -1000
"""Sentinel-2 radiometric offset (DN) from processing baseline 04.00 on."""

_GRANULE_TIME = re.compile(r"\.A(\d{4})(\d{3})(?:\.(\d{2})(\d{2}))?\.")
_BASELINE = re.compile(r"(\d+)\.(\d+)")


def scene_from_item(
    item: AcquiredItem,
    source: SourceConfig,
    checksums: Mapping[str, str] | None = None,
) -> Scene:
    """Build the granule of a downloaded item for the cube writer.

    Parameters
    ----------
    item
        The verified item (files by asset key, STAC properties, asset info).
    source
        Its workflow source: ``bands`` (common name to asset key or dataset),
        ``scale``/``offset``/``nodata`` fallbacks and ``options``.
    checksums
        Local file path to SHA-256 (the download ledger's), for the
        fingerprint; files absent from it are identified by name and size.

    Returns
    -------
    Scene
        Its time is the item's acquisition time, or the start of its honest
        window; its bands those the item provides.
    """
    bands = []
    for common, key in source.bands.items():
        band = _band_file(item, source, common, key)
        if band is None:
            logger.warning("Item %s lacks band %s (%s).", item.id, common, key)
            continue
        bands.append(band)
    lower, upper = item.time_bounds
    cloud = _cloud_band(item, source, bands)
    files = [band.path for band in bands] + ([cloud.path] if cloud else [])
    fingerprint = ",".join(
        sorted({(checksums or {}).get(path, "") for path in files} - {""})
    )
    return Scene(
        id=item.id,
        time=lower,
        time_bounds=(lower, upper),
        bands=tuple(bands),
        cloud=cloud,
        fingerprint=fingerprint,
    )


def sentinel2_offset(
    properties: Mapping[str, Any], scale: float, offset: float
) -> float:
    """Return a Sentinel-2 band's offset with the baseline-04.00 shift applied.

    From processing baseline 04.00 (25 January 2022) on, Sentinel-2 L1C and L2A
    digital numbers carry a radiometric offset: reflectance is
    ``(DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE`` with ``BOA_ADD_OFFSET``
    -1000 and ``QUANTIFICATION_VALUE`` 10000. Catalogues that already state it
    (a non-zero ``raster:bands`` offset, or Earth Search's
    ``earthsearch:boa_offset_applied``) are left alone.

    Parameters
    ----------
    properties
        The item's STAC properties (``s2:processing_baseline``).
    scale, offset
        The band's scale and offset so far (``raw * scale + offset``).

    Returns
    -------
    float
        The offset to use.

    Examples
    --------
    >>> round(3539 * 1e-4 + sentinel2_offset({"s2:processing_baseline": "04.00"},
    ...                                       1e-4, 0.0), 4)
    0.2539
    """
    baseline = _baseline(properties.get("s2:processing_baseline"))
    if baseline is None or baseline < (4, 0):
        return offset
    if offset != 0 or properties.get("earthsearch:boa_offset_applied"):
        return offset
    return offset + S2_BOA_OFFSET_DN * scale


def granule_time(name: str) -> dt.datetime | None:
    """Return the acquisition time in a NASA granule name (``.AYYYYDDD.HHMM.``)."""
    match = _GRANULE_TIME.search(name)
    if match is None:
        return None
    year, doy, hour, minute = match.groups()
    day = dt.datetime(int(year), 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=int(doy) - 1)
    return day + dt.timedelta(hours=int(hour or 0), minutes=int(minute or 0))


def _band_file(
    item: AcquiredItem, source: SourceConfig, common: str, key: str
) -> BandFile | None:
    options = source.options
    if key in item.assets:
        path, variable = item.assets[key], options.get("variables", {}).get(common)
        info = item.asset_info.get(key, {})
    else:
        container = _container(item, source)
        if container is None:
            return None
        path, variable = item.assets[container], key
        info = item.asset_info.get(container, {})
    scale = float(_first(info.get("scale"), source.scale))
    offset = float(_first(info.get("offset"), source.offset))
    nodata = _first(info.get("nodata"), source.nodata)
    offset = sentinel2_offset(item.properties, scale, offset)
    return BandFile(
        band=common,
        path=str(path),
        scale=scale,
        offset=offset,
        nodata=None if nodata is None else float(nodata),
        reader=options.get("reader"),
        variable=variable,
        media_type=info.get("type"),
        resampling=str(options.get("resampling", "nearest")),
    )


def _cloud_band(
    item: AcquiredItem, source: SourceConfig, bands: list[BandFile]
) -> BandFile | None:
    """Return the cloud mask the source asks for (``options.cloud_mask``)."""
    wanted = source.options.get("cloud_mask")
    if not wanted or not bands:
        return None
    reader = source.options.get("reader")
    if isinstance(wanted, str) and wanted in item.assets:
        info = item.asset_info.get(wanted, {})
        return BandFile(
            band="cloud",
            path=str(item.assets[wanted]),
            nodata=_first(info.get("nodata"), None),
            reader=reader,
            media_type=info.get("type"),
        )
    variable = wanted if isinstance(wanted, str) else None
    return BandFile(
        band="cloud",
        path=bands[0].path,
        reader=reader,
        variable=variable,
        media_type=bands[0].media_type,
    )


def _container(item: AcquiredItem, source: SourceConfig) -> str | None:
    """Return the asset key of the item's single data file, if it has one."""
    named = source.options.get("asset")
    if named:
        return str(named) if named in item.assets else None
    return next(iter(item.assets)) if len(item.assets) == 1 else None


def _first(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _baseline(value: Any) -> tuple[int, int] | None:
    match = _BASELINE.search(str(value)) if value is not None else None
    return (int(match.group(1)), int(match.group(2))) if match else None
