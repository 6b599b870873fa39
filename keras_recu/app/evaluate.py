"""The end of a run and after: test, save, convert and verify the model, report; and `evaluate` a saved one.

Deployment converts what the user gets, the saved model.keras, whatever
backend and strategy trained it: here on TensorFlow, else in a
TensorFlow-backend subprocess (`keras_recu.deploy.convert_saved`) when
TensorFlow and LCE are installed, else not at all, with a note on how to
convert later. A conversion that fails is recorded too: the trained run
stays whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from keras_recu.app import rundir
from keras_recu.app.build import binary_kernels
from keras_recu.app.config import TrainConfig
from keras_recu.app.diagnostics_log import diagnostics_metrics
from keras_recu.app.distribution import backend
from keras_recu.app.errors import RunError
from keras_recu.app.messages import command_line, first_line
from keras_recu.app.rundir import RunFiles

__all__ = ["deploy", "evaluate", "finish", "first_images", "float32_twin_evaluation", "run_test_images"]


def finish(config: TrainConfig, model, student, test, info, files: RunFiles, history: List[dict],
           train_seconds: float, input_wait: Optional[dict] = None) -> dict:
    """Evaluate, save model.keras (the student alone), convert and verify, write metrics.json and the report (the chief)."""
    test_loss, test_accuracy = model.evaluate(test, verbose=0)
    rundir.atomic_write(files.target / rundir.MODEL, lambda temporary: student.save(temporary))
    if not files.chief:
        # Every worker takes part in evaluate() (a collective); only the chief reports.
        return {"complete": True, "chief": False, "test_accuracy": float(test_accuracy)}

    out = files.source
    columns = rundir.history_columns(history)
    metrics = {
        "complete": True,
        "config": dataclasses.asdict(config),
        "dataset": dataclasses.asdict(info),
        "backend": backend(),
        "parameters": int(student.count_params()),
        "history": columns,
        "train_seconds_this_session": round(train_seconds, 1),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
    }
    if config.dtype_policy != "float32":
        metrics["float32_twin"] = float32_twin_evaluation(student, test)
    if config.diagnostics:
        metrics.update(diagnostics_metrics(columns, out / rundir.DIAGNOSTICS))
    if input_wait is not None:
        # Training time spent waiting for decoded batches: near 0 means decoding kept up with the steps.
        metrics["input_wait_this_session"] = input_wait
    if (out / rundir.STAGE1).exists():
        metrics["stage1"] = json.loads((out / rundir.STAGE1).read_text())
    if config.stage == 1:
        # Float kernels: nothing LCE could binarize. Stage 2 is the deployable model.
        note = (f"not converted: stage 1 trains float weights (binary activations only); stage 2 is the "
                f"deployable model: "
                f"{command_line('keras-recu', 'train', '--recipe', 'two-stage', '--stage', '2', '--stage1', out)} --out RUN2")
        deployment, report_text = {"converted": False, "note": note}, note
    else:
        deployment, report_text = deploy(out, first_images(test, config.verify_samples))
    metrics["deployment"] = deployment
    _write_reports(out, metrics, student, report_text)
    return metrics


def float32_twin_evaluation(student, test) -> dict:
    """Test accuracy of `student`'s float32 twin (the model deployment converts), and how often both agree.

    A model trained under a mixed policy is deployed as its float32 twin
    (`keras_recu.precision.as_float32`): the same weights computing in
    float32. Its test accuracy beside the trained model's shows what the
    policy's rounding changed; `argmax_agreement` is the share of test
    images that both classify alike.
    """
    from keras_recu import precision

    twin = precision.as_float32(student)
    right = same = total = 0
    for index in range(len(test)):
        images, labels = (np.asarray(part) for part in test[index][:2])
        float32 = np.asarray(twin.predict_on_batch(images)).argmax(axis=-1)
        mixed = np.asarray(student.predict_on_batch(images), "float32").argmax(axis=-1)
        right += int((float32 == labels.reshape(-1)).sum())
        same += int((float32 == mixed).sum())
        total += len(images)
    return {"test_accuracy": right / total, "argmax_agreement": same / total, "test_examples": total}


def _write_reports(out: Path, metrics: dict, student, report_text: str) -> None:
    """summary.txt, metrics.json, and report.md with its plots."""
    from keras_recu.app.report import write_report
    from keras_recu.profile import summary

    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        summary(student)
    rundir.write_text(out / rundir.SUMMARY, table.getvalue() + "\n" + report_text + "\n")
    rundir.write_json(out / rundir.METRICS, metrics)
    initial = dict(np.load(out / rundir.INITIAL_KERNELS))
    write_report(out, metrics, initial=initial, final=binary_kernels(student))


def first_images(test, count: int) -> np.ndarray:
    """The first `count` images of the test batches (what the flatbuffer is verified on)."""
    images, total = [], 0
    for index in range(len(test)):
        batch = np.asarray(test[index][0])
        images.append(batch)
        total += len(batch)
        if total >= count:
            break
    return np.concatenate(images)[:count]


def _deployment_fields(report) -> dict:
    """metrics.json's "deployment" of a converted and verified model (`keras_recu.deploy.verify`'s report)."""
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
        # What each disagreement was (keras_recu.deploy.ties): a sign tie, or unexplained.
        "verification": report.verdict,
        "verified": report.verified,
        "agreeing": report.agreeing,
        "sign_ties": report.ties,
        "unexplained": report.unexplained,
        "tolerance": report.tolerance,
        "tie_ulps": report.tie_ulps,
        "agreeing_max_abs_error": report.agreeing_max_abs_error,
        # A model trained under a mixed policy is converted and verified as its float32 twin.
        "trained_policy": report.trained_policy,
        "disagreements": [dataclasses.asdict(disagreement) for disagreement in report.disagreements],
    }


def deploy(out: Path, images: np.ndarray) -> Tuple[dict, str]:
    """Convert the saved model.keras to model.tflite and verify it on `images`.

    Returns metrics.json's "deployment" and the text for summary.txt; see
    the module's docstring for where the conversion runs.
    """
    import keras

    from keras_recu import deploy as lce

    later = command_line("keras-recu", "convert", out, "--verify")
    model_path = out / rundir.MODEL
    if not lce.conversion_available():
        note = (
            f"not converted: this machine lacks TensorFlow or larq-compute-engine "
            f"(pip install 'keras-recu[tensorflow,deploy]'); on one that has both: {later}"
        )
        return {"converted": False, "note": note, "convert_later": later}, note
    try:
        if keras.backend.backend() == "tensorflow":
            model = keras.models.load_model(model_path)
            flatbuffer = lce.convert(model)
            report = lce.verify(model, flatbuffer, images)
        else:
            flatbuffer, report = lce.convert_saved(model_path, inputs=images)
    except (ValueError, RuntimeError, ImportError) as error:  # ConversionError is a ValueError
        first = first_line(error) or type(error).__name__
        note = f"conversion failed ({type(error).__name__}: {first}); the trained model is in {model_path}: {later}"
        return {"converted": False, "failed": True, "note": note, "convert_later": later}, str(error)
    rundir.write_bytes(out / rundir.TFLITE, flatbuffer)
    return _deployment_fields(report), str(report)


def evaluate(path: str, dataset: Optional[str] = None, data_dir: Optional[str] = None,
             batch_size: Optional[int] = None, download: Optional[bool] = None) -> dict:
    """Test loss and accuracy of a run directory's model or of a `.keras` file.

    For a run directory the run's own test split is used, normalized as in
    training (its data set, data directory, seed, --limit-train, whose
    statistics normalize, and --limit-test); `dataset` picks another set's
    full test split. `download`: whether a missing data set may be
    downloaded; None takes the run's own setting (a run trained with
    --no-download evaluates offline too), True for a bare .keras file.
    """
    import keras

    from keras_recu.app import data

    path = Path(path)
    model_path = path / rundir.MODEL if path.is_dir() else path
    settings = {}
    saved = None
    if path.is_dir() and (path / rundir.CONFIG).exists():
        saved = TrainConfig.from_file(path / rundir.CONFIG)
    if download is None:
        download = saved.download if saved is not None else True
    if dataset is None and saved is not None:
        dataset, data_dir = saved.dataset, data_dir or saved.data_dir
        settings = dict(limit_train=saved.limit_train, limit_test=saved.limit_test, seed=saved.seed,
                        **saved.data_arguments())
        batch_size = batch_size or saved.batch_size
    if dataset is None:
        raise RunError("Name the data set to evaluate on (--dataset) for a bare .keras file.")
    model = _load_model(model_path)
    if not settings and dataset in getattr(data, "IMAGENET_DATASETS", ()):
        # A bare model: the authors' evaluation transform (resize 256, center crop 224), scaled to its input.
        settings = dict(transform=_evaluation_transform(model))
    _, test, info = data.load(dataset, batch_size or 256, data_dir=data_dir, augment=False, download=download,
                              **settings)
    _check_fits(model, model_path, info)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    loss, accuracy = model.evaluate(test, verbose=0)
    return {"model": str(model_path), "dataset": info.name, "test_examples": info.test_examples,
            "test_loss": float(loss), "test_accuracy": float(accuracy)}


def _load_model(model_path: Path):
    """The Keras model in `model_path`, or a RunError that names the file and says what it is not."""
    import zipfile

    import keras

    if not zipfile.is_zipfile(model_path):
        raise RunError(
            f"cannot load {model_path} as a Keras model: it is not a readable Keras file (a .keras file is a zip "
            "archive, and this one is not: it may be cut short or damaged). Pass a run directory or a .keras file "
            "written by model.save or keras-recu train."
        )
    try:
        return keras.models.load_model(model_path)
    except Exception as error:  # whatever the file holds: one line, not Keras' traceback
        first = first_line(error, 300)
        raise RunError(
            f"cannot load {model_path} as a Keras model ({type(error).__name__}: {first}). Pass a run "
            "directory or a .keras file written by model.save or keras-recu train."
        ) from None


def _check_fits(model, model_path: Path, info) -> None:
    """A RunError, naming both shapes, when the data set's images or classes do not fit the model."""
    takes = tuple(model.inputs[0].shape[1:])
    if len(takes) != len(info.input_shape) or any(
            want is not None and want != have for want, have in zip(takes, info.input_shape)):
        raise RunError(
            f"{model_path} takes images of shape {takes}, but {info.name}'s are {tuple(info.input_shape)}: "
            "evaluate on the data set the model was trained on, or on one with images of its shape (--dataset)."
        )
    classes = model.outputs[0].shape[-1]
    if classes is not None and classes != info.num_classes:
        raise RunError(
            f"{model_path} has {classes} outputs, but {info.name} has {info.num_classes} classes: evaluate on "
            "the data set the model was trained on, or on one with as many classes (--dataset)."
        )


def run_test_images(path: Path, count: Optional[int] = None) -> Tuple[np.ndarray, str]:
    """The first test images of the run that `path` (a run directory or its model.keras) names.

    Loaded offline as the run's training loaded them (its data set, data
    directory, limits, seed and normalization), never downloading: `count`
    images (default: the run's --verify-samples), and a phrase that says what
    they are. Raises `RunError`, saying why, when `path` is no run's or its
    data set is not available offline; the data loader's own errors
    (`DataUnavailableError`, `CorruptDataError`) pass through.
    """
    from keras_recu.app import data

    path = Path(path)
    run = path if path.is_dir() else path.parent
    if (not path.is_dir() and path.name != rundir.MODEL) or not (run / rundir.CONFIG).is_file():
        raise RunError(f"{path} is not a run directory's model (no {rundir.CONFIG} beside it)")
    saved = TrainConfig.from_file(run / rundir.CONFIG)
    count = count or saved.verify_samples
    _, test, info = data.load(saved.dataset, min(count, 256), data_dir=saved.data_dir, augment=False,
                              limit_train=saved.limit_train, limit_test=saved.limit_test, seed=saved.seed,
                              download=False, **saved.data_arguments())
    images = first_images(test, count)
    return images, f"the first {len(images)} test images of {info.name} (the run's own, as in training)"


def _evaluation_transform(model):
    """The authors' evaluation transform for a model's input side: resize to side * 256 / 224, center crop."""
    from keras_recu.app.data import imagenet

    default = imagenet.ImageNetTransform()
    side = model.inputs[0].shape[1]
    if side is None or side == default.image_size:
        return None
    return dataclasses.replace(default, image_size=int(side),
                               resize_size=int(round(side * default.resize_size / default.image_size)))
