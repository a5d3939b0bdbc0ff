"""Small synthetic workflows with a local mirror, for cluster and daily-run tests.

Each builder writes the granule files into ``mirror/<folder>/`` and a workflow
YAML whose static items point at them, so that ``burnscape run WF --mirror
mirror`` runs every stage offline through the local STAC mirror.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import rasterio
import yaml
from rasterio.transform import from_origin

from tests.cube.granules import TILE_LR, TILE_UL, write_vnp09ga

PAIR_BANDS = {"nir": "B5", "swir1": "B6", "swir2": "B7"}


def write_pair_workflow(root: Path, size: int = 64, chunk_size: int = 32) -> Path:
    """Write a Landsat-like pre/post pair (UTM 10N, 30 m) and its workflow.

    The post scene has a burned square (NIR down, SWIR2 up) in its north-west
    quarter; reflectance is stored as Landsat L1 DN (2e-5 * DN - 0.1, 0 = fill).
    """
    rng = np.random.default_rng(42)
    folder = root / "mirror" / "synth"
    transform = from_origin(500000, 4000000 + size * 30, 30, 30)
    base = {"nir": 0.30, "swir1": 0.20, "swir2": 0.10}
    items = []
    for item, when in (
        ("pre", "2024-06-10T18:40:00Z"),
        ("post", "2024-07-12T18:40:00Z"),
    ):
        assets = {}
        for band, key in PAIR_BANDS.items():
            values = base[band] + rng.normal(0, 0.01, (size, size))
            if item == "post":
                burned = slice(4, size // 2)
                values[burned, burned] = {"nir": 0.08, "swir1": 0.25, "swir2": 0.32}[
                    band
                ]
            dn = np.round((values + 0.1) / 2e-5).astype(np.uint16)
            path = folder / item / f"{key}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                height=size,
                width=size,
                count=1,
                dtype="uint16",
                crs="EPSG:32610",
                transform=transform,
                nodata=0,
            ) as dst:
                dst.write(dn, 1)
            assets[key] = {"path": f"{item}/{key}.tif"}
        items.append({"id": f"synth-{item}", "datetime": when, "assets": assets})
    workflow = {
        "name": "synthetic-pair",
        "region": {
            "name": "synth",
            "crs": "EPSG:32610",
            "bbox": [500000, 4000000, 500000 + size * 30, 4000000 + size * 30],
            "pixel_size": 30,
        },
        "time": {"start": "2024-06-01", "end": "2024-07-31"},
        "sources": [
            {
                "kind": "stac",
                "name": "synth-l8",
                "collection": "synth-l8",
                "origin": "https://example.invalid/synth/",
                "mirror_folder": "synth",
                "bands": PAIR_BANDS,
                "scale": 2.0e-5,
                "offset": -0.1,
                "nodata": 0,
                "items": items,
            }
        ],
        "detector": {"kind": "spectral", "min_area_ha": 0.5},
        "events": {"min_pixels": 4},
        "outputs": {"folder": str(root / "outputs")},
        "cube": {"chunk_size": chunk_size},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"},
    }
    path = root / "synthetic-pair.yml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    return path


VNP_BANDS = {
    "red": "SurfReflect_M5_1",
    "nir": "SurfReflect_M7_1",
    "swir1": "SurfReflect_M10_1",
    "swir2": "SurfReflect_M11_1",
}


def write_daily_granule(folder: Path, day: dt.date, value: int) -> str:
    """Write a VNP09GA-structured granule for ``day``; return its file name."""
    doy = day.timetuple().tm_yday
    name = f"VNP09GA.A{day.year}{doy:03d}.h08v05.002.{day.year}{doy + 2:03d}000000.h5"
    rng = np.random.default_rng(day.toordinal())
    bands = {
        dataset: (value + 300 * k + rng.integers(0, 40, (60, 60))).astype(np.int16)
        for k, dataset in enumerate(VNP_BANDS.values())
    }
    qf1 = np.zeros((60, 60), np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    write_vnp09ga(folder / name, bands, qf1)
    return name


def write_daily_workflow(
    root: Path,
    days: list[dt.date],
    end: dt.date,
    window_days: int = 64,
    origin: str = "https://example.invalid/vnp09ga/",
) -> Path:
    """Write a VNP09GA-like daily workflow over ``days`` ending ``end``.

    The granules sit in ``root/mirror/vnp09ga/``, fetched from ``origin`` (a
    local HTTP server over that folder); granules already there are kept (a
    daily run adds the new day's file). The region is 12 x 12 pixels of tile
    h08v05 on its own sinusoidal grid.
    """
    folder = root / "mirror" / "vnp09ga"
    pixel = (TILE_LR[0] - TILE_UL[0]) / 60
    items = []
    for day in days:
        name = (
            write_daily_granule(folder, day, 800 + 10 * day.day)
            if not any(
                folder.glob(f"VNP09GA.A{day.year}{day.timetuple().tm_yday:03d}.*")
            )
            else next(
                folder.glob(f"VNP09GA.A{day.year}{day.timetuple().tm_yday:03d}.*")
            ).name
        )
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        items.append(
            {
                "id": name.rsplit(".", 2)[0],
                "start_datetime": start.isoformat().replace("+00:00", "Z"),
                "end_datetime": (start + dt.timedelta(hours=23, minutes=59, seconds=59))
                .isoformat()
                .replace("+00:00", "Z"),
                "assets": {"data": {"path": name}},
            }
        )
    workflow = {
        "name": "viirs-daily-test",
        "region": {
            "name": "h08v05-corner",
            "crs": "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m",
            "bbox": [
                TILE_UL[0],
                TILE_UL[1] - 12 * pixel,
                TILE_UL[0] + 12 * pixel,
                TILE_UL[1],
            ],
            "pixel_size": pixel,
        },
        "time": {
            "start": (end - dt.timedelta(days=window_days - 1)).isoformat(),
            "end": end.isoformat(),
        },
        "sources": [
            {
                "kind": "stac",
                "name": "vnp09ga",
                "collection": "VNP09GA",
                "origin": origin,
                "mirror_folder": "vnp09ga",
                "bands": {common: "data" for common in VNP_BANDS},
                "items": items,
                "options": {
                    "variables": VNP_BANDS,
                    "reader": "vnp09ga",
                    "cloud_mask": True,
                    "time_axis": "daily",
                    "window_days": window_days,
                },
            }
        ],
        "detector": {"kind": "spectral"},
        "outputs": {"folder": str(root / "outputs")},
        "cube": {"chunk_size": 16},
        "cluster": {"n_workers": 1, "threads_per_worker": 1, "memory_limit": "1GiB"},
    }
    path = root / "viirs-daily-test.yml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    return path
