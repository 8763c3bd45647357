"""Check a bundle end to end: schema, hashes, ONNX validity, shapes, and parity with torch."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from lens import bundle as lens_bundle
from lens.optvis import objectives as lens_objectives
from training.data import DataError

PARITY_TOLERANCE = 1e-5     # max abs error of ONNX outputs against torch, float32
GRADIENT_TOLERANCE = 1e-4   # relative to the largest gradient entry


FIDELITY_BAR = 0.98          # hidden-layer pictures that must beat the best training digit
CLASSES_READ_BAR = 0.9       # class pictures an independent reader must read as their class
LOGIT_PERCENTILE = 99        # a class picture's logit must beat this percentile of the digits'
NEIGHBOURS = 5               # the independent reader: k nearest training digits, in pixels
ECE_BAR = 0.02               # expected calibration error on the held-out digits, 15 bins
RECHECK_TOLERANCE = 0.005    # recomputed figures against the manifest's (shares, relative)


def verify(directory: Path, *, torch_parity: bool = True, quality: bool = True,
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
    _predictions(loaded, report, bars=quality)
    if quality:
        _picture_quality(loaded, report)


def _picture_quality(loaded: lens_bundle.Bundle, report) -> None:
    """The filter pictures against the training digits, with the bundle's own model.onnx: every
    hidden unit's picture must excite it more than the best digit does (dead units excused), and
    every class picture must read as its class and score above nearly every digit of it."""
    from training import units
    from training.export import training_digits

    manifest = loaded.manifest
    visual = manifest["visualizations"]["layers"]
    digits = training_digits(manifest["training"]["config"])
    outputs = manifest["graphs"]["model"]["outputs"]
    layers = [layer for layer in loaded.layers if layer["name"] in visual]
    on_digits = units.activity(loaded.model, outputs, digits.images, layers)
    beaten = excused = total = 0
    for layer in layers:
        name = layer["name"]
        pictures = _pictures(loaded, visual[name])
        on_picture = units.activity(loaded.model, outputs, pictures, [layer])[name]
        if layer["kind"] == "output":
            _class_pictures(loaded, pictures, on_picture, on_digits[name], digits, report)
            continue
        dead = units.dead(layer, on_picture, on_digits[name])
        if "dead" in visual[name] and dead != visual[name]["dead"]:
            raise lens_bundle.BundleError(f"{loaded.path / lens_bundle.MANIFEST}: {name}'s dead "
                                          f"units are {sorted(dead)}, the manifest says "
                                          f"{sorted(visual[name]['dead'])}")
        beats = np.diag(on_picture.degree) > on_digits[name].degree.max(axis=0)
        report(f"{name}: {int(beats.sum())} of {len(beats)} pictures excite their unit more than "
               f"the best of {len(digits.labels)} training digits" + (f"; dead: {sorted(dead, key=int)}" if dead else ""))
        beaten += int(beats.sum())
        excused += sum(1 for k in dead if not beats[int(k)])
        total += len(beats)
    share = beaten / max(total - excused, 1)
    line = (f"hidden layers: {beaten} of {total - excused} pictures beat the best digit "
            f"({share:.1%}; {excused} dead unit(s) excused; the bar is {FIDELITY_BAR:.0%})")
    if share < FIDELITY_BAR:
        raise lens_bundle.BundleError(f"{loaded.path}: {line}")
    report(line)


def _predictions(loaded: lens_bundle.Bundle, report, bars: bool) -> None:
    """Recompute, with model.onnx, what the manifest says about its predictions: the held-out
    accuracy and calibration error, and (digit bundles) the accuracy on the validation sets and
    the digit_like threshold and rejection rates. Fail where they differ, or (`bars`) where the
    calibration error is above its bar."""
    manifest = loaded.manifest
    metrics = manifest["training"]["metrics"]
    if "calibration" not in metrics:
        report("the bundle predates calibration and digit_like: its predictions are not rechecked")
        return
    try:
        from training import calibration, realworld
        from training.train import config_of, datasets, to_float
    except ImportError:   # torch: verify must also work where only the serving packages are
        report("torch not installed: the held-out and validation-set figures are not rechecked")
        return
    config = config_of(manifest["training"]["config"])
    try:
        images, labels = to_float(datasets(config).test, config)
    except DataError as error:
        report(f"the training data are not here ({error}): predictions not rechecked")
        return
    probabilities = loaded.model.run(["probabilities"], {"image": images.numpy()})[0]
    accuracy = float((probabilities.argmax(1) == labels.numpy()).mean())
    ece = calibration.expected_calibration_error(probabilities, labels.numpy())
    line = (f"held-out: accuracy {accuracy:.2%}, expected calibration error {ece:.4f} "
            f"({calibration.BINS} bins; bar {ECE_BAR})")
    if abs(accuracy - metrics["test_accuracy"]) > 1e-4:
        raise lens_bundle.BundleError(f"{loaded.path}: {line}; the manifest says accuracy "
                                      f"{metrics['test_accuracy']:.2%}")
    if bars and ece > ECE_BAR:
        raise lens_bundle.BundleError(f"{loaded.path}: {line}: the probabilities are not "
                                      "calibrated")
    report(line)
    if "digit_like" not in manifest:
        return
    accuracy, digit_like = realworld.measure(loaded.model, manifest["input"])
    line = (", ".join(f"{name.replace('_', ' ')} {value:.2%}" for name, value in accuracy.items())
            + f"; digit_like threshold {digit_like['threshold']}, non-digits rejected "
            + ", ".join(f"{kind} {share:.0%}" for kind, share in digit_like["rejected"].items()))
    recorded = manifest["digit_like"]
    # JPEG variants decode a little differently with another libjpeg: close, not equal
    # (a figure a bundle from before its validation set does not record is not rechecked)
    same = (all(abs(metrics[key] - value) <= RECHECK_TOLERANCE
                for key, value in accuracy.items() if key in metrics)
            and abs(digit_like["threshold"] - recorded["threshold"]) <= RECHECK_TOLERANCE
            * max(1.0, abs(recorded["threshold"]))
            and all(abs(recorded["rejected"].get(kind, -1) - share) <= RECHECK_TOLERANCE
                    for kind, share in digit_like["rejected"].items()))
    if not same:
        raise lens_bundle.BundleError(f"{loaded.path / lens_bundle.MANIFEST}: measured {line}, "
                                      "which is not what it records")
    report(line)


def _class_pictures(loaded, pictures, on_picture, on_digits, digits, report) -> None:
    flat = digits.images.reshape(len(digits.images), -1).astype(np.float32)
    queries = pictures.reshape(len(pictures), -1).astype(np.float32)
    distances = ((queries ** 2).sum(1)[:, None] - 2 * queries @ flat.T + (flat ** 2).sum(1)[None])
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :NEIGHBOURS]
    classes = len(pictures)
    read = np.array([np.bincount(digits.labels[row], minlength=classes).argmax() for row in nearest])
    logits = np.diag(on_picture.degree)
    bar = np.percentile(on_digits.degree, LOGIT_PERCENTILE, axis=0)
    line = (f"class pictures: {int((read == np.arange(classes)).sum())} of {classes} read as their "
            f"class by {NEIGHBOURS}-nearest training digits (bar {CLASSES_READ_BAR:.0%}); "
            f"{int((logits > bar).sum())} of {classes} logits above the {LOGIT_PERCENTILE}th "
            f"percentile of the training digits' (lowest ratio {float((logits / bar).min()):.2f})")
    if (read == np.arange(classes)).mean() < CLASSES_READ_BAR or not (logits > bar).all():
        raise lens_bundle.BundleError(f"{loaded.path}: {line}")
    report(line)


def _pictures(loaded: lens_bundle.Bundle, visual: dict) -> np.ndarray:
    """A layer's filter pictures as uint8 N x C x H x W, decoded from the bundle's PNGs."""
    from PIL import Image

    planes = []
    for k in range(visual["count"]):
        with Image.open(loaded.path / visual["filters"].format(index=k)) as image:
            pixels = np.asarray(image)
        planes.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
    return np.stack(planes)


def _torch_parity(loaded: lens_bundle.Bundle, report) -> None:
    try:
        import torch
    except ImportError:   # verify must also work where only the serving packages are installed
        report("torch not installed: parity with torch skipped")
        return
    from training import calibration
    from training.layers import Layer, capture, state_of
    from training.onnx_export import gradient_function, objective_targets
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
        temperature = calibration.temperature(loaded.manifest["training"]["metrics"])
        scaled = acts["logits"] / temperature
        want["probabilities"] = torch.softmax(scaled, 1).numpy()
        want[lens_bundle.DIGIT_SCORE] = (temperature * torch.logsumexp(scaled, 1)).numpy()
    for name in model_graph["outputs"]:
        error = float(np.abs(got[name] - want[name]).max())
        if error > PARITY_TOLERANCE:
            raise lens_bundle.BundleError(f"{loaded.path / model_graph['file']}: output {name} "
                                          f"differs from torch by {error:.2e} (> {PARITY_TOLERANCE})")
    report(f"model.onnx matches torch on {len(got)} outputs (max abs error <= {PARITY_TOLERANCE})")

    gradient_graph = loaded.manifest["graphs"]["gradient"]
    targets = objective_targets(layers)
    if gradient_graph["inputs"][1:] != [f"{kind}.{t}" for kind in ("weights", "energy") for t in targets]:
        report("gradient.onnx predates pre-activation inputs: parity with torch skipped for it")
        return
    channels = lens_objectives.targets(loaded.layers, gradient_graph["inputs"])
    feed = [rng.standard_normal((3, channels[t]), dtype=np.float32) for t in targets]
    feed += [rng.standard_normal(3, dtype=np.float32) for _ in targets]
    got = loaded.gradient.run(None, dict(zip(gradient_graph["inputs"], [images, *feed])))
    want = gradient_function(model, layers)(
        list(state_of(model).values()), *[torch.from_numpy(a) for a in (images, *feed)])
    for name, g, w in zip(gradient_graph["outputs"], got, want):
        error = float(np.abs(g - w.numpy()).max() / (np.abs(w.numpy()).max() + 1e-12))
        if error > GRADIENT_TOLERANCE:
            raise lens_bundle.BundleError(f"{loaded.path / gradient_graph['file']}: {name} differs "
                                          f"from torch autograd by {error:.2e} (> {GRADIENT_TOLERANCE})")
    report(f"gradient.onnx matches torch autograd on {len(got)} outputs "
           f"(relative error <= {GRADIENT_TOLERANCE})")
