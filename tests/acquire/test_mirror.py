from __future__ import annotations

from pathlib import Path

import pytest
import requests

from burnscape.acquire import MirrorServer
from burnscape.config import SourceConfig, WorkflowConfig

COLLECTION = "chrome2-2018-landsat8-l1"


@pytest.fixture()
def mirror(shared_data: Path, chrome2: WorkflowConfig) -> MirrorServer:
    with MirrorServer(shared_data, chrome2.sources) as server:
        yield server


def test_landing_page_conformance_and_collections(mirror: MirrorServer) -> None:
    landing = requests.get(mirror.url, timeout=10).json()
    assert landing["type"] == "Catalog" and landing["stac_version"] == "1.0.0"
    assert "https://api.stacspec.org/v1.0.0/item-search" in landing["conformsTo"]
    search = {link["method"] for link in landing["links"] if link["rel"] == "search"}
    assert search == {"GET", "POST"}
    conformance = requests.get(mirror.url + "conformance", timeout=10).json()
    assert conformance["conformsTo"] == landing["conformsTo"]
    collections = requests.get(mirror.url + "collections", timeout=10).json()
    assert [c["id"] for c in collections["collections"]] == [COLLECTION]
    one = requests.get(f"{mirror.url}collections/{COLLECTION}", timeout=10).json()
    assert one["extent"]["temporal"]["interval"] == [
        ["2013-04-11T00:00:00Z", "2021-05-02T23:59:59Z"]
    ]
    assert requests.get(mirror.url + "collections/nope", timeout=10).status_code == 404


def test_item_footprint_time_and_assets(
    mirror: MirrorServer, chrome2_source: SourceConfig
) -> None:
    items = requests.get(
        f"{mirror.url}collections/{COLLECTION}/items", timeout=10
    ).json()
    assert items["numberMatched"] == 2
    post = next(f for f in items["features"] if f["id"] == "chrome2-2018-landsat8-post")
    west, south, east, north = post["bbox"]
    # PROVENANCE.md: lon/lat approx -122.669, 39.477, -122.426, 39.671
    assert west == pytest.approx(-122.669, abs=2e-3) and east == pytest.approx(
        -122.426, abs=2e-3
    )
    assert south == pytest.approx(39.477, abs=2e-3) and north == pytest.approx(
        39.671, abs=2e-3
    )
    assert post["geometry"]["type"] == "Polygon"
    props = post["properties"]
    assert props["datetime"] is None
    assert (props["start_datetime"], props["end_datetime"]) == (
        "2018-06-09T00:00:00Z",
        "2021-05-02T23:59:59Z",
    )
    red = post["assets"]["B4"]
    assert red["eo:bands"] == [{"name": "B4", "common_name": "red"}]
    # burnscape's swir1 is STAC's common name swir16
    assert post["assets"]["B6"]["eo:bands"] == [{"name": "B6", "common_name": "swir16"}]
    assert red["raster:bands"][0] == {
        "scale": 2e-5,
        "offset": -0.1,
        "nodata": 0.0,
        "data_type": "uint16",
    }
    sha = {i.id: i for i in chrome2_source.items}[post["id"]].assets["B4"].sha256
    assert red["file:checksum"] == "1220" + sha
    response = requests.get(red["href"], timeout=10)
    assert response.status_code == 200
    assert len(response.content) == red["file:size"] == 676254
    single = requests.get(post["links"][0]["href"], timeout=10).json()
    assert single["id"] == post["id"]


@pytest.mark.parametrize(
    ("datetime", "expected"),
    [
        ("2019-03-01T10:00:00Z", ["chrome2-2018-landsat8-post"]),
        ("../2018-01-01T00:00:00Z", ["chrome2-2018-landsat8-pre"]),
        ("2018-06-09T00:00:00Z/..", ["chrome2-2018-landsat8-post"]),
        (
            "2018-06-01T00:00:00Z/2018-06-30T00:00:00Z",
            ["chrome2-2018-landsat8-post", "chrome2-2018-landsat8-pre"],
        ),
        ("2022-01-01T00:00:00Z/2023-01-01T00:00:00Z", []),
    ],
)
def test_search_datetime_filters(
    mirror: MirrorServer, datetime: str, expected: list[str]
) -> None:
    page = requests.get(
        mirror.url + "search", params={"datetime": datetime}, timeout=10
    ).json()
    assert sorted(f["id"] for f in page["features"]) == expected


def test_search_bbox_and_collections(mirror: MirrorServer) -> None:
    inside = {"bbox": "-122.6,39.6,-122.5,39.65", "collections": COLLECTION}
    assert (
        requests.get(mirror.url + "search", params=inside, timeout=10).json()[
            "numberMatched"
        ]
        == 2
    )
    away = {"bbox": "10,45,11,46"}
    assert (
        requests.get(mirror.url + "search", params=away, timeout=10).json()["features"]
        == []
    )
    other = {"collections": "sentinel-2-l2a"}
    assert (
        requests.get(mirror.url + "search", params=other, timeout=10).json()["features"]
        == []
    )
    bad = requests.get(mirror.url + "search", params={"bbox": "1,2,3"}, timeout=10)
    assert bad.status_code == 400


def test_search_pages_through_next_links_get_and_post(mirror: MirrorServer) -> None:
    first = requests.get(mirror.url + "search", params={"limit": 1}, timeout=10).json()
    link = next(link for link in first["links"] if link["rel"] == "next")
    second = requests.get(link["href"], timeout=10).json()
    assert not [x for x in second["links"] if x["rel"] == "next"]
    ids = {first["features"][0]["id"], second["features"][0]["id"]}
    assert len(ids) == 2

    first = requests.post(mirror.url + "search", json={"limit": 1}, timeout=10).json()
    link = next(link for link in first["links"] if link["rel"] == "next")
    assert link["method"] == "POST"
    second = requests.post(link["href"], json=link["body"], timeout=10).json()
    assert {first["features"][0]["id"], second["features"][0]["id"]} == ids


def test_file_route_supports_range(mirror: MirrorServer, shared_data: Path) -> None:
    item = requests.get(mirror.url + "search", timeout=10).json()["features"][0]
    href = item["assets"]["B2"]["href"]
    local = (
        shared_data
        / "chrome2-fire-2018-landsat8"
        / href.split("/files/landsat8-l1/")[1]
    )
    content = local.read_bytes()
    part = requests.get(href, headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == content[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(content)}"
    tail = requests.get(href, headers={"Range": "bytes=-5"}, timeout=10)
    assert tail.content == content[-5:]
    rest = requests.get(
        href, headers={"Range": f"bytes={len(content) - 3}-"}, timeout=10
    )
    assert rest.content == content[-3:]
    beyond = requests.get(href, headers={"Range": f"bytes={len(content)}-"}, timeout=10)
    assert beyond.status_code == 416


def test_mirror_lacking_a_file_lists_the_item_and_404s(
    linked_mirror: Path, chrome2: WorkflowConfig
) -> None:
    missing = (
        linked_mirror / "chrome2-fire-2018-landsat8" / "Postdata" / "band5clip.tif"
    )
    missing.unlink()
    with MirrorServer(linked_mirror, chrome2.sources) as server:
        features = requests.get(server.url + "search", timeout=10).json()["features"]
        assert len(features) == 2
        post = next(f for f in features if f["id"].endswith("post"))
        assert post["bbox"]  # footprint read from the other files
        assert requests.get(post["assets"]["B5"]["href"], timeout=10).status_code == 404
        assert requests.get(post["assets"]["B4"]["href"], timeout=10).status_code == 200
