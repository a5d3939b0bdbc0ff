"""Model stage: load each model once per worker process, on the right device.

Chunk tasks never load weights themselves: they ask :func:`get_predictor`,
which returns the model that this process already holds, loading it on the
first call only. :class:`ModelPlugin` makes every Dask worker load it when it
joins, before any chunk arrives, so no task pays for (or races on) loading.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import Counter
from typing import TYPE_CHECKING, Protocol

import torch
from dask.base import tokenize
from distributed.diagnostics.plugin import WorkerPlugin

if TYPE_CHECKING:
    import numpy as np
    from distributed import Worker

logger = logging.getLogger(__name__)

__all__ = [
    "LoadableModel",
    "ModelPlugin",
    "Predictor",
    "autocast_dtype",
    "clear_cache",
    "cpu_has_bf16_matrix_units",
    "get_predictor",
    "load_counts",
    "select_device",
]

_CACHE: dict[tuple[str, str], Predictor] = {}
_LOADS: Counter[str] = Counter()
_LOCK = threading.Lock()


class Predictor(Protocol):
    """A loaded model: maps a batch of tiles to output channels.

    Input (batch, ..., y, x) float32 NumPy; output (batch, n_out, y, x)
    float32 NumPy (probabilities).
    """

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Return the model output for a batch of tiles."""
        ...


class LoadableModel(Protocol):
    """Anything that can build a :class:`Predictor` on a device (a model spec)."""

    def load(self, device: torch.device) -> Predictor:
        """Build the predictor on ``device``."""
        ...


def select_device(preference: str = "auto") -> torch.device:
    """Return the torch device to run on.

    ``"auto"`` picks the first CUDA device when there is one, else the CPU;
    ``"cpu"`` and ``"cuda"`` (or ``"cuda:N"``) are taken as given.
    """
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def autocast_dtype(
    device: torch.device, *, cpu_bf16: bool | None = False
) -> torch.dtype | None:
    """Return the autocast dtype worth using on ``device``, or None for float32.

    On CUDA, bfloat16 halves memory traffic and uses the tensor cores. On the
    CPU it pays only where the cores have bfloat16 matrix units (Intel AMX):
    there BA-Net runs about 1.7 times and FireHR about 2 times faster than in
    float32; elsewhere autocast adds conversions for little gain. So
    ``cpu_bf16`` True asks for it, False refuses it and None decides by
    :func:`cpu_has_bf16_matrix_units`.
    """
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu":
        wanted = cpu_has_bf16_matrix_units() if cpu_bf16 is None else cpu_bf16
        return torch.bfloat16 if wanted else None
    return None


@functools.cache
def cpu_has_bf16_matrix_units() -> bool:
    """Return True when this CPU has AMX bfloat16 tiles (Linux flag ``amx_bf16``)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def get_predictor(spec: LoadableModel, device: torch.device | None = None) -> Predictor:
    """Return this process's loaded model for ``spec``, loading it once.

    Parameters
    ----------
    spec
        A model spec (frozen dataclass) whose ``load`` builds the predictor.
    device
        Where to run; :func:`select_device` decides when None.
    """
    target = (
        device if device is not None else select_device(getattr(spec, "device", "auto"))
    )
    key = (tokenize(spec), str(target))
    predictor = _CACHE.get(key)
    if predictor is not None:
        return predictor
    with _LOCK:
        predictor = _CACHE.get(key)
        if predictor is None:
            logger.info(
                "Loading model %s on %s (pid %d).",
                type(spec).__name__,
                target,
                os.getpid(),
            )
            predictor = spec.load(target)
            _CACHE[key] = predictor
            _LOADS[key[0]] += 1
    return predictor


def load_counts() -> dict[str, int]:
    """Return how often this process loaded each model spec (by token)."""
    return dict(_LOADS)


def clear_cache(spec: LoadableModel | None = None) -> None:
    """Forget this process's loaded models: those of ``spec``, or all."""
    token = None if spec is None else tokenize(spec)
    with _LOCK:
        for key in [key for key in _CACHE if token is None or key[0] == token]:
            del _CACHE[key]


class ModelPlugin(WorkerPlugin):
    """Load a model on every Dask worker once, when the worker starts.

    Register it with ``client.register_plugin(ModelPlugin(spec))``; workers that
    join later load it too. It also sets torch's thread count to the worker's
    thread count, so that workers sharing a machine do not oversubscribe it.

    Parameters
    ----------
    spec
        The model spec (a frozen, picklable dataclass).
    """

    idempotent = True  # registering the same spec again keeps the loaded model

    def __init__(self, spec: LoadableModel) -> None:
        self.spec = spec
        self.name = f"burnscape-model-{tokenize(spec)}"

    def setup(self, worker: Worker) -> None:
        """Load the model into the worker process's cache."""
        threads = max(1, int(getattr(worker.state, "nthreads", 1)))
        torch.set_num_threads(threads)
        get_predictor(self.spec)
        logger.info("Worker %s holds model %s.", worker.address, self.name)

    def teardown(self, worker: Worker) -> None:
        """Drop this process's copy of the model."""
        clear_cache(self.spec)
