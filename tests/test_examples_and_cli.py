"""The example script and the command line run end to end on a tiny budget."""

import json
import math
import runpy
import sys
from pathlib import Path

from keras_recu import cli

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_example_runs():
    namespace = runpy.run_path(str(ROOT / "examples" / "recu_quickstart.py"), run_name="example")
    accuracy = namespace["main"](epochs=2, samples=400)
    assert 0.0 <= accuracy <= 1.0


def test_cli_demo_writes_metrics(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--epochs", "2", "--samples", "400"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    a = 0.14 / (math.e - 1)
    assert metrics["tau_per_epoch"] == [0.85, round(a * math.exp(0.5) + 0.85 - a, 5)]
    assert metrics["reloaded_model_identical"] is True
    assert (tmp_path / "model.keras").exists()
    assert "small budget" in capsys.readouterr().out


def test_train_step_benchmark_quick_path_runs(capsys):
    """The benchmark's code path, on a toy size (no timing asserted)."""
    namespace = runpy.run_path(str(ROOT / "benchmarks" / "train_step.py"), run_name="benchmark")
    namespace["main"](["--quick", "--jit", "off"])
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
    assert {"floor", "recu"} <= set(result["runs"][0]["variants"])
