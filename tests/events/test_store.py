"""The same suite on both events stores: GeoPackage and PostGIS."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import MultiPolygon, box

from burnscape.config import EventsConfig
from burnscape.errors import StoreError
from burnscape.events import extract_events, open_store

RES = 0.001
RING = [[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]]
CHECKERBOARD = [[1, 0], [0, 1]]


def frame(run_id: str, names: list[str]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "event_id": names,
            "first_burn_date": ["2020-09-05"] * len(names),
            "run_id": run_id,
        },
        geometry=[MultiPolygon([box(i, 0, i + 0.5, 0.5)]) for i in range(len(names))],
        crs=4326,
    )


def test_replace_run_never_duplicates(store_location):
    store = open_store(store_location)
    store.replace_run("fire_events", "a", frame("a", ["x", "y"]))
    store.replace_run("fire_events", "b", frame("b", ["z"]))
    store.replace_run("fire_events", "a", frame("a", ["x", "y", "w"]))
    everything = store.read("fire_events")
    assert sorted(everything.event_id) == ["w", "x", "y", "z"]
    assert store.read("fire_events", run_id="a").event_id.tolist() == ["x", "y", "w"]
    assert (
        store.read("fire_events", run_id="b")
        .geometry.iloc[0]
        .equals(MultiPolygon([box(0, 0, 0.5, 0.5)]))
    )
    assert everything.crs.to_epsg() == 4326


def test_a_later_run_supersedes_the_fires_it_continues(
    store_location, write_burned, tmp_path
):
    """Daily runs with different run ids: one current version per fire."""
    day = 17340
    dates = np.full((30, 30), -1, dtype=np.int32)
    dates[10:13, 10:13] = day
    dates[25:28, 2:5] = day - 20  # an older fire the later runs no longer see
    transform = Affine(RES, 0, 10.0, 0, -RES, 45.0)
    first = write_burned(dates, transform=transform, crs="EPSG:4326")
    extract_events(
        first, tmp_path / "d1", EventsConfig(), run_id="d1", store=store_location
    )
    grown = np.full((30, 30), -1, dtype=np.int32)
    grown[8:16, 8:16] = day + 1
    grown[10:13, 10:13] = day
    second = write_burned(grown, transform=transform, crs="EPSG:4326")
    extract_events(
        second, tmp_path / "d2", EventsConfig(), run_id="d2", store=store_location
    )

    store = open_store(store_location)
    events = store.read("fire_events")
    assert events.event_id.is_unique and len(events) == 2
    current = events.set_index("run_id")
    assert current.loc["d2", "pixel_count"] == 64
    assert current.loc["d1", "pixel_count"] == 9  # the older fire is kept as it was
    pixels = store.read("burned_pixels")
    assert sorted(pixels.groupby("run_id").size().items()) == [("d1", 9), ("d2", 64)]
    days = store.read("daily_progression")
    fire = current.loc["d2", "event_id"]
    assert set(days[days.event_id == fire].run_id) == {"d2"}


def test_replace_run_with_no_rows_empties_the_run(store_location):
    store = open_store(store_location)
    store.replace_run("fire_events", "a", frame("a", ["x"]))
    store.replace_run("fire_events", "a", frame("a", []))
    assert len(store.read("fire_events")) == 0


def test_reading_a_missing_layer_is_a_store_error(store_location):
    with pytest.raises(StoreError, match="no (layer|table) 'fire_events'"):
        open_store(store_location).read("fire_events")


@pytest.mark.parametrize(("pattern", "pixels"), [(RING, 8), (CHECKERBOARD, 2)])
def test_handed_patterns_round_trip_through_the_store(
    pattern, pixels, store_location, write_burned, tmp_path
):
    dates = np.where(np.array(pattern, dtype=bool), 17340, -1).astype(np.int32)
    burned = write_burned(
        dates, transform=Affine(RES, 0, 10.0, 0, -RES, 45.0), crs="EPSG:4326"
    )
    extract_events(
        burned, tmp_path, EventsConfig(), run_id="handed", store=store_location
    )
    events = open_store(store_location).read("fire_events")
    assert len(events) == 1
    geometry = events.geometry.iloc[0]
    assert geometry.is_valid and geometry.geom_type == "MultiPolygon"
    assert geometry.area == pytest.approx(pixels * RES**2, rel=1e-9)
    assert events.pixel_count.iloc[0] == pixels
    cells = open_store(store_location).read("burned_pixels")
    assert len(cells) == pixels and cells.is_valid.all()
    assert cells.area.sum() == pytest.approx(pixels * RES**2, rel=1e-9)


def test_extract_events_rerun_and_daily_runs_in_store(
    store_location, write_burned, tmp_path
):
    day1 = np.full((30, 30), -1, dtype=np.int32)
    day1[10:13, 10:13] = 18510  # 2020-09-05
    day2 = np.where(day1 >= 0, day1, -1)
    day2[8:20, 8:20] = np.where(day1[8:20, 8:20] >= 0, day1[8:20, 8:20], 18511)
    for run_id, dates in (("d1", day1), ("d2", day2), ("d2", day2)):
        summary = extract_events(
            write_burned(dates),
            tmp_path,
            EventsConfig(),
            run_id=run_id,
            store=store_location,
        )
    assert summary.store == store_location
    store = open_store(store_location)
    events = store.read("fire_events")
    # d2 re-run replaced itself; d2 superseded d1's version of the same fire
    assert events.run_id.tolist() == ["d2"]
    assert events.pixel_count.tolist() == [144]
    days = store.read("daily_progression")
    assert days.cumulative_pixel_count.tolist() == [9, 144]
    assert len(store.read("burned_pixels")) == 144


def _indexes(location: str, layer: str) -> tuple[set[str], bool]:
    """Names of the indexes on ``layer``, and whether it has a spatial index."""
    if location.startswith("postgresql"):
        import sqlalchemy

        from burnscape.events.postgis import _driver_url

        engine = sqlalchemy.create_engine(_driver_url(location))
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"
                ),
                {"t": layer},
            ).all()
        engine.dispose()
        spatial = any("USING gist (geometry)" in definition for _, definition in rows)
        return {name for name, _ in rows}, spatial
    import sqlite3

    with sqlite3.connect(location) as connection:
        rows = connection.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('index', 'table')"
        ).fetchall()
    connection.close()
    spatial = any(
        kind == "table" and name.startswith(f"rtree_{layer}_") for kind, name in rows
    )
    return {name for kind, name in rows if kind == "index"}, spatial


def test_layers_have_spatial_run_and_date_indexes(
    store_location, write_burned, tmp_path
):
    dates = np.full((10, 10), -1, dtype=np.int32)
    dates[2:5, 2:5] = 18510
    extract_events(
        write_burned(dates), tmp_path, EventsConfig(), run_id="r", store=store_location
    )
    for layer, date_column in (
        ("fire_events", "first_burn_date"),
        ("daily_progression", "date"),
        ("burned_pixels", "burn_date"),
    ):
        names, spatial = _indexes(store_location, layer)
        assert spatial, layer  # GeoPackage R-tree, PostGIS GiST
        assert {f"idx_{layer}_{date_column}", f"idx_{layer}_run_id"} <= names, layer
