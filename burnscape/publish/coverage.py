"""Publish stage: a pygeoapi coverage provider for burnscape's Zarr stores.

Serves ``burned.zarr`` and ``cube.zarr`` (see README, "Data contracts") on their native
grid and CRS: the CoverageJSON domain carries the grid (x, y and, where the
store has one, t) and the projected CRS; GeoTIFF and NetCDF carry the same
grid. Requests may subset by ``bbox`` (with ``bbox-crs``, CRS84 by default),
by ``subset=x(..),y(..),time(..)`` in native coordinates, by ``datetime`` and
by variable (``properties``), and scaled down by ``scale-factor`` (OGC API
Coverages scaling: a factor of 4 answers a grid 4 times coarser on each axis,
each cell the nearest native one, so burn dates stay dates). A request whose
answer would exceed ``max_cells`` values is refused with HTTP 413 naming the
limit; scaling down is how a client gets a whole large region in one answer.

A store without a time axis may name a ``time_variable`` holding days since
1970-01-01 (``burn_date`` in burned.zarr): ``datetime`` then keeps the cells
whose day falls in the interval and sets every other cell to its fill value.

Configuration (one entry of a collection's ``providers`` list)::

    - type: coverage
      name: burnscape.publish.coverage.ZarrCoverageProvider
      data: /path/to/outputs/burned.zarr
      format:                      # the native download format
        name: GTiff                # GTiff or NetCDF
        mimetype: image/tiff
      options:
        variables: [burn_date, confidence, observation_count]  # default: all
        max_cells: 4000000         # default 4 000 000 values per answer
        time_variable: burn_date   # optional, for stores without time
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import math
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderInvalidQueryError,
    ProviderQueryError,
    ProviderRequestEntityTooLargeError,
)
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from burnscape.publish._covjson import to_coverage_json
from burnscape.publish._encode import to_geotiff, to_netcdf
from burnscape.publish._time import (
    TimeInterval,
    parse_datetime_parameter,
    parse_instant,
)

__all__ = ["DEFAULT_MAX_CELLS", "ZarrCoverageProvider", "open_store"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_CELLS = 4_000_000
"""Largest number of values (cells × times × variables) one answer may hold."""

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")
_DAY = np.timedelta64(1, "D")

SCALE_FACTOR: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "burnscape_coverage_scale_factor", default=None
)
"""The current request's ``scale-factor`` (>= 1), set by the application around
a coverage request: pygeoapi passes its provider no scaling argument."""

_cache: dict[tuple[str, int], xr.Dataset] = {}
_cache_lock = threading.Lock()


class ZarrCoverageProvider(BaseProvider):
    """Serve a burnscape Zarr store (cube.zarr, burned.zarr) as an OGC coverage.

    See the module docstring for the YAML block and the query semantics.
    """

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        options = provider_def.get("options") or {}
        try:
            self._dataset = open_store(Path(self.data))
        except (OSError, ValueError, KeyError) as err:
            logger.error("Cannot open coverage store %s: %s", self.data, err)
            raise ProviderConnectionError() from err
        self.variables = _select_variables(self._dataset, options.get("variables"))
        self.max_cells = int(options.get("max_cells", DEFAULT_MAX_CELLS))
        self.time_variable: str | None = options.get("time_variable")
        self.native_format: str | None = (provider_def.get("format") or {}).get("name")
        self.native_crs = _crs_of(self._dataset)
        self.has_time = "time" in self._dataset[self.variables[0]].dims
        self.axes = ["x", "y", *(["time"] if self.has_time else [])]
        self.crs = self.native_crs.to_wkt()
        self.num_bands = len(self.variables)
        self._fields = self.get_fields()
        self._coverage_properties = self._describe()

    def get_fields(self) -> dict[str, dict[str, Any]]:
        """Return the range fields (one per variable) with title, type and unit."""
        fields = {}
        for name in self.variables:
            attrs = self._dataset[name].attrs
            fields[name] = {
                "title": attrs.get("long_name", name),
                "type": "integer"
                if self._dataset[name].dtype.kind in "iu"
                else "number",
                "x-ogc-unit": str(attrs.get("units", "1")),
            }
        return fields

    def query(
        self,
        properties: Sequence[str] | None = None,
        subsets: dict[str, list[Any]] | None = None,
        bbox: Sequence[float] | None = None,
        bbox_crs: str | int | None = None,
        datetime_: str | None = None,
        format_: str = "json",
        **kwargs: Any,
    ) -> dict[str, Any] | bytes:
        """Return the coverage (or a subset) as CoverageJSON or native bytes.

        Raises
        ------
        ProviderInvalidQueryError
            Unknown variable, malformed bbox/subset/datetime, empty subset
            (HTTP 400).
        ProviderRequestEntityTooLargeError
            The answer would exceed ``max_cells`` values (HTTP 413).
        """
        names = list(properties) if properties else list(self.variables)
        unknown = sorted(set(names) - set(self.variables))
        if unknown:
            raise ProviderInvalidQueryError(
                user_msg=f"unknown field(s) {unknown}: valid are {list(self.variables)}"
            )
        dataset = self._dataset[names]
        dataset = self._subset_space(dataset, bbox or [], bbox_crs, subsets or {})
        interval = _parse_interval(datetime_)
        time_subset = (subsets or {}).get("time")
        if self.has_time:
            dataset = self._subset_time(dataset, interval, time_subset)
        elif time_subset:
            raise ProviderInvalidQueryError(user_msg="this coverage has no time axis")
        factor = SCALE_FACTOR.get()
        if factor is not None and factor > 1:
            dataset = scale_down(dataset, factor)
        self._check_size(dataset)

        try:
            dataset = dataset.load()
        except (OSError, ValueError) as err:
            logger.error("Reading %s failed: %s", self.data, err, exc_info=True)
            raise ProviderQueryError() from err
        if interval is not None and not self.has_time:
            dataset = self._mask_by_day(dataset, interval)

        if (
            format_
            and self.native_format
            and format_.lower() == self.native_format.lower()
        ):
            return self._encode(dataset, self.native_format)
        return to_coverage_json(dataset, self.native_crs, self.get_fields())

    def __repr__(self) -> str:
        return f"<ZarrCoverageProvider> {self.data}"

    # --- subsetting -----------------------------------------------------

    def _subset_space(
        self,
        dataset: xr.Dataset,
        bbox: Sequence[float],
        bbox_crs: str | int | None,
        subsets: dict[str, list[Any]],
    ) -> xr.Dataset:
        if bbox:
            minx, miny, maxx, maxy = self._bbox_to_native(bbox, bbox_crs)
            dataset = _slice_axis(dataset, "x", minx, maxx)
            dataset = _slice_axis(dataset, "y", miny, maxy)
        for axis in ("x", "y"):
            if axis in subsets:
                low, high = _numeric_range(axis, subsets[axis])
                dataset = _slice_axis(dataset, axis, low, high)
        if dataset.sizes["x"] == 0 or dataset.sizes["y"] == 0:
            raise ProviderInvalidQueryError(
                user_msg="the bbox/subset does not intersect the coverage"
            )
        return dataset

    def _bbox_to_native(
        self, bbox: Sequence[float], bbox_crs: str | int | None
    ) -> tuple[float, float, float, float]:
        if len(bbox) == 6:
            bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
        if len(bbox) != 4:
            raise ProviderInvalidQueryError(user_msg="bbox needs 4 or 6 numbers")
        try:
            source = (
                CRS.from_user_input(bbox_crs)
                if bbox_crs
                else CRS.from_user_input(CRS84_URI)
            )
        except CRSError as err:
            raise ProviderInvalidQueryError(
                user_msg=f"unknown bbox-crs {bbox_crs!r}"
            ) from err
        if source == self.native_crs:
            return bbox[0], bbox[1], bbox[2], bbox[3]
        bbox = _clip_to_area_of_use(bbox, source, self.native_crs)
        transformer = Transformer.from_crs(source, self.native_crs, always_xy=True)
        minx, miny, maxx, maxy = bbox
        bounds = transformer.transform_bounds(minx, miny, maxx, maxy, densify_pts=21)
        if not np.all(np.isfinite(bounds)):
            raise ProviderInvalidQueryError(
                user_msg="bbox cannot be expressed in the coverage's CRS"
            )
        return bounds

    def _subset_time(
        self,
        dataset: xr.Dataset,
        interval: TimeInterval | None,
        time_subset: list[Any] | None,
    ) -> xr.Dataset:
        if time_subset:
            interval = _intersect(interval, _parse_subset_interval(time_subset))
        if interval is None:
            return dataset
        starts, ends = _time_windows(self._dataset)
        keep = [
            index
            for index, (start, end) in enumerate(zip(starts, ends, strict=True))
            if interval.overlaps(start, end)
        ]
        if not keep:
            first, last = starts[0].date(), ends[-1].date()
            raise ProviderInvalidQueryError(
                user_msg=f"datetime selects no time step (the coverage spans "
                f"{first} .. {last})"
            )
        return dataset.isel(time=keep)

    def _mask_by_day(self, dataset: xr.Dataset, interval: TimeInterval) -> xr.Dataset:
        if not self.time_variable or self.time_variable not in self._dataset:
            raise ProviderInvalidQueryError(user_msg="this coverage has no time axis")
        # nearest: a scaled-down grid's cells hold their nearest native cell
        days = (
            self._dataset[self.time_variable]
            .sel(x=dataset["x"].values, y=dataset["y"].values, method="nearest")
            .values
        )
        fill = self._dataset[self.time_variable].attrs.get("_FillValue", -1)
        low = -np.inf if interval.start is None else _day_number(interval.start)
        high = np.inf if interval.end is None else _day_number(interval.end)
        inside = (days != fill) & (days >= low) & (days <= high)
        masked = dataset.copy()
        for name in dataset.data_vars:
            fill_value = _fill_value(dataset[name])
            masked[name] = (
                dataset[name].where(inside, fill_value).astype(dataset[name].dtype)
            )
            masked[name].attrs = dataset[name].attrs
        return masked

    def _check_size(self, dataset: xr.Dataset) -> None:
        cells = int(dataset.sizes["x"]) * int(dataset.sizes["y"])
        cells *= int(dataset.sizes.get("time", 1)) * max(1, len(dataset.data_vars))
        if cells > self.max_cells:
            raise ProviderRequestEntityTooLargeError(
                f"the request selects {cells} values, above this server's limit of "
                f"{self.max_cells}: narrow bbox, datetime or properties, or scale down "
                "(e.g. scale-factor=4)"
            )

    # --- output ---------------------------------------------------------

    def _encode(self, dataset: xr.Dataset, native: str) -> bytes:
        if native.lower() == "gtiff":
            self.filename = f"{self.name}.tif"
            return to_geotiff(dataset, self.native_crs)
        if native.lower() == "netcdf":
            self.filename = f"{self.name}.nc"
            return to_netcdf(dataset, self.native_crs)
        raise ProviderInvalidQueryError(user_msg=f"unsupported format {native!r}")

    def _describe(self) -> dict[str, Any]:
        transform = self._dataset.rio.transform()
        height, width = int(self._dataset.sizes["y"]), int(self._dataset.sizes["x"])
        minx, maxy = transform.c, transform.f
        maxx, miny = minx + width * transform.a, maxy + height * transform.e
        epsg = self.native_crs.to_epsg()
        crs_uri = f"http://www.opengis.net/def/crs/EPSG/0/{epsg}" if epsg else self.crs
        properties: dict[str, Any] = {
            "bbox": [minx, miny, maxx, maxy],
            "bbox_crs": crs_uri,
            "crs_type": "ProjectedCRS"
            if self.native_crs.is_projected
            else "GeographicCRS",
            "x_axis_label": "x",
            "y_axis_label": "y",
            "width": width,
            "height": height,
            "resx": abs(transform.a),
            "resy": abs(transform.e),
        }
        if self.has_time:
            starts, ends = _time_windows(self._dataset)
            properties["time_axis_label"] = "time"
            properties["time_range"] = [_iso(starts[0]), _iso(ends[-1])]
        return properties


def open_store(path: Path) -> xr.Dataset:
    """Open a Zarr store lazily with raw values (no masking, no time decoding of data).

    The ``time`` coordinate, where present, is decoded to datetime64. The
    dataset is cached per path and metadata modification time.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    """
    if not path.exists():
        raise FileNotFoundError(f"Zarr store {path} does not exist")
    key = (str(path.resolve()), _stamp(path))
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    options: dict[str, Any] = {
        "decode_times": False,
        "mask_and_scale": False,
        "decode_coords": "all",
    }
    try:
        dataset = xr.open_zarr(path, consolidated=True, **options)
    except (KeyError, ValueError, OSError):
        dataset = xr.open_zarr(path, consolidated=False, **options)
    if "time" in dataset.coords:
        decoded = xr.decode_cf(dataset[["time"]].reset_coords(drop=True))
        dataset = dataset.assign_coords(time=decoded["time"])
    with _cache_lock:
        _cache.clear()
        _cache[key] = dataset
    return dataset


def _stamp(path: Path) -> int:
    for name in ("zarr.json", ".zmetadata", ".zgroup"):
        candidate = path / name
        if candidate.exists():
            return candidate.stat().st_mtime_ns
    return path.stat().st_mtime_ns


def _select_variables(dataset: xr.Dataset, wanted: Sequence[str] | None) -> list[str]:
    """Return the served variables: ``wanted``, else those on the main grid.

    The main grid is the most common dims signature among numeric variables
    ending in (y, x): (y, x) for burned.zarr, (time, y, x) for cube.zarr.
    """
    gridded = {
        str(name): variable.dims
        for name, variable in dataset.data_vars.items()
        if variable.dims[-2:] == ("y", "x")
        and variable.dims in (("y", "x"), ("time", "y", "x"))
        and variable.dtype.kind in "iuf"
    }
    if not gridded:
        raise ProviderConnectionError("the store has no (y, x) variables to serve")
    if wanted:
        missing = [name for name in wanted if name not in gridded]
        if missing:
            raise ProviderConnectionError(
                f"variables {missing} are not gridded (y, x) variables of the store"
            )
        signatures = {gridded[name] for name in wanted}
        if len(signatures) > 1:
            raise ProviderConnectionError(
                f"variables {list(wanted)} mix dims {sorted(signatures)}: "
                "serve one kind"
            )
        return list(wanted)
    counts = Counter(gridded.values())
    main = max(counts, key=lambda dims: (counts[dims], len(dims)))
    return [name for name, dims in gridded.items() if dims == main]


def _crs_of(dataset: xr.Dataset) -> CRS:
    crs = dataset.rio.crs
    if crs is None:
        raise ProviderConnectionError("the store has no grid mapping (spatial_ref)")
    native = CRS.from_user_input(crs.to_wkt())
    epsg = native.to_epsg()
    return CRS.from_epsg(epsg) if epsg else native


def _clip_to_area_of_use(
    bbox: Sequence[float], source: CRS, target: CRS
) -> list[float]:
    """Clip a geographic bbox to where ``target`` is defined (e.g. a UTM zone).

    Without this a world bbox has no finite image in a projected CRS.
    """
    area = target.area_of_use
    if area is None or not source.is_geographic:
        return list(bbox)
    clipped = [
        max(bbox[0], area.west),
        max(bbox[1], area.south),
        min(bbox[2], area.east),
        min(bbox[3], area.north),
    ]
    if clipped[0] > clipped[2] or clipped[1] > clipped[3]:
        raise ProviderInvalidQueryError(
            user_msg="the bbox/subset does not intersect the coverage"
        )
    return clipped


def _slice_axis(dataset: xr.Dataset, axis: str, low: float, high: float) -> xr.Dataset:
    values = dataset[axis].values
    if values.size > 1 and values[0] > values[-1]:
        return dataset.sel({axis: slice(high, low)})
    return dataset.sel({axis: slice(low, high)})


def _numeric_range(axis: str, values: list[Any]) -> tuple[float, float]:
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError) as err:
        raise ProviderInvalidQueryError(
            user_msg=f"subset {axis} needs numbers"
        ) from err
    if len(numbers) == 1:
        return numbers[0], numbers[0]
    low, high = numbers[0], numbers[-1]
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ProviderInvalidQueryError(user_msg=f"subset {axis} must be low:high")
    return low, high


def _parse_interval(text: str | None) -> TimeInterval | None:
    try:
        return parse_datetime_parameter(text)
    except ValueError as err:
        raise ProviderInvalidQueryError(user_msg=str(err)) from err


def _parse_subset_interval(values: list[Any]) -> TimeInterval:
    texts = [str(value).strip('"') for value in values]
    try:
        if len(texts) == 1:
            return TimeInterval(
                parse_instant(texts[0]), parse_instant(texts[0], as_end=True)
            )
        start = None if texts[0] in ("*", "..") else parse_instant(texts[0])
        end = (
            None if texts[-1] in ("*", "..") else parse_instant(texts[-1], as_end=True)
        )
    except ValueError as err:
        raise ProviderInvalidQueryError(user_msg=f"subset time: {err}") from err
    return TimeInterval(start, end)


def _intersect(first: TimeInterval | None, second: TimeInterval) -> TimeInterval:
    if first is None:
        return second
    starts = [value for value in (first.start, second.start) if value is not None]
    ends = [value for value in (first.end, second.end) if value is not None]
    return TimeInterval(max(starts) if starts else None, min(ends) if ends else None)


def _time_windows(dataset: xr.Dataset) -> tuple[list[dt.datetime], list[dt.datetime]]:
    """Return each time step's (start, end) window, aware UTC.

    ``time_bnds`` gives the window where present; a step at midnight covers
    its whole day; any other step is an instant.
    """
    times = dataset["time"].values.astype("datetime64[ns]")
    bounds_name = dataset["time"].attrs.get("bounds", "time_bnds")
    if bounds_name in dataset:
        raw = dataset[bounds_name].values
        attrs = dict(dataset[bounds_name].attrs)
        for key in ("units", "calendar"):
            if key not in attrs and key in dataset["time"].encoding:
                attrs[key] = dataset["time"].encoding[key]
        bounds = xr.decode_cf(xr.Dataset({"b": (("time", "nv"), raw, attrs)}))[
            "b"
        ].values.astype("datetime64[ns]")
        starts, ends = bounds[:, 0], bounds[:, 1]
    else:
        midnight = (times - times.astype("datetime64[D]")) == np.timedelta64(0, "ns")
        starts = times
        ends = np.where(midnight, times + _DAY - np.timedelta64(1, "us"), times)
    return [_to_datetime(value) for value in starts], [
        _to_datetime(value) for value in ends
    ]


def _to_datetime(value: np.datetime64) -> dt.datetime:
    micros = int((value - _EPOCH) // np.timedelta64(1, "us"))
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _day_number(value: dt.datetime) -> int:
    return (value.date() - dt.date(1970, 1, 1)).days


def _fill_value(variable: xr.DataArray) -> Any:
    fill = variable.attrs.get("_FillValue", variable.encoding.get("_FillValue"))
    if fill is None:
        return np.nan if variable.dtype.kind == "f" else 0
    return fill


def scale_down(dataset: xr.Dataset, factor: float) -> xr.Dataset:
    """Resample x and y onto a grid ``factor`` times coarser, nearest cell.

    The coarser grid covers the same extent with ``ceil(n / factor)`` cells per
    axis (its cells a little smaller than ``factor`` native ones where ``n`` is
    not a multiple), never fewer than 2 (a one-cell axis has no resolution to
    write into a GeoTIFF); each takes the value of the native cell nearest its
    centre.
    Nearest, not an average, because burn dates and counts must stay values
    that occur.
    """
    coords = {}
    for axis in ("x", "y"):
        values = dataset[axis].values.astype("float64")
        count = values.size
        if count < 2:
            continue
        step = (values[-1] - values[0]) / (count - 1)
        cells = max(2, math.ceil(count / factor))
        new_step = step * count / cells
        edge = values[0] - step / 2
        coords[axis] = edge + (np.arange(cells) + 0.5) * new_step
    if not coords:
        return dataset
    scaled = dataset.sel(coords, method="nearest")
    return scaled.assign_coords(
        {axis: (axis, centres, dataset[axis].attrs) for axis, centres in coords.items()}
    )
