"""The paper's ImageNet ResNet-18, from a fresh model to a verified LCE flatbuffer for ARM.

Builds `imagenet_resnet18_1w1a` (the vanilla recipe's model) or
`imagenet_resnet18_two_stage` (the ReActNet-like model of the two-stage
recipe) at 224x224, trains a few steps on synthetic images with the
authors' optimizer settings (SGD 0.1 and weight decay 1e-4 on the
parameters the authors decay, or Adam 1e-3) and the tau schedule, then
converts it with larq-compute-engine and checks the flatbuffer against
the Keras model: every binary conv must be an `LceBconv2d`.

Training on ImageNet itself is `keras-recu train --recipe imagenet ...`
(see the README's ImageNet section); this script shows the pieces.

Run (TensorFlow backend, with the `deploy` extra installed):

    python examples/imagenet_resnet18.py [--model two-stage] [--steps 3] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_recu import deploy, models  # noqa: E402
from keras_recu.callbacks import TauScheduler  # noqa: E402
from keras_recu.layers import ReCUConv2D  # noqa: E402
from keras_recu.optimizers import L2Adam, L2SGD  # noqa: E402

BUILDERS = {
    "vanilla": models.imagenet_resnet18_1w1a,
    "two-stage": models.imagenet_resnet18_two_stage,
}


def build(kind: str, image_size: int, num_classes: int) -> keras.Model:
    model = BUILDERS[kind](input_shape=(image_size, image_size, 3), num_classes=num_classes)
    if kind == "vanilla":
        # imagenet/main.py: weight decay only on parameters named *conv* or *fc*.
        optimizer = L2SGD(0.1, momentum=0.9, l2=1e-4, l2_paths=("conv", "fc"))
    else:
        # imagenet_two-stage/run.sh: Adam 1e-3, no weight decay.
        optimizer = L2Adam(1e-3)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(
    kind: str = "vanilla",
    steps: int = 3,
    batch_size: int = 8,
    image_size: int = 224,
    num_classes: int = 1000,
    verify_images: int = 4,
) -> dict:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(steps * batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, size=len(images))
    model = build(kind, image_size, num_classes)
    print(f"{model.name}: {model.count_params():,} parameters, "
          f"{sum(isinstance(layer, ReCUConv2D) for layer in model.layers)} binary convs")

    start = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=2,
              callbacks=[TauScheduler(tau_min=0.85, tau_max=0.99, epochs=200)])
    print(f"{steps} training steps in {time.perf_counter() - start:.1f} s")

    flatbuffer = deploy.convert(model)
    census = deploy.census(flatbuffer)
    report = deploy.verify(model, flatbuffer, images[:verify_images])
    print(f"flatbuffer: {len(flatbuffer) / 2**20:.2f} MiB; census: {census}")
    print(report)
    return {"census": census, "report": report, "flatbuffer_bytes": len(flatbuffer)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(BUILDERS), default="vanilla")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    main(args.model, args.steps, args.batch_size, args.image_size)
