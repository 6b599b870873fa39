"""The main job end to end on a tiny budget: artefacts, resume, errors, distribution."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keras_recu.app import cli
from keras_recu.app.train import TrainConfig, run

ROOT = Path(__file__).resolve().parents[1]


def tiny(out, **overrides):
    settings = dict(
        out=str(out), model="resnet20_1w1a", dataset="synthetic", epochs=3, batch_size=32,
        warmup_epochs=1, limit_train=96, limit_test=32, verify_samples=16, verbose=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def schedule(epoch, epochs, tau_min=0.85, tau_max=0.99):
    a = (tau_max - tau_min) / (math.e - 1)
    return a * math.exp(epoch / epochs) + tau_min - a


def test_train_writes_every_artefact_and_resumes_exactly(tmp_path):
    out = tmp_path / "run"
    first = run(tiny(out, stop_after=2))
    assert len(first["history"]["loss"]) == 2
    for name in ("model.keras", "model.tflite", "metrics.json", "summary.txt", "report.md",
                 "training.png", "tau.png", "weights.png", "checkpoints/last.keras", "config.json"):
        assert (out / name).exists(), name
    deployment = first["deployment"]
    assert deployment["census"]["LceBconv2d"] == deployment["binary_layers"] == 18
    assert deployment["binary_layers_left_in_float"] == []
    assert deployment["argmax_agreement"] is not None and deployment["verify_samples"] == 16
    assert "1-bit MACs" in (out / "summary.txt").read_text()

    import keras

    checkpoint = keras.models.load_model(out / "checkpoints" / "last.keras")
    iterations = int(checkpoint.optimizer.iterations.numpy())
    assert iterations == 2 * 3  # 2 epochs of ceil(96 / 32) steps

    second = run(tiny(out), resume=True)
    history = second["history"]
    assert len(history["loss"]) == 3
    # The tau schedule is the 3-epoch schedule throughout, across the resume.
    assert history["tau"] == pytest.approx([schedule(i, 3) for i in range(3)])
    final = keras.models.load_model(out / "model.keras")
    assert int(final.optimizer.iterations.numpy()) == 3 * 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == second["test_accuracy"]


def test_train_with_diagnostics_across_a_resume(tmp_path):
    from keras_recu.diagnostics import METRICS

    out = tmp_path / "run"
    run(tiny(out, epochs=2, stop_after=1, diagnostics=True))
    run(tiny(out, epochs=2, diagnostics=True), resume=True)
    assert (out / "diagnostics.png").exists()
    assert "](diagnostics.png)" in (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["diagnostics"]) == sorted(METRICS)
    for metric in METRICS:
        values = metrics["diagnostics"][metric]
        assert len(values) == 2 and all(math.isfinite(v) for v in values), metric
        assert metrics["history"][f"diagnostics/{metric}"] == values  # from history.csv
    assert 0 <= min(metrics["diagnostics"]["flip_ratio"]) <= max(metrics["diagnostics"]["flip_ratio"]) <= 1
    per_layer = metrics["diagnostics_per_layer"]
    assert len(per_layer) == 18  # every ReCUConv2D of ResNet-20
    assert all(len(record[metric]) == 2 for record in per_layer.values() for metric in METRICS)
    mean = sum(record["dead_share"][1] for record in per_layer.values()) / 18
    assert mean == pytest.approx(metrics["diagnostics"]["dead_share"][1])

    # A run started without diagnostics cannot switch them on when resumed.
    plain = tmp_path / "plain"
    (plain / "checkpoints").mkdir(parents=True)
    (plain / "checkpoints" / "last.keras").write_bytes(b"")
    (plain / "config.json").write_text(json.dumps(vars(tiny(plain))))
    with pytest.raises(ValueError, match="started without --diagnostics"):
        run(tiny(plain, diagnostics=True), resume=True)


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet2'. Known: .*fashion_mnist"):
        run(tiny(tmp_path / "a", dataset="imagenet2"))
    with pytest.raises(ValueError, match="resnet20_1w1a"):
        run(tiny(tmp_path / "b", model="resnet99"))
    with pytest.raises(FileNotFoundError, match="Nothing to resume"):
        run(tiny(tmp_path / "c"), resume=True)
    with pytest.raises(ValueError, match="`stop_after` must be in"):
        run(tiny(tmp_path / "d", stop_after=9))


def test_cli_train_evaluate_convert(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--dataset", "synthetic", "--epochs", "1", "--warmup-epochs", "0",
            "--batch-size", "32", "--limit-train", "64", "--limit-test", "32", "--verify-samples", "8",
            "--verbose", "0"]
    assert cli.main(args) == 0
    assert "Report: " in capsys.readouterr().out
    assert cli.main(args) == 2  # the run exists: refuse rather than overwrite
    assert "--resume" in capsys.readouterr().err
    assert cli.main(["evaluate", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == "synthetic"
    assert cli.main(["convert", str(out), "-o", str(tmp_path / "again.tflite")]) == 0
    assert "LceBconv2d x18" in capsys.readouterr().out
    assert cli.main(["train", "--out", str(tmp_path / "x"), "--dataset", "nope"]) == 2
    assert "Unknown dataset 'nope'" in capsys.readouterr().err


DISTRIBUTED = """
import json, os, sys
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from keras_recu import models
from keras_recu.layers import ReCUConv2D
from keras_recu.app.train import TrainConfig, run


def tiny_recu(input_shape, num_classes, tau=0.85, sync_batch_norm=False, name=None):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(synchronized=sync_batch_norm)(x)
    x = ReCUConv2D(8, 3, padding="same", tau=tau)(x)
    x = keras.layers.BatchNormalization(synchronized=sync_batch_norm)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


models.MODELS["tiny_recu"] = tiny_recu
results = {}
for run_name, strategy, seed in (("single", "default", 0), ("mirrored", "mirrored", 0), ("other_seed", "default", 1)):
    keras.backend.clear_session()  # the same initial weights for the same seed
    config = TrainConfig(out=os.path.join(sys.argv[1], run_name), model="tiny_recu", dataset="synthetic",
                         epochs=3, batch_size=32, warmup_epochs=0, limit_train=64, limit_test=32,
                         verify_samples=8, strategy=strategy, seed=seed, verbose=0, learning_rate=0.05)
    metrics = run(config)
    model = keras.models.load_model(os.path.join(sys.argv[1], run_name, "model.keras"))
    results[run_name] = dict(tau=metrics["history"]["tau"], loss=metrics["history"]["loss"],
                             weights=np.concatenate([np.ravel(w) for w in model.get_weights()]).tolist())
results["replicas"] = tf.distribute.MirroredStrategy().num_replicas_in_sync
print("RESULT " + json.dumps(results))
"""


def test_mirrored_fit_matches_single_device(tmp_path):
    """Two logical CPUs: same tau schedule, weights within tolerance of one device.

    Not bit-equal: under a strategy tf.data draws another shuffle order and
    synchronized BatchNorm sums in another order, and a binary network's signs
    amplify such differences. The tolerance is set against a run with another
    seed, which lands far away.
    """
    import numpy as np

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(DISTRIBUTED), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
    results = json.loads(line[len("RESULT "):])
    single, mirrored, other = (results[k] for k in ("single", "mirrored", "other_seed"))
    assert results["replicas"] == 2
    assert mirrored["tau"] == single["tau"] == pytest.approx([schedule(i, 3) for i in range(3)])
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=0.01)

    def distance(run):
        a, b = np.array(run["weights"]), np.array(single["weights"])
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    assert distance(mirrored) < 0.05
    assert distance(other) > 0.3
