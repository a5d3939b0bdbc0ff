"""Publish stage: encode a coverage subset as GeoTIFF or NetCDF bytes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from pyproj import CRS
from rasterio.io import MemoryFile

__all__ = ["to_geotiff", "to_netcdf"]


def to_geotiff(dataset: xr.Dataset, crs: CRS) -> bytes:
    """Return a GeoTIFF with one band per variable (and per time step).

    Bands share one data type (the smallest that holds every variable) and
    one nodata value: NaN for floating point, else the common fill value.
    Band descriptions name the variable and, for time series, the day.
    """
    bands, names = [], []
    for name in dataset.data_vars:
        variable = dataset[name]
        if "time" in variable.dims:
            for index, time in enumerate(
                dataset["time"].values.astype("datetime64[D]")
            ):
                bands.append(variable.isel(time=index))
                names.append(f"{name} {time}")
        else:
            bands.append(variable)
            names.append(str(name))

    dtype = np.result_type(*[band.dtype for band in bands])
    fills = {_fill(band) for band in bands}
    if dtype.kind != "f" and len(fills) > 1:
        dtype = np.result_type(dtype, np.float32)
    nodata = np.nan if dtype.kind == "f" else fills.pop()

    transform = dataset.rio.transform(recalc=True)
    height, width = int(dataset.sizes["y"]), int(dataset.sizes["x"])
    with MemoryFile() as memory:
        with memory.open(
            driver="GTiff",
            width=width,
            height=height,
            count=len(bands),
            dtype=dtype,
            crs=rasterio.crs.CRS.from_wkt(crs.to_wkt()),
            transform=transform,
            nodata=nodata,
            compress="deflate",
        ) as target:
            for index, (band, name) in enumerate(
                zip(bands, names, strict=True), start=1
            ):
                target.write(_with_nodata(band, dtype, nodata), index)
                target.set_band_description(index, name)
        return bytes(memory.read())


def to_netcdf(dataset: xr.Dataset, crs: CRS) -> bytes:
    """Return a CF NetCDF-4 file of the subset with its grid mapping."""
    output = dataset.copy()
    for name in output.data_vars:
        variable = output[name]
        fill = variable.attrs.pop("_FillValue", None)
        variable.encoding = {} if fill is None else {"_FillValue": fill}
        variable.attrs["grid_mapping"] = "spatial_ref"
    output = output.drop_vars("spatial_ref", errors="ignore").rio.write_crs(
        crs.to_wkt()
    )
    for name in output.data_vars:
        output[name].attrs.pop("grid_mapping", None)
        output[name].encoding["grid_mapping"] = "spatial_ref"
    with tempfile.TemporaryDirectory(prefix="burnscape-nc-") as folder:
        path = Path(folder) / "coverage.nc"
        output.to_netcdf(path, engine="netcdf4")
        return path.read_bytes()


def _fill(band: xr.DataArray) -> float | int:
    fill = band.attrs.get("_FillValue")
    if fill is None:
        return float("nan") if band.dtype.kind == "f" else 0
    return fill.item() if hasattr(fill, "item") else fill


def _with_nodata(
    band: xr.DataArray, dtype: np.dtype, nodata: float | int
) -> np.ndarray:
    data = band.transpose("y", "x").values
    fill = _fill(band)
    out = data.astype(dtype)
    if isinstance(fill, float) and np.isnan(fill):
        return out
    out[data == fill] = nodata
    return out
