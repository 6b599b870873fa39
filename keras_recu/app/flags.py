"""The grammar of the `keras-recu` command line: its parser, the flags of each command, their types.

Light on purpose: it imports no Keras (the vocabularies it offers as choices
come from modules that import none either), so `keras-recu --help` and a
flag error load neither Keras nor TensorFlow. What each command does is in
`keras_recu.app.cli`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

__all__ = ["Parser", "UsageError", "add_train_parser", "build_parser"]


class UsageError(Exception):
    """A mistake of the user's: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- argument types


def _integer(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "an integer >= 0")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def fraction_pair(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def teacher_spec(text: str) -> Optional[str]:
    return None if text.strip().lower() == "none" else text


def decay_paths(text: str) -> Optional[tuple]:
    if text.strip().lower() == "all":
        return None
    paths = tuple(part.strip() for part in text.split(","))
    if not all(paths):
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated substrings such as conv,fc, got {text!r}")
    return paths


def stage_number(text: str) -> int:
    if text not in ("1", "2"):
        raise argparse.ArgumentTypeError(f"expected 1 (float weights) or 2 (binary weights, from --stage1), got {text!r}")
    return int(text)


def verbosity(text: str):
    if text == "auto":
        return text
    if text in ("0", "1", "2"):
        return int(text)
    raise argparse.ArgumentTypeError(f"expected auto, 0 (silent), 1 (progress bar) or 2 (one line per epoch), got {text!r}")




def add_train_parser(commands) -> None:
    from keras_recu.app.config import TrainConfig
    from keras_recu.app.distribution import STRATEGIES
    from keras_recu.app.recipes import LR_SCHEDULES, OPTIMIZERS, RECIPES
    from keras_recu.vocabulary import DTYPE_POLICIES, PADDINGS

    defaults = TrainConfig()
    train = commands.add_parser(
        "train",
        help="train, convert, verify and report (the main job)",
        description="Train a ReCU network with the paper's recipe, checkpointing every epoch; then evaluate, "
        "convert to LCE, verify and report. With --resume, the run in --out continues with its saved settings.",
    )

    def shown(value):
        if value is None:
            return "none"
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return value

    def flag(name, help, default=None, **kwargs):
        # SUPPRESS: a flag the user did not pass is absent, so --resume can
        # tell it from a default and the recipe's default, and take the run's
        # saved value instead.
        field = kwargs.get("dest", name.lstrip("-").replace("-", "_"))
        value = getattr(defaults, field, default) if default is None else default
        if "action" not in kwargs:
            recipes = [f"{recipe}: {shown(settings[field])}" for recipe, settings in RECIPES.items()
                       if field in settings and settings[field] != value]
            if recipes:
                help = f"{help} (default: {shown(value)}; {'; '.join(recipes)})"
            elif value is not None:
                help = f"{help} (default: {shown(value)})"
        train.add_argument(name, default=argparse.SUPPRESS, help=help, **kwargs)

    flag("--recipe", "the authors' defaults for every setting below: cifar (the paper's CIFAR recipe), "
         "imagenet (vanilla ImageNet) or two-stage (ImageNet, Adam, distillation, --stage 1 then 2)",
         choices=list(RECIPES))
    flag("--out", "run directory")
    flag("--model", "resnet20_1w1a, resnet18_1w1a, resnet34_1w1a, vgg_small_1w1a, imagenet_resnet18_1w1a, "
         "imagenet_resnet34_1w1a or imagenet_resnet18_two_stage")
    flag("--dataset", "fashion_mnist (offline default), cifar10, cifar100, mnist, svhn_cropped, synthetic, "
         "imagenet2012 (tensorflow-datasets, from your manual download), imagenette (tensorflow-datasets) or "
         "image_folder (--data-dir with train/<class>/ and val/<class>/ JPEG folders)")
    flag("--data-dir", "local data (the four IDX files, a tensorflow_datasets directory, or an image_folder root)")
    flag("--manual-dir", "--dataset imagenet2012 only (no other set reads it): the folder with "
         "ILSVRC2012_img_train.tar and _val.tar (default: DATA_DIR/downloads/manual, or DATA_DIR)")
    flag("--no-download", "never download data (offline)", dest="download", action="store_false")
    flag("--epochs", "length of the run, and of its learning-rate and tau schedules", type=positive_int)
    flag("--stop-after", "end this session after epoch N; --resume continues", type=positive_int)
    flag("--batch-size", "global batch size", type=positive_int)
    flag("--learning-rate", "peak learning rate", type=finite_float)
    flag("--optimizer", "sgd (with momentum) or adam, both with PyTorch's coupled weight decay", choices=OPTIMIZERS)
    flag("--momentum", "SGD momentum, in [0, 1)", type=finite_float)
    flag("--weight-decay", "PyTorch-style (coupled) L2", type=finite_float)
    flag("--weight-decay-paths", "decay only the variables whose path contains one of these comma-separated "
         "substrings (the authors' ImageNet rule: conv,fc), or all", type=decay_paths, default="all")
    flag("--warmup-epochs", "linear learning-rate warm-up", type=non_negative_int)
    flag("--lr-schedule", "step: warm-up and cosine to 0 updated every step; epoch: the authors' main.py, "
         "constant within an epoch, (e+1)/W warm-up, then cosine over epochs-W+1", choices=LR_SCHEDULES)
    flag("--tau-min", "tau of the first epoch, in (0.5, 1)", type=finite_float)
    flag("--tau-max", "tau the schedule approaches, in [tau-min, 1)", type=finite_float)
    flag("--no-augment", "no crop or flip (ImageNet sets: the evaluation transform on the training split too)",
         dest="augment", action="store_false")
    flag("--image-size", "ImageNet sets: side of the random-resized and center crops", type=positive_int, default=224)
    flag("--resize-size", "ImageNet sets: evaluation resizes the shorter side to this, then center-crops",
         type=positive_int, default=256)
    flag("--crop-scale", "ImageNet sets: RandomResizedCrop's area fraction range MIN MAX", type=fraction_pair,
         nargs=2, metavar=("MIN", "MAX"), default="0.08 1.25")
    flag("--crop-ratio", "ImageNet sets: RandomResizedCrop's aspect ratio range MIN MAX", type=fraction_pair,
         nargs=2, metavar=("MIN", "MAX"), default="0.75 1.333")
    flag("--lighting-std", "ImageNet sets: AlexNet-style PCA lighting noise (0: none)", type=finite_float, default=0.1)
    flag("--decoder", "ImageNet sets: JPEG decoding by tf (tf.data) or pil; auto takes tf where TensorFlow is "
         "installed", choices=["auto", "tf", "pil"])
    flag("--workers", "ImageNet sets: decoding threads (default: all cores)", type=positive_int)
    flag("--padding", "ImageNet models: torch (PyTorch's padding, the authors' model exactly) or same (Keras' "
         "padding; see keras-recu convert for what LCE makes of each)", choices=PADDINGS,
         default="the model's")
    flag("--stage", "two-stage recipe: 1 trains float weights with binary activations, 2 binary weights "
         "starting from --stage1", type=stage_number)
    flag("--stage1", "stage 2: the stage-1 run directory (or its model.keras) to start from")
    flag("--teacher", "distill from this teacher: a keras.applications name (ImageNet weights, downloaded "
         "once; the authors used torchvision's ResNet-34, which keras.applications lacks) or a .keras file taking "
         "the student's normalized images and giving logits; none: no teacher",
         type=teacher_spec)
    flag("--limit-train", "train on the first N examples", type=positive_int)
    flag("--limit-test", "test on the first N examples", type=positive_int)
    flag("--verify-samples", "test images to verify the flatbuffer on", type=positive_int)
    flag("--strategy", "mirrored, multiworker (TensorFlow) or data-parallel (JAX)", choices=STRATEGIES)
    flag("--jit-compile", "XLA on the TensorFlow backend (JAX always compiles)", action="store_true")
    flag("--dtype-policy", "Keras dtype policy: float32, mixed_bfloat16 or mixed_float16 (with Keras' loss "
         "scaling); ReCU's statistics and every variable stay float32, the model converts as its float32 twin",
         choices=DTYPE_POLICIES)
    flag("--seed", "initial weights, data order and augmentation", type=non_negative_int)
    flag("--verbose", "Keras fit verbosity: auto, 0, 1 or 2", type=verbosity)
    flag("--diagnostics", "record dead share, quantization error, entropy and flip ratio per epoch",
         action="store_true")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out; only --verbose, --stop-after, --no-download, --workers and "
                            "--manual-dir may change")


def build_parser():
    """The command line, built from light modules only: `--help` and flag errors load neither Keras nor TensorFlow."""
    from keras_recu.app import import_torch
    from keras_recu.app.dataset_names import DATASETS

    parser = Parser(
        prog="keras-recu", description="ReCU binary neural networks: train, convert, verify. What TensorFlow prints "
        "by itself (its start-up log, XLA, the LCE converter) is kept off stderr unless --verbose is given.")
    parser.add_argument("-v", "--verbose", action="store_true", dest="tf_log",
                        help="also show what TensorFlow, XLA and the LCE converter print on stderr (give it before "
                             "the command: keras-recu -v convert RUN); shown anyway when TensorFlow fails to load")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_train_parser(commands)
    import_torch.add_parser(commands)

    evaluate = commands.add_parser("evaluate", help="test loss and accuracy of a run or a .keras file")
    evaluate.add_argument("model", type=Path, help="a run directory or a .keras file")
    evaluate.add_argument("--dataset", default=None, choices=DATASETS, help="defaults to the run's data set")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--no-download", dest="download", action="store_false", default=None,
                          help="never download data (default: as the run was trained; a bare .keras file downloads)")

    convert = commands.add_parser("convert", help="convert a run or a .keras model to an LCE flatbuffer")
    convert.add_argument("model", type=Path, help="a run directory or a Keras 3 model file (.keras), of any backend")
    convert.add_argument("-o", "--output", type=Path, help="flatbuffer path (default: MODEL.tflite)")
    convert.add_argument("--verify", action="store_true", help="compare the flatbuffer with the model")
    convert.add_argument("--inputs", type=Path, help="a .npy batch (N, H, W, C) to verify on (default: the run's "
                         "own test images when its data set is available offline, else random normal inputs)")
    convert.add_argument("--samples", type=positive_int, default=None,
                         help="images to verify on (default: the run's --verify-samples, or 32 random inputs)")
    convert.add_argument("--seed", type=non_negative_int, default=0)
    convert.add_argument("--io-type", choices=["float32", "int8"], default="float32")
    convert.add_argument("--allow-float", action="store_true", help="accept binary layers LCE leaves in float")
    return parser, commands
