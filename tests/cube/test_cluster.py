"""The same workflow on a LocalCluster and on a real scheduler gives the same stores."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xarray as xr

from burnscape.cube.store import digest_store
from tests.conftest import free_port
from tests.cube.workflows import write_pair_workflow

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DASK = str(Path(sys.executable).with_name("dask"))


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, and its own children (its session)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture()
def scheduler(tmp_path) -> Iterator[str]:
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1."""
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        _start(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            tmp_path / "scheduler.log",
        )
    ]
    try:
        for k in range(2):
            procs.append(
                _start(
                    [
                        DASK,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--memory-limit",
                        "1GiB",
                        "--no-dashboard",
                        "--name",
                        f"cli-worker-{k}",
                    ],
                    tmp_path / f"worker{k}.log",
                )
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(address, timeout="5s") as client:
                    client.wait_for_workers(2, timeout=60)
                    break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _run(workflow: Path, outputs: Path, mirror: Path, *extra: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "burnscape.cli",
            "run",
            str(workflow),
            "--outputs",
            str(outputs),
            "--mirror",
            str(mirror),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_local_cluster_and_scheduler_give_identical_stores(tmp_path, scheduler) -> None:
    workflow = write_pair_workflow(tmp_path)
    mirror = tmp_path / "mirror"
    local_out = _run(workflow, tmp_path / "local", mirror)
    remote_out = _run(workflow, tmp_path / "remote", mirror, "--scheduler", scheduler)
    assert "Dask dashboard: http://127.0.0.1:" in local_out  # bokeh is installed
    assert "cube: 2 days written" in local_out
    assert "cube: 2 days written" in remote_out

    local = digest_store(tmp_path / "local" / "cube.zarr")
    remote = digest_store(tmp_path / "remote" / "cube.zarr")
    assert local == remote
    burned_local = digest_store(tmp_path / "local" / "burned.zarr")
    burned_remote = digest_store(tmp_path / "remote" / "burned.zarr")
    # burned.zarr's global attributes name the run's own cube path.
    burned_local.pop(".attrs"), burned_remote.pop(".attrs")
    assert burned_local == burned_remote

    burned = xr.open_zarr(
        tmp_path / "remote" / "burned.zarr", mask_and_scale=False, decode_times=False
    )
    assert int((burned["burned"] == 1).sum()) > 100
    # The remote cube's tiles were written through that scheduler.
    from distributed import Client

    with Client(scheduler, timeout="10s") as client:
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: sorted(dask_scheduler.task_prefixes)
        )
    assert "write_slot_tile" in prefixes and "probe_scene" in prefixes
