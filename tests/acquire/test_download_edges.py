"""The downloader against servers that compress, change files, stall, and
destinations that cannot take a file; and cancelling it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from burnscape.acquire import Downloader, FileRequest, Ledger, make_session

from .faultserver import Entry, Fault, FaultServer, make_bytes

SIZE = 300_000


@pytest.fixture()
def server() -> FaultServer:
    with FaultServer() as running:
        yield running


@pytest.fixture()
def ledger(tmp_path: Path) -> Ledger:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def _downloader(ledger: Ledger, **options: object) -> Downloader:
    settings = {
        "max_workers": 2,
        "max_attempts": 4,
        "backoff_s": 0.05,
        "timeout_s": (2.0, 1.0),
        **options,
    }
    session = make_session(retries=2, backoff_s=0.05, backoff_max_s=1.0)
    return Downloader(ledger, session=session, **settings)  # type: ignore[arg-type]


def test_a_compressing_server_still_gives_the_listed_file(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    text = b"latitude,longitude,acq_date\n" + b"39.5,-8.1,2017-06-17\n" * 20_000
    url = server.add("/fires.txt", text, gzip=True)
    request = FileRequest(url=url, path=tmp_path / "fires.txt", size=len(text))
    (result,) = _downloader(ledger).fetch_all([request])
    assert result.state == "verified", result.error
    assert request.path.read_bytes() == text
    # the file's own bytes were asked for
    assert server.requests_for("/fires.txt")[0].headers["Accept-Encoding"] == (
        "identity"
    )


def test_a_file_changed_at_the_source_during_a_resume_comes_back_whole(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    """No checksum listed: If-Range is what keeps old and new bytes apart."""
    old, new = make_bytes(SIZE, seed=1), make_bytes(SIZE, seed=2)

    def publish_new_version(entry: Entry) -> None:
        entry.data, entry.etag, entry.after_serving = new, '"v2"', None

    url = server.add(
        "/nrt.txt",
        old,
        Fault("reset", fraction=0.4),
        etag='"v1"',
        after_serving=publish_new_version,
    )
    request = FileRequest(url=url, path=tmp_path / "nrt.bin")
    (result,) = _downloader(ledger).fetch_all([request])
    assert result.state == "verified", result.error
    assert request.path.read_bytes() == new
    first, second = server.requests_for("/nrt.txt")
    assert "If-Range" not in first.headers
    assert second.headers["If-Range"] == '"v1"' and "Range" in second.headers


def test_a_partial_file_of_an_earlier_run_without_checksum_starts_over(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    data = make_bytes(SIZE, seed=3)
    url = server.add("/x.bin", data)
    path = tmp_path / "x.bin"
    (tmp_path / "x.bin.part").write_bytes(b"stale bytes of another version")
    (result,) = _downloader(ledger).fetch_all([FileRequest(url=url, path=path)])
    assert result.state == "verified" and path.read_bytes() == data
    assert "Range" not in server.requests_for("/x.bin")[0].headers


def test_a_changed_md5_is_checked_again(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    data = make_bytes(SIZE, seed=4)
    url = server.add("/m.bin", data)
    path = tmp_path / "m.bin"
    right = hashlib.md5(data).hexdigest()
    downloader = _downloader(ledger)
    (first,) = downloader.fetch_all([FileRequest(url=url, path=path, md5=right)])
    (again,) = downloader.fetch_all([FileRequest(url=url, path=path, md5=right)])
    assert (first.state, again.state) == ("verified", "skipped")
    assert ledger.find_file(path).md5 == right  # type: ignore[union-attr]
    (changed,) = downloader.fetch_all([FileRequest(url=url, path=path, md5="0" * 32)])
    assert changed.state == "failed" and "md5" in (changed.error or "")


def test_giving_up_keeps_what_arrived_for_the_next_run(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    data = make_bytes(SIZE, seed=5)
    url = server.add("/slow.bin", data, then=Fault("truncate", fraction=0.3))
    request = FileRequest(
        url=url,
        path=tmp_path / "slow.bin",
        size=SIZE,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    (result,) = _downloader(ledger, max_attempts=2).fetch_all([request])
    assert result.state == "failed" and "gave up after 2 attempts" in (
        result.error or ""
    )
    part = tmp_path / "slow.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < SIZE
    server.entries["/slow.bin"].then = None  # the link recovers
    (rerun,) = _downloader(ledger).fetch_all([request])
    assert rerun.state == "verified" and request.path.read_bytes() == data
    resumed = server.requests_for("/slow.bin")[-1]
    assert resumed.headers["Range"] == f"bytes={kept}-"


def test_destinations_that_cannot_take_the_file_fail_with_a_reason(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    data = make_bytes(1_000, seed=6)
    url = server.add("/d.bin", data)
    (tmp_path / "taken.bin").mkdir()  # a folder where the file should go
    results = _downloader(ledger).fetch_all(
        [
            FileRequest(url=url, path=tmp_path / "taken.bin"),
            FileRequest(url=url, path=tmp_path / ("n" * 300 + ".bin")),
            FileRequest(url=url, path=tmp_path / "ok.bin"),
        ]
    )
    assert [r.state for r in results] == ["failed", "failed", "verified"]
    assert "cannot put the verified file" in (results[0].error or "")
    assert "too long" in (results[1].error or "").lower()
    assert not list(tmp_path.glob("*.part"))


def _stalling(server: FaultServer, count: int, dest: Path) -> list[FileRequest]:
    """Files whose bodies stop after 30 % for 30 s (longer than the test)."""
    requests = []
    for index in range(count):
        data = make_bytes(SIZE, seed=10 + index)
        url = server.add(
            f"/s{index}.bin", data, then=Fault("stall", seconds=30.0, fraction=0.3)
        )
        requests.append(
            FileRequest(
                url=url,
                path=dest / f"s{index}.bin",
                size=SIZE,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return requests


def test_cancel_stops_stalled_transfers_at_once_and_keeps_their_parts(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    requests = _stalling(server, 3, tmp_path)
    downloader = _downloader(ledger, timeout_s=(2.0, 25.0))
    threading.Timer(1.0, downloader.cancel).start()
    started = time.monotonic()
    results = downloader.fetch_all(requests)
    assert time.monotonic() - started < 5.0
    assert {r.error for r in results} == {"cancelled"}
    assert len(list(tmp_path.glob("*.part"))) == 2  # the two that had started
    assert ledger.summary() == {"downloading": 2}  # status calls them interrupted


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_during_a_parallel_download_ends_it_promptly(
    server: FaultServer, tmp_path: Path
) -> None:
    """``burnscape download`` in its own process group, Ctrl-C as a terminal sends."""
    requests = _stalling(server, 3, tmp_path / "d")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "url,filename,size,checksum\n"
        + "".join(
            f"{r.url},{r.path.name},{r.size},sha256:{r.sha256}\n" for r in requests
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "burnscape.cli", "download", "--manifest"]
        + [str(manifest), "--dest", str(tmp_path / "d"), "-j", "2", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while len(list((tmp_path / "d").glob("*.part"))) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # both transfers are now stalled mid-body
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert time.monotonic() - started < 5.0
    assert process.returncode == 130, output.decode()
    assert b"Traceback" not in output
    assert len(list((tmp_path / "d").glob("*.part"))) == 2  # kept for a resume
