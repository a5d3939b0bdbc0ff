"""End to end on real data: the CHROME 2 workflow from download to OGC API."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import pytest
import requests
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "workflows" / "chrome2-2018.yml"
REFERENCE_HA = 2259.1 * 0.40468564224


def _burnscape(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "burnscape.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _downloads(outputs: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(outputs)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in sorted((outputs / "downloads").rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, chrome2_dir) -> Path:
    outputs = tmp_path_factory.mktemp("chrome2") / "outputs"
    proc = _burnscape(
        "run",
        str(WORKFLOW),
        "--outputs",
        str(outputs),
        "--mirror",
        str(chrome2_dir.parent),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validate: precision" in proc.stdout
    return outputs


def test_run_reaches_f1_and_area_targets(first_run: Path) -> None:
    report = json.loads((first_run / "run.json").read_text())
    figures = report["validation"]
    assert figures["f1"] >= 0.85
    assert abs(figures["main_event_area_ha"] - REFERENCE_HA) / REFERENCE_HA <= 0.25
    for stage in ("acquire", "cube", "detect", "events", "validate", "total"):
        assert report["timings_s"][stage] > 0
    assert report["code_version"].startswith(report["burnscape_version"])


def test_run_outputs_follow_contracts(first_run: Path) -> None:
    cube = xr.open_zarr(first_run / "cube.zarr")
    assert cube.rio.crs.to_epsg() == 32610
    assert {"blue", "green", "red", "nir", "swir1", "swir2"} <= set(cube.data_vars)
    assert cube.sizes == {"time": 2, "y": 716, "x": 691, "nv": 2}
    burned = xr.open_zarr(first_run / "burned.zarr")
    assert burned.rio.crs.to_epsg() == 32610
    assert burned.rio.transform() == cube.rio.transform()
    assert burned.attrs["detector"] == "spectral"
    events = gpd.read_file(first_run / "burnscape.gpkg", layer="fire_events")
    assert len(events) >= 1 and events.is_valid.all()
    main = events.sort_values("area_ha").iloc[-1]
    assert (first_run / main["geotiff"]).is_file()


def test_served_api_returns_events_and_coverage(first_run: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "burnscape.cli",
            "serve",
            "--outputs",
            str(first_run),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(base + "/", params={"f": "json"}, timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "server did not start: "
                    + (server.stdout.read() if server.stdout else "")
                )
            time.sleep(0.5)

        items = requests.get(
            f"{base}/collections/fire-events/items",
            params={"f": "json", "limit": 10},
            timeout=30,
        )
        assert items.status_code == 200
        features = items.json()["features"]
        assert features
        areas = [feature["properties"]["area_ha"] for feature in features]
        assert any(abs(area - REFERENCE_HA) / REFERENCE_HA <= 0.25 for area in areas)

        coverage = requests.get(
            f"{base}/collections/burned-area/coverage", params={"f": "json"}, timeout=60
        )
        assert coverage.status_code == 200, coverage.text[:500]
        body = coverage.json()
        text = json.dumps(body["domain"])
        assert "32610" in text
        axes = body["domain"]["axes"]
        assert {"x", "y"} <= set(axes)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_second_run_downloads_nothing_and_is_identical(
    first_run: Path, chrome2_dir
) -> None:
    before_files = _downloads(first_run)
    burned_before = xr.open_zarr(first_run / "burned.zarr").load()
    events_before = gpd.read_file(first_run / "burnscape.gpkg", layer="fire_events")
    tifs_before = {p.name: p.read_bytes() for p in (first_run / "events").glob("*.tif")}
    with sqlite3.connect(first_run / "ledger.sqlite") as db:
        requests_before = db.execute("SELECT count(*) FROM requests").fetchone()[0]

    proc = _burnscape(
        "run",
        str(WORKFLOW),
        "--outputs",
        str(first_run),
        "--mirror",
        str(chrome2_dir.parent),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert _downloads(first_run) == before_files
    with sqlite3.connect(first_run / "ledger.sqlite") as db:
        assert (
            db.execute("SELECT count(*) FROM requests").fetchone()[0] == requests_before
        )
    burned_after = xr.open_zarr(first_run / "burned.zarr").load()
    xr.testing.assert_identical(burned_before, burned_after)
    events_after = gpd.read_file(first_run / "burnscape.gpkg", layer="fire_events")
    assert len(events_after) == len(events_before)
    assert events_after.drop(columns="geometry").equals(
        events_before.drop(columns="geometry")
    )
    assert events_after.geometry.geom_equals_exact(events_before.geometry, 1e-9).all()
    assert {
        p.name: p.read_bytes() for p in (first_run / "events").glob("*.tif")
    } == tifs_before


def _mirror_copy(chrome2_dir: Path, tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    target = mirror / chrome2_dir.name
    for path in chrome2_dir.rglob("*"):
        if path.is_file():
            dest = target / path.relative_to(chrome2_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(path)
    return mirror


def test_mirror_lacking_a_file_names_it_and_keeps_verified(
    tmp_path, chrome2_dir
) -> None:
    mirror = _mirror_copy(chrome2_dir, tmp_path)
    (mirror / chrome2_dir.name / "Postdata" / "band5clip.tif").unlink()
    outputs = tmp_path / "out"
    proc = _burnscape(
        "run", str(WORKFLOW), "--outputs", str(outputs), "--mirror", str(mirror)
    )
    assert proc.returncode != 0
    assert (
        "band5clip.tif" in proc.stderr and "chrome2-2018-landsat8-post" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    kept = {path.name for path in (outputs / "downloads").rglob("*.tif")}
    assert len(kept) == 11 and "band5clip.tif" not in kept
    assert not (outputs / "cube.zarr").exists()


def test_checksum_mismatch_is_rejected_and_never_ingested(
    tmp_path, chrome2_dir
) -> None:
    mirror = _mirror_copy(chrome2_dir, tmp_path)
    bad = mirror / chrome2_dir.name / "Predata" / "band4afterclip.tif"
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0xFF
    bad.unlink()
    bad.write_bytes(bytes(data))
    outputs = tmp_path / "out"
    proc = _burnscape(
        "run", str(WORKFLOW), "--outputs", str(outputs), "--mirror", str(mirror)
    )
    assert proc.returncode != 0
    assert "band4afterclip.tif" in proc.stderr
    assert "checksum" in proc.stderr.lower() or "sha256" in proc.stderr.lower()
    assert not any(
        p.name == "band4afterclip.tif" for p in (outputs / "downloads").rglob("*")
    )
    assert not (outputs / "cube.zarr").exists()
    shutil.rmtree(outputs)


def test_firehr_without_weights_falls_back_to_spectral(
    tmp_path, chrome2_dir, first_run: Path
) -> None:
    text = WORKFLOW.read_text().replace("  kind: spectral", "  kind: firehr", 1)
    workflow = tmp_path / "chrome2-firehr.yml"
    workflow.write_text(text)
    outputs = tmp_path / "out"
    proc = _burnscape(
        "run",
        str(workflow),
        "--outputs",
        str(outputs),
        "--mirror",
        str(chrome2_dir.parent),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no FireHR weights configured" in proc.stdout
    report = json.loads((outputs / "run.json").read_text())
    assert report["stages"]["detect"]["detector"] == "spectral"
    assert "fallback" in report["stages"]["detect"]
    spectral = json.loads((first_run / "run.json").read_text())
    assert report["validation"]["f1"] == spectral["validation"]["f1"]
