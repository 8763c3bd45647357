"""training.calibration against what it must recover: a temperature that generated the labels,
and expected calibration errors worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training import calibration


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(true_temperature):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 10))
    labels = _draw(rng, calibration.softmax(logits, true_temperature))
    fitted = calibration.fit(torch.from_numpy(logits), torch.from_numpy(labels))
    assert fitted == pytest.approx(true_temperature, rel=0.05)


def _draw(rng, probabilities: np.ndarray) -> np.ndarray:
    """A label per row, drawn with the row's probabilities (inverse CDF)."""
    cumulative = probabilities.cumsum(axis=1)
    return (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1).clip(0, probabilities.shape[1] - 1)


def test_fit_finds_the_minimum_of_the_likelihood():
    """Against a brute-force grid: no temperature nearby fits the labels better."""
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0, 4, (3000, 10)))
    labels = torch.from_numpy(_draw(rng, calibration.softmax(logits.numpy(), 1.8)))
    fitted = calibration.fit(logits, labels)
    grid = np.linspace(fitted * 0.8, fitted * 1.2, 401)
    nll = [float(torch.nn.functional.cross_entropy(logits / t, labels)) for t in grid]
    assert grid[int(np.argmin(nll))] == pytest.approx(fitted, abs=2 * (grid[1] - grid[0]))


def test_scaling_changes_no_prediction():
    logits = np.random.default_rng(1).normal(0, 4, (500, 10))
    for temperature in (0.3, 1.7, 9.0):
        np.testing.assert_array_equal(calibration.softmax(logits, temperature).argmax(1),
                                      logits.argmax(1))


def test_expected_calibration_error_by_hand():
    # four samples at confidence 0.95 (bin 15), three right: |0.75 - 0.95| = 0.2, weight 4/6;
    # two at confidence 0.55 (bin 9), both right: |1 - 0.55| = 0.45, weight 2/6
    def row(confidence, label):
        p = np.full(2, 1 - confidence)
        p[label] = confidence
        return p
    probabilities = np.array([row(0.95, 0)] * 4 + [row(0.55, 1)] * 2)
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx(
        4 / 6 * 0.2 + 2 / 6 * 0.45)


def test_a_perfectly_calibrated_sample_has_a_small_error():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (50000, 10))
    probabilities = calibration.softmax(logits)
    labels = _draw(rng, probabilities)
    assert calibration.expected_calibration_error(probabilities, labels) < 0.01
    overconfident = calibration.softmax(logits, 0.5)
    assert calibration.expected_calibration_error(overconfident, labels) > 0.1
