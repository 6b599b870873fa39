"""The main job in one process, on the suite's backend: exact resume, NaN, refusals, settings, the report.

A tiny ReCU model (tests/run_utils.py) keeps each run to a few seconds; the
ResNet-20 runs and the command line as a user runs it are in
test_cli_subprocess.py.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_recu.app import cli, data
from keras_recu.app.config import RESUMABLE, TrainConfig
from keras_recu.app.errors import ConfigError, RunError, TrainingDiverged
from keras_recu.app.train import run
from tests.run_utils import TINY, TINY_FLAGS, environment, last_json_line, tiny_recu

BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _tiny_model(monkeypatch):
    from keras_recu import models

    monkeypatch.setitem(models.MODELS, TINY, tiny_recu)


def tiny(out, **overrides):
    settings = dict(
        out=str(out), model=TINY, dataset="synthetic", epochs=3, batch_size=32, warmup_epochs=1,
        limit_train=80, limit_test=32, verify_samples=8, verbose=0, learning_rate=0.05, seed=5,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def schedule(epoch, epochs, tau_min=0.85, tau_max=0.99):
    a = (tau_max - tau_min) / (math.e - 1)
    return a * math.exp(epoch / epochs) + tau_min - a


def state_of(path):
    """Every weight and optimizer variable of a saved model, as numpy arrays."""
    model = keras.models.load_model(path)
    return [keras.ops.convert_to_numpy(v) for v in [*model.weights, *model.optimizer.variables]]


def test_stopped_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path):
    """Weights, optimizer state (momentum, step), tau and every history row, across two resumes.

    The second resume also finds state.json and history.csv gone and a
    temporary file that a kill mid-save left: the checkpoint's own record
    brings them back.
    """
    whole = run(tiny(tmp_path / "whole"))
    assert whole["complete"] and len(whole["history"]["loss"]) == 3

    out = tmp_path / "parts"
    first = run(tiny(out, stop_after=1))
    assert first == {**first, "complete": False, "epochs_done": 1}
    assert not (out / "model.keras").exists()  # the final stage waits for the last epoch
    second = run(tiny(out, stop_after=2, verbose=2), resume=True)
    assert second["epochs_done"] == 2
    (out / "checkpoints" / "state.json").unlink()
    (out / "history.csv").unlink()
    (out / "checkpoints" / ".last.keras.0badf00d.tmp.keras").write_bytes(b"PK\x03\x04 cut short")
    last = run(tiny(out), resume=True)

    assert last["history"] == whole["history"]
    assert last["history"]["tau"] == pytest.approx([schedule(i, 3) for i in range(3)])
    assert last["test_accuracy"] == whole["test_accuracy"]
    for a, b in zip(state_of(tmp_path / "whole" / "model.keras"), state_of(out / "model.keras"), strict=True):
        np.testing.assert_array_equal(a, b)
    steps = math.ceil(80 / 32)
    assert int(keras.ops.convert_to_numpy(keras.models.load_model(out / "model.keras").optimizer.iterations)) == 3 * steps
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 3
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epochs_done"] == 3
    assert not list((out / "checkpoints").glob(".*"))  # the leftover is gone
    assert json.loads((out / "config.json").read_text())["stop_after"] is None

    # A kill during the final stage: --resume on the finished run does that stage again.
    (out / "metrics.json").unlink()
    again = run(tiny(out), resume=True)
    assert again["history"] == last["history"] and again["test_accuracy"] == last["test_accuracy"]


def test_the_command_resumes_with_the_saved_settings_and_this_sessions_stop(tmp_path, capsys):
    out = tmp_path / "run"
    first = ["train", "--out", str(out), "--model", TINY, "--epochs", "3", "--stop-after", "1", *TINY_FLAGS]
    assert cli.main(first) == 0
    assert "Stopped after epoch 1 of 3; `keras-recu train --out" in capsys.readouterr().out
    # --stop-after 1 of the first session is not this one's: the run goes on to epoch 2, then to the end.
    assert cli.main(["train", "--out", str(out), "--resume", "--stop-after", "2", "--verbose", "0"]) == 0
    assert "Stopped after epoch 2 of 3" in capsys.readouterr().out
    assert cli.main(["train", "--out", str(out), "--resume", "--verbose", "0"]) == 0
    assert "Test accuracy" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["history"]["epoch"] == [0, 1, 2]
    assert cli.main(["train", "--out", str(out), "--resume", "--learning-rate", "0.1"]) == 2
    assert "--learning-rate: saved 0.05, given 0.1" in capsys.readouterr().err


class _NaNFromEpoch(keras.utils.PyDataset):
    """The training batches of `data.load`, with one NaN pixel per batch from epoch `bad_epoch` on."""

    def __init__(self, train, bad_epoch):
        super().__init__()
        self.train, self.bad_epoch, self.epoch = train, bad_epoch, 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.train.set_epoch(epoch)

    def __len__(self):
        return len(self.train)

    def __getitem__(self, index):
        images, labels = self.train[index]
        if self.epoch >= self.bad_epoch:
            images = images.copy()
            images[0, 0, 0, 0] = np.nan
        return images, labels


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    load = data.load

    def load_with_nan(*args, **kwargs):
        train, test, info = load(*args, **kwargs)
        return _NaNFromEpoch(train, bad_epoch=1), test, info

    monkeypatch.setattr(data, "load", load_with_nan)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 2, batch 1.*last good checkpoint \(1 epoch"):
        run(tiny(out, epochs=2))
    # The command: one line on stderr, exit status 1 (the job ran and failed).
    code = cli.main(["train", "--out", str(tmp_path / "cli"), "--model", TINY, "--epochs", "2", *TINY_FLAGS])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("keras-recu train: the training loss became nan")
    record = json.loads((out / "checkpoints" / "state.json").read_text())
    assert record["epochs_done"] == 1 and len(record["history"]) == 1
    model = keras.models.load_model(out / "checkpoints" / "last.keras")
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)
    assert not (out / "model.keras").exists() and not (out / "report.md").exists()


def test_resume_refuses_conflicting_settings_and_lists_each(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(vars(tiny(out))))
    changed = tiny(out, epochs=4, model="resnet20_1w1a", learning_rate=0.2, seed=1, stop_after=2, verbose=1)
    with pytest.raises(RunError) as caught:
        run(changed, resume=True)
    message = str(caught.value)
    for conflict in ("--epochs: saved 3, given 4", "--model: saved 'tiny_recu', given 'resnet20_1w1a'",
                     "--learning-rate: saved 0.05, given 0.2", "--seed: saved 5, given 1"):
        assert conflict in message
    assert "learning-rate and tau schedules span --epochs" in message
    assert "stop-after" not in message.split("differ:")[1].split(". Drop")[0]  # allowed, not a conflict
    assert RESUMABLE == ("out", "verbose", "stop_after", "download")

    # Validated after the merge: against the run's 3 epochs, not the default 600.
    with pytest.raises(ConfigError, match=r"`stop_after` must be in \[1, epochs=3\], got 9"):
        run(tiny(out, stop_after=9), resume=True)

    (out / "config.json").write_text(json.dumps({**vars(tiny(out)), "learning_rte": 0.1}))
    with pytest.raises(RunError, match=r"config\.json has unknown setting\(s\) 'learning_rte'"):
        run(tiny(out), resume=True)
    with pytest.raises(RunError, match="Nothing to resume .* no config.json"):
        run(tiny(tmp_path / "empty"), resume=True)


def test_a_run_directory_is_never_overwritten(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.keras").write_bytes(b"")
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        run(tiny(out))


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("learning_rate", float("nan"), "`learning_rate` must be finite"),
        ("weight_decay", float("inf"), "`weight_decay` must be finite"),
        ("tau_min", float("nan"), "`tau_min` must be finite"),
        ("momentum", 1.0, r"`momentum` must be in \[0, 1\)"),
        ("learning_rate", 0.0, "`learning_rate` must be > 0"),
        ("augment", "no", "`augment` must be True or False"),
        ("epochs", 0, "`epochs` must be >= 1"),
        ("batch_size", 2.5, "`batch_size` must be an integer"),
        ("verbose", "loud", "`verbose` must be 'auto', 0, 1 or 2"),
        ("dataset", "imagenet2", "Unknown dataset 'imagenet2'. Known: .*fashion_mnist"),
        ("model", "resnet99", "resnet20_1w1a"),
        ("warmup_epochs", 3, r"`warmup_epochs` must be in \[0, epochs\)"),
        ("strategy", "horovod", "Unknown strategy 'horovod'"),
    ],
)
def test_invalid_settings_are_refused_before_anything_runs(tmp_path, setting, value, message):
    with pytest.raises(ConfigError, match=message):
        run(tiny(tmp_path / "run", **{setting: value}))
    assert not (tmp_path / "run").exists()


def test_strategies_name_the_backend_they_need(tmp_path):
    others = {"tensorflow": ["data-parallel"], "jax": ["mirrored", "multiworker"]}.get(
        BACKEND, ["data-parallel", "mirrored", "multiworker"]
    )
    for strategy in others:
        needs = "JAX backend only" if strategy == "data-parallel" else "TensorFlow backend only"
        with pytest.raises(ConfigError, match=f"--strategy {strategy} .*{needs}; this process runs Keras on {BACKEND}"):
            tiny(tmp_path, strategy=strategy).validate()


def test_report_without_a_flatbuffer_and_with_non_finite_values(tmp_path):
    from keras_recu.app.report import write_report

    nan = float("nan")
    metrics = {
        "config": vars(tiny(tmp_path)), "parameters": 1234, "backend": "jax",
        "test_loss": nan, "test_accuracy": 0.1,
        "history": {"epoch": [0, 1], "loss": [2.3, nan], "val_loss": [nan, nan], "accuracy": [0.1, 0.2],
                    "val_accuracy": [0.1, nan], "tau": [0.85, 0.9]},
        "deployment": {"converted": False, "note": "not converted: no TensorFlow here",
                       "convert_later": f"keras-recu convert {tmp_path} --verify"},
    }
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 8))
    broken = kernel.copy()
    broken[0, 0, 0, :] = np.nan
    write_report(tmp_path, metrics, initial={"c": kernel}, final={"c": np.full_like(kernel, np.nan)})
    write_report(tmp_path, metrics, initial={"c": kernel}, final={"c": broken})
    report = (tmp_path / "report.md").read_text()
    assert f"`keras-recu convert {tmp_path} --verify`" in report and "not converted to LCE" in report
    assert "trained on the jax backend" in report
    for name in ("training.png", "tau.png", "weights.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_train_with_diagnostics_across_a_resume(tmp_path):
    from keras_recu.diagnostics import METRICS

    out = tmp_path / "run"
    run(tiny(out, epochs=2, stop_after=1, diagnostics=True))
    with open(out / "diagnostics.jsonl", "a") as file:
        file.write('{"epoch": 1, "layers": {"torn')  # a kill mid-line: dropped on resume
    metrics = run(tiny(out, epochs=2, diagnostics=True), resume=True)
    assert (out / "diagnostics.png").exists()
    assert "](diagnostics.png)" in (out / "report.md").read_text()
    assert sorted(metrics["diagnostics"]) == sorted(METRICS)
    for metric in METRICS:
        values = metrics["diagnostics"][metric]
        assert len(values) == 2 and all(math.isfinite(v) for v in values), metric
        assert metrics["history"][f"diagnostics/{metric}"] == values
    per_layer = metrics["diagnostics_per_layer"]
    assert len(per_layer) == 1  # the tiny model's one ReCUConv2D
    assert all(len(record[metric]) == 2 for record in per_layer.values() for metric in METRICS)
    assert len((out / "diagnostics.jsonl").read_text().splitlines()) == 2

    # A run started without diagnostics cannot switch them on when resumed (history.csv's columns are fixed).
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text(json.dumps(vars(tiny(tmp_path / "plain", epochs=2))))
    with pytest.raises(RunError, match="--diagnostics: saved False, given True"):
        run(tiny(tmp_path / "plain", epochs=2, diagnostics=True), resume=True)


MIRRORED = """
import json, os, sys
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {root!r})
import keras, numpy as np
from tests.run_utils import register_tiny_model
from keras_recu.app.train import TrainConfig, run

register_tiny_model()
results = {{}}
for run_name, strategy, seed in (("single", "default", 0), ("mirrored", "mirrored", 0), ("other_seed", "default", 1)):
    keras.backend.clear_session()
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


@pytest.mark.tf_only
def test_mirrored_fit_matches_single_device(tmp_path):
    """Two logical CPUs: same data, same tau schedule, weights as on one device up to rounding.

    The batches are the same (a pure function of seed, epoch and step); only
    the sums differ in order (synchronized BatchNorm, the gradient
    all-reduce): measured 9e-7 relative L2. The bound leaves room for a sign
    that rounding flips; a run with another seed lands far away (0.8).
    """
    from tests.run_utils import ROOT

    result = subprocess.run([sys.executable, "-c", textwrap.dedent(MIRRORED.format(root=str(ROOT))), str(tmp_path)],
                            env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = last_json_line(result.stdout)
    single, mirrored, other = (results[k] for k in ("single", "mirrored", "other_seed"))
    assert results["replicas"] == 2
    assert mirrored["tau"] == single["tau"] == pytest.approx([schedule(i, 3) for i in range(3)])
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=0.01)

    def distance(run):
        a, b = np.array(run["weights"]), np.array(single["weights"])
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    assert distance(mirrored) < 1e-3
    assert distance(other) > 0.3

