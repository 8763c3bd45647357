"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017): one number
T that divides the logits so that a probability of 0.9 is right about 9 times in 10. It leaves
the argmax (and the logits the explanations use) unchanged."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BINS = 15
SEARCH = (0.05, 20.0)   # temperatures considered


def fit(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`, to 4 decimals.
    The NLL is convex in 1/T, so a golden-section search over 1/T finds it."""
    logits = logits.double()
    def nll(inverse: float) -> float:
        return float(F.cross_entropy(logits * inverse, labels))
    low, high = 1 / SEARCH[1], 1 / SEARCH[0]
    ratio = (5 ** 0.5 - 1) / 2
    for _ in range(80):   # shrinks the interval by 0.618**80: far below 4 decimals of T
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        low, high = (low, b) if nll(a) < nll(b) else (a, high)
    return round(2 / (low + high), 4)


def temperature(metrics: dict) -> float:
    """The temperature a checkpoint's or manifest's training metrics record (1: none fitted)."""
    return metrics.get("calibration", {}).get("temperature", 1.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by their share of
    the samples (Naeini et al. 2015; Guo et al.'s 15 bins)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def report(temperature: float, test_logits: torch.Tensor, test_labels: torch.Tensor) -> dict:
    """What the manifest records: T, and the held-out ECE before and after scaling by it."""
    logits, labels = test_logits.double().numpy(), test_labels.numpy()
    return {"method": "temperature scaling fitted on the validation split (NLL)",
            "temperature": temperature, "bins": BINS,
            "test_ece": round(expected_calibration_error(softmax(logits, temperature), labels), 4),
            "test_ece_uncalibrated": round(expected_calibration_error(softmax(logits), labels), 4)}
