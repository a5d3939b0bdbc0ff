"""Model stage: chunk-wise inference over a cube on Dask, with halo and blended tiles.

Each Dask task receives one spatial chunk of the model input with a halo of
neighbouring pixels and the whole time window, cuts it into the tiles of a grid
anchored to the whole array (:mod:`burnscape.model.tiling`), runs them through
the model in batches and returns the blended output for the chunk's own pixels.
With a halo of at least ``grid.halo`` pixels, every chunking of the same cube
gives the same answer as a whole-array run.

The halo comes from :func:`dask.array.map_overlap` with ``boundary="none"``:
chunks on the array's border get no padding on that side, and the halo may be
one-sided (``(before, after)``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import dask
import dask.array as da
import numpy as np
import xarray as xr

from burnscape.errors import ModelError
from burnscape.model.budget import (
    DEFAULT_MEMORY_FRACTION,
    estimate_tile_nbytes,
    memory_budget,
    tiles_per_batch,
)
from burnscape.model.plugin import ModelPlugin, Predictor, get_predictor, select_device
from burnscape.model.tiling import TileGrid, blend_tiles

if TYPE_CHECKING:
    import torch
    from distributed import Client

logger = logging.getLogger(__name__)

__all__ = ["ModelSpec", "gpu_workers", "map_tiles", "predict_burned"]

GPU_RESOURCES = {"GPU": 1}
"""Resource annotation of tasks that run a model on a GPU worker."""


class ModelSpec(Protocol):
    """What chunk-wise inference needs from a model (a frozen dataclass).

    Attributes
    ----------
    grid
        Tile size, overlap and guard for this network.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``: where workers run it.
    """

    grid: TileGrid
    device: str

    @property
    def exact_halo(self) -> int:
        """Return the smallest halo that makes chunked runs equal whole runs."""
        ...

    def load(self, device: torch.device) -> Predictor:
        """Build the predictor on ``device`` (called once per worker process)."""
        ...

    def tile_nbytes(self, tile_shape: tuple[int, ...]) -> int:
        """Return the peak bytes of one forward pass over one tile (..., y, x)."""
        ...

    def prepare(self, cube: xr.Dataset) -> xr.DataArray:
        """Return the model input, dims (channel, ..., y, x), dask-backed."""
        ...

    def output_channels(self, inputs: xr.DataArray) -> tuple[str, int]:
        """Return the name and length of the output's leading dimension."""
        ...

    def summarize(self, probability: xr.DataArray, cube: xr.Dataset) -> xr.Dataset:
        """Turn the blended output into burned.zarr variables."""
        ...


def predict_burned(
    cube: xr.Dataset,
    model_spec: ModelSpec,
    *,
    halo: int | tuple[int, int],
    batch_size: int | None = None,
    memory_fraction: float = DEFAULT_MEMORY_FRACTION,
    gpu: bool | None = None,
    client: Client | None = None,
) -> xr.Dataset:
    """Run a model chunk-wise over a cube and summarise it as burned.zarr variables.

    Parameters
    ----------
    cube
        A burnscape cube (dims time, y, x), usually dask-backed. Its spatial
        chunks are the task size; the whole time window goes to every task.
    model_spec
        The model, e.g. :class:`burnscape.model.banet.BANetSpec` or
        :class:`burnscape.model.firehr.FireHRSpec`.
    halo
        Pixels of context each task reads beyond its chunk on both spatial
        axes, or ``(before, after)``. ``model_spec.exact_halo`` makes the
        result independent of the chunking.
    batch_size
        Tiles per forward pass. None: as many as fit in the memory budget
        (see ``memory_fraction``), decided by each task on its worker.
    memory_fraction
        Share of the worker's memory limit (on a GPU: of its free memory)
        that one batch may take, by the model's ``tile_nbytes`` estimate.
    gpu
        Put ``resources={"GPU": 1}`` on the model tasks. None: yes when the
        active distributed client has workers offering a ``GPU`` resource.
    client
        The distributed client; the current one when None (if any).

    Returns
    -------
    xarray.Dataset
        Lazy ``burned``, ``confidence``, ``burn_date`` (and the other
        variables of the burned.zarr contract) on the cube's grid.

    Notes
    -----
    Layer annotations do not survive Dask's low-level task fusion, so when
    ``gpu`` is on and a client is active the model output is persisted with
    ``optimize_graph=False``: its tasks reach the scheduler still carrying
    their GPU restriction, whatever optimisation later runs on the result.
    """
    client = client if client is not None else _current_client()
    use_gpu = bool(gpu) if gpu is not None else bool(client and gpu_workers(client))
    inputs = model_spec.prepare(cube)
    dim, size = model_spec.output_channels(inputs)
    if client is not None:
        client.register_plugin(ModelPlugin(model_spec))

    output = map_tiles(
        inputs.data,
        model_spec,
        halo=halo,
        n_outputs=size,
        batch_size=batch_size,
        memory_fraction=memory_fraction,
        resources=GPU_RESOURCES if use_gpu else None,
    )
    if use_gpu and client is not None:
        output = client.persist(output, optimize_graph=False)
    coords = {name: inputs.coords[name] for name in ("y", "x") if name in inputs.coords}
    if dim in inputs.coords:
        coords[dim] = inputs.coords[dim]
    probability = xr.DataArray(
        output, dims=(dim, "y", "x"), coords=coords, name="probability"
    )
    logger.info(
        "Model %s over %d x %d pixels in %d chunks (halo %s, GPU %s).",
        type(model_spec).__name__,
        cube.sizes["y"],
        cube.sizes["x"],
        output.npartitions,
        halo,
        use_gpu,
    )
    result = model_spec.summarize(probability, cube)
    for name in result.variables:  # the cube's storage settings do not carry over
        result[name].encoding = {}
    return result


def map_tiles(
    inputs: da.Array,
    predictor_spec: Any,
    *,
    halo: int | tuple[int, int],
    n_outputs: int,
    batch_size: int | None = None,
    memory_fraction: float = DEFAULT_MEMORY_FRACTION,
    resources: dict[str, int] | None = None,
) -> da.Array:
    """Apply a tiled model to a dask array chunk by chunk, with a spatial halo.

    Parameters
    ----------
    inputs
        Model input (channel, ..., y, x); leading dims are gathered into one
        chunk, spatial chunks are kept.
    predictor_spec
        An object with ``grid`` (:class:`TileGrid`) that
        :func:`~burnscape.model.plugin.get_predictor` can load.
    halo
        Context pixels on each side of a chunk, or ``(before, after)``.
    n_outputs
        Channels the predictor returns.
    batch_size
        Tiles per forward pass; None: from the memory budget.
    memory_fraction
        Share of the worker's memory one batch may take when ``batch_size``
        is None (see :func:`~burnscape.model.budget.memory_budget`).
    resources
        Task annotation of the model tasks (e.g. ``{"GPU": 1}``).

    Returns
    -------
    dask.array.Array
        float32 (n_outputs, y, x), chunked like ``inputs`` in space.
    """
    before, after = (halo, halo) if isinstance(halo, int) else halo
    if before < 0 or after < 0:
        raise ModelError(f"halo {halo} must be non-negative")
    lead = inputs.ndim - 2
    inputs = inputs.rechunk({axis: -1 for axis in range(lead)})
    inputs = inputs.rechunk(_min_chunks(inputs.chunks, lead, max(before, after)))
    # An axis held in one chunk has no neighbour to borrow from.
    halos = tuple(
        (before, after) if len(inputs.chunks[axis]) > 1 else (0, 0)
        for axis in (lead, lead + 1)
    )
    depth = {lead: halos[0], lead + 1: halos[1]}
    chunks = ((n_outputs,), *inputs.chunks[lead:])
    kwargs = {
        "spec": predictor_spec,
        "halos": halos,
        "starts": tuple(
            tuple(np.cumsum((0, *c[:-1])).tolist()) for c in inputs.chunks[lead:]
        ),
        "shape": inputs.shape[lead:],
        "batch_size": batch_size,
        "memory_fraction": memory_fraction,
    }
    with dask.annotate(**({"resources": resources} if resources else {})):
        return da.map_overlap(
            _predict_block,
            inputs,
            depth=depth,
            boundary="none",
            trim=False,
            align_arrays=False,
            drop_axis=list(range(1, lead)),
            chunks=chunks,
            dtype=np.float32,
            meta=np.empty((0,) * 3, dtype=np.float32),
            **kwargs,
        )


def gpu_workers(client: Client) -> list[str]:
    """Return the addresses of the client's workers that offer a GPU resource."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return [
        addr for addr, worker in info.items() if worker.get("resources", {}).get("GPU")
    ]


def _predict_block(
    block: np.ndarray,
    *,
    spec: Any,
    halos: tuple[tuple[int, int], tuple[int, int]],
    starts: tuple[tuple[int, ...], tuple[int, ...]],
    shape: tuple[int, int],
    batch_size: int | None,
    memory_fraction: float,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    """Run the model over one chunk plus halo; return the chunk's own output."""
    assert block_info is not None
    location = block_info[None]["chunk-location"][-2:]
    core_shape = block_info[None]["chunk-shape"][-2:]
    origin, core = [], []
    for axis, index in enumerate(location):
        lead = halos[axis][0] if index > 0 else 0
        origin.append(starts[axis][index] - lead)
        core.append(slice(lead, lead + core_shape[axis]))
        if block.shape[block.ndim - 2 + axis] < core[-1].stop:
            raise ModelError(f"chunk {location} lacks its halo on axis {axis}")
    predictor = get_predictor(spec)
    if batch_size is None:
        batch_size = _budget_batch(block, spec, memory_fraction)
    logger.debug(
        "Chunk %s: block %s, origin %s, %d tiles per batch.",
        location,
        block.shape,
        origin,
        batch_size,
    )
    return blend_tiles(
        block,
        predictor,
        spec.grid,
        block_origin=(origin[0], origin[1]),
        core=(core[0], core[1]),
        array_shape=shape,
        batch_size=batch_size,
    )


def _budget_batch(block: np.ndarray, spec: Any, fraction: float) -> int:
    """Return the tiles per batch that fit this worker's memory budget."""
    device = select_device(getattr(spec, "device", "auto"))
    tile = spec.grid.tile_size
    tile_shape = (*block.shape[:-2], *(min(tile, n) for n in block.shape[-2:]))
    budget = memory_budget(device, fraction)
    if device.type == "cpu":  # the block itself is already held
        budget -= block.nbytes
    return tiles_per_batch(estimate_tile_nbytes(spec, tile_shape), budget)


def _min_chunks(
    chunks: Sequence[tuple[int, ...]], lead: int, depth: int
) -> dict[int, Any]:
    """Merge spatial chunks thinner than the halo into their neighbours."""
    result: dict[int, Any] = {}
    for axis in (lead, lead + 1):
        sizes = list(chunks[axis])
        merged: list[int] = []
        for size in sizes:
            if merged and (merged[-1] < depth or size < depth):
                merged[-1] += size
            else:
                merged.append(size)
        result[axis] = tuple(merged)
    return result


def _current_client() -> Client | None:
    """Return the active distributed client, or None."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None
