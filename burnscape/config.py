"""Workflow configuration: load a workflow YAML, expand variables, validate it.

A workflow file describes one run: the region grid, the time window, the sources
to download, the detector, the event parameters, the outputs and the cluster.
Every section is a frozen pydantic model; an unknown key is an error naming the
key and the valid ones. The schema is documented key by key in
``burnscape/workflow-schema.yml``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from burnscape.errors import ConfigError
from burnscape.utils import DATA_DIR_ENV, find_data_dir

__all__ = [
    "BAND_NAMES",
    "AssetConfig",
    "ClusterConfig",
    "CubeConfig",
    "DetectorConfig",
    "EventsConfig",
    "ItemConfig",
    "OutputsConfig",
    "RegionConfig",
    "SourceConfig",
    "TimeConfig",
    "ValidationConfig",
    "WorkflowConfig",
    "expand_variables",
    "load_workflow",
]

BAND_NAMES = ("blue", "green", "red", "nir", "swir1", "swir2", "mir", "tir")
"""Common band names a cube variable may carry."""

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_GRID_PIXELS = 4 * 10**10
"""Largest region grid accepted (200,000 x 200,000 pixels); beyond is a typo."""


class RegionConfig(_Frozen):
    """The output grid: a bounding box in ``crs`` and a square pixel size.

    ``bbox`` is (minx, miny, maxx, maxy) in ``crs`` units; the grid is north-up and
    its origin is the bbox's upper-left corner.
    """

    name: str = "region"
    crs: str = "EPSG:4326"
    bbox: tuple[float, float, float, float]
    pixel_size: float = Field(gt=0)

    @model_validator(mode="after")
    def _check_bbox(self) -> RegionConfig:
        minx, miny, maxx, maxy = self.bbox
        if not (minx < maxx and miny < maxy):
            raise ValueError(
                f"bbox {list(self.bbox)} must be [minx, miny, maxx, maxy] "
                "with min < max"
            )
        rows, cols = self.shape
        if rows * cols > MAX_GRID_PIXELS:
            raise ValueError(
                f"the grid would be {rows} x {cols} pixels, more than "
                f"{MAX_GRID_PIXELS:,}: check pixel_size ({self.pixel_size} CRS units) "
                "against the bbox, or split the region"
            )
        return self

    @field_validator("crs")
    @classmethod
    def _check_crs(cls, value: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError as err:
            raise ValueError(f"unknown CRS {value!r}: use e.g. 'EPSG:32610'") from err
        return value

    @property
    def shape(self) -> tuple[int, int]:
        """Return the grid's (rows, columns)."""
        minx, miny, maxx, maxy = self.bbox
        return (
            max(1, round((maxy - miny) / self.pixel_size)),
            max(1, round((maxx - minx) / self.pixel_size)),
        )


class TimeConfig(_Frozen):
    """The time window searched and processed, both ends inclusive (UTC days)."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _check_order(self) -> TimeConfig:
        if self.end < self.start:
            raise ValueError(f"time.end {self.end} is before time.start {self.start}")
        return self


class AssetConfig(_Frozen):
    """One file of an item: its path below the source's origin and its SHA-256."""

    path: str
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(default=None, ge=0)


class ItemConfig(_Frozen):
    """A scene listed in the workflow itself (a static catalogue entry).

    ``datetime`` is the acquisition time where known. Where it is not, give the
    honest window ``start_datetime`` .. ``end_datetime`` that the acquisition must
    lie in (STAC's convention for items without a single time).
    """

    id: str
    datetime: dt.datetime | None = None
    start_datetime: dt.datetime | None = None
    end_datetime: dt.datetime | None = None
    assets: dict[str, AssetConfig]

    @model_validator(mode="after")
    def _check_time(self) -> ItemConfig:
        if self.datetime is None and (
            self.start_datetime is None or self.end_datetime is None
        ):
            raise ValueError(
                f"item {self.id!r} needs 'datetime' or both 'start_datetime' "
                "and 'end_datetime'"
            )
        if (
            self.start_datetime
            and self.end_datetime
            and self.end_datetime < self.start_datetime
        ):
            raise ValueError(f"item {self.id!r}: end_datetime is before start_datetime")
        return self

    @property
    def time_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """Return the earliest and latest possible acquisition time (UTC)."""
        if self.datetime is not None:
            return _utc(self.datetime), _utc(self.datetime)
        assert self.start_datetime is not None and self.end_datetime is not None
        return _utc(self.start_datetime), _utc(self.end_datetime)


class SourceConfig(_Frozen):
    """A source of imagery or active fires.

    ``kind`` selects the downloader: ``stac`` searches a STAC API at ``url`` (or,
    with ``items``, a static catalogue served by the local mirror when offline);
    ``laads``, ``firms`` and ``manifest`` are the other sources.
    """

    kind: Literal["stac", "laads", "firms", "manifest"]
    name: str
    url: str | None = None
    collection: str | None = None
    origin: str | None = None
    mirror_folder: str | None = None
    bands: dict[str, str] = Field(default_factory=dict)
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    items: tuple[ItemConfig, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("bands")
    @classmethod
    def _check_bands(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(BAND_NAMES))
        if unknown:
            raise ValueError(f"unknown band names {unknown}; valid: {list(BAND_NAMES)}")
        return value

    @model_validator(mode="after")
    def _check_items(self) -> SourceConfig:
        for item in self.items:
            missing = sorted(set(self.bands.values()) - set(item.assets))
            if missing:
                raise ValueError(
                    f"item {item.id!r} of source {self.name!r} lacks assets {missing} "
                    "named in 'bands'"
                )
        return self


class DetectorConfig(_Frozen):
    """The burned-area detector and its parameters.

    ``spectral``: the dMIRBI/dNBR change rule (see burnscape.model.spectral);
    ``banet`` and ``firehr`` need ``weights``.
    """

    kind: Literal["spectral", "banet", "firehr"] = "spectral"
    weights: tuple[str, ...] = ()
    z_threshold: float = Field(default=3.0, gt=0)
    dnbr_threshold: float = 0.1
    min_area_ha: float = Field(default=1.0, ge=0)


class EventsConfig(_Frozen):
    """How burned pixels are grouped into fire events.

    Pixels join one event when at most ``max_distance_px`` pixels apart
    (Chebyshev), or ``max_distance_m`` metres (converted to whole pixels on
    the grid, at least one), and their burn dates at most ``max_gap_days``
    apart. Give the distance in pixels or in metres, not both.
    """

    max_distance_px: int = Field(default=1, ge=1)
    max_distance_m: float | None = Field(default=None, gt=0)
    max_gap_days: int = Field(default=16, ge=0)
    min_pixels: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _one_distance(self) -> EventsConfig:
        if (
            self.max_distance_m is not None
            and "max_distance_px" in self.model_fields_set
        ):
            raise ValueError(
                "give max_distance_px or max_distance_m, not both "
                f"(got {self.max_distance_px} px and {self.max_distance_m} m)"
            )
        return self

    def distance_px(self, pixel_size_m: float) -> int:
        """Return the join distance in pixels of ``pixel_size_m`` metres."""
        if self.max_distance_m is None:
            return self.max_distance_px
        return max(1, int(self.max_distance_m // pixel_size_m))


class ValidationConfig(_Frozen):
    """A reference perimeter to score the burned mask against."""

    reference: str
    reference_area_acres: float | None = Field(default=None, gt=0)
    study_area: str | None = None


class OutputsConfig(_Frozen):
    """Where results go: a folder, and optionally a PostGIS URL for the events."""

    folder: str
    events_store: str | None = None


class CubeConfig(_Frozen):
    """Zarr chunking of the cube (time is always one day per chunk)."""

    chunk_size: int = Field(default=256, ge=16)


class ClusterConfig(_Frozen):
    """The Dask cluster: a LocalCluster, or an existing scheduler by address.

    ``gpu``: ``auto`` starts dask-cuda's LocalCUDACluster (one worker per GPU,
    each offering ``resources={"GPU": 1}``) where this machine has CUDA GPUs
    and dask-cuda is installed; ``off`` always starts CPU workers.
    """

    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "4GiB"
    gpu: Literal["auto", "off"] = "auto"

    @field_validator("memory_limit")
    @classmethod
    def _check_memory_limit(cls, value: str) -> str:
        from dask.utils import parse_bytes

        try:
            parse_bytes(value)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"memory_limit {value!r} is not a size: use e.g. '4GiB' or '500MB'"
            ) from err
        return value


class WorkflowConfig(_Frozen):
    """A whole workflow file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    region: RegionConfig
    time: TimeConfig
    sources: Annotated[tuple[SourceConfig, ...], Field(min_length=1)]
    detector: DetectorConfig = DetectorConfig()
    events: EventsConfig = EventsConfig()
    validation: ValidationConfig | None = None
    outputs: OutputsConfig
    cube: CubeConfig = CubeConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _unique_sources(self) -> WorkflowConfig:
        names = [source.name for source in self.sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique; repeated: {duplicated}")
        return self


def expand_variables(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` from the environment.

    ``BURNSCAPE_DATA_DIR`` falls back to the discovered shared data folder. An
    unset variable with no default is an error naming it.
    """
    env = dict(os.environ if environ is None else environ)
    if DATA_DIR_ENV not in env:
        found = find_data_dir()
        if found is not None:
            env[DATA_DIR_ENV] = str(found)

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set; "
            f"set it or write ${{{name}:-default}}"
        )

    return _VAR.sub(substitute, text)


def load_workflow(path: str | os.PathLike[str]) -> WorkflowConfig:
    """Read, expand and validate a workflow YAML file.

    Parameters
    ----------
    path
        The workflow file.

    Returns
    -------
    WorkflowConfig
        The validated, frozen workflow.

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or fails validation; the message names the
        key, what was wrong and, for an unknown key, the valid keys.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read workflow {source}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{source} is not UTF-8 text (byte {err.start}): save it as UTF-8 YAML"
        ) from err
    try:
        raw = yaml.safe_load(expand_variables(text))
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from err
    except ValueError as err:  # a well-formed but impossible date, e.g. 2013-02-30
        raise ConfigError(_impossible_date(source, text, err)) from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must hold a mapping of workflow keys at top level")
    try:
        return WorkflowConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_describe(err, raw)}") from err


def _describe(err: ValidationError, raw: dict[str, Any]) -> str:
    """Turn pydantic's report into one line per problem, listing valid keys."""
    lines = []
    problems = err.errors()
    for problem in problems:
        loc = tuple(problem["loc"])
        where = ".".join(str(part) for part in loc) or "(top level)"
        if problem["type"] == "too_short" and any(
            tuple(other["loc"])[: len(loc)] == loc and len(other["loc"]) > len(loc)
            for other in problems
        ):
            continue  # a list emptied by its own invalid entries, reported above
        if problem["type"] == "extra_forbidden":
            model = _model_at(WorkflowConfig, problem["loc"][:-1], raw)
            valid = ", ".join(model.model_fields) if model else "see the schema"
            lines.append(f"unknown key '{where}'; valid keys here: {valid}")
        else:
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"{where}: {message}")
    return "; ".join(lines)


def _model_at(
    model: type[BaseModel], loc: tuple[Any, ...], raw: Any
) -> type[BaseModel] | None:
    """Find the pydantic model class that validates the mapping at ``loc``."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        is_model = isinstance(current, type) and issubclass(current, BaseModel)
        field = current.model_fields.get(part) if is_model else None
        if field is None:
            return None
        current = _inner_model(field.annotation)
        if current is None:
            return None
    return (
        current
        if isinstance(current, type) and issubclass(current, BaseModel)
        else None
    )


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """Return the BaseModel inside ``tuple[X, ...]``, ``X | None`` and the like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    metadata_origin = getattr(annotation, "__origin__", None)
    if metadata_origin is not None and metadata_origin is not annotation:
        return _inner_model(metadata_origin)
    return None


def _utc(value: dt.datetime) -> dt.datetime:
    return (
        value.replace(tzinfo=dt.UTC)
        if value.tzinfo is None
        else value.astimezone(dt.UTC)
    )


def _impossible_date(source: Path, text: str, err: ValueError) -> str:
    """Name the line of the date YAML could not build (YAML's error does not)."""
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0]
        for found in re.finditer(r"(?<![\w-])(\d{4}-\d{2}-\d{2})(?![\w-])", content):
            try:
                dt.date.fromisoformat(found.group(1))
            except ValueError as problem:
                return (
                    f"{source}:{number}: {found.group(1)} is not a date ({problem}): "
                    f"{line.strip()}"
                )
    return f"{source}: {err} (an impossible date?)"
