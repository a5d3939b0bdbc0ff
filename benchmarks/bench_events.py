"""Benchmark: delineate fire events in a large burn-date raster.

Builds a 20,000 x 20,000 burn-date raster of synthetic but realistic fires
(log-normal sizes, irregular elliptical shapes with unburned islands, burn dates
spreading outward from the ignition over a fire's duration, a fire season of
200 days, scattered false detections), then times on the same raster:

* the floor: ``scipy.ndimage.label`` of the burned mask (8-connected);
* burnscape whole-array: ``burnscape.events.labels.label_events``;
* burnscape chunk-wise: ``burnscape.events.chunked.label_events_chunked`` reading
  the raster from Zarr and writing the labels to Zarr (threaded Dask), with
  its peak traced memory against the chunk size;
* the seed's algorithm: PyPI ``fire-split`` ``split_fires`` (``pip install
  burnscape[bench]``), on a crop of the raster (``--crop``, default 5,000²),
  since its per-event full-array passes take hours on the whole raster;
  ``--crop 0`` runs it on the whole raster. burnscape is timed on the same crop.

Prints each time and the ratios. Run::

    python benchmarks/bench_events.py                 # 20,000 x 20,000
    python benchmarks/bench_events.py --size 4000     # a quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from burnscape.events.chunked import label_events_chunked
from burnscape.events.labels import label_events

SEASON_DAYS = 200
FIRST_DAY = 18_000  # 2019-04-14, days since 1970-01-01


def synthetic_fires(size: int, n_fires: int, seed: int = 0) -> np.ndarray:
    """Return a (size, size) int32 burn-date raster (-1 = unburned)."""
    rng = np.random.default_rng(seed)
    dates = np.full((size, size), np.iinfo(np.int32).max, dtype=np.int32)
    for _ in range(n_fires):
        _draw_fire(dates, rng)
    false_alarms = rng.integers(0, size, size=(2, int(2e-5 * size * size)))
    days = FIRST_DAY + rng.integers(0, SEASON_DAYS, false_alarms.shape[1])
    dates[false_alarms[0], false_alarms[1]] = np.minimum(
        dates[false_alarms[0], false_alarms[1]], days
    )
    dates[dates == np.iinfo(np.int32).max] = -1
    return dates


def _draw_fire(dates: np.ndarray, rng: np.random.Generator) -> None:
    size = dates.shape[0]
    radius = float(np.clip(np.exp(rng.normal(2.5, 1.0)), 1.0, 600.0))
    duration = float(np.clip(np.exp(rng.normal(1.0, 1.0)), 1.0, 60.0))
    start = FIRST_DAY + int(rng.integers(0, SEASON_DAYS))
    cy, cx = rng.integers(0, size, 2)
    stretch, angle = rng.uniform(1.0, 2.5), rng.uniform(0, np.pi)
    extent = int(radius * stretch * 1.4) + 2
    r0, r1 = max(0, cy - extent), min(size, cy + extent + 1)
    c0, c1 = max(0, cx - extent), min(size, cx + extent + 1)
    y, x = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dy, dx = y - cy, x - cx
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle)
    rho = np.hypot(along / stretch, across) / radius
    theta = np.arctan2(across, along)
    wobble = sum(
        rng.uniform(0.05, 0.2) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        for k in (2, 3, 5, 7)
    )
    burned = (rho < 1.0 + wobble) & (rng.random(rho.shape) > 0.05)
    day = (start + np.minimum(rho, 1.0) * duration).astype(np.int32)
    window = dates[r0:r1, c0:c1]
    np.minimum(window, np.where(burned, day, np.iinfo(np.int32).max), out=window)


def timed(label: str, work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - start
    print(f"  {label:<44s} {elapsed:8.2f} s")
    return elapsed, result


def run_chunked(
    dates: np.ndarray, folder: Path, chunk: int, distance: int, gap: int
) -> tuple[float, int, float]:
    """Time chunk-wise labelling Zarr to Zarr; return seconds, events, peak MiB."""
    source = folder / "dates.zarr"
    da.from_array(dates, chunks=chunk).to_zarr(str(source), overwrite=True)
    tracemalloc.start()

    def work() -> int:
        result = label_events_chunked(
            da.from_zarr(str(source)), folder, distance, gap, min_pixels=1
        )
        result.labels.to_zarr(str(folder / "labels.zarr"), overwrite=True)
        return result.n

    seconds, n = timed(f"burnscape chunk-wise ({chunk}² chunks, Zarr)", work)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, n, peak / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument(
        "--fires", type=int, default=None, help="default: size²/200,000"
    )
    parser.add_argument(
        "--chunks", default="4096,2048", help="chunk sizes to run, comma-separated"
    )
    parser.add_argument(
        "--crop", type=int, default=5000, help="fire-split crop; 0 = all"
    )
    parser.add_argument("--distance", type=int, default=8, help="max_distance_px")
    parser.add_argument("--gap", type=int, default=16, help="max_gap_days")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    n_fires = args.fires or max(10, args.size**2 // 200_000)

    print(
        f"Raster {args.size} x {args.size}, {n_fires} fires, d={args.distance} px, "
        f"gap={args.gap} days"
    )
    _, dates = timed(
        "build synthetic raster (not compared)",
        lambda: synthetic_fires(args.size, n_fires),
    )
    burned = dates >= 0
    print(f"  burned pixels: {int(burned.sum()):,} ({burned.mean():.2%})")

    floor, (_, n_floor) = timed(
        "floor: scipy.ndimage.label (8-connected)",
        lambda: ndimage.label(burned, structure=np.ones((3, 3))),
    )
    whole, (labels, n_whole) = timed(
        "burnscape whole-array label_events",
        lambda: label_events(dates, args.distance, args.gap),
    )
    chunk_runs = []
    for chunk in (int(size) for size in args.chunks.split(",")):
        with (
            dask.config.set(scheduler="threads", num_workers=args.threads),
            tempfile.TemporaryDirectory() as folder,
        ):
            seconds, n_chunked, peak_mib = run_chunked(
                dates, Path(folder), chunk, args.distance, args.gap
            )
            result = da.from_zarr(str(Path(folder) / "labels.zarr")).compute()
            same = np.array_equal(result, labels)
            del result
        chunk_runs.append((chunk, seconds))
        print(
            f"    {n_chunked:,} events; equals whole-array: {same}; peak traced "
            f"memory {peak_mib:,.0f} MiB (one int32 chunk {chunk**2 * 4 / 2**20:,.0f} "
            f"MiB, raster {dates.nbytes / 2**20:,.0f} MiB)"
        )
    print(
        f"  events: floor {n_floor:,} components (8-connected); burnscape {n_whole:,}"
    )
    del labels

    fire_split, mine, crop_size = None, 1.0, 0
    if args.crop >= 0:
        crop = dates if args.crop == 0 else dates[: args.crop, : args.crop]
        crop_size = crop.shape[0]
        fire_split, mine = _against_fire_split(crop, args.distance, args.gap)

    print("Ratios (lower is better for burnscape):")
    print(f"  whole-array / floor           {whole / floor:6.2f}x   (target <= 3)")
    for chunk, seconds in chunk_runs:
        print(
            f"  chunk-wise ({chunk}²) / floor  {seconds / floor:6.2f}x  (target <= 3)"
        )
    if fire_split is not None:
        print(
            f"  fire-split  / burnscape (crop {crop_size}²) "
            f"{fire_split / mine:6.1f}x   (target >= 10)"
        )


def _against_fire_split(
    crop: np.ndarray, distance: int, gap: int
) -> tuple[float | None, float]:
    print(f"On a {crop.shape[0]} x {crop.shape[1]} crop:")
    mine, _ = timed(
        "burnscape whole-array label_events", lambda: label_events(crop, distance, gap)
    )
    try:
        from fire_split.core import split_fires
    except ImportError:
        print("  fire-split not installed (pip install 'burnscape[bench]'): skipped")
        return None, mine
    # fire-split reads day numbers with 0 as "not burned"
    doy = np.where(crop >= 0, crop - FIRST_DAY + 1, 0).astype(np.uint32)
    start = time.perf_counter()
    try:
        _, table = split_fires(doy, interval_days=gap, interval_pixels=distance)
        note = f"{len(table):,} events"
    except AttributeError as err:
        # fire-split 0.1.9 fails in its very last step with pandas >= 2 (the
        # aggregated columns are named min/max, not amin/amax), after all its
        # labelling and splitting: the time up to there is a lower bound.
        note = f"failed in its final table step ({err}); time is a lower bound"
    seconds = time.perf_counter() - start
    print(f"  {'fire-split split_fires':<44s} {seconds:8.2f} s  ({note})")
    return seconds, mine


if __name__ == "__main__":
    main()
