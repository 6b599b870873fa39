"""The main job: train a ReCU BNN the paper's way, convert it, verify it, report.

`run(config)` (and `keras-recu train`) trains `config.model` on
`config.dataset` with the ReCU recipe: SGD with momentum and PyTorch-style
weight decay, a linear warm-up then cosine decay to zero, and the tau
schedule 0.85 -> 0.99. It checkpoints every epoch; when the last epoch is
done it evaluates on the test split, converts to a larq-compute-engine
flatbuffer, verifies it on test images and writes the report.

Recipes (`RECIPES`, `TrainConfig.for_recipe`, `keras-recu train --recipe`)
    "cifar", the default, is the paper's CIFAR recipe. "imagenet" is the
    authors' vanilla ImageNet recipe (imagenet/run.sh): ResNet-18 1w1a, SGD
    0.1, momentum 0.9, batch 512, 200 epochs, weight decay 1e-4 on the
    variables whose name holds "conv" or "fc" only. "two-stage" is
    imagenet_two-stage/run.sh: Adam 1e-3 without weight decay, 256 epochs,
    distillation from a float teacher (`keras_recu.app.distill`); stage 1
    (`stage=1`) trains float weights with binary activations, stage 2
    (`stage=2`, `stage1=` the stage-1 run) binary weights starting from stage
    1's (`keras_recu.app.two_stage`). A recipe only sets defaults: every
    value is a setting of its own, and config.json records them all.

The run directory:

    config.json       the run's configuration (what --resume continues)
    history.csv       one row per finished epoch: loss, accuracy, val_*, tau, ...
    initial_kernels.npz  latent kernels of a few binary layers at the start
    checkpoints/      last.keras (model, optimizer state and the run's own record
                      of the epochs done and the history) and state.json (the same
                      record, readable), for --resume
    model.keras       the trained model (any backend; loads in a fresh process); with
                      a teacher, the student alone (the checkpoint holds both)
    stage1.json       stage 2 only: the stage-1 model it started from and what was carried
    model.tflite      the LCE flatbuffer (when TensorFlow and LCE are installed)
    metrics.json      configuration, per-epoch history, test metrics, verification
    summary.txt       the model's summary table and the verification report
    report.md         all of it on one page, with the plots
    training.png, tau.png, weights.png, and with --diagnostics diagnostics.png
                      and diagnostics.jsonl (keras_recu.diagnostics per layer)

Crash safety
    Every file is written to a temporary file in its own directory, flushed
    to disk and renamed over the old one, so a kill at any moment leaves
    either the previous or the new version, never a torn one. The checkpoint
    is the run's truth: it carries its own record of the epochs done and of
    the history, so a missing or stale state.json (a kill between the two
    renames) or history.csv is rebuilt from it. A run killed before its first
    checkpoint resumes from epoch 0 with its saved configuration.

Exact resume
    Batch i of epoch e is a pure function of (seed, e, i) (`keras_recu.app.data`),
    the optimizer state, the learning-rate schedule's step and tau come back
    from the checkpoint, and the model is rebuilt and compiled exactly as in
    the first session, so `--stop-after k` then `--resume` gives the same
    weights as the uninterrupted run, bit for bit on CPU.

Backends and strategies
    Training runs on any Keras backend. Conversion needs TensorFlow and LCE:
    after a run on JAX or torch, the saved model.keras is converted and
    verified in a TensorFlow-backend subprocess when both are installed;
    otherwise the run succeeds and the report says how to convert later.
    `strategy`: "mirrored" (one machine, several devices) and "multiworker"
    (several processes with TF_CONFIG) are tf.distribute strategies, on the
    TensorFlow backend only; "data-parallel" is `keras.distribution.DataParallel`,
    on JAX only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_recu.app.messages import first_line

__all__ = [
    "ConfigError",
    "RECIPES",
    "RESUMABLE",
    "RunError",
    "STRATEGIES",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "learning_rate_schedule",
    "run",
]

STRATEGIES = ("default", "mirrored", "multiworker", "data-parallel")
#: tf.distribute strategies: TensorFlow backend only.
TF_STRATEGIES = ("mirrored", "multiworker")
#: What a resumed run may change. The others define the run: a different
#: model, data set, seed, recipe or schedule length would continue another
#: run's weights under other rules (see `run`). `download` only decides
#: whether a missing data set may be fetched, never which data a run sees.
RESUMABLE = ("out", "verbose", "stop_after", "download")
#: The machine's side of the ImageNet-style sets, which a resumed run may
#: change too: how many threads decode, where the ILSVRC2012 tars lie.
#: Neither changes which images a batch holds.
MACHINE_SETTINGS = ("workers", "manual_dir")
OPTIMIZERS = ("sgd", "adam")
#: "step": linear warm-up and cosine decay to 0, updated every step;
#: "epoch": the authors' main.py, held per epoch (keras_recu.optimizers.EpochWarmupCosine).
LR_SCHEDULES = ("step", "epoch")
#: The decoding and augmentation settings of the ImageNet-style sets
#: (`keras_recu.app.imagenet.ImageNetTransform`); None takes the authors' value.
TRANSFORM_FIELDS = {"image_size": "image_size", "resize_size": "resize_size", "crop_scale": "scale",
                    "crop_ratio": "ratio", "lighting_std": "lighting_std"}
#: The authors' decay rule on ImageNet: only parameters whose PyTorch name
#: contains "conv" or "fc" (the binary kernels and their alpha, the stem
#: conv, fc; not BatchNorm, the 1x1 downsample convs, the learnable biases or
#: PReLU). The ImageNet builders' layer names follow the PyTorch modules', so
#: the rule reads the same on Keras variable paths.
AUTHORS_IMAGENET_DECAY = ("conv", "fc")
#: `--recipe`: the defaults of every setting the authors' recipes fix; any
#: flag given overrides them.
RECIPES: Dict[str, Dict[str, Any]] = {
    # TrainConfig's own defaults: the paper's CIFAR recipe.
    "cifar": {},
    # imagenet/run.sh: SGD 0.1, momentum 0.9, batch 512, cosine with warm-up,
    # weight decay 1e-4 on conv and fc, 200 epochs, tau 0.85 -> 0.99.
    "imagenet": dict(
        model="imagenet_resnet18_1w1a", dataset="imagenet2012", epochs=200, batch_size=512,
        optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4,
        weight_decay_paths=AUTHORS_IMAGENET_DECAY, warmup_epochs=5, lr_schedule="epoch", verify_samples=100,
    ),
    # imagenet_two-stage/run.sh: Adam 1e-3, weight decay 0, batch 512, 256
    # epochs, cosine with warm-up, tau 0.85 -> 0.99, distillation from a
    # pretrained float teacher (theirs: torchvision's ResNet-34, which
    # keras.applications lacks; ResNet50 is the nearest it has).
    "two-stage": dict(
        model="imagenet_resnet18_two_stage", dataset="imagenet2012", epochs=256, batch_size=512,
        optimizer="adam", learning_rate=1e-3, weight_decay=0.0, weight_decay_paths=AUTHORS_IMAGENET_DECAY,
        warmup_epochs=5, lr_schedule="epoch", verify_samples=100, stage=1, teacher="ResNet50",
    ),
}

CHECKPOINT = "last.keras"
STATE = "state.json"
# The run's record inside the checkpoint archive (Keras ignores extra members).
RECORD = "keras_recu_run.json"
RECORD_FORMAT = 1
# Temporary files of atomic writes: ".NAME.XXXXXX.tmp.SUFFIX".
_TEMPORARY_MARK = ".tmp"


class RunError(Exception):
    """The job cannot go on as asked; the message says why and what to do."""


class ConfigError(ValueError):
    """A setting of the job is invalid; the message names it and the allowed values."""


class TrainingDiverged(RunError):
    """The training loss or the weights became NaN or infinite."""


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass
class TrainConfig:
    """Every knob of the main job; the defaults are the paper's CIFAR recipe (see `for_recipe` for the others)."""

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
    jit_compile: bool = False  # XLA on the TensorFlow backend (JAX always compiles)
    verbose: Any = "auto"  # Keras' fit verbosity: "auto", 0, 1 or 2
    diagnostics: bool = False  # per-epoch weight diagnostics (keras_recu.diagnostics)
    recipe: str = "cifar"  # which of RECIPES gave the defaults (a record; every value is its own field)
    optimizer: str = "sgd"  # "sgd" (L2SGD, with momentum) or "adam" (L2Adam)
    lr_schedule: str = "step"  # one of LR_SCHEDULES; the ImageNet recipes take the authors' "epoch"
    weight_decay_paths: Optional[Tuple[str, ...]] = None  # decay only variables whose path contains one; None: all
    stage: Optional[int] = None  # two-stage recipe: 1 (float weights) or 2 (binary weights); None: one stage
    stage1: Optional[str] = None  # stage 2: the stage-1 run directory or .keras file to start from
    teacher: Optional[str] = None  # distillation teacher: a keras.applications name or a .keras file
    padding: Optional[str] = None  # the builder's `padding`, "torch" or "same"; None: the builder's default
    # ImageNet-style sets only (None: the authors' transform, keras_recu.app.imagenet.ImageNetTransform):
    image_size: Optional[int] = None
    resize_size: Optional[int] = None
    crop_scale: Optional[Tuple[float, float]] = None
    crop_ratio: Optional[Tuple[float, float]] = None
    lighting_std: Optional[float] = None
    decoder: str = "auto"
    workers: Optional[int] = None
    manual_dir: Optional[str] = None

    def __post_init__(self):
        # JSON gives lists back: the run's record compares equal to the session's settings.
        for name in ("weight_decay_paths", "crop_scale", "crop_ratio"):
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))

    @classmethod
    def for_recipe(cls, recipe: str = "cifar", **given: Any) -> "TrainConfig":
        """The settings of `recipe` (one of `RECIPES`), each overridden by `given`.

        >>> config = TrainConfig.for_recipe("imagenet", epochs=90)
        >>> config.optimizer, config.learning_rate, config.weight_decay, config.weight_decay_paths, config.epochs
        ('sgd', 0.1, 0.0001, ('conv', 'fc'), 90)
        """
        if recipe not in RECIPES:
            raise ConfigError(f"Unknown recipe {recipe!r}. Known: {', '.join(RECIPES)}.")
        return cls(**{**RECIPES[recipe], **given, "recipe": recipe})

    @classmethod
    def from_file(cls, path: os.PathLike) -> "TrainConfig":
        """The configuration saved in a run's config.json.

        Keys missing from the file take today's defaults; an unknown key is
        refused, since it would be silently ignored.
        """
        path = Path(path)
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RunError(f"cannot read {path}: {error}. Restore the file or start a new run.") from None
        if not isinstance(saved, dict):
            raise RunError(f"{path} must hold a JSON object of settings, got {type(saved).__name__}.")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - known)
        if unknown:
            raise RunError(
                f"{path} has unknown setting(s) {', '.join(map(repr, unknown))}: it was edited or written by "
                f"another version of keras-recu. Known settings: {', '.join(sorted(known))}. Remove or rename them."
            )
        return cls(**saved)

    @classmethod
    def resumed(cls, run_dir: os.PathLike, **given: Any) -> "TrainConfig":
        """The saved configuration of the run in `run_dir`, with the settings `given` for this session.

        `stop_after` and `verbose` belong to a session: they are not taken
        over from the session before. Whatever else `given` changes,
        `run(..., resume=True)` refuses unless it is in `RESUMABLE`.
        """
        path = Path(run_dir) / "config.json"
        if not path.exists():
            raise RunError(f"Nothing to resume in {run_dir}: it has no config.json. Start the run without --resume.")
        session = {"stop_after": cls.stop_after, "verbose": cls.verbose, "out": str(run_dir)}
        return dataclasses.replace(cls.from_file(path), **{**session, **given})

    def validate(self) -> None:
        """Raise ConfigError (a ValueError) naming the setting, the value and the allowed values."""
        try:
            self._validate()
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None

    def _validate(self) -> None:
        from keras_recu import models
        from keras_recu import ops as recu_ops
        from keras_recu.app.data import DATASETS

        def number(name, allow_int=True):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"`{name}` must be a number, got {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"`{name}` must be finite, got {value}.")
            return value

        def integer(name, minimum, optional=False):
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"`{name}` must be an integer, got {value!r}.")
            if value < minimum:
                raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")

        self._validate_recipe()
        for name in ("augment", "download", "jit_compile", "diagnostics"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        for name in ("epochs", "batch_size", "verify_samples"):
            integer(name, 1)
        integer("warmup_epochs", 0)
        integer("seed", 0)
        for name in ("limit_train", "limit_test", "stop_after"):
            integer(name, 1, optional=True)
        for name in ("learning_rate", "momentum", "weight_decay", "tau_min", "tau_max"):
            number(name)
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1), got {self.momentum}.")
        recu_ops.validate_schedule(self.tau_min, self.tau_max, self.epochs)
        models.get(self.model)  # raises, listing the models
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}. Known: {', '.join(DATASETS)}.")
        if self.stop_after is not None and self.stop_after > self.epochs:
            raise ValueError(f"`stop_after` must be in [1, epochs={self.epochs}], got {self.stop_after}.")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"`warmup_epochs` must be in [0, epochs), got {self.warmup_epochs} with epochs={self.epochs}."
            )
        if self.verbose not in ("auto", 0, 1, 2) or isinstance(self.verbose, bool):
            raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2, got {self.verbose!r}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}. Known: {', '.join(STRATEGIES)}.")
        _check_strategy_backend(self.strategy)
        self._validate_stages()
        self.transform()

    def _validate_recipe(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"Unknown recipe {self.recipe!r}. Known: {', '.join(RECIPES)}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}. Known: {', '.join(OPTIMIZERS)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown lr_schedule {self.lr_schedule!r}. Known: {', '.join(LR_SCHEDULES)}.")
        paths = self.weight_decay_paths
        if paths is not None and (
            not isinstance(paths, tuple) or not paths or not all(isinstance(p, str) and p for p in paths)
        ):
            raise ValueError(
                f"`weight_decay_paths` must be None (decay every trainable variable) or non-empty substrings of "
                f"variable paths such as ('conv', 'fc'), got {paths!r}."
            )
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher.strip()):
            raise ValueError(
                f"`teacher` must be a keras.applications name or a .keras file, got {self.teacher!r}."
            )

    def _validate_stages(self) -> None:
        import inspect

        from keras_recu import models

        if self.padding is not None:
            if self.padding not in models.PADDINGS:
                raise ValueError(f"`padding` must be 'torch' or 'same', got {self.padding!r}.")
            if "padding" not in inspect.signature(models.get(self.model)).parameters:
                raise ValueError(f"--padding: {self.model} has no padding option; drop --padding.")
        if self.stage is None:
            if self.stage1 is not None:
                raise ValueError("--stage1 names the stage-1 run that stage 2 starts from: pass --stage 2 with it.")
            return
        if isinstance(self.stage, bool) or self.stage not in (1, 2):
            raise ValueError(f"`stage` must be 1 (float weights) or 2 (binary weights), got {self.stage!r}.")
        builder = models.get(self.model)
        if "binary_weights" not in inspect.signature(builder).parameters:
            switched = [name for name, build in models.MODELS.items()
                        if "binary_weights" in inspect.signature(build).parameters]
            raise ValueError(
                f"--stage {self.stage} needs a model with a binary-weights switch ({', '.join(switched) or 'none'}); "
                f"{self.model} has none. Drop --stage, or pass --model {switched[0] if switched else '...'}."
            )
        if self.stage == 1 and self.stage1 is not None:
            raise ValueError("--stage1 is where stage 2 starts from; stage 1 starts from scratch: drop --stage1.")
        if self.stage == 2 and not self.stage1:
            raise ValueError(
                "--stage 2 starts from stage 1's weights: pass --stage1 with the stage-1 run directory "
                "(or its model.keras)."
            )

    def transform(self):
        """The `keras_recu.app.imagenet.ImageNetTransform` of the ImageNet-style sets (None for the others)."""
        from keras_recu.app import data

        given = {name: getattr(self, name) for name in TRANSFORM_FIELDS if getattr(self, name) is not None}
        if self.dataset not in getattr(data, "IMAGENET_DATASETS", ()):
            settings = [_flag(name) for name in given]
            if self.decoder != "auto":
                settings.append("--decoder")
            if self.workers is not None:
                settings.append("--workers")
            if self.manual_dir is not None:
                settings.append("--manual-dir")
            if settings:
                raise ValueError(
                    f"{', '.join(settings)} apply to the ImageNet-style data sets "
                    f"({', '.join(getattr(data, 'IMAGENET_DATASETS', ()))}) only, not to {self.dataset}."
                )
            return None
        from keras_recu.app import imagenet

        if self.decoder not in imagenet.DECODERS:
            raise ValueError(f"Unknown decoder {self.decoder!r}. Known: {', '.join(imagenet.DECODERS)}.")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"`workers` must be an integer >= 1, got {self.workers!r}.")
        if not given:
            return None
        return dataclasses.replace(
            imagenet.ImageNetTransform(), **{TRANSFORM_FIELDS[name]: value for name, value in given.items()}
        )

    def data_arguments(self) -> Dict[str, Any]:
        """The keyword arguments of `data.load` this run's data set takes beyond the common ones."""
        from keras_recu.app import data

        if self.dataset not in getattr(data, "IMAGENET_DATASETS", ()):
            return {}
        return dict(transform=self.transform(), decoder=self.decoder, workers=self.workers,
                    manual_dir=self.manual_dir)


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _check_strategy_backend(strategy: str) -> None:
    backend = _backend()
    if strategy in TF_STRATEGIES and backend != "tensorflow":
        raise ValueError(
            f"--strategy {strategy} is a tf.distribute strategy and runs on the TensorFlow backend only; "
            f"this process runs Keras on {backend}. Use KERAS_BACKEND=tensorflow, or on JAX "
            "--strategy data-parallel."
        )
    if strategy == "data-parallel" and backend != "jax":
        hint = "use --strategy mirrored" if backend == "tensorflow" else "use KERAS_BACKEND=jax"
        raise ValueError(
            f"--strategy data-parallel is keras.distribution.DataParallel, which Keras implements on the "
            f"JAX backend only; this process runs Keras on {backend}: {hint}."
        )


def _flag(name: str) -> str:
    """The command-line flag of a setting."""
    return {"download": "--no-download", "augment": "--no-augment"}.get(name, "--" + name.replace("_", "-"))


def _conflicts(saved: TrainConfig, given: TrainConfig) -> List[str]:
    """The settings a resumed run asks to change but may not, as 'name: saved X, given Y'."""
    lines = []
    for field in dataclasses.fields(TrainConfig):
        before, after = getattr(saved, field.name), getattr(given, field.name)
        if field.name in RESUMABLE + MACHINE_SETTINGS or before == after:
            continue
        line = f"{_flag(field.name)}: saved {before!r}, given {after!r}"
        if field.name == "epochs":
            # The learning-rate (cosine) and tau (exponential) schedules are
            # functions of epoch / epochs: another length changes every epoch
            # already trained, so "the same run, longer" does not exist.
            line += (
                " (the learning-rate and tau schedules span --epochs, so another length is another run: "
                "start a new run, or fine-tune from the run's model.keras)"
            )
        lines.append(line)
    return lines


# --------------------------------------------------------------------------- distribution


def _is_chief() -> bool:
    """Whether this process writes the run's files (multi-worker: exactly one does)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        raise RunError("TF_CONFIG is not valid JSON; see the README's multi-worker section.") from None
    task = config.get("task", {})
    if "type" not in task:
        return True
    if "chief" in config.get("cluster", {}):
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task.get("index", 0)) == 0


def _multi_worker_strategy():
    """tf.distribute.MultiWorkerMirroredStrategy whose `reduce` takes what Keras 3 gives it.

    Keras 3 (3.15) calls `strategy.reduce` in two ways that this strategy
    alone refuses: on the first `(x, y)` batch, a tuple, to build the model
    ("Attempt to convert a value (PerReplica...)"), and with `axis=0` on the
    scalar metrics of each step ("Invalid reduction dimension 0"). Reducing
    leaf by leaf, and a scalar across the replicas, is what those calls mean.
    """
    import tensorflow as tf

    class KerasReduce(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def leaf(v):
                local = self.experimental_local_results(v)[0]
                scalar = getattr(local, "shape", None) is not None and local.shape.rank == 0
                return super(KerasReduce, self).reduce(reduce_op, v, None if scalar else axis)

            return tf.nest.map_structure(leaf, value)

    return KerasReduce()


def _distribution(strategy: str):
    """The tf.distribute strategy to build the model under (a null scope otherwise).

    Must run before any TensorFlow op of the process: a multi-worker strategy
    configures the collective ops at program startup, and TensorFlow refuses
    that once its runtime is initialized (by a seed, a tensor, a dataset).
    """
    if strategy in TF_STRATEGIES:
        import tensorflow as tf

        if strategy == "mirrored":
            return tf.distribute.MirroredStrategy()
        if not os.environ.get("TF_CONFIG"):
            raise RunError(
                "--strategy multiworker needs TF_CONFIG (the cluster and this worker's task) in the "
                "environment of every worker; see the README's multi-worker section."
            )
        return _multi_worker_strategy()
    if strategy == "data-parallel":
        import keras

        # One batch split over every local device; the step is compiled once
        # for the whole mesh, so BatchNorm's batch statistics are computed
        # over the global batch, as synchronized BatchNorm does on TensorFlow.
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return None


# --------------------------------------------------------------------------- files


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write `path` all or nothing: `write` fills a temporary file in the same
    directory, which is flushed to disk and renamed over `path`.

    A kill at any moment leaves the old file or the new one; a failing `write`
    leaves the old one and no temporary file.
    """
    path = Path(path)
    # Not mkstemp: its files are private (0600); these follow the umask like any other.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TEMPORARY_MARK}{path.suffix}")
    open(temporary, "xb").close()
    try:
        write(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temporary: temporary.write_text(text))


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def _write_json(path: Path, value: Any) -> None:
    _write_text(path, json.dumps(value, indent=2) + "\n")


def _remove_temporaries(directory: Path) -> None:
    """Delete what a killed atomic write left behind."""
    for leftover in directory.glob(f".*.????????{_TEMPORARY_MARK}*"):
        leftover.unlink(missing_ok=True)


def _history_csv(rows: List[dict]) -> str:
    """history.csv: an epoch column, then the logged values in sorted order, exact floats."""
    keys = sorted({key for row in rows for key in row if key != "epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in rows:
        lines.append(",".join([str(row["epoch"]), *(repr(float(row[key])) if key in row else "" for key in keys)]))
    return "\n".join(lines) + "\n"


def _history_columns(rows: List[dict]) -> Dict[str, list]:
    keys = ["epoch", *sorted({key for row in rows for key in row if key != "epoch"})]
    return {key: [row.get(key, float("nan")) for row in rows] for key in keys} if rows else {}


class _RunFiles:
    """The checkpoint and the run state: atomic, self-describing, the previous one kept until the next is whole.

    A multi-worker job's other workers read the chief's run directory
    (`source`, to resume) but write their own files into a temporary
    directory (`target`), which nobody reads.
    """

    def __init__(self, source: Path, target: Path):
        self.source = source
        self.target = target
        self.checkpoint = source / "checkpoints" / CHECKPOINT
        self.state = source / "checkpoints" / STATE

    def holds_run(self) -> bool:
        return self.checkpoint.exists() or (self.source / "model.keras").exists()

    def restore(self) -> Tuple[int, List[dict], Optional[str]]:
        """(epochs done, history rows, backend) of the run in `source`; (0, [], None) before its first checkpoint."""
        state = self._read_state()
        if not self.checkpoint.exists():
            if state and state.get("epochs_done", 0) > 0:
                raise RunError(
                    f"{self.state} records {state['epochs_done']} finished epoch(s) but {self.checkpoint} is "
                    "missing, so the trained weights are gone. Restore the file, or start a new run "
                    "(another --out)."
                )
            return 0, [], None
        try:
            with zipfile.ZipFile(self.checkpoint) as archive:
                record = json.loads(archive.read(RECORD))
        except KeyError:
            record = None
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise RunError(
                f"{self.checkpoint} is damaged ({error}); it is not a complete .keras archive. keras-recu "
                "writes checkpoints atomically, so something else cut it short (a full disk, an interrupted "
                "copy, an older keras-recu). Restore it, or start a new run (another --out)."
            ) from None
        if record is None:
            # A checkpoint of an older keras-recu: state.json is the only record.
            if not state:
                raise RunError(
                    f"{self.checkpoint} carries no record of the epochs it holds and {self.state} is missing, "
                    "so the epoch this run reached is unknown; resuming would restart the schedules at epoch 0 "
                    "on trained weights. Restore state.json, or start a new run (another --out)."
                )
            record = {"epochs_done": int(state["epochs_done"]), "history": _read_history_csv(self.source)}
        return int(record["epochs_done"]), list(record["history"]), record.get("backend")

    def _read_state(self) -> Optional[dict]:
        try:
            return json.loads(self.state.read_text())
        except (OSError, ValueError):
            return None

    def save(self, model, epochs_done: int, history: List[dict]) -> None:
        """Checkpoint, then state.json, then history.csv; each replaces its predecessor whole."""
        directory = self.target / "checkpoints"
        directory.mkdir(parents=True, exist_ok=True)
        record = {"format": RECORD_FORMAT, "epochs_done": epochs_done, "history": history, "backend": _backend()}

        def write_checkpoint(temporary: Path) -> None:
            model.save(temporary)
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(RECORD, json.dumps(record))

        atomic_write(directory / CHECKPOINT, write_checkpoint)
        _write_json(directory / STATE, record)
        _write_text(self.target / "history.csv", _history_csv(history))


def _read_history_csv(out: Path) -> List[dict]:
    import csv

    path = out / "history.csv"
    if not path.exists():
        return []
    with open(path) as file:
        return [
            {key: int(value) if key == "epoch" else float(value) for key, value in row.items() if value != ""}
            for row in csv.DictReader(file)
        ]


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise RunError(
            f"cannot write the run directory {out}: {error.strerror or error}. Choose a writable --out."
        ) from None


# --------------------------------------------------------------------------- training


def learning_rate_schedule(config: TrainConfig, steps_per_epoch: int):
    """The learning rate of `config.lr_schedule`.

    "step": a linear warm-up from 0 to the learning rate, then cosine decay
    to 0, updated every step. "epoch": the authors' schedule, constant within
    each epoch (`keras_recu.optimizers.EpochWarmupCosine`).
    """
    import keras

    if config.lr_schedule == "epoch":
        from keras_recu.optimizers import EpochWarmupCosine

        return EpochWarmupCosine(config.learning_rate, config.epochs, steps_per_epoch, config.warmup_epochs)
    warmup_steps = config.warmup_epochs * steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0,
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def _epoch_stream(train, first_epoch: int, last_epoch: int):
    """Epochs [first_epoch, last_epoch) of `train` as one sequence for a single `fit`.

    Item j is batch j % n of epoch first_epoch + j // n, a pure function of
    j. Setting the epoch from a callback's on_epoch_begin would race: Keras
    creates the next epoch's iterator at the end of the previous epoch,
    before any epoch callback, and on TensorFlow tf.data starts prefetching
    from it at once.
    """
    import keras

    class EpochStream(keras.utils.PyDataset):
        def __init__(self):
            # One worker, no multiprocessing: Keras reads items in order.
            super().__init__()
            self._steps = len(train)
            self._epoch: Optional[int] = None
            self._lock = threading.Lock()

        def __len__(self):
            return (last_epoch - first_epoch) * self._steps

        def __getitem__(self, index):
            epoch, step = divmod(int(index), self._steps)
            with self._lock:  # set_epoch and the read belong together
                if self._epoch != first_epoch + epoch:
                    self._epoch = first_epoch + epoch
                    train.set_epoch(self._epoch)
                return train[step]

    return EpochStream()


def _check_batches_divide(config: TrainConfig, info) -> None:
    """DataParallel splits every batch evenly over the devices, the last partial ones too."""
    import keras

    devices = len(keras.distribution.list_devices())
    sizes = {
        "--batch-size": config.batch_size,
        "the last training batch": info.train_examples % config.batch_size,
        "the last test batch": info.test_examples % config.batch_size,
    }
    uneven = [f"{what} ({size})" for what, size in sizes.items() if size % devices]
    if uneven:
        raise RunError(
            f"--strategy data-parallel splits each batch over {devices} devices, and "
            f"{', '.join(uneven)} does not divide by {devices} ({info.train_examples} training and "
            f"{info.test_examples} test examples). Choose --batch-size, --limit-train and --limit-test so "
            f"that every batch does."
        )


def _build_model(config: TrainConfig, info, steps_per_epoch: int):
    """(the model to fit, the student): the same model, or a `Distiller` around it when a teacher is given."""
    import keras

    from keras_recu import models

    options = {} if config.stage is None else {"binary_weights": config.stage == 2}
    if config.padding is not None:
        options["padding"] = config.padding
    student = models.get(config.model)(
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        tau=config.tau_min,
        # JAX's data-parallel step computes the batch statistics over the
        # global batch by itself; tf.distribute needs synchronized BatchNorm.
        sync_batch_norm=config.strategy in TF_STRATEGIES,
        **options,
    )
    model = student
    if config.teacher is not None:
        from keras_recu.app.distill import Distiller, load_teacher

        try:
            teacher = load_teacher(config.teacher, info.input_shape, info.mean, info.std)
            model = Distiller(student, teacher, name="distiller")
        except ValueError as error:
            raise ConfigError(f"--teacher {config.teacher}: {error}") from None
    backend = _backend()
    model.compile(
        optimizer=_optimizer(config, steps_per_epoch),
        # Validation (and training without a teacher): cross-entropy on the labels.
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # --jit-compile is TensorFlow's XLA switch. On JAX, jit_compile=False
        # would run every step eagerly; on torch, True would mean torch.compile.
        jit_compile={"tensorflow": config.jit_compile, "jax": True}.get(backend, False),
    )
    return model, student


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    """L2SGD or L2Adam with PyTorch's coupled weight decay on the variables `weight_decay_paths` picks."""
    from keras_recu.optimizers import L2Adam, L2SGD

    schedule = learning_rate_schedule(config, steps_per_epoch)
    if config.optimizer == "adam":
        return L2Adam(schedule, l2=config.weight_decay, l2_paths=config.weight_decay_paths)
    return L2SGD(schedule, momentum=config.momentum, l2=config.weight_decay, l2_paths=config.weight_decay_paths)


def _carry_stage1(config: TrainConfig, student) -> dict:
    """Stage 2's start: stage 1's weights, copied by variable path into `student`; what was carried."""
    import keras

    from keras_recu.app import two_stage

    try:
        path = two_stage.stage1_model_path(config.stage1)
    except FileNotFoundError as error:
        raise RunError(str(error)) from None
    try:
        source = keras.models.load_model(path, compile=False)
    except Exception as error:  # whatever the file holds: one line, not Keras' traceback
        first = first_line(error, 300)
        raise RunError(
            f"--stage1 {config.stage1}: cannot load {path} ({type(error).__name__}: {first}); pass the stage-1 "
            "run directory or its model.keras."
        ) from None
    try:
        carried = two_stage.carry_weights(source, student)
    except two_stage.StageMismatch as error:
        raise RunError(f"--stage1 {config.stage1}: {error}") from None
    print(
        f"Stage 2 starts from stage 1 ({path}): {carried['variables']} variables, {carried['values']:,} values, "
        f"of {len(carried['layers'])} layers carried over."
    )
    return {"source": str(path), **carried}


def _binary_kernels(model, count: int = 3) -> Dict[str, np.ndarray]:
    """Latent kernels of up to `count` binary layers: the first, a middle one, the last."""
    import keras

    from keras_recu.inspection import binary_layers

    convs = [found for found in binary_layers(model) if found.kind == "conv"]
    if len(convs) > count:
        convs = [convs[i] for i in sorted({0, len(convs) // 2, len(convs) - 1})]
    return {found.name: keras.ops.convert_to_numpy(found.layer.kernel) for found in convs}


def _all_finite(model) -> bool:
    import keras

    return all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


def _session_callback(files: _RunFiles, history: List[dict]):
    """Checkpoints each finished epoch; stops, and checkpoints nothing, once the loss or a weight is not finite.

    Keras' BackupAndRestore does not fit: it rewrites its files in place (a
    kill mid-write loses the run), keeps no history, restores only inside a
    `fit` of the same model object and deletes its backup when `fit` ends,
    whereas a run here resumes across processes, sessions and --stop-after.
    TerminateOnNaN would stop in time, but the epoch's end would still be
    checkpointed; here a non-finite epoch never replaces the last good one.
    """
    import keras

    class Session(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.diverged: Optional[str] = None

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.diverged = f"the training loss became {float(loss)} in epoch {self._epoch + 1}, batch {batch + 1}"
                self.model.stop_training = True

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if self.diverged is None and not math.isfinite(float((logs or {}).get("loss", 0.0))):
                self.diverged = f"the training loss of epoch {epoch + 1} is {logs['loss']}"
            if self.diverged is None and not _all_finite(self.model):
                self.diverged = f"a weight became NaN or infinite in epoch {epoch + 1}"
            if self.diverged is not None:
                self.model.stop_training = True
                return
            history.append({"epoch": int(epoch), **{key: float(value) for key, value in (logs or {}).items()}})
            files.save(self.model, epoch + 1, history)

    return Session()


def _diagnostics_callbacks(config: TrainConfig, target: Path) -> list:
    """DiagnosticsCallback (model means into the logs) and a writer of its per-layer values.

    The per-layer values go to diagnostics.jsonl, one line per epoch, appended
    across resumed sessions; the logs (and so history.csv) get the model means
    only, to keep the CSV readable.
    """
    import keras

    from keras_recu.diagnostics import DiagnosticsCallback

    # reference_tau only matters for non-ReCU binary layers (plain STE).
    diagnostics = DiagnosticsCallback(reference_tau=config.tau_min, per_layer=False)
    path = target / "diagnostics.jsonl"

    class LayerLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            layers = {
                name: {metric: values[-1] for metric, values in record.items()}
                for name, record in diagnostics.layer_history.items()
            }
            with open(path, "a") as file:
                file.write(json.dumps({"epoch": int(epoch), "layers": layers}) + "\n")

    return [diagnostics, LayerLog()]


def _diagnostics_lines(path: Path) -> Dict[int, dict]:
    """diagnostics.jsonl by epoch; a re-run epoch's last line wins, a torn last line is skipped."""
    by_epoch = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            by_epoch[int(entry["epoch"])] = entry["layers"]
    return by_epoch


def _diagnostics(history: Dict[str, list], out: Path) -> dict:
    """metrics.json's "diagnostics" (model means per epoch) and "diagnostics_per_layer"."""
    from keras_recu.diagnostics import LOG_PREFIX, METRICS

    means = {metric: history.get(LOG_PREFIX + metric, []) for metric in METRICS}
    by_epoch = _diagnostics_lines(out / "diagnostics.jsonl")
    per_layer: Dict[str, Dict[str, List[float]]] = {}
    for epoch in history.get("epoch", []):
        for name, values in by_epoch.get(int(epoch), {}).items():
            record = per_layer.setdefault(name, {metric: [] for metric in METRICS})
            for metric in METRICS:
                record[metric].append(values[metric])
    return {"diagnostics": means, "diagnostics_per_layer": per_layer}


def _prepare(config: TrainConfig, resume: bool) -> Tuple[TrainConfig, _RunFiles, bool]:
    """Check the run directory and the flags; return the session's config, its files and whether it continues."""
    out = Path(config.out)
    chief = _is_chief()
    target = out if chief else Path(tempfile.mkdtemp(prefix="keras_recu_worker_"))
    files = _RunFiles(out, target)
    config_path = out / "config.json"
    if resume:
        if not config_path.exists():
            raise RunError(f"Nothing to resume in {out}: it has no config.json. Start the run without --resume.")
        saved = TrainConfig.from_file(config_path)
        conflicts = _conflicts(saved, config)
        if conflicts:
            raise RunError(
                f"--resume continues the run in {out} with its saved settings, and these differ: "
                + "; ".join(conflicts)
                + f". Drop those flags (only {', '.join(_flag(name) for name in RESUMABLE[1:])} may change, "
                f"and where the data is read: {', '.join(_flag(name) for name in MACHINE_SETTINGS)}), or start a "
                "new run with another --out."
            )
        config = dataclasses.replace(saved, **{name: getattr(config, name) for name in RESUMABLE + MACHINE_SETTINGS})
    elif files.holds_run():
        raise RunError(f"{out} already holds a run; pass --resume to continue it, or choose another --out.")
    config.validate()
    if chief:
        _check_writable(out)
    return config, files, resume


def run(config: TrainConfig, resume: bool = False) -> dict:
    """Train (or continue), then evaluate, convert, verify and report; return the metrics.

    With `resume=True` the run in `config.out` continues with its saved
    configuration; `config` must agree with it except for `RESUMABLE`
    (RunError lists each conflict). A session that ends at `stop_after`
    before the last epoch returns `{"complete": False, "epochs_done": k, ...}`
    and leaves the final stage to the session that finishes the run.

    Raises:
        ConfigError: a setting is invalid (the message names it).
        RunError: the run directory or the flags do not allow the run.
        TrainingDiverged: the loss or a weight became non-finite; the last
            good checkpoint is kept.
    """
    config, files, resume = _prepare(config, resume)
    try:
        return _session(config, files, resume)
    finally:
        if files.target != files.source:
            shutil.rmtree(files.target, ignore_errors=True)


def _session(config: TrainConfig, files: _RunFiles, resume: bool) -> dict:
    import keras

    from keras_recu.app import data
    from keras_recu.callbacks import TauScheduler

    # First of all TensorFlow work: see _distribution.
    strategy = _distribution(config.strategy)
    epochs_done, history, trained_on = files.restore() if resume else (0, [], None)
    out, target = files.source, files.target
    if resume and config.stop_after is not None and config.stop_after <= epochs_done < config.epochs:
        raise RunError(
            f"the run in {out} has done {epochs_done} of {config.epochs} epochs, so --stop-after "
            f"{config.stop_after} leaves nothing to train: pass a later epoch, or omit it to finish the run."
        )
    if trained_on is not None and trained_on != _backend():
        print(
            f"note: this run trained on the {trained_on} backend and continues on {_backend()}; "
            "it will not be bit-identical to an uninterrupted run on one backend."
        )
    last_epoch = config.stop_after or config.epochs

    keras.utils.set_random_seed(config.seed)
    train, test, info = data.load(
        config.dataset,
        config.batch_size,
        data_dir=config.data_dir,
        augment=config.augment,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        seed=config.seed,
        download=config.download,
        **config.data_arguments(),
    )
    steps_per_epoch = len(train)
    if config.strategy == "data-parallel":
        _check_batches_divide(config, info)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model, student = _build_model(config, info, steps_per_epoch)
        carried = _carry_stage1(config, student) if config.stage1 and not epochs_done else None
        if epochs_done:
            # Rebuilt and compiled as in the first session, then the state:
            # load_model would compile from the saved config, where a default
            # (jit_compile="auto") can differ from this run's.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(files.checkpoint)
            steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
            if steps != epochs_done * steps_per_epoch:
                raise RunError(
                    f"{files.checkpoint} holds {steps} optimizer steps, but {epochs_done} epoch(s) of "
                    f"{steps_per_epoch} steps were recorded: the data set changed since the run began "
                    "(another --data-dir or version of the files?). Restore the data, or start a new run."
                )
    # Written once the data and the model are there: a run that cannot start leaves no files.
    if target == out:
        for directory in (out, out / "checkpoints"):
            if directory.exists():
                _remove_temporaries(directory)
        _write_json(out / "config.json", dataclasses.asdict(config))
        if carried is not None:
            _write_json(out / "stage1.json", carried)
        if epochs_done:
            # A kill may fall between the checkpoint and the files written
            # after it: they are rebuilt from the checkpoint's own record.
            _write_json(files.state, {"format": RECORD_FORMAT, "epochs_done": epochs_done,
                                      "history": history, "backend": trained_on})
            _write_text(out / "history.csv", _history_csv(history))
    initial_path = target / "initial_kernels.npz"
    if not epochs_done:
        kernels = _binary_kernels(student)
        atomic_write(initial_path, lambda temporary: np.savez(temporary, **kernels))
    if config.diagnostics:
        _trim_diagnostics(target / "diagnostics.jsonl", epochs_done)

    start = time.perf_counter()
    if epochs_done < last_epoch:
        session = _session_callback(files, history)
        # Stage 1's kernels are float: no clamp, so no tau to schedule.
        callbacks = [] if config.stage == 1 else [TauScheduler(config.tau_min, config.tau_max, epochs=config.epochs)]
        if config.diagnostics:
            callbacks += _diagnostics_callbacks(config, target)
        model.fit(
            _epoch_stream(train, epochs_done, last_epoch),
            steps_per_epoch=steps_per_epoch,
            validation_data=test,
            epochs=last_epoch,
            initial_epoch=epochs_done,
            # The stream orders the data; Keras' own shuffle would use Python's global RNG.
            shuffle=False,
            # After the others: the checkpoint's history row gets their logs (tau, diagnostics).
            callbacks=[*callbacks, session],
            verbose=config.verbose,
        )
        if session.diverged:
            good = len(history)
            kept = (
                f"the last good checkpoint ({good} epoch(s)) is kept in {files.checkpoint}"
                if good
                else "no epoch finished, so there is no checkpoint"
            )
            raise TrainingDiverged(
                f"{session.diverged}; training stopped and {kept}. --resume would replay the same steps: "
                "check the data for NaN or infinite values, or start a new run (another --out) with a lower "
                "--learning-rate."
            )
        epochs_done = len(history)
    train_seconds = time.perf_counter() - start

    if epochs_done < config.epochs:
        return {
            "complete": False,
            "epochs_done": epochs_done,
            "config": dataclasses.asdict(config),
            "history": _history_columns(history),
            "train_seconds_this_session": round(train_seconds, 1),
        }
    metrics = _finish(config, model, student, test, info, files, history, train_seconds,
                      input_wait=_input_wait(train, train_seconds))
    return metrics


def _input_wait(train, train_seconds: float) -> Optional[dict]:
    """How long this session's training steps waited for the input pipeline (the streaming sets record it)."""
    waited = getattr(train, "wait_seconds", None)
    if waited is None:
        return None
    return {"seconds": round(float(waited), 2), "batches": int(getattr(train, "batches_served", 0)),
            "share_of_training": round(float(waited) / train_seconds, 4) if train_seconds > 0 else None}


def _trim_diagnostics(path: Path, epochs_done: int) -> None:
    """Keep diagnostics.jsonl to the checkpointed epochs (a kill may have left later or torn lines)."""
    by_epoch = _diagnostics_lines(path)
    kept = [json.dumps({"epoch": e, "layers": by_epoch[e]}) for e in sorted(by_epoch) if e < epochs_done]
    if path.exists() or kept:
        _write_text(path, "".join(line + "\n" for line in kept))


def _finish(config, model, student, test, info, files: _RunFiles, history: List[dict], train_seconds: float,
            input_wait: Optional[dict] = None) -> dict:
    """Evaluate, save model.keras (the student alone), convert and verify, write metrics.json and the report (the chief)."""
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    target = files.target
    atomic_write(target / "model.keras", lambda temporary: student.save(temporary))
    if files.target != files.source:
        # Every worker takes part in evaluate() (a collective); only the chief reports.
        return {"complete": True, "chief": False, "test_accuracy": float(test_accuracy)}

    out = files.source
    columns = _history_columns(history)
    metrics = {
        "complete": True,
        "config": dataclasses.asdict(config),
        "dataset": dataclasses.asdict(info),
        "backend": _backend(),
        "parameters": int(student.count_params()),
        "history": columns,
        "train_seconds_this_session": round(train_seconds, 1),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
    }
    if config.diagnostics:
        metrics.update(_diagnostics(columns, out))
    if input_wait is not None:
        # Training time spent waiting for decoded batches: near 0 means decoding kept up with the steps.
        metrics["input_wait_this_session"] = input_wait
    if (out / "stage1.json").exists():
        metrics["stage1"] = json.loads((out / "stage1.json").read_text())
    if config.stage == 1:
        # Float kernels: nothing LCE could binarize. Stage 2 is the deployable model.
        note = (f"not converted: stage 1 trains float weights (binary activations only); stage 2 is the "
                f"deployable model: keras-recu train --recipe two-stage --stage 2 --stage1 {out} --out RUN2")
        deployment, report_text = {"converted": False, "note": note}, note
    else:
        deployment, report_text = _deploy(out, _first_images(test, config.verify_samples))
    metrics["deployment"] = deployment
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        from keras_recu.profile import summary

        summary(student)
    _write_text(out / "summary.txt", table.getvalue() + "\n" + report_text + "\n")
    _write_json(out / "metrics.json", metrics)
    from keras_recu.app.report import write_report

    write_report(out, metrics, initial=dict(np.load(out / "initial_kernels.npz")), final=_binary_kernels(student))
    return metrics


def _first_images(test, count: int) -> np.ndarray:
    images, total = [], 0
    for index in range(len(test)):
        batch = np.asarray(test[index][0])
        images.append(batch)
        total += len(batch)
        if total >= count:
            break
    return np.concatenate(images)[:count]


# --------------------------------------------------------------------------- deployment


def _deployment_fields(report) -> dict:
    return {
        "converted": True,
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


def _deploy(out: Path, images: np.ndarray) -> Tuple[dict, str]:
    """Convert the saved model.keras to model.tflite and verify it on `images`.

    Converts what the user gets, the saved file, whatever backend and
    strategy trained it: here on TensorFlow, else in a TensorFlow-backend
    subprocess (`keras_recu.deploy.convert_saved`) when TensorFlow and LCE are
    installed, else not at all, with a note on how to convert later. A
    conversion that fails is recorded too: the trained run stays whole.
    Returns metrics.json's "deployment" and the text for summary.txt.
    """
    import keras

    from keras_recu import deploy

    later = f"keras-recu convert {out} --verify"
    model_path = out / "model.keras"
    if not deploy.conversion_available():
        note = (
            f"not converted: this machine lacks TensorFlow or larq-compute-engine "
            f"(pip install 'keras-recu[tensorflow,deploy]'); on one that has both: {later}"
        )
        return {"converted": False, "note": note, "convert_later": later}, note
    try:
        if keras.backend.backend() == "tensorflow":
            model = keras.models.load_model(model_path)
            flatbuffer = deploy.convert(model)
            report = deploy.verify(model, flatbuffer, images)
        else:
            flatbuffer, report = deploy.convert_saved(model_path, inputs=images)
    except (ValueError, RuntimeError, ImportError) as error:  # ConversionError is a ValueError
        first = first_line(error) or type(error).__name__
        note = f"conversion failed ({type(error).__name__}: {first}); the trained model is in {model_path}: {later}"
        return {"converted": False, "failed": True, "note": note, "convert_later": later}, str(error)
    _write_bytes(out / "model.tflite", flatbuffer)
    return _deployment_fields(report), str(report)


# --------------------------------------------------------------------------- evaluate


def evaluate(path: str, dataset: Optional[str] = None, data_dir: Optional[str] = None, batch_size: Optional[int] = None) -> dict:
    """Test loss and accuracy of a run directory's model or of a `.keras` file.

    For a run directory the run's own test split is used, normalized as in
    training (its data set, data directory, seed, --limit-train, whose
    statistics normalize, and --limit-test); `dataset` picks another set's
    full test split.
    """
    import keras

    from keras_recu.app import data

    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    settings = {}
    if dataset is None and path.is_dir() and (path / "config.json").exists():
        saved = TrainConfig.from_file(path / "config.json")
        dataset, data_dir = saved.dataset, data_dir or saved.data_dir
        settings = dict(limit_train=saved.limit_train, limit_test=saved.limit_test, seed=saved.seed,
                        download=saved.download, **saved.data_arguments())
        batch_size = batch_size or saved.batch_size
    if dataset is None:
        raise RunError("Name the data set to evaluate on (--dataset) for a bare .keras file.")
    try:
        model = keras.models.load_model(model_path)
    except Exception as error:  # whatever the file holds: one line, not Keras' traceback
        first = first_line(error, 300)
        raise RunError(
            f"cannot load {model_path} as a Keras model ({type(error).__name__}: {first}). Pass a run "
            "directory or a .keras file written by model.save or keras-recu train."
        ) from None
    if not settings and dataset in getattr(data, "IMAGENET_DATASETS", ()):
        # A bare model: the authors' evaluation transform (resize 256, center crop 224), scaled to its input.
        settings = dict(transform=_evaluation_transform(model))
    _, test, info = data.load(dataset, batch_size or 256, data_dir=data_dir, augment=False, **settings)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    loss, accuracy = model.evaluate(test, verbose=0)
    return {"model": str(model_path), "dataset": info.name, "test_examples": info.test_examples,
            "test_loss": float(loss), "test_accuracy": float(accuracy)}


def _evaluation_transform(model):
    """The authors' evaluation transform for a model's input side: resize to side * 256 / 224, center crop."""
    from keras_recu.app import imagenet

    default = imagenet.ImageNetTransform()
    side = model.inputs[0].shape[1]
    if side is None or side == default.image_size:
        return None
    return dataclasses.replace(default, image_size=int(side),
                               resize_size=int(round(side * default.resize_size / default.image_size)))
