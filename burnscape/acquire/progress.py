"""Acquire stage: a rich progress bar for downloads (files done/failed, bytes, rate)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from burnscape.acquire.download import DownloadResult, FileRequest

__all__ = ["DownloadProgress"]


class DownloadProgress:
    """Show download progress on the terminal; pass :meth:`on_event` to a downloader.

    Parameters
    ----------
    requests
        The files to come (their listed sizes set the bar's total, where known).
    label
        Text before the bar.
    console
        Where to draw; stderr by default. Nothing is drawn where it is not a
        terminal, except the final line.
    """

    def __init__(
        self,
        requests: Sequence[FileRequest] = (),
        label: str = "download",
        console: Console | None = None,
    ) -> None:
        self.total_files = len(requests)
        sizes = [request.size for request in requests]
        self.total_bytes = sum(s for s in sizes if s) if all(sizes) and sizes else None
        self.done = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(
            label, total=self.total_bytes, files=self._files_text()
        )

    def add(self, requests: Sequence[FileRequest]) -> None:
        """Announce more files (e.g. once a search has returned)."""
        with self._lock:
            self.total_files += len(requests)
            self._progress.update(self._task, files=self._files_text())

    def on_event(self, kind: str, request: FileRequest, value: object) -> None:
        """Take a downloader event: ``bytes`` received or a file ``done``."""
        if kind == "bytes" and isinstance(value, int):
            self._progress.advance(self._task, value)
            return
        if kind != "done" or not isinstance(value, DownloadResult):
            return
        with self._lock:
            if value.ok:
                self.done += 1
            else:
                self.failed += 1
            self.total_files = max(self.total_files, self.done + self.failed)
            if value.state == "skipped" and value.size:
                self._progress.advance(self._task, value.size)
            self._progress.update(self._task, files=self._files_text())

    def _files_text(self) -> str:
        failed = f", [red]{self.failed} failed[/red]" if self.failed else ""
        return f"{self.done}/{self.total_files} files{failed}"

    def __enter__(self) -> DownloadProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()
