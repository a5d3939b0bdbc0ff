"""Benchmark burnscape's downloader against a bare requests loop on the same files.

Serves N files of 1-5 MB from burnscape's local STAC mirror (127.0.0.1, in its
own process), then
downloads each file with a bare ``requests`` streaming loop and with burnscape's
:class:`Downloader` (ledger, temp file, sha256 + size check, atomic rename),
interleaved file by file and sequential, and prints both rates and their ratio
(the cost of verifying, mostly hashing). Then it downloads the whole set as a user
would, a bare sequential loop against burnscape's ``fetch_all`` with its default
parallelism, and prints that ratio (the benchmark's target). Beside them it runs
the bare loop with SHA-256 added, in as many threads as burnscape uses: no client
that verifies what it fetches can beat it, so it shows how much of the gap is
the machine (hashing competes with the server for the same cores) and how much
is burnscape. It also times the ledger calls the downloader makes per file.

Run: ``.venv/bin/python benchmarks/bench_download.py [--files 200]``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import logging
import multiprocessing
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from burnscape.acquire import (
    Downloader,
    FileRequest,
    Ledger,
    MirrorServer,
    make_session,
)
from burnscape.config import SourceConfig

MB = 1 << 20


def make_files(folder: Path, count: int, low_mb: float, high_mb: float) -> list[dict]:
    rng = random.Random(42)
    files = []
    for index in range(count):
        size = rng.randint(int(low_mb * MB), int(high_mb * MB))
        data = os.urandom(size)
        name = f"f{index:03d}.bin"
        (folder / name).write_bytes(data)
        files.append(
            {"name": name, "size": size, "sha256": hashlib.sha256(data).hexdigest()}
        )
    return files


def bare_fetch(
    session: requests.Session, url: str, dest: Path, digest: bool = False
) -> float:
    """Fetch one file with plain requests; return the seconds taken.

    With ``digest`` it also computes the SHA-256 as the bytes arrive (what any
    verifying downloader must do), to show how much of the gap is hashing.
    """
    start = time.perf_counter()
    hasher = hashlib.sha256()
    with session.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        with open(dest / url.rsplit("/", 1)[1], "wb") as handle:
            for chunk in response.iter_content(1 << 20):
                handle.write(chunk)
                if digest:
                    hasher.update(chunk)
    return time.perf_counter() - start


def burnscape_fetch(downloader: Downloader, request: FileRequest) -> float:
    """Fetch one file with burnscape's downloader; return the seconds taken."""
    start = time.perf_counter()
    result = downloader.fetch(request)
    elapsed = time.perf_counter() - start
    if result.state != "verified":
        raise SystemExit(f"download failed: {result.error}")
    return elapsed


def run_round(
    urls: list[str], files: list[dict], work: Path, index: int
) -> tuple[float, float, float]:
    """Download every file both ways, interleaved file by file (alternating
    which goes first), so that load from other processes hits both alike."""
    bare_dir, ours_dir = work / f"bare{index}", work / f"ours{index}"
    bare_dir.mkdir()
    bare_total = ours_total = hashed_total = 0.0
    with make_session() as session, Ledger(work / f"ledger{index}.sqlite") as ledger:
        downloader = Downloader(ledger, max_workers=1)
        for position, (url, info) in enumerate(zip(urls, files, strict=True)):
            request = FileRequest(
                url=url,
                path=ours_dir / info["name"],
                size=info["size"],
                sha256=info["sha256"],
            )
            if position % 2:
                ours_total += burnscape_fetch(downloader, request)
                bare_total += bare_fetch(session, url, bare_dir)
            else:
                bare_total += bare_fetch(session, url, bare_dir)
                ours_total += burnscape_fetch(downloader, request)
            hashed_total += bare_fetch(session, url, bare_dir, digest=True)
            (bare_dir / info["name"]).unlink()
            request.path.unlink()
        downloader.session.close()
    return bare_total, ours_total, hashed_total


class TimedLedger(Ledger):
    """A ledger that adds up the seconds its callers spend in it per call,
    waiting for other threads included (what a download thread pays)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.seconds = 0.0
        self.guard = threading.Lock()

    def _timed(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            with self.guard:
                self.seconds += time.perf_counter() - start

    def find_file(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(super().find_file, *args, **kwargs)

    def start_file(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(super().start_file, *args, **kwargs)

    def mark_verified(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(super().mark_verified, *args, **kwargs)

    def mark_failed(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(super().mark_failed, *args, **kwargs)


def run_batch_round(
    urls: list[str], files: list[dict], work: Path, index: int, workers: int
) -> tuple[float, float, float, float]:
    """Download all files as a user would: a bare sequential loop, and burnscape's
    ``fetch_all`` with its default parallelism (``burnscape download -j``); and
    the bare loop with SHA-256 in ``workers`` threads (the verifying ceiling).

    Returns (bare, burnscape, ceiling, burnscape's time in its ledger) seconds;
    the order rotates by round.
    """
    bare_dir, ours_dir = work / f"batch-bare{index}", work / f"batch-ours{index}"
    bare_dir.mkdir()
    requests_ = [
        FileRequest(
            url=url,
            path=ours_dir / info["name"],
            size=info["size"],
            sha256=info["sha256"],
        )
        for url, info in zip(urls, files, strict=True)
    ]

    def bare() -> float:
        with make_session() as session:
            return sum(bare_fetch(session, url, bare_dir) for url in urls)

    def ceiling() -> float:
        with (
            make_session(pool_size=max(8, workers)) as session,
            concurrent.futures.ThreadPoolExecutor(workers) as pool,
        ):
            start = time.perf_counter()
            list(pool.map(lambda url: bare_fetch(session, url, bare_dir, True), urls))
            return time.perf_counter() - start

    def ours() -> float:
        with TimedLedger(work / f"batch-ledger{index}.sqlite") as ledger:
            downloader = Downloader(ledger, max_workers=workers)
            start = time.perf_counter()
            results = downloader.fetch_all(requests_)
            elapsed = time.perf_counter() - start
            downloader.session.close()
        ledger_seconds.append(ledger.seconds)
        if any(result.state != "verified" for result in results):
            raise SystemExit("download failed in the batch round")
        return elapsed

    contenders = [bare, ours, ceiling]
    times: dict[str, float] = {}
    ledger_seconds: list[float] = []
    for offset in range(len(contenders)):
        run = contenders[(index + offset) % len(contenders)]
        times[run.__name__] = run()
    shutil.rmtree(bare_dir)
    shutil.rmtree(ours_dir)
    return times["bare"], times["ours"], times["ceiling"], ledger_seconds[0]


def ledger_overhead_ms(folder: Path, count: int = 2000) -> float:
    """Time find_file + start_file + mark_verified: the ledger calls of one file."""
    with Ledger(folder / "overhead.sqlite") as ledger:
        start = time.perf_counter()
        for index in range(count):
            path = folder / f"x{index}.bin"
            ledger.find_file(path)
            ledger.start_file(path, url=f"http://h/{index}", expected_size=1)
            ledger.mark_verified(
                path, url=f"http://h/{index}", size=1, sha256="0" * 64, mtime_ns=index
            )
        return (time.perf_counter() - start) / count * 1000


def serve(
    mirror: Path, source: SourceConfig, ready: multiprocessing.Queue[str]
) -> None:
    """Run the mirror in its own process (a remote server has its own CPU)."""
    logging.basicConfig(level=logging.ERROR)
    with MirrorServer(mirror, [source]) as server:
        ready.put(server.url)
        threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--min-mb", type=float, default=1.0)
    parser.add_argument("--max-mb", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        help="burnscape's parallel downloads in the batch comparison (its default)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        mirror = work / "mirror" / "bench"
        mirror.mkdir(parents=True)
        files = make_files(mirror, args.files, args.min_mb, args.max_mb)
        total = sum(f["size"] for f in files)
        source = SourceConfig.model_validate(
            {
                "kind": "stac",
                "name": "bench",
                "collection": "bench",
                "mirror_folder": "bench",
                "items": [
                    {
                        "id": "all",
                        "datetime": "2020-01-01T00:00:00Z",
                        "assets": {
                            f["name"]: {"path": f["name"], "sha256": f["sha256"]}
                            for f in files
                        },
                    }
                ],
            }
        )
        context = multiprocessing.get_context("spawn")
        ready: multiprocessing.Queue[str] = context.Queue()
        server = context.Process(
            target=serve, args=(work / "mirror", source, ready), daemon=True
        )
        server.start()
        try:
            root = ready.get(timeout=120)
            urls = [f"{root}files/bench/{f['name']}" for f in files]
            warm = work / "warm"
            warm.mkdir()
            with make_session() as session:  # fill the page cache; not counted
                for url in urls:
                    bare_fetch(session, url, warm)
            shutil.rmtree(warm)
            rounds = [run_round(urls, files, work, i) for i in range(args.rounds)]
            batches = [
                run_batch_round(urls, files, work, i, args.workers)
                for i in range(args.rounds)
            ]
        finally:
            server.terminate()
            server.join()
        overhead = ledger_overhead_ms(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bare_time = sum(r[0] for r in rounds)
    ours_time = sum(r[1] for r in rounds)
    bare_rate = total * args.rounds / MB / bare_time
    ours_rate = total * args.rounds / MB / ours_time
    print(
        f"files: {len(files)}, {total / MB:.0f} MiB, {args.rounds} rounds, "
        "interleaved file by file"
    )
    print(f"bare requests loop: {bare_rate:8.1f} MiB/s  ({bare_time:.2f} s)")
    hashed_rate = total * args.rounds / MB / sum(r[2] for r in rounds)
    print(
        f"bare loop + sha256: {hashed_rate:8.1f} MiB/s  (hashing alone costs "
        f"{1 - hashed_rate / bare_rate:.0%})"
    )
    print(f"burnscape:          {ours_rate:8.1f} MiB/s  ({ours_time:.2f} s)")
    print(
        f"ratio burnscape/bare, one file at a time: {ours_rate / bare_rate:.3f}, "
        f"against the bare loop + sha256: {ours_rate / hashed_rate:.3f}"
    )
    batch_bare = total * args.rounds / MB / sum(r[0] for r in batches)
    batch_ours = total * args.rounds / MB / sum(r[1] for r in batches)
    batch_ceiling = total * args.rounds / MB / sum(r[2] for r in batches)
    print(
        f"whole set: bare sequential loop {batch_bare:.1f} MiB/s, burnscape "
        f"fetch_all ({args.workers} parallel, verified) {batch_ours:.1f} MiB/s, "
        f"bare loop + sha256 in {args.workers} threads {batch_ceiling:.1f} MiB/s"
    )
    # On a small shared machine single rounds swing by 15 %: the medians of the
    # per-round ratios are the figures to quote.
    print(
        "per-round ratios burnscape/bare: "
        + " ".join(f"{r[0] / r[1]:.2f}" for r in batches)
    )
    print(
        "ratio burnscape/bare, whole set (median of rounds): "
        f"{statistics.median(r[0] / r[1] for r in batches):.3f}  (target >= 0.9)"
    )
    print(
        "ceiling for a verifying client (bare loop + sha256, same threads): "
        f"{statistics.median(r[0] / r[2] for r in batches):.3f} of the bare loop; "
        "burnscape reaches "
        f"{statistics.median(r[2] / r[1] for r in batches):.3f} of it"
    )
    print(f"ledger overhead per file: {overhead:.3f} ms  (target < 2 ms)")
    in_run = statistics.median(r[3] for r in batches) / len(files) * 1000
    print(
        f"ledger time per file inside the {args.workers}-thread run: {in_run:.3f} ms "
        "(each thread's calls, waits for the others included)"
    )


if __name__ == "__main__":
    main()
