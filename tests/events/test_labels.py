from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.sparse import coo_matrix, csgraph

from burnscape.errors import EventsError
from burnscape.events.labels import label_events, label_spatial, relabel_sequential


def brute_force(dates: np.ndarray, distance: int, gap: int) -> np.ndarray:
    """Components of the pixel graph, by checking every pair of pixels."""
    ys, xs = np.nonzero(dates >= 0)
    d = dates[ys, xs].astype(np.int64)
    near = (
        (np.abs(ys[:, None] - ys[None, :]) <= distance)
        & (np.abs(xs[:, None] - xs[None, :]) <= distance)
        & (np.abs(d[:, None] - d[None, :]) <= gap)
    )
    _, component = csgraph.connected_components(coo_matrix(near), directed=False)
    out = np.zeros(dates.shape, dtype=np.int64)
    out[ys, xs] = component + 1
    return relabel_sequential(out)[0]


@pytest.mark.parametrize("seed", range(40))
def test_label_events_equals_pixel_graph_components(seed):
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(4, 30, size=2)
    distance, gap = int(rng.integers(1, 6)), int(rng.integers(0, 8))
    burned = rng.random((rows, cols)) < rng.uniform(0.05, 0.5)
    dates = np.where(burned, rng.integers(0, 25, (rows, cols)), -1).astype(np.int32)
    labels, n = label_events(dates, distance, gap)
    expected = brute_force(dates, distance, gap)
    np.testing.assert_array_equal(labels, expected)
    assert n == expected.max()


def test_label_events_distance_one_is_eight_connected_labelling():
    rng = np.random.default_rng(3)
    burned = rng.random((200, 300)) < 0.4
    dates = np.where(burned, 100, -1).astype(np.int32)
    labels, n = label_events(dates, 1, 16)
    reference, m = ndimage.label(burned, structure=np.ones((3, 3)))
    assert n == m
    np.testing.assert_array_equal(labels, relabel_sequential(reference)[0])


def test_label_events_splits_touching_fires_a_gap_apart():
    dates = np.full((5, 8), -1, dtype=np.int32)
    dates[1:4, 0:4] = 10
    dates[1:4, 4:8] = 27  # adjacent, 17 days later
    labels, n = label_events(dates, max_distance_px=1, max_gap_days=16)
    assert n == 2
    assert set(np.unique(labels[dates == 10])) == {1}
    assert set(np.unique(labels[dates == 27])) == {2}
    _, n_joined = label_events(dates, max_distance_px=1, max_gap_days=17)
    assert n_joined == 1


def test_label_events_chains_dates_through_intermediate_days():
    # day 0 and day 30 never touch, but day 15 pixels bridge them in time and space
    dates = np.full((1, 9), -1, dtype=np.int32)
    dates[0, 0:3], dates[0, 3:6], dates[0, 6:9] = 0, 15, 30
    assert label_events(dates, 1, 16)[1] == 1
    # the same dates, but the day-0 and day-30 pixels adjacent: no direct link
    dates = np.array([[0, 30, -1, -1, 15]], dtype=np.int32)
    assert label_events(dates, 1, 16)[1] == 3
    assert label_events(dates, 3, 16)[1] == 2  # 30 and 15 link, 0 is 4 away
    assert label_events(dates, 4, 16)[1] == 1


def test_label_events_max_distance_bridges_gaps():
    mask = np.zeros((1, 20), dtype=bool)
    mask[0, [0, 8, 17]] = True
    dates = np.where(mask, 5, -1).astype(np.int32)
    assert label_events(dates, 8, 16)[1] == 2  # 0-8 linked, 8-17 is 9 apart
    assert label_events(dates, 9, 16)[1] == 1
    assert label_spatial(mask, 7)[1] == 3


def test_label_events_drops_small_events_and_renumbers():
    dates = np.full((6, 6), -1, dtype=np.int32)
    dates[0, 0] = 1
    dates[3:6, 3:6] = 1
    labels, n = label_events(dates, 1, 0, min_pixels=2)
    assert n == 1 and labels[0, 0] == 0 and (labels[3:, 3:] == 1).all()


def test_label_events_rejects_float_dates():
    with pytest.raises(EventsError, match="2-D integer array"):
        label_events(np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(EventsError, match="max_distance_px must be >= 1"):
        label_events(np.zeros((3, 3), dtype=np.int32), max_distance_px=0)
