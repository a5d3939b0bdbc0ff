"""The handed ring and checkerboard: events stage -> store -> Features API -> back.

Both patterns go through ``extract_events`` into a GeoPackage and into PostGIS,
are served by burnscape, and must come back out of the items endpoint as valid
MultiPolygons of exactly 8 and 2 pixels' area (and as that many pixel cells).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import shapely
from affine import Affine

from burnscape.config import EventsConfig
from burnscape.events import extract_events

from ..events.conftest import make_burned
from .conftest import LiveServer, serve_in_thread

RES = 0.001
PATTERNS = {
    "ring": ([[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]], 8),
    "checkerboard": ([[1, 0], [0, 1]], 2),
}
TIMEOUT = 60


def write_patterns(folder: Path, store: str | None) -> None:
    """Run the events stage on each pattern (one run per pattern) into ``store``."""
    for index, (name, (pattern, _)) in enumerate(PATTERNS.items()):
        dates = np.where(np.array(pattern, dtype=bool), 17340, -1).astype(np.int32)
        transform = Affine(RES, 0, 10.0 + index, 0, -RES, 45.0)
        burned = folder / f"{name}.zarr"
        make_burned(dates, transform, "EPSG:4326").to_zarr(
            burned, mode="w", consolidated=True
        )
        extract_events(burned, folder, EventsConfig(), run_id=name, store=store)


def _fresh_database(url: str, name: str) -> str:
    """Create (or recreate) database ``name`` with PostGIS beside ``url``'s one."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    fresh = url.rsplit("/", 1)[0] + f"/{name}"
    engine = sqlalchemy.create_engine(
        fresh.replace("postgresql://", "postgresql+psycopg://")
    )
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS postgis"))
    engine.dispose()
    return fresh


@pytest.fixture(
    scope="module",
    params=["geopackage", pytest.param("postgis", marks=pytest.mark.integration)],
)
def handed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server over the handed patterns, stored in each kind of store."""
    folder = tmp_path_factory.mktemp(f"handed-{request.param}")
    store = None
    if request.param == "postgis":
        store = _fresh_database(request.getfixturevalue("postgis_db"), "handed")
    write_patterns(folder, store)
    with serve_in_thread(folder, events_store=store) as server:
        yield server


def items(server: LiveServer, collection: str, run_id: str) -> list[dict]:
    response = requests.get(
        f"{server.url}/collections/{collection}/items",
        params={"f": "json", "run_id": run_id, "limit": 100},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["features"]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_handed_patterns_come_back_out_of_the_features_api(handed_server, name):
    _, pixels = PATTERNS[name]
    (event,) = items(handed_server, "fire-events", name)
    geometry = shapely.geometry.shape(event["geometry"])
    assert geometry.geom_type == "MultiPolygon" and geometry.is_valid
    assert geometry.area == pytest.approx(pixels * RES**2, rel=1e-9)
    assert event["properties"]["pixel_count"] == pixels
    by_id = requests.get(
        f"{handed_server.url}/collections/fire-events/items/{event['id']}",
        params={"f": "json"},
        timeout=TIMEOUT,
    ).json()
    assert shapely.geometry.shape(by_id["geometry"]).equals(geometry)

    cells = [
        shapely.geometry.shape(f["geometry"])
        for f in items(handed_server, "burned-pixels", name)
    ]
    assert len(cells) == pixels and all(cell.is_valid for cell in cells)
    assert sum(cell.area for cell in cells) == pytest.approx(pixels * RES**2, rel=1e-9)
    assert shapely.union_all(cells).equals(geometry)
