"""50 concurrent clients against `burnscape serve` (loopback, bounded in time)."""

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from burnscape.publish.server import find_free_port

CLIENTS = 50
DURATION_S = float(os.environ.get("BURNSCAPE_LOAD_SECONDS", "30"))
WARMUP_S = 5.0
RSS_GROWTH_BOUND_MIB = 150
"""Largest growth of the server's resident memory from the end of warm-up."""

QUERIES = [
    (
        "/collections/fire-events/items",
        {"bbox": "-122.6,39.6,-122.4,39.8", "datetime": "2018-06-01/2018-06-30"},
    ),
    (
        "/collections/burned-pixels/items",
        {
            "bbox": "-122.53,39.74,-122.52,39.75",
            "datetime": "2018-06-11",
            "limit": "50",
        },
    ),
    ("/collections/burned-pixels/items", {"datetime": "2018-06-09/..", "offset": "20"}),
    ("/collections/burned-area/coverage", {"properties": "burn_date,confidence"}),
    (
        "/collections/burned-area/coverage",
        {"bbox": "-122.53,39.74,-122.52,39.75", "datetime": "2018-06-09"},
    ),
    (
        "/collections/reflectance/coverage",
        {"datetime": "2024-07-02", "properties": "red"},
    ),
]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def served_process(outputs_dir):
    port = find_free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "burnscape.cli",
            "serve",
            "--outputs",
            str(outputs_dir),
            "--port",
            str(port),
            "--threads",
            "8",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/conformance", timeout=5)
            break
        except requests.ConnectionError:
            assert process.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
    yield url, process.pid
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.integration
def test_fifty_clients_get_no_errors_and_memory_stays_bounded(served_process):
    url, pid = served_process
    stop = threading.Event()
    errors: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        session = requests.Session()
        for path, params in itertools.islice(itertools.cycle(QUERIES), index, None):
            if stop.is_set():
                return
            start = time.perf_counter()
            try:
                response = session.get(
                    f"{url}{path}", params={"f": "json", **params}, timeout=60
                )
                ok = response.status_code == 200 and response.json()
                problem = None if ok else f"{path} -> {response.status_code}"
            except (requests.RequestException, ValueError) as err:
                problem = f"{path} -> {type(err).__name__}"
            with lock:
                latencies.append(time.perf_counter() - start)
                if problem:
                    errors.append(problem)

    threads = [
        threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(WARMUP_S)
    rss_after_warmup = rss_mib(pid)
    time.sleep(max(0.0, DURATION_S - WARMUP_S))
    stop.set()
    for thread in threads:
        thread.join(timeout=90)
    rss_end = rss_mib(pid)

    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[:10]
    assert len(latencies) > CLIENTS
    growth = rss_end - rss_after_warmup
    assert growth < RSS_GROWTH_BOUND_MIB, f"server RSS grew {growth:.0f} MiB"
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    print(
        f"\n{len(latencies)} requests in {DURATION_S:.0f} s by {CLIENTS} clients: "
        f"{len(latencies) / DURATION_S:.1f} req/s, p50 {p50:.3f} s, "
        f"p95 {p95:.3f} s; server RSS "
        f"{rss_after_warmup:.0f} -> {rss_end:.0f} MiB"
    )
