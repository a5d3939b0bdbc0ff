import pytest
import requests
import yaml

from burnscape.errors import PublishError
from burnscape.publish.postgis import PostGISProvider, connection_parameters
from burnscape.publish.server import CONFIG_NAME

from .conftest import load_layers_into_postgis, serve_in_thread, write_gpkg

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def postgis_events(postgis_db, tmp_path_factory):
    layers = write_gpkg(tmp_path_factory.mktemp("pg") / "source.gpkg")
    load_layers_into_postgis(postgis_db, layers)
    return postgis_db, layers


def provider(url, table="fire_events", **extra):
    definition = {
        "name": "test",
        "type": "feature",
        "data": connection_parameters(url),
        "table": table,
        "id_field": "event_id",
        "geom_field": "geometry",
        "time_field": "first_burn_date",
        "end_time_field": "last_burn_date",
    }
    definition.update(extra)
    definition["data"]["password"] = None
    return PostGISProvider(definition)


def ids(result):
    return sorted(feature["id"] for feature in result["features"])


@pytest.mark.parametrize(
    ("datetime_", "expected"),
    [
        ("2018-06-12", ["20180609-A"]),
        ("2018-06-13", []),
        ("2018-06-10/2018-06-30", ["20180609-A", "20180620-B"]),
        ("2018-06-21/..", ["20180701-C"]),
        ("../2018-06-09T00:00:00Z", ["20180609-A"]),
    ],
)
def test_postgis_provider_datetime_overlap(postgis_events, datetime_, expected):
    url, _ = postgis_events
    assert ids(provider(url).query(datetime_=datetime_, limit=10)) == expected


def test_postgis_provider_bbox_and_get(postgis_events):
    url, layers = postgis_events
    p = provider(url)
    minx, miny, maxx, maxy = layers["fire_events"].geometry.iloc[1].bounds
    assert ids(p.query(bbox=[minx, miny, maxx, maxy])) == ["20180620-B"]
    assert p.get("20180701-C")["properties"]["pixel_count"] == 10


def test_connection_parameters_keep_the_password_out_of_the_config(monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    data = connection_parameters("postgresql://me:s3cret@db.example:6543/events")
    assert data == {
        "host": "db.example",
        "port": 6543,
        "dbname": "events",
        "user": "me",
        "password": "${PGPASSWORD:-}",
    }
    import os

    assert os.environ["PGPASSWORD"] == "s3cret"
    with pytest.raises(PublishError, match="postgresql://"):
        connection_parameters("mysql://me@db/events")


def test_server_serves_postgis_collections(postgis_events, tmp_path):
    url, _ = postgis_events
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with serve_in_thread(outputs, events_store=url) as served:
        config = yaml.safe_load((outputs / CONFIG_NAME).read_text())
        provider_def = config["resources"]["fire-events"]["providers"][0]
        assert provider_def["name"] == "burnscape.publish.postgis.PostGISProvider"
        body = requests.get(
            f"{served.url}/collections/fire-events/items",
            params={"f": "json", "datetime": "2018-06-15/.."},
            timeout=60,
        ).json()
        assert sorted(f["id"] for f in body["features"]) == ["20180620-B", "20180701-C"]
        pixels = requests.get(
            f"{served.url}/collections/burned-pixels/items",
            params={"f": "json", "datetime": "2018-06-11", "limit": 200},
            timeout=60,
        ).json()
        assert pixels["numberMatched"] == 80
        bad = requests.get(
            f"{served.url}/collections/fire-events/items",
            params={"f": "json", "datetime": "2018-99-01"},
            timeout=60,
        )
        assert bad.status_code == 400


def test_postgis_provider_timestamp_and_mixed_text_columns(postgis_events):
    url, _ = postgis_events
    fires = provider(
        url, "active_fires", id_field="fid", time_field="acq_date", end_time_field=None
    )
    assert fires.query(datetime_="2018-06-10/2018-06-30")["numberMatched"] == 2
    assert fires.query(datetime_="2018-06-09")["numberMatched"] == 1

    import sqlalchemy

    engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "CREATE TABLE mixed (fid serial PRIMARY KEY, seen text, "
                "geometry geometry(Point, 4326))"
            )
        )
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO mixed (seen, geometry) VALUES "
                "('2018-06-09', ST_Point(0, 0, 4326)), "
                "('2018-06-10T22:30:00Z', ST_Point(1, 1, 4326))"
            )
        )
    engine.dispose()
    mixed = provider(
        url, "mixed", id_field="fid", time_field="seen", end_time_field=None
    )
    assert mixed.query(datetime_="2018-06-09T12:00:00Z")["numberMatched"] == 1
    assert mixed.query(datetime_="2018-06-10T23:00:00Z/..")["numberMatched"] == 0
    assert mixed.query(datetime_="2018-06-10")["numberMatched"] == 1
