"""Events stage: the ``burnscape events`` command."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from burnscape.config import EventsConfig

logger = logging.getLogger(__name__)

__all__ = ["events"]


@click.command("events")
@click.argument("burned", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--outputs",
    "-o",
    type=click.Path(path_type=Path),
    required=True,
    help="Outputs folder: events/<event_id>.tif and burnscape.gpkg go here.",
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
    default=1,
    show_default=True,
    help="Pixels at most this far apart (Chebyshev) join one event.",
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
    burned: Path,
    outputs: Path,
    run_id: str | None,
    store: str | None,
    max_distance_px: int,
    max_gap_days: int,
    min_pixels: int,
    banet_year: int | None,
) -> None:
    """Delineate fire events in BURNED (a burned.zarr store) and store them.

    Writes the layers fire_events, daily_progression and burned_pixels, and one
    COG per event in OUTPUTS/events/. Re-running with the same --run-id
    replaces that run's rows.
    """
    from burnscape.events.banet import burned_from_banet_geotiff
    from burnscape.events.extract import extract_events

    outputs.mkdir(parents=True, exist_ok=True)
    if banet_year is not None:
        target = outputs / "burned.zarr"
        burned_from_banet_geotiff(burned, banet_year).to_zarr(
            target, mode="w", consolidated=True
        )
        burned = target
    params = EventsConfig(
        max_distance_px=max_distance_px,
        max_gap_days=max_gap_days,
        min_pixels=min_pixels,
    )
    summary = extract_events(
        burned, outputs, params, run_id=run_id or outputs.resolve().name, store=store
    )
    main = summary.main_event
    line = f"{summary.n_events} fire events written to {summary.store}"
    if main is not None:
        line += f"; largest {main['event_id']} ({main['area_ha']:.1f} ha)"
    click.echo(line)
