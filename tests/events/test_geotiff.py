from __future__ import annotations

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS

from burnscape.events.geotiff import BAND_DESCRIPTIONS, write_event_geotiff


def test_event_geotiff_is_a_cog_with_overviews(tmp_path):
    rows, cols = 700, 900
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = (yy - 350) ** 2 + (xx - 450) ** 2 < 330**2
    burn_date = 17340 + (xx // 100)
    confidence = np.linspace(0.5, 1.0, rows * cols).reshape(rows, cols)
    path = write_event_geotiff(
        tmp_path / "event.tif",
        confidence,
        burn_date,
        inside,
        Affine(30, 0, 600000, 0, -30, 4400000),
        CRS.from_epsg(32610),
        tags={"event_id": "e", "run_id": "r"},
    )
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.descriptions == BAND_DESCRIPTIONS
        assert src.block_shapes == [(256, 256)] * 2
        assert src.overviews(1) == src.overviews(2) == [2, 4]
        assert src.tags()["event_id"] == "e"
        full = src.read()
        coarse = src.read(out_shape=(2, rows // 4, cols // 4))
    assert np.isnan(full[:, ~inside]).all()
    assert np.isfinite(full[:, inside]).all()
    np.testing.assert_array_equal(full[1][inside], burn_date[inside])
    # nearest-neighbour overviews keep whole days
    days = coarse[1][np.isfinite(coarse[1])]
    assert days.size and set(np.unique(days)) <= set(np.unique(burn_date[inside]))
