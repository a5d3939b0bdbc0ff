"""Publish stage: parse the OGC API ``datetime`` parameter into a UTC interval."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = ["TimeInterval", "parse_datetime_parameter", "parse_instant"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)
_OPEN = ("", "..")


@dataclass(frozen=True)
class TimeInterval:
    """A closed UTC interval; ``None`` marks an open end.

    A date without a time of day stands for the whole day: as a start it
    begins at 00:00, as an end it lasts until the last microsecond of the day.
    """

    start: dt.datetime | None
    end: dt.datetime | None

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Return whether the closed interval ``start .. end`` meets this one."""
        if self.end is not None and start > self.end:
            return False
        return self.start is None or end >= self.start


def parse_instant(text: str, *, as_end: bool = False) -> dt.datetime:
    """Parse an RFC 3339 date or date-time into an aware UTC datetime.

    Parameters
    ----------
    text
        ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM[:SS[.f]][Z|±HH:MM]``; a time
        without an offset is taken as UTC.
    as_end
        Where ``text`` is a bare date, return the day's last microsecond
        instead of its first.

    Raises
    ------
    ValueError
        The text is not a valid RFC 3339 date or date-time.
    """
    value = text.strip()
    if not (_DATE.match(value) or _DATETIME.match(value)):
        raise ValueError(
            f"datetime {text!r} is not RFC 3339: use e.g. 2018-06-09 or "
            "2018-06-09T12:00:00Z"
        )
    try:
        if _DATE.match(value):
            day = dt.date.fromisoformat(value)
            time = dt.time.max if as_end else dt.time.min
            return dt.datetime.combine(day, time, tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError as err:  # well formed but impossible, e.g. month 13
        raise ValueError(f"datetime {text!r} is not a valid date: {err}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def parse_datetime_parameter(text: str | None) -> TimeInterval | None:
    """Parse the ``datetime`` query parameter of OGC API Features/Coverages.

    Parameters
    ----------
    text
        An instant (``2018-06-09``, ``2018-06-09T10:00:00Z``) or an interval
        ``start/end`` where either end may be open (``..`` or empty).

    Returns
    -------
    TimeInterval or None
        None when ``text`` is None or empty (no temporal filter).

    Raises
    ------
    ValueError
        Malformed text, both ends open, or an end before its start.
    """
    if text is None or not text.strip():
        return None
    parts = text.strip().split("/")
    if len(parts) == 1:
        return TimeInterval(
            parse_instant(parts[0]), parse_instant(parts[0], as_end=True)
        )
    if len(parts) != 2:
        raise ValueError(f"datetime {text!r} has more than one '/': use start/end")
    first, second = (part.strip() for part in parts)
    if first in _OPEN and second in _OPEN:
        raise ValueError(f"datetime {text!r} is open at both ends")
    start = None if first in _OPEN else parse_instant(first)
    end = None if second in _OPEN else parse_instant(second, as_end=True)
    if start is not None and end is not None and end < start:
        raise ValueError(f"datetime {text!r}: the end is before the start")
    return TimeInterval(start, end)
