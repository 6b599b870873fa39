"""The settings of a training run: `TrainConfig`, its validation, and what a resumed run may change.

Every knob is a field with the paper's CIFAR recipe as its default;
`TrainConfig.for_recipe` starts from one of the authors' other recipes
(`keras_recu.app.recipes.RECIPES`). A run's config.json records every field,
and `--resume` continues with it: `TrainConfig.resumed` is the one place
where the saved settings and a session's are merged, refusing a change to
any setting outside `RESUMABLE` and `MACHINE_SETTINGS`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from keras_recu import vocabulary
from keras_recu.app import rundir
from keras_recu.app.distribution import STRATEGIES, check_strategy_backend
from keras_recu.app.errors import ConfigError, RunError
from keras_recu.app.recipes import LR_SCHEDULES, OPTIMIZERS, RECIPES

__all__ = [
    "MACHINE_SETTINGS",
    "MIN_IMAGE_SIZE",
    "RESUMABLE",
    "TRANSFORM_FIELDS",
    "TrainConfig",
    "conflicts",
    "flag",
    "min_image_size",
]

#: What a resumed run may change. The others define the run: a different
#: model, data set, seed, recipe or schedule length would continue another
#: run's weights under other rules (see `run`). `download` only decides
#: whether a missing data set may be fetched, never which data a run sees.
RESUMABLE = ("out", "verbose", "stop_after", "download")
#: The machine's side of the ImageNet-style sets, which a resumed run may
#: change too: how many threads decode, where the ILSVRC2012 tars lie.
#: Neither changes which images a batch holds.
MACHINE_SETTINGS = ("workers", "manual_dir")
#: The decoding and augmentation settings of the ImageNet-style sets
#: (`keras_recu.app.data.ImageNetTransform`); None takes the authors' value.
TRANSFORM_FIELDS = {"image_size": "image_size", "resize_size": "resize_size", "crop_scale": "scale",
                    "crop_ratio": "ratio", "lighting_std": "lighting_std"}


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
    tau_min: float = vocabulary.TAU_MIN
    tau_max: float = vocabulary.TAU_MAX
    augment: bool = True
    data_dir: Optional[str] = None
    download: bool = True  # let tensorflow-datasets download a missing data set
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    verify_samples: int = 1000
    strategy: str = "default"
    seed: int = 0
    jit_compile: bool = False  # XLA on the TensorFlow backend (JAX always compiles)
    dtype_policy: str = "float32"  # one of vocabulary.DTYPE_POLICIES; ReCU's statistics stay float32 (keras_recu.precision)
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
    # ImageNet-style sets only (None: the authors' transform, keras_recu.app.data.ImageNetTransform):
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

        The one place where a resumed run's settings are merged. `stop_after`
        and `verbose` belong to a session: they are not taken over from the
        session before. RunError when `run_dir` has no config.json, or when
        `given` changes a setting outside `RESUMABLE` and `MACHINE_SETTINGS`
        (the message lists each).
        """
        out = Path(run_dir)
        path = out / rundir.CONFIG
        if not path.exists():
            raise RunError(f"Nothing to resume in {out}: it has no config.json. Start the run without --resume.")
        saved = cls.from_file(path)
        session = {"stop_after": cls.stop_after, "verbose": cls.verbose, "out": str(run_dir)}
        asked = dataclasses.replace(saved, **{**session, **given})
        refused = conflicts(saved, asked)
        if refused:
            raise RunError(
                f"--resume continues the run in {out} with its saved settings, and these differ: "
                + "; ".join(refused)
                + f". Drop those flags (only {', '.join(flag(name) for name in RESUMABLE[1:])} may change, "
                f"and where the data is read: {', '.join(flag(name) for name in MACHINE_SETTINGS)}), or start a "
                "new run with another --out."
            )
        return dataclasses.replace(saved, **{name: getattr(asked, name) for name in RESUMABLE + MACHINE_SETTINGS})

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
        if self.dtype_policy not in vocabulary.DTYPE_POLICIES:
            raise ValueError(
                f"Unknown dtype_policy {self.dtype_policy!r}. Known: {', '.join(vocabulary.DTYPE_POLICIES)}."
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}. Known: {', '.join(STRATEGIES)}.")
        check_strategy_backend(self.strategy)
        self._validate_stages()
        self._check_image_sizes()
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
        from keras_recu import models

        if self.padding is not None:
            models.check_padding(self.padding)
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
        """The `keras_recu.app.data.ImageNetTransform` of the ImageNet-style sets (None for the others)."""
        from keras_recu.app import data

        given = {name: getattr(self, name) for name in TRANSFORM_FIELDS if getattr(self, name) is not None}
        if self.dataset not in getattr(data, "IMAGENET_DATASETS", ()):
            settings = [flag(name) for name in given]
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
        from keras_recu.app.data import imagenet

        self._check_imagenet_settings()
        if not given:
            return None
        return dataclasses.replace(
            imagenet.ImageNetTransform(), **{TRANSFORM_FIELDS[name]: value for name, value in given.items()}
        )

    def _check_imagenet_settings(self) -> None:
        """The decoder, threads and tars folder of an ImageNet-style set, each named by its flag."""
        from keras_recu.app.data import imagenet

        if self.decoder not in imagenet.DECODERS:
            raise ValueError(f"Unknown decoder {self.decoder!r}. Known: {', '.join(imagenet.DECODERS)}.")
        if self.decoder == "pil" and self.dataset != "image_folder":
            raise ValueError(f"--decoder pil: --dataset {self.dataset} comes from tensorflow-datasets, which only "
                             "the tf decoder reads; drop --decoder or pass --decoder tf.")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"`workers` must be an integer >= 1, got {self.workers!r}.")
        if self.manual_dir is not None and self.dataset != "imagenet2012":
            raise ValueError(
                f"--manual-dir {self.manual_dir}: it names the folder of the ILSVRC2012 tars that --dataset "
                f"imagenet2012 is prepared from; --dataset {self.dataset} "
                f"{'reads --data-dir only' if self.dataset == 'image_folder' else 'needs no tars'}: drop --manual-dir."
            )

    def _check_image_sizes(self) -> None:
        """--image-size at least what the model takes, --resize-size at least --image-size (ImageNet-style sets)."""
        from keras_recu.app import data
        from keras_recu.app.data import imagenet

        if self.dataset not in getattr(data, "IMAGENET_DATASETS", ()):
            return
        default = imagenet.ImageNetTransform()
        image_size = default.image_size if self.image_size is None else self.image_size
        resize_size = default.resize_size if self.resize_size is None else self.resize_size
        for name, value in (("image_size", image_size), ("resize_size", resize_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag(name)} must be a positive integer, got {value!r}.")
        smallest = min_image_size(self.model)
        if image_size < smallest:
            raise ValueError(
                f"--image-size {image_size}: {self.model} takes images of at least {smallest}x{smallest} (it "
                f"downsamples by {smallest}: below that its last stages see padding alone and training learns "
                f"nothing); pass --image-size {smallest} or more ({3 * smallest} or more for LCE to convert it)."
            )
        if resize_size < image_size:
            raise ValueError(
                f"--resize-size {resize_size}{'' if self.resize_size is not None else ' (the default)'} is smaller "
                f"than --image-size {image_size}: evaluation resizes the shorter side to --resize-size, then "
                f"center-crops --image-size; pass --resize-size {image_size} or more (the authors': "
                f"{round(image_size * default.resize_size / default.image_size)})."
            )

    def data_arguments(self) -> Dict[str, Any]:
        """The keyword arguments of `data.load` this run's data set takes beyond the common ones."""
        from keras_recu.app import data

        if self.dataset not in getattr(data, "IMAGENET_DATASETS", ()):
            return {}
        return dict(transform=self.transform(), decoder=self.decoder, workers=self.workers,
                    manual_dir=self.manual_dir)


#: The smallest input side of each model of `keras_recu.models.MODELS`: its
#: total downsampling, at which the last stage sees a 1x1 map of the image;
#: below it the strided convs run on padding alone. The CIFAR ResNet-20 has
#: two stride-2 stages (1/4), the CIFAR ResNet-18/34 three (1/8), VGG-small
#: three pools (1/8), the ImageNet ResNets five with the stem (1/32).
#: (LCE converts a binary conv correctly only on maps at least its 3x3 kernel:
#: three times these; `keras-recu convert` refuses the rest.)
MIN_IMAGE_SIZE = {
    "resnet20_1w1a": 4,
    "resnet18_1w1a": 8,
    "resnet34_1w1a": 8,
    "vgg_small_1w1a": 8,
    "imagenet_resnet18_1w1a": 32,
    "imagenet_resnet34_1w1a": 32,
    "imagenet_resnet18_two_stage": 32,
}


def min_image_size(model: str) -> int:
    """The smallest --image-size `model` takes (`MIN_IMAGE_SIZE`; 1 for a model it does not list)."""
    return MIN_IMAGE_SIZE.get(model, 1)


def flag(name: str) -> str:
    """The command-line flag of a setting."""
    return {"download": "--no-download", "augment": "--no-augment"}.get(name, "--" + name.replace("_", "-"))


def conflicts(saved: TrainConfig, given: TrainConfig) -> List[str]:
    """The settings a resumed run asks to change but may not, as 'name: saved X, given Y'."""
    lines = []
    for field in dataclasses.fields(TrainConfig):
        before, after = getattr(saved, field.name), getattr(given, field.name)
        if field.name in RESUMABLE + MACHINE_SETTINGS or before == after:
            continue
        line = f"{flag(field.name)}: saved {before!r}, given {after!r}"
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


