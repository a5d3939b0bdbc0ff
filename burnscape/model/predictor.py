"""Model stage: run a torch network on NumPy tile batches, fast on CPU and GPU.

:class:`TorchPredictor` is what a worker holds once per process (see
:mod:`burnscape.model.plugin`): it moves a batch to the device, runs the network
under ``torch.inference_mode`` (channels-last memory and bfloat16 autocast where
they help) and returns probabilities as float32 NumPy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["TorchPredictor"]


@dataclass
class TorchPredictor:
    """A network ready for inference on one device.

    Parameters
    ----------
    model
        The network in eval mode, already on ``device``; it returns logits.
    device
        Where batches run.
    autocast
        ``torch.bfloat16`` to run under autocast, or None for float32.
    channels_last
        Feed 4-D inputs in channels-last memory format (faster convolutions
        with oneDNN and cuDNN).
    """

    model: nn.Module
    device: torch.device
    autocast: torch.dtype | None = None
    channels_last: bool = False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Return sigmoid probabilities (batch, n_out, y, x) float32."""
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            tensor = tensor.to(self.device, non_blocking=True)
            if self.channels_last and tensor.ndim == 4:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            if self.autocast is not None:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    logits = self.model(tensor)
            else:
                logits = self.model(tensor)
            return torch.sigmoid(logits.float()).cpu().numpy()
