"""Events stage: fire-event ids that stay the same from one daily run to the next.

A new event's id is derived from its first burn date and ignition location
(the mean centre of its earliest-burning pixels), e.g.
``20180609-122.5607W-39.6231N``. When the store already holds events of other
runs, an event overlapping one of them inherits that event's id, so a fire
keeps its id while its footprint grows, and when two fires merge the result
keeps the id of the one that started first.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import geopandas as gpd
    import shapely

logger = logging.getLogger(__name__)

__all__ = ["assign_event_ids", "derive_event_id"]

_EPOCH = dt.date(1970, 1, 1)


def derive_event_id(first_day: int, lon: float, lat: float) -> str:
    """Return the id of an event first burning on ``first_day`` at (lon, lat).

    Parameters
    ----------
    first_day
        First burn date, days since 1970-01-01.
    lon, lat
        Ignition location, degrees (EPSG:4326); written to 4 decimals (~10 m).

    Returns
    -------
    str
        ``YYYYMMDD-<lon>W|E-<lat>N|S``.
    """
    day = (_EPOCH + dt.timedelta(days=int(first_day))).strftime("%Y%m%d")
    east = f"{abs(lon):.4f}{'W' if lon < 0 else 'E'}"
    north = f"{abs(lat):.4f}{'S' if lat < 0 else 'N'}"
    return f"{day}-{east}-{north}"


def assign_event_ids(
    derived: list[str],
    geometries: list[shapely.Geometry],
    previous: gpd.GeoDataFrame | None,
) -> tuple[list[str], set[str]]:
    """Return final ids: inherited from overlapping earlier events, else derived.

    Parameters
    ----------
    derived
        Each new event's own id (:func:`derive_event_id`).
    geometries
        Each new event's EPSG:4326 geometry.
    previous
        Events of other runs (columns ``event_id``, ``first_burn_date``,
        geometry in EPSG:4326), or None.

    Returns
    -------
    ids : list of str
        Unique ids in the order of ``derived``. Each previous id goes to at most
        one new event: the one overlapping it most. Among the previous events a
        new event overlaps, the earliest-starting one gives its id.
    superseded : set of str
        The final ids and every earlier event any new event overlaps: the fires
        this run continues or absorbs (merged into an earlier-starting one),
        whose earlier versions this run's replace.
    """
    final: list[str | None] = [None] * len(derived)
    overlapped: set[str] = set()
    if previous is not None and not previous.empty and geometries:
        latest = previous.drop_duplicates("event_id", keep="last").reset_index(
            drop=True
        )
        claims = _claims(geometries, latest)
        overlapped = {claim[3] for claim in claims}
        taken: set[str] = set()
        # earliest-starting previous event first, then the largest overlap
        for overlap, _, k, event_id in sorted(claims, key=lambda c: (c[1], -c[0])):
            if final[k] is None and event_id not in taken:
                final[k] = event_id
                taken.add(event_id)
                logger.debug(
                    "Event %s keeps the id %s (overlap %.3g).", k, event_id, overlap
                )
    seen = {event_id for event_id in final if event_id is not None}
    ids = [
        inherited if inherited is not None else _unique(derived[k], seen)
        for k, inherited in enumerate(final)
    ]
    return ids, overlapped | set(ids)


def _claims(
    geometries: list[shapely.Geometry], previous: gpd.GeoDataFrame
) -> list[tuple[float, str, int, str]]:
    """Return (overlap area, previous first date, new index, previous id) pairs."""
    index = previous.sindex
    claims = []
    for k, geometry in enumerate(geometries):
        for j in np.atleast_1d(index.query(geometry, predicate="intersects")):
            other = previous.iloc[int(j)]
            overlap = float(geometry.intersection(other.geometry).area)
            if overlap > 0:
                claims.append(
                    (overlap, str(other["first_burn_date"]), k, str(other["event_id"]))
                )
    return claims


def _unique(event_id: str, seen: set[str]) -> str:
    candidate, suffix = event_id, 2
    while candidate in seen:
        candidate, suffix = f"{event_id}-{suffix}", suffix + 1
    seen.add(candidate)
    return candidate
