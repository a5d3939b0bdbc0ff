"""Model stage: train BA-Net on semi-synthetic sequences and score held-out fires.

Training sequences are semi-synthetic (see :mod:`burnscape.model.synthetic`):
real burn-date maps, spectra and fire radiative powers; simulated clouds,
gaps, noise and seasonal drift. Whole fires are held out: the score reported
with the weights (detection F1, and the share of burned pixels dated within
one and two days) comes from fires the network never saw.

The loss is binary cross-entropy of every pixel-day against a one-hot label on
the burn day (all zeros where the pixel does not burn in the window), weighted
by the burn-date map's confidence, plus ``confidence_loss_weight`` times the
binary cross-entropy of each pixel's confidence (the clipped sum of its daily
probabilities, which decides detection) against burned or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from burnscape.errors import ModelError
from burnscape.model.banet import BANet, BANetConfig
from burnscape.model.daily import SequencePredictor
from burnscape.model.synthetic import (
    BANDS,
    SequenceBatch,
    SimulationConfig,
    TrainingSources,
    load_sources,
    simulate_fire,
    simulate_sequences,
)
from burnscape.model.weights import WeightsMetadata, save_banet_weights
from burnscape.utils import code_version

logger = logging.getLogger(__name__)

__all__ = [
    "HeldOutScore",
    "TrainingConfig",
    "evaluate_fires",
    "normalise",
    "train_banet",
]


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run (stored in the weights' metadata).

    The defaults are the configuration of the shipped weights, sized for a
    small shared CPU (minutes). The original BA-Net scale is ``width=1.0,
    sequence_length=64, tile_size=128`` and thousands of steps, on a GPU.
    """

    width: float = 0.5
    sequence_length: int = 64
    tile_size: int = 32
    batch_size: int = 4
    steps: int = 300
    learning_rate: float = 3e-3
    seed: int = 0
    train_fires: tuple[str, ...] = (
        "PT2017_1",
        "PT2018_1",
        "Attica2018_2",
        "FRiv2017_1",
    )
    heldout_fires: tuple[str, ...] = ("Attica2018_1", "FRiv2017_2")
    heldout_repeats: int = 3
    confidence_loss_weight: float = 0.1
    normalisation_samples: int = 64


@dataclass(frozen=True)
class HeldOutScore:
    """Scores on held-out fires (pixel counts summed over all repeats)."""

    f1: float
    precision: float
    recall: float
    dated_within_1_day: float
    dated_within_2_days: float
    burned_pixels: int
    per_fire: dict[str, dict[str, float]] = field(default_factory=dict)


def train_banet(
    data_dir: Path,
    out_path: Path,
    config: TrainingConfig = TrainingConfig(),
    *,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Path, HeldOutScore]:
    """Train BA-Net, score the held-out fires and write the weights.

    Parameters
    ----------
    data_dir
        The shared real-data folder.
    out_path
        Weight file to write.
    config
        Training settings.
    progress
        Called as ``progress(step, loss)`` after every step.

    Returns
    -------
    tuple of Path and HeldOutScore
        The weight file and the held-out scores written into its metadata.
    """
    overlap = set(config.train_fires) & set(config.heldout_fires)
    if overlap:
        raise ModelError(f"fires {sorted(overlap)} are both trained on and held out")
    sources = load_sources(data_dir)
    unknown = sorted(
        set(config.train_fires + config.heldout_fires) - set(sources.fires)
    )
    if unknown:
        raise ModelError(f"unknown fires {unknown}; available: {sorted(sources.fires)}")

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    simulation = SimulationConfig(
        tile_size=config.tile_size, sequence_length=config.sequence_length
    )
    sample = simulate_sequences(
        sources, list(config.train_fires), config.normalisation_samples, simulation, rng
    )
    mean, std = _channel_stats(sample.x)
    model = BANet(
        BANetConfig(width=config.width, sequence_length=config.sequence_length)
    )
    started = time.perf_counter()
    losses = _fit(model, sources, simulation, config, mean, std, rng, progress)
    elapsed = time.perf_counter() - started

    score = evaluate_fires(
        [model],
        sources,
        list(config.heldout_fires),
        simulation,
        mean,
        std,
        repeats=config.heldout_repeats,
        seed=config.seed + 1,
    )
    metadata = WeightsMetadata(
        architecture=model.config.to_dict(),
        bands=BANDS,
        mean=tuple(mean),
        std=tuple(std),
        sequence_length=config.sequence_length,
        training_data_sha256=sources.data_hash(simulation, config.seed),
        code_version=code_version(),
        extra={
            "training": {
                **_plain(asdict(config)),
                "seconds": round(elapsed, 1),
                "final_loss": float(np.mean(losses[-20:])),
            },
            "simulation": _plain(asdict(simulation)),
            "semi_synthetic": (
                "real burn-date maps, spectra and FRP; simulated clouds, gaps, "
                "noise and seasonal drift"
            ),
            "heldout": _plain(asdict(score)),
        },
    )
    return save_banet_weights(out_path, model, metadata), score


def normalise(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalise raw sequences (batch, 4, time, y, x): log1p FRP, z-score, NaN -> 0."""
    out = x.astype(np.float32, copy=True)
    out[:, 3] = np.log1p(np.clip(np.nan_to_num(out[:, 3]), 0, None))
    out = (out - mean[None, :, None, None, None]) / std[None, :, None, None, None]
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def evaluate_fires(
    models: list[nn.Module],
    sources: TrainingSources,
    fires: list[str],
    simulation: SimulationConfig,
    mean: np.ndarray | tuple[float, ...],
    std: np.ndarray | tuple[float, ...],
    *,
    repeats: int = 3,
    seed: int = 1,
    threshold: float = 0.5,
) -> HeldOutScore:
    """Score models on whole simulated fires: detection F1 and dating shares.

    Each fire is simulated ``repeats`` times (different clouds, drift and
    spectra) in a window holding its burn days; a pixel counts as detected
    where the clipped sum of its daily probabilities reaches ``threshold``.
    """
    mean_a, std_a = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    predictor = SequencePredictor(
        [m.eval() for m in models],
        device=torch.device("cpu"),
        sequence_length=simulation.sequence_length,
    )
    rng = np.random.default_rng(seed)
    totals = np.zeros(5, dtype=np.int64)  # tp, fp, fn, within1, within2
    per_fire = {}
    for name in fires:
        counts = np.zeros(5, dtype=np.int64)
        for _ in range(repeats):
            batch = simulate_fire(sources, name, simulation, rng)
            probability = predictor(normalise(batch.x, mean_a, std_a))[0]
            counts += _score(probability, batch.burn_index[0], threshold)
        per_fire[name] = _rates(counts)
        totals += counts
    rates = _rates(totals)
    return HeldOutScore(
        f1=rates["f1"],
        precision=rates["precision"],
        recall=rates["recall"],
        dated_within_1_day=rates["within_1"],
        dated_within_2_days=rates["within_2"],
        burned_pixels=int(totals[0] + totals[2]),
        per_fire=per_fire,
    )


def _fit(
    model: BANet,
    sources: TrainingSources,
    simulation: SimulationConfig,
    config: TrainingConfig,
    mean: np.ndarray,
    std: np.ndarray,
    rng: np.random.Generator,
    progress: Callable[[int, float], None] | None,
) -> list[float]:
    """Run the optimisation loop; return the loss of every step."""
    model.train()
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=1e-4
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=max(1, config.steps)
    )
    losses = []
    for step in range(config.steps):
        batch = simulate_sequences(
            sources, list(config.train_fires), config.batch_size, simulation, rng
        )
        inputs, target, weight = _tensors(batch, mean, std, simulation.sequence_length)
        logits = model(inputs)
        loss = _loss(logits, target, weight, config.confidence_loss_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
        if step % 25 == 0:
            logger.info("Step %d/%d: loss %.4f.", step + 1, config.steps, losses[-1])
    model.eval()
    return losses


def _loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    confidence_weight: float,
) -> torch.Tensor:
    """Return the pixel-day loss plus the weighted pixel confidence loss.

    The confidence (daily probabilities summed and clipped to 1) decides
    detection; without its own term a network that dates well still leaves
    a small probability on every day of unburned pixels, and over 64 days
    those add up past the detection threshold.
    """
    loss = nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight)
    if not confidence_weight:
        return loss
    confidence = torch.sigmoid(logits).sum(dim=2).clamp(1e-6, 1 - 1e-6)
    burned = target.amax(dim=2)
    pixel = nn.functional.binary_cross_entropy(
        confidence, burned, weight=weight[:, :, 0]
    )
    return loss + confidence_weight * pixel


def _tensors(
    batch: SequenceBatch, mean: np.ndarray, std: np.ndarray, length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return model input, one-hot burn-day target and pixel weights."""
    inputs = torch.from_numpy(normalise(batch.x, mean, std))
    index = torch.from_numpy(batch.burn_index)
    days = torch.arange(length)[None, :, None, None]
    target = (days == index[:, None]).float()[:, None]
    weight = torch.from_numpy(batch.weight)[:, None, None].expand_as(target)
    return inputs, target, weight


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-channel mean and std of raw sequences (log1p FRP, NaN ignored)."""
    values = x.astype(np.float32, copy=True)
    values[:, 3] = np.log1p(np.clip(np.nan_to_num(values[:, 3]), 0, None))
    mean = np.nanmean(values, axis=(0, 2, 3, 4))
    std = np.nanstd(values, axis=(0, 2, 3, 4))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def _score(
    probability: np.ndarray, burn_index: np.ndarray, threshold: float
) -> np.ndarray:
    """Return counts (tp, fp, fn, dated within 1 day, within 2) for one sequence."""
    detected = np.clip(probability.sum(axis=0), 0, 1) >= threshold
    truth = burn_index >= 0
    error = np.abs(probability.argmax(axis=0) - burn_index)
    hit = detected & truth
    return np.array(
        [
            hit.sum(),
            (detected & ~truth).sum(),
            (~detected & truth).sum(),
            (hit & (error <= 1)).sum(),
            (hit & (error <= 2)).sum(),
        ],
        dtype=np.int64,
    )


def _rates(counts: np.ndarray) -> dict[str, float]:
    """Turn (tp, fp, fn, within1, within2) counts into rates."""
    tp, fp, fn, within1, within2 = (float(c) for c in counts)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    burned = tp + fn
    return {
        "f1": round(f1, 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "within_1": round(within1 / burned, 4) if burned else 0.0,
        "within_2": round(within2 / burned, 4) if burned else 0.0,
    }


def _plain(value: Any) -> Any:
    """Turn tuples into lists recursively (weights-only files keep plain types)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
