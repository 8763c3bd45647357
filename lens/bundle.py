"""Read and check a model bundle: the directory that training writes and the service serves.

`read_manifest` + `check_files` need only the standard library and jsonschema; `load` also opens
both graphs with onnxruntime and checks that their inputs and outputs are what the manifest says.
Every failure is a BundleError whose message names the file and the problem.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import numpy as np
import onnxruntime as ort

MANIFEST = "manifest.json"
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")


DIGIT_SCORE = "digit_score"   # model.onnx's energy score, one per image (training/onnx_export.py)


class BundleError(Exception):
    """A bundle is missing a file, has a corrupt one, or does not match its manifest."""


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def read_manifest(directory: Path) -> dict:
    """Parse `directory/manifest.json` and validate it against the published JSON Schema."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: missing (is {directory} a model bundle?)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path}: not valid JSON ({error})") from None
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(manifest),
                    key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise BundleError(f"{path}: does not match the manifest schema at {where}: "
                          f"{errors[0].message}")
    return manifest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(directory: Path, manifest: dict) -> None:
    """Every file the manifest lists exists with its recorded size and sha256, and every file
    the manifest refers to is listed."""
    directory = Path(directory)
    referred = ({graph["file"] for graph in manifest["graphs"].values()} | set(pictures(manifest))
                | set(unit_files(manifest)))
    unlisted = sorted(referred - set(manifest["files"]))
    if unlisted:
        raise BundleError(f"{directory / MANIFEST}: refers to {unlisted[0]} but does not list "
                          "it under files")
    for name, entry in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path}: missing (listed in {MANIFEST})")
        if path.stat().st_size != entry["bytes"]:
            raise BundleError(f"{path}: {path.stat().st_size} bytes, the manifest says "
                              f"{entry['bytes']} (truncated or replaced?)")
        if sha256(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 does not match the manifest (corrupt or replaced)")


def pictures(manifest: dict) -> list[str]:
    """The files of every layer's filter pictures and atlas."""
    return [file for layer in manifest["visualizations"]["layers"].values()
            for file in (layer["atlas"], *(layer["filters"].format(index=k)
                                          for k in range(layer["count"])))]


def unit_files(manifest: dict) -> list[str]:
    """units.json and every unit's example sprite; none in bundles built before they existed."""
    units = manifest.get("units")
    if units is None:
        return []
    return [units["file"], *(units["sprites"].format(layer=name, index=k)
                             for name, layer in manifest["visualizations"]["layers"].items()
                             for k in range(layer["count"]))]


def read_file(directory: Path, manifest: dict, name: str) -> bytes:
    """The bytes of a file the manifest lists, checked against its size and sha256."""
    path = Path(directory) / name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BundleError(f"{path}: cannot be read ({error.strerror})") from None
    entry = manifest["files"][name]
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"{path}: does not match the manifest (changed since it was made?)")
    return data


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict
    model: ort.InferenceSession      # image -> logits, probabilities, activations
    gradient: ort.InferenceSession   # image, objective weights -> objective and gradients

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        spec = self.manifest["input"]
        return spec["channels"], spec["height"], spec["width"]

    @property
    def layers(self) -> list[dict]:
        return self.manifest["layers"]

    def layer(self, name: str) -> dict:
        for layer in self.layers:
            if layer["name"] == name:
                return layer
        raise KeyError(name)


def session_options(threads: int = 0) -> ort.SessionOptions:
    """How a bundle's graphs are run. Graph optimisation stops at "extended": the "all" level adds
    the NCHWc layout transform, whose reorders cost these few-channel convolutions more than its
    kernels gain (a 512x512 gradient.onnx step 137 -> 129 ms, a batch of 256 through model.onnx
    15.7 -> 14.4 ms, one image unchanged; 1 thread, measured side by side)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.log_severity_level = 3
    return options


def load(directory: Path, *, threads: int = 0, verify_hashes: bool = True) -> Bundle:
    """Validate the bundle in `directory` and open its graphs. `threads`: onnxruntime intra-op
    threads per session (0 = onnxruntime's default, one per core)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if verify_hashes:
        check_files(directory, manifest)
    options = session_options(threads)
    sessions = {}
    for role, graph in manifest["graphs"].items():
        path = directory / graph["file"]
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises several unrelated types for bad files
            raise BundleError(f"{path}: onnxruntime cannot load it ({_first_line(error)})") from None
        _check_io(path, session, graph)
        sessions[role] = session
    bundle = Bundle(directory, manifest, sessions["model"], sessions["gradient"])
    _check_shapes(bundle)
    return bundle


def _check_io(path: Path, session: ort.InferenceSession, graph: dict) -> None:
    for kind, declared, actual in (("inputs", graph["inputs"], session.get_inputs()),
                                   ("outputs", graph["outputs"], session.get_outputs())):
        names = [node.name for node in actual]
        if names != declared:
            raise BundleError(f"{path}: {kind} are {names}, the manifest says {declared}")


def _check_shapes(bundle: Bundle) -> None:
    """One tiny batch through model.onnx: every activation has the shape the manifest records."""
    path = bundle.path / bundle.manifest["graphs"]["model"]["file"]
    image = np.zeros((1, *bundle.input_shape), np.float32)
    try:
        outputs = dict(zip(bundle.manifest["graphs"]["model"]["outputs"],
                           bundle.model.run(None, {"image": image})))
    except Exception as error:
        raise BundleError(f"{path}: fails on a {list(image.shape)} image ({_first_line(error)})") from None
    expected = {"logits": [len(bundle.labels)], "probabilities": [len(bundle.labels)]}
    expected |= {layer["name"]: layer["shape"] for layer in bundle.layers} | {DIGIT_SCORE: []}
    if "digit_like" in bundle.manifest and bundle.manifest["digit_like"]["output"] not in outputs:
        raise BundleError(f"{path}: has no output {bundle.manifest['digit_like']['output']!r}, "
                          "which the manifest's digit_like names")
    for name, array in outputs.items():
        if name in expected and list(array.shape[1:]) != expected[name]:
            raise BundleError(f"{path}: output {name} has shape {list(array.shape[1:])}, "
                              f"the manifest says {expected[name]}")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
