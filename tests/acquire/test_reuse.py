"""When recorded catalogue answers are reused, and when a search is asked again."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from burnscape.acquire.ledger import Ledger, request_key
from burnscape.acquire.reuse import (
    ReusePolicy,
    SearchPass,
    parse_time,
    window_end_of_days,
    window_end_of_interval,
)
from burnscape.errors import ConfigError

UTC = dt.UTC


def _record(
    ledger: Ledger, url: str, window_end: dt.datetime | None, created: str
) -> str:
    ledger.record_request(
        source="s",
        method="GET",
        url=url,
        params=None,
        status=200,
        response='{"page": 1}',
        window_end=window_end,
    )
    key = request_key("GET", url, None)
    # Age the row: the ledger stamps the current time.
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("UPDATE requests SET created = ? WHERE key = ?", (created, key))
    return key


def test_closed_window_is_reused_forever_open_window_only_while_young(
    tmp_path: Path,
) -> None:
    now = dt.datetime(2024, 7, 10, 12, tzinfo=UTC)
    policy = ReusePolicy(latency=dt.timedelta(days=2), max_age=dt.timedelta(hours=6))
    with Ledger(tmp_path / "l.sqlite") as ledger:
        # Window ended 2024-07-01; recorded 2024-07-05 > end + 2 days: closed.
        closed = _record(
            ledger,
            "http://h/closed",
            window_end_of_days(dt.date(2024, 6, 30)),
            "2024-07-05T00:00:00+00:00",
        )
        # Window ended 2024-07-09, recorded 2024-07-09T20:00 (inside the latency).
        open_old = _record(
            ledger,
            "http://h/open-old",
            window_end_of_days(dt.date(2024, 7, 8)),
            "2024-07-09T20:00:00+00:00",
        )
        open_young = _record(
            ledger, "http://h/open-young", None, "2024-07-10T09:00:00+00:00"
        )
        for key, expected in ((closed, True), (open_old, False), (open_young, True)):
            found = SearchPass(
                ledger, policy, source="s", window_end=None, now=now
            ).find(key)
            assert (found is not None) is expected, key


def test_once_a_page_is_asked_again_older_pages_of_the_pass_are_too(
    tmp_path: Path,
) -> None:
    now = dt.datetime(2024, 7, 10, 12, tzinfo=UTC)
    policy = ReusePolicy(max_age=dt.timedelta(hours=6))
    with Ledger(tmp_path / "l.sqlite") as ledger:
        first = _record(ledger, "http://h/p1", None, "2024-07-10T11:00:00+00:00")
        second = _record(ledger, "http://h/p2", None, "2024-07-10T10:00:00+00:00")
        search = SearchPass(ledger, policy, source="s", window_end=None, now=now)
        assert search.find(first) is not None
        # Page 2 is young enough on its own but predates page 1's answer: stale.
        assert search.find(second) is None


def test_fresh_record_replaces_the_old_answer_with_its_window(tmp_path: Path) -> None:
    end = dt.datetime(2024, 7, 3, tzinfo=UTC)
    with Ledger(tmp_path / "l.sqlite") as ledger:
        search = SearchPass(ledger, ReusePolicy(), source="s", window_end=end)
        search.record(
            method="GET", url="http://h/q", params=None, status=200, response="a"
        )
        search.record(
            method="GET", url="http://h/q", params=None, status=200, response="b"
        )
        found = ledger.find_request(request_key("GET", "http://h/q", None))
    assert found is not None and found.response == "b"
    assert found.window_end is not None and parse_time(found.window_end) == end


def test_without_a_ledger_nothing_is_reused_or_recorded() -> None:
    search = SearchPass(None, ReusePolicy(), source="s", window_end=None)
    assert search.find("k") is None
    assert (
        search.record(method="GET", url="u", params=None, status=200, response="")
        is None
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"publication_latency_hours": "soon"}, "number of hours"),
        ({"search_max_age_hours": -1}, ">= 0"),
    ],
)
def test_bad_options_say_which_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReusePolicy.from_options(options)


def test_options_in_hours() -> None:
    policy = ReusePolicy.from_options(
        {"publication_latency_hours": 3, "search_max_age_hours": 0}
    )
    assert policy == ReusePolicy(dt.timedelta(hours=3), dt.timedelta(0))


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (None, None),
        ("2024-07-01T00:00:00Z/..", None),
        ("2024-07-01/", None),
        (
            "2024-07-01T00:00:00Z/2024-07-02T12:00:00Z",
            dt.datetime(2024, 7, 2, 12, tzinfo=UTC),
        ),
        ("2024-07-02T00:00:00Z", dt.datetime(2024, 7, 2, tzinfo=UTC)),
    ],
)
def test_window_end_of_interval(
    interval: str | None, expected: dt.datetime | None
) -> None:
    assert window_end_of_interval(interval) == expected


def test_ledger_without_window_column_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE requests (key TEXT PRIMARY KEY, source TEXT NOT NULL, "
            "method TEXT NOT NULL, url TEXT NOT NULL, params TEXT NOT NULL, "
            "status INTEGER NOT NULL, digest TEXT NOT NULL, response TEXT NOT NULL, "
            "created TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO requests VALUES ('k', 's', 'GET', 'u', 'null', 200, 'd', 'r', "
            "'2024-01-01T00:00:00+00:00')"
        )
    with Ledger(path) as ledger:
        found = ledger.find_request("k")
    assert found is not None and found.window_end is None
