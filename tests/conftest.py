"""Shared fixtures: the real data folder, a free port, a small Dask cluster."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from burnscape.utils import DATA_DIR_ENV, find_data_dir


def _data_dir() -> Path | None:
    return find_data_dir()


requires_data = pytest.mark.skipif(
    _data_dir() is None,
    reason=f"real data folder not found: set {DATA_DIR_ENV} or use ../shared/data",
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder; skips the test where it is absent."""
    found = _data_dir()
    if found is None:
        pytest.skip(
            f"real data folder not found: set {DATA_DIR_ENV} or use ../shared/data"
        )
    return found


@pytest.fixture(scope="session")
def chrome2_dir(data_dir: Path) -> Path:
    """The CHROME 2 Landsat 8 pair and perimeter."""
    folder = data_dir / "chrome2-fire-2018-landsat8"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent from the data folder")
    return folder


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def dask_client() -> Iterator[object]:
    """A real LocalCluster (two worker processes, one thread each) for the session."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit="2GiB",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
