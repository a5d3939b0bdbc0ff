"""Fixtures of the events tests: burned.zarr stores built in code."""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from burnscape.utils import find_data_dir
from tests.conftest import free_port

BurnedWriter = Callable[..., Path]
UTM_30M = Affine(30.0, 0.0, 600000.0, 0.0, -30.0, 4400000.0)


def make_burned(
    dates: np.ndarray,
    transform: Affine,
    crs: str,
    confidence: np.ndarray | None = None,
    detector: str = "synthetic",
) -> xr.Dataset:
    """Build a burned.zarr-shaped dataset from a burn-date raster (-1 = unburned)."""
    dates = np.asarray(dates, dtype=np.int32)
    rows, cols = dates.shape
    burned = dates >= 0
    if confidence is None:
        confidence = np.where(burned, 0.8, 0.0)
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    date_attrs = {"units": "days since 1970-01-01", "_FillValue": -1}
    dims = ("y", "x")
    dataset = xr.Dataset(
        {
            "burned": (dims, burned.astype(np.uint8)),
            "confidence": (dims, np.asarray(confidence, dtype=np.float32)),
            "burn_date": (dims, dates, date_attrs),
            "burn_date_min": (
                dims,
                np.where(burned, dates - 1, -1).astype(np.int32),
                date_attrs,
            ),
            "burn_date_max": (dims, dates.copy(), date_attrs),
            "observation_count": (dims, np.full(dates.shape, 2, dtype=np.int16)),
        },
        coords={"y": y, "x": x},
        attrs={"detector": detector, "detector_params": "{}", "inputs": "[]"},
    )
    dataset = dataset.rio.write_crs(crs).rio.write_transform(transform)
    for variable in dataset.data_vars.values():
        variable.encoding["coordinates"] = "spatial_ref"
    return dataset


@pytest.fixture
def write_burned(tmp_path: Path) -> BurnedWriter:
    """Return a function writing a burned.zarr from a date raster; gives its path."""
    counter = iter(range(1000))

    def write(
        dates: np.ndarray,
        transform: Affine = UTM_30M,
        crs: str = "EPSG:32610",
        **kwargs: object,
    ) -> Path:
        path = tmp_path / f"burned-{next(counter)}.zarr"
        make_burned(dates, transform, crs, **kwargs).to_zarr(
            path, mode="w", consolidated=True
        )
        return path

    return write


@pytest.fixture
def banet_dir() -> Path:
    """The folder of real BA-Net event rasters, or skip."""
    data = find_data_dir()
    folder = None if data is None else data / "firehr-banet-events"
    if folder is None or not folder.is_dir():
        pytest.skip("real data firehr-banet-events not found (set BURNSCAPE_DATA_DIR)")
    return folder


def _postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="session")
def postgis_url() -> Iterator[str]:
    """A PostGIS database on 127.0.0.1: ``$BURNSCAPE_TEST_POSTGIS_URL``, or a
    throw-away server started from Debian's postgresql and postgis packages."""
    given = os.environ.get("BURNSCAPE_TEST_POSTGIS_URL")
    if given:
        yield given
        return
    initdb, pg_ctl = _postgres_binary("initdb"), _postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian: postgresql postgis)")
    if not glob.glob("/usr/share/postgresql/*/extension/postgis.control"):
        pytest.skip("PostGIS is not installed (Debian: postgresql-15-postgis-3)")
    folder = Path(tempfile.mkdtemp(prefix="burnscape-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as 'postgres'
        shutil.chown(folder, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    run = functools.partial(
        subprocess.run, check=True, capture_output=True, timeout=120
    )
    run(
        [
            *prefix,
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
    log = folder / "server.log"
    run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]
    )
    try:
        psql = [_postgres_binary("psql") or "psql", "-h", "127.0.0.1", "-p", str(port)]
        run(
            [*psql, "-U", "burnscape", "-d", "postgres", "-c", "CREATE DATABASE events"]
        )
        run(
            [*psql, "-U", "burnscape", "-d", "events", "-c", "CREATE EXTENSION postgis"]
        )
        yield f"postgresql://burnscape@127.0.0.1:{port}/events"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(
    params=["geopackage", pytest.param("postgis", marks=pytest.mark.integration)]
)
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty events store of each kind: a GeoPackage path or a PostGIS URL."""
    if request.param == "geopackage":
        yield str(tmp_path / "store.gpkg")
        return
    url = request.getfixturevalue("postgis_url")
    yield url
    import sqlalchemy

    from burnscape.events.postgis import _driver_url
    from burnscape.events.store import LAYERS

    engine = sqlalchemy.create_engine(_driver_url(url))
    with engine.begin() as connection:
        for layer in LAYERS:
            connection.execute(sqlalchemy.text(f'DROP TABLE IF EXISTS "{layer}"'))
    engine.dispose()
