import datetime as dt

import pytest

from burnscape.publish._time import (
    TimeInterval,
    parse_datetime_parameter,
    parse_instant,
)

UTC = dt.UTC


def test_parse_date_instant_covers_the_whole_day():
    interval = parse_datetime_parameter("2024-07-02")
    assert interval == TimeInterval(
        dt.datetime(2024, 7, 2, tzinfo=UTC),
        dt.datetime(2024, 7, 2, 23, 59, 59, 999999, tzinfo=UTC),
    )


def test_parse_datetime_instant_is_a_point_in_utc():
    interval = parse_datetime_parameter("2024-07-02T12:30:00+02:00")
    assert interval.start == interval.end == dt.datetime(2024, 7, 2, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2018-06-01/..", dt.datetime(2018, 6, 1, tzinfo=UTC), None),
        ("/2018-06-30", None, dt.datetime(2018, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        ("../2018-06-30T00:00:00Z", None, dt.datetime(2018, 6, 30, tzinfo=UTC)),
        (
            "2018-06-01T00:00:00Z/2018-06-02",
            dt.datetime(2018, 6, 1, tzinfo=UTC),
            dt.datetime(2018, 6, 2, 23, 59, 59, 999999, tzinfo=UTC),
        ),
    ],
)
def test_parse_intervals_with_open_ends(text, start, end):
    assert parse_datetime_parameter(text) == TimeInterval(start, end)


@pytest.mark.parametrize(
    "text",
    [
        "2018-13-01",
        "yesterday",
        "../..",
        "2018-06-02/2018-06-01",
        "1/2/3",
        "2018-06-01T25:00Z",
        "99999999999999999999",
    ],
)
def test_parse_rejects_malformed_datetime(text):
    with pytest.raises(ValueError):
        parse_datetime_parameter(text)


def test_parse_empty_is_no_filter():
    assert parse_datetime_parameter(None) is None
    assert parse_datetime_parameter(" ") is None


def test_overlaps_closed_intervals():
    interval = TimeInterval(dt.datetime(2018, 6, 10, tzinfo=UTC), None)
    assert interval.overlaps(
        dt.datetime(2018, 6, 1, tzinfo=UTC), dt.datetime(2018, 6, 10, tzinfo=UTC)
    )
    assert not interval.overlaps(
        dt.datetime(2018, 6, 1, tzinfo=UTC), dt.datetime(2018, 6, 9, tzinfo=UTC)
    )


def test_parse_instant_end_of_day():
    assert parse_instant("2018-06-09", as_end=True).hour == 23


@pytest.mark.parametrize(
    "text", ["2018-13-01", "2018-02-30", "2018-06-01T25:00Z", "yesterday", "../.."]
)
def test_rejection_names_the_parameter_and_the_value(text):
    with pytest.raises(ValueError, match=r"^datetime '") as caught:
        parse_datetime_parameter(text)
    assert text in str(caught.value)
