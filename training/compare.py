"""python -m training compare: training recipes side by side, as means over training seeds.

One run's accuracy on other writers' digits moves by a point or more from seed to seed, more than
most single changes of recipe; so each recipe is trained with several seeds on the same split
(split_seed fixed) and judged by the mean and the spread."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from lens import digit
from training import architectures, augment, calibration, data, realworld
from training import train as training_loop
from training.train import TrainConfig, load_model, logits_of, train

# What a run's weights depend on besides its config: a kept checkpoint that other code trained is
# trained again.
TRAINING_CODE = (training_loop, augment, architectures, calibration, data, digit)

RECIPES = {
    "light": dict(augment="light", deskew=False),
    "light+deskew": dict(augment="light", deskew=True),
    "strokes+deskew": dict(augment="strokes", deskew=True),
    "elastic+deskew": dict(augment="elastic", deskew=True),
    "printed-ones+deskew": dict(augment="printed-ones", deskew=True),
    "handwriting": dict(augment="handwriting", deskew=False),
    "handwriting+deskew": dict(augment="handwriting", deskew=True),
}


def compare(recipes: list[str], seeds: list[int], base: TrainConfig, out: Path,
            say=print) -> dict:
    """{recipe: {figure: [value per seed]}}, written to `out` after every run. The checkpoints
    are kept beside it (`out` without suffix/<recipe>-<seed>.pt): run again, a run whose config
    and training code have not changed is evaluated again, not trained again."""
    code = fingerprint()
    kept = out.with_suffix("")
    kept.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    inputs: dict = {}   # the validation sets' model inputs, by deskew setting
    for name in recipes:
        config = replace(base, **RECIPES[name])
        if config.deskew not in inputs:
            spec = {"height": config.height, "width": config.width,
                    "foreground": config.foreground, "deskew": config.deskew}
            inputs[config.deskew] = {s: realworld.load(s, spec) for s in realworld.DIGIT_SETS}
        for seed in seeds:
            run, path = replace(config, seed=seed), kept / f"{name}-{seed}.pt"
            checkpoint = torch.load(path, weights_only=False) if path.is_file() else None
            kept_run = checkpoint and (checkpoint["config"], checkpoint.get("code"))
            if kept_run != (asdict(run), code):
                checkpoint = train(run, path, progress=False, extra={"code": code})
            figures = evaluate(checkpoint, inputs[config.deskew])
            for key, value in figures.items():
                results.setdefault(name, {}).setdefault(key, []).append(value)
            say(f"{name} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
            out.write_text(json.dumps({"base": asdict(base), "seeds": seeds, "results": results},
                                      indent=1) + "\n")
    return results


def fingerprint() -> str:
    digest = hashlib.sha256()
    for module in TRAINING_CODE:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def evaluate(checkpoint: dict, sets: dict) -> dict:
    model = load_model(checkpoint)
    figures = {"test": checkpoint["metrics"]["test_accuracy"]}
    for name, (images, labels) in sets.items():
        predicted = logits_of(model, torch.from_numpy(images)).argmax(1).numpy()
        figures[name] = float((predicted == np.array(labels)).mean())
    return figures


def table(results: dict) -> str:
    figures = list(next(iter(results.values())))
    lines = ["| recipe | " + " | ".join(f"{f} (mean ± sd)" for f in figures) + " |",
             "|---|" + "---|" * len(figures)]
    for name, values in results.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * np.mean(values[f]):.2f} ± {100 * np.std(values[f]):.2f}" for f in figures) + " |")
    return "\n".join(lines)
