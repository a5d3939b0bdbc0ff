from __future__ import annotations

import datetime as dt
import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from burnscape.config import load_workflow
from burnscape.cube.ingest import cube_slots
from burnscape.cube.store import digest_store
from burnscape.errors import ConfigError
from tests.cube.workflows import write_daily_workflow, write_pair_workflow

ROOT = Path(__file__).resolve().parents[2]


def _day(day: int) -> dt.date:
    return dt.date(2024, 7, day)


def test_daily_slots_cover_the_window_ending_at_time_end(tmp_path) -> None:
    workflow = load_workflow(
        write_daily_workflow(tmp_path, [], _day(10), window_days=4)
    )
    slots = cube_slots(workflow)
    assert [slot.label for slot in slots] == [
        "2024-07-07",
        "2024-07-08",
        "2024-07-09",
        "2024-07-10",
    ]
    assert slots[0].bounds[1] - slots[0].bounds[0] == dt.timedelta(
        hours=23, minutes=59, seconds=59
    )
    assert cube_slots(load_workflow(write_pair_workflow(tmp_path))) is None


def test_sources_must_agree_on_the_time_axis(tmp_path) -> None:
    workflow = load_workflow(write_daily_workflow(tmp_path, [], _day(10)))
    other = workflow.sources[0].model_copy(update={"name": "other", "options": {}})
    mixed = workflow.model_copy(update={"sources": (workflow.sources[0], other)})
    with pytest.raises(ConfigError, match="one cube has one time axis"):
        cube_slots(mixed)


def test_viirs_daily_workflow_validates() -> None:
    workflow = load_workflow(ROOT / "workflows" / "viirs-daily.yml")
    slots = cube_slots(workflow)
    assert len(slots) == 64
    assert slots[-1].label == workflow.time.end.isoformat()
    assert workflow.region.crs == "EPSG:4326" and workflow.region.pixel_size == 0.01


@pytest.fixture()
def origin(tmp_path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 over the granule folder (the source)."""
    folder = tmp_path / "mirror" / "vnp09ga"
    folder.mkdir(parents=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _run(workflow: Path) -> dict:
    """Run ``burnscape run WORKFLOW`` fetching from the sources' origin."""
    proc = subprocess.run(
        [sys.executable, "-m", "burnscape.cli", "run", str(workflow), "--no-mirror"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = load_workflow(workflow).outputs.folder
    return json.loads((Path(outputs) / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.integration
def test_daily_runs_ingest_only_missing_days_and_are_safe_twice(
    tmp_path, origin
) -> None:
    cube = tmp_path / "outputs" / "cube.zarr"

    # Day 1: granules for July 1-3; the window (5 days) ends July 4.
    first = _run(
        write_daily_workflow(tmp_path, [_day(1), _day(2), _day(3)], _day(4), 5, origin)
    )
    stage = first["stages"]["cube"]
    assert stage["days_written"] == ["2024-07-01", "2024-07-02", "2024-07-03"]
    assert stage["day_status"]["2024-06-30"] == "no_granule"
    assert stage["day_status"]["2024-07-04"] == "no_granule"
    digest = digest_store(cube)
    before = xr.open_zarr(cube)["red"].values

    # The same run again: nothing to ingest, nothing changes.
    again = _run(
        write_daily_workflow(tmp_path, [_day(1), _day(2), _day(3)], _day(4), 5, origin)
    )
    stage = again["stages"]["cube"]
    assert stage["days_written"] == []
    assert stage["days_already_complete"] == ["2024-07-01", "2024-07-02", "2024-07-03"]
    assert digest_store(cube) == digest

    # Next day: July 4 arrived late, July 5 is new; the window moves on.
    days = [_day(1), _day(2), _day(3), _day(4), _day(5)]
    after = _run(write_daily_workflow(tmp_path, days, _day(5), 5, origin))
    stage = after["stages"]["cube"]
    assert stage["days_written"] == ["2024-07-04", "2024-07-05"]
    assert stage["days_already_complete"] == ["2024-07-01", "2024-07-02", "2024-07-03"]

    dataset = xr.open_zarr(cube)
    assert [str(t)[:10] for t in dataset["time"].values] == [
        "2024-06-30",
        "2024-07-01",
        "2024-07-02",
        "2024-07-03",
        "2024-07-04",
        "2024-07-05",
    ]
    assert dataset["day_complete"].values.tolist() == [0, 1, 1, 1, 1, 1]
    assert (dataset["observation_count"].values == 5).all()
    assert np.isfinite(dataset["red"].values[1:]).all()
    # Days written by earlier runs are untouched by the append.
    np.testing.assert_array_equal(dataset["red"].values[:4], before[:4])
    fingerprints = xr.open_zarr(cube)["day_status"].attrs["inputs"]
    assert len(fingerprints) == 5 and all(
        len(value) >= 64 for value in fingerprints.values()
    )
