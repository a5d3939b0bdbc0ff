"""Model stage: burned area and burn date from a cube (spectral, FireHR, BA-Net).

The pipeline calls :func:`detect` for the ``banet`` and ``firehr`` detectors;
the ``spectral`` detector lives in :mod:`burnscape.model.spectral`. Models run
chunk-wise on Dask through :func:`predict_burned`.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from burnscape.errors import EmptyResultWarning, ModelError
from burnscape.model.inference import ModelSpec, map_tiles, predict_burned
from burnscape.model.plugin import ModelPlugin, get_predictor, select_device
from burnscape.model.tiling import TileGrid

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client

    from burnscape.config import DetectorConfig

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_BANET_DAYS",
    "ModelPlugin",
    "ModelSpec",
    "TileGrid",
    "detect",
    "get_predictor",
    "map_tiles",
    "predict_burned",
    "select_device",
    "shipped_banet_weights",
]

MAX_BANET_DAYS = 731
"""Longest daily axis BA-Net accepts (two years): longer cubes are an error."""


def detect(
    cube_path: Path,
    burned_path: Path,
    detector: DetectorConfig,
    *,
    client: Client | None = None,
) -> None:
    """Run a model detector over ``cube.zarr`` and write ``burned.zarr``.

    Parameters
    ----------
    cube_path
        The reflectance cube (burnscape cube contract).
    burned_path
        Where burned.zarr goes (replaced if present).
    detector
        ``kind`` ``banet`` (``weights``: one or more BA-Net files, averaged;
        none: the shipped weights, :func:`shipped_banet_weights`)
        or ``firehr`` (``weights``: the FireHR state dict; the coarse mask
        comes from the spectral detector run with the same thresholds).
    client
        Distributed client to run on (the current one when None).

    Raises
    ------
    ModelError
        Unknown kind, missing weights, or a cube the model cannot read.
    """
    import xarray as xr

    from burnscape.model.burned import write_burned
    from burnscape.utils import sha256_file

    if not detector.weights:
        if detector.kind != "banet":
            raise ModelError(
                f"detector.kind {detector.kind!r} needs detector.weights (FireHR's "
                "pretrained state dict, see the firehr-weights data set); without "
                "them use kind 'spectral'"
            )
        shipped = shipped_banet_weights()
        logger.info(
            "No detector.weights: using the shipped BA-Net weights %s.", shipped
        )
        detector = detector.model_copy(update={"weights": (str(shipped),)})
    cube = xr.open_zarr(cube_path)
    if detector.kind == "firehr":
        result, params = _detect_firehr(cube, detector, client)
    elif detector.kind == "banet":
        result, params = _detect_banet(cube, detector, client)
    else:
        raise ModelError(f"detect() runs 'banet' or 'firehr', not {detector.kind!r}")

    chunk_size = int(cube["observation_count"].chunks[0][0])
    write_burned(
        result,
        burned_path,
        detector=detector.kind,
        params={**detector.model_dump(mode="json"), **params},
        inputs=[str(cube_path)],
        weights_sha256=",".join(sha256_file(path) for path in detector.weights),
        chunk_size=chunk_size,
    )


def shipped_banet_weights() -> Path:
    """Return the BA-Net weights that ship with burnscape (``burnscape train``)."""
    return Path(
        str(resources.files("burnscape.model") / "weights" / "banet-semisynthetic.pt")
    )


def _detect_firehr(
    cube: xr.Dataset, detector: DetectorConfig, client: Client | None
) -> tuple[xr.Dataset, dict[str, object]]:
    """Refine the spectral detector's mask with FireHR."""
    import warnings

    from burnscape.model.firehr import COARSE_DOY_VAR, FireHRSpec, coarse_filter_size
    from burnscape.model.spectral import SpectralParams, detect_spectral

    coarse = detect_spectral(
        cube,
        SpectralParams(
            z_threshold=detector.z_threshold,
            dnbr_threshold=detector.dnbr_threshold,
            min_area_ha=detector.min_area_ha,
        ),
    )
    burned = (coarse["burned"] == 1).compute().values
    dates = coarse["burn_date"].compute().values
    if not burned.any():
        warnings.warn(
            "the spectral detector found no burned pixel; FireHR has no coarse mask",
            EmptyResultWarning,
            stacklevel=3,
        )
        split = np.datetime64(cube["time"].values[-1], "D")
    else:
        split = np.datetime64(int(dates[burned].min()), "D")
    day_of_year = np.zeros(burned.shape, np.float32)
    if burned.any():
        stamps = dates.astype("datetime64[D]")
        starts = stamps.astype("datetime64[Y]").astype("datetime64[D]")
        day_of_year = np.where(
            burned, (stamps - starts).astype(np.int64) + 1, 0
        ).astype(np.float32)
    pixel_size = abs(float(cube["x"].values[1] - cube["x"].values[0]))
    spec = FireHRSpec(
        weights=str(detector.weights[0]),
        split_date=str(split),
        filter_size=coarse_filter_size(pixel_size),
    )
    with_coarse = cube.assign({COARSE_DOY_VAR: (("y", "x"), day_of_year)})
    with_coarse[COARSE_DOY_VAR] = with_coarse[COARSE_DOY_VAR].chunk(
        dict(zip(("y", "x"), cube["observation_count"].chunks, strict=True))
    )
    result = predict_burned(with_coarse, spec, halo=spec.exact_halo, client=client)
    params = {
        "split_date": spec.split_date,
        "filter_size": spec.filter_size,
        "coarse": "spectral",
    }
    return result, params


def _detect_banet(
    cube: xr.Dataset, detector: DetectorConfig, client: Client | None
) -> tuple[xr.Dataset, dict[str, object]]:
    """Run the BA-Net ensemble over the cube's daily sequences."""
    from burnscape.model.daily import BANetSpec

    days = cube["time"].values.astype("datetime64[D]")
    span = int((days[-1] - days[0]).astype(np.int64)) + 1
    if span > MAX_BANET_DAYS:
        raise ModelError(
            f"the cube spans {span} days ({days[0]} to {days[-1]}) with {days.size} "
            f"acquisitions; BA-Net reads daily sequences of at most {MAX_BANET_DAYS} "
            "days: narrow the workflow's time window or use detector.kind 'spectral'"
        )
    spec = BANetSpec(weights=tuple(str(path) for path in detector.weights))
    result = predict_burned(cube, spec, halo=spec.exact_halo, client=client)
    return result, {"sequence_length": spec.metadata.sequence_length, "days": span}
