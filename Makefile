# Two entry points for a fresh machine: `make demo` (the main job) and
# `make test`. Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench clean

$(INSTALLED): setup.cfg pyproject.toml requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . -r requirements-test.txt
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/keras-recu demo --out runs/demo

test: $(INSTALLED)
	$(PY) -m pytest -q

bench: $(INSTALLED)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) runs build *.egg-info
