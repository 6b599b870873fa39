"""Deployment figures for a ReCU ResNet-20 1w1a: conversion, size, parity, latency.

What is measured (one process, one machine):

* conversion time of the Keras 3 model to a larq-compute-engine flatbuffer
  (`keras_recu.deploy.convert`: SavedModel export + LCE converter);
* the flatbuffer's size against the float32 TFLite flatbuffer of the same
  network with float convolutions (TensorFlow's own converter);
* parity of the LCE flatbuffer with the Keras model (`keras_recu.deploy.verify`);
* single-image latency of the LCE flatbuffer in LCE's interpreter against the
  float32 TFLite flatbuffer in TensorFlow's interpreter (XNNPACK), median of
  `--runs`, for 1 and 2 threads, interleaved.

Honest label: on x86-64, LCE's interpreter runs its portable C++ kernels, not
the optimized 64-bit ARM ones LCE is built for; the latency ratio here says
nothing about a phone or an ARM board. The size ratio and the census do.

The network is `keras_recu.models.resnet20_1w1a` (16-32-64 channels, 3
stages of 3 basic blocks, a residual and hardtanh per binary conv, option-A
down-sampling shortcut, first conv and last dense in float). Its BatchNorm
statistics are randomized, as trained ones would be (see the tie note in
`keras_recu.deploy.verify`).

Run (repository root):

    .venv/bin/python -m benchmarks.convert [--runs 50] [--json out.json]

The last line printed is `RESULT {...}`, all figures as one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import time  # noqa: E402
from typing import Optional, Sequence  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.flatbuffer_runs import (float_tflite, lce_runner, median_latency_ms, parity_fields,  # noqa: E402
                                        tflite_runner)
from keras_recu.deploy import census, convert, verify  # noqa: E402
from keras_recu.models import float_twin, resnet20_1w1a  # noqa: E402


def randomize_batch_norm(model: keras.Model, rng: np.random.Generator) -> None:
    """Trained-looking BatchNorm statistics (see the tie note in `keras_recu.deploy.verify`)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape),
            ])


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed single-image runs per interpreter")
    parser.add_argument("--samples", type=int, default=64, help="images for the parity check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    keras.utils.set_random_seed(args.seed)
    model = resnet20_1w1a(input_shape=(32, 32, 3), num_classes=10)
    randomize_batch_norm(model, rng)
    twin = float_twin(model)

    start = time.perf_counter()
    flatbuffer = convert(model)
    convert_seconds = time.perf_counter() - start
    float_flatbuffer = float_tflite(twin)
    images = rng.normal(size=(args.samples, 32, 32, 3)).astype("float32")
    report = verify(model, flatbuffer, images)

    image = images[:1]
    latency = {}
    for threads in (1, 2):
        latency[f"{threads} thread(s)"] = median_latency_ms(
            {"lce_flatbuffer": lce_runner(flatbuffer, threads), "float32_tflite": tflite_runner(float_flatbuffer, threads)},
            image,
            args.runs,
        )

    result = {
        "benchmark": "keras_recu convert, ResNet-20 1w1a",
        "parameters": model.count_params(),
        "binary_convs": len(report.binary_layers),
        "census": census(flatbuffer),
        "convert_seconds": round(convert_seconds, 2),
        "lce_flatbuffer_kib": round(len(flatbuffer) / 1024, 1),
        "float32_tflite_kib": round(len(float_flatbuffer) / 1024, 1),
        "size_ratio_float_over_lce": round(len(float_flatbuffer) / len(flatbuffer), 2),
        "parity": parity_fields(report),
        "latency_ms_single_image_x86": latency,
        "latency_note": "x86-64: LCE runs portable kernels, not its optimized ARM64 ones",
        "environment": harness.environment(),
    }
    print(f"ResNet-20 1w1a: {result['parameters']} parameters, {result['binary_convs']} binary convs")
    print(f"operators: {result['census']}")
    print(f"conversion: {result['convert_seconds']} s")
    print(
        f"size: LCE {result['lce_flatbuffer_kib']} KiB vs float32 TFLite {result['float32_tflite_kib']} KiB "
        f"({result['size_ratio_float_over_lce']}x smaller)"
    )
    print(f"parity: {report}")
    for threads, values in latency.items():
        print(f"latency, {threads}, single image, x86 (LCE portable kernels): {values}")
    harness.print_result(result)
    if args.json:
        harness.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
