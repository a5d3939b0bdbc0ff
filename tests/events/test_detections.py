from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from burnscape.config import RegionConfig
from burnscape.errors import EmptyResultWarning
from burnscape.events.detections import (
    active_fires_frame,
    burned_from_detections,
    local_solar_days,
)

REGION = RegionConfig(
    name="test",
    crs="EPSG:32611",
    bbox=(300000, 4100000, 310000, 4110000),
    pixel_size=375,
)
TO_LONLAT = Transformer.from_crs(32611, 4326, always_xy=True)


def detections(
    points: list[tuple[float, float, str]], size_km: float = 0.375
) -> gpd.GeoDataFrame:
    """Detections at UTM 11N (x, y) with UTC times."""
    lon, lat = TO_LONLAT.transform([p[0] for p in points], [p[1] for p in points])
    frame = pd.DataFrame(
        {
            "longitude": lon,
            "latitude": lat,
            "acquired": pd.to_datetime([p[2] for p in points], utc=True),
            "DS": size_km,
            "DT": size_km,
            "instrument": "VIIRS",
        }
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs=4326)


def test_local_solar_day_follows_longitude():
    frame = pd.DataFrame(
        {
            "acquired": pd.to_datetime(
                ["2020-09-06T03:00Z", "2020-09-06T03:00Z"], utc=True
            ),
            "longitude": [-120.0, 30.0],
        }
    )
    days = local_solar_days(frame)
    # 03:00 UTC is 19:00 the day before at 120 W, 05:00 the same day at 30 E
    assert days.tolist() == [18510, 18511]


def test_first_detection_gives_the_burn_date():
    cell = (300000 + 375 * 4.5, 4110000 - 375 * 4.5)  # centre of cell (row 4, col 4)
    frame = detections(
        [
            (*cell, "2020-09-08T21:00Z"),
            (*cell, "2020-09-06T21:00Z"),  # the first one: 13:00 local on 09-06
            (*cell, "2020-09-07T10:00Z"),
        ]
    )
    burned = burned_from_detections(frame, REGION)
    assert burned.burn_date.shape == REGION.shape
    assert int(burned.burned.sum()) == 1
    assert int(burned.burn_date.values[4, 4]) == 18511  # 2020-09-06
    assert int(burned.detection_count.values[4, 4]) == 3
    assert burned.rio.crs.to_epsg() == 32611
    assert burned.attrs["detector"] == "active-fire-detections"


def test_footprint_covers_the_cells_of_a_large_detection():
    centre = (300000 + 375 * 10, 4110000 - 375 * 10)  # a cell corner
    burned = burned_from_detections(
        detections([(*centre, "2020-09-06T21:00Z")], 0.75), REGION
    )
    rows, cols = np.nonzero(burned.burned.values)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9, 10, 9, 10)


def test_no_detection_on_the_grid_warns():
    with pytest.warns(EmptyResultWarning, match="no detection"):
        burned = burned_from_detections(
            detections([(0, 0, "2020-09-06T21:00Z")]), REGION
        )
    assert int(burned.burned.sum()) == 0


def test_active_fires_are_tagged_with_their_event():
    from shapely.geometry import MultiPolygon, box

    frame = detections(
        [(305000, 4105000, "2020-09-06T21:00Z"), (301000, 4101000, "2020-09-06T21:00Z")]
    )
    lon, lat = TO_LONLAT.transform(305000, 4105000)
    events = gpd.GeoDataFrame(
        {"event_id": ["fire-a"]},
        geometry=[MultiPolygon([box(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)])],
        crs=4326,
    )
    layer = active_fires_frame(frame, events, "run")
    assert layer.event_id.iloc[0] == "fire-a" and pd.isna(layer.event_id.iloc[1])
    assert layer.acq_date.tolist() == ["2020-09-06", "2020-09-06"]
    assert layer.acquired.iloc[0] == "2020-09-06T21:00:00Z"
    assert (layer.run_id == "run").all() and layer.crs.to_epsg() == 4326
