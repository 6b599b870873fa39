"""Converting a saved `.keras` file in a fresh TensorFlow-backend process, from any Keras backend.

`convert_saved` writes a job file (the model's path, where to write the
flatbuffer and the report, the inputs to verify on, `convert`'s options) and
runs `python -m keras_recu.deploy JOB` with `KERAS_BACKEND=tensorflow`; that
process (`main`, `run_conversion_job`) loads the model, runs `convert` and
`verify`, and writes back the outcome as JSON, which `convert_saved` turns
into its return value or into the error the subprocess met.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import keras
import numpy as np

from keras_recu.deploy.checks import ConversionError
from keras_recu.deploy.conversion import convert
from keras_recu.deploy.verification import VerificationReport, verify

# The directory that holds keras_recu/ (this file is keras_recu/deploy/saved.py).
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def conversion_available() -> bool:
    """Whether TensorFlow and larq-compute-engine are installed, so that a model can be converted here."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "larq_compute_engine"))


class SavedModelConversion(NamedTuple):
    """What `convert_saved` returns: the flatbuffer and, given inputs, the verification."""

    flatbuffer: bytes
    report: Optional[VerificationReport]


def convert_saved(
    model_path: Union[str, os.PathLike],
    path: Optional[Union[str, os.PathLike]] = None,
    *,
    inputs: Optional[np.ndarray] = None,
    target: str = "arm",
    inference_input_type: str = "float32",
    inference_output_type: str = "float32",
    default_int8_range: Optional[Sequence[float]] = None,
    allow_float: bool = False,
    timeout: Optional[float] = None,
) -> SavedModelConversion:
    """Convert a `.keras` file in a fresh TensorFlow-backend Python process, from any backend.

    LCE converts TensorFlow graphs only, so a model trained with Keras on JAX
    or PyTorch is saved, then loaded and converted by Keras on TensorFlow: a
    subprocess of this Python (`python -m keras_recu.deploy JOB`, see `main`) with
    `KERAS_BACKEND=tensorflow`, running `convert` and, when `inputs` are
    given, `verify` on the reloaded model. A `.keras` file holds no backend
    code, so the reloaded model computes what the trained one does. The file
    must load after `import keras_recu` (every layer, quantizer and
    constraint of keras_recu does; custom objects of your own do not: convert
    those in your own TensorFlow-backend process with `convert`).

    Args:
        model_path: the `.keras` file.
        path: where to write the flatbuffer (optional).
        inputs: samples to verify the flatbuffer on (see `verify`); None
            to skip verification.
        target, inference_input_type, inference_output_type,
        default_int8_range, allow_float: as for `convert`.
        timeout: seconds to wait for the subprocess (None: no limit).

    Returns:
        `(flatbuffer, report)`: the flatbuffer's bytes and the
        `VerificationReport`, None without `inputs`.

    Raises:
        FileNotFoundError: there is no file at `model_path`.
        ImportError: TensorFlow or larq-compute-engine is not installed; the
            message says where to convert instead.
        ValueError: the file does not load as a Keras model there.
        ConversionError: `convert` refused the model (the message is its).
        RuntimeError: the subprocess failed otherwise; the message holds the
            end of its error output.
    """
    model_path = Path(model_path)
    _check_convertible(model_path)
    options = dict(
        target=target,
        inference_input_type=str(inference_input_type),
        inference_output_type=str(inference_output_type),
        default_int8_range=None if default_int8_range is None else [float(v) for v in default_int8_range],
        allow_float=bool(allow_float),
    )
    with tempfile.TemporaryDirectory(prefix="keras_recu_convert_") as work:
        job = _write_job(Path(work), model_path, inputs, options)
        completed = subprocess.run(
            [sys.executable, "-m", "keras_recu.deploy", str(Path(work) / "job.json")],
            env=_tensorflow_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        outcome = json.loads(Path(job["report"]).read_text()) if Path(job["report"]).exists() else {}
        _raise_failure(model_path, completed, outcome)
        flatbuffer = Path(job["flatbuffer"]).read_bytes()
    if path is not None:
        Path(path).write_bytes(flatbuffer)
    report = outcome.get("report")
    if report is not None:
        report = VerificationReport(**{**report, "census": collections.Counter(report["census"])})
    return SavedModelConversion(flatbuffer, report)


def _check_convertible(model_path: Path) -> None:
    """Refuse a missing file, or an environment without TensorFlow and LCE (saying where to convert)."""
    if not model_path.is_file():
        raise FileNotFoundError(f"convert_saved: no such file: {model_path}")
    if not conversion_available():
        raise ImportError(
            "Converting needs TensorFlow and larq-compute-engine, which this Python "
            "environment lacks: install them (pip install 'keras-recu[deploy]'), or copy "
            f"{model_path.name} to a machine that has them and run "
            f"`keras-recu convert {model_path.name}` there."
        )


def _write_job(work: Path, model_path: Path, inputs: Optional[np.ndarray], options: Dict[str, Any]) -> Dict[str, Any]:
    """Write the job file (and the inputs) of a conversion into `work`; the job as written."""
    job = {
        "model": str(model_path.resolve()),
        "flatbuffer": str(work / "model.tflite"),
        "report": str(work / "report.json"),
        "inputs": None,
        "options": options,
    }
    if inputs is not None:
        job["inputs"] = str(work / "inputs.npy")
        np.save(job["inputs"], np.asarray(keras.ops.convert_to_numpy(inputs), dtype="float32"))
    (work / "job.json").write_text(json.dumps(job))
    return job


def _raise_failure(model_path: Path, completed: subprocess.CompletedProcess, outcome: Dict[str, Any]) -> None:
    """Raise the error the conversion process met, if any, as `convert_saved` documents it."""
    if "conversion_error" in outcome:
        raise ConversionError(outcome["conversion_error"])
    if "load_error" in outcome:
        raise ValueError(
            f"{model_path} does not load as a Keras model in a TensorFlow-backend "
            f"process: {outcome['load_error']}. Pass a `.keras` file saved by "
            "model.save() whose layers are keras_recu's or Keras' own."
        )
    if completed.returncode != 0 or "flatbuffer_bytes" not in outcome:
        tail = "\n".join(completed.stderr.strip().splitlines()[-20:])
        raise RuntimeError(
            f"Converting {model_path} in a TensorFlow-backend process failed "
            f"(exit status {completed.returncode}):\n{tail}"
        )


def _tensorflow_environment() -> Dict[str, str]:
    """This process' environment, with Keras on TensorFlow and keras_recu importable."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # keras_recu may be imported from a source tree rather than installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_conversion_job(job_path: Union[str, os.PathLike]) -> int:
    """The conversion process of `convert_saved`: convert (and verify) as the job file says.

    Writes the outcome to the job's report file: the flatbuffer's size and the
    verification report, or the load or conversion error. Returns the exit
    status: 0 converted, 3 `convert` refused the model, 4 it did not load.
    """
    job = json.loads(Path(job_path).read_text())
    report_path = Path(job["report"])
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the conversion process runs Keras on {keras.backend.backend()!r}, not tensorflow")
    try:
        model = keras.saving.load_model(job["model"], compile=False)
    except Exception as error:  # whatever makes the file unloadable, said in one line
        report_path.write_text(json.dumps({"load_error": f"{type(error).__name__}: {error}"}))
        return 4
    try:
        flatbuffer = convert(model, job["flatbuffer"], **job["options"])
    except ConversionError as error:
        report_path.write_text(json.dumps({"conversion_error": str(error)}))
        return 3
    outcome: Dict[str, Any] = {"flatbuffer_bytes": len(flatbuffer), "report": None}
    if job["inputs"] is not None:
        report = verify(model, flatbuffer, np.load(job["inputs"]))
        outcome["report"] = report.as_dict()
    report_path.write_text(json.dumps(outcome))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m keras_recu.deploy JOB`: run the conversion job file JOB; the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m keras_recu.deploy JOB  (a job file written by keras_recu.deploy.convert_saved)",
              file=sys.stderr)
        return 2
    return run_conversion_job(args[0])
