"""Model stage: turn model probabilities into burned.zarr variables.

Two shapes of model output are summarised here: a per-day probability
(BA-Net: burn date = most probable day, confidence = sum of daily
probabilities clipped to 1) and a single before/after probability (FireHR).
Both follow the burned.zarr contract of :mod:`burnscape.model.burned`.
"""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
import xarray as xr

from burnscape.model.burned import BURNED_FILL, DATE_FILL

logger = logging.getLogger(__name__)

__all__ = [
    "day_numbers",
    "summarize_change",
    "summarize_daily",
    "time_bounds",
    "valid_days",
]


def day_numbers(times: np.ndarray) -> np.ndarray:
    """Return int32 days since 1970-01-01 (floor) of datetime64 values."""
    return times.astype("datetime64[D]").astype(np.int64).astype(np.int32)


def time_bounds(cube: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return each time slot's earliest and latest acquisition time.

    From ``time_bnds`` where the cube has it, else the ``time`` values.
    """
    if "time_bnds" in cube:
        bounds = cube["time_bnds"].values
        return bounds[:, 0], bounds[:, 1]
    times = cube["time"].values
    return times, times


def valid_days(cube: xr.Dataset, bands: tuple[str, ...]) -> xr.DataArray:
    """Return (time, y, x) bool: the pixel has every one of ``bands`` that day."""
    valid = None
    for band in bands:
        finite = np.isfinite(cube[band])
        valid = finite if valid is None else valid & finite
    assert valid is not None
    return valid


def summarize_daily(
    probability: xr.DataArray,
    cube: xr.Dataset,
    *,
    bands: tuple[str, ...],
    threshold: float = 0.5,
) -> xr.Dataset:
    """Summarise a per-day burn probability (time, y, x) as burned.zarr variables.

    Confidence is the sum of the daily probabilities clipped to 1; a pixel is
    burned where it reaches ``threshold``; its burn date is the most probable
    day; the interval runs from the day after the last clear observation
    before that day to the first clear observation on or after it.
    """
    valid = valid_days(cube, bands).transpose("time", "y", "x")
    prob = probability.transpose("time", "y", "x").data
    chunks = prob.chunks
    days = day_numbers(cube["time"].values)
    valid_data = (
        valid.data.rechunk(chunks)
        if isinstance(valid.data, da.Array)
        else (da.from_array(valid.values, chunks=chunks))
    )
    fields = da.map_blocks(
        _daily_block,
        prob,
        valid_data,
        days=days,
        threshold=threshold,
        chunks=((6,), *chunks[1:]),
        dtype=np.float64,
    )
    dims = ("y", "x")
    observed = fields[5] > 0
    burned = da.where(observed, fields[0], BURNED_FILL).astype(np.uint8)
    result = xr.Dataset(
        {
            "burned": (dims, burned),
            "confidence": (
                dims,
                da.where(observed, fields[1], np.nan).astype(np.float32),
            ),
            "burn_date": (dims, fields[2].astype(np.int32)),
            "burn_date_min": (dims, fields[3].astype(np.int32)),
            "burn_date_max": (dims, fields[4].astype(np.int32)),
            "observation_count": (dims, _observation_count(cube, valid)),
            "probability": (("time", *dims), prob.astype(np.float32)),
        },
        coords=_grid_coords(cube, with_time=True),
    )
    return result


def summarize_change(
    probability: xr.DataArray,
    cube: xr.Dataset,
    *,
    before: np.ndarray,
    bands: tuple[str, ...],
    threshold: float = 0.5,
) -> xr.Dataset:
    """Summarise a before/after burned probability (y, x) as burned.zarr variables.

    ``before`` is a bool per time slot (True: before the fire). Burned pixels
    are dated by the first slot after it; the interval runs from the earliest
    time of the last slot before to the latest time of that first slot after.
    """
    valid = valid_days(cube, bands)
    observed = (valid.isel(time=np.flatnonzero(before)).any("time")) & (
        valid.isel(time=np.flatnonzero(~before)).any("time")
    )
    lower, upper = time_bounds(cube)
    last_before = int(np.flatnonzero(before)[-1])
    first_after = int(np.flatnonzero(~before)[0])
    date = int(day_numbers(cube["time"].values[first_after : first_after + 1])[0])
    date_min = int(day_numbers(lower[last_before : last_before + 1])[0])
    date_max = int(day_numbers(upper[first_after : first_after + 1])[0])

    prob = probability.data
    obs = observed.transpose("y", "x").data
    is_burned = (prob >= threshold) & obs
    dims = ("y", "x")
    result = xr.Dataset(
        {
            "burned": (dims, da.where(obs, is_burned, BURNED_FILL).astype(np.uint8)),
            "confidence": (dims, da.where(obs, prob, np.nan).astype(np.float32)),
            "burn_date": (dims, da.where(is_burned, date, DATE_FILL).astype(np.int32)),
            "burn_date_min": (
                dims,
                da.where(is_burned, date_min, DATE_FILL).astype(np.int32),
            ),
            "burn_date_max": (
                dims,
                da.where(is_burned, date_max, DATE_FILL).astype(np.int32),
            ),
            "observation_count": (dims, _observation_count(cube, valid)),
        },
        coords=_grid_coords(cube, with_time=False),
    )
    return result


def _daily_block(
    prob: np.ndarray, valid: np.ndarray, *, days: np.ndarray, threshold: float
) -> np.ndarray:
    """Per-pixel summary of one chunk; returns (6, y, x) float64 fields."""
    confidence = np.clip(prob.sum(axis=0), 0.0, 1.0)
    burned = confidence >= threshold
    best = prob.argmax(axis=0)
    n_time = prob.shape[0]
    index = np.arange(n_time)[:, None, None]
    # last clear day before the burn day, first clear day on or after it
    before = np.where(valid & (index < best), index, -1).max(axis=0)
    after = np.where(valid & (index >= best), index, n_time).min(axis=0)
    date = days[best]
    date_min = np.where(before >= 0, days[np.clip(before, 0, None)] + 1, days[0])
    date_max = np.where(
        after < n_time, days[np.clip(after, None, n_time - 1)], days[-1]
    )
    fill = float(DATE_FILL)
    return np.stack(
        [
            burned.astype(np.float64),
            confidence,
            np.where(burned, date, fill),
            np.where(burned, np.minimum(date_min, date), fill),
            np.where(burned, np.maximum(date_max, date), fill),
            valid.any(axis=0).astype(np.float64),
        ]
    )


def _observation_count(cube: xr.Dataset, valid: xr.DataArray) -> da.Array:
    """Return the cube's observation count, or count the valid days."""
    if "observation_count" in cube:
        count = cube["observation_count"].transpose("y", "x").data
    else:
        count = valid.sum("time").transpose("y", "x").data
    return da.asarray(count).astype(np.int16)


def _grid_coords(cube: xr.Dataset, *, with_time: bool) -> dict[str, xr.DataArray]:
    """Return the cube's grid coordinates (and time) for burned.zarr."""
    names = ["y", "x", "spatial_ref"] + (["time"] if with_time else [])
    return {name: cube.coords[name] for name in names if name in cube.coords}
