"""Fixtures for the web map: a small outputs folder built in code, the real one
built from the BA-Net events and the FIRMS day file, a live ``burnscape serve``
subprocess and Debian's chromium driven by Playwright.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import requests
import shapely
from affine import Affine

from burnscape.publish.server import find_free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "webmap"

# The small grid: 0.01° pixels from (10.0E, 45.2N), 20 rows x 30 columns.
WEST, NORTH, STEP = 10.0, 45.2, 0.01
ROWS, COLS = 20, 30
FIRST_DAY = dt.date(2021, 8, 1)


def small_pixels(seed: int = 3) -> gpd.GeoDataFrame:
    """Return burned pixels: every cell of the small grid, burned over 5 days."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(ROWS), np.arange(COLS), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    days = (cols // 6).astype(int)
    boxes = shapely.box(
        WEST + cols * STEP,
        NORTH - (rows + 1) * STEP,
        WEST + (cols + 1) * STEP,
        NORTH - rows * STEP,
    )
    return gpd.GeoDataFrame(
        {
            "event_id": ["20210801-A"] * rows.size,
            "burn_date": [
                (FIRST_DAY + dt.timedelta(days=int(d))).isoformat() for d in days
            ],
            "confidence": rng.uniform(0.5, 1.0, rows.size),
            "run_id": ["small"] * rows.size,
        },
        geometry=boxes,
        crs="EPSG:4326",
    )


def small_fires(seed: int = 5) -> gpd.GeoDataFrame:
    """Return 400 active-fire points over the small grid on 2021-08-01..03."""
    rng = np.random.default_rng(seed)
    n = 400
    lon = rng.uniform(WEST, WEST + COLS * STEP, n)
    lat = rng.uniform(NORTH - ROWS * STEP, NORTH, n)
    start = pd.Timestamp(FIRST_DAY, tz="UTC")
    acquired = start + pd.to_timedelta(rng.uniform(0, 3 * 86400, n), unit="s")
    return gpd.GeoDataFrame(
        {
            "acq_date": acquired,
            "acquired": acquired,
            "frp": rng.uniform(1, 50, n),
            "run_id": ["small"] * n,
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )


def small_event(pixels: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Return the one fire event covering the small grid."""
    return gpd.GeoDataFrame(
        {
            "event_id": ["20210801-A"],
            "area_ha": [123.4],
            "pixel_count": [len(pixels)],
            "first_burn_date": [FIRST_DAY.isoformat()],
            "last_burn_date": [(FIRST_DAY + dt.timedelta(days=4)).isoformat()],
            "duration_days": [5],
            "confidence_mean": [float(pixels["confidence"].mean())],
            "confidence_max": [float(pixels["confidence"].max())],
            "geotiff": ["events/20210801-A.tif"],
            "run_id": ["small"],
            "detector": ["test"],
        },
        geometry=[shapely.MultiPolygon([pixels.union_all().envelope])],
        crs="EPSG:4326",
    )


def write_small_outputs(folder: Path) -> dict[str, gpd.GeoDataFrame]:
    """Write burnscape.gpkg (three layers) and one event GeoTIFF into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels, fires = small_pixels(), small_fires()
    layers = {
        "burned_pixels": pixels,
        "active_fires": fires,
        "fire_events": small_event(pixels),
    }
    for name, frame in layers.items():
        frame.to_file(
            folder / "burnscape.gpkg", layer=name, driver="GPKG", engine="pyogrio"
        )
    (folder / "events").mkdir(exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": COLS,
        "height": ROWS,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": Affine(STEP, 0, WEST, 0, -STEP, NORTH),
    }
    with rasterio.open(folder / "events" / "20210801-A.tif", "w", **profile) as dst:
        dst.write(np.ones((1, ROWS, COLS), np.float32))
    return layers


@pytest.fixture(scope="session")
def small_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An outputs folder with the small synthetic layers."""
    folder = tmp_path_factory.mktemp("small-outputs")
    write_small_outputs(folder)
    return folder


# --------------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def banet_outputs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An outputs folder built from the real data with burnscape's own stages.

    The six BA-Net event rasters (Pedrógão Grande 2017, Monchique 2018, Attica
    2018, French Riviera 2017) become burned datasets, then fire events,
    progression, pixels and GeoTIFFs (one run each, one GeoPackage); the FIRMS
    VIIRS day file of 2023-11-09 becomes the ``active_fires`` layer.
    """
    from burnscape.acquire.firms import read_firms
    from burnscape.config import EventsConfig
    from burnscape.events import burned_from_banet_geotiff, extract_events, open_store

    banet = data_dir / "firehr-banet-events"
    firms = data_dir / "firms-viirs-nrt-global-2023-11-09"
    rasters = sorted(banet.glob("ba100m_*.tif"))
    if len(rasters) != 6 or not firms.is_dir():
        pytest.skip(f"BA-Net rasters or FIRMS files absent from {data_dir}")
    outputs = tmp_path_factory.mktemp("banet-outputs")
    work = tmp_path_factory.mktemp("banet-burned")
    for raster in rasters:
        year = int(re.search(r"(\d{4})_\d+$", raster.stem).group(1))
        burned = work / f"{raster.stem}.zarr"
        burned_from_banet_geotiff(raster, year).to_zarr(
            burned, mode="w", consolidated=True
        )
        extract_events(burned, outputs, EventsConfig(), run_id=raster.stem)
    fires = read_firms(firms)
    fires["acq_date"] = fires["acquired"]
    fires["run_id"] = "firms-2023-11-09"
    open_store(outputs / "burnscape.gpkg").replace_run(
        "active_fires", "firms-2023-11-09", fires
    )
    return outputs


@dataclass
class MapServer:
    """A ``burnscape serve`` subprocess: its URL and outputs folder."""

    url: str
    outputs: Path
    process: subprocess.Popen[bytes]

    def items(self, collection: str, **params: Any) -> dict[str, Any]:
        """GET a collection's items as GeoJSON (all pages merged)."""
        features: list[dict[str, Any]] = []
        offset = 0
        while True:
            query = {"f": "json", "limit": 10_000, "offset": offset, **params}
            response = requests.get(
                f"{self.url}/collections/{collection}/items", params=query, timeout=60
            )
            response.raise_for_status()
            body = response.json()
            features += body["features"]
            if len(features) >= body["numberMatched"] or not body["features"]:
                return {"features": features, "numberMatched": body["numberMatched"]}
            offset = len(features)

    def hits(self, collection: str, **params: Any) -> int:
        """Return numberMatched of a collection query."""
        response = requests.get(
            f"{self.url}/collections/{collection}/items",
            params={"f": "json", "resulttype": "hits", **params},
            timeout=60,
        )
        response.raise_for_status()
        return int(response.json()["numberMatched"])

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(outputs: Path, log: Path) -> MapServer:
    """Start ``burnscape serve`` on a free port and wait until it answers."""
    port = find_free_port()
    command = [
        sys.executable,
        "-m",
        "burnscape.cli",
        "serve",
        "--outputs",
        str(outputs),
        "--port",
        str(port),
        "--threads",
        "4",
    ]
    handle = log.open("wb")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    server = MapServer(f"http://127.0.0.1:{port}", outputs, process)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"burnscape serve exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"{server.url}/collections?f=json", timeout=5).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(
        f"burnscape serve did not answer within 120 s: {log.read_text()}"
    )


@pytest.fixture(scope="module")
def map_server(
    banet_outputs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MapServer]:
    """``burnscape serve`` on the real outputs folder, for one test module."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    server = start_server(banet_outputs, log)
    yield server
    server.stop()


# --------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium, headless, with a fresh profile and no background traffic."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed"
    )
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium")
    from burnscape.publish.webmap import missing_assets

    missing = missing_assets()
    if missing:
        pytest.skip(f"web map assets missing ({missing[0]}, ...): run .ci/prepare")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 850},
        )
        yield context
        context.close()


@dataclass
class MapPage:
    """One browser tab on the map, with what its JavaScript reported."""

    page: Any
    console_errors: list[str]
    page_errors: list[str]
    requested: list[str]

    def wait_ready(self, after: int = 0, timeout_ms: int = 90_000) -> str:
        """Wait until a refresh newer than ``after`` ends; return its state."""
        self.page.wait_for_function(
            "(after) => { const s = document.getElementById('status');"
            " return s && Number(s.dataset.generation || 0) > after"
            " && (s.dataset.state === 'ready' || s.dataset.state === 'error'); }",
            arg=after,
            timeout=timeout_ms,
        )
        return str(self.page.get_attribute("#status", "data-state"))

    def generation(self) -> int:
        """Return the number of the latest refresh."""
        return int(self.page.get_attribute("#status", "data-generation") or 0)

    def count(self, name: str) -> float:
        """Return the raw value of a count panel entry (events, area, pixels, fires)."""
        return float(self.page.get_attribute(f"#count-{name}", "data-value"))

    def view_query(self) -> dict[str, str]:
        """Return the bbox and datetime of the page's current view (from its URL)."""
        query = dict(
            pair.split("=", 1) for pair in self.page.url.split("?", 1)[1].split("&")
        )
        bbox = requests.utils.unquote(query["bbox"])
        return {"bbox": bbox, "datetime": f"{query['start']}/{query['end']}"}

    def screenshot(self, name: str) -> Path:
        """Save a screenshot under test-artifacts/webmap/."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def map_page(browser_context: Any) -> Iterator[MapPage]:
    """A new tab collecting console errors and uncaught exceptions."""
    page = browser_context.new_page()
    tab = MapPage(page, [], [], [])
    page.on("request", lambda request: tab.requested.append(request.url))
    page.on(
        "console",
        lambda m: tab.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda err: tab.page_errors.append(str(err)))
    yield tab
    page.close()
