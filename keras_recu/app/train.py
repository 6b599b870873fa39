"""The main job: train a ReCU BNN the paper's way, convert it, verify it, report.

`run(config)` (and `keras-recu train`) trains `config.model` on
`config.dataset` with the ReCU recipe: SGD with momentum and PyTorch-style
weight decay, a linear warm-up then cosine decay to zero, and the tau
schedule 0.85 -> 0.99; it checkpoints every epoch (weights, optimizer state
and the epoch reached, so `resume=True` continues exactly), evaluates on the
test split, converts to a larq-compute-engine flatbuffer, verifies it on test
images, and leaves in the run directory:

    model.keras       the trained model
    model.tflite      the LCE flatbuffer
    metrics.json      configuration, per-epoch history, test metrics, verification
    summary.txt       the model's summary table and the verification report
    report.md         all of it on one page, with the plots
    training.png      accuracy and loss per epoch
    tau.png           tau per epoch
    weights.png       latent-weight histograms of a few binary layers, start and end
    diagnostics.png   with --diagnostics: dead share, quantization error, entropy and
                      flip ratio per epoch (keras_recu.diagnostics); the per-layer
                      values per epoch are in diagnostics.jsonl and metrics.json
    checkpoints/      last.keras and state.json, for --resume
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

__all__ = ["TrainConfig", "run", "evaluate", "STRATEGIES"]

STRATEGIES = ("default", "mirrored", "multiworker")


@dataclasses.dataclass
class TrainConfig:
    """Every knob of the main job; the defaults are the paper's CIFAR recipe."""

    out: str = "runs/recu"
    model: str = "resnet20_1w1a"
    dataset: str = "fashion_mnist"
    epochs: int = 600
    stop_after: Optional[int] = None  # end this session after this epoch; --resume goes on
    batch_size: int = 256
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    tau_min: float = 0.85
    tau_max: float = 0.99
    augment: bool = True
    data_dir: Optional[str] = None
    download: bool = True  # let tensorflow-datasets download a missing data set
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    verify_samples: int = 1000
    strategy: str = "default"
    seed: int = 0
    jit_compile: bool = False
    verbose: str = "auto"
    diagnostics: bool = False  # per-epoch weight diagnostics (keras_recu.diagnostics)

    def validate(self) -> None:
        from keras_recu import models, ops as recu_ops
        from keras_recu.app.data import DATASETS

        models.get(self.model)  # raises, listing the models
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}. Known: {', '.join(DATASETS)}.")
        recu_ops.validate_schedule(self.tau_min, self.tau_max, self.epochs)
        for name in ("epochs", "batch_size", "verify_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise ValueError(f"`stop_after` must be in [1, epochs], got {self.stop_after}.")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(
                f"`warmup_epochs` must be in [0, epochs), got {self.warmup_epochs} with epochs={self.epochs}."
            )
        if self.learning_rate <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("learning_rate must be > 0, weight_decay >= 0 and momentum in [0, 1).")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}. Known: {', '.join(STRATEGIES)}.")


def _strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief() -> bool:
    """Whether this process writes the run's files (multi-worker: one does)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if "type" not in task:
        return True
    if "chief" in config.get("cluster", {}):
        return task["type"] == "chief"
    return task["type"] == "worker" and task.get("index", 0) == 0


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
    """Linear warm-up from 0 to the learning rate, then cosine decay to 0."""
    import keras

    warmup_steps = config.warmup_epochs * steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0,
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def _binary_kernels(model, count: int = 3) -> Dict[str, np.ndarray]:
    """Latent kernels of up to `count` binary layers: the first, a middle one, the last."""
    from keras_recu.deploy import binary_layers

    names = [layer.name for layer in binary_layers(model) if layer.kind == "conv"]
    if len(names) > count:
        picks = sorted({0, len(names) // 2, len(names) - 1})
        names = [names[i] for i in picks]
    return {name: model.get_layer(name).kernel.numpy() for name in names}


class _RunState:
    """Files under RUN_DIR/checkpoints that let a run resume exactly."""

    def __init__(self, out: Path):
        self.dir = out / "checkpoints"
        self.model_path = self.dir / "last.keras"
        self.state_path = self.dir / "state.json"

    def epochs_done(self) -> int:
        if not self.state_path.exists():
            return 0
        return int(json.loads(self.state_path.read_text())["epochs_done"])

    def callback(self):
        import keras

        state = self

        class SaveState(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                state.dir.mkdir(parents=True, exist_ok=True)
                self.model.save(state.model_path)
                state.state_path.write_text(json.dumps({"epochs_done": epoch + 1}))

        return SaveState()


def _history(out: Path) -> Dict[str, List[float]]:
    import csv

    path = out / "history.csv"
    if not path.exists():
        return {}
    with open(path) as file:
        rows = list(csv.DictReader(file))
    return {key: [float(row[key]) for row in rows] for key in rows[0]} if rows else {}


def run(config: TrainConfig, resume: bool = False) -> dict:
    """Train, evaluate, convert, verify and report; return the metrics dict."""
    import keras

    from keras_recu import models
    from keras_recu.app import data
    from keras_recu.callbacks import TauScheduler
    from keras_recu.optimizers import L2SGD

    config.validate()
    out = Path(config.out)
    if not _is_chief():
        # Every worker runs the same program; only the chief's files count.
        out = Path(tempfile.mkdtemp(prefix="keras_recu_worker_"))
    state = _RunState(out)
    if resume:
        if not state.model_path.exists():
            raise FileNotFoundError(
                f"Nothing to resume in {out}: no {state.model_path}. Start the run without --resume."
            )
        saved = json.loads((out / "config.json").read_text())
        if config.diagnostics and not saved.get("diagnostics", False):
            raise ValueError(
                f"The run in {out} was started without --diagnostics; they cannot be switched on "
                "when resuming (history.csv's columns are fixed). Resume without --diagnostics, "
                "or start a new run with it."
            )
        # The schedule's length is the run's; a session may stop at another epoch.
        saved.update(out=config.out, verbose=config.verbose, stop_after=config.stop_after)
        config = TrainConfig(**saved)
    elif state.model_path.exists():
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    keras.utils.set_random_seed(config.seed)
    train_ds, test_ds, info = data.load(
        config.dataset,
        config.batch_size,
        data_dir=config.data_dir,
        augment=config.augment,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        seed=config.seed,
        download=config.download,
    )
    steps_per_epoch = math.ceil(info.train_examples / config.batch_size)
    strategy = _strategy(config.strategy)
    with strategy.scope():
        if resume:
            model = keras.models.load_model(state.model_path)
        else:
            model = models.get(config.model)(
                input_shape=info.input_shape,
                num_classes=info.num_classes,
                tau=config.tau_min,
                sync_batch_norm=config.strategy != "default",
            )
            model.compile(
                optimizer=L2SGD(
                    learning_rate_schedule(config, steps_per_epoch),
                    momentum=config.momentum,
                    l2=config.weight_decay,
                ),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
                jit_compile=config.jit_compile,
            )
    initial_path = out / "initial_kernels.npz"
    if not initial_path.exists():
        np.savez(initial_path, **_binary_kernels(model))

    initial_epoch = state.epochs_done()
    last_epoch = config.stop_after or config.epochs
    start = time.perf_counter()
    if initial_epoch < last_epoch:
        callbacks = [TauScheduler(config.tau_min, config.tau_max, epochs=config.epochs)]
        if config.diagnostics:
            callbacks += _diagnostics_callbacks(config, out)
        model.fit(
            train_ds,
            validation_data=test_ds,
            epochs=last_epoch,
            initial_epoch=initial_epoch,
            callbacks=[
                *callbacks,
                # After the diagnostics: history.csv gets their model-mean columns.
                keras.callbacks.CSVLogger(str(out / "history.csv"), append=initial_epoch > 0),
                state.callback(),
            ],
            verbose=config.verbose,
        )
    train_seconds = time.perf_counter() - start

    test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
    model.save(out / "model.keras")
    metrics = {
        "config": dataclasses.asdict(config),
        "dataset": dataclasses.asdict(info),
        "parameters": int(model.count_params()),
        "history": _history(out),
        "train_seconds_this_session": round(train_seconds, 1),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
    }
    if config.diagnostics:
        metrics.update(_diagnostics(metrics["history"], out))
    metrics.update(_deploy(model, test_ds, config, out))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from keras_recu.app.report import write_report

    write_report(out, metrics, initial=dict(np.load(initial_path)), final=_binary_kernels(model))
    return metrics


def _diagnostics_callbacks(config: TrainConfig, out: Path) -> list:
    """DiagnosticsCallback (model means into the logs) and a writer of its per-layer values.

    The per-layer values go to diagnostics.jsonl, one line per epoch, appended
    across resumed sessions; the logs (and so history.csv) get the model means
    only, to keep the CSV readable.
    """
    import keras

    from keras_recu.diagnostics import DiagnosticsCallback

    # reference_tau only matters for non-ReCU binary layers (plain STE).
    diagnostics = DiagnosticsCallback(reference_tau=config.tau_min, per_layer=False)
    path = out / "diagnostics.jsonl"

    class LayerLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            layers = {
                name: {metric: values[-1] for metric, values in record.items()}
                for name, record in diagnostics.layer_history.items()
            }
            with open(path, "a") as file:
                file.write(json.dumps({"epoch": int(epoch), "layers": layers}) + "\n")

    return [diagnostics, LayerLog()]


def _diagnostics(history: Dict[str, List[float]], out: Path) -> dict:
    """metrics.json's "diagnostics" (model means per epoch) and "diagnostics_per_layer"."""
    from keras_recu.diagnostics import LOG_PREFIX, METRICS

    means = {metric: history.get(LOG_PREFIX + metric, []) for metric in METRICS}
    epochs = [int(e) for e in history.get("epoch", range(len(means["dead_share"])))]
    by_epoch = {}
    path = out / "diagnostics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                by_epoch[entry["epoch"]] = entry["layers"]  # a re-run epoch: the last wins
    per_layer: Dict[str, Dict[str, List[float]]] = {}
    for epoch in epochs:
        for name, values in by_epoch.get(epoch, {}).items():
            record = per_layer.setdefault(name, {metric: [] for metric in METRICS})
            for metric in METRICS:
                record[metric].append(values[metric])
    return {"diagnostics": means, "diagnostics_per_layer": per_layer}


def _deploy(model, test_ds, config: TrainConfig, out: Path) -> dict:
    """Convert to LCE, verify on test images, write summary.txt."""
    from keras_recu.deploy import convert, verify
    from keras_recu.profile import summary

    images = []
    for batch, _ in test_ds:
        images.append(batch.numpy())
        if sum(len(b) for b in images) >= config.verify_samples:
            break
    images = np.concatenate(images)[: config.verify_samples]
    flatbuffer = convert(model, out / "model.tflite")
    report = verify(model, flatbuffer, images)
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        summary(model)
    (out / "summary.txt").write_text(table.getvalue() + "\n" + str(report) + "\n")
    return {
        "deployment": {
            "census": dict(report.census),
            "binary_layers": len(report.binary_layers),
            "binary_layers_left_in_float": report.float_binary_layers,
            "verify_samples": report.samples,
            "argmax_agreement": report.argmax_agreement,
            "max_abs_error": report.max_abs_error,
            "matching_samples": report.matching_samples,
            "flatbuffer_kib": round(report.flatbuffer_bytes / 1024, 1),
            "float32_parameters_kib": round(report.float32_bytes / 1024, 1),
        }
    }


def evaluate(path: str, dataset: Optional[str] = None, data_dir: Optional[str] = None, batch_size: int = 256) -> dict:
    """Test loss and accuracy of a run directory's model or of a `.keras` file."""
    import keras

    import keras_recu.layers  # noqa: F401  (registers the classes)
    import keras_recu.models  # noqa: F401
    from keras_recu.app import data

    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if dataset is None and path.is_dir() and (path / "config.json").exists():
        saved = json.loads((path / "config.json").read_text())
        dataset, data_dir = saved["dataset"], data_dir or saved.get("data_dir")
    if dataset is None:
        raise ValueError("Name the data set to evaluate on (--dataset) for a bare .keras file.")
    model = keras.models.load_model(model_path)
    _, test_ds, info = data.load(dataset, batch_size, data_dir=data_dir, augment=False)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    loss, accuracy = model.evaluate(test_ds, verbose=0)
    return {"model": str(model_path), "dataset": info.name, "test_examples": info.test_examples,
            "test_loss": float(loss), "test_accuracy": float(accuracy)}
