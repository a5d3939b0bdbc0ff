"""Fixtures for the publish stage: tiny outputs folders built in code, a live server.

The stores follow the README's data contracts: burned.zarr and cube.zarr on a 30 m
EPSG:32610 grid near the CHROME 2 fire (spatial_ref written by rioxarray),
burnscape.gpkg written by geopandas/pyogrio with an R-tree index.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import glob
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import shapely
import xarray as xr
from affine import Affine
from pyproj import Transformer

from burnscape.publish.server import find_free_port, make_server, stop_server

ORIGIN_X, ORIGIN_Y, PIXEL_M = 540_000.0, 4_400_010.0, 30.0
ROWS, COLS = 40, 60
EPOCH = dt.date(1970, 1, 1)
FIRE_DAY = (dt.date(2018, 6, 9) - EPOCH).days
LATE_DAY = (dt.date(2018, 6, 20) - EPOCH).days
CUBE_DAYS = [dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3)]
TO_LONLAT = Transformer.from_crs(32610, 4326, always_xy=True)


def grid_coords() -> tuple[np.ndarray, np.ndarray, Affine]:
    """Return pixel-centre x, y and the transform of the test grid."""
    x = ORIGIN_X + PIXEL_M * (np.arange(COLS) + 0.5)
    y = ORIGIN_Y - PIXEL_M * (np.arange(ROWS) + 0.5)
    return x, y, Affine(PIXEL_M, 0, ORIGIN_X, 0, -PIXEL_M, ORIGIN_Y)


def write_burned_zarr(path: Path) -> xr.Dataset:
    """Write a burned.zarr: two patches, burned on FIRE_DAY and LATE_DAY."""
    x, y, transform = grid_coords()
    burn_date = np.full((ROWS, COLS), -1, np.int32)
    burn_date[5:15, 5:20] = FIRE_DAY
    burn_date[25:30, 40:50] = LATE_DAY
    burned = (burn_date >= 0).astype(np.uint8)
    burned[:, -2:] = 255
    confidence = np.where(burned == 1, 0.9, 0.1).astype(np.float32)
    confidence[:, -2:] = np.nan
    dataset = xr.Dataset(
        {
            "burned": (("y", "x"), burned, {"long_name": "burned", "units": "1"}),
            "confidence": (
                ("y", "x"),
                confidence,
                {"long_name": "confidence", "units": "1"},
            ),
            "burn_date": (("y", "x"), burn_date, {"units": "days since 1970-01-01"}),
            "burn_date_min": (
                ("y", "x"),
                burn_date - 3,
                {"units": "days since 1970-01-01"},
            ),
            "burn_date_max": (
                ("y", "x"),
                burn_date,
                {"units": "days since 1970-01-01"},
            ),
            "observation_count": (("y", "x"), np.full((ROWS, COLS), 2, np.int16)),
        },
        coords={"x": x, "y": y},
        attrs={"detector": "spectral"},
    )
    encoding = {
        "burned": {"_FillValue": 255},
        "confidence": {"_FillValue": np.float32(np.nan)},
        **{
            name: {"_FillValue": -1}
            for name in ("burn_date", "burn_date_min", "burn_date_max")
        },
    }
    dataset = dataset.rio.write_crs("EPSG:32610").rio.write_transform(transform)
    dataset.to_zarr(path, mode="w", consolidated=True, encoding=encoding)
    return dataset


def write_cube_zarr(path: Path) -> xr.Dataset:
    """Write a cube.zarr with three daily steps (2024-07-01..03), red and nir."""
    x, y, transform = grid_coords()
    times = np.array([np.datetime64(day, "ns") for day in CUBE_DAYS])
    shape = (len(times), ROWS, COLS)
    red = np.stack([np.full((ROWS, COLS), 0.1 * (i + 1), np.float32) for i in range(3)])
    nir = np.full(shape, 0.3, np.float32)
    dataset = xr.Dataset(
        {
            "red": (
                ("time", "y", "x"),
                red,
                {"units": "1", "long_name": "red reflectance"},
            ),
            "nir": (
                ("time", "y", "x"),
                nir,
                {"units": "1", "long_name": "NIR reflectance"},
            ),
            "valid_pixels": (("time",), np.full(3, ROWS * COLS, np.int64)),
            "day_complete": (("time",), np.ones(3, np.uint8)),
            "observation_count": (("y", "x"), np.full((ROWS, COLS), 3, np.int16)),
        },
        coords={"time": times, "x": x, "y": y},
    )
    dataset = dataset.rio.write_crs("EPSG:32610").rio.write_transform(transform)
    encoding = {
        "time": {"units": "days since 1970-01-01", "dtype": "int64"},
        "red": {"_FillValue": np.float32(np.nan)},
        "nir": {"_FillValue": np.float32(np.nan)},
    }
    dataset.to_zarr(path, mode="w", consolidated=True, encoding=encoding)
    return dataset


def to_lonlat(geometry: shapely.Geometry) -> shapely.Geometry:
    """Reproject a geometry from the test grid's CRS to lon/lat."""
    return shapely.transform(
        geometry, lambda xy: np.column_stack(TO_LONLAT.transform(xy[:, 0], xy[:, 1]))
    )


def pixel_polygon(row: int, col: int) -> shapely.Polygon:
    """Return pixel (row, col) of the test grid as a lon/lat polygon."""
    x0, y0 = ORIGIN_X + col * PIXEL_M, ORIGIN_Y - row * PIXEL_M
    square = shapely.box(x0, y0 - PIXEL_M, x0 + PIXEL_M, y0)
    return to_lonlat(square)


def block_polygon(rows: slice, cols: slice) -> shapely.MultiPolygon:
    """Return a block of pixels of the test grid as a lon/lat MultiPolygon."""
    x0, y0 = ORIGIN_X + cols.start * PIXEL_M, ORIGIN_Y - rows.start * PIXEL_M
    x1, y1 = ORIGIN_X + cols.stop * PIXEL_M, ORIGIN_Y - rows.stop * PIXEL_M
    block = to_lonlat(shapely.box(x0, y1, x1, y0))
    return shapely.MultiPolygon([block])


def triangle_polygon(rows: slice, cols: slice) -> shapely.MultiPolygon:
    """Return a block's lower-left half: its envelope's upper-right is empty."""
    x0, y0 = ORIGIN_X + cols.start * PIXEL_M, ORIGIN_Y - rows.start * PIXEL_M
    x1, y1 = ORIGIN_X + cols.stop * PIXEL_M, ORIGIN_Y - rows.stop * PIXEL_M
    return shapely.MultiPolygon(
        [to_lonlat(shapely.Polygon([(x0, y1), (x1, y1), (x0, y0)]))]
    )


def write_gpkg(path: Path) -> dict[str, gpd.GeoDataFrame]:
    """Write burnscape.gpkg with the four event layers (README, data contracts)."""
    events = gpd.GeoDataFrame(
        {
            "event_id": ["20180609-A", "20180620-B", "20180701-C"],
            "area_ha": [13.5, 4.5, 0.9],
            "pixel_count": [150, 50, 10],
            "first_burn_date": ["2018-06-09", "2018-06-20", "2018-07-01"],
            "last_burn_date": ["2018-06-12", "2018-06-20", "2018-07-03"],
            "duration_days": [4, 1, 3],
            "confidence_mean": [0.9, 0.8, 0.7],
            "confidence_max": [0.95, 0.85, 0.75],
            "geotiff": [
                f"events/{k}.tif" for k in ("20180609-A", "20180620-B", "20180701-C")
            ],
            "run_id": ["run1"] * 3,
            "detector": ["spectral"] * 3,
        },
        geometry=[
            block_polygon(slice(5, 15), slice(5, 20)),
            block_polygon(slice(25, 30), slice(40, 50)),
            triangle_polygon(slice(32, 38), slice(2, 12)),
        ],
        crs="EPSG:4326",
    )
    centroids = events.geometry.to_crs(32610).centroid.to_crs(4326)
    events["centroid_lon"], events["centroid_lat"] = centroids.x, centroids.y

    cells = [(r, c) for r in range(5, 15) for c in range(5, 20)]
    pixels = gpd.GeoDataFrame(
        {
            "event_id": ["20180609-A"] * len(cells),
            "burn_date": ["2018-06-09" if c < 12 else "2018-06-11" for _, c in cells],
            "confidence": [0.5 + 0.02 * (c - 5) for _, c in cells],
            "run_id": ["run1"] * len(cells),
        },
        geometry=[pixel_polygon(r, c) for r, c in cells],
        crs="EPSG:4326",
    )
    progression = gpd.GeoDataFrame(
        {
            "event_id": ["20180609-A", "20180609-A"],
            "date": ["2018-06-09", "2018-06-11"],
            "day_index": [0, 2],
            "pixel_count": [70, 80],
            "area_ha": [6.3, 7.2],
            "cumulative_area_ha": [6.3, 13.5],
            "run_id": ["run1", "run1"],
        },
        geometry=[
            block_polygon(slice(5, 15), slice(5, 12)),
            block_polygon(slice(5, 15), slice(12, 20)),
        ],
        crs="EPSG:4326",
    )
    fires = gpd.GeoDataFrame(
        {
            "acq_date": pd.to_datetime(
                ["2018-06-09T10:42:00Z", "2018-06-10T21:05:00Z", "2018-06-21T10:30:00Z"]
            ),
            # as the events stage writes it: UTC ISO text (the served time field)
            "acquired": [
                "2018-06-09T10:42:00Z",
                "2018-06-10T21:05:00Z",
                "2018-06-21T10:30:00Z",
            ],
            "frp": [12.5, 30.1, 4.0],
            "confidence": ["n", "h", "l"],
        },
        geometry=[
            shapely.Point(*TO_LONLAT.transform(ORIGIN_X + 300, ORIGIN_Y - 300)),
            shapely.Point(*TO_LONLAT.transform(ORIGIN_X + 450, ORIGIN_Y - 350)),
            shapely.Point(*TO_LONLAT.transform(ORIGIN_X + 1300, ORIGIN_Y - 800)),
        ],
        crs="EPSG:4326",
    )
    layers = {
        "fire_events": events,
        "burned_pixels": pixels,
        "daily_progression": progression,
        "active_fires": fires,
    }
    for name, frame in layers.items():
        frame.to_file(path, layer=name, driver="GPKG", engine="pyogrio")
    return layers


@pytest.fixture(scope="session")
def outputs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An outputs folder holding burnscape.gpkg, burned.zarr and cube.zarr."""
    folder = tmp_path_factory.mktemp("outputs")
    write_gpkg(folder / "burnscape.gpkg")
    write_burned_zarr(folder / "burned.zarr")
    write_cube_zarr(folder / "cube.zarr")
    return folder


@dataclass
class LiveServer:
    """A running burnscape server: its base URL and outputs folder."""

    url: str
    outputs: Path


@contextlib.contextmanager
def serve_in_thread(
    outputs: Path, template: Path | None = None, events_store: str | None = None
) -> Iterator[LiveServer]:
    """Run burnscape's WSGI app under waitress on a free loopback port."""
    port = find_free_port()
    server = make_server(
        outputs,
        host="127.0.0.1",
        port=port,
        threads=8,
        template=template,
        events_store=events_store,
    )
    thread = threading.Thread(
        target=server.run, name="burnscape-test-server", daemon=True
    )
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", outputs)
    finally:
        stop_server(server)
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(outputs_dir: Path) -> Iterator[LiveServer]:
    """The session's server over ``outputs_dir``."""
    with serve_in_thread(outputs_dir) as server:
        yield server


def _postgres_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="session")
def postgis_db() -> Iterator[str]:
    """A throw-away PostGIS database on 127.0.0.1 (Debian: postgresql postgis).

    ``$BURNSCAPE_TEST_POSTGIS_URL`` names an existing one instead.
    """
    given = os.environ.get("BURNSCAPE_TEST_POSTGIS_URL")
    if given:
        yield given
        return
    initdb, pg_ctl = _postgres_tool("initdb"), _postgres_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian packages: postgresql postgis)")
    if not glob.glob("/usr/share/postgresql/*/extension/postgis.control"):
        pytest.skip("PostGIS is not installed (Debian package: postgis)")
    folder = Path(tempfile.mkdtemp(prefix="burnscape-publish-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", find_free_port()
    run = functools.partial(
        subprocess.run, check=True, capture_output=True, timeout=120
    )
    run(
        [
            *as_postgres,
            initdb,
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "burnscape",
            "--no-sync",
        ]
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        [
            *as_postgres,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "server.log"),
            "-w",
            "start",
        ]
    )
    psql = [
        _postgres_tool("psql") or "psql",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "burnscape",
    ]
    try:
        run([*psql, "-d", "postgres", "-c", "CREATE DATABASE publish"])
        run([*psql, "-d", "publish", "-c", "CREATE EXTENSION postgis"])
        yield f"postgresql://burnscape@127.0.0.1:{port}/publish"
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


def load_layers_into_postgis(url: str, layers: dict[str, gpd.GeoDataFrame]) -> None:
    """Write the test layers to PostGIS as the events stage does (geometry, fid)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as connection:
        for name, frame in layers.items():
            if frame.geometry.name != "geometry":
                frame = frame.rename_geometry("geometry")
            frame.to_postgis(name, connection, if_exists="replace", index=False)
            connection.execute(
                sqlalchemy.text(
                    f'ALTER TABLE "{name}" ADD COLUMN fid serial PRIMARY KEY'
                )
            )
            connection.execute(
                sqlalchemy.text(f'CREATE INDEX ON "{name}" USING GIST (geometry)')
            )
    engine.dispose()
