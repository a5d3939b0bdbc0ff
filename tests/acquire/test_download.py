"""The downloader against a server that misbehaves in each of the known ways."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from burnscape.acquire import Downloader, FileRequest, Ledger, make_session
from burnscape.acquire.download import raise_for_failures
from burnscape.errors import (
    AssetUnavailableError,
    AuthenticationError,
    ChecksumError,
    DownloadError,
)

from .faultserver import Fault, FaultServer, LoggedRequest, make_bytes

SIZE = 300_000


@pytest.fixture()
def server() -> FaultServer:
    with FaultServer() as running:
        yield running


@pytest.fixture()
def ledger(tmp_path: Path) -> Ledger:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


@pytest.fixture()
def downloader(ledger: Ledger) -> Downloader:
    session = make_session(retries=3, backoff_s=0.05, backoff_max_s=3.0)
    return Downloader(
        ledger,
        session=session,
        max_workers=2,
        max_attempts=4,
        backoff_s=0.05,
        timeout_s=(2.0, 1.0),
    )


def _request(url: str, data: bytes, dest: Path, **extra: object) -> FileRequest:
    return FileRequest(
        url=url,
        path=dest,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        **extra,  # type: ignore[arg-type]
    )


def _batch(
    server: FaultServer,
    downloader: Downloader,
    tmp: Path,
    *faults: Fault,
    **options: object,
) -> tuple[list, bytes, bytes]:
    """Download a good file and a faulty one together; check the good one."""
    good, bad = make_bytes(SIZE, seed=1), make_bytes(SIZE, seed=2)
    good_url = server.add("/good.bin", good)
    bad_url = server.add("/bad.bin", bad, *faults, **options)  # type: ignore[arg-type]
    results = downloader.fetch_all(
        [
            _request(good_url, good, tmp / "out" / "good.bin"),
            _request(
                bad_url, bad, tmp / "out" / "bad.bin", item_id="it", asset_key="B"
            ),
        ]
    )
    assert results[0].state == "verified"
    assert (tmp / "out" / "good.bin").read_bytes() == good
    assert not list((tmp / "out").glob("*.part"))
    return results, good, bad


def _range_start(request: LoggedRequest) -> int:
    """Return where a logged request's Range starts (bytes=N-)."""
    return int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))


def _assert_not_kept(tmp: Path, ledger: Ledger, state: str = "failed") -> None:
    assert not (tmp / "out" / "bad.bin").exists()
    assert not list((tmp / "out").glob("*.part"))
    row = ledger.find_file(tmp / "out" / "bad.bin")
    assert row is not None and row.state == state and row.last_error


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_broken_body_resumes_with_range(
    server: FaultServer, downloader: Downloader, tmp_path: Path, kind: str
) -> None:
    results, _, bad = _batch(server, downloader, tmp_path, Fault(kind, fraction=0.4))
    assert results[1].state == "verified"
    assert (tmp_path / "out" / "bad.bin").read_bytes() == bad
    requests = server.requests_for("/bad.bin")
    assert len(requests) == 2
    assert 0 < _range_start(requests[1]) <= int(SIZE * 0.4)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_with_backoff(
    server: FaultServer, downloader: Downloader, tmp_path: Path, status: int
) -> None:
    faults = [Fault("status", status=status)] * 2
    results, _, bad = _batch(server, downloader, tmp_path, *faults)
    assert results[1].state == "verified"
    assert len(server.requests_for("/bad.bin")) == 3


def test_429_honours_retry_after(
    server: FaultServer, downloader: Downloader, tmp_path: Path
) -> None:
    results, _, _ = _batch(
        server, downloader, tmp_path, Fault("status", status=429, retry_after="2")
    )
    assert results[1].state == "verified"
    first, second = server.requests_for("/bad.bin")
    assert second.time - first.time >= 1.9


def test_persistent_server_error_fails_after_bounded_attempts(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    results, _, _ = _batch(
        server, downloader, tmp_path, then=Fault("status", status=500)
    )
    assert results[1].state == "failed" and "HTTP 500" in str(results[1].error)
    assert len(server.requests_for("/bad.bin")) == 4  # first try + 3 retries
    _assert_not_kept(tmp_path, ledger)
    with pytest.raises(DownloadError, match=r"1 of 2 files not acquired .* it/B"):
        raise_for_failures(results)


def test_html_login_page_is_a_failure_not_a_file(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    results, _, _ = _batch(server, downloader, tmp_path, then=Fault("html"))
    assert results[1].state == "failed" and "HTML page" in str(results[1].error)
    assert len(server.requests_for("/bad.bin")) == 1  # not retried
    _assert_not_kept(tmp_path, ledger)


def test_html_body_under_a_binary_type_is_recognised(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    url = server.add("/bad.bin", b"", then=Fault("html-no-type"))
    # Neither size nor checksum listed: only the content can tell.
    result = downloader.fetch(FileRequest(url=url, path=tmp_path / "out" / "bad.bin"))
    assert result.state == "failed" and "body is an HTML page" in str(result.error)
    _assert_not_kept(tmp_path, ledger)


def test_redirect_to_another_host_does_not_forward_credentials(
    server: FaultServer, downloader: Downloader, tmp_path: Path
) -> None:
    data = make_bytes(SIZE, seed=5)
    with FaultServer(host="localhost") as other:
        target = other.add("/moved.bin", data)
        url = server.add("/bad.bin", b"", then=Fault("redirect", location=target))
        request = _request(
            url,
            data,
            tmp_path / "out" / "moved.bin",
            headers={"Authorization": "Bearer secret-token"},
        )
        result = downloader.fetch(request)
        assert result.state == "verified"
        assert server.requests_for("/bad.bin")[0].headers["Authorization"] == (
            "Bearer secret-token"
        )
        assert "Authorization" not in other.requests_for("/moved.bin")[0].headers
    assert (tmp_path / "out" / "moved.bin").read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(
    server: FaultServer, downloader: Downloader, tmp_path: Path
) -> None:
    results, _, bad = _batch(
        server, downloader, tmp_path, Fault("reset", fraction=0.5), ignore_range=True
    )
    assert results[1].state == "verified"
    assert (tmp_path / "out" / "bad.bin").read_bytes() == bad
    assert "Range" in server.requests_for("/bad.bin")[1].headers


def test_wrong_bytes_fail_the_checksum_and_are_deleted(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    results, _, _ = _batch(server, downloader, tmp_path, then=Fault("wrong"))
    assert results[1].state == "failed" and results[1].error_type is ChecksumError
    _assert_not_kept(tmp_path, ledger)
    with pytest.raises(ChecksumError, match="sha256 .* does not match"):
        raise_for_failures(results)


def test_stalled_body_times_out_and_resumes(
    server: FaultServer, downloader: Downloader, tmp_path: Path
) -> None:
    started = time.monotonic()
    results, _, bad = _batch(
        server, downloader, tmp_path, Fault("stall", seconds=4.0, fraction=0.3)
    )
    assert results[1].state == "verified"
    assert (tmp_path / "out" / "bad.bin").read_bytes() == bad
    assert time.monotonic() - started < 3.5  # the read timeout cut the stall short
    assert 0 < _range_start(server.requests_for("/bad.bin")[1]) <= int(SIZE * 0.3)


def test_not_found_is_missing_and_not_retried(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    data = make_bytes(100, seed=3)
    good = make_bytes(SIZE, seed=1)
    good_url = server.add("/good.bin", good)
    results = downloader.fetch_all(
        [
            _request(
                server.url + "absent.bin",
                data,
                tmp_path / "out" / "bad.bin",
                item_id="it",
                asset_key="B",
            ),
            _request(good_url, good, tmp_path / "out" / "good.bin"),
        ]
    )
    assert [r.state for r in results] == ["missing", "verified"]
    assert len(server.requests_for("/absent.bin")) == 1
    _assert_not_kept(tmp_path, ledger, state="missing")
    with pytest.raises(AssetUnavailableError, match="it/B .*absent.bin"):
        raise_for_failures(results)


def test_body_far_smaller_than_listed_is_a_failure(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    url = server.add("/bad.bin", b"sorry, try later\n")
    result = downloader.fetch(
        FileRequest(url=url, path=tmp_path / "out" / "bad.bin", size=SIZE)
    )
    assert result.state == "failed" and "listed at" in str(result.error)
    _assert_not_kept(tmp_path, ledger)


def test_without_checksum_the_format_is_checked(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    tiff = _tiff_bytes()
    good = downloader.fetch(
        FileRequest(
            url=server.add("/a.tif", tiff),
            path=tmp_path / "out" / "a.tif",
            expect_format="tiff",
        )
    )
    assert good.state == "verified"
    bad = downloader.fetch(
        FileRequest(
            url=server.add("/bad.bin", b"PK\x03\x04junk"),
            path=tmp_path / "out" / "bad.bin",
            expect_format="tiff",
        )
    )
    assert bad.state == "failed" and "does not open as tiff" in str(bad.error)
    # The right signature, the end cut off: the last block cannot be read.
    cut = downloader.fetch(
        FileRequest(
            url=server.add("/cut.tif", tiff[: len(tiff) // 2]),
            path=tmp_path / "out" / "cut.tif",
            expect_format="tiff",
        )
    )
    assert cut.state == "failed" and "does not open as tiff" in str(cut.error)
    assert not (tmp_path / "out" / "cut.tif").exists()


def _tiff_bytes() -> bytes:
    """A real 64 x 64 tiled GeoTIFF of noise (uncompressed), as bytes."""
    import numpy as np
    from rasterio.io import MemoryFile

    values = np.random.default_rng(9).integers(0, 2**15, (64, 64), dtype=np.int16)
    profile = {"driver": "GTiff", "height": 64, "width": 64, "count": 1}
    profile |= {"dtype": "int16", "tiled": True, "blockxsize": 32, "blockysize": 32}
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(values, 1)
        return bytes(memory.read())


def test_refused_credentials_are_an_authentication_error(
    server: FaultServer, downloader: Downloader, tmp_path: Path
) -> None:
    url = server.add("/bad.bin", b"", then=Fault("status", status=401))
    result = downloader.fetch(FileRequest(url=url, path=tmp_path / "out" / "bad.bin"))
    assert result.error_type is AuthenticationError
    assert len(server.requests_for("/bad.bin")) == 1


def test_backoff_grows_exponentially_between_retries(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    data = make_bytes(1000, seed=4)
    url = server.add("/bad.bin", data, *[Fault("status", status=503)] * 3)
    backoff_s = 0.2
    downloader = Downloader(
        ledger, session=make_session(retries=4, backoff_s=backoff_s, backoff_max_s=5)
    )
    result = downloader.fetch(_request(url, data, tmp_path / "out" / "bad.bin"))
    assert result.state == "verified"
    times = [entry.time for entry in server.requests_for("/bad.bin")]
    assert len(times) == 4
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # urllib3 retries the first error at once, then waits backoff * 2**n plus
    # up to one backoff of jitter.
    assert gaps[0] < backoff_s
    assert 2 * backoff_s <= gaps[1] <= 3 * backoff_s + 0.15
    assert 4 * backoff_s <= gaps[2] <= 5 * backoff_s + 0.15


def test_in_process_downloads_are_bounded_by_max_workers(
    server: FaultServer, ledger: Ledger, tmp_path: Path
) -> None:
    files = [make_bytes(200_000, seed=index) for index in range(8)]
    requests_ = [
        _request(
            server.add(f"/f{index}.bin", data, rate_bps=2_000_000),
            data,
            tmp_path / "out" / f"f{index}.bin",
        )
        for index, data in enumerate(files)
    ]
    results = Downloader(ledger, max_workers=3).fetch_all(requests_)
    assert [r.state for r in results] == ["verified"] * 8
    assert server.peak_bodies == 3  # 8 slow files, never more than 3 at once
    assert ledger.summary() == {"verified": 8}


def test_a_rate_limit_outlasting_the_retries_says_how_long_to_wait(
    server: FaultServer, downloader: Downloader, ledger: Ledger, tmp_path: Path
) -> None:
    results, _, _ = _batch(
        server, downloader, tmp_path, then=Fault("status", status=429, retry_after="1")
    )
    assert results[1].state == "failed"
    assert "HTTP 429" in (results[1].error or "")
    assert "the server asks to wait 1 s: run again later" in (results[1].error or "")
