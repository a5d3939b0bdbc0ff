from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from burnscape.acquire.ledger import Ledger, request_key


def test_request_roundtrip_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    with Ledger(db) as ledger:
        record = ledger.record_request(
            source="s",
            method="post",
            url="http://h/search",
            params={"b": 1, "a": [1, 2]},
            status=200,
            response='{"x": 1}',
        )
    with Ledger(db) as ledger:
        found = ledger.find_request(
            request_key("POST", "http://h/search", {"a": [1, 2], "b": 1})
        )
        assert found is not None
        assert found.response == '{"x": 1}'
        assert found.digest == record.digest
        assert found.params == {"a": [1, 2], "b": 1}
        assert ledger.find_request(request_key("GET", "http://h/search", None)) is None


def test_file_states_attempts_and_errors(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        path = tmp_path / "f.bin"
        assert ledger.start_file(path, url="http://h/f", expected_size=3) == 1
        ledger.mark_failed(path, "boom")
        assert ledger.start_file(path, url="http://h/f", expected_size=3) == 2
        row = ledger.find_file(path)
        assert (
            row is not None and row.state == "downloading" and row.last_error == "boom"
        )
        ledger.mark_verified(path, url="http://h/f", size=3, sha256="ab", mtime_ns=5)
        row = ledger.find_file(path)
        assert row is not None
        assert (row.state, row.size, row.attempts, row.last_error) == (
            "verified",
            3,
            2,
            None,
        )
        ledger.mark_failed(tmp_path / "g", "x", state="missing")  # no row: no effect
        assert ledger.summary() == {"verified": 1}
        with pytest.raises(ValueError, match="state must be"):
            ledger.mark_failed(path, "x", state="weird")


def test_each_change_is_committed_immediately(tmp_path: Path) -> None:
    db = tmp_path / "l.sqlite"
    ledger = Ledger(db)
    ledger.start_file(tmp_path / "a", url="http://h/a")
    # Another connection sees the row without any close or explicit commit.
    other = sqlite3.connect(db)
    assert other.execute("SELECT state FROM files").fetchall() == [("downloading",)]
    other.close()
    ledger.close()


def test_a_file_named_relatively_and_absolutely_is_one_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` names files absolutely, `download` as the user typed the folder."""
    monkeypatch.chdir(tmp_path)
    with Ledger(tmp_path / "l.sqlite") as ledger:
        relative = Path("outputs") / "w" / "downloads" / "f.tif"
        ledger.mark_verified(relative, url="http://h/f", size=3, sha256="a", mtime_ns=1)
        found = ledger.find_file(tmp_path / "outputs" / "w" / "downloads" / "f.tif")
        assert found is not None and found.state == "verified"
        ledger.start_file(tmp_path / "outputs/w/./downloads/f.tif", url="http://h/f")
        assert [row.path for row in ledger.files()] == [str(tmp_path / relative)]
        assert ledger.summary() == {"downloading": 1}
