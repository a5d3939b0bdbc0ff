"""Publish stage: the OGC API process ``burnscape-workflow``.

Runs one of the server's registered workflow templates (the YAML files of the
repository's ``workflows/`` folder) with a few validated overrides: the time
window, a region bbox inside the template's, the detector and its thresholds.
Nothing from a request reaches a shell or names a file: the workflow is chosen
by name from the registered ones, every value is checked (types, ranges, and
then burnscape's own workflow schema), and each job writes only into its own
folder ``<outputs>/jobs/<job id>/``. Jobs run asynchronously on the Dask
cluster (see :mod:`burnscape.publish.jobs`).

Configuration (a ``resources`` entry of the pygeoapi configuration)::

    burnscape-workflow:
      type: process
      processor:
        name: burnscape.publish.processes.WorkflowProcessor
        workflows_dir: /path/to/repository/workflows
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from burnscape.config import WorkflowConfig, load_workflow
from burnscape.errors import ConfigError

__all__ = [
    "PROCESS_ID",
    "WorkflowInputError",
    "WorkflowProcessor",
    "registered_workflows",
]

logger = logging.getLogger(__name__)

PROCESS_ID = "burnscape-workflow"
"""Identifier of the workflow process in OGC API Processes."""

DETECTORS = ("spectral", "banet", "firehr")
_INPUTS = (
    "workflow",
    "start",
    "end",
    "bbox",
    "detector",
    "z_threshold",
    "dnbr_threshold",
)


class WorkflowInputError(ProcessorExecuteError):
    """An execution request's inputs are invalid (HTTP 400, message shown)."""

    ogc_exception_code = "InvalidParameterValue"
    http_status_code = HTTPStatus.BAD_REQUEST


def registered_workflows(folder: Path) -> dict[str, WorkflowConfig]:
    """Return the valid workflow templates of ``folder`` by file stem.

    A template that fails validation is left out with a warning.
    """
    templates: dict[str, WorkflowConfig] = {}
    for path in sorted(Path(folder).glob("*.yml")):
        try:
            templates[path.stem] = load_workflow(path)
        except ConfigError as err:
            logger.warning("Workflow template %s is not offered: %s", path, err)
    return templates


class WorkflowProcessor(BaseProcessor):
    """Run a registered burnscape workflow (see the module docstring)."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        folder = processor_def.get("workflows_dir")
        self.templates = registered_workflows(Path(folder)) if folder else {}
        super().__init__(processor_def, _metadata(sorted(self.templates)))
        self.job_id: str | None = None

    def set_job_id(self, job_id: str) -> None:
        """Remember the job id the manager assigned."""
        self.job_id = job_id

    def prepare(self, data: Any, outputs: Path) -> WorkflowConfig:
        """Validate a request's inputs; return the workflow to run into ``outputs``.

        Raises
        ------
        WorkflowInputError
            Unknown input, unregistered workflow, malformed or out-of-range
            value, or a combination the workflow schema rejects.
        """
        if not isinstance(data, dict):
            raise WorkflowInputError(user_msg="inputs must be a JSON object")
        unknown = sorted(set(data) - set(_INPUTS))
        if unknown:
            raise WorkflowInputError(
                user_msg=f"unknown input(s) {unknown}; valid inputs: {list(_INPUTS)}"
            )
        name = data.get("workflow")
        if not isinstance(name, str) or name not in self.templates:
            raise WorkflowInputError(
                user_msg=f"input 'workflow' must be one of {sorted(self.templates)}"
            )
        template = self.templates[name]
        raw = template.model_dump(mode="json")
        raw["outputs"] = {**raw["outputs"], "folder": str(outputs)}
        raw["time"] = _time_window(data, template)
        if "bbox" in data:
            raw["region"] = {**raw["region"], "bbox": _bbox(data["bbox"], template)}
        raw["detector"] = _detector(data, raw["detector"])
        try:
            workflow = WorkflowConfig.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise WorkflowInputError(user_msg=f"{where}: {first['msg']}") from err
        if workflow.detector.kind != "spectral" and not workflow.detector.weights:
            raise WorkflowInputError(
                user_msg=f"detector {workflow.detector.kind!r} needs weights, which "
                f"workflow {name!r} does not configure"
            )
        return workflow

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """Refuse synchronous execution: workflows only run as jobs.

        Raises
        ------
        WorkflowInputError
            Always; the job manager runs this process asynchronously.
        """
        raise WorkflowInputError(
            user_msg=f"{PROCESS_ID} runs only asynchronously (Prefer: respond-async)"
        )

    def __repr__(self) -> str:
        return f"<WorkflowProcessor> {sorted(self.templates)}"


def _time_window(data: dict[str, Any], template: WorkflowConfig) -> dict[str, str]:
    start = _date(data, "start", template.time.start)
    end = _date(data, "end", template.time.end)
    if end < start:
        raise WorkflowInputError(user_msg=f"end {end} is before start {start}")
    return {"start": start.isoformat(), "end": end.isoformat()}


def _date(data: dict[str, Any], key: str, default: dt.date) -> dt.date:
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, str):
        raise WorkflowInputError(user_msg=f"input {key!r} must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as err:
        raise WorkflowInputError(
            user_msg=f"input {key!r}={value!r} is not a date YYYY-MM-DD"
        ) from err


def _bbox(value: Any, template: WorkflowConfig) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(_is_number(item) for item in value)
    ):
        raise WorkflowInputError(
            user_msg="input 'bbox' must be 4 finite numbers [minx, miny, maxx, maxy] "
            f"in the workflow's CRS {template.region.crs}"
        )
    minx, miny, maxx, maxy = (float(item) for item in value)
    tminx, tminy, tmaxx, tmaxy = template.region.bbox
    if not (minx < maxx and miny < maxy):
        raise WorkflowInputError(
            user_msg="input 'bbox' needs minx < maxx and miny < maxy"
        )
    if minx < tminx or miny < tminy or maxx > tmaxx or maxy > tmaxy:
        raise WorkflowInputError(
            user_msg=f"input 'bbox' must lie inside the workflow's region "
            f"{list(template.region.bbox)} ({template.region.crs})"
        )
    return [minx, miny, maxx, maxy]


def _detector(data: dict[str, Any], detector: dict[str, Any]) -> dict[str, Any]:
    chosen = dict(detector)
    if "detector" in data:
        if data["detector"] not in DETECTORS:
            raise WorkflowInputError(
                user_msg=f"input 'detector' must be one of {DETECTORS}"
            )
        chosen["kind"] = data["detector"]
    for key in ("z_threshold", "dnbr_threshold"):
        if key in data:
            if not _is_number(data[key]):
                raise WorkflowInputError(
                    user_msg=f"input {key!r} must be a finite number"
                )
            chosen[key] = float(data[key])
    return chosen


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _metadata(names: list[str]) -> dict[str, Any]:
    one = {"minOccurs": 0, "maxOccurs": 1}
    return {
        "version": "1.0.0",
        "id": PROCESS_ID,
        "title": {"en": "Run a burnscape workflow"},
        "description": {
            "en": "Download, build the cube, detect burned areas and delineate fire "
            "events for one of the server's registered workflows, on the Dask "
            "cluster. Optional inputs narrow the time window and region or change "
            "the detector. Runs asynchronously: poll the job, then read its results."
        },
        "jobControlOptions": ["async-execute"],
        "keywords": ["wildfire", "burned area", "workflow", "dask"],
        "links": [],
        "inputs": {
            "workflow": {
                "title": "Workflow",
                "description": "Name of a registered workflow template.",
                "schema": {"type": "string", "enum": names},
                "minOccurs": 1,
                "maxOccurs": 1,
            },
            "start": {
                "title": "Start date",
                "description": "First day of the window (default: the template's).",
                "schema": {"type": "string", "format": "date"},
                **one,
            },
            "end": {
                "title": "End date",
                "description": "Last day of the window (default: the template's).",
                "schema": {"type": "string", "format": "date"},
                **one,
            },
            "bbox": {
                "title": "Region bbox",
                "description": "[minx, miny, maxx, maxy] in the workflow's CRS, inside "
                "its region (default: the whole region).",
                "schema": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 4,
                    "maxItems": 4,
                },
                **one,
            },
            "detector": {
                "title": "Detector",
                "description": "Burned-area detector (weights come from the template).",
                "schema": {"type": "string", "enum": list(DETECTORS)},
                **one,
            },
            "z_threshold": {
                "title": "dMIRBI robust z threshold",
                "schema": {"type": "number", "exclusiveMinimum": 0},
                **one,
            },
            "dnbr_threshold": {
                "title": "dNBR threshold",
                "schema": {"type": "number"},
                **one,
            },
        },
        "outputs": {
            "report": {
                "title": "Run report",
                "description": "What ran (run.json): timings, stage summaries, "
                "validation figures and the job's output files.",
                "schema": {"type": "object", "contentMediaType": "application/json"},
            }
        },
        "example": {"inputs": {"workflow": names[0] if names else "chrome2-2018"}},
    }
