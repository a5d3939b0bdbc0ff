"""Cube stage: the cube's time slots and their fixed on-disk encoding.

Time is stored as int64 seconds since 1970-01-01T00:00:00 (UTC), units fixed
when the cube is created, so appending any later time (13:30 on a cube created
at midnight) is exact and never re-encodes earlier values.

Two ways to lay out slots:

- one slot per acquisition (:func:`scene_slots`): the slot's time is the
  acquisition time, or the start of its honest window when the exact time is
  unknown (``time_bnds`` hold the window);
- one slot per UTC day (:func:`daily_slots`), for daily products: the slot's
  time is the day's 00:00 and its bounds are the day; every granule of the day
  goes into it, and a day with no granule is still a slot, recorded as such.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TIME_UNITS",
    "TimeSlot",
    "daily_slots",
    "from_seconds",
    "scene_slots",
    "to_seconds",
    "window_slots",
]

TIME_UNITS = "seconds since 1970-01-01T00:00:00"
"""CF units of ``time`` and ``time_bnds`` (int64), fixed at creation."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class TimeSlot:
    """One position on the cube's time axis.

    Attributes
    ----------
    time
        The slot's time (UTC): acquisition time or window start.
    bounds
        Earliest and latest possible acquisition time of what the slot holds.
    label
        How reports name the slot (scene id, or ISO date for daily slots).
    """

    time: dt.datetime
    bounds: tuple[dt.datetime, dt.datetime]
    label: str

    def holds(self, when: dt.datetime) -> bool:
        """Tell whether an acquisition time falls in the slot's bounds."""
        start, end = self.bounds
        return start <= _utc(when) <= end


def to_seconds(value: dt.datetime | np.datetime64) -> int:
    """Return whole seconds since 1970-01-01T00:00:00 UTC (naive means UTC)."""
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[s]").astype(np.int64))
    return int((_utc(value) - _EPOCH).total_seconds())


def from_seconds(value: int) -> dt.datetime:
    """Return the UTC datetime of seconds since 1970-01-01T00:00:00."""
    return _EPOCH + dt.timedelta(seconds=int(value))


def scene_slots(
    scenes: Iterable[tuple[str, dt.datetime, tuple[dt.datetime, dt.datetime]]],
) -> list[TimeSlot]:
    """Return one slot per distinct acquisition time, ascending.

    Scenes with the same time share a slot (a mosaic); its label joins their
    ids and its bounds span theirs.
    """
    by_time: dict[int, list[tuple[str, dt.datetime, tuple[dt.datetime, dt.datetime]]]]
    by_time = {}
    for scene in scenes:
        by_time.setdefault(to_seconds(scene[1]), []).append(scene)
    slots = []
    for key in sorted(by_time):
        group = sorted(by_time[key], key=lambda scene: scene[0])
        start = min(_utc(scene[2][0]) for scene in group)
        end = max(_utc(scene[2][1]) for scene in group)
        label = "+".join(scene[0] for scene in group)
        slots.append(TimeSlot(from_seconds(key), (start, end), label))
    return slots


def daily_slots(start: dt.date, end: dt.date) -> list[TimeSlot]:
    """Return one slot per UTC day from ``start`` to ``end``, both included."""
    slots = []
    day = start
    while day <= end:
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        slots.append(
            TimeSlot(
                midnight,
                (midnight, midnight + _DAY - dt.timedelta(seconds=1)),
                day.isoformat(),
            )
        )
        day += _DAY
    return slots


def window_slots(end: dt.date, days: int) -> list[TimeSlot]:
    """Return the daily slots of the ``days`` days ending with ``end``."""
    return daily_slots(end - dt.timedelta(days=days - 1), end)


def slot_seconds(slots: Sequence[TimeSlot]) -> tuple[np.ndarray, np.ndarray]:
    """Return (time, bounds) of slots as int64 seconds arrays."""
    times = np.array([to_seconds(slot.time) for slot in slots], dtype=np.int64)
    bounds = np.array(
        [[to_seconds(a), to_seconds(b)] for a, b in (slot.bounds for slot in slots)],
        dtype=np.int64,
    ).reshape(-1, 2)
    return times, bounds


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
