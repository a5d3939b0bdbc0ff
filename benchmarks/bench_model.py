"""Benchmark BA-Net chunk-wise inference on Dask against this machine's matmul.

Builds a BA-Net (random weights saved with metadata, original width: 3.4 M
parameters) and a random daily cube (4 bands, --days days, --size x --size
pixels, --chunk pixel chunks), then in one run:

1. measures dense float32 matmul FLOP/s with 1 thread and with all cores;
2. runs :func:`burnscape.model.predict_burned` on a LocalCluster with one worker
   (1 thread) and with two workers (1 thread each), and prints
   - the model FLOP/s achieved (network FLOPs actually executed, from the
     pixel-days the workers fed to the network, divided by the wall time of
     the whole chunked computation) against matmul FLOP/s on the same cores,
   - the useful throughput (output pixel-days per second) and the two-worker
     over one-worker throughput ratio;
3. compares float32 and bfloat16 autocast for one sequence on the CPU.

Run: ``.venv/bin/python benchmarks/bench_model.py [--size 256 --chunk 128 --days 64]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from distributed import Client, LocalCluster
from torch.utils.flop_counter import FlopCounterMode

from burnscape.model import predict_burned
from burnscape.model.banet import BANet, BANetConfig, fold_batch_norm
from burnscape.model.daily import BANetSpec, processed_voxels
from burnscape.model.tiling import TileGrid
from burnscape.model.weights import WeightsMetadata, save_banet_weights


def matmul_flops(threads: int, n: int = 2048, repeats: int = 6) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def flops_per_voxel(config: BANetConfig, tile: int) -> float:
    """Network FLOPs per pixel-day: counted convolutions plus the LSTM."""
    model = fold_batch_norm(BANet(config))
    x = torch.zeros(1, config.in_channels, config.sequence_length, tile, tile)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    hidden = config.channels[0]
    lstm = 2 * 2 * 4 * hidden * hidden  # input and recurrent matmuls, 4 gates
    return counter.get_total_flops() / x[0, 0].numel() + lstm


def make_cube(path: Path, size: int, days: int, chunk: int) -> xr.Dataset:
    """Write a random daily cube to Zarr at ``path`` and open it lazily.

    Reading from Zarr keeps the cube out of the task graph (an in-memory cube
    would be shipped to the scheduler with every task).
    """
    rng = np.random.default_rng(0)
    time_axis = np.datetime64("2020-07-01") + np.arange(days).astype("timedelta64[D]")
    data = {
        band: (
            ("time", "y", "x"),
            rng.normal(level, 0.02, (days, size, size)).astype(np.float32),
        )
        for band, level in (("red", 0.08), ("nir", 0.2), ("swir2", 0.15))
    }
    data["frp"] = (("time", "y", "x"), np.zeros((days, size, size), np.float32))
    coords = {
        "time": time_axis.astype("datetime64[ns]"),
        "y": 100.0 * np.arange(size)[::-1],
        "x": 100.0 * np.arange(size),
    }
    chunks = {"time": -1, "y": chunk, "x": chunk}
    xr.Dataset(data, coords=coords).chunk(chunks).to_zarr(path, mode="w")
    return xr.open_zarr(path, chunks=chunks)


def run_cluster(cube: xr.Dataset, spec: BANetSpec, workers: int) -> tuple[float, int]:
    """Return (seconds, pixel-days fed to the network) of one chunked run."""
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit="4GiB",
        ) as cluster,
        Client(cluster) as client,
    ):
        # load the model on every worker before the clock starts
        predict_burned(
            cube.isel(y=slice(0, 32), x=slice(0, 32)), spec, halo=0, client=client
        )["probability"].compute()
        before = sum(client.run(processed_voxels).values())
        start = time.perf_counter()
        result = predict_burned(cube, spec, halo=spec.exact_halo, client=client)
        result["probability"].compute()
        elapsed = time.perf_counter() - start
        voxels = sum(client.run(processed_voxels).values()) - before
    return elapsed, voxels


def bf16_speedup(config: BANetConfig, tile: int) -> tuple[float, float]:
    torch.set_num_threads(os.cpu_count() or 1)
    model = fold_batch_norm(BANet(config)).to(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 4, config.sequence_length, tile, tile).contiguous(
        memory_format=torch.channels_last_3d
    )
    times = []
    for dtype in (None, torch.bfloat16):
        with torch.inference_mode():
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                if dtype is None:
                    model(x)
                else:
                    with torch.autocast("cpu", dtype=dtype):
                        model(x)
                best = min(best, time.perf_counter() - start)
        times.append(best)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--days", type=int, default=64)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=32)
    args = parser.parse_args()

    config = BANetConfig(width=args.width, sequence_length=64)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        meta = WeightsMetadata(
            architecture=config.to_dict(),
            bands=("red", "nir", "swir2", "frp"),
            mean=(0.08, 0.2, 0.15, 0.0),
            std=(0.03, 0.05, 0.05, 1.0),
            sequence_length=64,
            training_data_sha256="benchmark",
        )
        weights = save_banet_weights(Path(tmp) / "bench.pt", BANet(config).eval(), meta)
        spec = BANetSpec(
            weights=(str(weights),),
            device="cpu",
            grid=TileGrid(args.tile, args.overlap, 0),
        )
        cube = make_cube(Path(tmp) / "cube.zarr", args.size, args.days, args.chunk)
        per_voxel = flops_per_voxel(config, args.tile)
        params = sum(p.numel() for p in BANet(config).parameters())
        print(
            f"BA-Net width {args.width}: {params / 1e6:.2f} M parameters, "
            f"{per_voxel * 64 * args.tile**2 / 1e9:.1f} GFLOP per 64 x {args.tile} x "
            f"{args.tile} sequence"
        )
        print(
            f"cube {args.days} days x {args.size} x {args.size}, chunks {args.chunk}, "
            f"tiles {args.tile} (overlap {args.overlap}), halo {spec.exact_halo}"
        )

        mm1 = matmul_flops(1)
        mm_all = matmul_flops(cores)
        print(
            f"dense matmul float32: {mm1 / 1e9:.1f} GFLOP/s (1 thread), "
            f"{mm_all / 1e9:.1f} GFLOP/s ({cores} threads)"
        )

        useful = args.days * args.size * args.size
        runs = {}
        for workers in (1, 2):
            seconds, voxels = run_cluster(cube, spec, workers)
            runs[workers] = seconds
            achieved = per_voxel * voxels / seconds
            reference = mm1 * workers if workers <= cores else mm_all
            print(
                f"{workers} worker(s) x 1 thread: {seconds:.1f} s, model "
                f"{achieved / 1e9:.1f} GFLOP/s executed = "
                f"{achieved / reference:.2f} of "
                f"matmul on {workers} core(s); {useful / seconds / 1e3:.0f} k "
                f"pixel-days/s useful (tiles+halo recompute {voxels / useful:.2f}x)"
            )
        print(f"two workers vs one: throughput ratio {runs[1] / runs[2]:.2f}")

    fp32, bf16 = bf16_speedup(config, args.tile)
    print(
        f"one sequence on {cores} threads: float32 {fp32:.2f} s, bfloat16 autocast "
        f"{bf16:.2f} s (speed-up {fp32 / bf16:.2f}x)"
    )


if __name__ == "__main__":
    main()
