"""The first conv layer's raw kernels, read from model.onnx's initializers (onnx, not torch)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def first_conv_kernels(model: bytes) -> np.ndarray | None:
    """From model.onnx's bytes: out_channels x in_channels x kh x kw, or None if the first
    Conv's weight is not an initializer (e.g. computed by other nodes)."""
    graph = onnx.load_from_string(model).graph
    conv = next((node for node in graph.node if node.op_type == "Conv"), None)
    if conv is None:
        return None
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    weight = initializers.get(conv.input[1])
    return None if weight is None else numpy_helper.to_array(weight).astype(np.float32)


def kernel_planes(kernels: np.ndarray) -> np.ndarray:
    """Kernels on one symmetric scale: 0 is mid-grey, the layer's largest |weight| is black
    (negative) or white (positive), so kernels can be compared with each other."""
    peak = float(np.abs(kernels).max()) or 1.0
    return 0.5 + 0.5 * kernels / peak
