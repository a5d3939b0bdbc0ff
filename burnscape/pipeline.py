"""Pipeline: run a workflow's stages in order, each from what the previous one left.

Thin wiring only: every stage is a function of its own subpackage, and every
hand-over is a file in the outputs folder (ledger, cube.zarr, burned.zarr,
burnscape.gpkg), so any stage can be re-run alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from burnscape import __version__
from burnscape.config import ClusterConfig, SourceConfig, WorkflowConfig
from burnscape.errors import ConfigError, DataNotFoundError
from burnscape.utils import code_version, find_data_dir, log_duration, write_json

if TYPE_CHECKING:
    from distributed import Client

    from burnscape.acquire import AcquiredItem, Ledger
    from burnscape.cube.writer import Scene

__all__ = [
    "MIRROR_ENV",
    "RunReport",
    "check_workflow",
    "open_client",
    "resolve_mirror",
    "run_workflow",
]

logger = logging.getLogger(__name__)

MIRROR_ENV = "BURNSCAPE_MIRROR"
"""Environment variable naming a local mirror folder of the sources' files."""


@dataclass
class RunReport:
    """What a workflow run did; written to ``run.json`` in the outputs folder."""

    workflow: str
    run_id: str
    outputs: Path
    started: str
    timings_s: dict[str, float] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "workflow": self.workflow,
            "run_id": self.run_id,
            "burnscape_version": __version__,
            "code_version": code_version(),
            "outputs": str(self.outputs),
            "started": self.started,
            "timings_s": self.timings_s,
            "stages": self.stages,
            "validation": self.validation,
        }


def resolve_mirror(option: str | None, *, use_mirror: bool = True) -> Path | None:
    """Pick the mirror folder: the option, else ``$BURNSCAPE_MIRROR``, else shared data.

    Returns None when mirroring is off or no folder is found (then sources are
    fetched from their origin URLs).
    """
    if not use_mirror:
        return None
    chosen = option or os.environ.get(MIRROR_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise DataNotFoundError(
                f"mirror folder {path} does not exist: pass an existing --mirror DIR, "
                f"unset {MIRROR_ENV}, or use --no-mirror to download from the origin"
            )
        return path
    return find_data_dir()


@contextlib.contextmanager
def open_client(
    cluster: ClusterConfig, scheduler: str | None = None
) -> Iterator[Client]:
    """Start a local cluster, or join the one at ``scheduler``/``cluster.address``.

    The local cluster is dask-cuda's LocalCUDACluster (a worker per GPU, each
    with ``resources={"GPU": 1}``, so the model's GPU tasks go there) where
    :func:`local_gpus` finds CUDA GPUs and ``cluster.gpu`` is ``auto``;
    otherwise a LocalCluster of CPU worker processes.

    Yields
    ------
    distributed.Client
        A client that is the default scheduler inside the block.
    """
    from distributed import Client

    address = scheduler or cluster.address
    if address:
        logger.info("Joining the Dask scheduler at %s.", address)
        try:
            client = Client(address, timeout="30s")
        except OSError as err:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address} ({err}): check "
                "--scheduler, $DASK_SCHEDULER_ADDRESS or cluster.address, or leave "
                "them unset for a local cluster"
            ) from err
        with client:
            yield client
        return
    with _ctrl_c_reaches_only_this_process():
        local = _local_cluster(cluster)
    with local, Client(local) as client:
        logger.info(
            "Started a %s: %d workers x %d threads, dashboard %s.",
            type(local).__name__,
            len(local.workers),
            cluster.threads_per_worker,
            client.dashboard_link,
        )
        try:
            yield client
        except KeyboardInterrupt:
            # The client's cancelled gather leaves a task whose AllExit asyncio
            # would log as an error while the cluster closes: the run is ending
            # on purpose, and the caller says so in one line.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            _quiet_workers(client)
            raise


def _on_terminal() -> bool:
    """Return whether stderr is a terminal (where live progress bars belong)."""
    return sys.stderr.isatty()


def _quiet_workers(client: Client, timeout_s: float = 2.0) -> None:
    """Ask the local workers to log only critical records from now on.

    Closing a cluster whose tasks were cancelled mid-way makes its workers log
    cancelled instructions and failed heartbeats; after a Ctrl-C those are
    noise. Waits at most ``timeout_s`` for the workers to answer.
    """

    def quiet() -> None:
        for name in ("distributed", "asyncio", "tornado"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

    done = threading.Event()

    def ask() -> None:
        with contextlib.suppress(Exception):
            client.run(quiet, on_error="ignore")
        done.set()

    threading.Thread(target=ask, daemon=True, name="burnscape-quiet").start()
    done.wait(timeout_s)


@contextlib.contextmanager
def _ctrl_c_reaches_only_this_process() -> Iterator[None]:
    """Ignore SIGINT while the local cluster starts its worker processes.

    A Ctrl-C in a terminal goes to the whole process group. Worker processes
    started while SIGINT is ignored keep ignoring it (the disposition survives
    exec), so they no longer print a traceback each: this process catches the
    Ctrl-C, says so in one line and closes the cluster, which ends them. A
    Ctrl-C pressed during the second or two of starting is not seen.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def local_gpus() -> int:
    """Return the number of NVIDIA GPUs this process may use (0 without).

    Read from the driver's ``/proc`` entries and ``CUDA_VISIBLE_DEVICES``,
    without importing torch or initialising CUDA in the client process.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        present = len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0
    if visible is None:
        return present
    chosen = [part for part in visible.split(",") if part.strip() not in ("", "-1")]
    return min(present, len(chosen))


def _local_cluster(cluster: ClusterConfig) -> Any:
    """Return a LocalCUDACluster where GPUs and dask-cuda allow, else a LocalCluster."""
    from distributed import LocalCluster

    gpus = local_gpus() if cluster.gpu == "auto" else 0
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            logger.warning(
                "%d CUDA GPU(s) found but dask-cuda is not installed "
                "(pip install 'burnscape[gpu]'): the model runs on CPU workers.",
                gpus,
            )
        else:
            return LocalCUDACluster(
                threads_per_worker=cluster.threads_per_worker,
                memory_limit=cluster.memory_limit,
                resources={"GPU": 1},
                dashboard_address=":0",
            )
    return LocalCluster(
        n_workers=cluster.n_workers,
        threads_per_worker=cluster.threads_per_worker,
        memory_limit=cluster.memory_limit,
        processes=True,
        dashboard_address=":0",
    )


def run_workflow(
    workflow: WorkflowConfig,
    *,
    outputs: Path | None = None,
    mirror: Path | None = None,
    scheduler: str | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> RunReport:
    """Run every stage of a workflow and write ``run.json``.

    Parameters
    ----------
    workflow
        The validated workflow.
    outputs
        The outputs folder; defaults to ``workflow.outputs.folder``.
    mirror
        A local mirror of the sources' files, served through a local STAC API;
        None downloads from the origin URLs.
    scheduler
        A Dask scheduler address; None starts a LocalCluster.
    echo
        Receives one summary line per stage (the CLI prints them).

    Returns
    -------
    RunReport
        Timings, stage summaries and validation figures.
    """
    folder = Path(outputs or workflow.outputs.folder).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot create the outputs folder {folder}: {err.strerror or err}; "
            "give another --outputs folder"
        ) from err
    with outputs_lock(folder):
        return _run_stages(workflow, folder, mirror, scheduler, echo)


@contextlib.contextmanager
def outputs_lock(
    folder: Path, hint: str = "give another --outputs folder"
) -> Iterator[None]:
    """Hold an exclusive lock on an outputs folder for one run.

    Two runs writing the same cube, burned.zarr and events at once would
    corrupt each other's work; the second one is refused at once. The lock
    (``flock`` on ``.burnscape.lock``) is released by the OS if the run dies.
    ``burnscape download`` takes the same lock on its folder; ``hint`` ends the
    refusal message.

    Raises
    ------
    ConfigError
        Another run holds the folder.
    """
    import fcntl

    path = folder / ".burnscape.lock"
    with open(path, "a+", encoding="ascii") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"another burnscape run ({holder}) is using {folder}; wait for it "
                f"to finish or {hint}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_in_use(folder: Path) -> bool:
    """Return whether a burnscape process holds :func:`outputs_lock` on ``folder``."""
    import fcntl

    path = folder / ".burnscape.lock"
    if not path.is_file():
        return False
    with open(path, encoding="ascii") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _run_stages(
    workflow: WorkflowConfig,
    folder: Path,
    mirror: Path | None,
    scheduler: str | None,
    echo: Callable[[str], None],
) -> RunReport:
    report = RunReport(
        workflow=workflow.name,
        run_id=_run_id(workflow),
        outputs=folder,
        started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    start = time.perf_counter()
    try:
        # Downloads run in-process (bounded threads); the cluster starts only once
        # there is something to compute, so a failed download leaves no workers.
        items = _acquire(workflow, folder, mirror, report, echo)
        with open_client(workflow.cluster, scheduler) as client:
            if client.dashboard_link:
                echo(f"Dask dashboard: {client.dashboard_link}")
            _cube(workflow, folder, items, client, report, echo)
            _detect(workflow, folder, client, report, echo)
            _events(workflow, folder, report, echo)
        _validate(workflow, folder, report, echo)
    finally:
        report.timings_s["total"] = round(time.perf_counter() - start, 3)
        write_json(folder / "run.json", report.to_dict())
    return report


def _acquire(
    workflow: WorkflowConfig,
    folder: Path,
    mirror: Path | None,
    report: RunReport,
    echo: Callable[[str], None],
) -> list[AcquiredItem]:
    from burnscape.acquire import Ledger, MirrorServer
    from burnscape.acquire.progress import DownloadProgress

    items: list[AcquiredItem] = []
    with (
        log_duration("acquire", report.timings_s),
        Ledger(folder / "ledger.sqlite") as ledger,
    ):
        server = MirrorServer(mirror, workflow.sources) if mirror else None
        with server if server is not None else contextlib.nullcontext():
            api_url = server.url if server is not None else None
            for source in workflow.sources:
                # a live bar on a terminal only; logs get the summary line below
                bar = DownloadProgress(label=source.name) if _on_terminal() else None
                with bar or contextlib.nullcontext():
                    items.extend(
                        acquire_imagery(
                            source,
                            workflow,
                            folder / "downloads",
                            ledger,
                            api_url=api_url if source.items else source.url,
                            on_event=bar.on_event if bar else None,
                        )
                    )
    files = sum(len(item.assets) for item in items)
    report.stages["acquire"] = {
        "items": [item.id for item in items],
        "files": files,
        "mirror": str(mirror) if mirror else None,
    }
    echo(
        f"acquire: {len(items)} items, {files} verified files "
        f"({report.timings_s['acquire']:.1f} s)"
    )
    return items


def acquire_imagery(
    source: SourceConfig,
    workflow: WorkflowConfig,
    dest: Path,
    ledger: Ledger,
    *,
    api_url: str | None,
    max_workers: int = 4,
    on_event: Callable[[str, Any, object], None] | None = None,
) -> list[AcquiredItem]:
    """Download one imagery source of a workflow by its kind; return its items.

    ``stac`` sources search ``api_url`` (a STAC API: the mirror or the
    origin); ``laads`` sources search NASA CMR (``api_url``, else
    ``source.url``, else the public CMR) with the Earthdata token.
    ``on_event`` receives the downloader's events (a progress bar).
    """
    from burnscape.acquire import acquire_source
    from burnscape.acquire.laads import acquire_laads

    fetch = {"laads": acquire_laads, "stac": acquire_source}.get(source.kind)
    if fetch is None:
        raise ConfigError(
            f"source {source.name!r} is kind {source.kind!r}: `burnscape run` reads "
            "imagery (kinds stac and laads); run active fires and event rasters with "
            "`burnscape events --workflow`"
        )
    return fetch(
        source,
        workflow.region,
        workflow.time,
        dest,
        ledger,
        api_url=api_url,
        max_workers=max_workers,
        on_event=on_event,
    )


def _cube(
    workflow: WorkflowConfig,
    folder: Path,
    items: list[AcquiredItem],
    client: Client,
    report: RunReport,
    echo: Callable[[str], None],
) -> None:
    from burnscape.cube.ingest import ingest_items

    with log_duration("cube", report.timings_s):
        summary = ingest_items(items, workflow, folder, client)
    report.stages["cube"] = {
        "path": str(summary.path),
        "days_written": summary.days_written,
        "days_already_complete": summary.days_already_complete,
        "days_skipped": summary.days_skipped,
        "day_status": summary.day_status,
        "granules_skipped": summary.granules_skipped,
        "valid_pixels": summary.valid_pixels,
    }
    echo(
        f"cube: {len(summary.days_written)} days written, "
        f"{len(summary.days_already_complete)} already complete, "
        f"{len(summary.days_skipped)} skipped ({report.timings_s['cube']:.1f} s)"
    )
    for day, reason in summary.days_skipped.items():
        echo(f"  skipped {day}: {reason}")


def _detect(
    workflow: WorkflowConfig,
    folder: Path,
    client: Client,
    report: RunReport,
    echo: Callable[[str], None],
) -> None:
    import xarray as xr

    from burnscape.model.burned import write_burned

    cube_path, burned_path = folder / "cube.zarr", folder / "burned.zarr"
    detector = workflow.detector
    fallback = None
    if detector.kind == "firehr" and not detector.weights:
        fallback = "no FireHR weights configured (detector.weights)"
        echo(f"detect: {fallback}; the spectral detector runs instead")
        logger.warning("%s: falling back to the spectral detector.", fallback)
        detector = detector.model_copy(update={"kind": "spectral"})
    with log_duration("detect", report.timings_s):
        if detector.kind == "spectral":
            from burnscape.model.spectral import SpectralParams, detect_spectral

            params = SpectralParams(
                z_threshold=detector.z_threshold,
                dnbr_threshold=detector.dnbr_threshold,
                min_area_ha=detector.min_area_ha,
            )
            cube = xr.open_zarr(cube_path)
            write_burned(
                detect_spectral(cube, params),
                burned_path,
                detector="spectral",
                params=detector.model_dump(mode="json"),
                inputs=[str(cube_path)],
                chunk_size=workflow.cube.chunk_size,
            )
        else:
            from burnscape.model import detect

            detect(cube_path, burned_path, detector, client=client)
    burned = xr.open_zarr(burned_path, mask_and_scale=False, decode_times=False)
    pixels = int((burned["burned"] == 1).sum())
    report.stages["detect"] = {"detector": detector.kind, "burned_pixels": pixels}
    if fallback is not None:
        report.stages["detect"]["fallback"] = fallback
    echo(
        f"detect: {pixels} burned pixels with {detector.kind} "
        f"({report.timings_s['detect']:.1f} s)"
    )


def _events(
    workflow: WorkflowConfig,
    folder: Path,
    report: RunReport,
    echo: Callable[[str], None],
) -> None:
    from burnscape.events import extract_events

    with log_duration("events", report.timings_s):
        summary = extract_events(
            folder / "burned.zarr",
            folder,
            workflow.events,
            run_id=report.run_id,
            store=workflow.outputs.events_store,
        )
    report.stages["events"] = {
        "n_events": summary.n_events,
        "store": summary.store,
        "main_event": summary.main_event,
        "geotiffs": len(summary.geotiffs),
    }
    main = summary.main_event
    largest = f"; largest {main['area_ha']:.1f} ha" if main else ""
    echo(
        f"events: {summary.n_events} fire events{largest} "
        f"({report.timings_s['events']:.1f} s)"
    )


def _validate(
    workflow: WorkflowConfig,
    folder: Path,
    report: RunReport,
    echo: Callable[[str], None],
) -> None:
    if workflow.validation is None:
        return
    from burnscape.validation import ACRE_HA, reference_area_ha, score_burned

    reference = Path(workflow.validation.reference)
    with log_duration("validate", report.timings_s):
        scores = score_burned(folder / "burned.zarr", reference)
    figures: dict[str, Any] = {"reference": str(reference), **scores.to_dict()}
    main = report.stages.get("events", {}).get("main_event")
    stated = workflow.validation.reference_area_acres
    reference_ha = stated * ACRE_HA if stated else reference_area_ha(reference)
    figures["reference_area_ha"] = round(reference_ha, 2)
    if main:
        figures["main_event_area_ha"] = round(float(main["area_ha"]), 2)
        figures["main_event_area_ratio"] = round(
            float(main["area_ha"]) / reference_ha, 4
        )
    report.validation = figures
    area = (
        f"; main event {figures['main_event_area_ha']:.1f} ha vs reference "
        f"{reference_ha:.1f} ha (ratio {figures['main_event_area_ratio']:.3f})"
        if main
        else ""
    )
    echo(
        f"validate: precision {scores.precision:.3f}, recall {scores.recall:.3f}, "
        f"F1 {scores.f1:.3f}, IoU {scores.iou:.3f}{area}"
    )


def _scene(item: AcquiredItem, source: SourceConfig) -> Scene:
    """Turn a downloaded item into a cube scene, its assets named by band."""
    from burnscape.cube.scenes import scene_from_item

    return scene_from_item(item, source)


def _run_id(workflow: WorkflowConfig) -> str:
    """Derive a run id from the workflow's content, so re-runs share it."""
    content = json.dumps(workflow.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    return f"{workflow.name}-{digest}"


def check_workflow(workflow: WorkflowConfig, mirror: Path | None = None) -> list[str]:
    """Return problems that validation alone cannot see (missing local files).

    With ``mirror``, also every asset the sources' static items list must be in
    it (``<mirror>/<mirror_folder>/<path>``, of the listed size): what a run
    would otherwise find only when the download answers 404.
    """
    problems = _mirror_problems(workflow, mirror) if mirror is not None else []
    if (
        workflow.validation is not None
        and not Path(workflow.validation.reference).exists()
    ):
        problems.append(
            f"validation.reference {workflow.validation.reference} does not exist"
        )
    for weights in workflow.detector.weights:
        if not Path(weights).exists():
            problems.append(f"detector.weights {weights} does not exist")
    if workflow.detector.kind != "spectral" and not workflow.detector.weights:
        problems.append(
            f"detector.kind {workflow.detector.kind!r} needs detector.weights"
        )
    return problems


def _mirror_problems(workflow: WorkflowConfig, mirror: Path) -> list[str]:
    """Name the assets of static items that ``mirror`` lacks or holds wrongly."""
    problems = []
    for source in workflow.sources:
        if not source.items or not source.mirror_folder:
            continue
        folder = mirror / source.mirror_folder
        if not folder.is_dir():
            problems.append(
                f"mirror {mirror} lacks the folder {source.mirror_folder} of source "
                f"{source.name!r}"
            )
            continue
        absent, wrong_size, total = [], [], 0
        for item in source.items:
            for key, asset in item.assets.items():
                total += 1
                path = folder / asset.path
                if not path.is_file():
                    absent.append(f"{item.id}/{key} ({asset.path})")
                elif asset.size is not None and path.stat().st_size != asset.size:
                    wrong_size.append(
                        f"{item.id}/{key} ({asset.path}: {path.stat().st_size} "
                        f"bytes, listed {asset.size})"
                    )
        if absent:
            problems.append(
                f"mirror folder {folder} lacks {len(absent)} of {total} assets of "
                f"source {source.name!r}: " + ", ".join(absent)
            )
        if wrong_size:
            problems.append(
                f"mirror folder {folder} holds {len(wrong_size)} assets of source "
                f"{source.name!r} at another size than listed: " + ", ".join(wrong_size)
            )
    return problems
