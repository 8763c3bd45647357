"""training.augment: seeded, in range, of the size it says, and it keeps which digit it is (read
by the committed bundle's model.onnx, after the service's own normalisation)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from training import augment
from training.train import TrainConfig, datasets, normalised

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "mnist-cnn"


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, np.ndarray]:
    test = datasets(TrainConfig()).test
    return torch.from_numpy(test.images[:400]).float() / 255, test.labels[:400]


@pytest.mark.parametrize("recipe", augment.RECIPES)
def test_a_seed_fixes_the_result_and_values_stay_in_range(recipe, digits):
    images, _ = digits
    first = augment.apply(recipe, images[:32], torch.Generator().manual_seed(3))
    again = augment.apply(recipe, images[:32], torch.Generator().manual_seed(3))
    other = augment.apply(recipe, images[:32], torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert first.shape == images[:32].shape
    assert float(first.min()) >= 0 and float(first.max()) <= 1 + 1e-6
    assert torch.equal(first, images[:32]) == (recipe == "none")
    assert torch.equal(first, other) == (recipe == "none")


def test_elastic_moves_pixels_by_about_alpha():
    images = torch.zeros(64, 1, 28, 28)
    offset = augment.elastic(images, torch.Generator().manual_seed(0), alpha=1.5, sigma=4.0)
    pixels = offset * torch.tensor([28 / 2, 28 / 2])   # grid units back to pixels
    assert float(pixels.std()) == pytest.approx(1.5, rel=0.05)


def test_thickness_thins_and_thickens_within_a_pixel():
    bar = torch.zeros(200, 1, 28, 28)
    bar[:, :, 4:24, 12:15] = 1
    changed = augment.thickness(bar, torch.Generator().manual_seed(0))
    ink = changed.sum(dim=(1, 2, 3)) / bar[0].sum()
    assert float(ink.min()) < 0.6 and float(ink.max()) > 1.2   # thinner and thicker both occur
    assert float(ink.max()) <= 1 + 0.5 * (2 * 22 + 2 * 3 + 4) / 60 + 1e-4   # half a pixel's ring


# The share of augmented held-out digits the default model still reads right. `handwriting`
# changes about one digit in six beyond what it reads (82.5 % when measured): one reason that
# recipe trains worse models (README, "How good is the model").
STILL_READ = {"none": 0.95, "light": 0.95, "strokes": 0.95, "handwriting": 0.8}


@pytest.mark.parametrize("recipe", augment.RECIPES)
def test_every_recipe_keeps_the_digit(recipe, digits):
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    config = TrainConfig(deskew=manifest["input"].get("deskew", False))
    images, labels = digits
    changed = normalised(augment.apply(recipe, images, torch.Generator().manual_seed(0)), config)
    session = ort.InferenceSession(str(BUNDLE / "model.onnx"), providers=["CPUExecutionProvider"])
    predicted = session.run(["logits"], {"image": changed.numpy()})[0].argmax(1)
    assert (predicted == labels).mean() >= STILL_READ[recipe]
