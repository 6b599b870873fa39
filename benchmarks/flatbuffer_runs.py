"""Flatbuffers run and timed: the interpreters, their single-image latency, the parity record.

Shared by the deployment benchmarks (`convert.py`, `imagenet_deploy.py`,
`imagenet_padding.py`): the float32 TFLite flatbuffer of a Keras model, a
runner of a flatbuffer in LCE's or TensorFlow Lite's interpreter, their
latencies in interleaved rounds (`timing.interleaved_rounds`), and what
`keras_recu.deploy.verify` found, as the records hold it. TensorFlow and
larq-compute-engine only.
"""

from __future__ import annotations

import tempfile
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from benchmarks.timing import interleaved_rounds, time_steps


def float_tflite(model: keras.Model) -> bytes:
    """The float32 TFLite flatbuffer of `model` (SavedModel export, TensorFlow's own converter)."""
    with tempfile.TemporaryDirectory() as export_dir:
        model.export(export_dir, format="tf_saved_model", verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(export_dir).convert()


def lce_runner(flatbuffer: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """`run(x)`: the flatbuffer in larq-compute-engine's interpreter on `threads` threads."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=threads)
    return interpreter.predict


def tflite_runner(flatbuffer: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """`run(x)`: the flatbuffer in TensorFlow Lite's interpreter (XNNPACK) on `threads` threads."""
    interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(input_index, x)
        interpreter.invoke()
        return interpreter.get_tensor(output_index)

    return run


def parity_fields(report) -> dict:
    """What `keras_recu.deploy.verify` found, as the benchmarks record it."""
    return {
        "samples": report.samples,
        "max_abs_error": report.max_abs_error,
        "max_rel_error": report.max_rel_error,
        "matching_samples": report.matching_samples,
        "argmax_agreement": report.argmax_agreement,
        "binary_layers_left_in_float": report.float_binary_layers,
    }


def median_latency_ms(runners: dict, image: np.ndarray, runs: int) -> dict:
    """Single-image latencies in interleaved rounds (`timing`), median per runner, in ms."""
    rounds = {name: (lambda run: lambda n: (run(image), time_steps(lambda: run(image), n))[1])(run)
              for name, run in runners.items()}
    timings = interleaved_rounds(rounds, rounds=runs, steps=1)
    return {name: round(t.step_median_ms, 3) for name, t in timings.items()}
