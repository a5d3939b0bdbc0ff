"""Acquire stage: download the files listed in a CSV manifest.

The manifest has the header ``url,filename,size,checksum``. ``checksum`` is
``sha256:<hex>`` or ``md5:<hex>``; ``size`` (bytes) and ``checksum`` may be
empty, ``filename`` too (the URL's last path segment is used). Files go flat
into the destination folder, verified, through :class:`Downloader`.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from burnscape.acquire.download import (
    PART_SUFFIX,
    Downloader,
    DownloadResult,
    FileRequest,
    make_session,
)
from burnscape.acquire.ledger import Ledger
from burnscape.errors import ConfigError

__all__ = ["MANIFEST_COLUMNS", "download_manifest", "ledger_files", "read_manifest"]

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("url", "filename", "size", "checksum")
"""The columns a manifest must have, in any order."""

_CHECKSUM = re.compile(r"^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32})$", re.IGNORECASE)
_MAX_NAME_BYTES = 255
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
_FORMATS = {
    ".tif": "tiff",
    ".tiff": "tiff",
    ".hdf": "hdf4",
    ".h5": "hdf5",
    ".he5": "hdf5",
    ".nc": "netcdf",
    ".txt": "text",
    ".csv": "text",
}


def read_manifest(
    path: Path,
    dest: Path,
    *,
    source: str = "manifest",
    reserved: Sequence[Path] = (),
) -> list[FileRequest]:
    """Read a manifest CSV into file requests below ``dest``.

    Parameters
    ----------
    path
        The CSV file. Header names are matched without regard to case or
        surrounding spaces.
    dest
        The folder the files go to.
    source
        The source name recorded in the ledger.
    reserved
        Paths no file may be written to (the ledger and its companions).

    Returns
    -------
    list of FileRequest
        One per row, in file order. A row without checksum is checked by format
        where its extension tells one (``.tif``, ``.hdf``, ``.h5``, ``.nc``,
        ``.txt``, ``.csv``).

    Raises
    ------
    ConfigError
        The file is unreadable, lacks a column, or a row is malformed (the
        message names the line); or two rows share a filename; or a filename
        would overwrite a reserved path or another row's partial download.
    """
    try:
        with open(path, newline="", encoding=_encoding(path)) as handle:
            table = list(csv.reader(handle))
    except OSError as err:
        raise ConfigError(f"cannot read the manifest {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"manifest {path} is not UTF-8 text (byte {err.start}): save it as "
            "CSV UTF-8"
        ) from err
    header = [name.strip().lower() for name in table[0]] if table else []
    missing = [column for column in MANIFEST_COLUMNS if column not in header]
    if missing:
        raise ConfigError(
            f"manifest {path} lacks the columns {missing}; expected the header "
            f"{','.join(MANIFEST_COLUMNS)}"
        )
    taken = {Path(p).absolute(): str(p) for p in reserved}
    requests_: list[FileRequest] = []
    seen: dict[str, int] = {}
    for line, fields in enumerate(table[1:], start=2):
        if not any(field.strip() for field in fields):
            continue  # a blank line
        where = f"{path}:{line}"
        if len(fields) != len(header):
            raise ConfigError(
                f"{where}: the row has {len(fields)} fields, the header "
                f"{len(header)} (a size written as 1,000? write 1000, or quote "
                "fields that hold commas)"
            )
        request = _row_request(
            dict(zip(header, fields, strict=True)), dest, source, where
        )
        name = request.path.name
        if name in seen:
            raise ConfigError(f"{where}: filename {name!r} repeats line {seen[name]}")
        if request.path.absolute() in taken:
            raise ConfigError(
                f"{where}: filename {name!r} would overwrite "
                f"{taken[request.path.absolute()]}: rename the file or choose "
                "another --dest"
            )
        seen[name] = line
        requests_.append(request)
    for request in requests_:
        if request.path.name.endswith(PART_SUFFIX):
            owner = request.path.name[: -len(PART_SUFFIX)]
            if owner in seen:
                raise ConfigError(
                    f"{path}:{seen[request.path.name]}: filename "
                    f"{request.path.name!r} is the partial download of line "
                    f"{seen[owner]}'s file: rename one of them"
                )
    return requests_


def download_manifest(
    manifest: Path,
    dest: Path,
    ledger: Ledger,
    *,
    max_workers: int = 4,
    on_event: Callable[[str, FileRequest, object], None] | None = None,
) -> list[DownloadResult]:
    """Download every file of a manifest into ``dest``; return the results.

    Failures do not stop the other files; pass the results to
    :func:`~burnscape.acquire.download.raise_for_failures` to turn them into
    one error.
    """
    requests_ = read_manifest(manifest, dest, reserved=ledger_files(ledger.path))
    session = make_session(pool_size=max(8, max_workers))
    with session:
        downloader = Downloader(
            ledger, session=session, max_workers=max_workers, on_event=on_event
        )
        results = downloader.fetch_all(requests_)
    logger.info(
        "Manifest %s: %d of %d files verified.",
        manifest,
        sum(result.ok for result in results),
        len(results),
    )
    return results


def ledger_files(path: Path) -> list[Path]:
    """Return a ledger's file and the companions SQLite keeps beside it."""
    return [path, *(path.with_name(path.name + end) for end in _SQLITE_COMPANIONS)]


def _row_request(
    row: dict[str, str], dest: Path, source: str, where: str
) -> FileRequest:
    url = (row.get("url") or "").strip()
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{where}: url {url!r} is not an http(s) URL")
    filename = (row.get("filename") or "").strip()
    filename = filename or PurePosixPath(unquote(urlsplit(url).path)).name
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise ConfigError(
            f"{where}: filename {filename!r} must be a plain file name (no folders)"
        )
    if any(ord(char) < 32 or ord(char) == 127 for char in filename):
        raise ConfigError(f"{where}: filename {filename!r} holds a control character")
    if len(filename.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ConfigError(
            f"{where}: filename {filename[:40]!r}... is longer than "
            f"{_MAX_NAME_BYTES} bytes, too long for most file systems"
        )
    size_text = (row.get("size") or "").strip()
    try:
        size = int(size_text) if size_text else None
    except ValueError as err:
        raise ConfigError(f"{where}: size {size_text!r} is not a whole number") from err
    if size is not None and size < 0:
        raise ConfigError(f"{where}: size {size} is negative")
    checksum = (row.get("checksum") or "").strip()
    if checksum and not _CHECKSUM.match(checksum):
        raise ConfigError(
            f"{where}: checksum {checksum!r} must be sha256:<64 hex> or md5:<32 hex>"
        )
    algorithm, _, digest = checksum.partition(":")
    algorithm = algorithm.lower()
    return FileRequest(
        url=url,
        path=dest / filename,
        size=size,
        sha256=digest.lower() if algorithm == "sha256" else None,
        md5=digest.lower() if algorithm == "md5" else None,
        source=source,
        item_id=filename,
        expect_format=None if checksum else _FORMATS.get(Path(filename).suffix.lower()),
    )


def _encoding(path: Path) -> str:
    """Return UTF-16 where the file starts with its byte-order mark, else UTF-8."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(2)
    except OSError:
        return "utf-8-sig"  # the caller's open() reports the error
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
