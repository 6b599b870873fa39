# Two entry points for a fresh machine: `make demo` (the main job) and
# `make test`. Each creates .venv and installs what it needs on first use,
# with the measured stack of constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet -c constraints.txt
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-tensorflow test-jax test-torch bench clean

# The offline default data set: Debian's Fashion-MNIST (IDX files under
# /usr/share/datasets/fashion-mnist). Installed when missing and apt-get is there.
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# One stamp per set of extras; each is redone when the metadata or the pins change.
STAMP_DEPS := setup.cfg pyproject.toml constraints.txt

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: $(PY) $(STAMP_DEPS)
	@if [ ! -f $(FASHION_MNIST) ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi
	$(PIP_INSTALL) pip
	$(PIP_INSTALL) -e ".[tensorflow,deploy,train]"
	touch $@

# Everything: the suite covers the larq front, deployment and the application
# on TensorFlow, and the core on JAX and torch (CPU builds).
$(VENV)/.installed-test: $(VENV)/.installed-demo
	$(PIP_INSTALL) -e ".[all]"
	touch $@

# The main job on the offline default, at a small budget (a few minutes on 2
# cores): ResNet-20 1w1a on 20k Fashion-MNIST images for 5 epochs, then
# convert, verify and report. The paper's budget is --epochs 600 on all data.
DEMO_FLAGS ?= --model resnet20_1w1a --dataset fashion_mnist --epochs 5 --warmup-epochs 1 \
	--batch-size 128 --limit-train 20000 --limit-test 5000 --verify-samples 1000

demo: $(VENV)/.installed-demo
	rm -rf runs/demo
	$(VENV)/bin/keras-recu train $(DEMO_FLAGS) --out runs/demo

# The suite on three Keras backends: on TensorFlow everything, on JAX and torch
# all that is not marked tf_only (conftest.py makes TensorFlow unimportable
# there, as on a machine without it). Two pytest workers, each given whole
# files so that built models and compiled functions are reused within a file.
# PYTEST_ARGS adds options, e.g. `make test PYTEST_ARGS="--durations=25"`.
PYTEST := $(PY) -m pytest -n 2 --dist loadfile
PYTEST_ARGS ?=

test-tensorflow test-jax test-torch: test-%: $(VENV)/.installed-test
	KERAS_BACKEND=$* $(PYTEST) $(PYTEST_ARGS)

# All three passes run whatever the others give; the target fails if any failed.
test: $(VENV)/.installed-test
	@failed=""; \
	for backend in tensorflow jax torch; do \
		echo "=== pytest on the $$backend backend"; \
		$(MAKE) --no-print-directory test-$$backend || failed="$$failed $$backend"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== test failures on:$$failed"; exit 1; fi; \
	echo "=== all three backends green"

bench: $(VENV)/.installed-demo
	$(PY) -m benchmarks.train_step

clean:
	rm -rf $(VENV) runs build *.egg-info
