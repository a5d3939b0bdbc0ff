"""Acquire stage: what a source hands to the cube stage (verified local items)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AcquiredItem"]


@dataclass(frozen=True)
class AcquiredItem:
    """A scene whose selected assets are downloaded and verified.

    Attributes
    ----------
    id
        The item id (STAC item id, granule id).
    source
        The workflow source's name (``SourceConfig.name``).
    time_bounds
        Earliest and latest possible acquisition time, timezone-aware UTC. Equal
        when the exact time is known; the honest window otherwise.
    assets
        Asset key (e.g. ``"B4"``) to the verified local file.
    properties
        The item's STAC properties as served.
    asset_info
        Asset key to what a reader needs beyond the file: ``common_name``
        (``"red"``), ``scale``, ``offset``, ``nodata`` (from ``raster:bands``,
        else the workflow source), ``eo:bands``, ``type`` and ``href``.
    """

    id: str
    source: str
    time_bounds: tuple[dt.datetime, dt.datetime]
    assets: dict[str, Path]
    properties: dict[str, Any]
    asset_info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def band_paths(self) -> dict[str, Path]:
        """Return common band name (``"red"``) to local file, where known."""
        return {
            info["common_name"]: self.assets[key]
            for key, info in self.asset_info.items()
            if info.get("common_name") and key in self.assets
        }
