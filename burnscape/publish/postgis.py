"""Publish stage: serve the events store from PostGIS with pygeoapi's SQL provider.

``PostGISProvider`` is pygeoapi's PostgreSQL provider (SQLAlchemy, PostGIS
``ST_Intersects`` for bbox, CQL2 through pygeofilter) with burnscape's
datetime semantics: an instant or interval, open ends allowed, matched
against one time field or a start/end pair (a record matches when its
interval overlaps the requested one; a bare date stands for its whole day).
It connects with psycopg 3 in UTC.

``postgis_resources`` turns the feature collections of a configuration into
PostGIS ones when the workflow's ``outputs.events_store`` is a database URL.

Configuration (one entry of a collection's ``providers`` list)::

    - type: feature
      name: burnscape.publish.postgis.PostGISProvider
      data:
        host: 127.0.0.1
        port: 5432
        dbname: burnscape
        user: burnscape
        password: ${PGPASSWORD:-}
      table: fire_events
      id_field: event_id
      geom_field: geometry
      time_field: first_burn_date
      end_time_field: last_burn_date
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy
from pygeoapi.provider.base import ProviderInvalidQueryError
from pygeoapi.provider.sql import GenericSQLProvider, PostgreSQLProvider
from sqlalchemy import Date, DateTime, String, Text, cast, func, literal

from burnscape.errors import PublishError
from burnscape.publish._time import TimeInterval, parse_datetime_parameter

__all__ = ["PostGISProvider", "connection_parameters", "postgis_resources"]

logger = logging.getLogger(__name__)

_DRIVER = "postgresql+psycopg"
_GPKG_PROVIDER = "burnscape.publish.geopackage.GeoPackageProvider"
_DATE_ONLY: dict[tuple[str, str, str], bool] = {}


class PostGISProvider(PostgreSQLProvider):
    """pygeoapi's PostgreSQL provider with burnscape's datetime filter."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        self.end_time_field: str | None = provider_def.get("end_time_field")
        GenericSQLProvider.__init__(
            self,
            provider_def,
            _DRIVER,
            {"application_name": "burnscape", "options": "-c timezone=UTC"},
        )

    def _get_datetime_filter(self, datetime_: str | None) -> Any:
        if datetime_ in (None, ""):
            return True
        if self.time_field is None:
            raise ProviderInvalidQueryError(
                user_msg=f"collection {self.name!r} has no time field to filter on"
            )
        try:
            interval = parse_datetime_parameter(datetime_)
        except ValueError as err:
            raise ProviderInvalidQueryError(user_msg=str(err)) from err
        assert interval is not None
        start = getattr(self.table_model, self.time_field)
        end = getattr(self.table_model, self.end_time_field or self.time_field)
        if self._holds_dates_only(start) and self._holds_dates_only(end):
            return _date_text_overlap(start, end, interval)
        return _overlap(start, end, interval)

    def _holds_dates_only(self, column: Any) -> bool:
        """Tell whether a text column holds only ISO dates (YYYY-MM-DD).

        Such columns (the events stage's date columns) compare as text, which
        keeps their B-tree index usable. Checked once per process and column.
        """
        if not isinstance(column.type, String | Text):
            return False
        key = (str(self._engine.url), self.table, column.key)
        if key not in _DATE_ONLY:
            query = sqlalchemy.select(
                sqlalchemy.exists().where(
                    sqlalchemy.or_(
                        func.length(column) != 10,
                        sqlalchemy.not_(column.op("~")(r"^\d{4}-\d{2}-\d{2}$")),
                    )
                )
            )
            with self._engine.connect() as connection:
                _DATE_ONLY[key] = not connection.execute(query).scalar()
        return _DATE_ONLY[key]


def connection_parameters(url: str) -> dict[str, Any]:
    """Split a ``postgresql://user:password@host:port/database`` URL for pygeoapi.

    The password is not returned: the configuration refers to
    ``${PGPASSWORD}``, which this function sets from the URL when the
    environment does not already hold it.

    Raises
    ------
    PublishError
        The URL is not a PostgreSQL URL with a host and a database.
    """
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise PublishError(f"events store {url!r} is not a postgresql:// URL")
    database = parts.path.lstrip("/")
    if not parts.hostname or not database:
        raise PublishError(
            "events store URL needs a host and a database: "
            "postgresql://user:password@host:port/database"
        )
    if parts.password and "PGPASSWORD" not in os.environ:
        os.environ["PGPASSWORD"] = unquote(parts.password)
    return {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "dbname": database,
        "user": unquote(parts.username or "postgres"),
        "password": "${PGPASSWORD:-}",
    }


def postgis_resources(resources: dict[str, Any], url: str) -> dict[str, Any]:
    """Return ``resources`` with every GeoPackage collection served from PostGIS."""
    data = connection_parameters(url)
    converted: dict[str, Any] = {}
    for name, resource in resources.items():
        providers = resource.get("providers") or []
        if not providers or providers[0].get("name") != _GPKG_PROVIDER:
            converted[name] = resource
            continue
        gpkg = providers[0]
        provider = {
            "type": "feature",
            "name": "burnscape.publish.postgis.PostGISProvider",
            "data": dict(data),
            "table": gpkg["table"],
            "id_field": gpkg.get("id_field", "fid"),
            "geom_field": "geometry",
        }
        for key in ("time_field", "end_time_field", "title_field"):
            if gpkg.get(key):
                provider[key] = gpkg[key]
        converted[name] = {**resource, "providers": [provider, *providers[1:]]}
    return converted


def describe_table(provider: dict[str, Any]) -> dict[str, Any] | None:
    """Return bbox and time range of a PostGIS table, or None if it is absent."""
    data = provider["data"]
    password = os.environ.get("PGPASSWORD") or None
    engine = sqlalchemy.create_engine(
        sqlalchemy.URL.create(
            _DRIVER,
            username=data.get("user"),
            password=password,
            host=data["host"],
            port=int(data.get("port", 5432)),
            database=data["dbname"],
        ),
        connect_args={"options": "-c timezone=UTC"},
    )
    table = sqlalchemy.table(provider["table"])
    geometry: Any = sqlalchemy.column(provider.get("geom_field", "geometry"))
    try:
        with engine.connect() as connection:
            if not sqlalchemy.inspect(connection).has_table(provider["table"]):
                return None
            extent = connection.execute(
                sqlalchemy.select(
                    func.ST_XMin(func.ST_Extent(geometry)),
                    func.ST_YMin(func.ST_Extent(geometry)),
                    func.ST_XMax(func.ST_Extent(geometry)),
                    func.ST_YMax(func.ST_Extent(geometry)),
                ).select_from(table)
            ).one()
            times = (None, None)
            if provider.get("time_field"):
                start: Any = sqlalchemy.column(provider["time_field"])
                end: Any = sqlalchemy.column(
                    provider.get("end_time_field") or provider["time_field"]
                )
                times = tuple(
                    connection.execute(
                        sqlalchemy.select(func.min(start), func.max(end)).select_from(
                            table
                        )
                    ).one()
                )
    finally:
        engine.dispose()
    bbox = None if extent[0] is None else [float(value) for value in extent]
    return {"bbox": bbox, "begin": times[0], "end": times[1]}


def _overlap(start: Any, end: Any, interval: TimeInterval) -> Any:
    conditions = []
    if interval.end is not None:
        conditions.append(_as_start(start) <= literal(interval.end))
    if interval.start is not None:
        conditions.append(_as_end(end) >= literal(interval.start))
    return sqlalchemy.and_(*conditions)


def _date_text_overlap(start: Any, end: Any, interval: TimeInterval) -> Any:
    conditions = []
    if interval.end is not None:
        conditions.append(start <= interval.end.date().isoformat())
    if interval.start is not None:
        conditions.append(end >= interval.start.date().isoformat())
    return sqlalchemy.and_(*conditions)


def _as_start(column: Any) -> Any:
    if isinstance(column.type, DateTime):
        return column
    return cast(column, DateTime(timezone=True))


def _as_end(column: Any) -> Any:
    day_end = sqlalchemy.literal_column(
        "(interval '1 day' - interval '1 millisecond')", type_=sqlalchemy.Interval
    )
    if isinstance(column.type, DateTime):
        return column
    if isinstance(column.type, Date):
        return cast(column, DateTime(timezone=True)) + day_end
    if isinstance(column.type, String | Text):
        return sqlalchemy.case(
            (
                func.length(column) == 10,
                cast(column, DateTime(timezone=True)) + day_end,
            ),
            else_=cast(column, DateTime(timezone=True)),
        )
    return cast(column, DateTime(timezone=True))
