"""Model stage: the BA-Net network (burned area and burn date from daily sequences).

BA-Net (Pinto et al., 2020, "A deep learning approach for mapping and dating
burned areas using temporal sequences of satellite images", ISPRS J. Photogramm.
Remote Sens. 160, 260-274) reads a daily sequence of images and gives every
pixel a probability of burning on each day. This is a plain PyTorch version:
3-D convolutions factored into space (1 x k x k) and time (k x 1 x 1), an LSTM
over time in the first block, five stride-2 encoder blocks and a U-shaped
decoder joined to them by skip connections.

Shapes: input (batch, channel, time, y, x) with channels red, NIR, MIR/SWIR and
log1p of gridded active-fire radiative power; ``time`` a multiple of 16 and
``y``, ``x`` multiples of 32. Output (batch, 1, time, y, x): logits of burning
on that day.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

logger = logging.getLogger(__name__)

__all__ = ["BANet", "BANetConfig", "fold_batch_norm"]

DROPOUT = 0.2
"""Dropout of whole feature maps in every encoder and decoder block."""


@dataclass(frozen=True)
class BANetConfig:
    """Architecture settings of a BA-Net (stored with its weights).

    Parameters
    ----------
    in_channels
        Input channels (4: red, NIR, MIR/SWIR, log1p FRP).
    width
        Channel multiplier: 1.0 gives the original widths 32, 64, 128, 256,
        256 (3.4 M parameters); 0.5 a quarter of the compute.
    sequence_length
        Days per input sequence (multiple of 16; 64 in the original).
    """

    in_channels: int = 4
    width: float = 1.0
    sequence_length: int = 64

    @property
    def channels(self) -> tuple[int, int, int, int, int]:
        """Return the channel counts of the five encoder blocks."""
        base = (32, 64, 128, 256, 256)
        return tuple(max(4, int(round(c * self.width))) for c in base)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, float | int]:
        """Return the settings as plain values (for weight metadata)."""
        return asdict(self)


class BANet(nn.Module):
    """BA-Net: per-pixel, per-day burn logits from a daily image sequence.

    Parameters
    ----------
    config
        Channel counts and sequence length.

    Notes
    -----
    Encoder block i (i = 1..5) is a space convolution (kernel 7, 3, 3, 3, 3;
    stride 1, 2, 2, 2, 2) then a time convolution (kernel 7, 7, 5, 3, 3;
    stride 1, 2, 2, 2, 2), each followed by batch norm and ReLU; block 1 first
    runs an LSTM along time at every pixel. A sixth block halves space once
    more. The decoder doubles space (and time) with transposed convolutions
    and concatenates the encoder output of the same scale. A last time
    convolution and a 1x1x1 convolution give one logit per pixel and day.
    """

    def __init__(self, config: BANetConfig | None = None) -> None:
        super().__init__()
        self.config = config or BANetConfig()
        c1, c2, c3, c4, c5 = self.config.channels
        self.stconv1 = _SpaceTime(self.config.in_channels, c1, 7, 7, 1, lstm=True)
        self.stconv2 = _SpaceTime(c1, c2, 3, 7, 2)
        self.stconv3 = _SpaceTime(c2, c3, 3, 5, 2)
        self.stconv4 = _SpaceTime(c3, c4, 3, 3, 2)
        self.stconv5 = _SpaceTime(c4, c5, 3, 3, 2)
        self.stconv6 = _space_conv(c5, c5, 3, 2)
        self.ustconv6 = _up_space(c5, c5)
        self.ustconv5 = _UpSpaceTime(2 * c5, c5)
        self.ustconv4 = _UpSpaceTime(2 * c5, c3)
        self.ustconv3 = _UpSpaceTime(2 * c3, c2)
        self.ustconv2 = _UpSpaceTime(2 * c2, c1)
        self.head = nn.Sequential(
            _TimeConv3d(2 * c1, 2 * c1, (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(2 * c1),
            nn.ReLU(inplace=True),
            _SpaceConv3d(2 * c1, 1, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, 1, time, y, x) for (batch, channel, time, y, x)."""
        c1 = self.stconv1(x)
        c2 = self.stconv2(c1)
        c3 = self.stconv3(c2)
        c4 = self.stconv4(c3)
        c5 = self.stconv5(c4)
        up = self.ustconv6(self.stconv6(c5))
        up = self.ustconv5(_cat_channels(c5, up))
        up = self.ustconv4(_cat_channels(c4, up))
        up = self.ustconv3(_cat_channels(c3, up))
        up = self.ustconv2(_cat_channels(c2, up))
        del c2, c3, c4, c5
        features = _cat_channels(c1, up)
        del c1, up  # the full-resolution maps are the largest: free them early
        return self.head(features)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Return an inference copy with every batch norm folded into its convolution.

    Each (transposed) convolution directly followed by a batch norm inside an
    ``nn.Sequential`` absorbs the norm's running statistics and affine
    parameters; the norm becomes an identity. Outputs are unchanged (up to
    rounding) and a pass over every feature map is saved.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, norm = module[i], module[i + 1]
            if isinstance(conv, nn.Conv3d | nn.ConvTranspose3d) and isinstance(
                norm, nn.BatchNorm3d
            ):
                transpose = isinstance(conv, nn.ConvTranspose3d)
                module[i] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
                module[i + 1] = nn.Identity()
    return folded


class _PixelLSTM(nn.Module):
    """An LSTM along time at every pixel; keeps (batch, channel, time, y, x).

    Pixels are run in groups of ``group`` sequences, so the gate activations
    (four times the output) never exist for the whole batch at once.
    """

    def __init__(self, channels: int, group: int = 4096) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, batch_first=True)
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, steps, rows, cols = x.shape
        pixels = rows * cols
        sequences = x.permute(0, 3, 4, 2, 1).reshape(batch, pixels, steps, channels)
        del x
        out: torch.Tensor | None = None
        for image in range(batch):
            for first in range(0, pixels, self.group):
                part, _ = self.lstm(sequences[image, first : first + self.group])
                if out is None:  # (batch, time, pixel, channel): channels-last-3d
                    out = part.new_empty((batch, steps, pixels, channels))
                out[image, :, first : first + part.shape[0]] = part.transpose(0, 1)
        assert out is not None
        return out.view(batch, steps, rows, cols, channels).permute(0, 4, 1, 2, 3)


class _SpaceTime(nn.Module):
    """Space convolution, (LSTM), time convolution, each with batch norm + ReLU."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        space_k: int,
        time_k: int,
        stride: int,
        lstm: bool = False,
    ) -> None:
        super().__init__()
        self.space = _space_conv(n_in, n_out, space_k, stride)
        self.lstm = _PixelLSTM(n_out) if lstm else None
        self.time = nn.Sequential(
            _TimeConv3d(
                n_out,
                n_out,
                (time_k, 1, 1),
                stride=(stride, 1, 1),
                padding=(time_k // 2, 0, 0),
                bias=False,
            ),
            nn.BatchNorm3d(n_out),
            nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout3d(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.space(x)
        if self.lstm is not None:
            x = self.lstm(x)
        return self.drop(self.time(x))


class _UpSpaceTime(nn.Module):
    """Double space, then time, with transposed convolutions."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.space = _up_space(n_in, n_out)
        self.time = nn.Sequential(
            _TimeUp3d(n_out, n_out, (2, 1, 1), stride=(2, 1, 1), bias=False),
            nn.BatchNorm3d(n_out),
            nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout3d(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.time(self.space(x)))


# The 3-D kernels here are (1, k, k) or (k, 1, 1). With activations stored
# channels-last (physically batch, time, y, x, channel) both are plain 2-D
# convolutions over views of the same memory: space kernels over
# (batch * time, channel, y, x), time kernels over (batch, channel, time, y * x).
# oneDNN and cuDNN run those far faster than the general 3-D path, and no
# layout copies are needed between layers. Parameters keep Conv3d's shapes.


def _cat_channels(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Concatenate (b, c, t, y, x) tensors on channels, keeping channels-last-3d."""
    last = [
        t.contiguous(memory_format=torch.channels_last_3d).permute(0, 2, 3, 4, 1)
        for t in (first, second)
    ]
    return torch.cat(last, dim=-1).permute(0, 4, 1, 2, 3)


def _as_frames(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """View (b, c, t, y, x) channels-last-3d as (b * t, c, y, x) channels-last."""
    x = x.contiguous(memory_format=torch.channels_last_3d)
    batch, channels, steps, rows, cols = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(batch * steps, channels, rows, cols), (
        batch,
        steps,
    )


def _from_frames(y: torch.Tensor, batch: int, steps: int) -> torch.Tensor:
    """Undo :func:`_as_frames` on a (b * t, c, y, x) result."""
    y = y.contiguous(memory_format=torch.channels_last)
    return y.reshape(batch, steps, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def _as_series(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """View (b, c, t, y, x) channels-last-3d as (b, c, t, y * x) channels-last."""
    x = x.contiguous(memory_format=torch.channels_last_3d)
    batch, channels, steps, rows, cols = x.shape
    return x.reshape(batch, channels, steps, rows * cols), (rows, cols)


def _from_series(y: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Undo :func:`_as_series` on a (b, c, t, y * x) result."""
    y = y.contiguous(memory_format=torch.channels_last)
    return y.reshape(*y.shape[:3], rows, cols)


class _SpaceConv3d(nn.Conv3d):
    """A (1, k, k) Conv3d run as a 2-D convolution over every day."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, (batch, steps) = _as_frames(x)
        out = nn.functional.conv2d(
            frames, self.weight[:, :, 0], self.bias, self.stride[1:], self.padding[1:]
        )
        return _from_frames(out, batch, steps)


class _TimeConv3d(nn.Conv3d):
    """A (k, 1, 1) Conv3d run as a (k, 1) 2-D convolution over (time, pixel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        series, (rows, cols) = _as_series(x)
        out = nn.functional.conv2d(
            series,
            self.weight[..., 0],
            self.bias,
            (self.stride[0], 1),
            (self.padding[0], 0),  # type: ignore[index]
        )
        return _from_series(out, rows, cols)


class _SpaceUp3d(nn.ConvTranspose3d):
    """A (1, 2, 2) stride-2 ConvTranspose3d run per day in 2-D."""

    def forward(
        self, x: torch.Tensor, output_size: list[int] | None = None
    ) -> torch.Tensor:
        frames, (batch, steps) = _as_frames(x)
        out = nn.functional.conv_transpose2d(
            frames, self.weight[:, :, 0], self.bias, self.stride[1:]
        )
        return _from_frames(out, batch, steps)


class _TimeUp3d(nn.ConvTranspose3d):
    """A (2, 1, 1) stride-2 ConvTranspose3d run in 2-D over (time, pixel)."""

    def forward(
        self, x: torch.Tensor, output_size: list[int] | None = None
    ) -> torch.Tensor:
        series, (rows, cols) = _as_series(x)
        out = nn.functional.conv_transpose2d(
            series, self.weight[..., 0], self.bias, (self.stride[0], 1)
        )
        return _from_series(out, rows, cols)


def _space_conv(n_in: int, n_out: int, k: int, stride: int) -> nn.Sequential:
    """Return a (1, k, k) convolution with batch norm and ReLU."""
    return nn.Sequential(
        _SpaceConv3d(
            n_in,
            n_out,
            (1, k, k),
            stride=(1, stride, stride),
            padding=(0, k // 2, k // 2),
            bias=False,
        ),
        nn.BatchNorm3d(n_out),
        nn.ReLU(inplace=True),
    )


def _up_space(n_in: int, n_out: int) -> nn.Sequential:
    """Return a (1, 2, 2) stride-2 transposed convolution with batch norm and ReLU."""
    return nn.Sequential(
        _SpaceUp3d(n_in, n_out, (1, 2, 2), stride=(1, 2, 2), bias=False),
        nn.BatchNorm3d(n_out),
        nn.ReLU(inplace=True),
    )
