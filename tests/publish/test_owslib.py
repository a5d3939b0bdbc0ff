import io

import owslib.ogcapi
import pytest
import rasterio
from owslib.ogcapi.coverages import Coverages
from owslib.ogcapi.features import Features

from .conftest import COLS, ORIGIN_X, ROWS


@pytest.fixture(scope="module")
def features(live_server):
    return Features(live_server.url, timeout=60)


@pytest.fixture(scope="module")
def coverages(live_server):
    return Coverages(live_server.url, timeout=60)


def test_owslib_lists_feature_collections(features):
    assert {"fire-events", "burned-pixels", "daily-progression", "active-fires"} <= set(
        features.feature_collections()
    )
    assert features.conformance()["conformsTo"]


def test_owslib_items_with_bbox_datetime_sortby(features):
    everything = features.collection_items("fire-events", limit=10)
    assert everything["numberMatched"] == 3
    minx, miny, maxx, maxy = (
        min(c[0] for f in everything["features"] for c in _ring(f)),
        min(c[1] for f in everything["features"] for c in _ring(f)),
        max(c[0] for f in everything["features"] for c in _ring(f)),
        max(c[1] for f in everything["features"] for c in _ring(f)),
    )
    hits = features.collection_items(
        "fire-events",
        bbox=[minx, miny, maxx, maxy],
        datetime_="2018-06-10/2018-06-30",
        sortby=("area_ha", "desc"),
    )
    assert [f["id"] for f in hits["features"]] == ["20180609-A", "20180620-B"]


def test_owslib_cql_text_and_json(features):
    text = features.collection_items("fire-events", filter="pixel_count > 20")
    assert [f["id"] for f in text["features"]] == ["20180609-A", "20180620-B"]
    cql = {"op": "=", "args": [{"property": "event_id"}, "20180701-C"]}
    posted = features.collection_items("fire-events", cql=cql)
    assert [f["id"] for f in posted["features"]] == ["20180701-C"]


def test_owslib_item_and_queryables(features):
    item = features.collection_item("fire-events", "20180620-B")
    assert item["properties"]["pixel_count"] == 50
    queryables = features.collection_queryables("fire-events")
    assert queryables["properties"]["area_ha"]["type"] == "number"


def test_owslib_coverage_json_and_geotiff(coverages, monkeypatch):
    assert {"burned-area", "reflectance"} <= set(coverages.coverages())
    covjson = coverages.coverage("burned-area", properties=["burn_date"])
    import json

    body = json.load(covjson)
    assert body["domain"]["axes"]["x"]["num"] == COLS
    # OWSLib updates its module-wide default headers in place: give it a copy
    monkeypatch.setattr(
        owslib.ogcapi, "REQUEST_HEADERS", dict(owslib.ogcapi.REQUEST_HEADERS)
    )
    geotiff = Coverages(coverages.url, timeout=60, headers={"Accept": "image/tiff"})
    subset = geotiff.coverage(
        "burned-area",
        properties=["confidence"],
        subset={"x": [ORIGIN_X, ORIGIN_X + 300]},
    )
    with rasterio.MemoryFile(subset.read()) as memory, memory.open() as tif:
        assert (tif.width, tif.height) == (10, ROWS)
        assert tif.crs.to_epsg() == 32610


def test_owslib_daily_coverage_instant(coverages):
    import json

    body = json.load(
        io.BytesIO(
            coverages.coverage(
                "reflectance", properties=["nir"], datetime="2024-07-02"
            ).read()
        )
    )
    assert body["domain"]["axes"]["t"]["values"] == ["2024-07-02T00:00:00Z"]


def _ring(feature):
    return feature["geometry"]["coordinates"][0][0]
