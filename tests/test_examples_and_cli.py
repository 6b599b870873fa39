"""The example script, the benchmarks' quick paths and `keras-recu convert` in this process.

The command line as a user runs it, each command a fresh process (a Keras 3
user's environment, without TF_USE_LEGACY_KERAS), is in test_cli_subprocess.py.
"""

import json
import runpy
from pathlib import Path

import pytest

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


@pytest.mark.tf_only
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


@pytest.mark.tf_only
def test_convert_benchmark_runs(capsys):
    namespace = runpy.run_path(str(ROOT / "benchmarks" / "convert.py"), run_name="benchmark")
    result = namespace["main"](["--runs", "2", "--samples", "4"])
    assert result["census"]["LceBconv2d"] == result["binary_convs"] == 18
    assert 0.26e6 < result["parameters"] < 0.28e6  # ResNet-20: about 0.27M
    assert result["parity"]["binary_layers_left_in_float"] == []


@pytest.mark.tf_only
@pytest.mark.parametrize("kind", ["vanilla", "two-stage"])
def test_imagenet_example_trains_converts_and_verifies(kind):
    """The README's ImageNet example, at 96x96 (the smallest size whose last stage LCE pads right)."""
    namespace = runpy.run_path(str(ROOT / "examples" / "imagenet_resnet18.py"), run_name="example")
    result = namespace["main"](kind, steps=1, batch_size=2, image_size=96, num_classes=10, verify_images=2)
    assert result["census"]["LceBconv2d"] == 16 and result["report"].is_binary
    assert result["report"].argmax_agreement == 1.0
