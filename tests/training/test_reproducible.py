"""`make model` rebuilds the committed default bundle bit for bit: training, ONNX export, filter
pictures, dataset examples, measurements and the date it records (the Makefile's MODEL_DATE).
Minutes of work on 2 cores; the slowest test, and the only one that trains a full model."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models" / "mnist-cnn"


def _files(directory: Path) -> dict[str, bytes]:
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_model_rebuilds_the_default_bundle_bit_for_bit(tmp_path):
    out = tmp_path / "mnist-cnn"
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_DATE_EPOCH"}
    venv = Path(sys.executable).parents[1]   # stands for the one the Makefile would make
    subprocess.run(["make", "--no-print-directory", f"--assume-old={venv}/done", "model",
                    f"VENV={venv}", f"MODEL_OUT={out}",
                    f"CHECKPOINT={tmp_path / 'checkpoint.pt'}"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    rebuilt, committed = _files(out), _files(BUNDLE)
    assert sorted(rebuilt) == sorted(committed)
    differ = [name for name in committed if rebuilt[name] != committed[name]]
    assert not differ, f"rebuilt differently: {differ}"
