"""Model stage: the FireHR burned-area refinement network and its inputs.

FireHR (Pinto et al., 2021, "A Practical Method for High-Resolution Burned
Areas Monitoring Using Sentinel-2 and VIIRS", Remote Sensing 13(9), 1608)
refines a coarse burned-area product to the resolution of a before/after image
pair. This module rebuilds the network in plain PyTorch so that the author's
pretrained weights load unchanged (``firehr_state_dict.pt``, strict key match,
``weights_only=True``), prepares its seven input channels and runs it tile by
tile.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
import torch
import xarray as xr
from scipy import ndimage
from torch import nn

from burnscape.errors import ModelError, WeightsError
from burnscape.model.plugin import autocast_dtype
from burnscape.model.predictor import TorchPredictor
from burnscape.model.summary import summarize_change
from burnscape.model.tiling import TileGrid, blend_tiles

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

logger = logging.getLogger(__name__)

__all__ = [
    "COARSE_DOY_VAR",
    "FIREHR_BANDS",
    "FIREHR_GRID",
    "FireHR",
    "FireHRSpec",
    "coarse_filter_size",
    "load_firehr",
    "prepare_firehr_input",
    "predict_firehr",
    "resample_coarse_doy",
    "smooth_coarse_doy",
]

FIREHR_BANDS = ("red", "nir", "swir2")
"""Cube bands standing in for Sentinel-2 B4, B8 and B12, in input order."""

RECEPTIVE_RADIUS = 3
"""Pixels of context each FireHR output depends on (three 3x3 convolutions)."""

FIREHR_GRID = TileGrid(tile_size=512, overlap=16, guard=RECEPTIVE_RADIUS)
"""Default tiles; the guard drops outputs computed without full context."""

COARSE_FILTER_SIZE = 101
"""Width (pixels) of the original mean filter on the coarse burn-DOY channel."""

_FIREHR_PIXEL_BYTES = 1400  # peak bytes per tile pixel (float32, CPU)

FIREHR_PIXEL_SIZE_M = 10.0
"""Pixel size of the Sentinel-2 bands FireHR was trained on."""


class FireHR(nn.Module):
    """FireHR: per-pixel burned probability from a before/after pair.

    Input (batch, 7, y, x) float32: before B4, B8, B12, after B4, B8, B12
    (reflectance, 0-1) and the smoothed coarse burn day of year (days). Output
    (batch, 1, y, x): logits; ``sigmoid`` gives the burned probability.

    The coarse channel passes a 3x3 convolution (8 maps) and joins the six
    image channels; two per-pixel linear layers (14 -> 128 -> 64) and two 3x3
    convolutions (64 -> 128 -> 64), each with batch norm and ReLU, and a 1x1
    convolution give the logits. Receptive-field radius: 3 pixels.
    """

    def __init__(self, n_image_channels: int = 6, n_classes: int = 1) -> None:
        super().__init__()
        self.conv = _conv_bn_relu(1, 8)
        self.chlin = nn.Sequential(
            _PixelLinear(n_image_channels + 8, 128), _PixelLinear(128, 64)
        )
        self.middleconv = nn.Sequential(_conv_bn_relu(64, 128), _conv_bn_relu(128, 64))
        self.finalconv = nn.Conv2d(64, n_classes, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, n_classes, y, x) for input (batch, 7, y, x)."""
        coarse = self.conv(x[:, -1:])
        features = torch.cat([x[:, :-1], coarse], dim=1)
        features = self.chlin(features)
        return self.finalconv(self.middleconv(features))


def load_firehr(path: str | Path, device: str | torch.device = "cpu") -> FireHR:
    """Load FireHR weights from a plain state dict, strictly, in eval mode.

    Parameters
    ----------
    path
        A ``torch.save``'d state dict (``firehr_state_dict.pt``).
    device
        Where the model will run.

    Returns
    -------
    FireHR
        The network in eval mode on ``device``.

    Raises
    ------
    WeightsError
        The file is missing, is not a plain tensor dict, or its keys or shapes
        do not match the architecture.
    """
    source = Path(path)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise WeightsError(f"FireHR weights {source} do not exist") from err
    except Exception as err:
        raise WeightsError(
            f"cannot load FireHR weights {source} with weights_only=True: {err}; "
            "use firehr_state_dict.pt, not the original model512.pth"
        ) from err
    if not isinstance(state, dict):
        raise WeightsError(f"{source} holds a {type(state).__name__}, not a state dict")
    model = FireHR()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"{source} does not match the FireHR layers: {err}") from err
    logger.debug("Loaded FireHR weights from %s.", source)
    return model.eval().to(device)


def resample_coarse_doy(
    doy: np.ndarray,
    *,
    src_transform: Affine,
    src_crs: CRS | str,
    dst_transform: Affine,
    dst_crs: CRS | str,
    dst_shape: tuple[int, int],
) -> np.ndarray:
    """Resample a coarse burn day-of-year raster bilinearly to a fine grid.

    ``doy`` is (y, x) with 0 where not burned; the result is float32 of
    ``dst_shape`` with 0 outside the coarse raster.
    """
    from rasterio.warp import Resampling, reproject

    destination = np.zeros(dst_shape, dtype=np.float32)
    reproject(
        doy.astype(np.float32),
        destination,
        src_transform=src_transform,
        src_crs=src_crs,
        dst_transform=dst_transform,
        dst_crs=dst_crs,
        resampling=Resampling.bilinear,
        src_nodata=None,
        dst_nodata=0.0,
    )
    return destination


def coarse_filter_size(pixel_size_m: float) -> int:
    """Return the odd filter width keeping the original's ground width.

    FireHR smooths the coarse channel over 101 pixels of 10 m (about 1 km);
    on a grid of ``pixel_size_m`` the same ground width is this many pixels
    (101 at 10 m, 33 at 30 m), at least 3.
    """
    width = COARSE_FILTER_SIZE * FIREHR_PIXEL_SIZE_M / pixel_size_m
    return max(3, 2 * round((width - 1) / 2) + 1)


def smooth_coarse_doy(doy: np.ndarray, size: int = COARSE_FILTER_SIZE) -> np.ndarray:
    """Return the ``size`` x ``size`` mean of a burn-DOY raster, reflect-padded.

    The padding mirrors about the edge pixel without repeating it (PyTorch's
    and NumPy's ``reflect``, SciPy's ``mirror``), as the original does.
    """
    return ndimage.uniform_filter(doy.astype(np.float32), size=size, mode="mirror")


def prepare_firehr_input(
    before: np.ndarray,
    after: np.ndarray,
    smoothed_doy: np.ndarray,
) -> np.ndarray:
    """Stack FireHR's seven channels; missing reflectance becomes 0.

    Parameters
    ----------
    before, after
        (3, y, x) reflectance composites of red, NIR and SWIR2 (B4, B8, B12).
    smoothed_doy
        (y, x) coarse burn DOY after :func:`smooth_coarse_doy`.

    Returns
    -------
    numpy.ndarray
        float32 (7, y, x).
    """
    stacked = np.concatenate([before, after, smoothed_doy[None]], axis=0)
    return np.nan_to_num(stacked.astype(np.float32), nan=0.0)


def predict_firehr(
    model: FireHR,
    inputs: np.ndarray,
    *,
    grid: TileGrid = FIREHR_GRID,
    batch_size: int = 4,
) -> np.ndarray:
    """Return the burned probability (y, x) float32 of a (7, y, x) input."""
    device = next(model.parameters()).device
    predict = TorchPredictor(model, device, autocast=autocast_dtype(device))
    shape = inputs.shape[-2:]
    probability = blend_tiles(
        inputs,
        predict,
        grid,
        block_origin=(0, 0),
        core=(slice(0, shape[0]), slice(0, shape[1])),
        array_shape=(shape[0], shape[1]),
        batch_size=batch_size,
    )
    return probability[0]


class _PixelLinear(nn.Module):
    """A linear layer + batch norm + ReLU applied to every pixel's channels."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.chlin = nn.Sequential(
            nn.Linear(n_in, n_out, bias=False),
            nn.BatchNorm1d(n_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, rows, cols = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, channels)
        out = self.chlin(pixels)
        return out.reshape(batch, rows, cols, -1).permute(0, 3, 1, 2)


def _conv_bn_relu(n_in: int, n_out: int) -> nn.Sequential:
    """Return a 3x3 convolution (no bias, zero padding 1), batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    )


@dataclass(frozen=True)
class FireHRSpec:
    """FireHR as a chunk-wise model for :func:`~burnscape.model.predict_burned`.

    The cube must hold ``red``, ``nir``, ``swir2`` and a (y, x) variable
    ``coarse_burn_doy``: the coarse detector's burn day of year, 0 where not
    burned, already on the cube's grid (see :func:`resample_coarse_doy`).

    Parameters
    ----------
    weights
        Path of ``firehr_state_dict.pt``.
    split_date
        ISO date: time slots before it form the "before" median composite,
        the others the "after" one.
    filter_size
        Width of the mean filter on the coarse channel (pixels); see
        :func:`coarse_filter_size`.
    threshold
        Probability from which a pixel is burned (the author's 0.5).
    grid
        Tiles; the guard must cover the receptive-field radius (3).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    cpu_bf16
        bfloat16 autocast on the CPU: True, False, or None where the CPU has
        bfloat16 matrix units (see
        :func:`~burnscape.model.plugin.autocast_dtype`).
    """

    weights: str
    split_date: str
    filter_size: int = COARSE_FILTER_SIZE
    threshold: float = 0.5
    grid: TileGrid = FIREHR_GRID
    device: str = "auto"
    cpu_bf16: bool | None = None

    def load(self, device: torch.device) -> TorchPredictor:
        """Load the weights on ``device``."""
        model = load_firehr(self.weights, device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        autocast = autocast_dtype(device, cpu_bf16=self.cpu_bf16)
        return TorchPredictor(model, device, autocast=autocast, channels_last=True)

    def tile_nbytes(self, tile_shape: tuple[int, ...]) -> int:
        """Return the peak bytes of one (7, y, x) tile through FireHR.

        Measured on the CPU in float32: about 1.3 kB per pixel (the 128-map
        layers); bfloat16 autocast needs about half.
        """
        return _FIREHR_PIXEL_BYTES * tile_shape[-2] * tile_shape[-1]

    def prepare(self, cube: xr.Dataset) -> xr.DataArray:
        """Return the (channel=7, y, x) input: composites and smoothed coarse DOY."""
        _check_vars(cube, (*FIREHR_BANDS, COARSE_DOY_VAR))
        before = self._before(cube)
        parts = []
        for mask in (before, ~before):
            slots = cube[list(FIREHR_BANDS)].isel(time=np.flatnonzero(mask))
            stacked = slots.to_dataarray("channel").transpose(
                "channel", "time", "y", "x"
            )
            parts.append(_median_composite(stacked.chunk({"time": -1})))
        doy = cube[COARSE_DOY_VAR].transpose("y", "x")
        smoothed = xr.DataArray(
            _smooth_lazy(da.asarray(doy.data, dtype=np.float32), self.filter_size),
            dims=("y", "x"),
            coords=doy.coords,
        ).expand_dims(channel=["coarse_doy"])
        stacked = xr.concat([*parts, smoothed], dim="channel", coords="minimal")
        return (
            stacked.fillna(0.0)
            .astype(np.float32)
            .assign_coords(
                channel=[
                    f"{when}_{band}"
                    for when in ("before", "after")
                    for band in FIREHR_BANDS
                ]
                + ["coarse_doy"]
            )
        )

    @property
    def exact_halo(self) -> int:
        """Return the halo giving chunk-independent output: the receptive field."""
        return RECEPTIVE_RADIUS

    def output_channels(self, inputs: xr.DataArray) -> tuple[str, int]:
        """FireHR gives one probability per pixel."""
        return "band", 1

    def summarize(self, probability: xr.DataArray, cube: xr.Dataset) -> xr.Dataset:
        """Threshold the probability; date burned pixels by the first slot after."""
        return summarize_change(
            probability.isel(band=0),
            cube,
            before=self._before(cube),
            bands=FIREHR_BANDS,
            threshold=self.threshold,
        )

    def _before(self, cube: xr.Dataset) -> np.ndarray:
        """Return a bool per time slot: True before ``split_date``."""
        before = cube["time"].values < np.datetime64(self.split_date)
        if before.all() or not before.any():
            raise ModelError(
                f"FireHR needs observations before and after {self.split_date}; "
                f"the cube has {int(before.sum())} before "
                f"and {int((~before).sum())} after"
            )
        return before


COARSE_DOY_VAR = "coarse_burn_doy"
"""Name of the (y, x) coarse burn day-of-year variable FireHR reads."""


def _smooth_lazy(doy: da.Array, size: int) -> da.Array:
    """Apply :func:`smooth_coarse_doy` chunk-wise with an exact halo."""
    depth = size // 2
    if any(length <= depth for length in doy.shape):
        doy = doy.rechunk(-1)
    if doy.npartitions == 1:
        return doy.map_blocks(smooth_coarse_doy, size=size, dtype=np.float32)
    # Inner edges get a full halo (trimmed after); outer edges mirror, as a
    # whole-array filter does.
    return doy.map_overlap(
        smooth_coarse_doy, depth=depth, boundary="none", size=size, dtype=np.float32
    )


def _median_composite(stacked: xr.DataArray) -> xr.DataArray:
    """Return the per-pixel median over time, NaN where never observed."""

    def median(block: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            return np.nanmedian(block, axis=1)

    data = stacked.data.map_blocks(median, drop_axis=1, dtype=np.float32)
    return xr.DataArray(
        data,
        dims=("channel", "y", "x"),
        coords={k: v for k, v in stacked.coords.items() if "time" not in v.dims},
    )


def _check_vars(cube: xr.Dataset, names: tuple[str, ...]) -> None:
    """Raise ModelError naming the variables the cube lacks."""
    missing = [name for name in names if name not in cube]
    if missing:
        raise ModelError(
            f"FireHR needs cube variables {list(names)}; missing {missing}"
        )
