"""Model stage: BA-Net weight files that carry their own metadata.

A weight file is one ``torch.save``'d dict of plain types and tensors, so it
loads with ``torch.load(..., weights_only=True)`` and never runs pickled code::

    {"format": "burnscape-banet/1",
     "metadata": {architecture, bands, normalisation, sequence_length,
                  training_data_sha256, code_version, ...},
     "state_dict": {name: tensor}}
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from burnscape import __version__
from burnscape.errors import WeightsError
from burnscape.model.banet import BANet, BANetConfig

logger = logging.getLogger(__name__)

__all__ = [
    "WEIGHTS_FORMAT",
    "WeightsMetadata",
    "load_banet_weights",
    "save_banet_weights",
]

WEIGHTS_FORMAT = "burnscape-banet/1"
"""Format tag written into every weight file."""


@dataclass(frozen=True)
class WeightsMetadata:
    """What a BA-Net weight file says about itself.

    Parameters
    ----------
    architecture
        :class:`~burnscape.model.banet.BANetConfig` settings.
    bands
        Input channels in order: cube variable names (``frp`` is the gridded
        fire radiative power, fed as log1p).
    mean, std
        Per-channel normalisation applied after log1p of ``frp``.
    sequence_length
        Days per sequence the network was trained on.
    training_data_sha256
        Hash of everything the training sequences were built from (input
        files, simulation settings, seed).
    code_version
        burnscape version (and commit, if known) that trained it.
    extra
        Anything else: training settings, held-out scores, creation time.
    """

    architecture: dict[str, Any]
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sequence_length: int
    training_data_sha256: str
    code_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return plain values (lists, not tuples) for ``torch.save``."""
        return {
            "architecture": dict(self.architecture),
            "bands": list(self.bands),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "sequence_length": int(self.sequence_length),
            "training_data_sha256": self.training_data_sha256,
            "code_version": self.code_version,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WeightsMetadata:
        """Build from what :meth:`to_dict` wrote."""
        return cls(
            architecture=dict(raw["architecture"]),
            bands=tuple(raw["bands"]),
            mean=tuple(raw["mean"]),
            std=tuple(raw["std"]),
            sequence_length=int(raw["sequence_length"]),
            training_data_sha256=str(raw["training_data_sha256"]),
            code_version=str(raw["code_version"]),
            extra=dict(raw.get("extra", {})),
        )


def save_banet_weights(
    path: str | Path, model: BANet, metadata: WeightsMetadata, *, half: bool = False
) -> Path:
    """Write a model and its metadata as one weights-only file.

    ``half`` stores floating tensors as float16 (half the size); they are
    restored to float32 on loading.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {
        name: (
            t.detach().cpu().half()
            if half and t.is_floating_point()
            else t.detach().cpu()
        )
        for name, t in model.state_dict().items()
    }
    extra = {
        **metadata.extra,
        "saved": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    meta = WeightsMetadata(**{**metadata.__dict__, "extra": extra})
    payload = {
        "format": WEIGHTS_FORMAT,
        "metadata": meta.to_dict(),
        "state_dict": state,
    }
    tmp = target.with_suffix(target.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(target)
    logger.info("Saved BA-Net weights to %s.", target)
    return target


def load_banet_weights(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[BANet, WeightsMetadata]:
    """Load a BA-Net weight file (weights only) into an eval-mode network.

    Raises
    ------
    WeightsError
        Missing file, not a burnscape BA-Net file, or layers that do not match
        the stored architecture.
    """
    source = Path(path)
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise WeightsError(f"BA-Net weights {source} do not exist") from err
    except Exception as err:
        raise WeightsError(
            f"cannot load {source} with weights_only=True: {err}; only burnscape "
            "BA-Net files (written by 'burnscape train') are accepted"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
        found = (
            payload.get("format")
            if isinstance(payload, dict)
            else type(payload).__name__
        )
        raise WeightsError(f"{source} is not a {WEIGHTS_FORMAT} file (found {found!r})")
    try:
        metadata = WeightsMetadata.from_dict(payload["metadata"])
        model = BANet(BANetConfig(**metadata.architecture))
        state = {
            name: t.float() if t.is_floating_point() else t
            for name, t in payload["state_dict"].items()
        }
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, RuntimeError) as err:
        raise WeightsError(
            f"{source} does not match its BA-Net architecture: {err}"
        ) from err
    return model.eval().to(device), metadata
