"""Publish stage: encode a gridded dataset as CoverageJSON on its native grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from pyproj import CRS

__all__ = ["crs_uri", "to_coverage_json"]


def crs_uri(crs: CRS) -> str:
    """Return the OGC URI of a CRS (CRS84 for EPSG:4326), else its WKT."""
    epsg = crs.to_epsg()
    if epsg == 4326:
        return "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    if epsg is not None:
        return f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"
    return crs.to_wkt()


def to_coverage_json(
    dataset: xr.Dataset, crs: CRS, fields: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Return a CoverageJSON Coverage of ``dataset``'s variables on its grid.

    Parameters
    ----------
    dataset
        Variables with dims (y, x) or (time, y, x), loaded, raw values;
        each variable's ``_FillValue`` attribute (or NaN) marks missing
        cells, which become ``null``.
    crs
        The grid's CRS; the domain's referencing names it by URI and WKT.
    fields
        Range field descriptions (title, type, x-ogc-unit) by variable.

    Returns
    -------
    dict
        A CoverageJSON ``Coverage`` with a ``Grid`` domain: axes x and y as
        start/stop/num (pixel centres; y runs north to south), t as values.
    """
    has_time = "time" in dataset.dims
    axes: dict[str, Any] = {
        "x": _regular_axis(dataset["x"].values),
        "y": _regular_axis(dataset["y"].values),
    }
    referencing: list[dict[str, Any]] = [
        {
            "coordinates": ["x", "y"],
            "system": {
                "type": "ProjectedCRS" if crs.is_projected else "GeographicCRS",
                "id": crs_uri(crs),
                "wkt": crs.to_wkt(),
            },
        }
    ]
    if has_time:
        times = dataset["time"].values.astype("datetime64[s]")
        axes["t"] = {"values": [f"{value}Z" for value in times]}
        referencing.append(
            {
                "coordinates": ["t"],
                "system": {"type": "TemporalRS", "calendar": "Gregorian"},
            }
        )

    parameters, ranges = {}, {}
    for name in dataset.data_vars:
        key = str(name)
        field = fields.get(key, {"title": key, "type": "number", "x-ogc-unit": "1"})
        parameters[key] = {
            "type": "Parameter",
            "description": {"en": field["title"]},
            "unit": {"symbol": field["x-ogc-unit"]},
            "observedProperty": {"id": key, "label": {"en": field["title"]}},
        }
        ranges[key] = _nd_array(dataset[key], has_time)

    return {
        "type": "Coverage",
        "domain": {
            "type": "Domain",
            "domainType": "Grid",
            "axes": axes,
            "referencing": referencing,
        },
        "parameters": parameters,
        "ranges": ranges,
    }


def _regular_axis(values: np.ndarray) -> dict[str, Any]:
    return {
        "start": float(values[0]),
        "stop": float(values[-1]),
        "num": int(values.size),
    }


def _nd_array(variable: xr.DataArray, has_time: bool) -> dict[str, Any]:
    order = ["time", "y", "x"] if has_time else ["y", "x"]
    data = variable.transpose(*order).values
    missing = (
        ~np.isfinite(data) if data.dtype.kind == "f" else np.zeros(data.shape, bool)
    )
    fill = variable.attrs.get("_FillValue")
    if fill is not None and not (isinstance(fill, float) and np.isnan(fill)):
        missing |= data == fill
    integer = data.dtype.kind in "iu"
    cells = data.astype(object)
    cells[missing] = None
    values = cells.ravel().tolist()
    return {
        "type": "NdArray",
        "dataType": "integer" if integer else "float",
        "axisNames": ["t" if dim == "time" else dim for dim in order],
        "shape": list(data.shape),
        "values": values,
    }
