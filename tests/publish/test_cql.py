import pytest
from pygeoapi.provider.base import ProviderInvalidQueryError
from pygeofilter.parsers.cql2_json import parse as parse_json
from pygeofilter.parsers.ecql import parse as parse_text

from burnscape.publish.geopackage import GeoPackageProvider

from .conftest import write_gpkg


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("cql") / "burnscape.gpkg"
    layers = write_gpkg(path)
    provider = GeoPackageProvider(
        {
            "name": "test",
            "type": "feature",
            "data": str(path),
            "table": "fire_events",
            "id_field": "event_id",
        }
    )
    return provider, layers


def ids(provider, text):
    return [
        f["id"] for f in provider.query(filterq=parse_text(text), limit=100)["features"]
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("area_ha > 4", ["20180609-A", "20180620-B"]),
        ("area_ha >= 4.5 AND pixel_count < 100", ["20180620-B"]),
        ("NOT area_ha > 4", ["20180701-C"]),
        ("pixel_count BETWEEN 10 AND 50", ["20180620-B", "20180701-C"]),
        ("event_id LIKE '2018062%'", ["20180620-B"]),
        ("event_id IN ('20180609-A', 'x')", ["20180609-A"]),
        (
            "first_burn_date >= '2018-06-20' OR duration_days = 4",
            ["20180609-A", "20180620-B", "20180701-C"],
        ),
        ("detector IS NULL", []),
        ("4 < area_ha", ["20180609-A", "20180620-B"]),
    ],
)
def test_cql_text_filters(events, text, expected):
    provider, _ = events
    assert ids(provider, text) == expected


def test_cql_spatial_filters(events):
    provider, layers = events
    minx, miny, maxx, maxy = layers["fire_events"].geometry.iloc[1].bounds
    assert ids(provider, f"BBOX(geometry, {minx}, {miny}, {maxx}, {maxy})") == [
        "20180620-B"
    ]
    point = layers["fire_events"].geometry.iloc[0].representative_point()
    assert ids(provider, f"INTERSECTS(geometry, POINT({point.x} {point.y}))") == [
        "20180609-A"
    ]


def test_cql_json_filter(events):
    provider, _ = events
    node = parse_json({"op": "=", "args": [{"property": "event_id"}, "20180701-C"]})
    assert [f["id"] for f in provider.query(filterq=node)["features"]] == ["20180701-C"]


def test_cql_temporal_filter(tmp_path):
    path = tmp_path / "burnscape.gpkg"
    write_gpkg(path)
    fires = GeoPackageProvider(
        {
            "name": "t",
            "type": "feature",
            "data": str(path),
            "table": "active_fires",
            "time_field": "acq_date",
        }
    )
    after = fires.query(filterq=parse_text("acq_date AFTER 2018-06-10T00:00:00Z"))
    assert after["numberMatched"] == 2


@pytest.mark.parametrize(
    "text",
    ["nope = 1", "area_ha = area_ha", "WITHIN(area_ha, POINT(0 0))"],
)
def test_cql_invalid_filters_are_query_errors(events, text):
    provider, _ = events
    with pytest.raises(ProviderInvalidQueryError):
        provider.query(filterq=parse_text(text))


def test_cql_value_cannot_inject_sql(events):
    provider, _ = events
    node = parse_json({"op": "=", "args": [{"property": "event_id"}, "x' OR 1=1 --"]})
    assert provider.query(filterq=node)["numberMatched"] == 0
