"""Acquire stage: downloads as tasks on a Dask cluster, at most N at a time.

In-process parallelism is :meth:`Downloader.fetch_all` (threads). Here each
file is one Dask task: the worker opens the ledger itself (SQLite in WAL mode
takes writers from several processes) and fetches with its own session; a
:class:`distributed.Semaphore` bounds how many run at once across the cluster.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burnscape.acquire.download import (
    Downloader,
    DownloadResult,
    FileRequest,
    make_session,
)
from burnscape.acquire.ledger import Ledger

if TYPE_CHECKING:
    from distributed import Client, Semaphore

__all__ = ["fetch_on_dask"]

logger = logging.getLogger(__name__)


def fetch_on_dask(
    client: Client,
    requests: Sequence[FileRequest],
    ledger_path: Path,
    *,
    max_parallel: int = 4,
    **downloader_options: Any,
) -> list[DownloadResult]:
    """Fetch files as Dask tasks, at most ``max_parallel`` at a time; keep order.

    Parameters
    ----------
    client
        A client of the cluster whose workers download (they must reach the
        URLs and write to the destination paths: a shared file system).
    requests
        The files to fetch.
    ledger_path
        The SQLite ledger, opened by each task.
    max_parallel
        Downloads running at once, cluster-wide.
    **downloader_options
        Passed to :class:`Downloader` (``max_attempts``, ``backoff_s``,
        ``timeout_s``, ``fsync``).

    Returns
    -------
    list of DownloadResult
        One per request, in order; failures are results, not exceptions.
    """
    from distributed import Semaphore

    if max_parallel < 1:
        raise ValueError("max_parallel must be at least 1")
    # Create the ledger (schema, WAL mode) here, before the workers open it.
    Ledger(Path(ledger_path)).close()
    name = f"burnscape-download-{uuid.uuid4().hex}"
    semaphore = Semaphore(max_leases=max_parallel, name=name)
    futures = client.map(
        _fetch_task,
        list(requests),
        ledger_path=str(ledger_path),
        semaphore=semaphore,
        options=downloader_options,
        pure=False,
    )
    try:
        results: list[DownloadResult] = client.gather(futures)
    finally:
        semaphore.close()
    logger.info(
        "Dask downloads: %d of %d files verified.",
        sum(result.ok for result in results),
        len(results),
    )
    return results


def _fetch_task(
    request: FileRequest,
    *,
    ledger_path: str,
    semaphore: Semaphore,
    options: dict[str, Any],
) -> DownloadResult:
    """Download one file on a worker, holding one lease of the semaphore."""
    with semaphore, Ledger(Path(ledger_path)) as ledger:
        with make_session() as session:
            downloader = Downloader(ledger, session=session, max_workers=1, **options)
            return downloader.fetch(request)
