"""The GPU session's driver end to end on CPU (`python -m benchmarks.gpu.driver --smoke`), once, on JAX.

The smoke path is the GPU session's own (speed phase, the sweep beside the
full budget, the reports, the returned files) on the one-epoch budgets
`sweep-tiny` and `tiny`, one run each, the full one under mixed_bfloat16:
that run must leave a row with a finite accuracy and its policy recorded.
About 80 s on two cores, most of it XLA compiling ResNet-20 twice.
"""

import math
import subprocess
import sys

import pytest

from benchmarks import ablation_design
from benchmarks.launch import ROOT, module_env

pytestmark = pytest.mark.jax_only  # the GPU machine runs JAX; one pass is enough


def test_the_driver_smoke_runs_the_session_on_cpu_with_a_mixed_bfloat16_row(tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks.gpu.driver", "--smoke", "--out", str(out), "--results",
               str(results), "--seconds", "240", "--dtype-policy", "mixed_bfloat16"]
    done = subprocess.run(command, cwd=ROOT, env=module_env(KERAS_BACKEND="jax"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "(a) speed: 1 commands" in done.stdout and "tiny: mixed_bfloat16 (--dtype-policy)" in done.stdout
    (row,) = ablation_design.stores(results, "tiny")["runs"].rows()
    assert row["dtype_policy"] == "mixed_bfloat16" and row["variant"] == "recu"
    assert math.isfinite(float(row["test_accuracy"])) and 0 <= float(row["test_accuracy"]) <= 1
    (sweep,) = ablation_design.stores(results, "sweep-tiny")["runs"].rows()
    assert sweep["dtype_policy"] == "float32" and math.isfinite(float(sweep["test_accuracy"]))
    returned = {path.name for path in out.iterdir()}
    expected = {"results.tar.gz", "ablation-tiny.csv", "ablation-tiny-report.md", "ablation-sweep-tiny-report.md"}
    assert expected <= returned
    assert "dtype policy: mixed_bfloat16" in (out / "ablation-tiny-report.md").read_text()
    assert '"rows": {"sweep-tiny": 1, "tiny": 1}' in done.stdout
