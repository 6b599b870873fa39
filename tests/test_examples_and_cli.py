"""The example script and the command line run end to end on a tiny budget."""

import json
import math
import runpy
import sys
from pathlib import Path

from keras_recu.app import cli

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_example_runs():
    namespace = runpy.run_path(str(ROOT / "examples" / "recu_quickstart.py"), run_name="example")
    accuracy = namespace["main"](epochs=2, samples=400)
    assert 0.0 <= accuracy <= 1.0


def test_train_step_benchmark_quick_path_runs(capsys):
    """The benchmark's code path, on a toy size (no timing asserted)."""
    namespace = runpy.run_path(str(ROOT / "benchmarks" / "train_step.py"), run_name="benchmark")
    namespace["main"](["--quick", "--jit", "off"])
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
    assert {"floor", "recu"} <= set(result["runs"][0]["variants"])


def test_cli_convert_prints_summary_census_and_report(tmp_path, capsys):
    import keras

    from keras_recu.layers import QuantDense, ReCUConv2D

    model = keras.Sequential([keras.Input((8, 8, 4)), ReCUConv2D(8, 3, padding="same"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    code = cli.main(["convert", str(tmp_path / "m.keras"), "-o", str(tmp_path / "m.tflite"), "--verify", "--samples", "4"])
    out = capsys.readouterr().out
    assert code == 0 and (tmp_path / "m.tflite").exists()
    assert "recu_conv2d" in out and "1-bit MACs" in out  # the summary table
    assert "LceBconv2d x1" in out and "left in float by LCE: none" in out and "argmax agreement" in out

    binary_head = keras.Sequential([keras.Input((4,)), QuantDense(2, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="head")])
    binary_head.save(tmp_path / "head.keras")
    assert cli.main(["convert", str(tmp_path / "head.keras")]) == 1
    assert "head: LCE has no binary fully-connected op" in capsys.readouterr().err
    assert cli.main(["convert", str(tmp_path / "missing.keras")]) == 2


def test_keras3_front_runs_without_tf_keras(tmp_path):
    """Users of the Keras 3 front do not set TF_USE_LEGACY_KERAS; the suite does."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "keras_recu.app.cli", "train", "--out", str(tmp_path), "--dataset", "synthetic",
         "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "32", "--limit-train", "64",
         "--limit-test", "32", "--verify-samples", "8", "--verbose", "0"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["deployment"]["census"]["LceBconv2d"] == 18


def test_convert_benchmark_runs(capsys):
    namespace = runpy.run_path(str(ROOT / "benchmarks" / "convert.py"), run_name="benchmark")
    result = namespace["main"](["--runs", "2", "--samples", "4"])
    assert result["census"]["LceBconv2d"] == result["binary_convs"] == 18
    assert 0.26e6 < result["parameters"] < 0.28e6  # ResNet-20: about 0.27M
    assert result["parity"]["binary_layers_left_in_float"] == []
