"""Events stage: run workflows whose inputs are already burned-area products.

Two kinds of workflow need no cube and no detector:

* **BA-Net event rasters** (a ``manifest`` source whose items each hold one
  GeoTIFF asset ``events``): each item becomes a burned.zarr on its own grid
  (:func:`burned_from_banet_geotiff`) and is delineated into events, run id
  ``<workflow>-<item>``.
* **Active-fire detections** (``firms`` sources): the detections in the source's
  folder become a first-detection burn-date raster on the workflow's region
  grid (:func:`burned_from_detections`), then events with their daily growth;
  the detections themselves go to the ``active_fires`` layer.

Offline, a source's files are read from ``<data dir>/<mirror_folder>`` (the
shared data folder by default); asset checksums given in the workflow are
verified before use.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import geopandas as gpd
import pandas as pd
import xarray as xr
from pyproj import Transformer

from burnscape.config import ItemConfig, SourceConfig, WorkflowConfig
from burnscape.errors import ChecksumError, ConfigError, DataNotFoundError, StoreError
from burnscape.events.banet import burned_from_banet_geotiff
from burnscape.events.detections import active_fires_frame, burned_from_detections
from burnscape.events.extract import EventsSummary, extract_events
from burnscape.events.store import open_store
from burnscape.utils import find_data_dir, sha256_file

logger = logging.getLogger(__name__)

__all__ = ["BANET_ASSET", "is_events_workflow", "run_events_workflow"]

BANET_ASSET = "events"
"""Asset key of a BA-Net event GeoTIFF in a manifest item."""


def is_events_workflow(workflow: WorkflowConfig) -> bool:
    """Return True when every source is detections or BA-Net event rasters."""
    return all(_kind(source) is not None for source in workflow.sources)


def run_events_workflow(
    workflow: WorkflowConfig,
    outputs: Path | None = None,
    *,
    data_dir: Path | None = None,
    run_id: str | None = None,
) -> list[EventsSummary]:
    """Turn a workflow's burned-area inputs into events, GeoTIFFs and layers.

    Parameters
    ----------
    workflow
        A workflow whose sources are all ``firms`` (detections) or ``manifest``
        sources of BA-Net event rasters (items with an ``events`` asset).
    outputs
        The outputs folder; default ``workflow.outputs.folder``.
    data_dir
        Where the sources' ``mirror_folder`` lie; default the shared data
        folder (:func:`burnscape.utils.find_data_dir`).
    run_id
        Run id for detections (default: the workflow's name); BA-Net items use
        ``<run_id>-<item id>``.

    Returns
    -------
    list of EventsSummary
        One per delineated raster (per BA-Net item, or one for all detections).

    Raises
    ------
    ConfigError
        A source is of another kind.
    DataNotFoundError
        A source's folder or file is missing.
    ChecksumError
        A file's SHA-256 differs from the workflow's.
    """
    folder = Path(outputs or workflow.outputs.folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = run_id or workflow.name
    summaries: list[EventsSummary] = []
    detections: list[gpd.GeoDataFrame] = []
    roots = {}
    for source in workflow.sources:  # check every input before writing anything
        if _kind(source) is None:
            raise ConfigError(
                f"source {source.name!r} ({source.kind}) is not an events input; "
                "use kind 'firms' or a 'manifest' of items with an 'events' asset"
            )
        roots[source.name] = _source_folder(source, data_dir)
        if _kind(source) == "banet":
            _verify_assets(source, roots[source.name])
    for source in workflow.sources:
        root = roots[source.name]
        if _kind(source) == "banet":
            for item in source.items:
                summaries.append(_banet_item(workflow, item, root, folder, base))
        else:
            detections.append(_read_detections(workflow, root))
    if detections:
        summaries.append(_detections(workflow, detections, folder, base))
    return summaries


def _kind(source: SourceConfig) -> str | None:
    if source.kind == "firms":
        return "detections"
    if (
        source.kind == "manifest"
        and source.items
        and all(BANET_ASSET in item.assets for item in source.items)
    ):
        return "banet"
    return None


def _source_folder(source: SourceConfig, data_dir: Path | None) -> Path:
    root = data_dir or find_data_dir()
    if root is None or source.mirror_folder is None:
        raise DataNotFoundError(
            f"source {source.name!r}: no data folder (set BURNSCAPE_DATA_DIR) or no "
            "mirror_folder in the workflow"
        )
    folder = Path(root) / source.mirror_folder
    if not folder.exists():
        raise DataNotFoundError(f"source {source.name!r}: {folder} does not exist")
    return folder


def _verify_assets(source: SourceConfig, root: Path) -> None:
    """Check that every item's GeoTIFF exists and matches its SHA-256."""
    for item in source.items:
        asset = item.assets[BANET_ASSET]
        path = root / asset.path
        if not path.is_file():
            raise DataNotFoundError(f"item {item.id!r}: asset {path} does not exist")
        if asset.sha256 is not None and sha256_file(path) != asset.sha256:
            raise ChecksumError(
                f"item {item.id!r}: {path} does not match the workflow's sha256 "
                f"{asset.sha256}; the file was not used"
            )


def _banet_item(
    workflow: WorkflowConfig, item: ItemConfig, root: Path, outputs: Path, base: str
) -> EventsSummary:
    path = root / item.assets[BANET_ASSET].path
    year = item.time_bounds[0].year
    burned = burned_from_banet_geotiff(path, year)
    target = outputs / "burned" / f"{item.id}.zarr"
    _write_zarr(burned, target)
    summary = extract_events(
        target,
        outputs,
        workflow.events,
        run_id=f"{base}-{item.id}",
        store=workflow.outputs.events_store or None,
    )
    logger.info("BA-Net item %s: %d events.", item.id, summary.n_events)
    return summary


def _read_detections(workflow: WorkflowConfig, root: Path) -> gpd.GeoDataFrame:
    from burnscape.acquire.firms import read_firms

    frame = read_firms(root)
    minx, miny, maxx, maxy = Transformer.from_crs(
        workflow.region.crs, 4326, always_xy=True
    ).transform_bounds(*workflow.region.bbox)
    start = pd.Timestamp(workflow.time.start, tz="UTC")
    end = pd.Timestamp(workflow.time.end + dt.timedelta(days=1), tz="UTC")
    keep = (
        frame["longitude"].between(minx, maxx)
        & frame["latitude"].between(miny, maxy)
        & (frame["acquired"] >= start)
        & (frame["acquired"] < end)
    )
    logger.info(
        "Read %d detections from %s (%d in region and window).",
        len(frame),
        root,
        int(keep.sum()),
    )
    return frame.loc[keep].reset_index(drop=True)


def _detections(
    workflow: WorkflowConfig, frames: list[gpd.GeoDataFrame], outputs: Path, run_id: str
) -> EventsSummary:
    detections = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=4326)
    burned = burned_from_detections(detections, workflow.region)
    burned.attrs["inputs"] = json.dumps([s.mirror_folder for s in workflow.sources])
    target = outputs / "burned.zarr"
    _write_zarr(burned, target)
    summary = extract_events(
        target,
        outputs,
        workflow.events,
        run_id=run_id,
        store=workflow.outputs.events_store or None,
    )
    store = open_store(summary.store)
    try:
        events = store.read("fire_events", run_id=run_id)
    except StoreError:
        events = None
    store.replace_run(
        "active_fires", run_id, active_fires_frame(detections, events, run_id)
    )
    return summary


def _write_zarr(dataset: xr.Dataset, target: Path) -> None:
    """Write a burned dataset as consolidated Zarr v2, replacing an older one."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_zarr(partial, mode="w", consolidated=True, zarr_format=2)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
