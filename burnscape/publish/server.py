"""Publish stage: configure pygeoapi for an outputs folder and serve it (waitress).

``write_server_config`` renders the repository's ``pygeoapi-config.yml`` for
one outputs folder (collections whose data is absent are left out; extents
and storage CRSs come from the data) and writes the OpenAPI document beside
it. ``create_app`` builds the WSGI application; ``serve`` runs it under
waitress, a production WSGI server (never Flask's development server).
"""

from __future__ import annotations

import copy
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from burnscape.errors import PublishError
from burnscape.publish._extents import describe_resource
from burnscape.publish._openapi import complete_openapi

if TYPE_CHECKING:
    from flask import Flask
    from waitress.server import BaseWSGIServer, MultiSocketServer

__all__ = [
    "CONFIG_NAME",
    "OPENAPI_NAME",
    "create_app",
    "find_free_port",
    "make_server",
    "serve",
    "stop_server",
    "template_path",
    "workflows_dir",
    "write_server_config",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "pygeoapi-config.yml"
"""File name of the rendered pygeoapi configuration in an outputs folder."""

OPENAPI_NAME = "openapi.yml"
"""File name of the generated OpenAPI document in an outputs folder."""

_PACKAGED_TEMPLATE = Path(__file__).parent / "templates" / CONFIG_NAME
_REPO_TEMPLATE = Path(__file__).resolve().parents[2] / CONFIG_NAME


def workflows_dir() -> Path:
    """Return the folder of registered workflow templates (the repository's)."""
    return _REPO_TEMPLATE.parent / "workflows"


def template_path() -> Path:
    """Return the configuration template: the repository's, else the packaged copy."""
    return _REPO_TEMPLATE if _REPO_TEMPLATE.is_file() else _PACKAGED_TEMPLATE


def write_server_config(
    outputs: Path,
    *,
    server_url: str,
    template: Path | None = None,
    events_store: str | None = None,
) -> Path:
    """Render the pygeoapi configuration and OpenAPI document for ``outputs``.

    Parameters
    ----------
    outputs
        A workflow's outputs folder (burnscape.gpkg, burned.zarr, cube.zarr).
    server_url
        The URL clients reach the server at (used in every link).
    template
        The configuration template; default :func:`template_path`.
    events_store
        A ``postgresql://`` URL: serve the feature collections from this
        PostGIS database instead of ``burnscape.gpkg`` (the workflow's
        ``outputs.events_store``).

    Returns
    -------
    Path
        ``outputs / "pygeoapi-config.yml"``; ``outputs / "openapi.yml"`` is
        written beside it.

    Raises
    ------
    PublishError
        The outputs folder does not exist, holds nothing to serve, or the
        template is invalid.
    """
    outputs = Path(outputs).resolve()
    if not outputs.is_dir():
        raise PublishError(
            f"outputs folder {outputs} does not exist: run a workflow first"
        )
    config = _render_template(template or template_path(), outputs, server_url)
    if events_store:
        from burnscape.publish.postgis import postgis_resources

        config["resources"] = postgis_resources(config["resources"], events_store)

    served: dict[str, Any] = {}
    for name, resource in config.get("resources", {}).items():
        described = describe_resource(name, resource)
        if described is not None:
            served[name] = described
    if not any(r.get("type") == "collection" for r in served.values()):
        raise PublishError(
            f"nothing to serve in {outputs}: no burnscape.gpkg layer, burned.zarr "
            "or cube.zarr found (run a workflow first)"
        )
    config["resources"] = served
    (outputs / "jobs").mkdir(exist_ok=True)

    config_path = outputs / CONFIG_NAME
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    openapi = _openapi_document(config_path)
    (outputs / OPENAPI_NAME).write_text(yaml.safe_dump(openapi, sort_keys=False))
    logger.info("Wrote %s with collections %s.", config_path, ", ".join(sorted(served)))
    return config_path


def create_app(
    outputs: Path,
    *,
    server_url: str,
    template: Path | None = None,
    events_store: str | None = None,
) -> Flask:
    """Return the WSGI application serving ``outputs`` through OGC API.

    The configuration is rendered afresh from ``template`` (see
    :func:`write_server_config`).

    Raises
    ------
    PublishError
        As :func:`write_server_config`.
    """
    from burnscape.publish._app import build_app
    from burnscape.publish.webmap import webmap_blueprint

    config_path = write_server_config(
        Path(outputs),
        server_url=server_url,
        template=template,
        events_store=events_store,
    )
    config = load_config(config_path)
    openapi = yaml.safe_load((config_path.parent / OPENAPI_NAME).read_text())
    app = build_app(config, openapi)
    app.register_blueprint(webmap_blueprint(config, outputs=Path(outputs)))
    return app


def make_server(
    outputs: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    threads: int = 8,
    server_url: str | None = None,
    template: Path | None = None,
    events_store: str | None = None,
) -> BaseWSGIServer | MultiSocketServer:
    """Create (not start) a waitress server for ``outputs``; call ``.run()``.

    Raises
    ------
    PublishError
        The port cannot be bound, or as :func:`write_server_config`.
    """
    import waitress

    url = server_url or f"http://{_url_host(host)}:{port}"
    app = create_app(
        Path(outputs), server_url=url, template=template, events_store=events_store
    )
    try:
        return waitress.create_server(
            app, host=host, port=port, threads=threads, ident="burnscape (waitress)"
        )
    except OSError as err:
        raise PublishError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    except ValueError as err:  # waitress: a host that is no address nor name
        raise PublishError(
            f"cannot listen on {host}:{port}: not a valid host address "
            "(use e.g. 127.0.0.1, 0.0.0.0 or a host name)"
        ) from err


def serve(
    outputs: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    events_store: str | None = None,
) -> None:
    """Serve ``outputs`` on ``host:port`` until interrupted (blocking).

    Raises
    ------
    PublishError
        As :func:`make_server`.
    """
    server = make_server(Path(outputs), host=host, port=port, events_store=events_store)
    logger.info("Serving %s on http://%s:%d/", outputs, _url_host(host), port)
    try:
        server.run()
    finally:
        stop_server(server, running=False)


def stop_server(
    server: BaseWSGIServer | MultiSocketServer, *, running: bool = True
) -> None:
    """Stop a waitress server: let its worker threads finish, then close it.

    With ``running`` (its loop runs in another thread), the sockets are closed
    by the loop's own thread, woken through waitress's trigger, so the loop
    never polls a closed descriptor; the loop then ends, its map being empty.
    """
    import threading

    from waitress import wasyncore
    from waitress.trigger import trigger

    server.task_dispatcher.shutdown(timeout=5)
    socket_map = getattr(server, "map", None)
    if socket_map is None:
        socket_map = server._map
    wake = next((c for c in socket_map.values() if isinstance(c, trigger)), None)
    if running and wake is not None:
        closed = threading.Event()

        def close_all() -> None:
            wasyncore.close_all(socket_map)
            closed.set()

        wake.pull_trigger(close_all)
        if closed.wait(timeout=10):
            return
        logger.warning("The server loop did not stop in 10 s; closing its sockets.")
    wasyncore.close_all(socket_map)


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def load_config(path: Path) -> dict[str, Any]:
    """Load a rendered configuration as pygeoapi does (``${VAR}`` expanded)."""
    from pygeoapi.util import yaml_load

    with open(path, encoding="utf-8") as handle:
        try:
            config: dict[str, Any] = yaml_load(handle)
        except OSError as err:
            raise PublishError(f"{path}: {err}") from err
    return config


def _render_template(template: Path, outputs: Path, server_url: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(template.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PublishError(
            f"cannot read the pygeoapi template {template}: {err}"
        ) from err
    if not isinstance(raw, dict) or "server" not in raw or "resources" not in raw:
        raise PublishError(f"{template} is not a pygeoapi configuration")
    values = {
        "${BURNSCAPE_OUTPUTS}": outputs.as_posix(),
        "${BURNSCAPE_SERVER_URL}": server_url.rstrip("/"),
        "${BURNSCAPE_WORKFLOWS}": workflows_dir().as_posix(),
    }
    return _substitute(copy.deepcopy(raw), values)


def _substitute(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, values) for value in node]
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
    return node


def _openapi_document(config_path: Path) -> dict[str, Any]:
    from pygeoapi.openapi import get_oas

    config = load_config(config_path)
    formats: dict[str, list[str]] = {}
    for name, resource in config.get("resources", {}).items():
        for provider in resource.get("providers") or []:
            if provider.get("type") == "coverage":
                native = [
                    provider.get("format"),
                    *(provider.get("extra_formats") or []),
                ]
                formats[name] = [fmt["name"] for fmt in native if fmt]
    return complete_openapi(get_oas(config), formats)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
