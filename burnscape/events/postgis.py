"""Events stage: the events store in a PostGIS database, reached by URL.

Same layers and columns as the GeoPackage store, one table per layer, each with
a ``fid`` serial key (insertion order), a GiST index on its geometry and B-tree
indexes on ``run_id``, ``event_id`` and its date column. A run's rows are
replaced in one transaction: delete the run's rows and the superseded rows of
other runs, append the new ones.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import geopandas as gpd
import sqlalchemy
from sqlalchemy.exc import SQLAlchemyError

from burnscape.errors import StoreError
from burnscape.events.store import DATE_COLUMNS

logger = logging.getLogger(__name__)

__all__ = ["PostGISStore"]


class PostGISStore:
    """An events store in PostgreSQL with PostGIS.

    Parameters
    ----------
    url
        ``postgresql://user:password@host:port/database``; the database needs
        the ``postgis`` extension (created here when the user may).
    """

    def __init__(self, url: str) -> None:
        self.location = url
        self._engine = sqlalchemy.create_engine(_driver_url(url), future=True)

    def replace_run(
        self,
        layer: str,
        run_id: str,
        frame: gpd.GeoDataFrame,
        superseded: Collection[str] = (),
    ) -> None:
        """Replace the rows of ``run_id`` in ``layer`` by ``frame``, atomically.

        Rows of other runs whose ``event_id`` is in ``superseded`` go too.
        """
        try:
            with self._engine.begin() as connection:
                exists = self._exists(connection, layer)
                if not exists:
                    _ensure_postgis(connection)
                else:
                    connection.execute(
                        sqlalchemy.text(
                            f'DELETE FROM "{layer}" WHERE run_id = :run_id'
                        ),
                        {"run_id": run_id},
                    )
                    if superseded and "event_id" in frame.columns:
                        connection.execute(
                            sqlalchemy.text(
                                f'DELETE FROM "{layer}" WHERE run_id <> :run_id '
                                "AND event_id = ANY(:ids)"
                            ),
                            {"run_id": run_id, "ids": sorted(superseded)},
                        )
                if not frame.empty or not exists:
                    frame.to_postgis(layer, connection, if_exists="append", index=False)
                if not exists:
                    _add_keys(connection, layer, frame, DATE_COLUMNS.get(layer))
        except SQLAlchemyError as err:
            raise StoreError(f"cannot write layer {layer!r} to PostGIS: {err}") from err
        logger.info(
            "Wrote %d rows of run %s to PostGIS table %s.", len(frame), run_id, layer
        )

    def read(self, layer: str, run_id: str | None = None) -> gpd.GeoDataFrame:
        """Return a table (EPSG:4326) in insertion order, optionally one run's rows."""
        where = "" if run_id is None else " WHERE run_id = %(run_id)s"
        try:
            with self._engine.connect() as connection:
                if not self._exists(connection, layer):
                    raise StoreError(
                        f"PostGIS has no table {layer!r}; run `burnscape events`"
                    )
                frame = gpd.read_postgis(
                    f'SELECT * FROM "{layer}"{where} ORDER BY fid',
                    connection.connection.driver_connection,
                    geom_col="geometry",
                    params={"run_id": run_id},
                )
        except SQLAlchemyError as err:
            raise StoreError(
                f"cannot read table {layer!r} from PostGIS: {err}"
            ) from err
        return frame.drop(columns="fid")

    def _exists(self, connection: Any, layer: str) -> bool:
        return bool(sqlalchemy.inspect(connection).has_table(layer))


def _driver_url(url: str) -> str:
    """Use psycopg (version 3) unless the URL names a driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _ensure_postgis(connection: Any) -> None:
    installed = connection.execute(
        sqlalchemy.text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
    ).first()
    if installed is None:
        connection.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS postgis"))


def _add_keys(
    connection: Any, layer: str, frame: gpd.GeoDataFrame, date_column: str | None
) -> None:
    """Add the serial key and the spatial, run, id and date indexes to a new table."""
    table = f'"{layer}"'
    statements = [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS fid BIGSERIAL PRIMARY KEY",
        f'CREATE INDEX IF NOT EXISTS "idx_{layer}_geometry" ON {table} '
        "USING GIST (geometry)",
    ]
    for column in ("run_id", "event_id", date_column):
        if column is not None and column in frame.columns:
            statements.append(
                f'CREATE INDEX IF NOT EXISTS "idx_{layer}_{column}" '
                f'ON {table} ("{column}")'
            )
    for statement in statements:
        connection.execute(sqlalchemy.text(statement))
