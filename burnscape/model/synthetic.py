"""Model stage: semi-synthetic BA-Net training sequences built from real data.

The sequences are semi-synthetic, and said so wherever they are used: the
burn-date maps, the burned and unburned spectra and the fire radiative powers
are real; the daily time series between them, the clouds, the gaps, the noise
and the seasonal drift are simulated.

Real inputs (read from the shared data folder):

- burn day-of-year maps of six real fires (BA-Net event rasters, band 2 DOY,
  band 1 confidence): where and on which day each pixel burned;
- the CHROME 2 Landsat 8 pre/post pair and its CAL FIRE perimeter: red, NIR
  and SWIR2 (the MIR stand-in) before and after burning inside the perimeter,
  and before and after a dry season outside it (the browning grassland that
  fools plain dNBR is the seasonal drift the model must ignore);
- the fire radiative powers of the real VIIRS detections of the 2020 Creek
  Fire: the values active-fire pixels take.

Simulated: a pixel follows its own pre -> post seasonal trajectory (a logistic
ramp of random timing and amplitude) until its real burn day, then jumps to a
real burned spectrum; an active fire is seen on the burn day with probability
``frp_detection`` (and the next day with a quarter of it); clouds are smooth
random blobs (NaN), some days have no acquisition at all, and every value gets
sensor noise and a per-day offset.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from burnscape.errors import DataNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "FireMap",
    "SequenceBatch",
    "SimulationConfig",
    "SpectraLibrary",
    "TrainingSources",
    "load_sources",
    "simulate_sequences",
    "simulate_fire",
]

BANDS = ("red", "nir", "swir2", "frp")
"""Channels of the simulated sequences (swir2 stands in for MIR)."""

_CHROME2 = "chrome2-fire-2018-landsat8"
_CHROME2_BANDS = {
    "red": ("Predata/band4afterclip.tif", "Postdata/band4clip.tif"),
    "nir": ("Predata/band5afterclip.tif", "Postdata/band5clip.tif"),
    "swir2": ("Predata/band7afterfireclip.tif", "Postdata/band7.tif"),
}
_PERIMETER = "FireShapefile/Chrome2_Fire.shp"
_EVENTS = "firehr-banet-events"
_CREEK = "creek-fire-2020-viirs-snpp-detections/SNPP"
_MODERATE_DNBR = 0.27  # Key & Benson (2006): low / moderate-low severity boundary


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of the simulated part of the sequences (recorded with weights)."""

    tile_size: int = 32
    sequence_length: int = 64
    cloud_day_probability: float = 0.35
    gap_day_probability: float = 0.1
    noise_std: float = 0.01
    day_offset_std: float = 0.005
    frp_detection: float = 0.6
    false_alarm_rate: float = 2e-4
    empty_window_share: float = 0.15
    burned_before_share: float = 0.1


@dataclass(frozen=True)
class FireMap:
    """A real fire's burn day-of-year map (0 = not burned) and confidence (0-1)."""

    name: str
    doy: np.ndarray
    confidence: np.ndarray


@dataclass(frozen=True)
class SpectraLibrary:
    """Real TOA reflectance (red, NIR, SWIR2) from the CHROME 2 pair.

    ``pre``/``post`` are (3, y, x) images (NaN outside the study area);
    ``unburned`` marks valid pixels outside the perimeter; ``burned_pre`` and
    ``burned_post`` are (n, 3) spectra of clearly burned pixels inside it.
    """

    pre: np.ndarray
    post: np.ndarray
    unburned: np.ndarray
    burned_pre: np.ndarray
    burned_post: np.ndarray


@dataclass(frozen=True)
class TrainingSources:
    """Everything real the sequences are built from, with its hash."""

    fires: dict[str, FireMap]
    spectra: SpectraLibrary
    frp: np.ndarray
    files_sha256: str = field(repr=False)

    def data_hash(self, config: SimulationConfig, seed: int) -> str:
        """Return the SHA-256 of the input files, the settings and the seed."""
        text = json.dumps(
            {"files": self.files_sha256, "config": asdict(config), "seed": seed}
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class SequenceBatch:
    """Simulated sequences and labels.

    ``x``: (batch, 4, time, y, x) float32 raw values (reflectance with NaN for
    clouds and gaps; FRP in MW); ``burn_index``: (batch, y, x) int64 day index
    of the burn in the window, -1 where the pixel does not burn in it;
    ``weight``: (batch, y, x) float32 label confidence.
    """

    x: np.ndarray
    burn_index: np.ndarray
    weight: np.ndarray


def load_sources(data_dir: Path) -> TrainingSources:
    """Read the real burn-date maps, spectra and FRP values from ``data_dir``.

    Raises
    ------
    DataNotFoundError
        A needed data set is missing from ``data_dir``.
    """
    import geopandas as gpd
    import pandas as pd
    import rasterio
    from rasterio.features import rasterize

    digest = hashlib.sha256()
    events = _need(data_dir / _EVENTS)
    fires = {}
    for path in sorted(events.glob("ba100m_*.tif")):
        with rasterio.open(path) as src:
            confidence, doy = src.read(1), src.read(2)
        name = path.stem.removeprefix("ba100m_")
        fires[name] = FireMap(
            name, doy.astype(np.int32), confidence.astype(np.float32) / 255
        )
        digest.update(path.read_bytes())

    chrome = _need(data_dir / _CHROME2)
    images = []
    for pre_name, post_name in _CHROME2_BANDS.values():
        pair = []
        for name in (pre_name, post_name):
            with rasterio.open(chrome / name) as src:
                dn = src.read(1).astype(np.float32)
                transform, crs = src.transform, src.crs
            digest.update((chrome / name).read_bytes())
            pair.append(np.where(dn == 0, np.nan, 2.0e-5 * dn - 0.1))
        images.append(pair)
    pre = np.stack([pair[0] for pair in images]).astype(np.float32)
    post = np.stack([pair[1] for pair in images]).astype(np.float32)
    perimeter = gpd.read_file(chrome / _PERIMETER).to_crs(crs)
    digest.update((chrome / _PERIMETER).read_bytes())
    inside = (
        rasterize(perimeter.geometry, out_shape=pre.shape[1:], transform=transform) > 0
    )

    valid = np.isfinite(pre).all(0) & np.isfinite(post).all(0)
    dnbr = _nbr(pre) - _nbr(post)
    offset = float(np.nanmedian(dnbr[valid & ~inside]))
    burned = valid & inside & (dnbr - offset > _MODERATE_DNBR)
    spectra = SpectraLibrary(
        pre=pre,
        post=post,
        unburned=valid & ~inside,
        burned_pre=pre[:, burned].T.copy(),
        burned_post=post[:, burned].T.copy(),
    )

    creek = _need(data_dir / _CREEK)
    frp_parts = []
    for path in sorted(creek.glob("*.txt")):
        frp_parts.append(pd.read_csv(path, usecols=["FRP"])["FRP"].to_numpy(np.float32))
        digest.update(path.read_bytes())
    frp = np.concatenate(frp_parts)
    frp = frp[np.isfinite(frp) & (frp > 0)]
    logger.info(
        "Training sources: %d fires, %d burned and %d unburned spectra, %d FRP values.",
        len(fires),
        len(spectra.burned_pre),
        int(spectra.unburned.sum()),
        frp.size,
    )
    return TrainingSources(fires, spectra, frp, digest.hexdigest())


def simulate_sequences(
    sources: TrainingSources,
    fire_names: list[str],
    n: int,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> SequenceBatch:
    """Simulate ``n`` random tiles from the named fires."""
    size = config.tile_size
    xs, labels, weights = [], [], []
    for _ in range(n):
        fire = sources.fires[fire_names[int(rng.integers(len(fire_names)))]]
        doy, conf = _random_crop(fire, size, rng)
        x, index, weight = _simulate_tile(sources, doy, conf, config, rng)
        xs.append(x)
        labels.append(index)
        weights.append(weight)
    return SequenceBatch(np.stack(xs), np.stack(labels), np.stack(weights))


def simulate_fire(
    sources: TrainingSources,
    fire_name: str,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> SequenceBatch:
    """Simulate one whole fire (its full map) in a window holding its burn days."""
    fire = sources.fires[fire_name]
    x, index, weight = _simulate_tile(
        sources, fire.doy, fire.confidence, config, rng, force_fire=True
    )
    return SequenceBatch(x[None], index[None], weight[None])


def _simulate_tile(
    sources: TrainingSources,
    doy: np.ndarray,
    conf: np.ndarray,
    config: SimulationConfig,
    rng: np.random.Generator,
    *,
    force_fire: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate one tile's sequence from a burn-DOY map."""
    length = config.sequence_length
    rows, cols = doy.shape
    burned = doy > 0
    first, last = (
        (int(doy[burned].min()), int(doy[burned].max())) if burned.any() else (0, 0)
    )

    # window start (DOY of day 0): holding the fire, before it, or after it
    draw = 1.0 if force_fire else rng.random()
    if not burned.any() or draw < config.empty_window_share:
        start = first - length - int(rng.integers(1, 30))
    elif draw < config.empty_window_share + config.burned_before_share:
        start = last + int(rng.integers(1, 30))
    else:
        slack = max(1, length - 4 - (last - first))
        start = first - 2 - int(rng.integers(0, slack))
    offset = doy - start
    burns_here = burned & (offset >= 0) & (offset < length)
    burned_before = burned & (offset < 0)
    index = np.where(burns_here, offset, -1)

    pre, post = _background(sources.spectra, rows, cols, rng)
    days = np.arange(length, dtype=np.float32)[:, None, None, None]
    ramp = _seasonal_ramp(length, rng)[:, None, None, None]
    jitter = rng.normal(1.0, 0.1, (1, 1, rows, cols)).astype(np.float32)
    series = pre[None] + (post - pre)[None] * np.clip(
        ramp * jitter, 0, 1
    )  # (time, 3, y, x)

    n_burn = int((burns_here | burned_before).sum())
    pick = rng.integers(0, len(sources.spectra.burned_post), n_burn)
    scar = np.zeros((3, rows, cols), np.float32)
    scar[:, burns_here | burned_before] = sources.spectra.burned_post[pick].T
    after = (days >= index[None, None]) & burns_here[None, None]
    series = np.where(after | burned_before[None, None], scar[None], series)

    series = series + rng.normal(0, config.noise_std, series.shape).astype(np.float32)
    series = series + rng.normal(0, config.day_offset_std, (length, 3, 1, 1)).astype(
        np.float32
    )
    series = np.where(_clouds(length, rows, cols, config, rng)[:, None], np.nan, series)

    frp = _active_fires(sources.frp, index, burns_here, length, config, rng)
    x = np.concatenate([series.transpose(1, 0, 2, 3), frp[None]], axis=0).astype(
        np.float32
    )
    weight = np.where(burned, np.clip(conf, 0.5, 1.0), 1.0).astype(np.float32)
    return x, index.astype(np.int64), weight


def _background(
    spectra: SpectraLibrary, rows: int, cols: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return a real unburned (pre, post) patch (3, rows, cols) from CHROME 2."""
    height, width = spectra.unburned.shape
    for _ in range(50):
        top = int(rng.integers(0, max(1, height - rows)))
        left = int(rng.integers(0, max(1, width - cols)))
        window = np.s_[top : top + rows, left : left + cols]
        mask = spectra.unburned[window]
        if mask.shape == (rows, cols) and mask.mean() > 0.5:
            break
    else:
        mask = np.zeros((rows, cols), bool)
        window = np.s_[0:0, 0:0]
    pre = np.zeros((3, rows, cols), np.float32)
    post = np.zeros((3, rows, cols), np.float32)
    if mask.any():
        pre[:, mask] = spectra.pre[(slice(None), *window)][:, mask]
        post[:, mask] = spectra.post[(slice(None), *window)][:, mask]
    # fill holes (study-area edge, the real fire) with random unburned pixels
    rr, cc = np.nonzero(spectra.unburned)
    pick = rng.integers(0, rr.size, int((~mask).sum()))
    pre[:, ~mask] = spectra.pre[:, rr[pick], cc[pick]]
    post[:, ~mask] = spectra.post[:, rr[pick], cc[pick]]
    if rng.random() < 0.5:  # the season runs either way
        pre, post = post, pre
    return pre, post


def _seasonal_ramp(length: int, rng: np.random.Generator) -> np.ndarray:
    """Return a logistic ramp 0 -> amplitude over the window (time,)."""
    middle = rng.uniform(-0.2, 1.2) * length
    width = rng.uniform(3.0, 20.0)
    amplitude = rng.uniform(0.2, 1.0)
    days = np.arange(length, dtype=np.float32)
    return (amplitude / (1.0 + np.exp(-(days - middle) / width))).astype(np.float32)


def _clouds(
    length: int,
    rows: int,
    cols: int,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return (time, y, x) bool: cloud blobs and whole-day gaps."""
    field_ = ndimage.gaussian_filter(
        rng.normal(size=(length, rows, cols)).astype(np.float32), sigma=(0, 4, 4)
    )
    field_ /= field_.std(axis=(1, 2), keepdims=True) + 1e-6
    cover = rng.uniform(0.1, 1.0, (length, 1, 1))
    threshold = np.quantile(field_, 1.0 - cover.ravel(), axis=(1, 2)).diagonal()
    cloudy = rng.random(length) < config.cloud_day_probability
    masked = (field_ > threshold[:, None, None]) & cloudy[:, None, None]
    gaps = rng.random(length) < config.gap_day_probability
    return masked | gaps[:, None, None]


def _active_fires(
    frp_values: np.ndarray,
    index: np.ndarray,
    burns_here: np.ndarray,
    length: int,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Return (time, y, x) FRP (MW): real values on burn days, rare false alarms."""
    rows, cols = index.shape
    frp = np.zeros((length, rows, cols), np.float32)
    for delay, chance in ((0, config.frp_detection), (1, config.frp_detection / 4)):
        day = index + delay
        seen = burns_here & (day < length) & (rng.random((rows, cols)) < chance)
        values = frp_values[rng.integers(0, frp_values.size, int(seen.sum()))]
        frp[day[seen], *np.nonzero(seen)] = values
    false = rng.random((length, rows, cols)) < config.false_alarm_rate
    frp[false] = frp_values[rng.integers(0, frp_values.size, int(false.sum()))]
    return frp


def _random_crop(
    fire: FireMap, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return a size x size crop of a fire map (zero-padded), burned pixels likely."""
    doy = np.pad(fire.doy, size // 2)
    conf = np.pad(fire.confidence, size // 2)
    rows, cols = np.nonzero(doy)
    if rows.size and rng.random() < 0.8:
        pick = int(rng.integers(rows.size))
        top = int(np.clip(rows[pick] - rng.integers(0, size), 0, doy.shape[0] - size))
        left = int(np.clip(cols[pick] - rng.integers(0, size), 0, doy.shape[1] - size))
    else:
        top = int(rng.integers(0, max(1, doy.shape[0] - size)))
        left = int(rng.integers(0, max(1, doy.shape[1] - size)))
    crop = np.s_[top : top + size, left : left + size]
    out_doy = np.zeros((size, size), np.int32)
    out_conf = np.zeros((size, size), np.float32)
    part = doy[crop]
    out_doy[: part.shape[0], : part.shape[1]] = part
    out_conf[: part.shape[0], : part.shape[1]] = conf[crop]
    return out_doy, out_conf


def _nbr(image: np.ndarray) -> np.ndarray:
    """Return NBR of a (red, NIR, SWIR2) image."""
    return (image[1] - image[2]) / (image[1] + image[2])


def _need(path: Path) -> Path:
    if not path.exists():
        raise DataNotFoundError(
            f"training data {path} not found; "
            "set BURNSCAPE_DATA_DIR to the shared data folder"
        )
    return path
