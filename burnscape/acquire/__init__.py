"""Acquire stage: search catalogues, download verified files, keep a ledger.

Public entry points:

- :func:`acquire_source`: search a STAC source (or its static items) and
  download the selected assets into ``dest/<source>/<item>/``, verified.
- :class:`Ledger`: the SQLite record of requests and files.
- :class:`MirrorServer`: a local STAC API over a mirror folder (offline runs).
- :class:`Downloader`, :class:`FileRequest`: the file downloader itself.
- :func:`read_firms`, :func:`acquire_firms`: FIRMS active fires as a GeoDataFrame.
- :func:`acquire_laads`: LAADS DAAC granules found through CMR, fetched with a token.
"""

from burnscape.acquire.download import (
    Downloader,
    DownloadResult,
    FileRequest,
    make_session,
    raise_for_failures,
)
from burnscape.acquire.firms import acquire_firms, read_firms
from burnscape.acquire.items import AcquiredItem
from burnscape.acquire.laads import acquire_laads, search_granules
from burnscape.acquire.ledger import Ledger
from burnscape.acquire.mirror import MirrorServer
from burnscape.acquire.stac import acquire_source, search_items

__all__ = [
    "AcquiredItem",
    "DownloadResult",
    "Downloader",
    "FileRequest",
    "Ledger",
    "MirrorServer",
    "acquire_firms",
    "acquire_laads",
    "acquire_source",
    "make_session",
    "raise_for_failures",
    "read_firms",
    "search_granules",
    "search_items",
]
