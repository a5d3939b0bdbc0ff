import json
import re
import subprocess
import sys
import time

import pytest
import requests
import yaml

from burnscape.errors import PublishError
from burnscape.publish.server import (
    CONFIG_NAME,
    OPENAPI_NAME,
    find_free_port,
    template_path,
    write_server_config,
)

from .conftest import COLS, ORIGIN_X, ROWS, serve_in_thread, write_burned_zarr

TIMEOUT = 30


def get(server, path, **params):
    return requests.get(f"{server.url}{path}", params=params, timeout=TIMEOUT)


def test_write_server_config_lists_present_collections(outputs_dir):
    path = write_server_config(outputs_dir, server_url="http://example.org:8080/")
    config = yaml.safe_load(path.read_text())
    assert path == outputs_dir / CONFIG_NAME and (outputs_dir / OPENAPI_NAME).is_file()
    assert config["server"]["url"] == "http://example.org:8080"
    assert set(config["resources"]) == {
        "fire-events",
        "daily-progression",
        "burned-pixels",
        "active-fires",
        "burned-area",
        "reflectance",
        "burnscape-workflow",
    }
    events = config["resources"]["fire-events"]
    assert events["providers"][0]["data"] == str(outputs_dir / "burnscape.gpkg")
    assert str(events["extents"]["temporal"]["begin"])[:10] == "2018-06-09"
    assert str(events["extents"]["temporal"]["end"])[:10] == "2018-07-03"
    lon0, lat0, lon1, lat1 = config["resources"]["burned-area"]["extents"]["spatial"][
        "bbox"
    ]
    assert -122.6 < lon0 < lon1 < -122.4 and 39.6 < lat0 < lat1 < 39.8


def test_write_server_config_skips_absent_layers(tmp_path):
    write_burned_zarr(tmp_path / "burned.zarr")
    config = yaml.safe_load(
        write_server_config(tmp_path, server_url="http://x").read_text()
    )
    assert set(config["resources"]) == {"burned-area", "burnscape-workflow"}


def test_write_server_config_refuses_empty_folder(tmp_path):
    with pytest.raises(PublishError, match="nothing to serve"):
        write_server_config(tmp_path, server_url="http://x")
    with pytest.raises(PublishError, match="does not exist"):
        write_server_config(tmp_path / "absent", server_url="http://x")


def test_packaged_template_matches_repository_template():
    packaged = (
        template_path().parent / "burnscape" / "publish" / "templates" / CONFIG_NAME
    )
    assert packaged.read_text() == template_path().read_text()


def test_landing_conformance_and_collections(live_server):
    landing = get(live_server, "/", f="json").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    import pygeoapi.api

    size = len(pygeoapi.api.CONFORMANCE_CLASSES)
    conformance = get(live_server, "/conformance", f="json").json()["conformsTo"]
    get(live_server, "/conformance", f="json")
    assert len(pygeoapi.api.CONFORMANCE_CLASSES) == size
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core" in conformance
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conformance
    assert "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/core" in conformance
    assert (
        "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/scaling" in conformance
    )
    assert conformance.count(conformance[0]) == 1
    ids = {
        c["id"]
        for c in get(live_server, "/collections", f="json").json()["collections"]
    }
    assert {"fire-events", "burned-area", "reflectance", "burned-pixels"} <= ids


def test_openapi_document_is_served_and_valid(live_server):
    from pygeoapi.openapi import validate_openapi_document

    response = get(live_server, "/openapi", f="json")
    assert response.status_code == 200
    document = response.json()
    assert validate_openapi_document(document)
    assert "/collections/fire-events/items" in document["paths"]
    assert "/collections/burned-area/coverage" in document["paths"]


def test_openapi_document_is_self_contained(live_server):
    document = get(live_server, "/openapi", f="json").json()
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(document)))
    assert refs and all(ref.startswith("#/") for ref in refs)

    def resolve(node):
        if "$ref" not in node:
            return node
        target = document
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        return target

    for ref in refs:
        resolve({"$ref": ref})
    coverage = document["paths"]["/collections/burned-area/coverage"]["get"]
    names = {resolve(p)["name"] for p in coverage["parameters"]}
    assert {"f", "subset"} <= names
    assert "413" in coverage["responses"]


def test_items_geojson_with_paging_links(live_server):
    page = get(
        live_server, "/collections/fire-events/items", f="json", limit=1, offset=1
    )
    assert page.status_code == 200
    body = page.json()
    assert body["numberMatched"] == 3 and body["numberReturned"] == 1
    assert body["features"][0]["id"] == "20180620-B"
    links = {link["rel"]: link["href"] for link in body["links"]}
    assert "offset=2" in links["next"] and "offset=0" in links["prev"]
    following = requests.get(links["next"], timeout=TIMEOUT).json()
    assert [f["id"] for f in following["features"]] == ["20180701-C"]
    assert "next" not in {link["rel"] for link in following["links"]}


def test_items_bbox_datetime_and_filters(live_server):
    body = get(
        live_server,
        "/collections/fire-events/items",
        f="json",
        datetime="2018-06-15/..",
        sortby="-area_ha",
    ).json()
    assert [f["id"] for f in body["features"]] == ["20180620-B", "20180701-C"]
    body = get(
        live_server, "/collections/fire-events/items", f="json", pixel_count="150"
    ).json()
    assert [f["id"] for f in body["features"]] == ["20180609-A"]
    empty = get(
        live_server, "/collections/fire-events/items", f="json", datetime="2030-01-01"
    )
    assert empty.status_code == 200 and empty.json()["numberMatched"] == 0
    pixels = get(
        live_server,
        "/collections/burned-pixels/items",
        f="json",
        datetime="2018-06-11",
        limit=1000,
    ).json()
    assert pixels["numberMatched"] == 80


def test_progression_and_active_fires_filter_by_date(live_server):
    days = get(
        live_server,
        "/collections/daily-progression/items",
        f="json",
        datetime="2018-06-11",
        event_id="20180609-A",
    ).json()
    assert [f["properties"]["cumulative_area_ha"] for f in days["features"]] == [13.5]
    growth = get(
        live_server,
        "/collections/daily-progression/items",
        f="json",
        datetime="../2018-06-30",
        sortby="date",
    ).json()
    assert [f["properties"]["date"] for f in growth["features"]] == [
        "2018-06-09",
        "2018-06-11",
    ]
    fires = get(
        live_server,
        "/collections/active-fires/items",
        f="json",
        datetime="2018-06-10/..",
        sortby="-frp",
    ).json()
    assert [f["properties"]["frp"] for f in fires["features"]] == [30.1, 4.0]
    instant = get(
        live_server, "/collections/active-fires/items", f="json", datetime="2018-06-09"
    ).json()
    assert instant["numberMatched"] == 1


def test_item_by_id_and_html(live_server):
    item = get(
        live_server, "/collections/fire-events/items/20180609-A", f="json"
    ).json()
    assert item["properties"]["area_ha"] == 13.5
    html = get(live_server, "/collections/fire-events/items", f="html")
    assert html.status_code == 200 and "20180609-A" in html.text


def test_coverage_covjson_carries_grid_and_crs(live_server):
    response = get(live_server, "/collections/burned-area/coverage", f="json")
    assert response.status_code == 200
    coverage = response.json()
    assert coverage["type"] == "Coverage"
    assert coverage["domain"]["axes"]["x"]["num"] == COLS
    assert coverage["domain"]["axes"]["y"]["num"] == ROWS
    crs = coverage["domain"]["referencing"][0]["system"]["id"]
    assert crs == "http://www.opengis.net/def/crs/EPSG/0/32610"


def test_coverage_native_formats(live_server):
    tif = get(
        live_server, "/collections/burned-area/coverage", f="GTiff", properties="burned"
    )
    assert tif.status_code == 200 and tif.headers["Content-Type"] == "image/tiff"
    assert tif.content[:2] in (b"II", b"MM")
    nc = get(
        live_server,
        "/collections/reflectance/coverage",
        f="netcdf",
        datetime="2024-07-02",
    )
    assert nc.status_code == 200 and nc.content[:4] == b"\x89HDF"


def test_coverage_daily_instant_returns_that_day(live_server):
    response = get(
        live_server,
        "/collections/reflectance/coverage",
        f="json",
        datetime="2024-07-02",
        properties="red",
    )
    assert response.status_code == 200
    assert response.json()["domain"]["axes"]["t"]["values"] == ["2024-07-02T00:00:00Z"]


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/collections/nope", {}, 404),
        ("/collections/nope/items", {}, 404),
        ("/collections/nope/coverage", {}, 404),
        ("/collections/fire-events/items", {"bbox": "1,2,3"}, 400),
        ("/collections/fire-events/items", {"bbox": "a,b,c,d"}, 400),
        ("/collections/fire-events/items", {"bbox": "0,nan,1,1"}, 400),
        ("/collections/fire-events/items", {"datetime": "2018-13-45"}, 400),
        ("/collections/fire-events/items", {"datetime": "../.."}, 400),
        ("/collections/fire-events/items", {"limit": "-1"}, 400),
        ("/collections/fire-events/items", {"limit": "0"}, 400),
        ("/collections/fire-events/items", {"offset": "-5"}, 400),
        ("/collections/fire-events/items", {"offset": "1" + "0" * 30}, 400),
        ("/collections/fire-events/items", {"sortby": "nope"}, 400),
        ("/collections/fire-events/items", {"pixel_count": "abc"}, 400),
        ("/collections/fire-events/items/does-not-exist", {}, 404),
        ("/collections/burned-area/coverage", {"bbox": "1,2,3"}, 400),
        ("/collections/burned-area/coverage", {"bbox": "10,10,11,11"}, 400),
        ("/collections/burned-area/coverage", {"datetime": "someday"}, 400),
        ("/collections/burned-area/coverage", {"f": "png"}, 400),
        ("/collections/burned-area/coverage", {"properties": "nope"}, 400),
        ("/collections/burned-area/coverage", {"scale-factor": "abc"}, 400),
        ("/collections/burned-area/coverage", {"scale-factor": "0.5"}, 400),
        ("/collections/burned-area/coverage", {"scale-factor": "nan"}, 400),
        ("/collections/burned-area/coverage", {"scale-factor": "inf"}, 400),
        ("/collections/burned-area/coverage", {"scale-size": "x(10)"}, 400),
        ("/collections/burned-area/coverage", {"subset": "foo"}, 400),
        ("/collections/burned-area/coverage", {"subset": ""}, 400),
        ("/collections/burned-area/coverage", {"subset": "x(1:2"}, 400),
        ("/collections/reflectance/coverage", {"datetime": "2030-01-01"}, 400),
        ("/collections/burned-area/items", {}, 400),
        ("/no/such/path", {}, 404),
    ],
)
def test_bad_requests_are_4xx_with_message(live_server, path, params, status):
    response = get(live_server, path, **{"f": "json", **params})
    assert response.status_code == status
    description = response.json()["description"]
    assert description
    if status == 400 and params:
        # the message says which parameter was wrong
        assert any(name in description for name in params), description


def test_coverage_world_bbox_selects_whole_grid(live_server):
    response = get(
        live_server,
        "/collections/burned-area/coverage",
        f="json",
        bbox="-180,-90,180,90",
        properties="burned",
    )
    assert response.status_code == 200
    assert response.json()["domain"]["axes"]["x"]["num"] == COLS


def test_coverage_above_cell_limit_is_413_naming_the_limit(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    write_burned_zarr(outputs / "burned.zarr")
    template = tmp_path / "template.yml"
    template.write_text(
        template_path().read_text().replace("max_cells: 4000000", "max_cells: 500")
    )
    with serve_in_thread(outputs, template) as server:
        too_big = get(server, "/collections/burned-area/coverage", f="json")
        assert too_big.status_code == 413
        assert "limit of 500" in too_big.json()["description"]
        overview = get(
            server,
            "/collections/burned-area/coverage",
            f="json",
            properties="burned",
            **{"scale-factor": "4"},
        )
        assert overview.status_code == 200
        assert overview.json()["domain"]["axes"]["x"]["num"] == COLS // 4
        small = get(
            server,
            "/collections/burned-area/coverage",
            f="json",
            properties="burned",
            subset=f"x({ORIGIN_X}:{ORIGIN_X + 300})",
        )
        assert small.status_code == 200


@pytest.mark.slow
@pytest.mark.integration
def test_cli_serve_prints_urls_and_serves(outputs_dir):
    port = find_free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "burnscape.cli",
            "serve",
            "--outputs",
            str(outputs_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(
                    f"{url}/collections/fire-events/items", timeout=5
                )
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.3)
        assert response.status_code == 200
        assert response.json()["numberMatched"] == 3
        assert "Server" in response.headers and "waitress" in response.headers["Server"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"{url}/collections" in output
    assert f"{url}/openapi" in output


def test_publish_never_imports_torch_or_model():
    code = (
        "import sys, burnscape.publish.server, burnscape.publish._app, "
        "burnscape.publish.commands, burnscape.publish.geopackage, "
        "burnscape.publish.coverage; "
        "bad = [m for m in sys.modules "
        "if m == 'torch' or m.startswith('burnscape.model')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("host", ["999.1.1.1", "not a host!"])
def test_serve_on_an_impossible_host_is_one_line(outputs_dir, host):
    from burnscape.publish.server import make_server

    with pytest.raises(PublishError, match="not a valid host address|cannot listen"):
        make_server(outputs_dir, host=host, port=0)


def test_active_fires_filter_by_time_of_day(live_server):
    # 2018-06-09T10:42Z and 2018-06-10T21:05Z: the hours decide, not the dates
    morning = get(
        live_server,
        "/collections/active-fires/items",
        f="json",
        datetime="2018-06-10T00:00:00Z/2018-06-10T12:00:00Z",
    ).json()
    assert morning["numberMatched"] == 0
    evening = get(
        live_server,
        "/collections/active-fires/items",
        f="json",
        datetime="2018-06-10T20:00:00Z/2018-06-10T22:00:00Z",
    ).json()
    assert [f["properties"]["frp"] for f in evening["features"]] == [30.1]
    instant = get(
        live_server,
        "/collections/active-fires/items",
        f="json",
        datetime="2018-06-09T10:42:00Z",
    ).json()
    assert instant["numberMatched"] == 1
