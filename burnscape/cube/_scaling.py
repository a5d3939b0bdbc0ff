"""Cube stage: turn a product's stored integers into physical values.

Products write their calibration in three ways, and reading one with another's
rule gives wrong numbers that look plausible:

``linear``
    ``value = raw * scale + offset``: CF ``scale_factor``/``add_offset``, GDAL,
    STAC ``raster:bands``, the VIIRS SDR ``Scale``/``Offset`` attributes.
``hdf4``
    ``value = (raw - offset) * scale``: the HDF4 calibration convention
    (``SDsetcal``) used by MODIS and VIIRS land and atmosphere products, e.g. an
    L2 brightness temperature stored with ``scale_factor`` 0.01 and
    ``add_offset`` -15000.
``modis``
    The ``hdf4`` rule, except that a ``scale_factor`` above 1 is a divisor: the
    MODIS vegetation indices store NDVI with ``scale_factor`` 10000, which their
    user guide says to divide by.

A raw value equal to a fill value, inside a fill range or outside the valid
range is masked (NaN) before any arithmetic, so fill is never scaled into a
plausible number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["Convention", "Scaling", "decode"]

Convention = Literal["linear", "hdf4", "modis"]


@dataclass(frozen=True)
class Scaling:
    """How one stored variable becomes physical values.

    Attributes
    ----------
    scale, offset
        The calibration attributes as the file states them.
    convention
        Which rule combines them (see the module notes).
    fill
        Raw values that mean "no data".
    fill_at_or_above, fill_at_or_below
        Raw values at or beyond these are fill too (VIIRS SDR: uint16 at or
        above 65527, float32 at or below -999).
    valid_range
        Raw values outside (min, max) are masked.
    """

    scale: float = 1.0
    offset: float = 0.0
    convention: Convention = "linear"
    fill: tuple[float, ...] = field(default_factory=tuple)
    fill_at_or_above: float | None = None
    fill_at_or_below: float | None = None
    valid_range: tuple[float, float] | None = None

    def invalid(self, raw: np.ndarray) -> np.ndarray:
        """Return the mask of raw values that are fill or out of range."""
        bad = np.zeros(raw.shape, dtype=bool)
        for value in self.fill:
            bad |= raw == np.asarray(value).astype(raw.dtype)
        if self.fill_at_or_above is not None:
            bad |= raw >= self.fill_at_or_above
        if self.fill_at_or_below is not None:
            bad |= raw <= self.fill_at_or_below
        if self.valid_range is not None:
            low, high = self.valid_range
            bad |= (raw < low) | (raw > high)
        if np.issubdtype(raw.dtype, np.floating):
            bad |= ~np.isfinite(raw)
        return bad


def decode(raw: np.ndarray, scaling: Scaling) -> np.ndarray:
    """Return physical float32 values of ``raw``, NaN where it is fill.

    Parameters
    ----------
    raw
        Stored values, any numeric dtype, any shape.
    scaling
        The variable's calibration and fill.

    Returns
    -------
    numpy.ndarray
        float32 of the same shape; the arithmetic runs in float64.

    Examples
    --------
    >>> ndvi = Scaling(scale=10000, convention="modis", fill=(-3000,))
    >>> decode(np.array([-1976, 8390, -3000], np.int16), ndvi).tolist()
    [-0.19760000705718994, 0.8389999866485596, nan]
    """
    bad = scaling.invalid(raw)
    values = raw.astype(np.float64)
    if scaling.convention == "linear":
        values = values * scaling.scale + scaling.offset
    elif scaling.convention == "modis" and scaling.scale > 1:
        values = (values - scaling.offset) / scaling.scale
    else:
        values = (values - scaling.offset) * scaling.scale
    out = values.astype(np.float32)
    out[bad] = np.nan
    return out
