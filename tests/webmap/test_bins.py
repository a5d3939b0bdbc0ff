"""Tests of burnscape.publish.webmap.bins against brute force and the OGC provider."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pygeoapi.plugin import load_plugin

from burnscape.errors import PublishError
from burnscape.publish._time import parse_datetime_parameter
from burnscape.publish.webmap.bins import MAX_CELLS_PER_AXIS, BinQuery, bin_layer

from .conftest import COLS, NORTH, ROWS, STEP, WEST, small_fires, small_pixels

GRID_BBOX = (WEST, NORTH - ROWS * STEP, WEST + COLS * STEP, NORTH)
EPOCH = dt.date(1970, 1, 1)


def brute_force(
    lon: np.ndarray, lat: np.ndarray, bbox: tuple[float, ...], nx: int, ny: int
) -> dict[tuple[int, int], int]:
    """Count points per cell (centres outside go to the nearest edge cell)."""
    minx, miny, maxx, maxy = bbox
    i = np.clip(((lon - minx) / ((maxx - minx) / nx)).astype(int), 0, nx - 1)
    j = np.clip(((lat - miny) / ((maxy - miny) / ny)).astype(int), 0, ny - 1)
    keys, counts = np.unique(np.stack([i, j], axis=1), axis=0, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(keys, counts, strict=True)}


def as_dict(result: dict) -> dict[tuple[int, int], int]:
    cells = result["cells"]
    return {
        (i, j): c
        for i, j, c in zip(cells["i"], cells["j"], cells["count"], strict=True)
    }


def provider(path: Path, table: str, time_field: str):
    return load_plugin(
        "provider",
        {
            "type": "feature",
            "name": "burnscape.publish.geopackage.GeoPackageProvider",
            "data": str(path),
            "table": table,
            "time_field": time_field,
        },
    )


def test_bins_of_points_equal_brute_force_counts(small_outputs: Path) -> None:
    fires = small_fires()
    query = BinQuery(bbox=GRID_BBOX, nx=7, ny=5)

    result = bin_layer(
        small_outputs / "burnscape.gpkg",
        "active_fires",
        query,
        time_field="acq_date",
        value_field="frp",
    )

    expected = brute_force(
        fires.geometry.x.values, fires.geometry.y.values, GRID_BBOX, 7, 5
    )
    assert as_dict(result) == expected
    assert result["numberMatched"] == len(fires) == 400
    assert result["cell_size"] == pytest.approx([0.3 / 7, 0.2 / 5])
    assert max(result["cells"]["frp_max"]) == pytest.approx(fires["frp"].max())


def test_bins_summarise_dates_and_confidence_per_cell(small_outputs: Path) -> None:
    pixels = small_pixels()
    # one cell per 6 columns: each column block burned on one day
    query = BinQuery(bbox=GRID_BBOX, nx=5, ny=1)

    result = bin_layer(
        small_outputs / "burnscape.gpkg",
        "burned_pixels",
        query,
        time_field="burn_date",
        value_field="confidence",
    )

    cells = result["cells"]
    assert cells["i"] == [0, 1, 2, 3, 4]
    assert cells["count"] == [6 * ROWS] * 5
    first = (dt.date(2021, 8, 1) - EPOCH).days
    assert cells["day_min"] == [first + k for k in range(5)]
    assert cells["day_max"] == cells["day_min"]
    block = np.tile(np.arange(COLS), ROWS) // 6  # pixels are in row-major order
    means = pixels.groupby(block)["confidence"].mean().tolist()
    assert cells["confidence_mean"] == pytest.approx(means, abs=1e-4)


@pytest.mark.parametrize(
    ("bbox", "datetime_"),
    [
        (GRID_BBOX, "2021-08-02/2021-08-03"),
        ((10.051, 45.033, 10.177, 45.149), None),  # cuts through pixels
        ((10.051, 45.033, 10.177, 45.149), "2021-08-02"),
        ((10.1, 45.0, 10.35, 45.25), "../2021-08-02"),
        # a bare end date ends at the day's last instant, not the next midnight
        (GRID_BBOX, "2021-08-01/2021-08-02"),
        # a day-long record meets an interval that starts during its day
        (GRID_BBOX, "2021-08-02T12:00:00Z/2021-08-03T06:00:00Z"),
    ],
)
def test_bins_total_equals_provider_number_matched(
    small_outputs: Path, bbox: tuple[float, ...], datetime_: str | None
) -> None:
    gpkg = small_outputs / "burnscape.gpkg"
    interval = parse_datetime_parameter(datetime_)

    for table, field, value in (
        ("burned_pixels", "burn_date", "confidence"),
        ("active_fires", "acq_date", "frp"),
    ):
        result = bin_layer(
            gpkg,
            table,
            BinQuery(tuple(bbox), 16, 9, interval),
            time_field=field,
            value_field=value,
        )
        matched = provider(gpkg, table, field).query(
            resulttype="hits", bbox=list(bbox), datetime_=datetime_
        )["numberMatched"]
        assert result["numberMatched"] == matched, table
        assert matched > 0


def test_bins_datetime_interval_counts_the_days_in_it(small_outputs: Path) -> None:
    fires = small_fires()
    interval = parse_datetime_parameter("2021-08-01T12:00:00Z/2021-08-02T06:00:00Z")
    query = BinQuery(GRID_BBOX, 3, 3, interval)

    result = bin_layer(
        small_outputs / "burnscape.gpkg", "active_fires", query, time_field="acq_date"
    )

    start = pd.Timestamp("2021-08-01T12:00:00Z")
    end = pd.Timestamp("2021-08-02T06:00:00Z")
    inside = fires[(fires["acq_date"] >= start) & (fires["acq_date"] <= end)]
    assert result["numberMatched"] == len(inside) > 0
    assert "frp_mean" not in result["cells"]


def test_bins_outside_the_data_are_empty(small_outputs: Path) -> None:
    result = bin_layer(
        small_outputs / "burnscape.gpkg",
        "burned_pixels",
        BinQuery((0.0, 0.0, 1.0, 1.0), 4, 4),
        time_field="burn_date",
    )

    assert result["numberMatched"] == 0
    assert result["cells"]["count"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bbox": (10.0, 45.0, 9.0, 46.0), "nx": 4, "ny": 4}, "antimeridian"),
        ({"bbox": (10.0, 45.0, 11.0, 45.0), "nx": 4, "ny": 4}, "empty"),
        ({"bbox": (10.0, 45.0, 11.0, 46.0), "nx": 0, "ny": 4}, "nx must be between"),
        (
            {"bbox": (10.0, 45.0, 11.0, 46.0), "nx": 4, "ny": MAX_CELLS_PER_AXIS + 1},
            "ny must be between 1 and 512",
        ),
    ],
)
def test_bin_query_rejects_bad_grids(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BinQuery(**kwargs)


def test_bins_name_a_missing_column(small_outputs: Path) -> None:
    with pytest.raises(PublishError, match="no column 'brightness'"):
        bin_layer(
            small_outputs / "burnscape.gpkg",
            "active_fires",
            BinQuery(GRID_BBOX, 2, 2),
            time_field="acq_date",
            value_field="brightness",
        )


def test_bins_need_a_time_field_to_filter_by_date(small_outputs: Path) -> None:
    query = BinQuery(GRID_BBOX, 2, 2, parse_datetime_parameter("2021-08-01"))

    with pytest.raises(PublishError, match="no time field"):
        bin_layer(
            small_outputs / "burnscape.gpkg", "active_fires", query, time_field=None
        )
