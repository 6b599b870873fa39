#!/usr/bin/env bash
# The GPU session (issue 17 item 4; issues 9 and 10 before): see benchmarks/gpu/driver.py and BENCHMARKS.md,
# "GPU session". ONE device call of about 9 minutes: (a) the speed rows still missing (driver.SPEED_COMMANDS,
# filled in by the lead, <= 150 s), (b) the ste sweep-e4's missing runs, 8 at once, beside (c) full-e50 by
# tier, 8 at once, each run started only if predicted to end by the deadline, (d) the reports.
#
# Before the call, on the machine that makes the call, from the repository root (the GPU machine has no
# network; it runs Python 3.12):
#   pip download keras==3.15.1 namex==0.1.0 optree==0.20.0 --no-deps -d .whl --only-binary=:all: \
#       --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
#   # the versions of constraints.txt; 3 wheels, 2.8 MB (optree's is cp312 manylinux_2_28)
#   mkdir -p .data && cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .data/    # the 4 IDX files, ~30 MB
# The call (carry [".whl", ".data"]; expected wall time 570-590 s: preflight ~20 s, then the driver ends
# everything by 560 s after this script started; give it timeout_s=600):
#   bash benchmarks/gpu/run.sh                      # on the GPU machine; results in $OUT
# CPU check of the same path (about 80 s on 2 cores):
#   OUT=/tmp/out PYTHON=.venv/bin/python bash benchmarks/gpu/run.sh --smoke --seconds 300
# The repository root is put on PYTHONPATH: the package is this checkout, not installed.
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
if [[ " $* " != *" --smoke "* ]]; then
  ls .data/*-ubyte.gz >/dev/null || { echo "no Fashion-MNIST IDX files in .data/"; exit 1; }
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || echo "no nvidia-smi"
fi
"$PY" -m benchmarks.gpu.driver --out "$OUT" --started "$START" "$@" 2>&1 | tee "$OUT/log.txt"
