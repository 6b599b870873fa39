"""Deployment figures of the ImageNet ResNet-18s (vanilla 1w1a and two-stage), next to larq-zoo's.

What is measured, per model (one process, one machine):

* conversion of the Keras 3 model to a larq-compute-engine flatbuffer
  (`keras_recu.deploy.convert`), its size and operator census, and parity
  with Keras on `--samples` random images (`keras_recu.deploy.verify`);
* the float32 TFLite flatbuffer of `keras_recu.models.float_twin` (the same
  network with float convolutions, TensorFlow's converter): its size;
* single-image latency of both flatbuffers, median of `--runs` interleaved
  runs per thread count: the LCE flatbuffer in LCE's interpreter, the float
  one in TensorFlow's (XNNPACK).

Honest label: on x86-64 LCE's interpreter runs its portable C++ kernels, not
the optimized 64-bit ARM ones it is built for; its latency here says nothing
about a phone or a board. The published ARM latencies of larq-zoo's models
(`PUBLISHED`, with their sources) are the figures to compare with, and are
not measured here.

Both models are built as the authors' (`padding="torch"`: their stride-2
binary convs flip around an LceBconv2d, see `keras_recu.layers`), with
random weights and trained-looking BatchNorm statistics and biases (the
figures measured here do not depend on training). `--paddings torch,same`
adds the Keras-padded builds, which shows what the flips cost.

Run (repository root):

    .venv/bin/python -m benchmarks.imagenet_deploy \\
        --json benchmarks/results/imagenet-deploy.json --markdown benchmarks/results/imagenet-deploy.md

The last line printed is `RESULT {...}`, all figures as one JSON object.

With `--padding-formulations` it measures instead what LCE makes of one
binary 3x3 stride-2 conv with PyTorch's `padding=1` written six ways
(`imagenet_padding.FORMULATIONS`): operator census, largest error against
PyTorch's result and single-image latency:

    .venv/bin/python -m benchmarks.imagenet_deploy --padding-formulations --runs 60 \\
        --json benchmarks/results/imagenet-deploy-padding.json

With `--padding-cost RUN...` it evaluates `keras-recu train --padding torch`
runs under both paddings (`imagenet_padding.padding_cost`).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Optional, Sequence  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.flatbuffer_runs import (float_tflite, lce_runner, median_latency_ms, parity_fields,  # noqa: E402
                                        tflite_runner)
from benchmarks.imagenet_padding import padding_cost, padding_formulations  # noqa: E402
from keras_recu import models  # noqa: E402
from keras_recu.deploy import convert, verify  # noqa: E402

BUILDERS = {
    "resnet18_1w1a": models.imagenet_resnet18_1w1a,
    "resnet18_two_stage": models.imagenet_resnet18_two_stage,
}

_ZOO = "https://github.com/larq/zoo/blob/77c5853f095d0df4ec338e1e419125b561d1c1af/larq_zoo"
_LCE_README = "https://github.com/larq/compute-engine/blob/e6860fcfda03a21eef157a181cc2351cef7a22bc/README.md#performance"

#: larq-zoo's ImageNet models as published (not measured here). "size" is
#: larq-zoo's "Memory" column: the parameters' storage with 1-bit binary
#: weights, the figure that compares with a flatbuffer's size.
PUBLISHED: List[Dict[str, Any]] = [
    {
        "model": "Bi-Real Net (larq_zoo.literature.BiRealNet)",
        "top1": 57.47,
        "parameters": 11_699_112,
        "size_mb": 4.03,
        "arm_latency_ms": {"Pixel 1, 1 thread": 41.6},
        "sources": [
            f"{_ZOO}/literature/birealnet.py (docstring 'ImageNet Metrics', rendered at https://docs.larq.dev/zoo/api/literature/#birealnet)",
            _LCE_README,
        ],
    },
    {
        "model": "QuickNetSmall (larq_zoo.sota.QuickNetSmall)",
        "top1": 59.4,
        "parameters": 12_655_688,
        "size_mb": 4.00,
        "arm_latency_ms": {"RPi 4B 1.5 GHz, 1 thread": 27.7, "Pixel 1, 1 thread": 16.8, "Mac Mini M1, 1 thread": 4.0},
        "sources": [f"{_ZOO}/sota/quicknet.py (https://docs.larq.dev/zoo/api/sota/#quicknetsmall)", _LCE_README],
    },
    {
        "model": "QuickNet (larq_zoo.sota.QuickNet)",
        "top1": 63.3,
        "parameters": 13_234_088,
        "size_mb": 4.17,
        "arm_latency_ms": {"RPi 4B 1.5 GHz, 1 thread": 45.0, "Pixel 1, 1 thread": 25.5, "Mac Mini M1, 1 thread": 5.8},
        "sources": [f"{_ZOO}/sota/quicknet.py (https://docs.larq.dev/zoo/api/sota/#quicknet)", _LCE_README],
    },
    {
        "model": "QuickNetLarge (larq_zoo.sota.QuickNetLarge)",
        "top1": 66.9,
        "parameters": 23_342_248,
        "size_mb": 5.40,
        "arm_latency_ms": {"RPi 4B 1.5 GHz, 1 thread": 77.0, "Pixel 1, 1 thread": 44.2, "Mac Mini M1, 1 thread": 9.9},
        "sources": [f"{_ZOO}/sota/quicknet.py (https://docs.larq.dev/zoo/api/sota/#quicknetlarge)", _LCE_README],
    },
]

#: The authors' ImageNet top-1 (the paper's tables), for the side-by-side table.
AUTHORS_TOP1 = {"resnet18_1w1a": 60.98, "resnet18_two_stage": 66.4}


def randomize(model: keras.Model, rng: np.random.Generator) -> None:
    """Distinct conv kernels, trained-looking BatchNorm statistics and biases (see `keras_recu.deploy.verify`)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            # Distinct kernels, as trained ones are (identical constants are stored once).
            layer.kernel.assign(rng.normal(0.0, 0.05, layer.kernel.shape))
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape),
            ])
        elif type(layer).__name__ == "LearnableBias":
            layer.set_weights([rng.normal(0, 0.2, w.shape) for w in layer.get_weights()])


def float_twin_with_weights(model: keras.Model) -> keras.Model:
    """`models.float_twin` holding the binary model's (latent) weights.

    Both flatbuffers then hold the same distinct values (TensorFlow's
    converter stores identical constants once, so initial values could
    make the float flatbuffer look smaller than a trained one). A binary
    conv's weights are (kernel, alpha); the float conv takes the kernel.
    """
    twin = models.float_twin(model)
    for layer in twin.layers:
        weights = model.get_layer(layer.name).get_weights()
        if layer.weights:
            layer.set_weights(weights[: len(layer.weights)])
    return twin


def measure(name: str, padding: str, args, rng: np.random.Generator) -> Dict[str, Any]:
    """Conversion, sizes, parity and latency of model `name` built with `padding` (the table's row)."""
    size = args.image_size
    model = BUILDERS[name](input_shape=(size, size, 3), num_classes=args.classes, padding=padding)
    randomize(model, rng)
    start = time.perf_counter()
    flatbuffer = convert(model)
    convert_seconds = time.perf_counter() - start
    float_flatbuffer = float_tflite(float_twin_with_weights(model))
    images = rng.normal(size=(args.samples, size, size, 3)).astype("float32")
    report = verify(model, flatbuffer, images)
    latency = {}
    for threads in args.threads:
        latency[f"{threads} thread(s)"] = median_latency_ms(
            {"lce_flatbuffer": lce_runner(flatbuffer, threads), "float32_tflite": tflite_runner(float_flatbuffer, threads)},
            images[:1],
            args.runs,
        )
        print(f"  {name} ({padding}), {threads} thread(s): {latency[f'{threads} thread(s)']}", flush=True)
    return {
        "model": name,
        "padding": padding,
        "parameters": model.count_params(),
        "binary_convs": len(report.binary_layers),
        "census": dict(sorted(report.census.items())),
        "convert_seconds": round(convert_seconds, 1),
        "lce_flatbuffer_bytes": len(flatbuffer),
        "float32_tflite_bytes": len(float_flatbuffer),
        "size_ratio_float_over_lce": round(len(float_flatbuffer) / len(flatbuffer), 2),
        "parity": parity_fields(report),
        "latency_ms_single_image": latency,
        "latency_label": "portable kernels, x86 (LCE interpreter) vs float32 TFLite (XNNPACK), median of interleaved runs",
    }


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def markdown(result: Dict[str, Any]) -> str:
    """The side-by-side tables of BENCHMARKS.md's ImageNet section."""
    threads = [f"{t} thread(s)" for t in result["threads"]]
    header = ["model", "padding", "binary convs as LceBconv2d", "LCE flatbuffer", "float32 TFLite", "smaller by",
              "parity: samples within 1e-3, max rel. error, argmax agreement"]
    header += [f"LCE latency, portable kernels, x86, {t}" for t in threads]
    header += [f"float32 TFLite (XNNPACK), x86, {t}" for t in threads]
    rows = []
    for m in result["models"]:
        parity = m["parity"]
        row = [m["model"], m["padding"], f"{m['census'].get('LceBconv2d', 0)} of {m['binary_convs']}",
               _mib(m["lce_flatbuffer_bytes"]), _mib(m["float32_tflite_bytes"]), f"{m['size_ratio_float_over_lce']}x",
               f"{parity['matching_samples']:.0%} of {parity['samples']}, {parity['max_rel_error']:.1e}, "
               f"{parity['argmax_agreement']:.0%}"]
        row += [f"{m['latency_ms_single_image'][t]['lce_flatbuffer']:.1f} ms" for t in threads]
        row += [f"{m['latency_ms_single_image'][t]['float32_tflite']:.1f} ms" for t in threads]
        rows.append(row)
    text = harness.markdown_table(header, rows)
    census_rows = [[m["model"], m["padding"], ", ".join(f"{k} x{v}" for k, v in m["census"].items())]
                   for m in result["models"]]
    text += "\n" + harness.markdown_table(["model", "padding", "operators"], census_rows)
    side = [["keras_recu " + m["model"] + f" ({m['padding']})", f"{AUTHORS_TOP1[m['model']]} % (authors, PyTorch)",
             _mib(m["lce_flatbuffer_bytes"]), f"not measured (x86 only here: {m['latency_ms_single_image'][threads[0]]['lce_flatbuffer']:.0f} ms, portable kernels)"]
            for m in result["models"] if m["padding"] == "torch"]
    side += [[p["model"], f"{p['top1']} %", f"{p['size_mb']} MB (larq-zoo 'Memory')",
              "; ".join(f"{k}: {v} ms" for k, v in p["arm_latency_ms"].items())] for p in PUBLISHED]
    text += "\n" + harness.markdown_table(["model", "ImageNet top-1", "size", "ARM latency (published)"], side)
    return text


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(BUILDERS), help="comma-separated: " + ", ".join(BUILDERS))
    parser.add_argument("--paddings", default="torch", help="comma-separated: torch, same")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20, help="timed single-image runs per interpreter")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--samples", type=int, default=4, help="images for the parity check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--markdown", help="also write the tables here")
    parser.add_argument("--padding-formulations", action="store_true",
                        help="instead: one binary stride-2 conv with PyTorch's padding, formulated six ways")
    parser.add_argument("--padding-cost", nargs="+", metavar="RUN",
                        help="instead: test accuracy of these --padding torch runs under both paddings")
    args = parser.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.padding_cost:
        result = {"padding_cost": [padding_cost(run) for run in args.padding_cost]}
        if args.json:
            harness.write_json(args.json, result, indent=1)
        return result
    if args.padding_formulations:
        result = padding_formulations(args.seed, args.runs)
        if args.json:
            harness.write_json(args.json, result, indent=1)
        return result

    rng = np.random.default_rng(args.seed)
    keras.utils.set_random_seed(args.seed)
    measured = []
    for name in args.models.split(","):
        for padding in args.paddings.split(","):
            print(f"{harness.now()} {name}, padding={padding}", flush=True)
            measured.append(measure(name, padding, args, rng))
    result = {
        "benchmark": "keras_recu ImageNet ResNet-18 deployment (LCE)",
        "image_size": args.image_size,
        "classes": args.classes,
        "threads": args.threads,
        "models": measured,
        "published": PUBLISHED,
        "latency_note": "x86-64: LCE runs portable kernels, not its optimized ARM64 ones; ARM figures are larq's, published",
        "environment": harness.environment(argv),
    }
    tables = markdown(result)
    print(tables)
    harness.print_result(result)
    if args.json:
        harness.write_json(args.json, result, indent=1)
    if args.markdown:
        Path(args.markdown).write_text(
            f"# ImageNet ResNet-18 deployment\n\nCommand: `{result['environment']['command']}`\n"
            f"Date: {result['environment']['date']}\n\n{tables}"
        )
    return result


if __name__ == "__main__":
    main()
