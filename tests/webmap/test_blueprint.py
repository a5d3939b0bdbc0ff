"""Tests of the /map routes through the real application (Flask test client)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flask import Flask

from burnscape.publish.server import create_app, load_config
from burnscape.publish.webmap import missing_assets, webmap_blueprint
from burnscape.publish.webmap.blueprint import REQUIRED_ASSETS

from .conftest import COLS, NORTH, ROWS, STEP, WEST

GRID = f"{WEST},{NORTH - ROWS * STEP},{WEST + COLS * STEP},{NORTH}"


@pytest.fixture(scope="module")
def client(small_outputs: Path):
    app = create_app(small_outputs, server_url="http://testserver")
    return app.test_client()


def page_settings(html: str) -> dict:
    found = re.search(
        r'<script id="settings" type="application/json">(.*?)</script>', html
    )
    assert found is not None
    return json.loads(found.group(1))


def test_map_page_names_the_served_collections_and_limits(client) -> None:
    if missing_assets():
        pytest.skip("web map assets missing: run .ci/prepare")

    response = client.get("/map")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    settings = page_settings(html)
    assert settings["collections"] == ["fire-events", "burned-pixels", "active-fires"]
    assert settings["binned"] == ["active-fires", "burned-pixels"]
    assert settings["pixelLimit"] == settings["fireLimit"] == 10_000
    assert settings["pageSize"] == 10_000
    assert settings["mapRoot"] == "/map"
    # the online tile source of server.map is offered, never the default
    assert [m["name"] for m in settings["basemaps"]] == ["OpenStreetMap (online)"]
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()


def test_map_page_scripts_are_served_locally(client) -> None:
    if missing_assets():
        pytest.skip("web map assets missing: run .ci/prepare")
    html = client.get("/map").get_data(as_text=True)

    sources = re.findall(r'(?:src|href)="(/map/[^"]+)"', html)

    assert len(sources) >= 9
    for source in sources:
        response = client.get(source)
        assert response.status_code == 200, source
        assert len(response.data) > 0
        response.close()


def test_missing_assets_page_says_how_to_install_them(
    small_outputs: Path, tmp_path: Path
) -> None:
    config = load_config(small_outputs / "pygeoapi-config.yml")
    app = Flask("bare")
    app.register_blueprint(
        webmap_blueprint(config, assets_dir=tmp_path / "node_modules")
    )

    response = app.test_client().get("/map")

    assert response.status_code == 503
    text = response.get_data(as_text=True)
    assert "npm ci" in text and "bash .ci/setup" in text
    for name in REQUIRED_ASSETS:
        assert name in text


@pytest.mark.parametrize(
    "path",
    [
        "/map/vendor/commander/index.js",
        "/map/vendor/leaflet/../../bins.py",
        "/map/vendor/leaflet/dist/no-such-file.js",
    ],
)
def test_vendor_route_serves_only_the_page_libraries(client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_event_geotiff_is_downloadable(client, small_outputs: Path) -> None:
    response = client.get("/map/files/events/20210801-A.tif")

    assert response.status_code == 200
    assert response.mimetype == "image/tiff"
    assert response.data == (small_outputs / "events" / "20210801-A.tif").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/map/files/burnscape.gpkg",
        "/map/files/pygeoapi-config.yml",
        "/map/files/events/../burnscape.gpkg",
        "/map/files/events/missing.tif",
    ],
)
def test_files_route_serves_only_event_geotiffs(client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_bins_route_matches_the_items_count(client) -> None:
    query = {"bbox": "10.05,45.03,10.18,45.15", "datetime": "2021-08-02/2021-08-04"}

    bins = client.get("/map/api/bins/burned-pixels", query_string={**query, "nx": 20})
    items = client.get(
        "/collections/burned-pixels/items",
        query_string={**query, "f": "json", "resulttype": "hits"},
    )

    assert bins.status_code == items.status_code == 200
    assert bins.json["numberMatched"] == items.json["numberMatched"] > 0
    assert bins.json["collection"] == "burned-pixels"
    assert bins.json["nx"] == 20 and bins.json["ny"] == 64


@pytest.mark.parametrize(
    ("collection", "query", "status", "message"),
    [
        ("burned-pixels", {}, 400, "bbox is required"),
        ("burned-pixels", {"bbox": "1,2,3"}, 400, "4 finite numbers"),
        ("burned-pixels", {"bbox": "a,2,3,4"}, 400, "not a number"),
        ("burned-pixels", {"bbox": GRID, "datetime": "yesterday"}, 400, "RFC 3339"),
        (
            "burned-pixels",
            {"bbox": GRID, "datetime": "2021-08-05/2021-08-01"},
            400,
            "end is before the start",
        ),
        ("burned-pixels", {"bbox": GRID, "nx": "many"}, 400, "nx must be an integer"),
        ("burned-pixels", {"bbox": GRID, "ny": "9999"}, 400, "between 1 and 512"),
        ("fire-events", {"bbox": GRID}, 404, "no binned collection 'fire-events'"),
    ],
)
def test_bins_route_answers_bad_queries_with_a_message(
    client, collection: str, query: dict, status: int, message: str
) -> None:
    response = client.get(f"/map/api/bins/{collection}", query_string=query)

    assert response.status_code == status
    assert message in response.json["description"]


def test_openapi_page_loads_swagger_ui_from_this_server(client) -> None:
    from burnscape.publish.webmap.blueprint import ASSETS_DIR, OPENAPI_ASSETS

    if missing_assets() or any(
        not (ASSETS_DIR / name).is_file() for name in OPENAPI_ASSETS
    ):
        pytest.skip("web map assets missing: run .ci/prepare")
    html = client.get("/openapi?f=html").get_data(as_text=True)

    assert "unpkg" not in html and "cdn" not in html.lower()
    sources = re.findall(r'(?:src|href)="(/map/vendor/[^"]+)"', html)
    assert {source.removeprefix("/map/vendor/") for source in sources} >= set(
        OPENAPI_ASSETS
    )
    for source in sources:
        response = client.get(source)
        assert response.status_code == 200, source
        response.close()
    # a browser asking without f gets the page; a client asking JSON the document
    browser = client.get("/openapi", headers={"Accept": "text/html,*/*;q=0.8"})
    assert "swagger-ui-bundle.js" in browser.get_data(as_text=True)
    document = client.get("/openapi", headers={"Accept": "application/json"})
    assert document.get_json()["openapi"].startswith("3.")
    assert client.get("/openapi?f=json").get_json()["paths"]


def test_openapi_page_without_local_swagger_ui_is_pygeoapis(
    small_outputs: Path, tmp_path: Path
) -> None:
    config = load_config(small_outputs / "pygeoapi-config.yml")
    app = Flask("bare")
    app.register_blueprint(
        webmap_blueprint(config, assets_dir=tmp_path / "node_modules")
    )

    @app.route("/openapi")
    def fallback() -> str:
        return "pygeoapi's page"

    response = app.test_client().get("/openapi?f=html")
    assert response.get_data(as_text=True) == "pygeoapi's page"
