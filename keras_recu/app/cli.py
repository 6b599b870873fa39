"""The `keras-recu` command line.

    keras-recu train --model resnet20_1w1a --dataset fashion_mnist --epochs N --out RUN_DIR
        Train with the paper's recipe, checkpoint every epoch (--resume continues),
        evaluate, convert to LCE, verify, and write the report into RUN_DIR.
        --recipe imagenet (the authors' vanilla ImageNet recipe) or two-stage
        (--stage 1, then --stage 2 --stage1 STAGE1_RUN, both distilled from
        --teacher) set the authors' defaults; every value stays a flag.
    keras-recu import-torch CHECKPOINT --model NAME --out RUN
        The authors' PyTorch checkpoint as a run directory (model.keras).
    keras-recu evaluate RUN_DIR|MODEL.keras [--dataset NAME]
        Test loss and accuracy.
    keras-recu convert RUN_DIR|MODEL.keras [-o MODEL.tflite] [--verify]
        Print the summary table, convert to an LCE flatbuffer (refusing a model
        that LCE would leave partly in float), print the operator census and,
        with --verify, the verification report: on the run's own test images
        (offline) or --inputs, each disagreement told as a sign tie or as
        unexplained, which fails (exit 1). Any backend's .keras converts;
        under a non-TensorFlow backend the command runs itself again on
        TensorFlow.

Exit status: 0 done; 1 the job ran and failed (the loss became NaN, LCE
would leave a binary layer in float, --verify found an unexplained
disagreement); 2 the command cannot run as given (a
bad flag or value, a missing or damaged file, a run directory that does not
allow it), with one line on stderr that says what to do; 130 interrupted.

stderr holds the command's own lines: `--help` and flag errors load no
Keras, and what TensorFlow prints by itself (start-up, XLA, the converter) is
captured (`keras_recu.app.quiet_imports`), shown with `keras-recu -v COMMAND`
or when TensorFlow fails to load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from keras_recu.app import quiet_imports, rundir
from keras_recu.app.messages import command_line, first_line

__all__ = ["main"]


class UsageError(Exception):
    """A mistake of the user's: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
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


# --------------------------------------------------------------------------- train


def _train_parser(commands) -> None:
    from keras_recu.app.config import TrainConfig
    from keras_recu.app.distribution import STRATEGIES
    from keras_recu.app.recipes import LR_SCHEDULES, OPTIMIZERS, RECIPES
    from keras_recu.vocabulary import PADDINGS

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
    flag("--seed", "initial weights, data order and augmentation", type=non_negative_int)
    flag("--verbose", "Keras fit verbosity: auto, 0, 1 or 2", type=verbosity)
    flag("--diagnostics", "record dead share, quantization error, entropy and flip ratio per epoch",
         action="store_true")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out; only --verbose, --stop-after, --no-download, --workers and "
                            "--manual-dir may change")


def _user_errors() -> tuple:
    """What the job raises for a user's mistake or a missing input: printed as one line, exit status 2.

    Anything else is a bug, and keeps its traceback.
    """
    from keras_recu.app.data import CorruptDataError, DataUnavailableError
    from keras_recu.app.errors import ConfigError, RunError

    return (UsageError, RunError, ConfigError, DataUnavailableError, CorruptDataError, OSError)


def _exit_on_interrupt(out: Path) -> None:
    """Make Ctrl-C (SIGINT) end `keras-recu train` at once: the one line, then exit status 130.

    No KeyboardInterrupt is raised into the job: raised inside TensorFlow's
    tracing or a file being loaded it surfaces as another error, or crashes
    the process (SIGSEGV, seen). Ending here is as safe as a SIGKILL, which
    the run survives by design (atomic writes; the kernel lets the lock go),
    and a killed write's temporary file is removed by --resume.
    """
    import signal

    signal.signal(signal.SIGINT, lambda signum, frame: _interrupted(out, own_process=True))


def _interrupted(out: Path, own_process: bool) -> int:
    print(f"\nkeras-recu train: interrupted; `{command_line('keras-recu', 'train', '--out', out, '--resume')}` "
          "continues from the last checkpoint.", file=sys.stderr)
    if own_process:  # keras-recu itself, not main() called in a longer-lived process
        _exit_now(130)
    return 130


def _exit_now(status: int) -> None:
    """End the process at once, skipping the interpreter's teardown.

    After a Ctrl-C in training, unwinding the interrupted fit (TensorFlow's
    input-pipeline threads) and tearing TensorFlow's runtime down took
    seconds (measured: ~1 s and ~3 s on 2 CPU cores). Nothing is left to
    save: every file of the run is written atomically and the kernel lets
    the run's lock go, so the run stays resumable, as after a SIGKILL.
    """
    from os import _exit  # Python's documented exit without cleanup (not another library's private name)

    sys.stdout.flush()
    sys.stderr.flush()
    _exit(status)


def run_train(args, own_process: bool = False) -> int:
    from keras_recu.app.config import TrainConfig
    from keras_recu.app.errors import TrainingDiverged
    from keras_recu.app.train import resume_run, run

    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    given = {key: value for key, value in vars(args).items() if key in fields}
    out = Path(given.get("out", TrainConfig.out))
    if own_process:
        _exit_on_interrupt(out)
    try:
        if args.resume:
            # The saved settings, with what was passed for this session (refused where the run may not change).
            metrics = resume_run(out, **given)
        else:
            metrics = run(TrainConfig.for_recipe(**given))
    except TrainingDiverged as error:
        print(f"keras-recu train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # main() called in a longer-lived process
        return _interrupted(out, own_process)
    except _user_errors() as error:
        print(f"keras-recu train: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        return _data_error_exit("train", error)
    return _report_train(out.resolve(), metrics)


def _data_error_exit(command: str, error: Exception) -> int:
    """Exit status 2 and the data error's one line where `error` wraps one (tf.data wraps a batch's errors); else re-raise."""
    from keras_recu.app.data import data_error_behind

    cause = data_error_behind(error)
    if cause is None:
        raise error
    print(f"keras-recu {command}: {cause}", file=sys.stderr)
    return 2


def _report_train(out: Path, metrics: dict) -> int:
    if not metrics.get("complete"):
        epochs = metrics["config"]["epochs"]
        print(f"\nStopped after epoch {metrics['epochs_done']} of {epochs}; "
              f"`{command_line('keras-recu', 'train', '--out', out, '--resume')}` continues.")
        return 0
    if metrics.get("chief") is False:
        print("\nThis worker's part is done; the chief wrote the run directory.")
        return 0
    deployment = metrics["deployment"]
    print(f"\nTest accuracy {metrics['test_accuracy']:.2%}.")
    if deployment.get("converted"):
        print(
            f"LCE flatbuffer {deployment['flatbuffer_kib']} KiB, argmax agreement with Keras "
            f"{deployment['argmax_agreement']:.2%} on {deployment['verify_samples']} test images."
        )
        if "verification" in deployment:
            print(f"Verification: {deployment['verification']}.", file=sys.stdout if deployment.get("verified", True)
                  else sys.stderr)
    else:
        print(deployment["note"], file=sys.stderr if deployment.get("failed") else sys.stdout)
    print(f"Report: {command_line(out / 'report.md')} (plots and metrics.json beside it)")
    return 1 if deployment.get("failed") else 0


# --------------------------------------------------------------------------- evaluate and convert


def _model_path(path: Path, command: str) -> Path:
    """The .keras file a path names: the file itself, or a run directory's model.keras."""
    if path.is_dir():
        model = path / rundir.MODEL
        if model.exists():
            return model
        checkpoint = path / rundir.CHECKPOINTS / rundir.CHECKPOINT
        writer = rundir.holder(path)
        if writer is not None:
            last = f", or {command} its last checkpoint, {checkpoint}" if checkpoint.exists() else ""
            raise UsageError(f"{path} is being trained now by keras-recu train (pid {writer or 'unknown'}) and has no "
                             f"model.keras yet: wait for it to finish{last}.")
        if checkpoint.exists():
            raise UsageError(
                f"{path} holds a run that has not finished (no model.keras yet): finish it with "
                f"`{command_line('keras-recu', 'train', '--out', path, '--resume')}`, or {command} its last "
                f"checkpoint, {command_line(checkpoint)}."
            )
        raise UsageError(f"{path} is a directory without model.keras; pass a run directory or a .keras file.")
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    return path


def _load_model(path: Path):
    import keras

    if not zipfile.is_zipfile(path):
        raise UsageError(
            f"{path} is not a Keras model file: a .keras file is a zip archive, and this one is not "
            "(or it is cut short). Pass a run directory or a .keras file written by model.save or keras-recu train."
        )
    try:
        return keras.models.load_model(path)
    except Exception as error:  # whatever the file holds, the user gets one line, not Keras' traceback
        raise UsageError(
            f"cannot load {path} as a Keras model ({type(error).__name__}: {first_line(error, 300)}). Pass a .keras file "
            "written by model.save or keras-recu train; a model with custom layers needs their module imported."
        ) from None


def run_evaluate(args) -> int:
    from keras_recu.app.evaluate import evaluate

    try:
        _model_path(args.model, "evaluate")
        reading = rundir.ReadCheck(args.model)
        result = evaluate(str(args.model), args.dataset, args.data_dir, download=args.download)
    except _user_errors() as error:
        print(f"keras-recu evaluate: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        return _data_error_exit("evaluate", error)
    print(json.dumps(result, indent=2))
    _warn_if_written("evaluate", reading)
    return 0


def _warn_if_written(command: str, reading: "rundir.ReadCheck") -> None:
    """One line on stderr when the run was being written while this command read it (see rundir.ReadCheck)."""
    warning = reading.warning()
    if warning:
        print(f"keras-recu {command}: warning: {warning}", file=sys.stderr)


def _output_path(args, model_path: Path) -> Path:
    output = args.output or model_path.with_suffix(".tflite")
    if output.is_dir():
        raise UsageError(f"-o {output} is a directory; give a file name, e.g. -o {output / 'model.tflite'}.")
    if not output.parent.is_dir():
        raise UsageError(f"-o {output}: the directory {output.parent} does not exist; create it or choose another path.")
    if not os.access(output.parent, os.W_OK):
        raise UsageError(f"-o {output}: cannot write into {output.parent}; choose a writable path.")
    return output


def _default_inputs(args, expected: tuple):
    """The run's own test images (offline) when `args.model` is a run's; else random normal inputs, said so."""
    import numpy as np

    from keras_recu.app.data import CorruptDataError, DataUnavailableError
    from keras_recu.app.errors import ConfigError, RunError
    from keras_recu.app.evaluate import run_test_images

    try:
        images, what = run_test_images(args.model, args.samples)
        if tuple(images.shape[1:]) != expected:
            raise RunError(f"the run's test images have shape {tuple(images.shape[1:])}, the model takes {expected}")
        print(f"Verifying on {what}.")
        return images
    except (RunError, ConfigError, DataUnavailableError, CorruptDataError, ValueError, OSError) as error:
        reason = first_line(error, 200).rstrip(".")
    count = args.samples or 32
    print(f"Verifying on {count} random normal inputs of shape {expected}, not on test images ({reason}); "
          "--inputs FILE.npy verifies on your own.")
    return np.random.default_rng(args.seed).normal(size=(count, *expected)).astype("float32")


def _verify_inputs(args, model):
    import numpy as np

    expected = tuple(model.inputs[0].shape[1:])
    if args.inputs is None:
        return _default_inputs(args, expected)
    if not args.inputs.is_file():
        raise UsageError(f"--inputs {args.inputs}: no such file; pass a .npy array of shape (N, {', '.join(map(str, expected))}).")
    try:
        inputs = np.load(args.inputs, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"--inputs {args.inputs} is not a .npy array ({error}); save one with numpy.save.") from None
    if not isinstance(inputs, np.ndarray):  # an .npz archive
        raise UsageError(f"--inputs {args.inputs} is an .npz archive; pass one array saved with numpy.save (.npy).")
    if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected or not len(inputs):
        raise UsageError(
            f"--inputs {args.inputs} has shape {inputs.shape}; the model takes a batch of shape "
            f"(N, {', '.join(map(str, expected))}) with N >= 1."
        )
    if not np.issubdtype(inputs.dtype, np.number):
        raise UsageError(f"--inputs {args.inputs} holds {inputs.dtype} values; the model takes numbers.")
    finite = np.isfinite(inputs)
    if not finite.all():
        raise UsageError(
            f"--inputs {args.inputs} holds {finite.size - int(finite.sum())} non-finite values (NaN or inf); "
            "a NaN compares with nothing: pass finite images."
        )
    return inputs.astype("float32")


def _convert_on_tensorflow(argv: Sequence[str]) -> int:
    """Run this convert command again in a TensorFlow-backend process.

    A model traced on JAX or torch exports ops LCE cannot lower; the same
    .keras file loaded on TensorFlow converts.
    """
    from keras_recu.deploy import conversion_available

    if not conversion_available():
        raise UsageError(
            "convert needs TensorFlow and larq-compute-engine, which this environment lacks: "
            "pip install 'keras-recu[tensorflow,deploy]', or convert on a machine that has them."
        )
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    # Its stderr is the user's: it keeps TensorFlow's own lines off it itself.
    return subprocess.run([sys.executable, "-m", "keras_recu.app.cli", *argv], env=env,
                          stderr=quiet_imports.user_stderr()).returncode


def run_convert(args, argv: Sequence[str]) -> int:
    import keras

    try:
        if keras.backend.backend() != "tensorflow":
            return _convert_on_tensorflow(argv)
        from keras_recu.deploy import conversion_available

        if not conversion_available():
            raise UsageError("convert needs larq-compute-engine: pip install 'keras-recu[deploy]'.")
        model_path = _model_path(args.model, "convert")
        output = _output_path(args, model_path)
        reading = rundir.ReadCheck(model_path)
        model = _load_model(model_path)
        _warn_if_written("convert", reading)
        inputs = _verify_inputs(args, model) if args.verify else None
    except UsageError as error:
        print(f"keras-recu convert: {error}", file=sys.stderr)
        return 2

    from keras_recu.app.rundir import write_bytes
    from keras_recu.deploy import ConversionError, census, convert, verify
    from keras_recu.profile import summary

    summary(model)
    try:
        flatbuffer = convert(
            model,
            inference_input_type=args.io_type,
            inference_output_type=args.io_type,
            allow_float=args.allow_float,
        )
    except ConversionError as error:
        print(f"keras-recu convert: {error}", file=sys.stderr)
        return 1
    write_bytes(output, flatbuffer)
    ops = ", ".join(f"{name} x{count}" for name, count in sorted(census(flatbuffer).items()))
    print(f"Wrote {output} ({len(flatbuffer) / 1024:.1f} KiB). Operators: {ops}")
    if inputs is not None:
        report = verify(model, flatbuffer, inputs)
        print(report)
        if not report.verified:
            unexplained = [d for d in report.disagreements if not d.is_tie]
            images = ", ".join(str(d.index) for d in unexplained[:10]) + (", ..." if len(unexplained) > 10 else "")
            print(f"keras-recu convert: verification failed: {report.unexplained} of {report.samples} images "
                  f"disagree with Keras with no sign tie to explain it (images {images}); {output} may be "
                  "converted wrong.", file=sys.stderr)
            return 1
    return 0


# --------------------------------------------------------------------------- main


def _parser():
    """The command line, built from light modules only: `--help` and flag errors load neither Keras nor TensorFlow."""
    from keras_recu.app import import_torch
    from keras_recu.app.dataset_names import DATASETS

    parser = _Parser(
        prog="keras-recu", description="ReCU binary neural networks: train, convert, verify. What TensorFlow prints "
        "by itself (its start-up log, XLA, the LCE converter) is kept off stderr unless --verbose is given.")
    parser.add_argument("-v", "--verbose", action="store_true", dest="tf_log",
                        help="also show what TensorFlow, XLA and the LCE converter print on stderr (give it before "
                             "the command: keras-recu -v convert RUN); shown anyway when TensorFlow fails to load")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _train_parser(commands)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    own_process = argv is None  # keras-recu itself, not main() called in a longer-lived process
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Reported by the subcommand, whose --help lists its flags.
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")

    # Keras, and with it TensorFlow, load here, once, with what they print at
    # start-up captured (printed only if they fail); the command then runs with
    # what native code writes on stderr captured, its own lines not.
    if not args.tf_log:
        quiet_imports.quiet_environment()
    try:
        with quiet_imports.captured(show=args.tf_log):
            from keras_recu import registration

            registration.register_core()
    except ImportError as error:
        print(f"keras-recu {args.command}: cannot load Keras and its backend ({first_line(error, 300)}); "
              "check the installation, or choose another backend with KERAS_BACKEND.", file=sys.stderr)
        return 2
    with quiet_imports.captured(show=args.tf_log, python=False):
        if args.command == "train":
            return run_train(args, own_process)
        if args.command == "convert":
            return run_convert(args, argv)
        if args.command == "evaluate":
            return run_evaluate(args)
        return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
