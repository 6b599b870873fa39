#!/usr/bin/env bash
# The GPU session (issue 9 item 8, issue 10): see benchmarks/gpu/driver.py and BENCHMARKS.md.
# The repository root is put on PYTHONPATH: the package is this checkout, not installed.
# From the repository root, with .whl (keras, namex, optree wheels) and .data (Fashion-MNIST IDX) carried:
#   bash benchmarks/gpu/run.sh                      # on the GPU machine; results in $OUT
#   OUT=/tmp/out PYTHON=.venv/bin/python bash benchmarks/gpu/run.sh --smoke --seconds 600   # CPU check
set -uo pipefail
START=$(date +%s)
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
OUT=${OUT:-/tmp/recu-gpu-out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if ! "$PY" -c "import keras" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
# Preflight: the stack imports and sees its device, and the data are there; else stop at once.
"$PY" -c 'import sys, numpy, keras, jax, keras_recu; print("preflight: python", sys.version.split()[0], "numpy", numpy.__version__, "keras", keras.__version__, "jax", jax.__version__, jax.devices())' || exit 1
ls .data/*-ubyte.gz >/dev/null || { echo "no Fashion-MNIST IDX files in .data/"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || echo "no nvidia-smi"
"$PY" -m benchmarks.gpu.driver --out "$OUT" --started "$START" "$@" 2>&1 | tee "$OUT/log.txt"
