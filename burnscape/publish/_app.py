"""Publish stage: the Flask (WSGI) application routing OGC API requests to pygeoapi.

pygeoapi's own ``flask_app`` reads its configuration from environment variables
at import time (one configuration per process) and answers a malformed
coverage bbox with a 500. This module builds one application per
configuration instead, checks the common query parameters first so that every
malformed one is a 400 with a message, and answers any unexpected exception
with a plain 500 whose detail stays in the log.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import math
import re
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pygeoapi
import pygeoapi.api as core_api
import pygeoapi.api.coverages as coverages_api
import pygeoapi.api.itemtypes as itemtypes_api
import pygeoapi.api.processes as processes_api
from flask import Flask, Request, Response, make_response, request
from pygeoapi.api import API, APIRequest, apply_gzip
from werkzeug.datastructures import Headers, ImmutableMultiDict

from burnscape.publish._time import parse_datetime_parameter
from burnscape.publish.coverage import SCALE_FACTOR

__all__ = ["build_app"]

logger = logging.getLogger(__name__)

_MAX_OFFSET = 2**53
_CONFORMANCE_LOCK = threading.Lock()
_COVERAGE_SCALING = "http://www.opengis.net/spec/ogcapi-coverages-1/1.0/conf/scaling"


class _Apis:
    """The pygeoapi API objects one application dispatches to.

    ``main`` serves descriptions. ``query`` serves items and coverages from a
    configuration without temporal extents, so that a datetime outside the
    data is an empty answer rather than pygeoapi's 400 "out of range".
    ``formats`` holds one API per extra native coverage format.
    """

    def __init__(self, config: dict[str, Any], openapi: dict[str, Any]) -> None:
        self.main = API(config, openapi)
        query_config = copy.deepcopy(config)
        for resource in query_config.get("resources", {}).values():
            resource.get("extents", {}).pop("temporal", None)
        self.query = API(query_config, openapi)
        self.formats: dict[tuple[str, str], API] = {}
        for name, resource in config.get("resources", {}).items():
            for provider_index, provider in enumerate(resource.get("providers") or []):
                if provider.get("type") != "coverage":
                    continue
                for extra in provider.get("extra_formats") or []:
                    variant = copy.deepcopy(query_config)
                    variant_provider = variant["resources"][name]["providers"][
                        provider_index
                    ]
                    variant_provider["format"] = dict(extra)
                    self.formats[(name, extra["name"].lower())] = API(variant, openapi)

    def coverage_mimetypes(self, dataset: str) -> dict[str, str]:
        """Return media type -> canonical name of a coverage's native formats."""
        types: dict[str, str] = {}
        resource = self.main.config["resources"].get(dataset) or {}
        for provider in resource.get("providers") or []:
            if provider.get("type") == "coverage":
                for fmt in [
                    provider.get("format"),
                    *(provider.get("extra_formats") or []),
                ]:
                    if fmt and fmt.get("mimetype"):
                        types[fmt["mimetype"]] = fmt["name"]
        return types

    def coverage_formats(self, dataset: str) -> dict[str, str]:
        """Return lower-case -> canonical names of a coverage's native formats."""
        names: dict[str, str] = {}
        resource = self.main.config["resources"].get(dataset) or {}
        for provider in resource.get("providers") or []:
            if provider.get("type") == "coverage":
                for fmt in [
                    provider.get("format"),
                    *(provider.get("extra_formats") or []),
                ]:
                    if fmt:
                        names[fmt["name"].lower()] = fmt["name"]
        return names


def build_app(config: dict[str, Any], openapi: dict[str, Any]) -> Flask:
    """Return a Flask application serving ``config`` (a loaded pygeoapi config)."""
    static = Path(pygeoapi.__file__).parent / "static"
    app = Flask(
        "burnscape.publish", static_folder=str(static), static_url_path="/static"
    )
    app.url_map.strict_slashes = False
    apis = _Apis(config, openapi)
    serves_coverages = any(
        provider.get("type") == "coverage"
        for resource in (config.get("resources") or {}).values()
        for provider in resource.get("providers") or []
    )

    def run(
        api_function: Any, *args: Any, api: API | None = None, check_format: bool = True
    ) -> Response:
        chosen = api or apis.main
        api_request = APIRequest.from_flask(request, chosen.locales)
        with _PygeoapiLog() as log:
            if check_format and not api_request.is_valid():
                headers, status, content = chosen.get_format_exception(api_request)
            else:
                headers, status, content = api_function(chosen, api_request, *args)
                if status == HTTPStatus.BAD_REQUEST:
                    content = _name_the_parameter(content)
                content = apply_gzip(headers, content)
            log.status = status
        response = make_response(content, status)
        if headers:
            response.headers = Headers(headers)
        return response

    @app.route("/")
    def landing_page() -> Response:
        return run(core_api.landing_page)

    @app.route("/openapi")
    def openapi_document() -> Response:
        return run(core_api.openapi_)

    @app.route("/conformance")
    def conformance() -> Response:
        # pygeoapi extends its module-level class list on every call: undo it
        with _CONFORMANCE_LOCK:
            size = len(core_api.CONFORMANCE_CLASSES)
            if serves_coverages:  # scale-factor, handled by this application
                core_api.CONFORMANCE_CLASSES.append(_COVERAGE_SCALING)
            try:
                return run(core_api.conformance)
            finally:
                del core_api.CONFORMANCE_CLASSES[size:]

    @app.route("/collections")
    @app.route("/collections/<path:collection_id>")
    def collections(collection_id: str | None = None) -> Response:
        return run(core_api.describe_collections, collection_id)

    @app.route("/collections/<path:collection_id>/schema")
    def collection_schema(collection_id: str) -> Response:
        return run(core_api.get_collection_schema, collection_id)

    @app.route("/collections/<path:collection_id>/queryables")
    def collection_queryables(collection_id: str) -> Response:
        return run(itemtypes_api.get_collection_queryables, collection_id)

    @app.route("/collections/<path:collection_id>/items", methods=["GET", "POST"])
    def collection_items(collection_id: str) -> Response:
        error = _check_parameters(request, apis.main)
        if error is not None:
            return error
        response = run(
            itemtypes_api.get_collection_items, collection_id, api=apis.query
        )
        return _drop_false_next_link(response)

    @app.route("/collections/<path:collection_id>/items/<path:item_id>")
    def collection_item(collection_id: str, item_id: str) -> Response:
        return run(itemtypes_api.get_collection_item, collection_id, item_id)

    @app.route("/collections/<path:collection_id>/coverage")
    def collection_coverage(collection_id: str) -> Response:
        error = _check_parameters(request, apis.main)
        if error is not None:
            return error
        formats = apis.coverage_formats(collection_id)
        requested = (request.args.get("f") or "").strip()
        if not requested:
            requested = _format_from_accept(apis.coverage_mimetypes(collection_id))
        canonical = formats.get(requested.lower())
        api = apis.query
        if canonical is not None:
            api = apis.formats.get((collection_id, canonical.lower()), apis.query)
            request.args = _replace_arg(request.args, "f", canonical)
        elif requested and requested.lower() not in ("json", "html"):
            return _error(
                apis.main,
                HTTPStatus.BAD_REQUEST,
                "InvalidParameterValue",
                f"unsupported format {requested!r}: use json or one of "
                f"{sorted(formats.values())}",
            )
        try:
            factor = _scale_factor(request.args)
        except ValueError as err:
            return _error(
                apis.main,
                HTTPStatus.BAD_REQUEST,
                "InvalidParameterValue",
                str(err),
            )
        token = SCALE_FACTOR.set(factor)
        try:
            return run(
                coverages_api.get_collection_coverage,
                collection_id,
                api=api,
                check_format=False,
            )
        finally:
            SCALE_FACTOR.reset(token)

    @app.route("/processes")
    @app.route("/processes/<process_id>")
    def processes(process_id: str | None = None) -> Response:
        response = run(processes_api.describe_processes, process_id)
        return _declare_job_control(response, apis.main)

    @app.route("/processes/<process_id>/execution", methods=["POST"])
    def execute_process(process_id: str) -> Response:
        problem = _execution_problem(request.get_data())
        if problem is not None:
            return _error(
                apis.main, HTTPStatus.BAD_REQUEST, "InvalidParameterValue", problem
            )
        return run(processes_api.execute_process, process_id)

    @app.route("/jobs")
    @app.route("/jobs/<job_id>", methods=["GET", "DELETE"])
    def jobs(job_id: str | None = None) -> Response:
        error = _check_parameters(request, apis.main)
        if error is not None:
            return error
        if job_id is not None and request.method == "DELETE":
            return run(processes_api.delete_job, job_id)
        return run(processes_api.get_jobs, job_id)

    @app.route("/jobs/<job_id>/results")
    def job_results(job_id: str) -> Response:
        return run(processes_api.get_job_result, job_id)

    @app.errorhandler(HTTPStatus.NOT_FOUND)
    def not_found(_: Exception) -> Response:
        return _error(apis.main, HTTPStatus.NOT_FOUND, "NotFound", "no such resource")

    @app.errorhandler(HTTPStatus.METHOD_NOT_ALLOWED)
    def method_not_allowed(_: Exception) -> Response:
        return _error(
            apis.main,
            HTTPStatus.METHOD_NOT_ALLOWED,
            "NoApplicableCode",
            f"method {request.method} is not allowed here",
        )

    @app.errorhandler(Exception)
    def internal_error(err: Exception) -> Response:
        from werkzeug.exceptions import HTTPException

        if isinstance(err, HTTPException):
            return _error(
                apis.main,
                HTTPStatus(err.code or 500),
                "NoApplicableCode",
                err.description or "request failed",
            )
        logger.error(
            "Request %s %s failed.", request.method, request.full_path, exc_info=err
        )
        return _error(
            apis.main,
            HTTPStatus.INTERNAL_SERVER_ERROR,
            "NoApplicableCode",
            "internal server error (details are in the server log)",
        )

    return app


def _check_parameters(req: Request, api: API) -> Response | None:
    """Return a 400 response for a malformed common parameter, else None."""
    message = _parameter_problem(req.args)
    if message is None:
        return None
    return _error(api, HTTPStatus.BAD_REQUEST, "InvalidParameterValue", message)


def _parameter_problem(args: Any) -> str | None:
    try:
        if "bbox" in args:
            _check_bbox(args["bbox"])
        if "datetime" in args:
            parse_datetime_parameter(args["datetime"])
        if "limit" in args:
            _check_integer("limit", args["limit"], minimum=1)
        if "offset" in args:
            _check_integer("offset", args["offset"], minimum=0)
        if "sortby" in args:
            _check_sortby(args["sortby"])
        for text in args.getlist("subset") if hasattr(args, "getlist") else []:
            _check_subset(text)
    except ValueError as err:
        return str(err)
    return None


def _scale_factor(args: Any) -> float | None:
    """Return the coverage request's ``scale-factor`` (None: native grid).

    Raises
    ------
    ValueError
        Not a finite number of at least 1, or another scaling parameter
        (``scale-size``, ``scale-axes``), which this server does not offer.
    """
    for other in ("scale-size", "scale-axes"):
        if other in args:
            raise ValueError(
                f"{other} is not supported here: use scale-factor (a number >= 1, "
                "e.g. scale-factor=4 for a grid 4 times coarser)"
            )
    text = args.get("scale-factor")
    if text is None:
        return None
    try:
        factor = float(text)
    except ValueError:
        raise ValueError(f"scale-factor must be a number, not {text!r}") from None
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(
            f"scale-factor must be a number >= 1 (the native grid or coarser), not "
            f"{text!r}"
        )
    return factor


def _execution_problem(body: bytes) -> str | None:
    """Return what is wrong with an execution request's JSON body, else None."""
    try:
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return "the request body must be a JSON execute document"
    if not isinstance(document, dict):
        return "the request body must be a JSON object with 'inputs'"
    for key in ("inputs", "outputs"):
        if key in document and not isinstance(document[key], dict):
            return f"'{key}' must be a JSON object"
    if document.get("response", "raw") not in ("raw", "document"):
        return "'response' must be 'raw' or 'document'"
    return None


def _check_bbox(text: str) -> None:
    parts = text.split(",")
    if len(parts) not in (4, 6):
        raise ValueError("bbox needs 4 numbers (minx,miny,maxx,maxy) or 6 (with z)")
    try:
        values = [float(part) for part in parts]
    except ValueError as err:
        raise ValueError(f"bbox {text!r} holds a value that is not a number") from err
    if not all(math.isfinite(value) for value in values):
        raise ValueError("bbox values must be finite numbers")
    half = len(values) // 2
    if values[1] > values[half + 1]:
        raise ValueError("bbox miny is greater than maxy")


_SUBSET = re.compile(r"\s*\w+\([^()]*\)\s*(,\s*\w+\([^()]*\)\s*)*")


def _check_subset(text: str) -> None:
    if not _SUBSET.fullmatch(text):
        raise ValueError(
            f"subset {text!r}: write axis(low:high) or axis(value), comma-separated, "
            'e.g. subset=x(538800:540000),time("2018-07-01":"2018-07-31")'
        )


def _check_sortby(text: str) -> None:
    for term in text.split(","):
        name = term.strip().lstrip("+-")
        if not name:
            raise ValueError(
                f"sortby {text!r}: give comma-separated [+|-]property names"
            )


def _check_integer(name: str, text: str, *, minimum: int) -> None:
    try:
        value = int(text)
    except ValueError as err:
        raise ValueError(f"{name} must be an integer, not {text!r}") from err
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    if value > _MAX_OFFSET:
        raise ValueError(f"{name} must be at most {_MAX_OFFSET}")


def _declare_job_control(response: Response, api: API) -> Response:
    """Advertise each process's own ``jobControlOptions``.

    pygeoapi lists sync-execute for every process; burnscape's workflow
    process runs only as a job.
    """
    body = response.get_json(silent=True) if response.is_json else None
    if response.status_code != HTTPStatus.OK or not isinstance(body, dict):
        return response
    described = body.get("processes", [body])
    for process in described:
        if (
            not isinstance(process, dict)
            or process.get("id") not in api.manager.processes
        ):
            continue
        metadata = api.manager.get_processor(process["id"]).metadata
        if "jobControlOptions" in metadata:
            process["jobControlOptions"] = list(metadata["jobControlOptions"])
    response.set_data(json.dumps(body))
    return response


def _format_from_accept(mimetypes: dict[str, str]) -> str:
    """Return the native format an ``Accept`` header asks for first, or ''."""
    for accepted in request.accept_mimetypes.values():
        if accepted in mimetypes:
            return mimetypes[accepted]
    return ""


def _drop_false_next_link(response: Response) -> Response:
    """Remove pygeoapi's ``next`` link from a last page that happens to be full.

    pygeoapi adds ``next`` whenever a page holds ``limit`` features, even
    when ``numberMatched`` says nothing follows.
    """
    if response.status_code != HTTPStatus.OK or not response.is_json:
        return response
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or "numberMatched" not in body:
        return response
    offset = int(request.args.get("offset", 0))
    if offset + int(body.get("numberReturned", 0)) < int(body["numberMatched"]):
        return response
    body["links"] = [
        link for link in body.get("links", []) if link.get("rel") != "next"
    ]
    response.set_data(json.dumps(body, separators=(",", ":")))
    return response


_held_records: contextvars.ContextVar[list[logging.LogRecord] | None] = (
    contextvars.ContextVar("burnscape_held_records", default=None)
)


class _HoldRecords(logging.Filter):
    """Hold back pygeoapi's records while a request runs (see _PygeoapiLog)."""

    def filter(self, record: logging.LogRecord) -> bool:
        held = _held_records.get()
        if held is None or record.levelno < logging.WARNING:
            return True
        held.append(record)
        return False


_HOLD = _HoldRecords()


def _hold_pygeoapi_records() -> None:
    """Attach the hold filter to every pygeoapi logger that exists (idempotent)."""
    names = [name for name in logging.root.manager.loggerDict if name == "pygeoapi"]
    names += [
        name for name in logging.root.manager.loggerDict if name.startswith("pygeoapi.")
    ]
    for name in names:
        target = logging.getLogger(name)
        if _HOLD not in target.filters:
            target.addFilter(_HOLD)


class _PygeoapiLog:
    """pygeoapi logs every client error at ERROR, some with a traceback.

    Within this context its warnings and errors are held; on leaving, a 4xx
    answer logs one INFO line (method, path, status, message) and anything else
    (a 5xx, or an exception) lets the held records through unchanged.
    """

    def __init__(self) -> None:
        self.status: int | None = None
        self._held: list[logging.LogRecord] = []

    def __enter__(self) -> _PygeoapiLog:
        _hold_pygeoapi_records()
        self._token = _held_records.set(self._held)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _held_records.reset(self._token)
        if self.status is not None and 400 <= self.status < 500:
            if self._held:
                logger.info(
                    "%s %s answered %d: %s",
                    request.method,
                    request.full_path.rstrip("?"),
                    self.status,
                    self._held[-1].getMessage(),
                )
            return
        for record in self._held:
            if self.status is not None and self.status < 400:
                if record.name == "pygeoapi.l10n":
                    continue  # it takes JSON-schema keys for locales: noise
            logging.getLogger(record.name).handle(record)


_TERSE_PYGEOAPI_ERRORS = {
    # pygeoapi's message: (the parameter, where a client finds the valid names)
    "bad sort property": ("sortby", "queryables"),
    "Invalid field specified": ("properties", "schema"),
}


def _name_the_parameter(content: Any) -> Any:
    """Rewrite pygeoapi's terse 400 messages to name the parameter and value."""
    if not isinstance(content, str | bytes):
        return content
    try:
        document = json.loads(content)
        terse = document.get("description")
    except (ValueError, AttributeError):
        return content
    if terse not in _TERSE_PYGEOAPI_ERRORS:
        return content
    parameter, listing = _TERSE_PYGEOAPI_ERRORS[terse]
    collection = (request.view_args or {}).get("collection_id", "")
    document["description"] = (
        f"{parameter} {request.args.get(parameter, '')!r}: no such property of "
        f"collection {collection!r}; /collections/{collection}/{listing} lists "
        "the valid names"
    )
    return json.dumps(document)


def _replace_arg(args: Any, key: str, value: str) -> Any:
    items = [(k, v) for k, v in args.items(multi=True) if k != key]
    return ImmutableMultiDict([*items, (key, value)])


def _error(api: API, status: HTTPStatus, code: str, description: str) -> Response:
    fmt = "html" if (request.args.get("f") or "").lower() == "html" else "json"
    headers = {"Content-Type": "text/html" if fmt == "html" else "application/json"}
    with _PygeoapiLog() as log:  # pygeoapi logs every exception it formats
        headers, status_code, content = api.get_exception(
            status, headers, fmt, code, description
        )
        log.status = status_code
    response = make_response(content, status_code)
    response.headers.update(headers)
    return response
