"""Benchmark bbox + datetime item queries over one million burned-pixel features.

Builds a ``burned_pixels`` layer of N pixel polygons (default 1,000,000: a
1000 x 1000 grid of 30 m pixels near the CHROME 2 fire, in EPSG:4326, burn
dates spread over a 90-day season, as the events stage writes them), stores
it in a GeoPackage (pyogrio, R-tree index) and, where PostgreSQL with
PostGIS is installed, in a throw-away PostGIS database (GiST index), then
times the same random queries (a ~1 km bbox and a 7-day datetime interval,
first page of 100 items with numberMatched) through:

- burnscape's GeoPackageProvider on the GeoPackage;
- burnscape's PostGISProvider on PostGIS;
- pygeoapi's stock PostgreSQL provider on PostGIS (its own SQL and datetime
  filter; only the driver is switched to the installed psycopg 3);
- pygeoapi's stock SQLiteGPKG provider on the GeoPackage (it needs SQLite
  extension loading and mod_spatialite; where that fails the error is
  printed instead of figures);
- the whole server over HTTP (waitress, 8 threads, 8 concurrent clients) on
  the GeoPackage, for requests per second end to end.

Prints p50 and p95 latency and queries per second for each.

Run: ``.venv/bin/python benchmarks/bench_features.py [--features 1000000]
[--queries 200] [--workdir DIR]`` (the generated data is kept in DIR and
reused on the next run).
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import requests
import shapely
from pyproj import Transformer

ORIGIN_X, ORIGIN_Y, PIXEL_M = 530_000.0, 4_392_000.0, 30.0
SEASON_START = np.datetime64("2018-06-01")
SEASON_DAYS = 90


def build_pixels(count: int) -> gpd.GeoDataFrame:
    """Return ``count`` burned-pixel polygons on a square grid, EPSG:4326."""
    side = int(np.ceil(np.sqrt(count)))
    index = np.arange(count)
    rows, cols = index // side, index % side
    x0 = ORIGIN_X + cols * PIXEL_M
    y0 = ORIGIN_Y - rows * PIXEL_M
    boxes = shapely.box(x0, y0 - PIXEL_M, x0 + PIXEL_M, y0)
    to_lonlat = Transformer.from_crs(32610, 4326, always_xy=True)
    polygons = shapely.transform(
        boxes, lambda xy: np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
    )
    rng = np.random.default_rng(7)
    # burn dates grow outward from the grid centre, with noise: like a spreading fire
    distance = np.hypot(rows - side / 2, cols - side / 2) / (side / 2)
    days = np.clip(distance * SEASON_DAYS + rng.normal(0, 4, count), 0, SEASON_DAYS - 1)
    dates = (SEASON_START + days.astype(int)).astype(str)
    return gpd.GeoDataFrame(
        {
            "event_id": "20180601-bench",
            "burn_date": dates,
            "confidence": rng.uniform(0.5, 1.0, count).round(3),
            "run_id": "bench",
        },
        geometry=polygons,
        crs="EPSG:4326",
    )


def write_gpkg(frame: gpd.GeoDataFrame, path: Path) -> None:
    frame.to_file(
        path,
        layer="burned_pixels",
        driver="GPKG",
        engine="pyogrio",
        layer_options={"SPATIAL_INDEX": "YES"},
    )


def start_postgis(folder: Path) -> tuple[str, Callable[[], None]] | None:
    """Start a throw-away PostGIS server; return its URL and a stop function."""
    tools = {name: _pg_tool(name) for name in ("initdb", "pg_ctl", "psql")}
    if None in tools.values() or not glob.glob(
        "/usr/share/postgresql/*/extension/postgis.control"
    ):
        return None
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    from burnscape.publish.server import find_free_port

    port = find_free_port()

    def run(*args: str) -> None:
        subprocess.run([*args], check=True, capture_output=True, timeout=300)

    run(
        *prefix,
        tools["initdb"],
        "-D",
        str(data),
        "-A",
        "trust",
        "-U",
        "bench",
        "--no-sync",
    )
    options = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c shared_buffers=256MB"
    )
    run(
        *prefix,
        tools["pg_ctl"],
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    psql = [tools["psql"], "-h", "127.0.0.1", "-p", str(port), "-U", "bench"]
    run(*psql, "-d", "postgres", "-c", "CREATE DATABASE bench")
    run(*psql, "-d", "bench", "-c", "CREATE EXTENSION postgis")

    def stop() -> None:
        subprocess.run(
            [*prefix, tools["pg_ctl"], "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=120,
        )

    return f"postgresql://bench@127.0.0.1:{port}/bench", stop


def load_postgis(frame: gpd.GeoDataFrame, url: str) -> None:
    """COPY the layer into PostGIS as the events stage lays it out."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE burned_pixels (fid serial PRIMARY KEY, event_id text, "
            "burn_date text, confidence double precision, run_id text, "
            "geometry geometry(Polygon, 4326))"
        )
        wkb = shapely.to_wkb(frame.geometry.values, hex=True)
        with conn.cursor().copy(
            "COPY burned_pixels (event_id, burn_date, confidence, run_id, geometry) "
            "FROM STDIN"
        ) as copy:
            for row in zip(
                frame["event_id"],
                frame["burn_date"],
                frame["confidence"],
                frame["run_id"],
                wkb,
                strict=True,
            ):
                copy.write_row(row)
        conn.execute("CREATE INDEX ON burned_pixels USING GIST (geometry)")
        conn.execute("CREATE INDEX ON burned_pixels (burn_date)")
        conn.execute("ANALYZE burned_pixels")


def make_queries(frame_bounds: tuple[float, ...], count: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    minx, miny, maxx, maxy = frame_bounds
    queries = []
    for _ in range(count):
        x = rng.uniform(minx, maxx - 0.012)
        y = rng.uniform(miny, maxy - 0.009)
        start = SEASON_START + rng.randrange(0, SEASON_DAYS - 7)
        queries.append(
            {
                "bbox": [x, y, x + 0.012, y + 0.009],
                "datetime_": f"{start}/{start + 6}",
            }
        )
    return queries


def time_provider(name: str, provider: Any, queries: list[dict[str, Any]]) -> None:
    provider.query(limit=100, **queries[0])  # warm caches and connections
    latencies, matched = [], []
    for query in queries:
        start = time.perf_counter()
        result = provider.query(limit=100, offset=0, **query)
        latencies.append(time.perf_counter() - start)
        matched.append(result["numberMatched"])
    report(
        name, latencies, sum(latencies), f"mean matched {statistics.mean(matched):.0f}"
    )


def time_http(url: str, queries: list[dict[str, Any]], clients: int = 8) -> None:
    latencies: list[float] = []
    lock = threading.Lock()
    pending = list(queries)

    def client() -> None:
        session = requests.Session()
        while True:
            with lock:
                if not pending:
                    return
                query = pending.pop()
            params = {
                "f": "json",
                "limit": 100,
                "datetime": query["datetime_"],
                "bbox": ",".join(f"{v:.6f}" for v in query["bbox"]),
            }
            start = time.perf_counter()
            response = session.get(
                f"{url}/collections/burned-pixels/items", params=params, timeout=120
            )
            response.raise_for_status()
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report(
        f"HTTP server, GeoPackage ({clients} clients)",
        latencies,
        time.perf_counter() - wall,
        "",
    )


def report(name: str, latencies: list[float], wall_s: float, extra: str) -> None:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000
    rate = len(ordered) / wall_s
    print(f"{name:58s} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  {rate:7.1f} q/s  {extra}")


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _stock_postgresql(url: str) -> Any:
    from pygeoapi.provider.sql import GenericSQLProvider, PostgreSQLProvider

    from burnscape.publish.postgis import connection_parameters

    class StockPostgreSQL(PostgreSQLProvider):
        """pygeoapi's PostgreSQLProvider unchanged but for the psycopg 3 driver."""

        def __init__(self, provider_def: dict[str, Any]) -> None:
            GenericSQLProvider.__init__(
                self, provider_def, "postgresql+psycopg", {"client_encoding": "utf8"}
            )

    data = connection_parameters(url)
    data["password"] = None
    return StockPostgreSQL(
        {
            "name": "PostgreSQL",
            "type": "feature",
            "data": data,
            "table": "burned_pixels",
            "id_field": "fid",
            "geom_field": "geometry",
            "time_field": "burn_date",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    workdir = (
        args.workdir or Path(tempfile.gettempdir()) / f"burnscape-bench-{args.features}"
    )
    workdir.mkdir(parents=True, exist_ok=True)
    gpkg = workdir / "burnscape.gpkg"
    start = time.perf_counter()
    frame = build_pixels(args.features)
    bounds = tuple(frame.total_bounds)
    print(
        f"{args.features} pixel polygons built in {time.perf_counter() - start:.1f} s"
    )
    if not gpkg.exists():
        start = time.perf_counter()
        write_gpkg(frame, gpkg)
        print(
            f"GeoPackage written in {time.perf_counter() - start:.1f} s "
            f"({gpkg.stat().st_size / 2**20:.0f} MiB)"
        )
    queries = make_queries(bounds, args.queries)

    from burnscape.publish.geopackage import GeoPackageProvider

    print(f"\n{args.queries} queries: ~1.3 x 1.0 km bbox + 7-day datetime, limit 100\n")
    time_provider(
        "burnscape GeoPackageProvider, GeoPackage",
        GeoPackageProvider(
            {
                "name": "gpkg",
                "type": "feature",
                "data": str(gpkg),
                "table": "burned_pixels",
                "time_field": "burn_date",
            }
        ),
        queries,
    )
    try:
        from pygeoapi.provider.sqlite import SQLiteGPKGProvider

        stock = SQLiteGPKGProvider(
            {
                "name": "SQLiteGPKG",
                "type": "feature",
                "data": str(gpkg),
                "table": "burned_pixels",
                "id_field": "fid",
            }
        )
        time_provider("pygeoapi stock SQLiteGPKG, GeoPackage", stock, queries)
    except Exception as err:  # noqa: BLE001  (report whatever stops it)
        cause = err.__cause__ or err.__context__ or err
        print(
            f"{'pygeoapi stock SQLiteGPKG, GeoPackage':58s} cannot start: "
            f"{type(err).__name__} ({type(cause).__name__}: {str(cause)[:80]})"
        )

    pg_folder = Path(tempfile.mkdtemp(prefix="burnscape-bench-pg-"))
    started = start_postgis(pg_folder)
    if started is None:
        print(
            "PostGIS not installed (Debian: postgresql postgis): PostGIS rows skipped"
        )
    else:
        url, stop = started
        try:
            start = time.perf_counter()
            load_postgis(frame, url)
            loaded_s = time.perf_counter() - start
            print(f"{'(PostGIS loaded by COPY in':58s} {loaded_s:.1f} s)")
            from burnscape.publish.postgis import PostGISProvider, connection_parameters

            data = connection_parameters(url)
            data["password"] = None
            time_provider(
                "burnscape PostGISProvider, PostGIS",
                PostGISProvider(
                    {
                        "name": "postgis",
                        "type": "feature",
                        "data": data,
                        "table": "burned_pixels",
                        "id_field": "fid",
                        "geom_field": "geometry",
                        "time_field": "burn_date",
                    }
                ),
                queries,
            )
            time_provider(
                "pygeoapi stock PostgreSQL, PostGIS", _stock_postgresql(url), queries
            )
        finally:
            stop()
            shutil.rmtree(pg_folder, ignore_errors=True)

    from burnscape.publish.server import find_free_port, make_server, stop_server

    port = find_free_port()
    server = make_server(workdir, port=port, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        time_http(f"http://127.0.0.1:{port}", queries)
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
