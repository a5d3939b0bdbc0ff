from __future__ import annotations

import numpy as np
import pyogrio
import pytest
from affine import Affine
from pyproj import CRS

from burnscape.config import EventsConfig
from burnscape.events import extract_events
from burnscape.events.geometry import pixel_areas_m2, polygonize_labels

WGS84 = CRS.from_epsg(4326)
RING = [[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]]
CHECKERBOARD = [[1, 0], [0, 1]]
RES = 0.001


@pytest.mark.parametrize(("pattern", "pixels"), [(RING, 8), (CHECKERBOARD, 2)])
def test_handed_patterns_give_valid_geometry_of_exact_pixel_area(
    pattern, pixels, write_burned, tmp_path
):
    transform = Affine(RES, 0, -8.2, 0, -RES, 40.0)
    mask = np.array(pattern, dtype=bool)
    dates = np.where(mask, 17340, -1).astype(np.int32)
    summary = extract_events(
        write_burned(dates, transform=transform, crs="EPSG:4326"),
        tmp_path,
        EventsConfig(max_distance_px=1),
        run_id="handed",
    )
    assert summary.n_events == 1
    events = pyogrio.read_dataframe(summary.store, layer="fire_events")
    geometry = events.geometry.iloc[0]
    assert geometry.is_valid and geometry.geom_type == "MultiPolygon"
    assert geometry.area == pytest.approx(pixels * RES**2, rel=1e-9)
    expected_m2 = pixel_areas_m2(
        transform, WGS84, slice(0, len(pattern)), slice(0, len(pattern))
    )
    assert events.area_ha.iloc[0] == pytest.approx(
        expected_m2[mask].sum() / 1e4, abs=1e-4
    )
    assert events.pixel_count.iloc[0] == pixels


def test_polygonize_labels_ring_keeps_the_hole():
    labels = np.array(RING, dtype=np.int32)
    polygon = polygonize_labels(labels, Affine(1, 0, 0, 0, -1, 4))[1]
    assert polygon.is_valid and polygon.area == 8
    assert not polygon.contains(polygon.centroid)


def test_square_near_florianopolis_has_geodesic_area(write_burned, tmp_path):
    # -48.5 .. -48.4 E, -27.5 .. -27.4 N at 0.001 deg: 100 x 100 pixels
    transform = Affine(RES, 0, -48.5, 0, -RES, -27.4)
    dates = np.full((100, 100), 18000, dtype=np.int32)
    summary = extract_events(
        write_burned(dates, transform=transform, crs="EPSG:4326"),
        tmp_path,
        EventsConfig(),
        run_id="square",
    )
    assert summary.main_event is not None
    assert summary.main_event["area_ha"] == pytest.approx(10954, rel=0.005)
    assert summary.main_event["centroid_lon"] == pytest.approx(-48.45)
    assert summary.main_event["centroid_lat"] == pytest.approx(-27.45)


def test_pixel_at_60_north_has_half_the_equator_area():
    size = 0.0041667
    equator = pixel_areas_m2(
        Affine(size, 0, 0, 0, -size, size / 2), WGS84, slice(0, 1), slice(0, 1)
    )
    north = pixel_areas_m2(
        Affine(size, 0, 0, 0, -size, 60 + size / 2), WGS84, slice(0, 1), slice(0, 1)
    )
    assert equator[0, 0] / north[0, 0] == pytest.approx(1.98, abs=0.005)
    assert equator[0, 0] == pytest.approx(21.4e4, rel=0.01)  # ~463 m x 461 m


def test_pixel_areas_on_utm_grid_follow_the_scale_factor():
    # UTM 10N at 600 km easting: scale factor ~0.99972, so a 30 m pixel is ~900.5 m2
    areas = pixel_areas_m2(
        Affine(30, 0, 600000, 0, -30, 4400000),
        CRS.from_epsg(32610),
        slice(0, 2),
        slice(0, 2),
    )
    assert areas == pytest.approx(np.full((2, 2), 900.5), abs=0.01)
    # near the central meridian (k = 0.9996) pixels are larger still
    central = pixel_areas_m2(
        Affine(30, 0, 500000, 0, -30, 4400000),
        CRS.from_epsg(32610),
        slice(0, 1),
        slice(0, 1),
    )
    assert central[0, 0] == pytest.approx(900 / 0.9996**2, rel=1e-4)
