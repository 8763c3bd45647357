"""bench's pictures part (python -m bench --parts pictures): its "before" settings are those of
commit 0cf55c3, and the quick run measures every layer of the default bundle with both."""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from bench import pictures
from bench.__main__ import QUICK
from bench.report import tables
from lens.optvis.render import Settings
from training.export import VISUALIZATION

ROOT = Path(__file__).resolve().parents[1]


def _visualization_at(commit: str) -> dict[str, Settings]:
    """training/export.py's VISUALIZATION as the commit has it (git show, parsed, not run)."""
    try:
        source = subprocess.run(["git", "show", f"{commit}:training/export.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no git history with {commit} here")
    value = next(node.value for node in ast.parse(source).body if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "VISUALIZATION" for t in node.targets))
    return {ast.literal_eval(key): Settings(**{k.arg: ast.literal_eval(k.value) for k in call.keywords})
            for key, call in zip(value.keys, value.values)}


def test_before_is_0cf55c3s_settings_and_after_the_current_ones():
    assert pictures.BEFORE == _visualization_at(pictures.BEFORE_COMMIT)
    assert pictures.SETTINGS == {"before": pictures.BEFORE, "after": VISUALIZATION}
    before, after = pictures.BEFORE, VISUALIZATION
    assert [before[k].steps for k in ("conv", "dense", "output")] == [96, 128, 128]
    assert [after[k].steps for k in ("conv", "dense", "output")] == [160, 160, 350]
    assert [after[k].preactivation_steps for k in ("conv", "dense", "output")] == [40, 40, 0]
    assert all(s.preactivation_steps == 0 for s in before.values())


def test_quick_run_times_every_layer_with_both_settings():
    result = pictures.run(QUICK["picture_rounds"], QUICK["pictures_per_layer"])
    rows = result["layers"]
    assert {row["kind"] for row in rows.values()} == {"conv", "dense", "output"}
    assert list(rows) == ["conv1", "conv2", "dense1", "logits"]
    for name, row in rows.items():
        assert row["pictures"] == QUICK["pictures_per_layer"]
        for which, settings in pictures.SETTINGS.items():
            measured = row[which]
            assert measured["batch_s"]["n"] == QUICK["picture_rounds"]
            assert measured["batch_s"]["min"] > 0 and measured["per_picture_ms"]["min"] > 0
            # one gradient run per step, one before and one after
            assert measured["runs_per_picture"] == settings[row["kind"]].steps + 2
            assert 0 <= measured["fidelity"]["beat_best_digit"] <= row["pictures"]
        assert row["ratio"]["median"] > 0
        # the current settings and engine reproduce the bundle's own pictures
        assert row["after_matches_bundle"], name
    text = tables({"pictures": result}, [])
    assert all(f"| {name} ({row['kind']}) |" in text for name, row in rows.items())
    assert "| all layers |" in text
