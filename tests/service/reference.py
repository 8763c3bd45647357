"""The bundle's model run directly with onnxruntime: the independent reference the service's
answers are compared with (no lens, no service code)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "mnist-cnn"


class Reference:
    def __init__(self, directory: Path = MODEL_DIR):
        self.manifest = json.loads((directory / "manifest.json").read_text())
        self.session = ort.InferenceSession(str(directory / "model.onnx"),
                                            providers=["CPUExecutionProvider"])
        self.outputs = [output.name for output in self.session.get_outputs()]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """N x 28 x 28 (or N x 1 x 28 x 28) floats in [0, 1] -> every output by name."""
        batch = np.asarray(images, np.float32).reshape(len(images), 1, 28, 28)
        return dict(zip(self.outputs, self.session.run(None, {"image": batch})))

    def run_png(self, png: bytes) -> dict[str, np.ndarray]:
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), np.float32) / 255
        return {name: value[0] for name, value in self.run(pixels[None]).items()}
