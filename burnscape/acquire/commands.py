"""Acquire stage: the ``burnscape download`` and ``burnscape status`` commands."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from burnscape.acquire.download import DownloadResult, raise_for_failures
from burnscape.acquire.ledger import FileRecord, Ledger, RequestRecord
from burnscape.acquire.manifest import download_manifest, ledger_files, read_manifest
from burnscape.acquire.progress import DownloadProgress
from burnscape.errors import AcquireError

if TYPE_CHECKING:
    from burnscape.config import SourceConfig, WorkflowConfig

__all__ = ["download", "status"]

logger = logging.getLogger(__name__)

LEDGER_NAME = "ledger.sqlite"


@click.command()
@click.argument(
    "workflow", required=False, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV with the columns url,filename,size,checksum (checksum sha256:<hex> "
    "or md5:<hex>; size and checksum may be empty).",
)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the files (with --manifest; default: the workflow's "
    "outputs folder + /downloads).",
)
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Ledger file (default: DEST/{LEDGER_NAME} for a manifest, the outputs "
    f"folder's {LEDGER_NAME} for a workflow).",
)
@click.option(
    "-j", "--workers", default=4, show_default=True, help="Parallel downloads."
)
@click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve this folder as the sources' STAC API (workflow mode; default: "
    "$BURNSCAPE_MIRROR, else the shared data folder).",
)
@click.option("--no-mirror", is_flag=True, help="Download from the origin URLs.")
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Progress bar."
)
def download(
    workflow: Path | None,
    manifest: Path | None,
    dest: Path | None,
    ledger_path: Path | None,
    workers: int,
    mirror: Path | None,
    no_mirror: bool,
    progress: bool,
) -> None:
    """Download a manifest's files, or a WORKFLOW's sources, verified.

    Exits 0 only when every file is verified; otherwise prints what failed and
    why, and exits 1. Files already verified are not fetched again.
    """
    if (workflow is None) == (manifest is None):
        raise click.UsageError("give either WORKFLOW or --manifest FILE.csv")
    if workflow is not None and workflow.suffix.lower() in (".csv", ".txt"):
        raise click.UsageError(
            f"{workflow} looks like a manifest: use --manifest {workflow} --dest DIR"
        )
    if workers < 1:
        raise click.BadParameter("must be at least 1", param_hint="--workers")
    if manifest is not None:
        if dest is None:
            raise click.UsageError("--manifest needs --dest DIR")
        results = _download_manifest(manifest, dest, ledger_path, workers, progress)
        _finish(results)
        return
    assert workflow is not None
    _download_workflow(
        workflow, dest, ledger_path, workers, mirror, no_mirror, progress
    )


@click.command()
@click.argument(
    "path", required=False, default=".", type=click.Path(exists=True, path_type=Path)
)
@click.option("--all", "show_all", is_flag=True, help="List verified files too.")
@click.option("--json", "as_json", is_flag=True, help="Print the ledger as JSON.")
def status(path: Path, show_all: bool, as_json: bool) -> None:
    """Print the download ledger of PATH (outputs folder, ledger file or workflow).

    Shows the number of recorded requests per source, files per state, and every
    file that is not verified (all files with --all) with its attempts and last
    error. Exits 1 when any file is failed or missing, or was left downloading
    by a process that has ended (interrupted).
    """
    ledger_file = _find_ledger(path)
    try:
        ledger = Ledger(ledger_file, read_only=True)
    except AcquireError as err:
        raise click.ClickException(str(err)) from err
    with ledger:
        files = ledger.files()
        requests_ = ledger.requests()
        summary = ledger.summary()
    from burnscape.pipeline import folder_in_use

    # rows left 'downloading' by a process that no longer holds the folder
    interrupted = 0
    if summary.get("downloading") and not folder_in_use(ledger_file.parent):
        interrupted = summary["downloading"]
    if as_json:
        payload = {
            "ledger": str(ledger_file),
            "summary": summary,
            "interrupted": interrupted,
            "requests": [
                {k: v for k, v in vars(r).items() if k != "response"} for r in requests_
            ],
            "files": [vars(f) for f in files],
        }
        click.echo(json.dumps(payload, indent=2, default=str))
    else:
        _print_status(ledger_file, files, requests_, summary, show_all)
        if interrupted:
            click.echo(
                f"{interrupted} download(s) were interrupted (no burnscape process "
                "holds this folder now): run the same download again to resume them."
            )
    if summary.get("failed") or summary.get("missing") or interrupted:
        raise click.exceptions.Exit(1)


# --- helpers -------------------------------------------------------------------


def _download_manifest(
    manifest: Path,
    dest: Path,
    ledger_path: Path | None,
    workers: int,
    progress: bool,
) -> list[DownloadResult]:
    from burnscape.pipeline import outputs_lock

    ledger_file = ledger_path or dest / LEDGER_NAME
    # a bad manifest creates nothing
    planned = read_manifest(manifest, dest, reserved=ledger_files(ledger_file))
    dest.mkdir(parents=True, exist_ok=True)
    with (
        outputs_lock(dest, "give another --dest"),
        Ledger(ledger_file) as ledger,
    ):
        if not progress:
            return download_manifest(manifest, dest, ledger, max_workers=workers)
        with DownloadProgress(planned, label=manifest.name) as bar:
            return download_manifest(
                manifest, dest, ledger, max_workers=workers, on_event=bar.on_event
            )


def _download_workflow(
    workflow: Path,
    dest: Path | None,
    ledger_path: Path | None,
    workers: int,
    mirror: Path | None,
    no_mirror: bool,
    progress: bool,
) -> None:
    from burnscape.acquire.mirror import MirrorServer
    from burnscape.config import load_workflow
    from burnscape.pipeline import outputs_lock, resolve_mirror

    config = load_workflow(workflow)
    outputs = Path(config.outputs.folder)
    outputs.mkdir(parents=True, exist_ok=True)
    mirror_dir = resolve_mirror(
        str(mirror) if mirror else None, use_mirror=not no_mirror
    )
    server = MirrorServer(mirror_dir, config.sources).start() if mirror_dir else None
    errors: list[str] = []
    try:
        with (
            outputs_lock(outputs, "stop it"),
            Ledger(ledger_path or outputs / LEDGER_NAME) as ledger,
        ):
            for source in config.sources:
                try:
                    click.echo(
                        _download_source(
                            source,
                            config,
                            dest or outputs / "downloads",
                            ledger,
                            server.url if server and source.items else None,
                            workers,
                            progress,
                        )
                    )
                except AcquireError as err:
                    errors.append(f"{source.name}: {err}")
    finally:
        if server is not None:
            server.stop()
    if errors:
        for line in errors:
            click.echo(line, err=True)
        raise click.ClickException(f"{len(errors)} source(s) not fully downloaded")


def _download_source(
    source: SourceConfig,
    config: WorkflowConfig,
    dest: Path,
    ledger: Ledger,
    api_url: str | None,
    workers: int,
    progress: bool,
) -> str:
    """Acquire one workflow source by its kind; return a one-line summary."""
    from burnscape.acquire.firms import acquire_firms
    from burnscape.pipeline import acquire_imagery

    if source.kind == "firms":
        frame = acquire_firms(source, config.region, config.time, dest, ledger)
        return f"{source.name}: {len(frame)} active-fire detections"
    if source.kind not in ("stac", "laads"):
        raise AcquireError(
            f"kind {source.kind} is downloaded with --manifest, not from a workflow"
        )
    bar = DownloadProgress(label=source.name) if progress else None
    with bar or contextlib.nullcontext():
        items = acquire_imagery(
            source,
            config,
            dest,
            ledger,
            api_url=api_url,
            max_workers=workers,
            on_event=bar.on_event if bar else None,
        )
    if source.kind == "laads":
        return f"{source.name}: {len(items)} granules verified"
    files = sum(len(item.assets) for item in items)
    return f"{source.name}: {len(items)} items, {files} files verified"


def _finish(results: Sequence[DownloadResult]) -> None:
    fetched = sum(result.state == "verified" for result in results)
    skipped = sum(result.state == "skipped" for result in results)
    failed = [result for result in results if not result.ok]
    click.echo(
        f"{fetched + skipped} of {len(results)} files verified "
        f"({fetched} downloaded, {skipped} already present), {len(failed)} failed."
    )
    for result in failed:
        click.echo(f"FAILED {result.request.path.name}: {result.error}", err=True)
    try:
        raise_for_failures(results)
    except AcquireError as err:
        raise click.ClickException(
            f"{len(failed)} file(s) failed; see the lines above or "
            "`burnscape status` for the reasons"
        ) from err


def _find_ledger(path: Path) -> Path:
    if path.is_dir():
        candidate = path / LEDGER_NAME
    elif path.suffix in (".yml", ".yaml"):
        from burnscape.config import load_workflow

        candidate = Path(load_workflow(path).outputs.folder) / LEDGER_NAME
    else:
        candidate = path
    if not candidate.is_file():
        raise click.ClickException(
            f"no ledger at {candidate}: give an outputs folder, a ledger file or a "
            "workflow that has been run"
        )
    return candidate


def _print_status(
    ledger_file: Path,
    files: Sequence[FileRecord],
    requests_: Sequence[RequestRecord],
    summary: dict[str, int],
    show_all: bool,
) -> None:
    console = Console(soft_wrap=False, width=max(Console().width, 120))
    per_source: dict[str, int] = {}
    for request in requests_:
        name = request.source or "(none)"
        per_source[name] = per_source.get(name, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in sorted(summary.items())) or "none"
    console.print(f"Ledger {ledger_file}")
    console.print(
        "Requests recorded: "
        + (", ".join(f"{n} for {s}" for s, n in sorted(per_source.items())) or "none")
    )
    console.print(f"Files: {len(files)} ({states})")
    shown = [f for f in files if show_all or f.state != "verified"]
    if not shown:
        return
    table = Table("state", "file", "size", "attempts", "last error")
    table.columns[1].overflow = "fold"
    for record in shown:
        size = record.size if record.size is not None else record.expected_size
        table.add_row(
            record.state,
            _relative(record.path, ledger_file.parent),
            "" if size is None else str(size),
            str(record.attempts),
            record.last_error or "",
        )
    console.print(table)


def _relative(path: str, folder: Path) -> str:
    """Return ``path`` relative to ``folder`` where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(folder.resolve()))
    except ValueError:
        return path
