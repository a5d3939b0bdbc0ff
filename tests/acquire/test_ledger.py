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


def _open_and_record(args: tuple[str, int]) -> str:
    path, index = args
    with Ledger(Path(path)) as ledger:
        ledger.mark_verified(
            Path(path).parent / f"f{index}", url="u", size=1, sha256="a", mtime_ns=1
        )
    return "ok"


def test_many_processes_may_open_a_new_ledger_at_once(tmp_path: Path) -> None:
    """Dask workers open one ledger together; creating it must not fail one."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for attempt in range(12):
        db = tmp_path / f"ledger{attempt}.sqlite"
        with context.Pool(8) as pool:
            results = pool.map(_open_and_record, [(str(db), i) for i in range(8)])
        assert results == ["ok"] * 8
        with Ledger(db) as ledger:
            assert ledger.summary() == {"verified": 8}


def test_a_ledger_locked_too_long_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import burnscape.acquire.ledger as ledger_module
    from burnscape.errors import AcquireError

    db = tmp_path / "ledger.sqlite"
    Ledger(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(ledger_module, "_BUSY_TIMEOUT_S", 0.3)
    try:
        with pytest.raises(AcquireError, match="stayed locked by another process"):
            Ledger(db)
    finally:
        holder.rollback()
        holder.close()
