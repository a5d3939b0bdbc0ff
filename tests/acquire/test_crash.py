"""kill -9 the downloader mid-run, run it again: nothing repeated, nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from burnscape.acquire import Ledger, acquire_source
from burnscape.acquire.ledger import request_key
from burnscape.config import RegionConfig, SourceConfig, TimeConfig

from .faultserver import FaultServer, LoggedRequest

CHILD = """
import sys
from pathlib import Path
from burnscape.acquire import Ledger, acquire_source
from burnscape.acquire.ledger import request_key
from burnscape.config import RegionConfig, SourceConfig, TimeConfig
url, dest, ledger_path = sys.argv[1:4]
source = SourceConfig(kind="stac", name="synthetic", collection="synthetic")
region = RegionConfig(crs="EPSG:4326", bbox=(9.5, 44.5, 10.5, 45.5), pixel_size=0.01)
time = TimeConfig(start="2020-07-01", end="2020-08-31")
with Ledger(Path(ledger_path)) as ledger:
    acquire_source(source, region, time, Path(dest), ledger, api_url=url, max_workers=2)
"""

SOURCE = SourceConfig(kind="stac", name="synthetic", collection="synthetic")
REGION = RegionConfig(crs="EPSG:4326", bbox=(9.5, 44.5, 10.5, 45.5), pixel_size=0.01)
TIME = TimeConfig(start="2020-07-01", end="2020-08-31")
COUNT, SIZE = 8, 400_000


def _key(root: str, entry: LoggedRequest) -> str:
    params = json.loads(entry.body) if entry.body else None
    return request_key(entry.method, root + entry.path.lstrip("/"), params)


def _count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("moment", ["during-search", "during-downloads"])
def test_sigkill_then_rerun_repeats_no_search_and_completes(
    tmp_path: Path, moment: str
) -> None:
    dest, db = tmp_path / "downloads", tmp_path / "ledger.sqlite"
    with FaultServer() as server:
        server.add_stac_items(COUNT, SIZE)
        server.page_size, server.page_delay_s = 2, 0.4
        for entry in server.entries.values():
            entry.rate_bps = 1_000_000
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.url, str(dest), str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        if moment == "during-search":
            ready = "SELECT COUNT(*) FROM requests"
            threshold = 2  # landing page and the first result page
        else:
            ready = "SELECT COUNT(*) FROM files WHERE state = 'verified'"
            threshold = 1
        deadline = time.monotonic() + 60
        while _count(db, ready) < threshold:
            assert child.poll() is None, child.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL

        expected = {
            f"item-{i:03d}": server.entries[f"/files/item-{i:03d}.bin"].data
            for i in range(COUNT)
        }
        # Nothing that looks complete is incomplete.
        before = {}
        for path in dest.rglob("*.bin"):
            assert path.read_bytes() == expected[path.parent.name]
            before[path] = path.stat().st_mtime_ns
        if moment == "during-downloads":
            assert 1 <= len(before) < COUNT
        first_run = len(server.log)
        with sqlite3.connect(db) as conn:
            known_after_kill = {
                row[0] for row in conn.execute("SELECT key FROM requests")
            }
        assert known_after_kill

        with Ledger(db) as ledger:
            items = acquire_source(
                SOURCE, REGION, TIME, dest, ledger, api_url=server.url
            )
        assert len(items) == COUNT
        for item in items:
            path = item.assets["data"]
            assert (
                hashlib.sha256(path.read_bytes()).digest()
                == hashlib.sha256(expected[item.id]).digest()
            )
        assert not list(dest.rglob("*.part"))
        assert {path: path.stat().st_mtime_ns for path in before} == before

        # A request whose answer the ledger recorded is never made again; only
        # the one in flight at the kill (never answered to the ledger) may be.
        searches = Counter(
            _key(server.url, entry)
            for entry in server.log
            if not entry.path.startswith("/files/")
        )
        repeated = {key for key, n in searches.items() if n > 1}
        assert not repeated & known_after_kill
        if moment == "during-downloads":
            # Every search page was answered and recorded before the first
            # download began: the re-run makes none of them again.
            assert not repeated, repeated
        else:
            assert max(searches.values()) <= 2
            assert len(repeated) <= 1
        rerun_files = {
            e.path for e in server.log[first_run:] if e.path.startswith("/files/")
        }
        assert not rerun_files & {f"/files/{p.parent.name}.bin" for p in before}
