"""Events stage: the events store, a GeoPackage file or a PostGIS database.

Both stores hold the same layers (``fire_events``, ``daily_progression``,
``burned_pixels``, ``active_fires``) in EPSG:4326, each with a ``run_id``
column, a spatial index and an index on its date column. Writes replace the
rows of one run: re-running a day replaces that run's results and never
duplicates them. A run also supersedes the rows that earlier runs wrote for the
fires it continues (the event ids it inherited or absorbed): each layer holds
one current version of a fire, the latest run's, so an event id names one
feature and its GeoTIFF (rewritten under the same name) matches it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

import geopandas as gpd
import pandas as pd
import pyogrio

from burnscape.errors import StoreError

logger = logging.getLogger(__name__)

__all__ = ["DATE_COLUMNS", "LAYERS", "EventStore", "GeoPackageStore", "open_store"]

LAYERS = ("fire_events", "daily_progression", "burned_pixels", "active_fires")
"""Layers of the events store."""

DATE_COLUMNS = {
    "fire_events": "first_burn_date",
    "daily_progression": "date",
    "burned_pixels": "burn_date",
    "active_fires": "acq_date",
}
"""The date column each layer is indexed on."""


class EventStore(Protocol):
    """Where fire events go: replace one run's rows of a layer, read a layer."""

    location: str

    def replace_run(
        self,
        layer: str,
        run_id: str,
        frame: gpd.GeoDataFrame,
        superseded: Collection[str] = (),
    ) -> None:
        """Replace the rows of ``run_id`` in ``layer`` by ``frame``.

        Rows of other runs whose ``event_id`` is in ``superseded`` are removed
        in the same write.
        """

    def read(self, layer: str, run_id: str | None = None) -> gpd.GeoDataFrame:
        """Return a layer, optionally only one run's rows."""


class GeoPackageStore:
    """An events store in a GeoPackage file (embedded, nothing to start).

    Parameters
    ----------
    path
        The ``.gpkg`` file; created on first write.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path)

    def replace_run(
        self,
        layer: str,
        run_id: str,
        frame: gpd.GeoDataFrame,
        superseded: Collection[str] = (),
    ) -> None:
        """Replace the rows of ``run_id`` in ``layer`` by ``frame``.

        The layer is rewritten whole (the other runs' rows kept, in their order,
        less those of ``superseded`` events), so that GDAL maintains the R-tree
        spatial index; then the date and run indexes are (re)created.
        """
        kept = self._other_runs(layer, run_id)
        if kept is not None and superseded and "event_id" in kept.columns:
            kept = kept[~kept["event_id"].isin(list(superseded))]
        merged = frame if kept is None else _concat(kept, frame)
        if merged.empty and kept is None:
            merged = frame
        try:
            pyogrio.write_dataframe(
                merged,
                self.path,
                layer=layer,
                driver="GPKG",
                promote_to_multi=False,
                layer_options={"SPATIAL_INDEX": "YES"},
            )
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as err:
            raise StoreError(
                f"cannot write layer {layer!r} to {self.path}: {err}"
            ) from err
        self._index(layer, list(frame.columns))
        logger.info(
            "Wrote %d rows of run %s to %s layer %s.",
            len(frame),
            run_id,
            self.path,
            layer,
        )

    def read(self, layer: str, run_id: str | None = None) -> gpd.GeoDataFrame:
        """Return a layer (EPSG:4326), optionally only the rows of ``run_id``."""
        if not self.path.exists() or layer not in self._layers():
            raise StoreError(
                f"{self.path} has no layer {layer!r}; run `burnscape events`"
            )
        where = None if run_id is None else f"run_id = '{_quote(run_id)}'"
        return pyogrio.read_dataframe(self.path, layer=layer, where=where)

    def _layers(self) -> list[str]:
        return [str(name) for name in pyogrio.list_layers(self.path)[:, 0]]

    def _other_runs(self, layer: str, run_id: str) -> gpd.GeoDataFrame | None:
        if not self.path.exists() or layer not in self._layers():
            return None
        return pyogrio.read_dataframe(
            self.path, layer=layer, where=f"run_id <> '{_quote(run_id)}'"
        )

    def _index(self, layer: str, columns: list[str]) -> None:
        wanted = [
            c for c in ("run_id", DATE_COLUMNS.get(layer), "event_id") if c in columns
        ]
        with sqlite3.connect(self.path) as connection:
            for column in wanted:
                connection.execute(
                    f'CREATE INDEX IF NOT EXISTS "idx_{layer}_{column}" '
                    f'ON "{layer}" ("{column}")'
                )
        connection.close()


def open_store(store: str | Path) -> EventStore:
    """Open an events store from a path (GeoPackage) or a ``postgresql://`` URL.

    Parameters
    ----------
    store
        A ``.gpkg`` path, or a PostgreSQL connection URL
        (``postgresql://user:password@host:port/database``) of a database with
        the PostGIS extension.

    Returns
    -------
    EventStore
        The store.
    """
    text = str(store)
    if text.startswith(("postgresql://", "postgresql+", "postgres://")):
        from burnscape.events.postgis import PostGISStore

        return PostGISStore(text)
    if "://" in text:
        raise StoreError(
            f"unknown events store {text!r}: give a GeoPackage path (.gpkg) or a "
            "postgresql://user:password@host:port/database URL"
        )
    return GeoPackageStore(Path(text))


def _concat(kept: gpd.GeoDataFrame, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if frame.empty:
        return kept
    if kept.empty:
        return frame
    merged = pd.concat([kept, frame.to_crs(kept.crs)], ignore_index=True)
    return gpd.GeoDataFrame(merged, geometry=frame.geometry.name, crs=frame.crs)


def _quote(value: str) -> str:
    return value.replace("'", "''")
