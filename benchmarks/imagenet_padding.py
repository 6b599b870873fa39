"""What PyTorch's padding costs on larq-compute-engine (`imagenet_deploy --padding-formulations`, `--padding-cost`).

The authors' stride-2 binary convs pad like PyTorch (`padding=1`: top and
left too), which Keras' "same" does not. Two studies, beside the deployment
table of `imagenet_deploy.py`:

* `padding_formulations`: one binary 3x3 stride-2 conv with PyTorch's
  padding, written six ways (`FORMULATIONS`): what LCE makes of each
  (operator census), its largest error against PyTorch's result
  (`torch_padded_reference`) and its single-image latency;
* `padding_cost`: the test accuracy of a `keras-recu train --padding torch`
  run as trained, rebuilt with "same", and rebuilt with "same" after its
  BatchNorm statistics are re-estimated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import keras
import numpy as np
from keras import ops

from benchmarks.flatbuffer_runs import lce_runner, median_latency_ms
from benchmarks.harness import environment
from keras_recu import models
from keras_recu.deploy import census, convert
from keras_recu.layers import QuantConv2D
from keras_recu.ops import sign

#: name -> what it computes; `torch_padding` is keras_recu's layer, the rest are written out.
FORMULATIONS = {
    "same": 'Keras "same" (pads bottom/right: not PyTorch\'s grid)',
    "zero_pad_valid": "sign -> zero pad (1, 1) -> valid conv (the literal PyTorch graph)",
    "zero_pad_read_rows_valid": "sign -> zero pad of the rows the conv reads only -> valid conv",
    "torch_padding": "QuantConv2D(torch_padding=True): flip, \"same\" conv, flip",
    "stride1_subsample": "stride-1 \"same\" conv, then [:, ::2, ::2]",
    "pad_values_1": "QuantConv2D(pad_values=1): LCE's one-padding",
}


class _WrittenOut(keras.layers.Layer):
    """The formulations that are not a keras_recu layer: sign, then a conv with a constant +-1 kernel."""

    def __init__(self, formulation: str, kernel: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.formulation, self.kernel_value = formulation, kernel

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=self.kernel_value.shape, initializer="zeros", trainable=False, name="kernel")
        self.kernel.assign(self.kernel_value)

    def call(self, x):
        signs = sign(x)
        if self.formulation == "stride1_subsample":
            return ops.conv(signs, self.kernel, strides=1, padding="same")[:, ::2, ::2, :]
        after = 1 if self.formulation == "zero_pad_valid" or x.shape[1] % 2 else 0
        signs = ops.pad(signs, [(0, 0), (1, after), (1, after), (0, 0)])
        return ops.conv(signs, self.kernel, strides=2, padding="valid")


def torch_padded_reference(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """PyTorch's conv2d(sign(x), kernel, stride=2, padding=1), sign(0) = +1, in float64."""
    signs = np.pad(np.where(x >= 0, 1.0, -1.0), [(0, 0), (1, 1), (1, 1), (0, 0)])
    rows, cols = (signs.shape[1] - 3) // 2 + 1, (signs.shape[2] - 3) // 2 + 1
    out = np.zeros((x.shape[0], rows, cols, kernel.shape[-1]))
    for i in range(3):
        for j in range(3):
            out += signs[:, i : i + 2 * rows : 2, j : j + 2 * cols : 2, :] @ kernel[i, j].astype("float64")
    return out


def padding_formulations(seed: int, runs: int) -> Dict[str, Any]:
    """Census, exactness against PyTorch's padding and x86 latency (median of `runs`) of each formulation."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, channels, filters in [(16, 64, 32), (15, 64, 32), (56, 64, 128), (14, 256, 512)]:
        kernel = rng.choice([-1.0, 1.0], size=(3, 3, channels, filters)).astype("float32")
        x = rng.normal(size=(4, size, size, channels)).astype("float32")
        want = torch_padded_reference(x, kernel)
        for name in FORMULATIONS:
            inputs = keras.Input((size, size, channels))
            if name in ("same", "torch_padding", "pad_values_1"):
                layer = QuantConv2D(
                    filters, 3, strides=2, padding="same", input_quantizer="recu_input_sign", use_bias=False,
                    torch_padding=name == "torch_padding", pad_values=1.0 if name == "pad_values_1" else 0.0,
                )
                outputs = layer(inputs)
                layer.kernel.assign(kernel)
            else:
                outputs = _WrittenOut(name, kernel, name=name)(inputs)
            model = keras.Model(inputs, outputs)
            flatbuffer = convert(model, allow_float=True)
            run = lce_runner(flatbuffer, 1)
            got = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
            error = float(np.abs(got - want).max()) if got.shape == want.shape else None
            latency = median_latency_ms({"lce": run}, x[:1], runs)["lce"]
            row = {
                "formulation": name, "input": [size, size, channels], "filters": filters,
                "census": dict(sorted(census(flatbuffer).items())),
                "max_abs_error_vs_pytorch": error, "output_scale": float(np.abs(want).max()),
                "exact": error is not None and error <= 1e-5 * float(np.abs(want).max()),
                "latency_ms": latency, "flatbuffer_bytes": len(flatbuffer),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"benchmark": "binary 3x3 stride-2 conv with PyTorch's padding=1, six formulations, LCE",
            "formulations": FORMULATIONS, "rows": rows, "latency_label": "LCE interpreter, portable kernels, x86, 1 thread",
            "environment": environment()}


# --- what Keras' padding costs a model trained with PyTorch's ----------------------------------


def padding_cost(run_dir: str) -> Dict[str, Any]:
    """Test accuracy of a `keras-recu train --padding torch` run as trained, rebuilt with padding="same"
    (same weights), and rebuilt with "same" after re-estimating BatchNorm statistics on the training
    images (forward passes in training mode, no gradient step). The test split is normalized as in
    training (the run's data set, --limit-train and seed)."""
    from keras_recu.app import data  # the application, only for this study

    config = json.loads((Path(run_dir) / "config.json").read_text())
    if config.get("padding") != "torch":
        raise SystemExit(f"{run_dir} was not trained with --padding torch (its padding: {config.get('padding')!r}).")
    trained = keras.saving.load_model(Path(run_dir) / "model.keras", compile=False)
    train, test, info = data.load(config["dataset"], 256, augment=False, limit_train=config.get("limit_train"),
                                  limit_test=config.get("limit_test"), seed=config.get("seed", 0))

    def accuracy(model: keras.Model) -> float:
        hits = 0
        for i in range(len(test)):
            images, labels = test[i]
            hits += int((keras.ops.convert_to_numpy(model(images, training=False)).argmax(-1) == labels).sum())
        return hits / info.test_examples

    same = models.get(config["model"])(input_shape=info.input_shape, num_classes=info.num_classes, padding="same")
    same.set_weights(trained.get_weights())
    result = {"run": str(run_dir), "model": config["model"], "dataset": info.name, "epochs": config.get("epochs"),
              "limit_train": config.get("limit_train"), "seed": config.get("seed"), "test_examples": info.test_examples,
              "torch": accuracy(trained), "same": accuracy(same)}
    for layer in same.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9  # two passes of 40 batches leave < 1e-3 of the old statistics
    for _ in range(2):
        for i in range(len(train)):
            same(train[i][0], training=True)
    result["same_batch_norm_reestimated"] = accuracy(same)
    result["environment"] = environment()
    print(json.dumps(result), flush=True)
    return result
