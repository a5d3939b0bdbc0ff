"""Publish stage: OGC API Processes jobs stored in PostgreSQL, run on Dask.

The same behaviour as :class:`burnscape.publish.jobs.TinyDBJobManager` with
pygeoapi's PostgreSQL job table (needs SQLAlchemy, GeoAlchemy2 and psycopg2)::

    manager:
      name: burnscape.publish.pgjobs.PostgreSQLJobManager
      connection: postgresql://user:${PGPASSWORD}@host:5432/burnscape
      output_dir: /path/to/outputs/jobs/
"""

from __future__ import annotations

from typing import Any

from pygeoapi.process.manager.postgresql import PostgreSQLManager

from burnscape.publish.jobs import DaskJobs

__all__ = ["PostgreSQLJobManager"]


class PostgreSQLJobManager(DaskJobs, PostgreSQLManager):
    """Jobs in PostgreSQL (pygeoapi's jobs table), run on Dask."""

    _store_class = "PostgreSQL"

    def __init__(self, manager_def: dict[str, Any]) -> None:
        PostgreSQLManager.__init__(self, manager_def)
        self._setup(manager_def)
