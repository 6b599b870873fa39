"""ResNet-20 1w1a with larq's layers (tf-keras front), trained with the tau schedule, then deployed.

The same network as `keras_recu.models.resnet20_1w1a`, written with
`larq.layers.QuantConv2D` and the ReCU quantizers of `keras_recu.larq`:

* stem: float conv 3x3/16 -> BN -> hardtanh;
* 3 stages (16, 32, 64 filters) of 3 blocks; each binary conv is
  `QuantConv2D(input_quantizer=ReCUInputSign(), kernel_quantizer=ReCUSign(tau),
  use_bias=False)` -> `ChannelScale` (the reference's alpha, U[0, 1)) -> BN,
  with its own residual: `out = hardtanh(BN(alpha * conv(x)) + shortcut(x))`;
* option-A down-sampling shortcut: 2x2 average pool, zero channels split
  before and after;
* global average pool -> BN -> float dense.

It prints larq's summary, fits a few steps on random data with
`keras_recu.larq.TauScheduler`, converts with `keras_recu.deploy.convert`
(LCE's Keras converter) and prints `keras_recu.deploy.verify`'s report: all
18 binary convs become `LceBconv2d` (the per-channel scale is fused into them).

Run (repository root): PYTHONPATH=. python examples/larq_resnet20.py [--epochs 1] [--samples 64]
"""

from __future__ import annotations

# keras_recu.larq first: it arranges tf-keras (TF_USE_LEGACY_KERAS=1) before
# anything imports TensorFlow, which larq needs.
import keras_recu.larq as recu  # noqa: I001

import argparse  # noqa: E402
import os  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import larq  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_recu.deploy import convert, verify  # noqa: E402

# PyTorch's BatchNorm defaults, as in keras_recu.models.
BN = dict(momentum=0.9, epsilon=1e-5)


@tf.keras.utils.register_keras_serializable(package="larq_resnet20")
class ChannelScale(tf.keras.layers.Layer):
    """Learned per-channel scale (the reference's alpha), initialized U[0, 1)."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer=tf.keras.initializers.RandomUniform(0.0, 1.0),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs * self.scale


@tf.keras.utils.register_keras_serializable(package="larq_resnet20")
class HardTanh(tf.keras.layers.Layer):
    """clip(x, -1, 1)."""

    def call(self, inputs):
        return tf.clip_by_value(inputs, -1.0, 1.0)


@tf.keras.utils.register_keras_serializable(package="larq_resnet20")
class ChannelZeroPad(tf.keras.layers.Layer):
    """Zero channels before and after (option A's channel padding)."""

    def __init__(self, padding=(0, 0), **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(int(p) for p in padding)

    def call(self, inputs):
        return tf.pad(inputs, [[0, 0], [0, 0], [0, 0], list(self.padding)])

    def get_config(self):
        return {**super().get_config(), "padding": list(self.padding)}


def kaiming_normal():
    """torch.nn.init.kaiming_normal_: untruncated normal, std sqrt(2 / fan_in)."""
    return tf.keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def binary_conv(x, filters: int, strides: int, tau: float, name: str):
    x = larq.layers.QuantConv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        input_quantizer=recu.ReCUInputSign(), kernel_quantizer=recu.ReCUSign(tau),
        kernel_initializer=kaiming_normal(), name=name,
    )(x)
    x = ChannelScale(name=f"{name}_alpha")(x)
    return tf.keras.layers.BatchNormalization(name=f"{name}_bn", **BN)(x)


def shortcut(x, filters: int, strides: int, name: str):
    if strides != 1:
        x = tf.keras.layers.AveragePooling2D(strides, padding="same", name=f"{name}_pool")(x)
    extra = filters - x.shape[-1]
    if extra:
        x = ChannelZeroPad((extra // 2, extra - extra // 2), name=f"{name}_pad")(x)
    return x


def resnet20_1w1a(input_shape=(32, 32, 3), num_classes: int = 10, tau: float = 0.85) -> tf.keras.Model:
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.Conv2D(
        16, 3, padding="same", use_bias=False, kernel_initializer=kaiming_normal(), name="stem_conv"
    )(inputs)
    x = HardTanh(name="stem_hardtanh")(tf.keras.layers.BatchNormalization(name="stem_bn", **BN)(x))
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, 4):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            residual = shortcut(x, filters, strides, f"{prefix}_shortcut")
            y = binary_conv(x, filters, strides, tau, f"{prefix}_conv1")
            x = HardTanh(name=f"{prefix}_hardtanh1")(tf.keras.layers.Add()([y, residual]))
            y = binary_conv(x, filters, 1, tau, f"{prefix}_conv2")
            x = HardTanh(name=f"{prefix}_hardtanh2")(tf.keras.layers.Add()([y, x]))
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.BatchNormalization(name="head_bn", **BN)(x)
    outputs = tf.keras.layers.Dense(num_classes, name="head_dense")(x)
    return tf.keras.Model(inputs, outputs, name="larq_resnet20_1w1a")


def main(epochs: int = 1, samples: int = 64, seed: int = 0):
    """Build, summarize, fit on random data, convert and verify; returns verify's report."""
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=samples)

    model = resnet20_1w1a()
    larq.models.summary(model)
    model.compile(
        optimizer=tf.keras.optimizers.SGD(0.1, momentum=0.9),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x, y, batch_size=32, epochs=epochs, verbose=2,
        callbacks=[recu.TauScheduler(tau_min=0.85, tau_max=0.99)],
    )
    print("tau per epoch:", [round(t, 4) for t in history.history["tau"]])

    flatbuffer = convert(model)
    report = verify(model, flatbuffer, x[: min(samples, 16)])
    print(report)
    if not report.is_binary:
        raise SystemExit(f"binary layers left in float by LCE: {report.float_binary_layers}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.epochs, args.samples, args.seed)
