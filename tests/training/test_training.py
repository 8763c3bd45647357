"""Short real training runs: the model learns, runs are reproducible, and the CLI builds a
bundle that verifies, for the lecture net and for a user's own module."""
import json

import torch

from training.__main__ import main
from training.train import TrainConfig, load_model, train

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


def test_cli_builds_a_users_own_module(tmp_path):
    manifest = _build(tmp_path, "--architecture", "tests.training.custom_net:TinyNet")
    assert manifest["architecture"] == "tests.training.custom_net:TinyNet"
    assert [(l["name"], l["any_size"]) for l in manifest["layers"]] == [
        ("conv1", True), ("conv2", True), ("logits", False)]


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    assert main(["train", "--data", f"idx:{tmp_path}", "--checkpoint", str(tmp_path / "x.pt")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
