"""Check a bundle end to end: schema, hashes, ONNX validity, shapes, and parity with torch."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from lens import bundle as lens_bundle

PARITY_TOLERANCE = 1e-5     # max abs error of ONNX outputs against torch, float32
GRADIENT_TOLERANCE = 1e-4   # relative to the largest gradient entry


def verify(directory: Path, *, torch_parity: bool = True,
           report: Callable[[str], None] = print) -> None:
    """Raise BundleError naming the file and problem at the first failed check."""
    directory = Path(directory)
    manifest = lens_bundle.read_manifest(directory)
    report("manifest matches lens/manifest.schema.json")
    lens_bundle.check_files(directory, manifest)
    report(f"{len(manifest['files'])} files present with their sha256")
    for graph in manifest["graphs"].values():
        path = directory / graph["file"]
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as error:  # onnx raises several types for malformed graphs
            raise lens_bundle.BundleError(f"{path}: fails the ONNX checker ({error})") from None
    report("graphs pass the ONNX checker")
    loaded = lens_bundle.load(directory, verify_hashes=False)
    report("graphs load in onnxruntime with the manifest's inputs, outputs and shapes")
    if torch_parity:
        _torch_parity(loaded, report)


def _torch_parity(loaded: lens_bundle.Bundle, report) -> None:
    try:
        import torch
    except ImportError:   # verify must also work where only the serving packages are installed
        report("torch not installed: parity with torch skipped")
        return
    from training.layers import Layer, capture, state_of
    from training.onnx_export import gradient_function
    from training.train import load_model

    checkpoint = loaded.path / "checkpoint.pt"
    if not checkpoint.is_file():
        report("no checkpoint.pt in the bundle: parity with torch skipped")
        return
    model = load_model(torch.load(checkpoint, map_location="cpu", weights_only=False))
    layers = [Layer(**{k: v for k, v in layer.items() if k != "any_size"}) for layer in loaded.layers]
    rng = np.random.default_rng(0)
    images = rng.random((3, *loaded.input_shape), dtype=np.float32)

    model_graph = loaded.manifest["graphs"]["model"]
    got = dict(zip(model_graph["outputs"], loaded.model.run(None, {"image": images})))
    with torch.no_grad():
        acts = capture(model, layers, state_of(model), torch.from_numpy(images))
        want = {name: act.numpy() for name, act in acts.items()}
        want["probabilities"] = torch.softmax(acts["logits"], 1).numpy()
    for name in model_graph["outputs"]:
        error = float(np.abs(got[name] - want[name]).max())
        if error > PARITY_TOLERANCE:
            raise lens_bundle.BundleError(f"{loaded.path / model_graph['file']}: output {name} "
                                          f"differs from torch by {error:.2e} (> {PARITY_TOLERANCE})")
    report(f"model.onnx matches torch on {len(got)} outputs (max abs error <= {PARITY_TOLERANCE})")

    gradient_graph = loaded.manifest["graphs"]["gradient"]
    weights = [rng.standard_normal((3, layer.channels), dtype=np.float32) for layer in layers]
    energy = [rng.standard_normal(3, dtype=np.float32) for _ in layers]
    got = loaded.gradient.run(None, dict(zip(gradient_graph["inputs"], [images, *weights, *energy])))
    want = gradient_function(model, layers)(
        list(state_of(model).values()), *[torch.from_numpy(a) for a in (images, *weights, *energy)])
    for name, g, w in zip(gradient_graph["outputs"], got, want):
        error = float(np.abs(g - w.numpy()).max() / (np.abs(w.numpy()).max() + 1e-12))
        if error > GRADIENT_TOLERANCE:
            raise lens_bundle.BundleError(f"{loaded.path / gradient_graph['file']}: {name} differs "
                                          f"from torch autograd by {error:.2e} (> {GRADIENT_TOLERANCE})")
    report(f"gradient.onnx matches torch autograd on {len(got)} outputs "
           f"(relative error <= {GRADIENT_TOLERANCE})")
