"""Publish stage: the ``burnscape serve`` command."""

from __future__ import annotations

import logging
from pathlib import Path

import click

__all__ = ["serve"]

logger = logging.getLogger(__name__)


@click.command("serve")
@click.option(
    "--outputs",
    "outputs",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A workflow's outputs folder (burnscape.gpkg, burned.zarr, cube.zarr).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--url",
    "public_url",
    default=None,
    help="Public URL of the server when behind a proxy (default http://HOST:PORT).",
)
@click.option(
    "--events-store",
    "events_store",
    default=None,
    envvar="BURNSCAPE_EVENTS_STORE",
    help="Serve the feature collections from this PostGIS database "
    "(postgresql://user:password@host:port/db) instead of OUTPUTS/burnscape.gpkg.",
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker threads of the WSGI server (waitress).",
)
def serve(
    outputs: Path,
    host: str,
    port: int,
    public_url: str | None,
    events_store: str | None,
    threads: int,
) -> None:
    """Serve an outputs folder through OGC API (pygeoapi under waitress).

    Writes OUTPUTS/pygeoapi-config.yml and OUTPUTS/openapi.yml, prints the
    URLs of the landing page, the collections and the OpenAPI document, and
    serves until interrupted (Ctrl+C).
    """
    from burnscape.publish.server import _url_host, make_server, stop_server

    url = (public_url or f"http://{_url_host(host)}:{port}").rstrip("/")
    server = make_server(
        outputs,
        host=host,
        port=port,
        threads=threads,
        server_url=url,
        events_store=events_store,
    )
    click.echo(f"burnscape serving {outputs.resolve()}")
    click.echo(f"  landing page: {url}/")
    click.echo(f"  collections:  {url}/collections")
    click.echo(f"  OpenAPI:      {url}/openapi?f=json")
    click.echo("Press Ctrl+C to stop.")
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("Server stopped.")
    finally:
        stop_server(server, running=False)
