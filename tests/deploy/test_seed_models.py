"""deploy/seed_models.py, the copy step of compose's models-init and the Kubernetes
initContainer, run as they run it (python deploy/seed_models.py SOURCE TARGET, from WORKDIR)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lens import bundle
from tests.deploy.files import ROOT


def seed(source: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "deploy/seed_models.py", str(source), str(target)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def make_bundle(directory: Path, content: str) -> None:
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(content)
    (directory / "filters").mkdir()
    (directory / "filters" / "atlas.png").write_text(content)


def test_copies_missing_bundles_and_keeps_existing_ones(tmp_path):
    source, target = tmp_path / "image-models", tmp_path / "volume"
    make_bundle(source / "mnist-cnn", "baked")
    make_bundle(source / "other", "baked other")
    (source / "not-a-bundle").mkdir()
    make_bundle(target / "mnist-cnn", "retrained")        # the trainer wrote this one
    result = seed(source, target)
    assert result.returncode == 0, result.stderr
    assert (target / "mnist-cnn" / "manifest.json").read_text() == "retrained"
    assert (target / "other" / "filters" / "atlas.png").read_text() == "baked other"
    assert sorted(p.name for p in target.iterdir()) == ["mnist-cnn", "other"]
    assert "copied other into" in result.stdout
    assert "bundles there: mnist-cnn, other" in result.stdout
    again = seed(source, target)                          # idempotent: compose runs it every `up`
    assert again.returncode == 0 and "copied nothing" in again.stdout


def test_an_interrupted_copy_is_redone(tmp_path):
    source, target = tmp_path / "image-models", tmp_path / "volume"
    make_bundle(source / "mnist-cnn", "baked")
    make_bundle(target / ".mnist-cnn.seeding", "half")
    assert seed(source, target).returncode == 0
    assert (target / "mnist-cnn" / "manifest.json").read_text() == "baked"
    assert sorted(p.name for p in target.iterdir()) == ["mnist-cnn"]


def test_the_committed_bundle_survives_the_copy(tmp_path):
    target = tmp_path / "models"       # does not exist yet, as an emptyDir's content
    assert seed(ROOT / "models", target).returncode == 0
    manifest = json.loads((target / "mnist-cnn" / "manifest.json").read_text())
    assert len(manifest["files"]) > 4
    bundle.check_files(target / "mnist-cnn", manifest)   # size and sha256 of every listed file


def test_usage_errors(tmp_path):
    result = subprocess.run([sys.executable, "-I", "deploy/seed_models.py"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "SOURCE TARGET" in result.stderr
    missing = seed(tmp_path / "nowhere", tmp_path / "volume")
    assert missing.returncode != 0 and "is not a directory" in missing.stderr
