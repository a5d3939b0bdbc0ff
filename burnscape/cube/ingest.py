"""Cube stage: ingest a workflow's downloaded items into its cube.

The cube step of ``burnscape run``: items become granules
(:func:`~burnscape.cube.scenes.scene_from_item`), fingerprinted with the
download ledger's checksums, and :func:`~burnscape.cube.writer.build_cube`
writes what is missing. The time axis follows the sources' ``options``:

``time_axis: scene`` (default)
    one slot per acquisition over the workflow's time window;
``time_axis: daily`` and ``window_days: N``
    one slot per UTC day of the last ``N`` days ending ``time.end`` (BA-Net's
    64-day window): each run ingests only the days of that window that are
    missing or incomplete, or whose granules changed in the ledger; older
    days stay in the cube untouched, new days are appended.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from burnscape.cube.grid import grid_from_region
from burnscape.cube.scenes import scene_from_item
from burnscape.cube.timeaxis import TimeSlot, daily_slots
from burnscape.cube.writer import CubeSummary, build_cube
from burnscape.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from burnscape.acquire import AcquiredItem
    from burnscape.config import WorkflowConfig

__all__ = ["cube_slots", "ingest_items", "ledger_checksums"]

logger = logging.getLogger(__name__)


def ingest_items(
    items: Sequence[AcquiredItem],
    workflow: WorkflowConfig,
    folder: Path,
    client: Client,
) -> CubeSummary:
    """Write a workflow's downloaded items into ``folder/cube.zarr``.

    Parameters
    ----------
    items
        Verified items of the workflow's sources.
    workflow
        The workflow: region grid, time window, sources, cube chunking.
    folder
        The outputs folder (holds ``ledger.sqlite`` and ``cube.zarr``).
    client
        The Dask client whose workers write the tiles.

    Returns
    -------
    CubeSummary
        Slots written, skipped with their reasons, already complete.
    """
    sources = {source.name: source for source in workflow.sources}
    checksums = ledger_checksums(folder / "ledger.sqlite", items)
    scenes = [scene_from_item(item, sources[item.source], checksums) for item in items]
    bands: list[str] = []
    for source in workflow.sources:
        bands.extend(band for band in source.bands if band not in bands)
    return build_cube(
        scenes,
        grid_from_region(workflow.region),
        folder / "cube.zarr",
        client,
        chunk_size=workflow.cube.chunk_size,
        attrs={"workflow": workflow.name, "region": workflow.region.name},
        slots=cube_slots(workflow),
        bands=bands or None,
    )


def cube_slots(workflow: WorkflowConfig) -> list[TimeSlot] | None:
    """Return the daily slots a workflow asks for, or None for one per scene.

    Raises
    ------
    ConfigError
        Sources disagree on ``options.time_axis`` or ``window_days``, or a
        value is not understood.
    """
    axes = {str(s.options.get("time_axis", "scene")) for s in workflow.sources}
    windows = {
        int(s.options["window_days"])
        for s in workflow.sources
        if s.options.get("window_days") is not None
    }
    if len(axes) > 1 or len(windows) > 1:
        raise ConfigError(
            "sources disagree on options.time_axis or options.window_days "
            f"({sorted(axes)}, {sorted(windows)}): one cube has one time axis"
        )
    axis = axes.pop()
    if axis == "scene":
        return None
    if axis != "daily":
        raise ConfigError(
            f"options.time_axis {axis!r} is not understood; use 'scene' or 'daily'"
        )
    start, end = workflow.time.start, workflow.time.end
    if windows:
        days = windows.pop()
        if days < 1:
            raise ConfigError(f"options.window_days must be >= 1, not {days}")
        start = max(start, end - dt.timedelta(days=days - 1))
    return daily_slots(start, end)


def ledger_checksums(path: Path, items: Sequence[AcquiredItem]) -> dict[str, str]:
    """Return local path to SHA-256 for the items' files the ledger verified."""
    if not path.exists():
        return {}
    from burnscape.acquire import Ledger

    found = {}
    with Ledger(path) as ledger:
        for item in items:
            for local in item.assets.values():
                record = ledger.find_file(local)
                if record is not None and record.state == "verified" and record.sha256:
                    found[str(local)] = record.sha256
    return found
