"""Short real training runs: the model learns, runs are reproducible, and the CLI builds a
bundle that verifies, for the lecture net and for a user's own module."""
import json

import numpy as np
import onnxruntime as ort
import torch

from training import calibration
from training.__main__ import main
from training.train import TrainConfig, datasets, load_model, train

QUICK = dict(limit=1000, holdout=500, epochs=3)


def test_short_run_learns_and_is_reproducible(tmp_path):
    first = train(TrainConfig(**QUICK), tmp_path / "a.pt", progress=False)
    again = train(TrainConfig(**QUICK), tmp_path / "b.pt", progress=False)
    other = train(TrainConfig(**QUICK, seed=1), tmp_path / "c.pt", progress=False)
    assert first["metrics"]["test_accuracy"] >= 0.80   # chance is 0.10
    assert first["metrics"]["test_accuracy"] == again["metrics"]["test_accuracy"]
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, again["state_dict"][key]), key
    assert not torch.equal(first["state_dict"]["net.0.weight"], other["state_dict"]["net.0.weight"])


def _rows(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_the_split_is_fixed_while_the_training_seed_varies():
    first, other_seed = datasets(TrainConfig(seed=0)), datasets(TrainConfig(seed=7))
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(first, part).images, getattr(other_seed, part).images)
    other_split = datasets(TrainConfig(split_seed=1))
    assert _rows(other_split.test.images) != _rows(first.test.images)
    assert (len(first.train.labels), len(first.validation.labels), len(first.test.labels)) == (
        3500, 500, 1000)
    train, validation, test = (_rows(getattr(first, p).images) for p in ("train", "validation", "test"))
    assert not (train & validation) and not (train & test) and not (validation & test)


def test_checkpoint_reloads_to_the_same_predictions(tmp_path):
    checkpoint = train(TrainConfig(limit=200, holdout=100, epochs=1), tmp_path / "m.pt", progress=False)
    model = load_model(torch.load(tmp_path / "m.pt", weights_only=False))
    images = torch.rand(4, 1, 28, 28)
    assert checkpoint["input"]["mean"][0] > 0.05   # normalisation measured on the data
    assert torch.equal(model(images), load_model(checkpoint)(images))


def _build(tmp_path, *extra):
    out = tmp_path / "bundle"
    argv = ["build", "--limit", "300", "--holdout", "200", "--epochs", "1",
            "--checkpoint", str(tmp_path / "ck.pt"), "--out", str(out), *extra]
    assert main(argv) == 0
    # one epoch on 300 digits: the picture-quality bars are for published bundles
    assert main(["verify", "--no-quality", str(out)]) == 0
    return json.loads((out / "manifest.json").read_text())


def test_cli_build_writes_a_bundle_that_verifies(tmp_path, capsys):
    manifest = _build(tmp_path, "--name", "tiny", "--version", "0.1")
    assert (manifest["name"], manifest["version"]) == ("tiny", "0.1")
    assert [layer["name"] for layer in manifest["layers"]] == ["conv1", "conv2", "dense1", "logits"]
    assert manifest["visualizations"]["layers"]["logits"]["count"] == 10
    assert not (tmp_path / "bundle.partial").exists()
    assert "valid bundle" in capsys.readouterr().out
    # served as trained: deskewed, probabilities scaled by the temperature fitted at training
    assert manifest["input"]["deskew"] is True
    temperature = manifest["training"]["metrics"]["calibration"]["temperature"]
    session = ort.InferenceSession(str(tmp_path / "bundle" / "model.onnx"))
    images = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    logits, probabilities, score = session.run(["logits", "probabilities", "digit_score"],
                                               {"image": images})
    np.testing.assert_allclose(probabilities, calibration.softmax(logits, temperature), atol=1e-6)
    np.testing.assert_allclose(score, temperature * np.log(np.exp(logits / temperature).sum(1)),
                               rtol=1e-5)
    digit_like = manifest["digit_like"]
    assert digit_like["passed"]["handwriting"] >= 0.97
    assert set(digit_like["rejected"]) >= {"blank", "photo", "noise", "letter", "all"}


def test_cli_builds_a_users_own_module(tmp_path):
    manifest = _build(tmp_path, "--architecture", "tests.training.custom_net:TinyNet")
    assert manifest["architecture"] == "tests.training.custom_net:TinyNet"
    assert [(l["name"], l["any_size"]) for l in manifest["layers"]] == [
        ("conv1", True), ("conv2", True), ("logits", False)]


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", f"idx:{tmp_path}", "--checkpoint", str(tmp_path / "x.pt")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
