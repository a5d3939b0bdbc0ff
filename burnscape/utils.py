"""Stage-free helpers: shared data location, hashing, stage timing, JSON output."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "BURNSCAPE_DATA_DIR"
"""Environment variable naming the folder of real shared data sets."""


def find_data_dir() -> Path | None:
    """Return the shared data folder, or None where it is absent.

    The folder is ``$BURNSCAPE_DATA_DIR`` when set, else ``../shared/data`` beside
    the project root (two levels above this package), else ``../shared/data``
    relative to the working directory.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    here = Path(__file__).resolve().parent.parent
    for candidate in (
        here.parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
    ):
        if candidate.is_dir():
            return candidate
    return None


def sha256_file(path: str | os.PathLike[str], block_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(block_size), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def log_duration(stage: str, timings: dict[str, float] | None = None) -> Iterator[None]:
    """Log how long a block took at INFO, and record it in ``timings`` if given."""
    start = time.perf_counter()
    logger.info("Stage %s started.", stage)
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        if timings is not None:
            timings[stage] = round(elapsed, 3)
        logger.info("Stage %s finished in %.2f s.", stage, elapsed)


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(target)


@functools.cache
def code_version() -> str:
    """Return burnscape's version, plus its git commit when run from a checkout.

    ``0.21.0+g1a2b3c4d5e6f`` (``.dirty`` added where tracked files differ from
    the commit); the bare version for an installed package or without git.
    Recorded in run.json and in trained weights, so a result names its code.
    """
    from burnscape import __version__

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return __version__

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if changed else ''}"
