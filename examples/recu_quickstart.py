"""ReCU in a Keras 3 model, three ways, trained with the tau schedule.

Builds a small binary CNN in which
  * `ReCUConv2D` is the paper's binary conv (binary input, ReCU kernel, alpha),
  * `QuantConv2D` takes ReCU's quantizers by name, larq-style, and
  * a `ReCUClamp` constraint clamps the latent weights themselves,
trains it on synthetic images with `TauScheduler`, then saves and reloads it.

Run: python examples/recu_quickstart.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_recu.callbacks import TauScheduler  # noqa: E402
from keras_recu.app.data import synthetic_images  # noqa: E402
from keras_recu.constraints import ReCUClamp  # noqa: E402
from keras_recu.layers import QuantConv2D, ReCUConv2D  # noqa: E402


def build_model(classes: int = 10) -> keras.Model:
    inputs = keras.Input((16, 16, 1))
    # The first layer stays full precision, as in every ReCU model.
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = ReCUConv2D(32, 3, padding="same", tau=0.85)(x)
    x = keras.layers.BatchNormalization()(x)
    x = QuantConv2D(
        64, 3, strides=2, padding="same", use_bias=False,
        input_quantizer="recu_input_sign",
        kernel_quantizer="recu_sign",
        kernel_constraint=ReCUClamp(tau=0.85),
    )(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs)


def main(epochs: int = 5, samples: int = 2000) -> float:
    x, y = synthetic_images(samples)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x, y, validation_split=0.2, epochs=epochs, batch_size=64, verbose=2,
        callbacks=[TauScheduler(tau_min=0.85, tau_max=0.99)],
    )
    print("tau per epoch:", [round(t, 4) for t in history.history["tau"]])
    path = os.path.join(tempfile.mkdtemp(), "recu.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert np.array_equal(model.predict(x[:64], verbose=0), reloaded.predict(x[:64], verbose=0))
    print(f"saved and reloaded {path}: identical outputs")
    return float(history.history["val_accuracy"][-1])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    print(f"validation accuracy: {main(args.epochs, args.samples):.3f}")
