# Two entry points for a fresh machine: `make demo` (the main job) and
# `make test`. Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test bench clean

# The offline default data set: Debian's Fashion-MNIST (IDX files under
# /usr/share/datasets/fashion-mnist). Installed when missing and apt-get is there.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

$(INSTALLED): setup.cfg pyproject.toml requirements-test.txt
	@if [ ! -f $(FASHION_MNIST) ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . -r requirements-test.txt
	touch $@

# The main job on the offline default, at a small budget (a few minutes on 2
# cores): ResNet-20 1w1a on 20k Fashion-MNIST images for 5 epochs, then
# convert, verify and report. The paper's budget is --epochs 600 on all data.
DEMO_FLAGS ?= --model resnet20_1w1a --dataset fashion_mnist --epochs 5 --warmup-epochs 1 \
	--batch-size 128 --limit-train 20000 --limit-test 5000 --verify-samples 1000

demo: $(INSTALLED)
	rm -rf runs/demo
	$(VENV)/bin/keras-recu train $(DEMO_FLAGS) --out runs/demo

test: $(INSTALLED)
	$(PY) -m pytest -q

bench: $(INSTALLED)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) runs build *.egg-info
