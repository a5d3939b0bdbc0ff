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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from burnscape.errors import WeightsError
from burnscape.model.tiling import TileGrid, blend_tiles

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

logger = logging.getLogger(__name__)

__all__ = [
    "FIREHR_BANDS",
    "FIREHR_GRID",
    "FireHR",
    "coarse_filter_size",
    "load_firehr",
    "prepare_firehr_input",
    "predict_firehr",
    "resample_coarse_doy",
    "smooth_coarse_doy",
]

FIREHR_BANDS = ("red", "nir", "swir2")
"""Cube bands standing in for Sentinel-2 B4, B8 and B12, in input order."""

FIREHR_GRID = TileGrid(tile_size=512, overlap=16, guard=3)
"""Default tiles: the network's receptive-field radius is 3 pixels."""

COARSE_FILTER_SIZE = 101
"""Width (pixels) of the original mean filter on the coarse burn-DOY channel."""

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

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(device)
            return torch.sigmoid(model(tensor)).float().cpu().numpy()

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
            nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU(inplace=True)
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
