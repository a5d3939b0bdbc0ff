"""Acquire stage: when a recorded search answer may be reused, and search passes.

A catalogue answer recorded in the :class:`~burnscape.acquire.ledger.Ledger`
is reused instead of asking the server again only while it is still honest:

- its time window was already *closed* when it was recorded: the window's end
  plus the product's publication latency lay before the recording time, so no
  item could have been published for it since; or
- it is younger than a maximum age (a re-run after a crash, the same day).

Otherwise the search is repeated and its new answer replaces the old row.
A :class:`SearchPass` applies this rule to the requests of one search (landing
page and result pages): once one request of the pass is asked again, every
later page recorded before it is asked again too, so a fresh first page is
never joined to stale later pages.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from burnscape.acquire.ledger import Ledger, RequestRecord
from burnscape.errors import ConfigError

__all__ = [
    "DEFAULT_LATENCY",
    "DEFAULT_MAX_AGE",
    "ReusePolicy",
    "SearchPass",
    "window_end_of_days",
    "window_end_of_interval",
]

logger = logging.getLogger(__name__)

DEFAULT_LATENCY = dt.timedelta(days=2)
"""Publication latency assumed by default (near-real-time products: 1-2 days)."""

DEFAULT_MAX_AGE = dt.timedelta(hours=6)
"""Age below which any recorded answer is reused (shorter than a daily run)."""


@dataclass(frozen=True)
class ReusePolicy:
    """When a recorded search answer is reused rather than asked for again.

    Parameters
    ----------
    latency
        Time between an acquisition and its publication in the catalogue. A
        window is closed once its end plus ``latency`` has passed.
    max_age
        An answer younger than this is reused whatever its window (zero:
        only answers for windows closed when recorded are reused).
    """

    latency: dt.timedelta = DEFAULT_LATENCY
    max_age: dt.timedelta = DEFAULT_MAX_AGE

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReusePolicy:
        """Build the policy from a source's ``options``.

        Keys: ``publication_latency_hours`` (default 48) and
        ``search_max_age_hours`` (default 6), non-negative numbers.

        Raises
        ------
        ConfigError
            A value is not a non-negative number.
        """
        values = {}
        for key, default in (
            ("publication_latency_hours", DEFAULT_LATENCY),
            ("search_max_age_hours", DEFAULT_MAX_AGE),
        ):
            raw = options.get(key)
            if raw is None:
                values[key] = default
                continue
            try:
                hours = float(raw)
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"source option {key} must be a number of hours, not {raw!r}"
                ) from err
            if not hours >= 0:
                raise ConfigError(f"source option {key} must be >= 0, not {raw!r}")
            values[key] = dt.timedelta(hours=hours)
        return cls(
            latency=values["publication_latency_hours"],
            max_age=values["search_max_age_hours"],
        )

    def allows(self, record: RequestRecord, now: dt.datetime | None = None) -> bool:
        """Return True when ``record``'s answer may stand in for asking again.

        A record without a window (``window_end`` None) counts as open: it is
        reused only while younger than ``max_age``.
        """
        recorded = parse_time(record.created)
        if record.window_end is not None:
            closed_at = parse_time(record.window_end) + self.latency
            if closed_at <= recorded:
                return True
        now = now or dt.datetime.now(dt.UTC)
        return now - recorded < self.max_age


class SearchPass:
    """The requests of one search, reused from the ledger or asked again.

    Parameters
    ----------
    ledger
        Where answers are recorded; None to record nothing and reuse nothing.
    policy
        When a recorded answer is reused.
    source
        The source name recorded with each request.
    window_end
        The end of the searched time window (UTC), None for an open window.
    now
        The current time (for tests); the clock by default.
    """

    def __init__(
        self,
        ledger: Ledger | None,
        policy: ReusePolicy,
        *,
        source: str,
        window_end: dt.datetime | None,
        now: dt.datetime | None = None,
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.source = source
        self.window_end = window_end
        self.now = now
        self._floor: dt.datetime | None = None

    def find(self, key: str) -> RequestRecord | None:
        """Return the recorded answer of ``key`` when it may be reused, else None.

        An answer recorded before an earlier request of this pass was (asked
        again, or first recorded) is not reused: it belongs to an older search.
        """
        if self.ledger is None:
            return None
        known = self.ledger.find_request(key)
        if known is None:
            return None
        recorded = parse_time(known.created)
        if self._floor is not None and recorded < self._floor:
            logger.debug("Recorded answer %s predates this search; asking again.", key)
            return None
        if not self.policy.allows(known, self.now):
            logger.info(
                "Recorded answer of %s %s is stale (window open when recorded at "
                "%s); asking again.",
                known.method,
                known.url,
                known.created,
            )
            return None
        self._floor = self._floor or recorded
        return known

    def record(
        self,
        *,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        status: int,
        response: str,
        key: str | None = None,
    ) -> RequestRecord | None:
        """Record a fresh answer (replacing any older one); return its record."""
        if self.ledger is None:
            return None
        record = self.ledger.record_request(
            source=self.source,
            method=method,
            url=url,
            params=params,
            status=status,
            response=response,
            key=key,
            window_end=self.window_end,
        )
        self._floor = self._floor or parse_time(record.created)
        return record


def window_end_of_days(last_day: dt.date) -> dt.datetime:
    """Return the end of a window whose last (included) UTC day is ``last_day``."""
    return dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time.min, dt.UTC)


def window_end_of_interval(interval: str | None) -> dt.datetime | None:
    """Return the end of an RFC 3339 instant or ``start/end`` interval.

    None when the interval is absent or open-ended (``..`` or empty end).
    """
    if not interval:
        return None
    end = interval.split("/")[-1].strip()
    if end in ("", ".."):
        return None
    return parse_time(end)


def parse_time(value: str) -> dt.datetime:
    """Parse an ISO 8601 time (``Z`` allowed) as an aware UTC datetime."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
