"""The STAC client on real recorded API responses (Earth Search, Planetary Computer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from burnscape.acquire import Ledger, make_session, search_items
from burnscape.acquire.stac import _asset_info, select_assets
from burnscape.config import SourceConfig

from .faultserver import FaultServer

RESPONSES = "stac-api-responses"
EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"


@pytest.fixture(scope="module")
def responses() -> Path:
    from burnscape.utils import find_data_dir

    found = find_data_dir()
    if found is None or not (found / RESPONSES).is_dir():
        pytest.skip(f"shared data folder {RESPONSES} is absent")
    return found / RESPONSES


def _features(responses: Path) -> dict[str, dict]:
    page = json.loads(
        (
            responses
            / "earth-search-v1"
            / "search_s2l2a_landsatc2l2_point_20231008_page1.geojson"
        ).read_text()
    )
    return {feature["collection"]: feature for feature in page["features"]}


def test_bands_select_cog_assets_by_stac_common_names(responses: Path) -> None:
    features = _features(responses)
    source = SourceConfig(
        kind="stac",
        name="s2",
        bands={"red": "B04", "nir": "B08", "swir1": "B11", "swir2": "B12"},
    )
    s2 = select_assets(source, features["sentinel-2-l2a"])
    assert {key: band for key, (band, _) in s2.items()} == {
        "red": "red",
        "nir": "nir",
        "swir16": "swir1",
        "swir22": "swir2",
    }
    landsat = select_assets(source, features["landsat-c2-l2"])
    assert set(landsat) == {"red", "nir08", "swir16", "swir22"}
    info = _asset_info(source, "red", s2["red"][1], s2["red"][1]["href"])
    assert (info["scale"], info["offset"], info["nodata"]) == (0.0001, -0.1, 0)
    assert info["href"].endswith("/B04.tif")
    lost = select_assets(
        SourceConfig(kind="stac", name="x", bands={"mir": "M12"}),
        features["landsat-c2-l2"],
    )
    assert lost == {"M12": ("mir", None)}


def test_search_follows_real_post_next_links_and_reuses_the_ledger(
    responses: Path, tmp_path: Path
) -> None:
    folder = responses / "earth-search-v1"
    with FaultServer() as server:
        root = server.url.rstrip("/")

        def local(name: str) -> bytes:
            return (folder / name).read_text().replace(EARTH_SEARCH, root).encode()

        def search(
            path: str, headers: dict[str, str]
        ) -> tuple[int, bytes, dict[str, str]]:
            body = json.loads(server.log[-1].body or b"{}")
            name = (
                "search_s2l2a_landsatc2l2_point_20231008_page2_empty.geojson"
                if "next" in body
                else "search_s2l2a_landsatc2l2_point_20231008_page1.geojson"
            )
            return 200, local(name), {"Content-Type": "application/geo+json"}

        server.routes["/"] = lambda path, headers: (
            200,
            local("landing_page.json"),
            {"Content-Type": "application/json"},
        )
        server.routes["/search"] = search
        with make_session() as session, Ledger(tmp_path / "ledger.sqlite") as ledger:
            features = search_items(
                session,
                server.url,
                bbox=(-105.11, 40.16, -105.09, 40.17),
                datetime="2023-10-08T00:00:00Z/2023-10-08T23:59:59Z",
                collections=["sentinel-2-l2a", "landsat-c2-l2"],
                ledger=ledger,
            )
            assert [f["id"] for f in features] == [
                "S2A_13TDE_20231008_0_L2A",
                "LC08_L2SP_033032_20231008_02_T1",
            ]
            posts = [e for e in server.log if e.method == "POST"]
            assert len(posts) == 2
            second = json.loads(posts[1].body)
            assert second["next"] == (
                "2023-10-08T17:37:26.656958Z,LC08_L2SP_033032_20231008_02_T1,landsat-c2-l2"
            )
            assert "limit" not in second  # merge: false, the link's body as given
            assert len(ledger.requests()) == 3
            served = len(server.log)
            again = search_items(
                session,
                server.url,
                bbox=(-105.11, 40.16, -105.09, 40.17),
                datetime="2023-10-08T00:00:00Z/2023-10-08T23:59:59Z",
                collections=["sentinel-2-l2a", "landsat-c2-l2"],
                ledger=ledger,
            )
            assert again == features and len(server.log) == served


def test_planetary_computer_get_next_link_is_followed(
    responses: Path, tmp_path: Path
) -> None:
    page = json.loads(
        (
            responses / "planetary-computer" / "items_landsat-c2-l2_page1.geojson"
        ).read_text()
    )
    next_link = next(link for link in page["links"] if link["rel"] == "next")
    assert next_link["method"] == "GET" and "token=next:" in next_link["href"]
    pc = "https://planetarycomputer.microsoft.com/api/stac/v1"
    with FaultServer() as server:
        root = server.url.rstrip("/")
        text = json.dumps(page).replace(pc, root).encode()
        landing = json.dumps(
            {
                "type": "Catalog",
                "links": [{"rel": "search", "href": root + "/search", "method": "GET"}],
            }
        ).encode()
        empty = json.dumps(
            {"type": "FeatureCollection", "features": [], "links": []}
        ).encode()
        server.routes["/"] = lambda path, headers: (200, landing, {})
        server.routes["/search"] = lambda path, headers: (200, text, {})
        server.routes["/collections/landsat-c2-l2/items"] = lambda path, headers: (
            200,
            empty,
            {},
        )
        with make_session() as session:
            features = search_items(session, server.url, collections=["landsat-c2-l2"])
        assert len(features) == len(page["features"]) == 10
        follow = server.log[-1]
        assert follow.method == "GET" and "token=next:landsat-c2-l2" in follow.path
