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

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from keras_recu.app import quiet_imports, rundir
from keras_recu.app.flags import UsageError, build_parser
from keras_recu.app.messages import command_line, first_line

__all__ = ["main"]


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
    if "float32_twin" in metrics:
        twin = metrics["float32_twin"]
        print(f"Under {metrics['config']['dtype_policy']}; the float32 twin that is converted: test accuracy "
              f"{twin['test_accuracy']:.2%}, the same class for {twin['argmax_agreement']:.2%} of the test images.")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    own_process = argv is None  # keras-recu itself, not main() called in a longer-lived process
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
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
