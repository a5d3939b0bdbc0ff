from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine

from burnscape.config import EventsConfig
from burnscape.errors import DataNotFoundError, EventsError
from burnscape.events import burned_from_banet_geotiff, extract_events

DAY = 17691  # 2018-06-09


def two_fires() -> np.ndarray:
    dates = np.full((60, 80), -1, dtype=np.int32)
    dates[5:25, 5:30] = DAY  # 500 px
    dates[10:20, 30:40] = DAY + 2  # joins the first fire: 100 px
    dates[40:55, 50:75] = DAY + 5  # second fire: 375 px
    dates[2, 70] = DAY  # a lone pixel, dropped by min_pixels
    return dates


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_extract_events_writes_layers_and_geotiffs_on_utm_grid(write_burned, tmp_path):
    burned = write_burned(two_fires())
    summary = extract_events(
        burned, tmp_path / "out", EventsConfig(min_pixels=5), run_id="run-1"
    )
    assert summary.n_events == 2
    assert summary.store == str(tmp_path / "out" / "burnscape.gpkg")
    main = summary.main_event
    assert main is not None and main["pixel_count"] == 600
    # 30 m pixels in UTM 10N: 0.09 ha on the map, slightly more on the ellipsoid
    assert main["area_ha"] == pytest.approx(600 * 0.09, rel=2e-3)
    assert main["area_ha"] != 600 * 0.09
    assert main["first_burn_date"] == "2018-06-08"  # burn_date_min
    assert main["last_burn_date"] == "2018-06-11"
    assert main["duration_days"] == 4
    assert main["confidence_mean"] == pytest.approx(0.8)
    assert main["detector"] == "synthetic"
    assert re.fullmatch(r"20180608-\d+\.\d{4}W-\d+\.\d{4}N", main["event_id"])

    events = pyogrio.read_dataframe(summary.store, layer="fire_events")
    assert len(events) == 2
    assert events.crs.to_epsg() == 4326
    assert set(events.geom_type) == {"MultiPolygon"}
    assert events.is_valid.all()
    assert (events.run_id == "run-1").all()
    pixels = pyogrio.read_dataframe(summary.store, layer="burned_pixels")
    assert len(pixels) == 975
    assert set(pixels.burn_date) == {"2018-06-09", "2018-06-11", "2018-06-14"}
    assert set(pixels.event_id) == set(events.event_id)

    assert [p.name for p in summary.geotiffs] == [f"{e}.tif" for e in events.event_id]
    with rasterio.open(summary.geotiffs[0]) as src:
        assert src.count == 2 and src.crs.to_epsg() == 32610
        assert src.descriptions == ("confidence", "burn_date")
        assert np.isnan(src.nodata)
        assert src.profile["tiled"]
        assert (src.width, src.height) == (35, 20)
        band2 = src.read(2)
        assert set(np.unique(band2[np.isfinite(band2)])) == {DAY, DAY + 2}
        assert src.transform == Affine(
            30.0, 0.0, 600000.0 + 5 * 30, 0.0, -30.0, 4400000.0 - 5 * 30
        )


def test_extract_events_rerun_replaces_rows_and_gives_identical_files(
    write_burned, tmp_path
):
    burned = write_burned(two_fires())
    out = tmp_path / "out"
    first = extract_events(burned, out, EventsConfig(min_pixels=5), run_id="day-1")
    hashes = [digest(p) for p in first.geotiffs]
    again = extract_events(burned, out, EventsConfig(min_pixels=5), run_id="day-1")
    assert [digest(p) for p in again.geotiffs] == hashes
    events = pyogrio.read_dataframe(again.store, layer="fire_events")
    assert len(events) == 2
    assert len(pyogrio.read_dataframe(again.store, layer="burned_pixels")) == 975

    extract_events(burned, out, EventsConfig(min_pixels=5), run_id="day-2")
    events = pyogrio.read_dataframe(again.store, layer="fire_events")
    assert sorted(events.run_id) == ["day-1", "day-1", "day-2", "day-2"]
    ids = events.groupby("run_id").event_id.apply(sorted)
    assert ids["day-1"] == ids["day-2"]


def test_extract_events_splits_fire_by_date_gap(write_burned, tmp_path):
    dates = np.full((10, 20), -1, dtype=np.int32)
    dates[2:8, 2:10] = DAY
    dates[2:8, 10:18] = DAY + 30  # touching, but 30 days later
    summary = extract_events(
        write_burned(dates), tmp_path, EventsConfig(max_gap_days=16), run_id="r"
    )
    assert summary.n_events == 2
    merged = extract_events(
        write_burned(dates), tmp_path / "b", EventsConfig(max_gap_days=30), run_id="r"
    )
    assert merged.n_events == 1


def test_extract_events_without_burned_pixels_writes_empty_layers(
    write_burned, tmp_path
):
    summary = extract_events(
        write_burned(np.full((8, 8), -1, dtype=np.int32)),
        tmp_path,
        EventsConfig(),
        run_id="r",
    )
    assert (
        summary.n_events == 0 and summary.main_event is None and summary.geotiffs == []
    )
    assert len(pyogrio.read_dataframe(summary.store, layer="fire_events")) == 0


def test_extract_events_burned_pixels_capped(write_burned, tmp_path):
    summary = extract_events(
        write_burned(two_fires()),
        tmp_path,
        EventsConfig(),
        run_id="r",
        max_pixel_polygons=100,
    )
    assert summary.n_events == 3
    assert len(pyogrio.read_dataframe(summary.store, layer="burned_pixels")) == 0


def test_extract_events_missing_store_is_named(tmp_path):
    with pytest.raises(DataNotFoundError, match="nothing.zarr does not exist"):
        extract_events(tmp_path / "nothing.zarr", tmp_path, EventsConfig(), run_id="r")


def test_extract_events_without_crs_is_an_error(write_burned, tmp_path):
    path = write_burned(two_fires())
    import shutil

    shutil.rmtree(path / "spatial_ref")
    import json

    meta = json.loads((path / "zarr.json").read_text())
    meta.pop("consolidated_metadata", None)
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(EventsError, match="no CRS"):
        extract_events(path, tmp_path, EventsConfig(), run_id="r")


def test_extract_events_on_real_banet_raster(banet_dir, tmp_path):
    burned = burned_from_banet_geotiff(banet_dir / "ba100m_FRiv2017_2.tif", 2017)
    burned.to_zarr(tmp_path / "burned.zarr", mode="w", consolidated=True)
    summary = extract_events(
        tmp_path / "burned.zarr", tmp_path, EventsConfig(max_distance_px=8), run_id="r"
    )
    main = summary.main_event
    assert main is not None
    assert main["pixel_count"] == 1961
    # 0.001 deg at 43.1 N: 111.0 km x 81.2 m per pixel ~ 0.903 ha
    assert main["area_ha"] == pytest.approx(1961 * 0.903, rel=0.01)
    assert (main["first_burn_date"], main["last_burn_date"]) == (
        "2017-07-26",
        "2017-07-27",
    )
    assert main["detector"] == "banet"
    with rasterio.open(summary.geotiffs[0]) as src:
        assert src.crs.to_epsg() == 4326
        rows, cols = np.nonzero(burned.burned.values)
        assert (src.height, src.width) == (np.ptp(rows) + 1, np.ptp(cols) + 1)
        assert int(np.isfinite(src.read(1)).sum()) == 1961


def test_events_command_converts_banet_and_prints_summary(banet_dir, tmp_path):
    from click.testing import CliRunner

    from burnscape.cli import main

    result = CliRunner().invoke(
        main,
        [
            "events",
            str(banet_dir / "ba100m_Attica2018_2.tif"),
            "--banet-year",
            "2018",
            "-o",
            str(tmp_path),
            "--max-distance-px",
            "8",
            "--run-id",
            "mati",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fire events written to" in result.output
    events = pyogrio.read_dataframe(tmp_path / "burnscape.gpkg", layer="fire_events")
    assert events.pixel_count.sum() == 1499 and (events.run_id == "mati").all()
