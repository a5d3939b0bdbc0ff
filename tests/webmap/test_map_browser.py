"""The web map in Debian's chromium against a real ``burnscape serve``.

The server holds the real BA-Net events (the 2017 Pedrógão Grande fire and the
five others) and the FIRMS VIIRS detections of 2023-11-09. Each test drives
the page as a user would and checks what it shows against the OGC API
answering the same query. Screenshots go to test-artifacts/webmap/.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from .conftest import MapPage, MapServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PEDROGAO = "-8.4,39.75,-7.95,40.2"
PEDROGAO_DAYS = {"start": "2017-06-17", "end": "2017-06-22"}
ALL_EVENTS = "-9,37,24.5,43.5"


def open_map(tab: MapPage, server: MapServer, **params: str) -> str:
    """Load /map with ``params`` and wait for its first refresh to end."""
    query = f"?{urlencode(params)}" if params else ""
    tab.page.goto(f"{server.url}/map{query}")
    return tab.wait_ready()


def apply_range(tab: MapPage, start: str, end: str) -> str:
    """Type a time range into the form, apply it and wait for the refresh."""
    generation = tab.generation()
    tab.page.fill("#start", start)
    tab.page.fill("#end", end)
    tab.page.click("#apply")
    return tab.wait_ready(after=generation)


def click_preset(tab: MapPage, name: str) -> str:
    generation = tab.generation()
    tab.page.click(f"[data-preset={name}]")
    return tab.wait_ready(after=generation)


def assert_counts_match_api(tab: MapPage, server: MapServer) -> dict[str, float]:
    """Check the count panel against the API for the page's own bbox/datetime."""
    query = tab.view_query()
    events = server.items("fire-events", **query)["features"]
    counts = {name: tab.count(name) for name in ("events", "area", "pixels", "fires")}
    assert counts["events"] == len(events)
    assert counts["area"] == pytest.approx(
        sum(f["properties"]["area_ha"] for f in events)
    )
    assert counts["pixels"] == server.hits("burned-pixels", **query)
    assert counts["fires"] == server.hits("active-fires", **query)
    return counts


def assert_no_script_errors(tab: MapPage) -> None:
    assert tab.page_errors == []
    assert tab.console_errors == []


def test_map_loads_with_no_javascript_errors(
    map_server: MapServer, map_page: MapPage
) -> None:
    state = open_map(map_page, map_server)

    assert state == "ready"
    assert map_page.page.is_hidden("#error")
    counts = assert_counts_match_api(map_page, map_server)
    assert counts["events"] == 19  # all six rasters, the default view and range
    assert counts["pixels"] == 93_616
    # more burned pixels than the page draws one by one: bins from the server
    assert "(binned)" in map_page.page.inner_text("#count-pixels")
    assert "more than 10,000" in map_page.page.inner_text("#legend")
    assert map_page.page.locator(".leaflet-events-pane path").count() == 19
    # offline: every file and query goes to burnscape itself, none to a CDN
    assert {url.split("/")[2] for url in map_page.requested} == {
        map_server.url.split("/")[2]
    }
    assert map_page.page.locator(".leaflet-basemap-pane canvas").count() == 1
    map_page.screenshot("map-default")
    assert_no_script_errors(map_page)


def test_plain_base_map_draws_no_outlines(
    map_server: MapServer, map_page: MapPage
) -> None:
    open_map(map_page, map_server, bbox=PEDROGAO, base="plain", **PEDROGAO_DAYS)

    assert map_page.page.locator(".leaflet-basemap-pane canvas").count() == 0
    assert map_page.count("events") == 12
    assert_no_script_errors(map_page)


def test_changing_the_time_range_changes_the_counts(
    map_server: MapServer, map_page: MapPage
) -> None:
    open_map(map_page, map_server, bbox=PEDROGAO, **PEDROGAO_DAYS)
    whole = assert_counts_match_api(map_page, map_server)

    assert apply_range(map_page, "2017-06-17", "2017-06-18") == "ready"
    first_days = assert_counts_match_api(map_page, map_server)

    assert 0 < first_days["pixels"] < whole["pixels"]
    assert first_days["events"] < whole["events"] == 12
    for preset, expected in (
        ("week", ("2017-06-12", "2017-06-18")),
        ("year", ("2017-01-01", "2017-12-31")),
        ("season", ("2017-06-01", "2017-09-30")),
    ):
        assert click_preset(map_page, preset) == "ready"
        assert (
            map_page.page.input_value("#start"),
            map_page.page.input_value("#end"),
        ) == expected
        assert_counts_match_api(map_page, map_server)
    map_page.screenshot("time-range-fire-season")
    assert_no_script_errors(map_page)


def test_active_fires_render_as_clusters(
    map_server: MapServer, map_page: MapPage
) -> None:
    day = {"start": "2023-11-09", "end": "2023-11-09"}
    open_map(map_page, map_server, bbox="-10,35,5,45", **day)

    fires = assert_counts_match_api(map_page, map_server)["fires"]
    assert 10 < fires <= 10_000
    page = map_page.page
    assert page.locator(".marker-cluster").count() > 0
    assert page.locator(".fire-bin").count() == 0
    in_clusters = sum(
        int(t) for t in page.locator(".marker-cluster span").all_inner_texts()
    )
    assert in_clusters + page.locator(".fire-dot").count() == fires
    map_page.screenshot("active-fires-clusters")

    # the whole day worldwide is more than the page clusters itself: server bins
    open_map(map_page, map_server, bbox="-180,-60,180,75", **day)
    # (a world view at this size holds nearly all of the day's 91,887 detections)
    assert assert_counts_match_api(map_page, map_server)["fires"] > 80_000
    assert page.locator(".fire-bin").count() > 10
    assert "(binned)" in page.inner_text("#count-fires")
    map_page.screenshot("active-fires-binned")
    assert_no_script_errors(map_page)


def test_colour_switch_changes_the_legend(
    map_server: MapServer, map_page: MapPage
) -> None:
    # a view small enough for every pixel to be drawn
    open_map(map_page, map_server, bbox="-8.2,39.96,-8.12,40.0", **PEDROGAO_DAYS)
    page = map_page.page
    assert "(binned)" not in page.inner_text("#count-pixels")
    assert 1000 < map_page.count("pixels") <= 10_000
    clip = {"x": 100, "y": 150, "width": 600, "height": 400}
    by_date = page.screenshot(clip=clip)

    legend = page.locator("#legend")
    assert legend.get_attribute("data-mode") == "date"
    assert legend.locator(".title").inner_text() == "Burn date"
    assert legend.locator(".ticks span").all_inner_texts() == [
        "2017-06-17",
        "2017-06-19",
        "2017-06-22",
    ]
    map_page.screenshot("colour-burn-date")

    page.check('input[name="colour"][value="confidence"]')

    assert legend.get_attribute("data-mode") == "confidence"
    assert legend.locator(".title").inner_text() == "Confidence"
    assert legend.locator(".ticks span").all_inner_texts() == ["0", "0.5", "1"]
    assert page.screenshot(clip=clip) != by_date  # the pixels were recoloured
    assert "colour=confidence" in page.url
    map_page.screenshot("colour-confidence")
    assert_no_script_errors(map_page)


def chart_values(tab: MapPage, chart: str, trace: int) -> list[float]:
    return tab.page.evaluate(
        "([id, k]) => Array.from(document.getElementById(id).data[k].y)",
        [chart, trace],
    )


@pytest.mark.parametrize(
    ("start", "end", "whole_events"),
    [("2017-06-01", "2018-08-31", True), ("2017-06-17", "2017-06-19", False)],
)
def test_daily_chart_total_equals_the_api_area(
    map_server: MapServer, map_page: MapPage, start: str, end: str, whole_events: bool
) -> None:
    open_map(map_page, map_server, bbox=ALL_EVENTS, start=start, end=end)
    query = map_page.view_query()

    progression = map_server.items("daily-progression", **query)["features"]
    api_total = sum(f["properties"]["area_ha"] for f in progression)
    bars = chart_values(map_page, "chart-daily", 0)
    shown_total = float(map_page.page.get_attribute("#chart-daily", "data-total-ha"))

    assert api_total > 1000
    assert sum(bars) == pytest.approx(api_total, rel=1e-12)
    assert shown_total == pytest.approx(api_total, rel=1e-12)
    assert chart_values(map_page, "chart-daily", 1)[-1] == pytest.approx(api_total)
    assert f"total {api_total:,.1f} ha" in map_page.page.inner_text("#chart-daily")
    events_area = map_page.count("area")
    if whole_events:
        # every event lies inside the range: its days add up to its area
        assert shown_total == pytest.approx(events_area, abs=0.05)
    else:
        assert shown_total < events_area
    map_page.screenshot(f"daily-chart-{start}-{end}")
    assert_no_script_errors(map_page)


def test_selecting_an_event_shows_its_growth_and_confidence(
    map_server: MapServer, map_page: MapPage
) -> None:
    open_map(map_page, map_server, bbox=PEDROGAO, **PEDROGAO_DAYS)
    events = map_server.items("fire-events", **map_page.view_query())["features"]
    largest = max(events, key=lambda f: f["properties"]["area_ha"])
    props = largest["properties"]

    # click the largest event outline, as a user would
    map_page.page.evaluate(
        """() => {
          const paths = [...document.querySelectorAll('.leaflet-events-pane path')];
          const area = (p) => { const b = p.getBoundingClientRect();
                                return b.width * b.height; };
          const path = paths.reduce((a, b) => (area(b) > area(a) ? b : a));
          const box = path.getBoundingClientRect();
          path.dispatchEvent(new MouseEvent('click', { bubbles: true,
            clientX: box.x + box.width / 2, clientY: box.y + box.height / 2 }));
        }"""
    )
    page = map_page.page
    page.wait_for_function(
        "(id) => document.getElementById('chart-confidence').dataset.eventId === id",
        arg=largest["id"],
        timeout=60_000,
    )

    popup = page.locator(".leaflet-popup-content")
    assert largest["id"] in popup.inner_text()
    assert f"{props['area_ha']:,.1f} ha" in popup.inner_text()
    growth = page.locator("#chart-growth")
    assert float(growth.get_attribute("data-final-ha")) == pytest.approx(
        props["area_ha"], abs=0.05
    )
    confidence = page.locator("#chart-confidence")
    assert int(confidence.get_attribute("data-pixels")) == props["pixel_count"]
    histogram = page.evaluate(
        "Array.from(document.getElementById('chart-confidence').data[0].x)"
    )
    assert len(histogram) == props["pixel_count"]
    assert min(histogram) >= 0.49 and max(histogram) <= 1.0
    link = popup.locator("a", has_text="GeoTIFF").get_attribute("href")
    download = requests.get(f"{map_server.url}{link}", timeout=30)
    assert download.status_code == 200
    assert download.content == (map_server.outputs / props["geotiff"]).read_bytes()
    assert f"event={largest['id']}" in page.url
    map_page.screenshot("selected-event")
    assert_no_script_errors(map_page)


def test_api_error_shows_a_visible_message(
    map_server: MapServer, map_page: MapPage
) -> None:
    open_map(map_page, map_server, bbox=PEDROGAO, **PEDROGAO_DAYS)
    page = map_page.page
    assert page.is_hidden("#error")

    # the API refuses an interval that ends before it starts; the page says so
    assert apply_range(map_page, "2018-08-01", "2017-06-20") == "error"

    assert page.is_visible("#error")
    message = page.inner_text("#error")
    assert "400" in message and "the end is before the start" in message
    assert page.inner_text("#count-pixels") == "error"
    assert page.locator(".leaflet-events-pane path").count() == 0
    map_page.screenshot("api-error")

    assert apply_range(map_page, "2017-06-17", "2017-06-22") == "ready"
    assert page.is_hidden("#error")
    assert map_page.count("events") == 12
    assert map_page.page_errors == []


def test_unreachable_api_shows_a_visible_message(
    banet_outputs: Path, map_page: MapPage, tmp_path: Path
) -> None:
    server = start_server(banet_outputs, tmp_path / "serve.log")
    try:
        open_map(map_page, server, bbox=PEDROGAO, **PEDROGAO_DAYS)
    finally:
        server.stop()

    assert click_preset(map_page, "week") == "error"

    assert map_page.page.is_visible("#error")
    assert "cannot reach the API" in map_page.page.inner_text("#error")
    map_page.screenshot("api-unreachable")
    assert map_page.page_errors == []


@pytest.mark.parametrize(
    "bbox", [PEDROGAO, ALL_EVENTS, "-8.2,39.96,-8.12,40.0", "-180,-90,180,90"]
)
def test_bins_total_equals_the_api_count_on_real_data(
    map_server: MapServer, bbox: str
) -> None:
    for collection, datetime_ in (
        ("burned-pixels", "2017-06-18/2018-08-05"),
        ("active-fires", "2023-11-09T06:00:00Z/2023-11-09T18:00:00Z"),
    ):
        query = {"bbox": bbox, "datetime": datetime_}
        bins = requests.get(
            f"{map_server.url}/map/api/bins/{collection}",
            params={**query, "nx": 150, "ny": 120},
            timeout=60,
        )
        assert bins.status_code == 200
        assert bins.json()["numberMatched"] == map_server.hits(collection, **query)


def test_openapi_page_renders_swagger_ui_offline(
    map_server: MapServer, map_page: MapPage
) -> None:
    map_page.page.goto(f"{map_server.url}/openapi?f=html")
    map_page.page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    map_page.page.wait_for_selector(".opblock-summary-path", timeout=60_000)

    paths = map_page.page.locator(".opblock-summary-path").all_inner_texts()
    assert "/collections/fire-events/items" in paths
    assert "/collections/fire-events/items/{featureId}" in paths
    assert {url.split("/")[2] for url in map_page.requested} == {
        map_server.url.split("/")[2]
    }
    map_page.screenshot("openapi")
    assert map_page.page_errors == []
