import sqlite3
import struct

import pytest
import shapely
from pygeoapi.provider.base import (
    ProviderConnectionError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)

from burnscape.errors import StoreError
from burnscape.publish._gpkg import decode_geometry, geometry_envelope
from burnscape.publish.geopackage import GeoPackageProvider

from .conftest import write_gpkg


@pytest.fixture(scope="module")
def gpkg(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpkg") / "burnscape.gpkg"
    layers = write_gpkg(path)
    return path, layers


def provider(path, table="fire_events", **extra):
    definition = {"name": "test", "type": "feature", "data": str(path), "table": table}
    if table == "fire_events":
        definition.update(
            id_field="event_id",
            time_field="first_burn_date",
            end_time_field="last_burn_date",
        )
    definition.update(extra)
    return GeoPackageProvider(definition)


def ids(result):
    return [feature["id"] for feature in result["features"]]


def test_query_returns_all_features_with_properties(gpkg):
    path, layers = gpkg
    result = provider(path).query(limit=10)
    assert result["numberMatched"] == 3
    assert ids(result) == ["20180609-A", "20180620-B", "20180701-C"]
    first = result["features"][0]
    assert first["properties"]["area_ha"] == 13.5
    assert first["geometry"]["type"] == "MultiPolygon"
    expected = layers["fire_events"].geometry.iloc[0]
    assert shapely.geometry.shape(first["geometry"]).equals_exact(expected, 1e-9)


def test_query_limit_offset_pages_through_features(gpkg):
    path, _ = gpkg
    p = provider(path)
    assert ids(p.query(limit=2, offset=0)) == ["20180609-A", "20180620-B"]
    page = p.query(limit=2, offset=2)
    assert ids(page) == ["20180701-C"]
    assert page["numberMatched"] == 3


def test_query_bbox_is_exact_for_polygons(gpkg):
    path, layers = gpkg
    event_a, triangle = layers["fire_events"].geometry.iloc[[0, 2]]
    p = provider(path)
    assert ids(p.query(bbox=list(event_a.bounds))) == ["20180609-A"]
    # the upper-right corner of the triangle's envelope lies outside the triangle
    minx, miny, maxx, maxy = triangle.bounds
    corner = shapely.box(
        maxx - (maxx - minx) * 0.2, maxy - (maxy - miny) * 0.2, maxx, maxy
    )
    assert not corner.intersects(triangle)
    assert p.query(bbox=list(corner.bounds))["numberMatched"] == 0
    assert ids(p.query(bbox=[minx, miny, maxx, maxy])) == ["20180701-C"]
    assert p.query(bbox=[0, 0, 1, 1])["numberMatched"] == 0


def test_query_bbox_counts_pixels_exactly(gpkg):
    path, layers = gpkg
    pixels = layers["burned_pixels"]
    box = shapely.box(*pixels.geometry.iloc[20].buffer(0.0004).bounds)
    expected = int(pixels.geometry.intersects(box).sum())
    result = provider(path, "burned_pixels").query(bbox=list(box.bounds), limit=1000)
    assert result["numberMatched"] == expected == len(result["features"])


@pytest.mark.parametrize(
    ("datetime_", "expected"),
    [
        ("2018-06-12", ["20180609-A"]),
        ("2018-06-13", []),
        ("2018-06-11/2018-06-20", ["20180609-A", "20180620-B"]),
        ("2018-06-10/2018-06-30", ["20180609-A", "20180620-B"]),
        ("2018-07-03T23:59:59.999Z/..", ["20180701-C"]),
        ("2018-07-04T00:00:00Z/..", []),
        ("2018-06-21/..", ["20180701-C"]),
        ("../2018-06-09T00:00:00Z", ["20180609-A"]),
        ("2018-06-12T23:00:00Z/2018-06-19T23:59:59Z", ["20180609-A"]),
    ],
)
def test_query_datetime_matches_overlapping_intervals(gpkg, datetime_, expected):
    path, _ = gpkg
    assert ids(provider(path).query(datetime_=datetime_)) == expected


def test_query_datetime_on_datetime_column(gpkg):
    path, _ = gpkg
    p = provider(path, "active_fires", time_field="acq_date")
    assert p.layer.columns["acq_date"] == "DATETIME"
    assert p.query(datetime_="2018-06-10/2018-06-30")["numberMatched"] == 2
    assert p.query(datetime_="2018-06-09")["numberMatched"] == 1
    assert p.query(datetime_="2018-06-09T10:42:00Z")["numberMatched"] == 1
    assert (
        p.query(datetime_="2018-06-09T11:00:00Z/2018-06-10T21:00:00Z")["numberMatched"]
        == 0
    )
    assert p.query(datetime_="2018-06-10T21:00:00Z/..")["numberMatched"] == 2


def test_query_datetime_without_time_field_is_invalid(gpkg):
    path, _ = gpkg
    with pytest.raises(ProviderInvalidQueryError):
        provider(path, "burned_pixels").query(datetime_="2018-06-09")


def test_query_property_filter_and_sortby(gpkg):
    path, _ = gpkg
    p = provider(path)
    assert ids(p.query(properties=[("pixel_count", "50")])) == ["20180620-B"]
    assert ids(p.query(sortby=[{"property": "area_ha", "order": "+"}])) == [
        "20180701-C",
        "20180620-B",
        "20180609-A",
    ]
    with pytest.raises(ProviderInvalidQueryError, match="integer"):
        p.query(properties=[("pixel_count", "many")])


def test_query_hits_select_properties_and_skip_geometry(gpkg):
    path, _ = gpkg
    p = provider(path)
    hits = p.query(resulttype="hits")
    assert hits["numberMatched"] == 3 and hits["features"] == []
    result = p.query(select_properties=["area_ha"], skip_geometry=True, limit=1)
    assert result["features"][0]["properties"] == {"area_ha": 13.5}
    assert result["features"][0]["geometry"] is None


def test_get_by_id_and_missing_id(gpkg):
    path, _ = gpkg
    p = provider(path)
    assert p.get("20180620-B")["properties"]["pixel_count"] == 50
    with pytest.raises(ProviderItemNotFoundError):
        p.get("nope")
    pixels = provider(path, "burned_pixels")
    assert pixels.get("1")["id"] == 1
    with pytest.raises(ProviderItemNotFoundError):
        pixels.get("x")


def test_fields_map_sql_types_to_json_schema(gpkg):
    path, _ = gpkg
    fields = provider(path).get_fields()
    assert fields["event_id"] == {"type": "string"}
    assert fields["pixel_count"] == {"type": "integer"}
    assert fields["area_ha"] == {"type": "number"}
    fires = provider(path, "active_fires", time_field="acq_date").get_fields()
    assert fires["acq_date"] == {"type": "string", "format": "date-time"}


def test_missing_table_or_field_fails_at_construction(gpkg, tmp_path):
    path, _ = gpkg
    with pytest.raises(ProviderConnectionError):
        provider(path, "nope")
    with pytest.raises(ProviderConnectionError):
        provider(path, "burned_pixels", time_field="not_a_column")
    with pytest.raises(ProviderConnectionError):
        provider(tmp_path / "absent.gpkg")


def test_bbox_without_rtree_uses_envelope_function(gpkg, tmp_path):
    path, layers = gpkg
    copy = tmp_path / "nortree.gpkg"
    copy.write_bytes(path.read_bytes())
    with sqlite3.connect(copy) as conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master "
            "WHERE type='trigger' AND name LIKE 'rtree_%'"
        ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DROP TABLE rtree_fire_events_geom")
    p = provider(copy)
    assert p.layer.rtree is None
    minx, miny, maxx, maxy = layers["fire_events"].geometry.iloc[1].bounds
    assert ids(p.query(bbox=[minx, miny, maxx, maxy])) == ["20180620-B"]


def test_decode_geometry_reads_header_and_envelope():
    point = shapely.Point(1.5, 2.5)
    wkb = shapely.to_wkb(point)
    # flags: little endian, envelope code 1 (minx, maxx, miny, maxy)
    header = b"GP" + bytes([0, 0b0000_0011]) + struct.pack("<i", 4326)
    blob = header + struct.pack("<4d", 1.0, 2.0, 2.0, 3.0) + wkb
    assert decode_geometry(blob).equals(point)
    assert geometry_envelope(blob) == (1.0, 2.0, 2.0, 3.0)
    bare = b"GP" + bytes([0, 0b0000_0001]) + struct.pack("<i", 4326) + wkb
    assert geometry_envelope(bare) == (1.5, 2.5, 1.5, 2.5)
    with pytest.raises(StoreError, match="GP"):
        decode_geometry(b"XX" + bytes(20))
