"""Model stage: BA-Net over a cube's daily sequences (spec, predictor, ensemble).

:class:`BANetSpec` plugs BA-Net into :func:`~burnscape.model.predict_burned`:
it puts the cube on a daily time axis (days without an acquisition are gaps),
normalises the bands as the weights' metadata says, and summarises the per-day
probabilities as burn date (most probable day) and confidence (sum of the daily
probabilities clipped to 1). Several weight files are averaged as an ensemble.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from burnscape.errors import ModelError, SkippedInputWarning, WeightsError
from burnscape.model.banet import BANetConfig, fold_batch_norm
from burnscape.model.plugin import autocast_dtype
from burnscape.model.summary import summarize_daily
from burnscape.model.tiling import TileGrid, axis_tiles, taper
from burnscape.model.weights import WeightsMetadata, load_banet_weights

logger = logging.getLogger(__name__)

__all__ = [
    "BANET_GRID",
    "BANetSpec",
    "SequencePredictor",
    "processed_voxels",
    "read_metadata",
    "to_daily",
]

BANET_GRID = TileGrid(tile_size=128, overlap=32, guard=0)
"""Default BA-Net tiles (the original's 128 x 128), 32 pixels shared."""

_SPACE_MULTIPLE = 32  # five stride-2 stages
_TIME_MULTIPLE = 16  # four stride-2 stages in time
_NETWORK_BYTES = 18  # peak bytes per pixel-day and first-block channel (CPU)
_VOXELS = [0]  # pixel-days this process has run through the network (benchmarks)


@dataclass(frozen=True)
class BANetSpec:
    """BA-Net (an ensemble of weight files) as a chunk-wise model.

    Parameters
    ----------
    weights
        BA-Net weight files written by ``burnscape train``; their
        probabilities are averaged. They must share bands, normalisation and
        sequence length.
    threshold
        Confidence from which a pixel counts as burned.
    grid
        Spatial tiles (edges multiples of 32 are fastest).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    time_overlap
        Days shared by consecutive sequences when the cube is longer than the
        sequence length.
    fold_norms
        Fold batch norm into the convolutions before inference (same output,
        one pass less over every feature map).
    cpu_bf16
        Run under bfloat16 autocast on the CPU: True, False, or None to do so
        where the CPU has bfloat16 matrix units (see
        :func:`~burnscape.model.plugin.autocast_dtype`). GPUs always use it.
    """

    weights: tuple[str, ...]
    threshold: float = 0.5
    grid: TileGrid = field(default_factory=lambda: BANET_GRID)
    device: str = "auto"
    time_overlap: int = 16
    fold_norms: bool = True
    cpu_bf16: bool | None = None

    def __post_init__(self) -> None:
        if not self.weights:
            raise ModelError("BA-Net needs at least one weight file (detector.weights)")

    @property
    def metadata(self) -> WeightsMetadata:
        """Return the shared metadata of the weight files."""
        return _shared_metadata(self.weights)

    @property
    def exact_halo(self) -> int:
        """Return the halo giving chunk-independent output (global tile grid)."""
        return self.grid.halo

    def load(self, device: torch.device) -> SequencePredictor:
        """Load every weight file on ``device``."""
        models = [load_banet_weights(path, device)[0] for path in self.weights]
        meta = self.metadata
        return SequencePredictor(
            models,
            device=device,
            sequence_length=meta.sequence_length,
            time_overlap=self.time_overlap,
            fold_norms=self.fold_norms,
            cpu_bf16=self.cpu_bf16,
        )

    def tile_nbytes(self, tile_shape: tuple[int, ...]) -> int:
        """Return the peak bytes of one tile (channel, time, y, x) through BA-Net.

        Measured on the CPU: at most about 18 bytes per pixel-day and
        first-block channel inside the network (float32; bfloat16 autocast
        needs about half), one sequence window and one ensemble member at a
        time; plus the input and its padded copy, the float64 blending sums
        and the ensemble mean over the whole series.
        """
        meta = self.metadata
        first_block = BANetConfig(**meta.architecture).channels[0]
        channels, days, rows, cols = tile_shape[-4:]
        padded = (rows + -rows % _SPACE_MULTIPLE) * (cols + -cols % _SPACE_MULTIPLE)
        length = max(days, meta.sequence_length)
        network = _NETWORK_BYTES * first_block * meta.sequence_length * padded
        series = (8 * channels + 16) * length * padded  # inputs, sums, means
        return network + series

    def prepare(self, cube: xr.Dataset) -> xr.DataArray:
        """Return normalised input (channel, time, y, x) on a daily axis; gaps are 0."""
        meta = self.metadata
        daily = to_daily(cube)
        channels = []
        for band, mean, std in zip(meta.bands, meta.mean, meta.std, strict=True):
            values = _band(daily, band)
            channels.append(((values - mean) / std).fillna(0.0).astype(np.float32))
        stacked = xr.concat(
            channels, dim="channel", coords="minimal", compat="override"
        )
        stacked = stacked.assign_coords(channel=list(meta.bands))
        return stacked.transpose("channel", "time", "y", "x").chunk(
            {"channel": -1, "time": -1}
        )

    def output_channels(self, inputs: xr.DataArray) -> tuple[str, int]:
        """BA-Net gives one probability per day."""
        return "time", inputs.sizes["time"]

    def summarize(self, probability: xr.DataArray, cube: xr.Dataset) -> xr.Dataset:
        """Burn date: the likeliest day; confidence: summed probabilities, clipped."""
        bands = tuple(band for band in self.metadata.bands if band != "frp")
        return summarize_daily(
            probability, to_daily(cube), bands=bands, threshold=self.threshold
        )


class SequencePredictor:
    """Run BA-Net models on tile batches of any length and size; average them.

    Input (batch, channel, time, y, x) float32 (normalised); output
    (batch, time, y, x) probabilities. Tiles are zero-padded to multiples of
    32 pixels; time is cut into sequences of ``sequence_length`` days that
    overlap by ``time_overlap`` and are blended with tapered weights; a
    shorter series is zero-padded at its start (days without data).
    """

    def __init__(
        self,
        models: list[nn.Module],
        *,
        device: torch.device,
        sequence_length: int,
        time_overlap: int = 16,
        fold_norms: bool = False,
        cpu_bf16: bool | None = False,
    ) -> None:
        self.device = device
        self.sequence_length = sequence_length
        self.time_overlap = min(time_overlap, sequence_length - 1)
        self.autocast = autocast_dtype(device, cpu_bf16=cpu_bf16)
        memory = torch.channels_last_3d
        if fold_norms:
            models = [fold_batch_norm(model) for model in models]
        self.models = [
            model.eval().to(device, memory_format=memory) for model in models
        ]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Return per-day probabilities (batch, time, y, x) float32."""
        n_batch, _, n_time, rows, cols = batch.shape
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        pad_rows = -rows % _SPACE_MULTIPLE
        pad_cols = -cols % _SPACE_MULTIPLE
        pad_time = max(0, self.sequence_length - n_time)
        tensor = nn.functional.pad(tensor, (0, pad_cols, 0, pad_rows, pad_time, 0))
        length = tensor.shape[2]
        total = np.zeros((n_batch, length, rows, cols), dtype=np.float64)
        weight_sum = np.zeros(length, dtype=np.float64)
        size = self.sequence_length
        starts = axis_tiles(length, size, size - self.time_overlap)
        for start in starts.tolist():
            window = tensor[:, :, start : start + size]
            probability = self._forward(window)[:, :, :rows, :cols]
            weights = taper(
                size,
                self.time_overlap,
                0,
                taper_start=start > 0,
                taper_end=start + size < length,
            )
            total[:, start : start + size] += probability * weights[None, :, None, None]
            weight_sum[start : start + size] += weights
        blended = total / weight_sum[None, :, None, None]
        return blended[:, pad_time:].astype(np.float32)

    def _forward(self, window: torch.Tensor) -> np.ndarray:
        """Return the ensemble-mean probability (batch, time, y, x) of one window."""
        if window.shape[2] % _TIME_MULTIPLE:
            raise ModelError(
                f"sequence length {window.shape[2]} "
                f"is not a multiple of {_TIME_MULTIPLE}"
            )
        _VOXELS[0] += window.shape[0] * window[0, 0].numel() * len(self.models)
        with torch.inference_mode():
            tensor = window.to(self.device).contiguous(
                memory_format=torch.channels_last_3d
            )
            mean = None
            for model in self.models:
                if self.autocast is not None:
                    with torch.autocast(self.device.type, dtype=self.autocast):
                        logits = model(tensor)
                else:
                    logits = model(tensor)
                probability = torch.sigmoid(logits.float())[:, 0]
                mean = probability if mean is None else mean + probability
            assert mean is not None
            return (mean / len(self.models)).cpu().numpy()


def to_daily(cube: xr.Dataset) -> xr.Dataset:
    """Reindex a cube onto one slot per day from its first to its last day.

    Days without an acquisition become all-NaN slots (gaps).
    """
    days = cube["time"].values.astype("datetime64[D]")
    if np.unique(days).size != days.size:
        raise ModelError(
            "the cube has two time slots on one day; BA-Net needs one per day"
        )
    daily = np.arange(days[0], days[-1] + np.timedelta64(1, "D"), dtype="datetime64[D]")
    variables = [name for name in cube.data_vars if "time" in cube[name].dims]
    indexed = cube[variables].assign_coords(time=days.astype("datetime64[ns]"))
    result = indexed.reindex(time=daily.astype("datetime64[ns]"))
    for name in ("spatial_ref",):
        if name in cube.coords:
            result = result.assign_coords({name: cube.coords[name]})
    if "observation_count" in cube:
        result["observation_count"] = cube["observation_count"]
    return result


def processed_voxels() -> int:
    """Return the pixel-days this process has fed to BA-Net models (all members)."""
    return _VOXELS[0]


@functools.lru_cache(maxsize=16)
def read_metadata(path: str) -> WeightsMetadata:
    """Return a weight file's metadata (cached per path)."""
    return load_banet_weights(path)[1]


def _shared_metadata(paths: tuple[str, ...]) -> WeightsMetadata:
    """Return the metadata common to an ensemble, or raise WeightsError."""
    metas = [read_metadata(str(Path(path))) for path in paths]
    first = metas[0]
    for path, meta in zip(paths[1:], metas[1:], strict=True):
        same = (meta.bands, meta.mean, meta.std, meta.sequence_length) == (
            first.bands,
            first.mean,
            first.std,
            first.sequence_length,
        )
        if not same:
            raise WeightsError(
                f"{path} differs from {paths[0]} in bands, normalisation or sequence "
                "length; an ensemble must share them"
            )
    return first


def _band(daily: xr.Dataset, band: str) -> xr.DataArray:
    """Return one input channel; ``frp`` becomes log1p and defaults to zero."""
    if band == "frp":
        if "frp" not in daily:
            warnings.warn(
                "the cube has no 'frp' variable; BA-Net runs without active fires",
                SkippedInputWarning,
                stacklevel=4,
            )
            template = daily[next(iter(daily.data_vars))]
            return xr.zeros_like(template, dtype=np.float32)
        return np.log1p(daily["frp"].fillna(0.0).clip(min=0.0))
    if band not in daily:
        raise ModelError(f"BA-Net needs the cube band {band!r}; the cube lacks it")
    return daily[band]
