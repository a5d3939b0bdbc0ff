"""Model stage: the burned.zarr contract, shared by every detector.

burned.zarr sits on the cube's grid (same x, y and ``spatial_ref``) and holds:

- ``burned`` (y, x) uint8: 1 burned, 0 not burned, 255 not observed;
- ``confidence`` (y, x) float32 in 0-1 (NaN where not observed);
- ``burn_date`` (y, x) int32 days since 1970-01-01, fill -1: the first
  observation seen burned;
- ``burn_date_min`` / ``burn_date_max`` (y, x) int32, same encoding: the
  interval the acquisitions allow (after the last unburned observation's
  earliest time, by the first burned observation's latest time);
- ``observation_count`` (y, x) int16: days with valid data;
- optionally ``probability`` (time, y, x) float32, per-day burn probability.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from burnscape import __version__
from burnscape.cube.writer import declare_grid_mapping

__all__ = ["DATE_EPOCH", "DATE_FILL", "BURNED_FILL", "days_since_epoch", "write_burned"]

logger = logging.getLogger(__name__)

DATE_EPOCH = "1970-01-01"
DATE_FILL = -1
BURNED_FILL = 255

_ATTRS: dict[str, dict[str, Any]] = {
    "burned": {
        "long_name": "Burned area",
        "flag_values": [0, 1],
        "flag_meanings": "not_burned burned",
    },
    "confidence": {
        "long_name": "Confidence that the pixel burned",
        "units": "1",
        "valid_min": 0.0,
        "valid_max": 1.0,
    },
    "burn_date": {
        "long_name": "Burn date (first observation seen burned)",
        "units": f"days since {DATE_EPOCH}",
    },
    "burn_date_min": {
        "long_name": "Earliest burn date the acquisitions allow",
        "units": f"days since {DATE_EPOCH}",
    },
    "burn_date_max": {
        "long_name": "Latest burn date the acquisitions allow",
        "units": f"days since {DATE_EPOCH}",
    },
    "observation_count": {"long_name": "Days with valid data", "units": "1"},
    "probability": {"long_name": "Daily burn probability", "units": "1"},
}
_FILLS = {
    "burned": BURNED_FILL,
    "confidence": np.float32(np.nan),
    "burn_date": DATE_FILL,
    "burn_date_min": DATE_FILL,
    "burn_date_max": DATE_FILL,
    "observation_count": -1,
    "probability": np.float32(np.nan),
}


def days_since_epoch(value: np.datetime64 | dt.datetime) -> int:
    """Return whole days since 1970-01-01 (floor) of a UTC time."""
    stamp = np.datetime64(value, "s") if not isinstance(value, np.datetime64) else value
    return int(stamp.astype("datetime64[D]").astype(np.int64))


def write_burned(
    dataset: xr.Dataset,
    path: Path,
    *,
    detector: str,
    params: dict[str, Any],
    inputs: list[str],
    weights_sha256: str | None = None,
    chunk_size: int = 256,
) -> None:
    """Write a detector's output as burned.zarr (replacing an older one).

    Parameters
    ----------
    dataset
        Variables named as in the module docstring, dims (y, x) (and time for
        ``probability``), with the cube's x/y and ``spatial_ref`` coordinates.
        Dask-backed variables are computed on the active Dask client.
    path
        The ``burned.zarr`` folder.
    detector, params, inputs, weights_sha256
        Recorded in the global attributes.
    chunk_size
        Spatial chunk edge.
    """
    out = dataset.copy()
    encoding: dict[str, dict[str, Any]] = {}
    for name in out.data_vars:
        out[name].attrs = {**_ATTRS.get(str(name), {}), **out[name].attrs}
        chunks = tuple(1 if dim == "time" else chunk_size for dim in out[name].dims)
        encoding[str(name)] = {"chunks": chunks, "grid_mapping": "spatial_ref"}
        if str(name) in _FILLS:
            encoding[str(name)]["_FillValue"] = _FILLS[str(name)]
        if out[name].chunks is not None:
            out[name] = out[name].chunk(dict(zip(out[name].dims, chunks, strict=True)))
    out.attrs = {
        "title": "burnscape burned area and burn date",
        "Conventions": "CF-1.8",
        "detector": detector,
        "detector_params": json.dumps(params, sort_keys=True),
        "inputs": json.dumps(inputs),
        "burnscape_version": __version__,
        "date_epoch": DATE_EPOCH,
    }
    if weights_sha256:
        out.attrs["weights_sha256"] = weights_sha256
    tmp = path.with_name(path.name + ".tmp")
    _remove(tmp)
    out.to_zarr(tmp, mode="w", consolidated=True, encoding=encoding, zarr_format=2)
    declare_grid_mapping(tmp, [str(name) for name in out.data_vars])
    _remove(path)
    tmp.rename(path)
    logger.info("Wrote %s (detector %s).", path, detector)


def _remove(path: Path) -> None:
    import shutil

    if path.exists():
        shutil.rmtree(path)
