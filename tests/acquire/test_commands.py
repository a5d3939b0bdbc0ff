from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from burnscape.acquire.manifest import read_manifest
from burnscape.cli import main
from burnscape.errors import ConfigError

from .faultserver import Fault, FaultServer, make_bytes


@pytest.fixture()
def server() -> FaultServer:
    with FaultServer() as running:
        yield running


def _manifest(tmp: Path, rows: list[str]) -> Path:
    path = tmp / "files.csv"
    path.write_text("url,filename,size,checksum\n" + "\n".join(rows) + "\n")
    return path


def test_manifest_download_exits_zero_when_all_verified_and_rerun_skips(
    server: FaultServer, tmp_path: Path
) -> None:
    a, b, c = make_bytes(50_000, 1), make_bytes(70_000, 2), make_bytes(10_000, 3)
    rows = [
        f"{server.add('/a.bin', a)},a.bin,{len(a)},"
        f"sha256:{hashlib.sha256(a).hexdigest()}",
        f"{server.add('/b.bin', b)},,{len(b)},md5:{hashlib.md5(b).hexdigest()}",
        f"{server.add('/c.bin', c)},c.bin,,",
    ]
    manifest = _manifest(tmp_path, rows)
    dest = tmp_path / "dest"
    result = CliRunner().invoke(
        main,
        ["download", "--manifest", str(manifest), "--dest", str(dest), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert (
        "3 of 3 files verified (3 downloaded, 0 already present), 0 failed."
        in result.output
    )
    assert (dest / "a.bin").read_bytes() == a and (dest / "b.bin").read_bytes() == b
    assert (dest / "c.bin").read_bytes() == c
    served = len(server.log)
    again = CliRunner().invoke(
        main, ["download", "--manifest", str(manifest), "--dest", str(dest)]
    )
    assert again.exit_code == 0, again.output
    assert "(0 downloaded, 3 already present)" in again.output
    assert len(server.log) == served

    status = CliRunner().invoke(main, ["status", str(dest), "--json"])
    assert status.exit_code == 0, status.output
    payload = json.loads(status.output)
    assert payload["summary"] == {"verified": 3}


def test_manifest_download_exits_one_naming_failures(
    server: FaultServer, tmp_path: Path
) -> None:
    good, bad = make_bytes(20_000, 1), make_bytes(20_000, 2)
    rows = [
        f"{server.add('/good.bin', good)},good.bin,{len(good)},"
        f"sha256:{hashlib.sha256(good).hexdigest()}",
        f"{server.add('/bad.bin', bad, then=Fault('wrong'))},bad.bin,{len(bad)},"
        f"sha256:{hashlib.sha256(bad).hexdigest()}",
    ]
    dest = tmp_path / "dest"
    result = CliRunner().invoke(
        main,
        [
            "download",
            "--manifest",
            str(_manifest(tmp_path, rows)),
            "--dest",
            str(dest),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1
    assert "FAILED bad.bin:" in result.output and "does not match" in result.output
    assert "1 file(s) failed" in result.output
    assert (dest / "good.bin").exists() and not (dest / "bad.bin").exists()

    status = CliRunner().invoke(main, ["status", str(dest)])
    assert status.exit_code == 1
    assert "1 failed, 1 verified" in status.output
    assert "bad.bin" in status.output and "good.bin" not in status.output
    full = CliRunner().invoke(main, ["status", str(dest / "ledger.sqlite"), "--all"])
    assert "good.bin" in full.output


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("ftp://h/x,x,,", "is not an http"),
        ("http://h/x,../x,,", "plain file name"),
        ("http://h/x,x,big,", "not a whole number"),
        ("http://h/x,x,,sha1:abcd", "sha256:<64 hex> or md5:<32 hex>"),
    ],
)
def test_manifest_rows_are_validated(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        read_manifest(_manifest(tmp_path, [row]), tmp_path)
    assert "files.csv:2" in str(caught.value)


def test_manifest_needs_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("url,name\nhttp://h/x,x\n")
    with pytest.raises(
        ConfigError, match=r"lacks the columns \['filename', 'size', 'checksum'\]"
    ):
        read_manifest(path, tmp_path)
    dest = tmp_path / "d"
    result = CliRunner().invoke(
        main, ["download", "--manifest", str(path), "--dest", str(dest)]
    )
    assert result.exit_code == 1 and "lacks the columns" in result.output
    assert not dest.exists()  # nothing created for a manifest that cannot be read


def test_download_needs_workflow_or_manifest() -> None:
    result = CliRunner().invoke(main, ["download"])
    assert result.exit_code == 2 and "either WORKFLOW or --manifest" in result.output


def test_status_without_ledger_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 1 and "no ledger at" in result.output


def test_download_workflow_through_the_mirror(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .conftest import CHROME2

    monkeypatch.chdir(tmp_path)
    args = ["download", str(CHROME2), "--mirror", str(shared_data)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "landsat8-l1: 2 items, 12 files verified" in result.output
    outputs = tmp_path / "outputs" / "chrome2-2018"
    assert len(list((outputs / "downloads" / "landsat8-l1").rglob("*.tif"))) == 12
    status = CliRunner().invoke(main, ["status", str(CHROME2)])
    assert status.exit_code == 0 and "12 verified" in status.output
    assert "Requests recorded: 2 for landsat8-l1" in status.output


def test_progress_bar_counts_files_bytes_and_failures(
    server: FaultServer, tmp_path: Path
) -> None:
    import io

    from rich.console import Console

    from burnscape.acquire import Downloader, FileRequest, Ledger
    from burnscape.acquire.progress import DownloadProgress

    good = make_bytes(300_000, 1)
    requests_ = [
        FileRequest(
            url=server.add("/g.bin", good),
            path=tmp_path / "g.bin",
            size=len(good),
            sha256=hashlib.sha256(good).hexdigest(),
        ),
        FileRequest(url=server.url + "missing.bin", path=tmp_path / "m.bin", size=10),
    ]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with (
        Ledger(tmp_path / "l.sqlite") as ledger,
        DownloadProgress(requests_, label="test", console=console) as bar,
    ):
        Downloader(ledger, on_event=bar.on_event).fetch_all(requests_)
    assert (bar.done, bar.failed, bar.total_files) == (1, 1, 2)
    text = out.getvalue()
    assert "1/2 files" in text and "1 failed" in text
    assert "300.0/300.0 kB" in text  # bytes received of the listed total
    assert re.search(r"\d+(\.\d+)? [kMG]?B/s", text)  # the transfer rate


def test_download_workflow_with_a_firms_source(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from .test_firms import _area_api

    rows = pd.DataFrame(
        {
            "latitude": ["10.5", "30.0"],
            "longitude": ["20.5", "20.5"],
            "bright_ti4": ["330"] * 2,
            "scan": ["0.4"] * 2,
            "track": ["0.4"] * 2,
            "acq_date": ["2023-11-09"] * 2,
            "acq_time": ["01:45"] * 2,
            "satellite": ["N"] * 2,
            "confidence": ["nominal"] * 2,
            "version": ["2.0NRT"] * 2,
            "bright_ti5": ["290"] * 2,
            "frp": ["3.1"] * 2,
            "daynight": ["N"] * 2,
        }
    )
    server.routes["/api/area/csv/"] = _area_api(rows, "k")
    monkeypatch.setenv("FIRMS_MAP_KEY", "k")
    workflow = tmp_path / "wf.yml"
    workflow.write_text(
        "name: firms-only\n"
        "region: {crs: 'EPSG:4326', bbox: [10, 0, 30, 20], pixel_size: 0.1}\n"
        "time: {start: 2023-11-09, end: 2023-11-09}\n"
        "sources:\n"
        f"  - {{kind: firms, name: fires, url: '{server.url}api/area/csv/'}}\n"
        f"outputs: {{folder: '{tmp_path / 'out'}'}}\n"
    )
    result = CliRunner().invoke(main, ["download", str(workflow), "--no-mirror"])
    assert result.exit_code == 0, result.output
    assert "fires: 1 active-fire detections" in result.output
    assert len(list((tmp_path / "out" / "downloads" / "fires").glob("*.csv"))) == 1


def test_manifest_encodings(tmp_path: Path) -> None:
    text = "url,filename,size,checksum\nhttp://h/caf%C3%A9.tif,café.tif,,\n"
    excel = tmp_path / "utf16.csv"
    excel.write_bytes(text.encode("utf-16"))  # "Unicode text" with its BOM
    [request] = read_manifest(excel, tmp_path)
    assert request.path.name == "café.tif"
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_manifest(latin, tmp_path)
    result = CliRunner().invoke(
        main, ["download", "--manifest", str(latin), "--dest", str(tmp_path / "d")]
    )
    assert result.exit_code == 1 and "save it as CSV UTF-8" in result.output


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("http://h/x,a\x01b.tif,,", "control character"),
        ("http://h/x," + "n" * 300 + ",,", "longer than 255 bytes"),
        ("http://h/x,x.tif,1,000,", "the row has 5 fields, the header 4"),
    ],
)
def test_manifest_rows_unsafe_as_file_names_are_refused(
    tmp_path: Path, row: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        read_manifest(_manifest(tmp_path, [row]), tmp_path)


def test_manifest_header_and_checksum_prefix_ignore_case(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    digest = "ab" * 32
    path.write_text(
        f" URL , Filename,SIZE,checksum \nhttp://h/x,x.bin,3,SHA256:{digest}\n"
    )
    (request,) = read_manifest(path, tmp_path)
    assert (request.path.name, request.size, request.sha256) == ("x.bin", 3, digest)


def test_manifest_may_not_write_over_the_ledger_or_a_partial_file(
    server: FaultServer, tmp_path: Path
) -> None:
    data = make_bytes(1_000, 9)
    url = server.add("/x.bin", data)
    dest = tmp_path / "d"
    for rows, message in (
        ([f"{url},ledger.sqlite,,"], "would overwrite"),
        ([f"{url},ledger.sqlite-wal,,"], "would overwrite"),
        ([f"{url},x.bin,,", f"{url},x.bin.part,,"], "is the partial download"),
    ):
        manifest = _manifest(tmp_path, rows)
        result = CliRunner().invoke(
            main, ["download", "--manifest", str(manifest), "--dest", str(dest)]
        )
        assert result.exit_code == 1 and message in result.output, result.output
    assert not dest.exists()


def test_status_reads_without_changing_what_it_is_given(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.sqlite"  # e.g. a GeoPackage
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE features (id INTEGER)")
    before = other.read_bytes()
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (other, empty, tmp_path / "files.csv"):
        if path.name == "files.csv":
            _manifest(tmp_path, ["http://h/x,x,,"])
        result = CliRunner().invoke(main, ["status", str(path)])
        assert result.exit_code == 1
        assert "is not a burnscape download ledger" in result.output
        assert "delete" not in result.output
    assert other.read_bytes() == before and empty.stat().st_size == 0


def test_status_calls_downloads_left_by_an_ended_process_interrupted(
    tmp_path: Path,
) -> None:
    from burnscape.acquire.ledger import Ledger
    from burnscape.pipeline import outputs_lock

    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.start_file(tmp_path / "a.bin", url="http://h/a")
    with outputs_lock(tmp_path):  # a download still running: not interrupted
        running = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert running.exit_code == 0 and "interrupted" not in running.output
    ended = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert ended.exit_code == 1
    assert "1 download(s) were interrupted" in ended.output
    as_json = CliRunner().invoke(main, ["status", str(tmp_path), "--json"])
    assert json.loads(as_json.output)["interrupted"] == 1


def test_two_downloads_into_one_folder_are_refused(
    server: FaultServer, tmp_path: Path
) -> None:
    from burnscape.pipeline import outputs_lock

    manifest = _manifest(tmp_path, [f"{server.add('/x.bin', b'x' * 10)},x.bin,,"])
    dest = tmp_path / "d"
    dest.mkdir()
    with outputs_lock(dest):
        result = CliRunner().invoke(
            main, ["download", "--manifest", str(manifest), "--dest", str(dest)]
        )
    assert result.exit_code == 1
    assert "is using" in result.output and "give another --dest" in result.output


def test_a_manifest_given_as_workflow_gets_a_hint(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, ["http://h/x,x,,"])
    result = CliRunner().invoke(main, ["download", str(manifest)])
    assert result.exit_code == 2 and "looks like a manifest" in result.output
