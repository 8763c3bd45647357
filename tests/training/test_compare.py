"""python -m training compare keeps each run's checkpoint and trains it again only when its
config or the training code changed (tiny runs, one validation set)."""
from dataclasses import replace
from types import SimpleNamespace

import pytest

from training import compare, realworld
from training.train import TrainConfig

TINY = TrainConfig(limit=64, holdout=200, validation=0, epochs=1)


@pytest.fixture
def runs(monkeypatch):
    """compare.compare, counting the training runs it starts."""
    monkeypatch.setattr(realworld, "DIGIT_SETS", ("printed",))
    trained = []
    real_train = compare.train
    monkeypatch.setattr(compare, "train", lambda run, *a, **k: trained.append(run) or
                        real_train(run, *a, **k))
    return trained


def test_a_kept_run_is_evaluated_again_not_trained_again(tmp_path, runs):
    out = tmp_path / "compare.json"
    first = compare.compare(["light"], [0], TINY, out, say=lambda _: None)
    again = compare.compare(["light"], [0], TINY, out, say=lambda _: None)
    assert len(runs) == 1 and first == again
    assert set(first["light"]) == {"test", "printed"}
    compare.compare(["light"], [0], replace(TINY, epochs=2), out, say=lambda _: None)
    assert len(runs) == 2   # another config


def test_a_run_that_other_code_trained_is_trained_again(tmp_path, runs, monkeypatch):
    out = tmp_path / "compare.json"
    compare.compare(["light"], [0], TINY, out, say=lambda _: None)
    monkeypatch.setattr(compare, "fingerprint", lambda: "changed code")
    compare.compare(["light"], [0], TINY, out, say=lambda _: None)
    assert len(runs) == 2


def test_the_fingerprint_follows_the_training_code(tmp_path, monkeypatch):
    names = {module.__name__ for module in compare.TRAINING_CODE}
    assert {"training.train", "training.augment", "lens.digit"} <= names
    source = tmp_path / "module.py"
    monkeypatch.setattr(compare, "TRAINING_CODE", (SimpleNamespace(__file__=str(source)),))
    source.write_text("SCALE = 1\n")
    before = compare.fingerprint()
    source.write_text("SCALE = 2\n")
    assert compare.fingerprint() != before
