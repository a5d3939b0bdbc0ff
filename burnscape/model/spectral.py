"""Model stage: the spectral change detector (dMIRBI and offset-corrected dNBR).

The fallback detector when no model weights are configured. It compares each
pair of consecutive complete observations of a cube and flags a pixel burned
when two independent spectral signs of burning agree.

Notes
-----
The rule, and where each number comes from:

1. dMIRBI = MIRBI(post) - MIRBI(pre), with MIRBI = 10 SWIR2 - 9.8 SWIR1 + 2
   (Trigg & Flasse 2001, Int. J. Remote Sens. 22(13)). MIRBI was designed to
   separate burned from senescent vegetation; the seasonal browning that fools
   plain dNBR barely moves it. A pixel is anomalous when its robust z-score,
   ``(dMIRBI - median) / (1.4826 MAD)`` over the whole scene, exceeds
   ``z_threshold`` (default 3: the usual three-sigma outlier rule). Median and
   MAD are the scene's own statistics: nothing is fitted to a reference.
2. dNBR = NBR(pre) - NBR(post), NBR = (NIR - SWIR2) / (NIR + SWIR2), minus the
   scene's median dNBR: the "dNBR offset" that MTBS subtracts so that unburned
   change (phenology, sun angle) reads near zero (Key & Benson 2006, FIREMON
   LA). The pixel must exceed ``dnbr_threshold`` (default 0.1, Key & Benson's
   boundary between unburned and low severity).
3. Spatial clean-up at the minimum mapping unit ``min_area_ha``: burned patches
   smaller than it are dropped and unburned holes smaller than it are filled.
   Both are local operations, so they run chunk-wise with a halo as wide as the
   unit and give the same answer as a whole-array run.

Confidence is the smaller of the two tests' logistic margins,
``sigmoid(2 (z - z_threshold))`` and ``sigmoid((dNBR_off - dnbr_threshold) / 0.05)``:
0.5 on a threshold, near 1 far above both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from scipy import ndimage

from burnscape.errors import EmptyResultWarning, ModelError
from burnscape.model.burned import BURNED_FILL, DATE_FILL, days_since_epoch

__all__ = ["SpectralParams", "detect_spectral", "robust_stats"]

logger = logging.getLogger(__name__)

_REQUIRED_BANDS = ("nir", "swir1", "swir2")
_STATS_SAMPLE = 1_000_000


@dataclass(frozen=True)
class SpectralParams:
    """Thresholds of the spectral rule (see the module notes for their origin)."""

    z_threshold: float = 3.0
    dnbr_threshold: float = 0.1
    min_area_ha: float = 1.0


def detect_spectral(cube: xr.Dataset, params: SpectralParams) -> xr.Dataset:
    """Detect burned pixels and their burn-date interval in a reflectance cube.

    Parameters
    ----------
    cube
        A burnscape cube (dims time, y, x; bands ``nir``, ``swir1``, ``swir2``;
        ``day_complete``; ``time_bnds`` optional), usually dask-backed from
        ``xr.open_zarr``.
    params
        The rule's thresholds.

    Returns
    -------
    xarray.Dataset
        Lazy (dask) variables ``burned``, ``confidence``, ``burn_date``,
        ``burn_date_min``, ``burn_date_max`` and ``observation_count`` on the
        cube's grid, ready for :func:`burnscape.model.burned.write_burned`.

    Raises
    ------
    ModelError
        The cube lacks a band the rule needs or has fewer than two complete
        observations.
    """
    missing = [band for band in _REQUIRED_BANDS if band not in cube]
    if missing:
        raise ModelError(
            f"the spectral detector needs bands {list(_REQUIRED_BANDS)}; "
            f"the cube lacks "
            f"{missing}: add them to the source's 'bands' mapping"
        )
    complete = np.flatnonzero(cube["day_complete"].values.astype(bool))
    if complete.size < 2:
        raise ModelError(
            f"the spectral detector needs two complete observations; the cube has "
            f"{complete.size}: widen the time window or check the skipped days"
        )

    lower, upper = _time_bounds(cube)
    halo = _mmu_pixels(cube, params.min_area_ha)
    shape = (cube.sizes["y"], cube.sizes["x"])
    chunks = cube["nir"].data.chunks[1:] if cube["nir"].chunks else shape
    burned = da.zeros(shape, dtype=bool, chunks=chunks)
    confidence = da.zeros(shape, dtype=np.float32, chunks=chunks)
    date = da.full(shape, DATE_FILL, dtype=np.int32, chunks=chunks)
    date_min = da.full(shape, DATE_FILL, dtype=np.int32, chunks=chunks)
    date_max = da.full(shape, DATE_FILL, dtype=np.int32, chunks=chunks)
    observed = da.zeros(shape, dtype=bool, chunks=chunks)

    for pre, post in zip(complete[:-1], complete[1:], strict=True):
        flagged, score, both = _pair(cube, int(pre), int(post), params, halo)
        new = flagged & ~burned
        date = da.where(new, days_since_epoch(cube["time"].values[post]), date)
        date_min = da.where(new, days_since_epoch(lower[pre]), date_min)
        date_max = da.where(new, days_since_epoch(upper[post]), date_max)
        confidence = da.where(
            new, score, da.where(burned, confidence, da.fmax(confidence, score))
        )
        burned = burned | flagged
        observed = observed | both

    burned_u8 = da.where(observed, burned.astype(np.uint8), np.uint8(BURNED_FILL))
    coords = {
        name: cube.coords[name]
        for name in ("y", "x", "spatial_ref")
        if name in cube.coords
    }
    dims = ("y", "x")
    result = xr.Dataset(
        {
            "burned": (dims, burned_u8),
            "confidence": (dims, da.where(observed, confidence, np.float32(np.nan))),
            "burn_date": (dims, date),
            "burn_date_min": (dims, date_min),
            "burn_date_max": (dims, date_max),
            "observation_count": (
                dims,
                cube["observation_count"].data.astype(np.int16),
            ),
        },
        coords=coords,
    )
    return result


def robust_stats(values: da.Array | np.ndarray) -> tuple[float, float]:
    """Return the median and the normal-consistent MAD (1.4826 MAD) of finite values.

    A regular subsample of at most one million pixels is used, so the cost
    stays bounded for large regions.
    """
    step = max(1, math.ceil(math.sqrt(values.size / _STATS_SAMPLE)))
    sample = np.asarray(values[::step, ::step]).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return float("nan"), float("nan")
    median = float(np.median(sample))
    mad = 1.4826 * float(np.median(np.abs(sample - median)))
    return median, mad


def _pair(
    cube: xr.Dataset, pre: int, post: int, params: SpectralParams, halo: int
) -> tuple[da.Array, da.Array, da.Array]:
    """Apply the rule to one pair of observations: (burned, confidence, observed)."""
    nir0, s10, s20 = (cube[b].data[pre] for b in _REQUIRED_BANDS)
    nir1, s11, s21 = (cube[b].data[post] for b in _REQUIRED_BANDS)
    dnbr = _nbr(nir0, s20) - _nbr(nir1, s21)
    dmirbi = (10 * s21 - 9.8 * s11) - (10 * s20 - 9.8 * s10)
    observed = da.isfinite(dnbr) & da.isfinite(dmirbi)

    mirbi_median, mirbi_mad = robust_stats(dmirbi)
    dnbr_offset, _ = robust_stats(dnbr)
    if not np.isfinite(mirbi_mad) or mirbi_mad == 0:
        import warnings

        warnings.warn(
            f"observations {pre} and {post} share no valid pixel; no burn detected",
            EmptyResultWarning,
            stacklevel=3,
        )
        zeros = da.zeros_like(dnbr, dtype=bool)
        return zeros, da.zeros_like(dnbr), observed
    logger.info(
        "Pair %d-%d: dMIRBI median %.3f, MAD %.3f; dNBR offset %.3f.",
        pre,
        post,
        mirbi_median,
        mirbi_mad,
        dnbr_offset,
    )
    z = (dmirbi - mirbi_median) / mirbi_mad
    dnbr_off = dnbr - dnbr_offset
    candidate = (z > params.z_threshold) & (dnbr_off > params.dnbr_threshold) & observed
    if halo > 0:
        candidate = da.map_overlap(
            _clean, candidate, depth=halo, boundary=False, min_pixels=halo, dtype=bool
        )
    confidence = da.fmin(
        _sigmoid(2.0 * (z - params.z_threshold)),
        _sigmoid((dnbr_off - params.dnbr_threshold) / 0.05),
    ).astype(np.float32)
    return candidate & observed, confidence, observed


def _clean(block: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop burned patches and fill unburned holes smaller than ``min_pixels``."""
    eight = np.ones((3, 3), bool)
    labels, count = ndimage.label(block, structure=eight)
    if count:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_pixels
        small[0] = False
        block = block & ~small[labels]
    holes, count = ndimage.label(~block)  # 4-connected background
    if count:
        sizes = np.bincount(holes.ravel())
        border = np.unique(
            np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]])
        )
        fill = sizes < min_pixels
        fill[0] = False
        fill[border] = False
        block = block | fill[holes]
    return block


def _nbr(nir: da.Array, swir2: da.Array) -> da.Array:
    return (nir - swir2) / (nir + swir2)


def _sigmoid(x: da.Array) -> da.Array:
    return 1.0 / (1.0 + da.exp(-x))


def _time_bounds(cube: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Return each slot's earliest and latest possible acquisition time."""
    if "time_bnds" in cube:
        bounds = cube["time_bnds"].values
        return bounds[:, 0], bounds[:, 1]
    times = cube["time"].values
    return times, times


def _mmu_pixels(cube: xr.Dataset, min_area_ha: float) -> int:
    """Return the minimum mapping unit in pixels (0 disables the clean-up)."""
    if min_area_ha <= 0:
        return 0
    crs = cube.rio.crs
    resolution = (
        abs(float(cube["x"].values[1] - cube["x"].values[0]))
        if cube.sizes["x"] > 1
        else 1
    )
    if crs is not None and crs.is_geographic:
        latitude = float(np.abs(cube["y"].values).mean())
        metres = resolution * 111_320.0 * math.sqrt(math.cos(math.radians(latitude)))
    else:
        metres = resolution
    return max(1, math.ceil(min_area_ha * 10_000.0 / metres**2))
