from __future__ import annotations

import os
from pathlib import Path

import pytest

from burnscape.acquire import Ledger, MirrorServer, acquire_source
from burnscape.acquire.stac import region_bbox_wgs84, time_interval
from burnscape.config import SourceConfig, TimeConfig, WorkflowConfig
from burnscape.errors import AssetUnavailableError, ChecksumError
from burnscape.utils import sha256_file

from .conftest import with_asset

BANDS = {"B2", "B3", "B4", "B5", "B6", "B7"}


def _searches(server: MirrorServer) -> list[tuple[str, str]]:
    return [entry for entry in server.request_log if "/files/" not in entry[1]]


def test_acquire_from_mirror_verifies_every_file_and_rerun_fetches_nothing(
    tmp_path: Path,
    shared_data: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    dest = tmp_path / "downloads"
    with (
        MirrorServer(shared_data, chrome2.sources) as server,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        items = acquire_source(
            chrome2_source,
            chrome2.region,
            chrome2.time,
            dest,
            ledger,
            api_url=server.url,
        )
        assert [item.id for item in items] == [
            "chrome2-2018-landsat8-post",
            "chrome2-2018-landsat8-pre",
        ]
        configured = {item.id: item for item in chrome2_source.items}
        for item in items:
            assert set(item.assets) == BANDS
            assert item.time_bounds == configured[item.id].time_bounds
            for key, path in item.assets.items():
                assert path.parent == dest / "landsat8-l1" / item.id
                assert sha256_file(path) == configured[item.id].assets[key].sha256
            assert item.band_paths()["red"] == item.assets["B4"]
            assert item.asset_info["B4"]["scale"] == 2e-5
        assert ledger.summary() == {"verified": 12}
        first_log = list(server.request_log)
        assert sum("/files/" in path for _, path in first_log) == 12

        mtimes = {
            p: p.stat().st_mtime_ns for item in items for p in item.assets.values()
        }
        again = acquire_source(
            chrome2_source,
            chrome2.region,
            chrome2.time,
            dest,
            ledger,
            api_url=server.url,
        )
        assert again == items
        assert server.request_log == first_log  # no search, no file asked again
        assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_search_uses_region_bbox_in_wgs84_and_time_window(
    tmp_path: Path,
    shared_data: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    west, south, east, north = region_bbox_wgs84(chrome2.region)
    assert (west, south) == pytest.approx((-122.669, 39.477), abs=2e-3)
    assert (east, north) == pytest.approx((-122.426, 39.671), abs=2e-3)
    only_post = TimeConfig(start="2019-01-01", end="2019-12-31")
    assert time_interval(only_post) == "2019-01-01T00:00:00Z/2019-12-31T23:59:59Z"
    with (
        MirrorServer(shared_data, chrome2.sources) as server,
        Ledger(tmp_path / "l.sqlite") as ledger,
    ):
        items = acquire_source(
            chrome2_source,
            chrome2.region,
            only_post,
            tmp_path / "d",
            ledger,
            api_url=server.url,
            max_workers=2,
        )
        assert [item.id for item in items] == ["chrome2-2018-landsat8-post"]
        search = ledger.requests()[-1]
        assert search.params["datetime"] == "2019-01-01T00:00:00Z/2019-12-31T23:59:59Z"
        assert search.params["collections"] == ["chrome2-2018-landsat8-l1"]
        assert search.params["bbox"] == pytest.approx([west, south, east, north])


def test_mirror_lacking_a_file_names_it_and_keeps_the_verified_ones(
    tmp_path: Path,
    linked_mirror: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    (
        linked_mirror / "chrome2-fire-2018-landsat8" / "Postdata" / "band5clip.tif"
    ).unlink()
    dest = tmp_path / "downloads"
    with (
        MirrorServer(linked_mirror, chrome2.sources) as server,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        with pytest.raises(AssetUnavailableError) as caught:
            acquire_source(
                chrome2_source,
                chrome2.region,
                chrome2.time,
                dest,
                ledger,
                api_url=server.url,
            )
        message = str(caught.value)
        assert "chrome2-2018-landsat8-post/B5" in message
        assert "/files/landsat8-l1/Postdata/band5clip.tif" in message
        assert "11 verified and kept" in message
        assert ledger.summary() == {"verified": 11, "missing": 1}
    kept = sorted(p.name for p in dest.rglob("*") if p.is_file())
    assert len(kept) == 11 and "band5clip.tif" not in kept


def test_checksum_mismatch_is_deleted_marked_failed_never_placed(
    tmp_path: Path,
    shared_data: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    wrong = with_asset(
        chrome2_source, "chrome2-2018-landsat8-pre", "B6", sha256="0" * 64
    )
    dest = tmp_path / "downloads"
    with (
        MirrorServer(shared_data, [wrong]) as server,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        with pytest.raises(
            ChecksumError, match="chrome2-2018-landsat8-pre/B6"
        ) as caught:
            acquire_source(
                wrong, chrome2.region, chrome2.time, dest, ledger, api_url=server.url
            )
        assert "11 verified and kept" in str(caught.value)
        failed = ledger.files("failed")
        assert [row.asset_key for row in failed] == ["B6"]
        assert "does not match the expected " + "0" * 64 in str(failed[0].last_error)
        assert ledger.summary() == {"verified": 11, "failed": 1}
    folder = dest / "landsat8-l1" / "chrome2-2018-landsat8-pre"
    assert not (folder / "band6afterclip.tif").exists()
    assert not list(dest.rglob("*.part"))
    assert len(list(dest.rglob("*.tif"))) == 11


def test_catalogue_checksum_contradicting_the_workflow_is_not_fetched(
    tmp_path: Path,
    shared_data: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    wrong = with_asset(
        chrome2_source, "chrome2-2018-landsat8-pre", "B6", sha256="0" * 64
    )
    with (
        MirrorServer(shared_data, chrome2.sources) as server,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        with pytest.raises(ChecksumError, match="contradicts the workflow's 0000"):
            acquire_source(
                wrong,
                chrome2.region,
                chrome2.time,
                tmp_path / "d",
                ledger,
                api_url=server.url,
            )
        assert "band6afterclip" not in " ".join(path for _, path in server.request_log)
        assert ledger.summary() == {"verified": 11}


def test_checksum_mismatch_from_origin_deletes_the_temporary_file(
    tmp_path: Path,
    shared_data: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    wrong = with_asset(
        chrome2_source, "chrome2-2018-landsat8-pre", "B6", sha256="0" * 64
    )
    dest = tmp_path / "downloads"
    with (
        MirrorServer(shared_data, chrome2.sources) as server,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        origin = f"{server.url}files/landsat8-l1/"
        static = wrong.model_copy(update={"origin": origin})
        with pytest.raises(ChecksumError, match="sha256 .* does not match"):
            acquire_source(static, chrome2.region, chrome2.time, dest, ledger)
        failed = ledger.files("failed")
        assert [row.asset_key for row in failed] == ["B6"]
        assert "does not match" in str(failed[0].last_error)
        assert ledger.summary() == {"verified": 11, "failed": 1}
        assert _searches(server) == []  # static items: no search at all
    folder = dest / "landsat8-l1" / "chrome2-2018-landsat8-pre"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in folder.iterdir() if not p.name.startswith("band6")
    )
    assert not list(dest.rglob("*.part"))


def test_rerun_rehashes_a_touched_file_and_replaces_a_corrupted_one(
    tmp_path: Path,
    shared_data: Path,
    chrome2: WorkflowConfig,
    chrome2_source: SourceConfig,
) -> None:
    dest = tmp_path / "downloads"
    with (
        MirrorServer(shared_data, chrome2.sources) as server,
        Ledger(tmp_path / "ledger.sqlite") as ledger,
    ):
        args = (chrome2_source, chrome2.region, chrome2.time, dest, ledger)
        items = acquire_source(*args, api_url=server.url)
        touched = items[0].assets["B2"]
        os.utime(touched, ns=(1, 1))
        corrupted = items[1].assets["B3"]
        data = bytearray(corrupted.read_bytes())
        data[1000] ^= 0xFF
        corrupted.write_bytes(bytes(data))
        before = len(server.request_log)
        acquire_source(*args, api_url=server.url)
        fetched = [path for _, path in server.request_log[before:] if "/files/" in path]
        assert fetched == [
            ledger.find_file(corrupted).url.removeprefix(server.url[:-1])
        ]
        expected = (
            {i.id: i for i in chrome2_source.items}[items[1].id].assets["B3"].sha256
        )
        assert sha256_file(corrupted) == expected
        assert ledger.find_file(touched).mtime_ns == 1
