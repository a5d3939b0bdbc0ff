"""Publish stage: OGC API Processes jobs that run on the Dask cluster.

``TinyDBJobManager`` (and ``burnscape.publish.pgjobs.PostgreSQLJobManager``
at scale) keep pygeoapi's
job stores and change how jobs run: every execution is asynchronous, its
inputs are validated before a job is created (a bad request is a 400, never
a failed job), and the work goes to the Dask cluster as one driver task
(``run_workflow_job``) that secedes from its worker's thread pool and runs
the workflow's stages as further tasks. The driver writes the job's progress,
status and results to the store itself, so a job's record lives on across a
server restart; jobs of a server-owned LocalCluster that a restart cut short
are marked failed. Client callback URLs (``subscriber``) are ignored.

Configuration (``server.manager`` of the pygeoapi configuration)::

    manager:
      name: burnscape.publish.jobs.TinyDBJobManager
      connection: /path/to/outputs/jobs/jobs.tinydb.json
      output_dir: /path/to/outputs/jobs/
      dask:
        address: null        # a scheduler address; null: a LocalCluster
        n_workers: 2
        threads_per_worker: 1
        memory_limit: 3GiB
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pygeoapi.plugin import load_plugin
from pygeoapi.process.base import JobNotFoundError
from pygeoapi.process.manager.base import BaseManager
from pygeoapi.process.manager.tinydb_ import TinyDBManager
from pygeoapi.util import JobStatus, RequestedProcessExecutionMode

from burnscape.publish.processes import WorkflowProcessor

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "DaskJobs",
    "TinyDBJobManager",
    "close_cluster",
    "run_workflow_job",
]

logger = logging.getLogger(__name__)

_INSTANCE = uuid.uuid4().hex
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_STAGES = ("acquire", "cube", "detect", "events", "validate")

_cluster_lock = threading.Lock()
_cluster: dict[str, Any] = {}
_futures: dict[str, Future] = {}


class DaskJobs(BaseManager):
    """Mixin: run jobs on Dask, validate first; ``_store_class`` is the base store."""

    _store_class: str

    def _setup(self, manager_def: dict[str, Any]) -> None:
        self.supports_subscribing = False
        self.dask: dict[str, Any] = dict(manager_def.get("dask") or {})
        self.store_def = {
            "name": self._store_class,
            "connection": manager_def.get("connection"),
            "output_dir": manager_def.get("output_dir"),
        }
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        if not self.dask.get("address"):
            self._mark_interrupted()

    def execute_process(
        self,
        process_id: str,
        data_dict: dict[str, Any],
        execution_mode: Any = None,
        requested_outputs: Any = None,
        subscriber: Any = None,
        requested_response: Any = "raw",
    ) -> Any:
        """Validate the inputs, then create the job and run it asynchronously."""
        processor = self.get_processor(process_id)
        if isinstance(processor, WorkflowProcessor):
            processor.prepare(data_dict, Path(self.output_dir or ".") / "check")
        return super().execute_process(
            process_id,
            data_dict,
            execution_mode=RequestedProcessExecutionMode.respond_async,
            requested_outputs=requested_outputs,
            subscriber=None,
            requested_response=requested_response,
        )

    def _execute_handler_async(
        self, p: Any, job_id: str, data_dict: dict[str, Any], *args: Any, **kwargs: Any
    ) -> tuple[str, Any, JobStatus]:
        folder = Path(self.output_dir or ".") / job_id
        workflow = p.prepare(data_dict, folder)
        self.update_job(
            job_id,
            {
                "burnscape_instance": _INSTANCE,
                "message": f"Job queued on the Dask cluster (workflow {workflow.name})",
                "progress": 5,
            },
        )
        client = _client(self.dask)
        future = client.submit(
            run_workflow_job,
            job_id,
            workflow.model_dump(mode="json"),
            str(folder),
            self.store_def,
            self.dask.get("address") or client.scheduler.address,
            key=f"burnscape-job-{job_id}",
            pure=False,
        )
        _futures[job_id] = future
        future.add_done_callback(lambda _: _futures.pop(job_id, None))
        logger.info("Job %s submitted to the Dask cluster.", job_id)
        return "application/json", _status_info(job_id), JobStatus.accepted

    def delete_job(self, job_id: str) -> bool:
        """Dismiss a job: cancel its task, delete its record and its folder."""
        self.get_job(job_id)
        future = _futures.pop(job_id, None)
        if future is not None:
            future.cancel()
        removed = bool(super().delete_job(job_id))
        if _JOB_ID.match(job_id) and self.output_dir is not None:
            shutil.rmtree(self.output_dir / job_id, ignore_errors=True)
        return removed

    def _mark_interrupted(self) -> None:
        """Fail the jobs that an earlier server's own LocalCluster was running."""
        jobs = self.get_jobs()["jobs"]
        for job in jobs:
            owner = job.get("burnscape_instance")
            if job.get("status") in ("accepted", "running") and owner != _INSTANCE:
                self.update_job(
                    job["identifier"],
                    {
                        "status": JobStatus.failed.value,
                        "message": "Interrupted: the server and its cluster restarted",
                        "finished": _now(),
                        "updated": _now(),
                    },
                )
                logger.warning(
                    "Job %s was interrupted by a restart.", job["identifier"]
                )


class TinyDBJobManager(DaskJobs, TinyDBManager):
    """Jobs in a TinyDB file (the default), run on Dask."""

    _store_class = "TinyDB"

    def __init__(self, manager_def: dict[str, Any]) -> None:
        TinyDBManager.__init__(self, manager_def)
        self._setup(manager_def)


def run_workflow_job(
    job_id: str,
    workflow_json: dict[str, Any],
    folder: str,
    store_def: dict[str, Any],
    scheduler: str,
) -> str:
    """Run one workflow job; the Dask driver task that ``DaskJobs`` submits.

    Secedes from the worker's thread pool (the stages run as other tasks on
    the same scheduler), keeps the job's record up to date after each stage
    and stops at the next stage boundary once the job has been dismissed.

    Returns
    -------
    str
        The final job status.
    """
    import dask
    from distributed import secede

    from burnscape.config import WorkflowConfig
    from burnscape.pipeline import resolve_mirror, run_workflow

    secede()
    store = load_plugin("process_manager", store_def)
    workflow = WorkflowConfig.model_validate(workflow_json)
    done: list[str] = []

    def record(line: str) -> None:
        try:
            store.get_job(job_id)
        except JobNotFoundError as err:
            raise _Dismissed(job_id) from err
        if line.split(":", 1)[0] in _STAGES:
            done.append(line)
        progress = min(95, 10 + 85 * len(done) // len(_STAGES))
        store.update_job(
            job_id, {"message": line, "progress": progress, "updated": _now()}
        )

    store.update_job(
        job_id,
        {
            "status": JobStatus.running.value,
            "message": "Running",
            "progress": 10,
            "updated": _now(),
        },
    )
    try:
        # stages run on the scheduler through run_workflow's own client; work
        # after that client closes runs in this task's threads
        with dask.config.set(scheduler="threads"):
            report = run_workflow(
                workflow,
                outputs=Path(folder),
                mirror=resolve_mirror(None),
                scheduler=scheduler,
                echo=record,
            )
    except _Dismissed:
        shutil.rmtree(folder, ignore_errors=True)
        return JobStatus.dismissed.value
    except Exception as err:  # noqa: BLE001  (any failure ends the job as failed)
        logger.error("Job %s failed.", job_id, exc_info=True)
        store.update_job(
            job_id,
            {
                "status": JobStatus.failed.value,
                "message": f"{type(err).__name__}: {_first_line(err)}",
                "finished": _now(),
                "updated": _now(),
            },
        )
        return JobStatus.failed.value

    result = _result(report.to_dict(), Path(folder))
    location = Path(folder) / "result.json"
    location.write_text(json.dumps(result, indent=2, default=str))
    store.update_job(
        job_id,
        {
            "status": JobStatus.successful.value,
            "message": "Job complete",
            "progress": 100,
            "location": str(location),
            "mimetype": "application/json",
            "finished": _now(),
            "updated": _now(),
        },
    )
    return JobStatus.successful.value


def close_cluster() -> None:
    """Close the LocalCluster this process started for jobs, if any."""
    with _cluster_lock:
        client = _cluster.pop("client", None)
        cluster = _cluster.pop("cluster", None)
        _cluster.pop("key", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


class _Dismissed(Exception):
    """The job's record is gone: a client dismissed it."""


def _client(dask: dict[str, Any]) -> Client:
    from distributed import Client, LocalCluster

    key = json.dumps(dask, sort_keys=True)
    with _cluster_lock:
        if _cluster.get("key") == key:
            client: Client = _cluster["client"]
            return client
        address = dask.get("address")
        if address:
            client = Client(address, timeout="30s", set_as_default=False)
            cluster = None
        else:
            cluster = LocalCluster(
                n_workers=int(dask.get("n_workers", 2)),
                threads_per_worker=int(dask.get("threads_per_worker", 1)),
                memory_limit=str(dask.get("memory_limit", "3GiB")),
                processes=True,
                dashboard_address=":0",
            )
            client = Client(cluster, set_as_default=False)
        old_client, old_cluster = _cluster.get("client"), _cluster.get("cluster")
        _cluster.update(key=key, client=client, cluster=cluster)
    for item in (old_client, old_cluster):
        if item is not None:
            item.close()
    logger.info("Jobs run on the Dask scheduler at %s.", client.scheduler.address)
    return client


def _result(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    files = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        inside_store = any(part.endswith(".zarr") for part in parts[:-1])
        if not inside_store and (path.is_file() or path.suffix == ".zarr"):
            files.append("/".join(parts))
    report = dict(report)
    report.pop("outputs", None)
    return {"report": report, "files": files[:500]}


def _status_info(job_id: str) -> dict[str, Any]:
    return {
        "jobID": job_id,
        "type": "process",
        "status": JobStatus.accepted.value,
        "message": "Job accepted: poll /jobs/" + job_id,
        "progress": 5,
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else "no message"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


atexit.register(close_cluster)
