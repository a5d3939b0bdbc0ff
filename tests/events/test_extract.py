from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import zarr
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

    day1_ids = sorted(events.event_id)
    extract_events(burned, out, EventsConfig(min_pixels=5), run_id="day-2")
    events = pyogrio.read_dataframe(again.store, layer="fire_events")
    # the next day's run keeps the ids and supersedes day-1's versions
    assert sorted(events.run_id) == ["day-2", "day-2"]
    assert sorted(events.event_id) == day1_ids


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
    assert "written to" in result.output
    events = pyogrio.read_dataframe(tmp_path / "burnscape.gpkg", layer="fire_events")
    assert events.pixel_count.sum() == 1499 and (events.run_id == "mati").all()


def test_event_keeps_its_id_as_its_footprint_grows(write_burned, tmp_path):
    out = tmp_path / "out"
    day1 = np.full((40, 40), -1, dtype=np.int32)
    day1[18:21, 18:21] = DAY
    first = extract_events(write_burned(day1), out, EventsConfig(), run_id="d1")
    day2 = day1.copy()
    day2[10:30, 10:30] = np.where(day1[10:30, 10:30] >= 0, DAY, DAY + 1)
    second = extract_events(write_burned(day2), out, EventsConfig(), run_id="d2")
    day3 = day2.copy()
    day3[0:40, 5:35] = np.where(day2[0:40, 5:35] >= 0, day2[0:40, 5:35], DAY + 2)
    day3[38, 0] = DAY - 3  # a new earlier pixel far away: another event
    third = extract_events(write_burned(day3), out, EventsConfig(), run_id="d3")
    assert first.main_event["event_id"] == second.main_event["event_id"]
    assert third.main_event["event_id"] == first.main_event["event_id"]
    assert third.n_events == 2
    events = pyogrio.read_dataframe(third.store, layer="fire_events")
    # one current version of each fire: the latest run's
    assert events.event_id.is_unique and len(events) == 2
    assert set(events.run_id) == {"d3"}


def test_merging_fires_keep_the_id_of_the_first_to_start(write_burned, tmp_path):
    out = tmp_path / "out"
    early = np.full((20, 40), -1, dtype=np.int32)
    early[5:10, 2:8] = DAY
    early[5:10, 30:36] = DAY + 3
    before = extract_events(write_burned(early), out, EventsConfig(), run_id="a")
    ids = pyogrio.read_dataframe(before.store, layer="fire_events").event_id.tolist()
    merged = early.copy()
    merged[6:8, 8:30] = DAY + 4
    after = extract_events(write_burned(merged), out, EventsConfig(), run_id="b")
    assert after.n_events == 1
    assert after.main_event["event_id"] == ids[0]


def test_daily_progression_accumulates_area(write_burned, tmp_path):
    dates = np.full((30, 30), -1, dtype=np.int32)
    dates[10:15, 10:15] = DAY
    dates[10:15, 15:25] = DAY + 1
    dates[15:25, 10:25] = DAY + 3
    summary = extract_events(write_burned(dates), tmp_path, EventsConfig(), run_id="r")
    days = pyogrio.read_dataframe(summary.store, layer="daily_progression")
    assert days.date.tolist() == ["2018-06-09", "2018-06-10", "2018-06-12"]
    assert days.day_index.tolist() == [0, 1, 3]
    assert days.pixel_count.tolist() == [25, 50, 150]
    assert days.cumulative_pixel_count.tolist() == [25, 75, 225]
    assert days.cumulative_area_ha.iloc[-1] == pytest.approx(
        summary.main_event["area_ha"]
    )
    assert np.diff(days.cumulative_area_ha).min() > 0
    assert (
        days.is_valid.all() and (days.event_id == summary.main_event["event_id"]).all()
    )
    assert days.geometry.iloc[1].area == pytest.approx(
        2 * days.geometry.iloc[0].area, rel=1e-3
    )


def test_chunked_extraction_equals_in_memory_extraction(write_burned, tmp_path):
    rng = np.random.default_rng(5)
    dates = np.where(
        rng.random((60, 70)) < 0.25, DAY + rng.integers(0, 40, (60, 70)), -1
    )
    burned = write_burned(dates.astype(np.int32))
    params = EventsConfig(max_distance_px=3, max_gap_days=5, min_pixels=4)
    whole = extract_events(burned, tmp_path / "a", params, run_id="r", chunked=False)
    pieces = extract_events(
        burned, tmp_path / "b", params, run_id="r", chunked=True, chunk_size=24
    )
    assert whole.n_events == pieces.n_events > 10
    for layer in ("fire_events", "daily_progression", "burned_pixels"):
        a = pyogrio.read_dataframe(whole.store, layer=layer)
        b = pyogrio.read_dataframe(pieces.store, layer=layer)
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), layer
        assert a.geometry.geom_equals_exact(b.geometry, tolerance=0).all(), layer
    assert [digest(p) for p in whole.geotiffs] == [digest(p) for p in pieces.geotiffs]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "year", "pixels", "first", "last"),
    [
        ("ba100m_PT2017_1", 2017, 53276, "2017-06-17", "2017-06-22"),
        ("ba100m_PT2018_1", 2018, 30379, "2018-08-03", "2018-08-14"),
        ("ba100m_Attica2018_1", 2018, 5775, "2018-07-23", "2018-07-25"),
        ("ba100m_Attica2018_2", 2018, 1499, "2018-07-24", "2018-07-26"),
        ("ba100m_FRiv2017_1", 2017, 726, "2017-07-25", "2017-07-26"),
        ("ba100m_FRiv2017_2", 2017, 1961, "2017-07-26", "2017-07-27"),
    ],
)
def test_real_banet_events_match_their_provenance(
    banet_dir, tmp_path, name, year, pixels, first, last
):
    burned = burned_from_banet_geotiff(banet_dir / f"{name}.tif", year)
    burned.to_zarr(tmp_path / "burned.zarr", mode="w", consolidated=True)
    summary = extract_events(
        tmp_path / "burned.zarr", tmp_path, EventsConfig(max_distance_px=8), run_id=name
    )
    events = pyogrio.read_dataframe(summary.store, layer="fire_events")
    assert events.pixel_count.sum() == pixels
    assert (events.first_burn_date.min(), events.last_burn_date.max()) == (first, last)
    assert events.is_valid.all()
    # geodesic area: 0.001 deg pixels are ~111 m tall and 111 m x cos(lat) wide
    lat = np.radians(events.centroid_lat.iloc[0])
    assert events.area_ha.sum() == pytest.approx(
        pixels * 1.11 * 1.113 * np.cos(lat), rel=0.01
    )
    days = pyogrio.read_dataframe(summary.store, layer="daily_progression")
    assert days.groupby("event_id").cumulative_pixel_count.max().sum() == pixels


def test_events_command_needs_one_input(tmp_path):
    from click.testing import CliRunner

    from burnscape.cli import main

    result = CliRunner().invoke(main, ["events", "-o", str(tmp_path)])
    assert result.exit_code != 0
    assert "give either BURNED or --workflow" in result.output


def test_event_confidence_statistics_and_inputs(write_burned, tmp_path):
    dates = two_fires()
    confidence = np.where(dates >= 0, 0.5, 0.0)
    confidence[5:25, 5:30] = 0.6
    confidence[12, 33] = 0.97  # the joined part of the first fire
    path = write_burned(dates, confidence=confidence)
    group = zarr.open_group(path, mode="r+")
    group.attrs["inputs"] = '["scene-a.tif", "scene-b.tif"]'
    zarr.consolidate_metadata(path)
    summary = extract_events(path, tmp_path, EventsConfig(min_pixels=5), run_id="r")
    main = summary.main_event
    assert main is not None and main["pixel_count"] == 600
    assert main["confidence_max"] == pytest.approx(0.97)
    assert main["confidence_mean"] == pytest.approx((500 * 0.6 + 99 * 0.5 + 0.97) / 600)
    events = pyogrio.read_dataframe(summary.store, layer="fire_events")
    assert (events.inputs == '["scene-a.tif", "scene-b.tif"]').all()
    assert (events.run_id == "r").all() and (events.detector == "synthetic").all()


@pytest.mark.parametrize(("metres", "n_events"), [(100.0, 2), (120.0, 1)])
def test_join_distance_in_metres_becomes_whole_pixels(
    write_burned, tmp_path, metres, n_events
):
    # Two 3x3 fires on the 30 m UTM grid, 4 pixels (120 m) apart edge to edge.
    dates = np.full((20, 20), -1, dtype=np.int32)
    dates[5:8, 2:5] = DAY
    dates[5:8, 8:11] = DAY + 1
    params = EventsConfig(max_distance_m=metres)
    summary = extract_events(write_burned(dates), tmp_path, params, run_id="m")
    assert summary.n_events == n_events


def test_join_distance_in_metres_on_a_geographic_grid(write_burned, tmp_path):
    # 0.001 degree at 45 N: about 79 m east-west, 111 m north-south (~94 m square)
    dates = np.full((20, 20), -1, dtype=np.int32)
    dates[5:8, 2:5] = DAY
    dates[5:8, 7:10] = DAY  # 3 pixels apart
    transform = Affine(0.001, 0, 10.0, 0, -0.001, 45.0)
    burned = write_burned(dates, transform=transform, crs="EPSG:4326")
    near = extract_events(
        burned, tmp_path / "a", EventsConfig(max_distance_m=200), run_id="a"
    )
    far = extract_events(
        burned, tmp_path / "b", EventsConfig(max_distance_m=300), run_id="b"
    )
    assert (near.n_events, far.n_events) == (2, 1)


def test_join_distance_in_pixels_and_metres_is_refused():
    with pytest.raises(ValueError, match="not both"):
        EventsConfig(max_distance_px=2, max_distance_m=100)
    assert EventsConfig(max_distance_m=100).distance_px(30.0) == 3
    assert EventsConfig(max_distance_m=10).distance_px(30.0) == 1


def test_cli_joins_by_metres_and_refuses_both_distances(write_burned, tmp_path):
    from click.testing import CliRunner

    from burnscape.cli import main

    dates = np.full((20, 20), -1, dtype=np.int32)
    dates[5:8, 2:5] = DAY
    dates[5:8, 8:11] = DAY + 1
    burned = str(write_burned(dates))
    runner = CliRunner()
    both = runner.invoke(
        main,
        ["events", burned, "-o", str(tmp_path / "a"), "--max-distance-px", "2"]
        + ["--max-distance-m", "60"],
    )
    assert both.exit_code == 2 and "--max-distance-m" in both.output
    joined = runner.invoke(
        main, ["events", burned, "-o", str(tmp_path / "b"), "--max-distance-m", "120"]
    )
    assert joined.exit_code == 0, joined.output
    assert joined.output.startswith("1 fire event written")


def test_cli_workflow_writes_to_the_given_store_and_refuses_grid_options(
    tmp_path, banet_dir
):
    from click.testing import CliRunner

    from burnscape.cli import main

    workflow = Path(__file__).parents[2] / "workflows" / "banet-events-europe.yml"
    runner = CliRunner()
    refused = runner.invoke(
        main, ["events", "-w", str(workflow), "--min-pixels", "3", "-o", str(tmp_path)]
    )
    assert refused.exit_code == 2 and "--min-pixels cannot be used" in refused.output
    unknown = runner.invoke(
        main,
        ["events", "-w", str(workflow), "--store", "foo://bar", "-o", str(tmp_path)],
    )
    assert unknown.exit_code == 1 and "unknown events store" in unknown.output
    store = tmp_path / "elsewhere.gpkg"
    done = runner.invoke(
        main,
        ["events", "-w", str(workflow), "--store", str(store), "-o", str(tmp_path)],
    )
    assert done.exit_code == 0, done.output
    assert str(store) in done.output and store.exists()
    assert not (tmp_path / "burnscape.gpkg").exists()
