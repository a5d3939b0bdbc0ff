"""Publish stage: OGC API Processes jobs stored in PostgreSQL, run on Dask.

The same behaviour as :class:`burnscape.publish.jobs.TinyDBJobManager` with
the job records in a PostgreSQL table (needs SQLAlchemy and psycopg 3)::

    manager:
      name: burnscape.publish.pgjobs.PostgreSQLJobManager
      connection: postgresql://user:${PGPASSWORD}@host:5432/burnscape
      output_dir: /path/to/outputs/jobs/

``connection`` may also be a mapping (``host``, ``port``, ``database``,
``user``, ``password`` and an optional ``search_path`` whose first schema
holds the table). The ``jobs`` table is created when it is missing; an
existing pygeoapi ``jobs`` table gains the ``burnscape_instance`` column.
Times are kept as the ISO 8601 text pygeoapi writes, so a record reads back
exactly as it was written, as with TinyDB.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from pygeoapi.process.base import JobNotFoundError, ProcessorGenericError
from pygeoapi.process.manager.base import BaseManager
from pygeoapi.process.manager.postgresql import PostgreSQLManager
from pygeoapi.provider.sql import get_table_model
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from burnscape.publish.jobs import DaskJobs

if TYPE_CHECKING:
    from pygeoapi.util import JobStatus
    from sqlalchemy.engine import Engine

__all__ = ["PostgreSQLJobManager", "PostgreSQLJobStore"]

TABLE = "jobs"
DRIVER = "postgresql+psycopg"

# one engine (and connection pool) per database for the whole process: the
# Dask driver task opens a store for every job it runs
_engines_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_tables: set[str] = set()

_COLUMNS = (
    ("identifier", "text PRIMARY KEY"),
    ("type", "text NOT NULL DEFAULT 'process'"),
    ("process_id", "text"),
    ("status", "text NOT NULL"),
    ("message", "text"),
    ("progress", "integer"),
    ("location", "text"),
    ("mimetype", "text"),
    ("created", "text"),
    ("started", "text"),
    ("updated", "text"),
    ("finished", "text"),
    ("burnscape_instance", "text"),
)


class PostgreSQLJobStore(PostgreSQLManager):
    """pygeoapi's PostgreSQL job store on psycopg 3, creating its table.

    Only stores records: the Dask driver task writes a job's progress through
    it. :class:`PostgreSQLJobManager` is the one the server uses.
    """

    def __init__(self, manager_def: dict[str, Any]) -> None:
        # PostgreSQLManager.__init__ would build a psycopg2 engine: set up the
        # same attributes here instead
        BaseManager.__init__(self, manager_def)
        self.is_async = True
        self.id_field = "identifier"
        self.supports_subscribing = False
        self.connection = manager_def["connection"]
        url, schema = _connection_url(self.connection)
        self.db_search_path = (schema,)
        self._engine = _engine(url)
        try:
            _create_table(self._engine, schema)
            self.table_model = get_table_model(
                TABLE, self.id_field, self.db_search_path, self._engine
            )
        except Exception as err:  # noqa: BLE001  (pygeoapi's error for any cause)
            where = url.render_as_string(hide_password=True)
            raise ProcessorGenericError(
                f"cannot open the jobs table {schema}.{TABLE} at {where}: {err}"
            ) from err
        self._table = self.table_model.__table__

    def get_jobs(
        self,
        status: JobStatus | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """Return jobs, newest first, and how many match ``status``."""
        query = select(self._table)
        count = select(func.count()).select_from(self._table)
        if status is not None:
            query = query.where(self._table.c.status == status.value)
            count = count.where(self._table.c.status == status.value)
        query = query.order_by(
            self._table.c.started.desc().nulls_last(), self._table.c.identifier
        )
        if offset:
            query = query.offset(int(offset))
        if limit:
            query = query.limit(int(limit))
        with self._engine.connect() as connection:
            jobs = [dict(row) for row in connection.execute(query).mappings()]
            matched = connection.execute(count).scalar_one()
        return {"jobs": jobs, "numberMatched": matched}

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Return one job's record.

        Raises
        ------
        JobNotFoundError
            No job has this identifier.
        """
        query = select(self._table).where(self._table.c.identifier == job_id)
        with self._engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        if row is None:
            raise JobNotFoundError()
        return dict(row)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}> {self.name}"


class PostgreSQLJobManager(DaskJobs, PostgreSQLJobStore):
    """Jobs in PostgreSQL, run on Dask."""

    _store_class = f"{__name__}.PostgreSQLJobStore"

    def __init__(self, manager_def: dict[str, Any]) -> None:
        PostgreSQLJobStore.__init__(self, manager_def)
        self._setup(manager_def)


def _connection_url(connection: str | dict[str, Any]) -> tuple[URL, str]:
    """Return the psycopg 3 URL and the schema of the jobs table."""
    try:
        if isinstance(connection, str):
            url = make_url(connection)
            schema = "public"
        else:
            url = URL.create(
                DRIVER,
                username=connection.get("user"),
                password=connection.get("password"),
                host=connection.get("host"),
                port=int(connection.get("port") or 5432),
                database=connection.get("database") or connection.get("dbname"),
            )
            schema = (list(connection.get("search_path") or []) or ["public"])[0]
    except (AttributeError, TypeError, ValueError, SQLAlchemyError) as err:
        raise ProcessorGenericError(
            f"the job manager's connection is not a PostgreSQL URL: {err}"
        ) from err
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ProcessorGenericError(
            "the job manager's connection is not a postgresql:// URL: "
            f"{url.render_as_string(hide_password=True)}"
        )
    return url.set(drivername=DRIVER), schema


def _engine(url: URL) -> Engine:
    key = url.render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(url, pool_pre_ping=True)
            _engines[key] = engine
    return engine


def _create_table(engine: Engine, schema: str) -> None:
    """Create the jobs table, or add the columns an existing one lacks."""
    key = f"{engine.url.render_as_string(hide_password=False)} {schema}"
    if key in _tables:
        return
    quote = engine.dialect.identifier_preparer.quote
    table = f"{quote(schema)}.{quote(TABLE)}"
    columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
    with engine.begin() as connection:
        # servers and Dask workers starting together: one creates, the others wait
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"burnscape.{schema}.{TABLE}"},
        )
        connection.execute(text(f"CREATE TABLE IF NOT EXISTS {table} ({columns})"))
        present = {
            column["name"] for column in inspect(connection).get_columns(TABLE, schema)
        }
        for name, kind in _COLUMNS:
            if name not in present:
                kind = kind.replace(" NOT NULL", "")
                connection.execute(
                    text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                )
    _tables.add(key)
