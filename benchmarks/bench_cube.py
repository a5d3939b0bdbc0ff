"""Benchmark the cube writer: throughput, memory against region size, crash safety.

Three measurements, each printed with its target:

1. **Ingest throughput.** Synthetic Landsat-like scenes (tiled uint16 GeoTIFFs
   on the region grid) go through :func:`burnscape.cube.writer.build_cube` on a
   LocalCluster of two single-threaded worker processes. The rate is MB/s of
   decoded float32 reflectance written. The machine's limit is measured in the
   same run: the same float32 chunks compressed with the cube's own compressor
   (Blosc lz4, as zarr writes them) and written straight to files by two
   processes. Target: ingest / limit >= 0.6.
2. **Worker memory against region size.** The same scenes over a region 4x
   larger (2x each side) at the same chunk size, each on a fresh cluster; the
   peak resident memory of the workers (``ru_maxrss``) is compared. Target:
   growth < 1.3x.
3. **Crash safety.** An ingest (a cube created with some days, then days
   appended) runs in a child process that is killed (SIGKILL) at a random
   moment, 20 times; after each kill the ingest is run again to the end and
   the store is compared with an uninterrupted run (every array's values and
   attributes, :func:`burnscape.cube.store.digest_store`). Target: identical
   every time.

Run: ``.venv/bin/python benchmarks/bench_cube.py [--size 1024] [--kills 20]``
(about two to three minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from burnscape.config import RegionConfig
from burnscape.cube.grid import Grid, grid_from_region
from burnscape.cube.readers import BandFile
from burnscape.cube.store import digest_store, read_days
from burnscape.cube.writer import Scene, build_cube

MB = 1e6
BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
SCALE, OFFSET = 2.75e-5, -0.2


# --- inputs


def region(size: int) -> RegionConfig:
    return RegionConfig(
        crs="EPSG:32610",
        bbox=(500000, 4000000, 500000 + 30 * size, 4000000 + 30 * size),
        pixel_size=30,
    )


def make_scenes(
    folder: Path, grid: Grid, days: int, bands=BANDS, seed=0
) -> list[Scene]:
    """Write ``days`` scenes of tiled uint16 GeoTIFFs on the grid."""
    rng = np.random.default_rng(seed)
    scenes = []
    for day in range(days):
        files = []
        for band in bands:
            raw = rng.integers(8000, 20000, size=grid.shape, dtype=np.uint16)
            raw[:, : grid.width // 16] = 0  # a strip of fill
            path = folder / f"d{day:02d}_{band}.tif"
            with rasterio.open(
                path,
                "w",
                driver="GTiff",
                height=grid.height,
                width=grid.width,
                count=1,
                dtype="uint16",
                crs=grid.crs.to_wkt(),
                transform=grid.transform,
                nodata=0,
                tiled=True,
                blockxsize=256,
                blockysize=256,
            ) as dst:
                dst.write(raw, 1)
            files.append(BandFile(band, str(path), SCALE, OFFSET, 0))
        time_ = dt.datetime(2024, 7, 1 + day, 18, 30, tzinfo=dt.UTC)
        scenes.append(Scene(f"scene{day:02d}", time_, (time_, time_), tuple(files)))
    return scenes


def cluster(memory_limit: str = "2GiB"):
    from distributed import Client, LocalCluster

    local = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=None,
    )
    return local, Client(local)


# --- 1. throughput


def bare_write(args: tuple[list[str], str, int]) -> int:
    """Compress float32 chunks with the cube's codec and write them to files."""
    from numcodecs import Blosc

    sources, out_dir, chunk = args
    codec = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    written = 0
    for index, source in enumerate(sources):
        with rasterio.open(source) as src:
            raw = src.read(1)
        values = raw.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET)
        values[raw == 0] = np.nan
        for y in range(0, values.shape[0], chunk):
            for x in range(0, values.shape[1], chunk):
                block = np.ascontiguousarray(values[y : y + chunk, x : x + chunk])
                name = Path(out_dir) / f"{index}.{y // chunk}.{x // chunk}"
                name.write_bytes(codec.encode(block))
                written += block.nbytes
    return written


def measure_throughput(work: Path, size: int, days: int, chunk: int) -> dict:
    grid = grid_from_region(region(size))
    scenes = make_scenes(work / "in", grid, days)
    decoded = days * len(BANDS) * size * size * 4

    files = [band.path for scene in scenes for band in scene.bands]
    out = work / "bare"
    out.mkdir()
    halves = [files[0::2], files[1::2]]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        written = sum(
            pool.map(bare_write, [(half, str(out), chunk) for half in halves])
        )
    bare_s = time.perf_counter() - start
    assert written == decoded

    local, client = cluster()
    try:
        start = time.perf_counter()
        build_cube(scenes, grid, work / "cube.zarr", client, chunk_size=chunk)
        ingest_s = time.perf_counter() - start
    finally:
        client.close()
        local.close()
    return {
        "decoded_MB": decoded / MB,
        "bare_MBps": decoded / MB / bare_s,
        "ingest_MBps": decoded / MB / ingest_s,
        "ratio": bare_s / ingest_s,
    }


# --- 2. memory against region size


def peak_worker_memory(work: Path, size: int, days: int, chunk: int) -> float:
    """Return the largest worker ``ru_maxrss`` (MiB) of an ingest on a fresh cluster."""
    grid = grid_from_region(region(size))
    (work / f"in{size}").mkdir()
    scenes = make_scenes(work / f"in{size}", grid, days, bands=("red", "nir", "swir2"))
    local, client = cluster()
    try:
        baseline = client.run(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        )
        build_cube(scenes, grid, work / f"cube{size}.zarr", client, chunk_size=chunk)
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    finally:
        client.close()
        local.close()
    logging.getLogger(__name__).info(
        "Worker baseline %s, peak %s KiB.", baseline, peaks
    )
    return max(peaks.values()) / 1024


# --- 3. crash safety


CRASH_SIZE, CRASH_CHUNK = 384, 128


def crash_child(store: str, inputs: str) -> None:
    """The killed process: create the cube with 4 days, then append 4 more."""
    from distributed import Client, LocalCluster

    grid = grid_from_region(region(CRASH_SIZE))
    scenes = make_scenes(Path(inputs), grid, 8, bands=("red", "nir", "swir2"), seed=7)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as local:
        with Client(local) as client:
            build_cube(scenes[:4], grid, Path(store), client, chunk_size=CRASH_CHUNK)
            build_cube(scenes, grid, Path(store), client, chunk_size=CRASH_CHUNK)


def run_child(store: Path, inputs: Path, kill_after: float | None) -> float:
    command = [sys.executable, __file__, "--child", str(store), str(inputs)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    if kill_after is None:
        if proc.wait(timeout=600) != 0:
            raise RuntimeError(f"the ingest failed (exit {proc.returncode})")
        return time.perf_counter() - start
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return time.perf_counter() - start


def measure_crash_safety(work: Path, kills: int, seed: int) -> dict:
    inputs = work / "crash-in"
    inputs.mkdir()
    make_scenes(
        inputs,
        grid_from_region(region(CRASH_SIZE)),
        8,
        bands=("red", "nir", "swir2"),
        seed=7,
    )
    reference = work / "reference.zarr"
    full_s = run_child(reference, inputs, None)
    expected = digest_store(reference)
    rng = random.Random(seed)
    identical, states = 0, []
    for k in range(kills):
        store = work / f"crash{k}.zarr"
        moment = rng.uniform(0.2, full_s)
        run_child(store, inputs, moment)
        if store.exists():
            try:
                records = read_days(store)
                states.append(f"{int(records.complete.sum())}/{records.complete.size}")
            except Exception:  # noqa: BLE001  (a store killed mid-creation)
                states.append("partial metadata")
        else:
            states.append("no store")
        run_child(store, inputs, None)
        identical += digest_store(store) == expected
        shutil.rmtree(store)
    return {
        "kills": kills,
        "identical": identical,
        "full_run_s": full_s,
        "states": states,
    }


# --- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="region edge (pixels)")
    parser.add_argument("--days", type=int, default=4, help="scenes ingested")
    parser.add_argument("--chunk", type=int, default=256, help="chunk edge (pixels)")
    parser.add_argument("--kills", type=int, default=20, help="crash-safety kills")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        crash_child(*args.child)
        return
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-cube-") as tmp:
        work = Path(tmp)
        (work / "t").mkdir()
        (work / "t" / "in").mkdir()
        rate = measure_throughput(work / "t", args.size, args.days, args.chunk)
        print(
            f"ingest throughput: {rate['ingest_MBps']:.1f} MB/s of decoded reflectance "
            f"({rate['decoded_MB']:.0f} MB); machine limit (same bytes, Blosc lz4, "
            f"2 processes straight to disk): {rate['bare_MBps']:.1f} MB/s; "
            f"ratio {rate['ratio']:.2f} (target >= 0.6)"
        )
        small = peak_worker_memory(work, args.size // 2, 3, args.chunk)
        large = peak_worker_memory(work, args.size, 3, args.chunk)
        print(
            f"worker peak memory: {small:.0f} MiB at {args.size // 2}^2 px, "
            f"{large:.0f} MiB at {args.size}^2 px (4x the region, chunk {args.chunk}); "
            f"growth {large / small:.2f}x (target < 1.3x)"
        )
        crash = measure_crash_safety(work, args.kills, args.seed)
        print(
            f"crash safety: {crash['identical']}/{crash['kills']} "
            "stores identical to an "
            f"uninterrupted run after SIGKILL at a random moment and a re-run "
            f"(uninterrupted run {crash['full_run_s']:.1f} s; complete days at each "
            f"kill: {', '.join(crash['states'])})"
        )
        print(
            json.dumps(
                {"throughput": rate, "memory_MiB": [small, large], "crash": crash}
            )
        )


if __name__ == "__main__":
    main()
