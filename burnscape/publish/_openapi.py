"""Publish stage: make pygeoapi's OpenAPI document self-contained and complete.

pygeoapi's document points at OGC schema files on the internet for common
parameters and responses; a client or validator without internet access
cannot resolve them. This module replaces each remote ``$ref`` with a local
component written from the OGC API standards, and adds the parameters the
coverage endpoints accept (datetime, properties, subset, the native formats).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["complete_openapi"]

_EXCEPTION = {
    "type": "object",
    "required": ["code"],
    "properties": {
        "code": {"type": "string"},
        "type": {"type": "string"},
        "description": {"type": "string"},
    },
}
_LINK = {
    "type": "object",
    "required": ["href"],
    "properties": {
        "href": {"type": "string"},
        "rel": {"type": "string"},
        "type": {"type": "string"},
        "title": {"type": "string"},
        "hreflang": {"type": "string"},
    },
}
_OBJECT = {"type": "object"}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "datetime": {
        "name": "datetime",
        "in": "query",
        "description": "An instant or an interval (RFC 3339, '..' for an open end): "
        "only items/cells whose time meets it are returned.",
        "required": False,
        "style": "form",
        "explode": False,
        "schema": {"type": "string"},
    },
    "featureId": {
        "name": "featureId",
        "in": "path",
        "description": "Identifier of a feature.",
        "required": True,
        "schema": {"type": "string"},
    },
    "sortby": {
        "name": "sortby",
        "in": "query",
        "description": "Comma-separated properties to sort by, each with an optional "
        "'+' (ascending) or '-' (descending) prefix.",
        "required": False,
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
    "coverage-properties": {
        "name": "properties",
        "in": "query",
        "description": "Comma-separated range fields (variables) to return.",
        "required": False,
        "style": "form",
        "explode": False,
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    "subset": {
        "name": "subset",
        "in": "query",
        "description": "Subset by axis in native coordinates, e.g. "
        'x(540000:541000),time("2024-07-01":"2024-07-02").',
        "required": False,
        "style": "form",
        "explode": False,
        "schema": {"type": "string"},
    },
}


def _response(description: str, schema: dict[str, Any], media: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


_RESPONSES: dict[str, dict[str, Any]] = {
    "LandingPage": _response("The landing page.", _OBJECT, "application/json"),
    "Collection": _response("A collection's description.", _OBJECT, "application/json"),
    "Features": _response("A page of features.", _OBJECT, "application/geo+json"),
    "Feature": _response("One feature.", _OBJECT, "application/geo+json"),
    "InvalidParameter": _response(
        "A query parameter has an invalid value.",
        {"$ref": "#/components/schemas/exception"},
        "application/json",
    ),
    "NotFound": _response(
        "The requested resource does not exist.",
        {"$ref": "#/components/schemas/exception"},
        "application/json",
    ),
    "ServerError": _response(
        "A server error occurred.",
        {"$ref": "#/components/schemas/exception"},
        "application/json",
    ),
    "TooLarge": _response(
        "The request selects more cells than the server's limit.",
        {"$ref": "#/components/schemas/exception"},
        "application/json",
    ),
}
_SCHEMAS = {"exception": _EXCEPTION, "link": _LINK}
_KINDS = {"parameters": _PARAMETERS, "responses": _RESPONSES, "schemas": _SCHEMAS}


def complete_openapi(
    document: dict[str, Any], coverage_formats: dict[str, list[str]]
) -> dict[str, Any]:
    """Return a copy of ``document`` without remote references, coverages completed.

    Parameters
    ----------
    document
        pygeoapi's OpenAPI 3.0 document.
    coverage_formats
        Collection id -> native format names of each coverage collection.
    """
    completed = _localise(copy.deepcopy(document))
    components = completed.setdefault("components", {})
    for kind, entries in _KINDS.items():
        section = components.setdefault(kind, {})
        for name, value in entries.items():
            section.setdefault(name, copy.deepcopy(value))
    for collection, formats in coverage_formats.items():
        operation = completed["paths"].get(f"/collections/{collection}/coverage", {})
        if "get" in operation:
            _complete_coverage(operation["get"], formats)
    return completed


def _localise(node: Any) -> Any:
    """Replace remote ``$ref`` values by references to local components."""
    if isinstance(node, list):
        return [_localise(item) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        return {"$ref": _local_ref(ref)}
    return {key: _localise(value) for key, value in node.items()}


def _local_ref(ref: str) -> str:
    path, _, fragment = ref.partition("#")
    if fragment:
        parts = fragment.strip("/").split("/")
        kind, name = parts[-2], parts[-1]
    else:
        kind = path.rstrip("/").split("/")[-2]
        name = path.rstrip("/").split("/")[-1].rsplit(".", 1)[0]
    if kind not in _KINDS:
        kind = "schemas"
    if name not in _KINDS[kind]:
        kind, name = "schemas", "link" if kind == "schemas" else "exception"
        if kind == "schemas" and "response" in ref:
            kind, name = "responses", "ServerError"
    return f"#/components/{kind}/{name}"


def _complete_coverage(operation: dict[str, Any], formats: list[str]) -> None:
    parameters = operation.setdefault("parameters", [])
    for parameter in parameters:
        if parameter.get("$ref") == "#/components/parameters/f":
            parameters.remove(parameter)
            break
    parameters.extend(
        [
            {
                "name": "f",
                "in": "query",
                "description": "Output format: CoverageJSON (json), HTML or a native "
                "format.",
                "required": False,
                "schema": {"type": "string", "enum": ["json", "html", *formats]},
            },
            {"$ref": "#/components/parameters/datetime"},
            {"$ref": "#/components/parameters/coverage-properties"},
            {"$ref": "#/components/parameters/subset"},
        ]
    )
    operation["responses"] = {
        "200": _response(
            "The coverage (CoverageJSON).", _OBJECT, "application/prs.coverage+json"
        ),
        "400": {"$ref": "#/components/responses/InvalidParameter"},
        "404": {"$ref": "#/components/responses/NotFound"},
        "413": {"$ref": "#/components/responses/TooLarge"},
        "500": {"$ref": "#/components/responses/ServerError"},
    }
