from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from burnscape.acquire import FileRequest, Ledger
from burnscape.acquire.parallel import fetch_on_dask

from .faultserver import Fault, FaultServer, make_bytes


@pytest.mark.slow
@pytest.mark.integration
def test_dask_tasks_download_bounded_and_record_in_one_ledger(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    with FaultServer() as server:
        requests = []
        for index in range(6):
            data = make_bytes(600_000, seed=index)
            url = server.add(f"/f{index}.bin", data, rate_bps=1_000_000)
            requests.append(
                FileRequest(
                    url=url,
                    path=tmp_path / "out" / f"f{index}.bin",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            )
        bad = server.add("/bad.bin", b"x" * 1000, then=Fault("wrong"))
        requests.append(
            FileRequest(url=bad, path=tmp_path / "out" / "bad.bin", sha256="0" * 64)
        )
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=2,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            started = time.monotonic()
            results = fetch_on_dask(
                client,
                requests,
                tmp_path / "ledger.sqlite",
                max_parallel=2,
                backoff_s=0.05,
            )
            assert time.monotonic() - started < 60
    assert [r.state for r in results] == ["verified"] * 6 + ["failed"]
    assert 1 <= server.peak_bodies <= 2  # 4 threads in the cluster, 2 leases
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.summary() == {"verified": 6, "failed": 1}
    assert not (tmp_path / "out" / "bad.bin").exists()
