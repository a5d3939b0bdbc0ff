from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from burnscape.errors import EventsError
from burnscape.events.chunked import label_events_chunked
from burnscape.events.labels import label_events


def random_dates(seed: int, shape=(60, 70)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    burned = rng.random(shape) < rng.uniform(0.03, 0.4)
    return np.where(burned, rng.integers(0, 30, shape), -1).astype(np.int32)


@pytest.mark.parametrize("seed", range(8))
def test_chunked_labelling_equals_whole_array_labelling(seed, tmp_path):
    rng = np.random.default_rng(100 + seed)
    dates = random_dates(seed)
    distance, gap, min_pixels = int(rng.integers(1, 6)), int(rng.integers(0, 10)), 3
    chunks = (
        int(rng.integers(max(distance, 8), 30)),
        int(rng.integers(max(distance, 8), 30)),
    )
    result = label_events_chunked(
        da.from_array(dates, chunks=chunks), tmp_path, distance, gap, min_pixels
    )
    with dask.config.set(scheduler="sync"):
        labels = result.labels.compute()
    expected, n = label_events(dates, distance, gap, min_pixels)
    assert result.n == n
    np.testing.assert_array_equal(labels, expected)
    assert result.pixel_counts.tolist() == np.bincount(expected.ravel())[1:].tolist()


def test_fire_crossing_four_chunks_is_one_event(tmp_path):
    dates = np.full((40, 40), -1, dtype=np.int32)
    dates[15:25, 15:25] = 100  # straddles the chunk corner at (20, 20)
    dates[5, 5], dates[12, 12] = 100, 100  # 7 px apart diagonally: joined at d=8
    result = label_events_chunked(da.from_array(dates, chunks=20), tmp_path, 8, 16)
    assert result.n == 1
    assert result.window(1) == (slice(5, 25), slice(5, 25))
    labels = result.labels.compute(scheduler="sync")
    assert (labels[dates >= 0] == 1).all() and (labels[dates < 0] == 0).all()


def test_seam_links_respect_the_date_gap(tmp_path):
    dates = np.full((10, 20), -1, dtype=np.int32)
    dates[:, :10] = 0
    dates[:, 10:] = 40  # touches across the seam at column 10, 40 days later
    result = label_events_chunked(da.from_array(dates, chunks=10), tmp_path, 1, 16)
    assert result.n == 2


def test_chunks_narrower_than_distance_are_refused(tmp_path):
    dates = da.zeros((20, 20), dtype=np.int32, chunks=4)
    with pytest.raises(EventsError, match="narrower than max_distance_px=8"):
        label_events_chunked(dates, tmp_path, 8, 16)


@pytest.mark.integration
def test_chunked_labelling_on_local_cluster(dask_client, tmp_path):
    dates = random_dates(7, shape=(300, 260))
    result = label_events_chunked(da.from_array(dates, chunks=64), tmp_path, 4, 5, 2)
    expected, n = label_events(dates, 4, 5, 2)
    assert result.n == n
    np.testing.assert_array_equal(result.labels.compute(), expected)
