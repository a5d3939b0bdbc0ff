"""Events stage: the ``burnscape events`` command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from burnscape.config import EventsConfig

if TYPE_CHECKING:
    from burnscape.events.extract import EventsSummary

logger = logging.getLogger(__name__)

__all__ = ["events"]


@click.command("events")
@click.argument("burned", required=False, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--outputs",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Outputs folder: events/<event_id>.tif and burnscape.gpkg go here "
    "(default with --workflow: the workflow's outputs.folder).",
)
@click.option(
    "--workflow",
    "-w",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Run a workflow of BA-Net event rasters or active-fire detections "
    "(e.g. workflows/creek-fire-2020.yml) instead of BURNED.",
)
@click.option(
    "--run-id",
    default=None,
    help="Run identifier (default: the outputs folder's name).",
)
@click.option(
    "--store",
    default=None,
    help="GeoPackage path or postgresql:// URL (default: OUTPUTS/burnscape.gpkg).",
)
@click.option(
    "--max-distance-px",
    type=click.IntRange(min=1),
    default=None,
    help="Pixels at most this far apart (Chebyshev) join one event [default: 1].",
)
@click.option(
    "--max-distance-m",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The same distance in metres, converted to whole pixels of the grid "
    "(instead of --max-distance-px).",
)
@click.option(
    "--max-gap-days",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Pixels whose burn dates differ by more never link directly.",
)
@click.option(
    "--min-pixels",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Drop events with fewer pixels.",
)
@click.option(
    "--banet-year",
    type=int,
    default=None,
    help="BURNED is a BA-Net event GeoTIFF whose days of year count in this year; "
    "it is converted to OUTPUTS/burned.zarr first.",
)
def events(
    burned: Path | None,
    outputs: Path | None,
    workflow: Path | None,
    run_id: str | None,
    store: str | None,
    max_distance_px: int | None,
    max_distance_m: float | None,
    max_gap_days: int,
    min_pixels: int,
    banet_year: int | None,
) -> None:
    """Delineate fire events in BURNED (a burned.zarr store) and store them.

    Writes the layers fire_events, daily_progression and burned_pixels (and
    active_fires for detections), and one COG per event in OUTPUTS/events/.
    Re-running with the same --run-id replaces that run's rows.
    """
    if (burned is None) == (workflow is None):
        raise click.UsageError("give either BURNED or --workflow")
    summaries: list[EventsSummary]
    if workflow is not None:
        context = click.get_current_context()
        given = [
            f"--{name.replace('_', '-')}"
            for name in (
                "max_distance_px",
                "max_distance_m",
                "max_gap_days",
                "min_pixels",
                "banet_year",
            )
            if context.get_parameter_source(name)
            is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} cannot be used with --workflow: "
                "set them in the workflow's events section"
            )
        summaries = _run_workflow(workflow, outputs, run_id, store)
    else:
        assert burned is not None
        if outputs is None:
            raise click.UsageError("BURNED needs --outputs")
        if max_distance_px is not None and max_distance_m is not None:
            raise click.UsageError("give --max-distance-px or --max-distance-m")
        distance: dict[str, float] = (
            {"max_distance_m": max_distance_m}
            if max_distance_m is not None
            else {"max_distance_px": max_distance_px or 1}
        )
        params = EventsConfig(
            **distance, max_gap_days=max_gap_days, min_pixels=min_pixels
        )
        summaries = [_run_burned(burned, outputs, params, run_id, store, banet_year)]
    for summary in summaries:
        main = summary.main_event
        noun = "fire event" if summary.n_events == 1 else "fire events"
        line = f"{summary.n_events} {noun} written to {summary.store}"
        if main is not None:
            line += f"; largest {main['event_id']} ({main['area_ha']:.1f} ha)"
        click.echo(line)


def _run_workflow(
    path: Path, outputs: Path | None, run_id: str | None, store: str | None
) -> list[EventsSummary]:
    from burnscape.config import load_workflow
    from burnscape.events.workflows import run_events_workflow

    workflow = load_workflow(path)
    if store is not None:  # --store wins over the workflow's outputs.events_store
        folder = workflow.outputs.model_copy(update={"events_store": store})
        workflow = workflow.model_copy(update={"outputs": folder})
    return run_events_workflow(workflow, outputs, run_id=run_id)


def _run_burned(
    burned: Path,
    outputs: Path,
    params: EventsConfig,
    run_id: str | None,
    store: str | None,
    banet_year: int | None,
) -> EventsSummary:
    from burnscape.events.banet import burned_from_banet_geotiff
    from burnscape.events.extract import extract_events

    outputs.mkdir(parents=True, exist_ok=True)
    if banet_year is not None:
        target = outputs / "burned.zarr"
        burned_from_banet_geotiff(burned, banet_year).to_zarr(
            target, mode="w", consolidated=True, zarr_format=2
        )
        burned = target
    return extract_events(
        burned, outputs, params, run_id=run_id or outputs.resolve().name, store=store
    )
