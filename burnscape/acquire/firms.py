"""Acquire stage: FIRMS active fires (area API and daily NRT text files).

:func:`read_firms` parses any of the layouts FIRMS data arrive in into one
GeoDataFrame (EPSG:4326 points, UTC times, original and normalised
confidence): the FIRMS area API CSV (``acq_time`` as an ``HHMM`` integer that
has lost its leading zeros, an ``instrument`` column), the LANCE daily NRT text
files (``acq_time`` as ``HH:MM``), and FEDS pre-processed detections (``Lat``,
``Lon``, ``FRP``, ``datetime``). :func:`acquire_firms` fetches a source's
detections for a region and time window, splitting the area API's requests at
its day-range limit and recording each in the ledger.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import requests

from burnscape.acquire.download import (
    Downloader,
    FileRequest,
    make_session,
    raise_for_failures,
)
from burnscape.acquire.ledger import Ledger, request_key
from burnscape.acquire.reuse import ReusePolicy, SearchPass, window_end_of_days
from burnscape.acquire.stac import region_bbox_wgs84
from burnscape.config import RegionConfig, SourceConfig, TimeConfig
from burnscape.errors import (
    AuthenticationError,
    ConfigError,
    DataNotFoundError,
    SearchError,
    SkippedInputWarning,
)

__all__ = [
    "FIRMS_API_URL",
    "FIRMS_COLUMNS",
    "MAX_DAY_RANGE",
    "VIIRS_CONFIDENCE",
    "acquire_firms",
    "area_requests",
    "read_firms",
]

logger = logging.getLogger(__name__)

FIRMS_API_URL = "https://firms.modaps.eosdis.nasa.gov/api/area/csv/"
"""Root of the FIRMS area API (``<root>/<MAP_KEY>/<SOURCE>/<AREA>/<DAYS>/<DATE>``)."""

MAX_DAY_RANGE = 10
"""The most days one area API request may cover; longer windows are split."""

FIRMS_COLUMNS = (
    "latitude",
    "longitude",
    "frp",
    "acquired",
    "satellite",
    "instrument",
    "confidence",
    "confidence_norm",
    "daynight",
)
"""Columns every frame from :func:`read_firms` has (plus ``geometry``)."""

VIIRS_CONFIDENCE = {"low": 0.15, "nominal": 0.55, "high": 0.9}
"""VIIRS confidence classes on MODIS's 0-1 scale: the middle of each MODIS class.

FIRMS groups MODIS confidence (0-100 %) into low (< 30), nominal (30-80) and
high (>= 80); a VIIRS class takes the centre of the matching MODIS range, so
one threshold (e.g. ``confidence_norm >= 0.3``) means the same for both.
"""

_VIIRS_SATELLITES = {"N", "1", "N20", "N21", "2", "SNPP", "NOAA-20", "NOAA-21", "J1"}
_MODIS_SATELLITES = {"T", "A", "TERRA", "AQUA"}
_TEXT_COLUMNS = {"acq_date", "acq_time", "version", "input_filename", "ampm", "type"}
_FEDS_COLUMNS = {
    "Lat": "latitude",
    "Lon": "longitude",
    "FRP": "frp",
    "Sat": "satellite",
}


def read_firms(path_or_buffer: str | os.PathLike[str] | IO[str]) -> gpd.GeoDataFrame:
    """Read FIRMS active-fire detections into a GeoDataFrame.

    Parameters
    ----------
    path_or_buffer
        A CSV/text file, an open text buffer, or a folder whose ``*.txt`` and
        ``*.csv`` files are read and concatenated (sorted by name). Accepted
        layouts: FIRMS area API CSV, LANCE daily NRT text, FEDS pre-processed.

    Returns
    -------
    geopandas.GeoDataFrame
        One row per detection, sorted by time, with at least
        :data:`FIRMS_COLUMNS` and point ``geometry`` in EPSG:4326:
        ``acquired`` (datetime64, UTC), ``confidence`` (the original value as
        text: ``low``/``nominal``/``high``, ``l``/``n``/``h`` or ``0``-``100``;
        missing where the layout has none), ``confidence_norm`` (float 0-1, see
        :data:`VIIRS_CONFIDENCE`), ``instrument`` (``VIIRS``/``MODIS``),
        ``daynight`` (``D``/``N``). Other columns of the input are kept.
        ``attrs["rejected_rows"]`` counts rows dropped for empty or impossible
        coordinates or times.

    Raises
    ------
    DataNotFoundError
        The path does not exist, or a folder holds no text files.
    ConfigError
        The file is not a FIRMS layout (the message names the columns found).

    Warns
    -----
    SkippedInputWarning
        Rows were rejected (empty or impossible coordinates or times), with
        their count. They are never placed at (0, 0).
    """
    if isinstance(path_or_buffer, (str, os.PathLike)) and Path(path_or_buffer).is_dir():
        folder = Path(path_or_buffer)
        files = sorted([*folder.glob("*.txt"), *folder.glob("*.csv")])
        if not files:
            raise DataNotFoundError(f"no FIRMS .txt or .csv files in {folder}")
        frames = [_read_one(path) for path in files]
        rejected = sum(frame.attrs.get("rejected_rows", 0) for frame in frames)
        frame = pd.concat(frames, ignore_index=True)
        frame = frame.sort_values("acquired", kind="stable", ignore_index=True)
        return _finish(frame, rejected, str(folder))
    raw = _read_one(path_or_buffer)
    return _finish(raw, raw.attrs.get("rejected_rows", 0), _name(path_or_buffer))


def area_requests(
    product: str,
    bbox: tuple[float, float, float, float],
    start: dt.date,
    end: dt.date,
    *,
    max_days: int = MAX_DAY_RANGE,
) -> list[tuple[str, str, int, str]]:
    """Split a window into area API requests of at most ``max_days`` days.

    Returns
    -------
    list of tuple
        (product, area ``"W,S,E,N"``, day range, first date ``YYYY-MM-DD``) per
        request, in time order; together they cover ``start`` .. ``end``.
    """
    area = ",".join(f"{value:.4f}" for value in bbox)
    out = []
    day = start
    while day <= end:
        days = min(max_days, (end - day).days + 1)
        out.append((product, area, days, day.isoformat()))
        day += dt.timedelta(days=days)
    return out


def acquire_firms(
    source: SourceConfig,
    region: RegionConfig,
    time: TimeConfig,
    dest: Path,
    ledger: Ledger,
    *,
    api_url: str | None = None,
    session: requests.Session | None = None,
) -> gpd.GeoDataFrame:
    """Fetch a FIRMS source's detections for a region and window.

    The source's ``options`` choose the mode:

    ``mode: area`` (default)
        The area API at ``api_url`` (else ``source.url``, else
        :data:`FIRMS_API_URL`), ``options.product`` (e.g. ``VIIRS_SNPP_NRT``),
        with the MAP_KEY from the environment variable ``options.map_key_env``
        (default ``FIRMS_MAP_KEY``). Windows longer than ``MAX_DAY_RANGE`` days
        are split; each answer is recorded in the ledger (the key masked) and
        saved as ``dest/<source>/<product>_<date>_<days>d.csv``. A recorded
        answer is reused while ``options.publication_latency_hours`` and
        ``options.search_max_age_hours`` allow (see
        :meth:`~burnscape.acquire.reuse.ReusePolicy.from_options`).
    ``mode: daily``
        LANCE daily text files ``<url><prefix><YYYYDDD>.txt`` for each day
        (``options.prefix``, e.g. ``SUOMI_VIIRS_C2_Global_VNP14IMGTDL_NRT_``),
        downloaded with an Earthdata token from ``options.token_env`` (default
        ``EARTHDATA_TOKEN``) when set.

    Returns
    -------
    geopandas.GeoDataFrame
        :func:`read_firms`'s frame clipped to the region's WGS 84 bbox and the
        window.

    Raises
    ------
    AuthenticationError
        The MAP_KEY is missing or refused.
    SearchError
        An area request failed after retries, or answered something not CSV.
    """
    if source.kind != "firms":
        raise ConfigError(f"source {source.name!r} is kind {source.kind!r}, not firms")
    bbox = region_bbox_wgs84(region)
    folder = Path(dest) / source.name
    folder.mkdir(parents=True, exist_ok=True)
    own = session is None
    http = session or make_session()
    try:
        if source.options.get("mode", "area") == "daily":
            paths = _fetch_daily(source, time, folder, ledger, http, api_url)
        else:
            paths = _fetch_area(source, bbox, time, folder, ledger, http, api_url)
    finally:
        if own:
            http.close()
    frames = [read_firms(path) for path in paths]
    frame = pd.concat(frames, ignore_index=True) if frames else _finish(_empty(), 0, "")
    start = pd.Timestamp(time.start, tz="UTC")
    end = pd.Timestamp(time.end, tz="UTC") + pd.Timedelta(days=1)
    keep = (
        frame["longitude"].between(bbox[0], bbox[2])
        & frame["latitude"].between(bbox[1], bbox[3])
        & (frame["acquired"] >= start)
        & (frame["acquired"] < end)
    )
    result = gpd.GeoDataFrame(frame.loc[keep].reset_index(drop=True), crs="EPSG:4326")
    logger.info("FIRMS source %s: %d detections.", source.name, len(result))
    return result


# --- parsing ---------------------------------------------------------------------


def _read_one(path_or_buffer: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    if (
        isinstance(path_or_buffer, (str, os.PathLike))
        and not Path(path_or_buffer).exists()
    ):
        raise DataNotFoundError(f"FIRMS file {path_or_buffer} does not exist")
    raw = pd.read_csv(path_or_buffer, dtype=str, keep_default_na=False, na_values=[""])
    raw.columns = [str(column).strip() for column in raw.columns]
    if {"Lat", "Lon", "datetime"} <= set(raw.columns):
        frame = _from_feds(raw)
    elif {"latitude", "longitude", "acq_date", "acq_time"} <= set(raw.columns):
        frame = _from_firms(raw)
    else:
        raise ConfigError(
            f"{_name(path_or_buffer)} is not a FIRMS file: columns "
            f"{list(raw.columns)}; "
            "expected latitude, longitude, acq_date, acq_time (FIRMS) or Lat, Lon, "
            "datetime (FEDS)"
        )
    return _reject_bad_rows(frame)


def _from_firms(raw: pd.DataFrame) -> pd.DataFrame:
    frame = raw.copy()
    frame["acquired"] = _acquired(raw["acq_date"], raw["acq_time"])
    if "instrument" not in frame:
        frame["instrument"] = _instrument(raw)
    frame["instrument"] = frame["instrument"].str.upper()
    confidence = raw.get("confidence", pd.Series(pd.NA, index=raw.index, dtype=object))
    frame["confidence"] = confidence.astype(object).where(confidence.notna(), None)
    frame["confidence_norm"] = _normalised_confidence(confidence)
    if "daynight" not in frame:
        frame["daynight"] = None
    return frame


def _from_feds(raw: pd.DataFrame) -> pd.DataFrame:
    frame = raw.rename(columns=_FEDS_COLUMNS)
    frame["acquired"] = pd.to_datetime(raw["datetime"], errors="coerce", utc=True)
    frame["instrument"] = "VIIRS"
    frame["confidence"] = None
    frame["confidence_norm"] = np.nan
    # FEDS names half-days by local time: AM is the night overpass, PM the day one.
    ampm = raw.get("ampm", pd.Series(pd.NA, index=raw.index, dtype=object))
    frame["daynight"] = ampm.map({"AM": "N", "PM": "D"})
    return frame.drop(columns=["datetime"])


def _acquired(dates: pd.Series, times: pd.Series) -> pd.Series:
    """Combine ``acq_date`` and ``acq_time`` (``HH:MM``, or ``HHMM`` sans zeros)."""
    text = times.fillna("").str.strip().str.replace(":", "", regex=False)
    # "145" is 01:45 and "5" is 00:05: the API's integers lost their leading zeros.
    text = text.str.split(".").str[0].str.zfill(4)
    valid = text.str.fullmatch(r"([01]\d|2[0-3])[0-5]\d")
    stamp = dates.fillna("").str.strip() + "T" + text.str[:2] + ":" + text.str[2:] + "Z"
    parsed = pd.to_datetime(
        stamp.where(valid), errors="coerce", utc=True, format="ISO8601"
    )
    return parsed


def _instrument(raw: pd.DataFrame) -> pd.Series:
    if "bright_ti4" in raw:
        return pd.Series("VIIRS", index=raw.index)
    satellite = raw.get("satellite", pd.Series("", index=raw.index)).fillna("")
    upper = satellite.str.upper()
    instrument = pd.Series(None, index=raw.index, dtype=object)
    instrument[upper.isin(_VIIRS_SATELLITES)] = "VIIRS"
    instrument[upper.isin(_MODIS_SATELLITES)] = "MODIS"
    if "brightness" in raw:
        instrument = instrument.fillna("MODIS")
    return instrument


def _normalised_confidence(confidence: pd.Series) -> pd.Series:
    text = confidence.fillna("").astype(str).str.strip().str.lower()
    classes = text.map(
        {
            "l": VIIRS_CONFIDENCE["low"],
            "low": VIIRS_CONFIDENCE["low"],
            "n": VIIRS_CONFIDENCE["nominal"],
            "nominal": VIIRS_CONFIDENCE["nominal"],
            "h": VIIRS_CONFIDENCE["high"],
            "high": VIIRS_CONFIDENCE["high"],
        }
    )
    percent = pd.to_numeric(text, errors="coerce") / 100.0
    percent = percent.where(percent.between(0, 1))
    return classes.astype(float).fillna(percent)


def _reject_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    for column in ("latitude", "longitude", "frp"):
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in set(frame.columns) - set(FIRMS_COLUMNS) - _TEXT_COLUMNS:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.notna().sum() == frame[column].notna().sum():
            frame[column] = numbers
    good = (
        frame["latitude"].between(-90, 90)
        & frame["longitude"].between(-180, 180)
        & frame["acquired"].notna()
    )
    out = frame.loc[good].reset_index(drop=True)
    out.attrs["rejected_rows"] = int((~good).sum())
    return out


def _finish(frame: pd.DataFrame, rejected: int, name: str) -> gpd.GeoDataFrame:
    if rejected:
        warnings.warn(
            f"{name}: {rejected} FIRMS rows rejected for empty or impossible "
            "coordinates or acquisition times",
            SkippedInputWarning,
            stacklevel=3,
        )
    frame = frame.sort_values("acquired", kind="stable", ignore_index=True)
    first = list(FIRMS_COLUMNS)
    ordered = frame[first + [c for c in frame.columns if c not in first]]
    geometry = gpd.points_from_xy(ordered["longitude"], ordered["latitude"])
    out = gpd.GeoDataFrame(ordered, geometry=geometry, crs="EPSG:4326")
    out.attrs["rejected_rows"] = rejected
    return out


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({column: [] for column in FIRMS_COLUMNS})
    frame["acquired"] = pd.to_datetime(frame["acquired"], utc=True)
    return frame


def _name(path_or_buffer: Any) -> str:
    if isinstance(path_or_buffer, (str, os.PathLike)):
        return str(path_or_buffer)
    return getattr(path_or_buffer, "name", "<buffer>")


# --- fetching --------------------------------------------------------------------


def _fetch_area(
    source: SourceConfig,
    bbox: tuple[float, float, float, float],
    time: TimeConfig,
    folder: Path,
    ledger: Ledger,
    session: requests.Session,
    api_url: str | None,
) -> list[Path]:
    product = str(source.options.get("product", "VIIRS_SNPP_NRT"))
    key_env = str(source.options.get("map_key_env", "FIRMS_MAP_KEY"))
    map_key = os.environ.get(key_env)
    if not map_key:
        raise AuthenticationError(
            f"source {source.name!r} needs a FIRMS MAP_KEY: set the environment "
            f"variable {key_env} (https://firms.modaps.eosdis.nasa.gov/api/map_key/)"
        )
    root = api_url or source.url or FIRMS_API_URL
    root = root if root.endswith("/") else root + "/"
    max_days = int(source.options.get("max_day_range", MAX_DAY_RANGE))
    policy = ReusePolicy.from_options(source.options)
    paths = []
    for product_, area, days, date in area_requests(
        product, bbox, time.start, time.end, max_days=max_days
    ):
        shown = f"{root}***/{product_}/{area}/{days}/{date}"
        target = folder / f"{product_}_{date}_{days}d.csv"
        last = dt.date.fromisoformat(date) + dt.timedelta(days=days - 1)
        recorded = SearchPass(
            ledger, policy, source=source.name, window_end=window_end_of_days(last)
        )
        text = _area_answer(session, map_key, shown, recorded)
        if not target.exists() or target.read_text() != text:
            partial = target.with_name(target.name + ".part")
            partial.write_text(text)
            os.replace(partial, target)
        paths.append(target)
    return paths


def _area_answer(
    session: requests.Session,
    map_key: str,
    shown: str,
    recorded: SearchPass,
) -> str:
    """Return one area request's CSV, from the ledger when it may reuse it."""
    known = recorded.find(request_key("GET", shown, None))
    if known is not None:
        logger.debug("Reusing the recorded answer of %s.", shown)
        return known.response
    url = shown.replace("/***/", f"/{map_key}/", 1)
    try:
        response = session.get(url, timeout=(10.0, 120.0))
    except requests.exceptions.RequestException as err:
        raise SearchError(f"FIRMS request {shown} failed after retries") from err
    text = response.text
    if response.status_code in (401, 403) or "invalid map_key" in text[:200].lower():
        raise AuthenticationError(
            f"FIRMS refused the MAP_KEY for {shown}: {text[:100].strip()!r}"
        )
    if response.status_code != 200 or not text.lstrip().lower().startswith("latitude"):
        raise SearchError(
            f"FIRMS request {shown} answered HTTP {response.status_code}: "
            f"{text[:200].strip()!r}"
        )
    recorded.record(method="GET", url=shown, params=None, status=200, response=text)
    return text


def _fetch_daily(
    source: SourceConfig,
    time: TimeConfig,
    folder: Path,
    ledger: Ledger,
    session: requests.Session,
    api_url: str | None,
) -> list[Path]:
    root = api_url or source.url
    prefix = source.options.get("prefix")
    if not root or not prefix:
        raise ConfigError(
            f"FIRMS source {source.name!r} in daily mode needs 'url' and "
            "options.prefix (e.g. SUOMI_VIIRS_C2_Global_VNP14IMGTDL_NRT_)"
        )
    root = root if root.endswith("/") else root + "/"
    headers = {}
    token = os.environ.get(str(source.options.get("token_env", "EARTHDATA_TOKEN")))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    requests_ = [
        FileRequest(
            url=f"{root}{prefix}{day:%Y%j}.txt",
            path=folder / f"{prefix}{day:%Y%j}.txt",
            source=source.name,
            item_id=day.isoformat(),
            expect_format="text",
            headers=headers,
        )
        for day in _days(time.start, time.end)
    ]
    results = Downloader(ledger, session=session).fetch_all(requests_)
    raise_for_failures(results)
    return [result.request.path for result in results]


def _days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)
