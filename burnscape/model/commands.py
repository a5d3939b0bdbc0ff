"""Model stage: the ``burnscape train`` command."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from burnscape.errors import DataNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["train"]


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Shared real-data folder (default: $BURNSCAPE_DATA_DIR or ../shared/data).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("banet-semisynthetic.pt"),
    show_default=True,
    help="Weight file to write.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Optimisation steps.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=2),
    default=4,
    show_default=True,
    help="Sequences per step (batch norm needs at least 2).",
)
@click.option(
    "--width",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Channel multiplier (1.0 = original BA-Net, 3.4 M parameters).",
)
@click.option(
    "--sequence-length",
    type=click.IntRange(min=16),
    default=64,
    show_default=True,
    help="Days per sequence (multiple of 16).",
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=32),
    default=32,
    show_default=True,
    help="Tile edge in pixels (multiple of 32).",
)
@click.option(
    "--learning-rate",
    type=float,
    default=3e-3,
    show_default=True,
    help="Peak learning rate (one-cycle schedule).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--heldout",
    multiple=True,
    default=("Attica2018_1", "FRiv2017_2"),
    show_default=True,
    help="Fire held out for scoring (repeat the option).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Torch CPU threads (default: torch's choice).",
)
def train(
    data_dir: Path | None,
    out_path: Path,
    steps: int,
    batch_size: int,
    width: float,
    sequence_length: int,
    tile_size: int,
    learning_rate: float,
    seed: int,
    heldout: tuple[str, ...],
    threads: int | None,
) -> None:
    """Train BA-Net weights on semi-synthetic sequences and score held-out fires.

    The sequences are semi-synthetic: real burn-date maps (six BA-Net fire
    events), real burned and unburned spectra (the CHROME 2 Landsat pair) and
    real fire radiative powers (VIIRS, Creek Fire), with simulated clouds,
    gaps, noise and seasonal drift. Whole fires are held out and scored:
    detection F1 and the share of burned pixels dated within 1 and 2 days.
    """
    import torch
    from rich.progress import Progress

    from burnscape.model.training import TrainingConfig, train_banet
    from burnscape.utils import find_data_dir

    if sequence_length % 16 or tile_size % 32:
        raise click.BadParameter(
            "--sequence-length must be a multiple of 16 and "
            "--tile-size a multiple of 32"
        )
    folder = data_dir or find_data_dir()
    if folder is None or not folder.is_dir():
        raise DataNotFoundError(
            "no shared data folder: pass --data-dir or set BURNSCAPE_DATA_DIR"
        )
    if threads:
        torch.set_num_threads(threads)
    defaults = TrainingConfig()
    config = TrainingConfig(
        width=width,
        sequence_length=sequence_length,
        tile_size=tile_size,
        batch_size=batch_size,
        steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        train_fires=tuple(
            f
            for f in (*defaults.train_fires, *defaults.heldout_fires)
            if f not in heldout
        ),
        heldout_fires=tuple(heldout),
    )
    with Progress(transient=True) as bar:
        task = bar.add_task("training", total=steps)

        def advance(step: int, loss: float) -> None:
            bar.update(task, completed=step, description=f"training (loss {loss:.4f})")

        path, score = train_banet(folder, out_path, config, progress=advance)
    click.echo(
        f"wrote {path} (semi-synthetic training; held out: {', '.join(heldout)})"
    )
    click.echo(
        f"held-out detection F1 {score.f1:.3f} (precision {score.precision:.3f}, "
        f"recall {score.recall:.3f}); burned pixels dated within 1 day "
        f"{score.dated_within_1_day:.1%}, "
        f"within 2 days {score.dated_within_2_days:.1%} "
        f"({score.burned_pixels} burned pixels)"
    )
