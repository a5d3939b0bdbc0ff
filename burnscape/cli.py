"""Command-line interface: ``run``, ``validate``, ``serve`` and the stage commands.

Stage commands live beside their stage (``burnscape/<stage>/commands.py``) and are
imported only when called, so ``burnscape --help`` stays fast and ``serve`` never
imports torch.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from burnscape import __version__
from burnscape.errors import BurnscapeError

logger = logging.getLogger(__name__)

# command name -> (module, attribute, one-line help shown by --help)
_LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "burnscape.pipeline_cli",
        "run",
        "Run a workflow: download, cube, detect, events, validate.",
    ),
    "validate": (
        "burnscape.pipeline_cli",
        "validate",
        "Check a workflow file without running anything.",
    ),
    "serve": (
        "burnscape.publish.commands",
        "serve",
        "Serve the outputs through OGC API (pygeoapi) and the web map.",
    ),
    "download": (
        "burnscape.acquire.commands",
        "download",
        "Download files from a manifest or a workflow's sources.",
    ),
    "status": (
        "burnscape.acquire.commands",
        "status",
        "Print the download ledger of an outputs folder.",
    ),
    "train": (
        "burnscape.model.commands",
        "train",
        "Train BA-Net weights on semi-synthetic sequences.",
    ),
    "events": (
        "burnscape.events.commands",
        "events",
        "Delineate fire events from a burn-date raster.",
    ),
}


class _LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in _LAZY_COMMANDS:
            return command
        module_name, attribute, _ = _LAZY_COMMANDS[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("burnscape"):
                return None
            raise click.ClickException(
                f"'{cmd_name}' needs the package {err.name!r}: install burnscape's "
                "dependencies (see README, Quickstart)"
            ) from err
        loaded: click.Command = getattr(module, attribute)
        return loaded

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        rows = [
            (name, help_text)
            for name, (_, _, help_text) in sorted(_LAZY_COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class _Main(_LazyGroup):
    """Turn burnscape errors into one readable line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BurnscapeError as err:
            if ctx.obj and ctx.obj.get("traceback"):
                raise
            raise click.ClickException(str(err)) from err
        except KeyboardInterrupt:
            click.echo(
                "Interrupted: what was finished is kept; run the same command "
                "again to resume.",
                err=True,
            )
            raise click.exceptions.Exit(130) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="burnscape")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v INFO, -vv DEBUG)."
)
@click.option("--traceback", is_flag=True, help="Show the full traceback on errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, traceback: bool) -> None:
    """Map wildfire burned areas from satellite imagery and publish them (OGC API)."""
    ctx.ensure_object(dict)
    ctx.obj["traceback"] = traceback
    configure_logging(verbose)


def configure_logging(verbose: int, log_file: Path | None = None) -> None:
    """Set up logging for the CLI: WARNING by default, INFO with -v, DEBUG with -vv."""
    level = (
        logging.WARNING
        if verbose <= 0
        else logging.INFO
        if verbose == 1
        else logging.DEBUG
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("burnscape").setLevel(level)
    # Dask's own loggers (also in worker processes, which inherit the environment)
    # stay at WARNING unless -vv asks for everything.
    dask_level = "debug" if verbose >= 2 else "warning"
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", dask_level)
    logging.getLogger("distributed").setLevel(dask_level.upper())
    # urllib3 warns of every retry; the downloader reports what finally failed.
    logging.getLogger("urllib3").setLevel(logging.WARNING if verbose else logging.ERROR)


if __name__ == "__main__":  # pragma: no cover
    main()
