"""Command-line entry points ``burnscape run`` and ``burnscape validate``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from burnscape.config import load_workflow
from burnscape.pipeline import check_workflow, resolve_mirror, run_workflow

__all__ = ["run", "validate"]

logger = logging.getLogger(__name__)


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--outputs",
    type=click.Path(file_okay=False, path_type=Path),
    help="Outputs folder (default: the workflow's outputs.folder).",
)
@click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    help="Serve this local folder as the sources' STAC API instead of downloading "
    "from the origin (default: $BURNSCAPE_MIRROR, else the shared data folder).",
)
@click.option("--no-mirror", is_flag=True, help="Download from the origin URLs.")
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    envvar="DASK_SCHEDULER_ADDRESS",
    help="Join an existing Dask scheduler (tcp://HOST:PORT) instead of a LocalCluster "
    "(default: $DASK_SCHEDULER_ADDRESS).",
)
@click.option(
    "--serve", "serve_after", is_flag=True, help="Serve the outputs when done."
)
@click.option("--port", default=5000, show_default=True, help="Port for --serve.")
def run(
    workflow: Path,
    outputs: Path | None,
    mirror: Path | None,
    no_mirror: bool,
    scheduler: str | None,
    serve_after: bool,
    port: int,
) -> None:
    """Run WORKFLOW: download, cube, detect, events, validate; write run.json."""
    config = load_workflow(workflow)
    mirror_dir = resolve_mirror(
        str(mirror) if mirror else None, use_mirror=not no_mirror
    )
    click.echo(
        f"Running workflow {config.name} from {workflow}"
        + (f" (mirror: {mirror_dir})" if mirror_dir else " (origin URLs)")
    )
    report = run_workflow(
        config, outputs=outputs, mirror=mirror_dir, scheduler=scheduler, echo=click.echo
    )
    click.echo(
        f"Done in {report.timings_s['total']:.1f} s; outputs in {report.outputs} "
        f"(run.json, cube.zarr, burned.zarr, burnscape.gpkg, events/)."
    )
    if serve_after:
        from burnscape.publish.server import serve

        url = f"http://127.0.0.1:{port}"
        click.echo(f"Serving {report.outputs}:")
        click.echo(f"  landing page: {url}/")
        click.echo(f"  fire events:  {url}/collections/fire-events/items")
        click.echo(f"  coverage:     {url}/collections/burned-area/coverage?f=json")
        click.echo(f"  web map:      {url}/map")
        click.echo(f"  OpenAPI:      {url}/openapi?f=json")
        click.echo("Press Ctrl+C to stop.")
        serve(report.outputs, host="127.0.0.1", port=port)
    else:
        click.echo(f"Serve it with: burnscape serve --outputs {report.outputs}")


@click.command()
@click.argument("workflow", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the expanded workflow as JSON."
)
@click.option(
    "--mirror",
    type=click.Path(file_okay=False, path_type=Path),
    help="Check that this mirror folder holds every listed asset (default: as "
    "`run` picks it: $BURNSCAPE_MIRROR, else the shared data folder).",
)
@click.option("--no-mirror", is_flag=True, help="Do not check a mirror.")
def validate(
    workflow: Path, as_json: bool, mirror: Path | None, no_mirror: bool
) -> None:
    """Check WORKFLOW (schema, values, local files, mirror) without running it."""
    config = load_workflow(workflow)
    mirror_dir = resolve_mirror(
        str(mirror) if mirror else None, use_mirror=not no_mirror
    )
    problems = check_workflow(config, mirror_dir)
    if as_json:
        click.echo(json.dumps(config.model_dump(mode="json"), indent=2))
    if problems:
        raise click.ClickException(f"{workflow}: " + "; ".join(problems))
    rows, cols = config.region.shape
    click.echo(
        f"{workflow}: valid. Region {config.region.name} {rows}x{cols} px "
        f"({config.region.crs}, {config.region.pixel_size} units/px), "
        f"{config.time.start}..{config.time.end}, {len(config.sources)} source(s), "
        f"detector {config.detector.kind}."
        + (f" Mirror {mirror_dir} holds every listed asset." if mirror_dir else "")
    )
