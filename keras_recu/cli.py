"""The `keras-recu` command line.

`keras-recu demo`: a short ReCU training on synthetic data, which shows the
tau schedule at work and checks that the trained model saves and reloads.

`keras-recu convert MODEL.keras -o MODEL.tflite [--verify]`: prints the
model's summary, converts it to a larq-compute-engine flatbuffer (refusing a
model that LCE would leave partly in float), prints the operator census and,
with --verify, runs the flatbuffer next to the Keras model and prints the
verification report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def synthetic_images(samples: int, size: int = 16, classes: int = 10, seed: int = 0):
    """Noisy copies of one random binary template per class: learnable, offline.

    Returns `(x, y)`, x of shape (samples, size, size, 1) in float32.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    templates = np.sign(rng.normal(size=(classes, size, size, 1)))
    labels = rng.integers(0, classes, size=samples)
    noise = rng.normal(0.0, 1.5, size=(samples, size, size, 1))
    return (templates[labels] + noise).astype("float32"), labels.astype("int32")


def demo_model(size: int = 16, classes: int = 10, tau: float = 0.85):
    """A small CNN with two ReCU binary convolutions (first conv and head in float)."""
    import keras

    from keras_recu.layers import ReCUConv2D

    inputs = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    for filters, strides in ((32, 1), (64, 2)):
        x = ReCUConv2D(filters, 3, strides=strides, padding="same", tau=tau)(x)
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs, name="recu_demo")


def run_demo(out: Path, epochs: int, samples: int, seed: int) -> dict:
    import keras
    import numpy as np

    from keras_recu.callbacks import TauScheduler

    keras.utils.set_random_seed(seed)
    x, y = synthetic_images(samples, seed=seed)
    split = int(0.8 * samples)
    model = demo_model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(
        x[:split],
        y[:split],
        validation_data=(x[split:], y[split:]),
        epochs=epochs,
        batch_size=64,
        callbacks=[TauScheduler(0.85, 0.99)],
        verbose=2,
    )
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    same = bool(np.array_equal(model.predict(x[split:], verbose=0), reloaded.predict(x[split:], verbose=0)))
    metrics = {
        "epochs": epochs,
        "train_seconds": round(seconds, 2),
        "tau_per_epoch": [round(t, 5) for t in history.history["tau"]],
        "val_accuracy": round(float(history.history["val_accuracy"][-1]), 4),
        "reloaded_model_identical": same,
        "model": str(path),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def run_convert(args) -> int:
    import keras
    import numpy as np

    import keras_recu.layers  # noqa: F401  (registers the classes for loading)
    from keras_recu.deploy import ConversionError, census, convert, verify
    from keras_recu.profile import summary

    if not args.model.exists():
        print(f"keras-recu convert: no such file: {args.model}", file=sys.stderr)
        return 2
    model = keras.models.load_model(args.model)
    summary(model)
    output = args.output or args.model.with_suffix(".tflite")
    try:
        flatbuffer = convert(
            model,
            output,
            inference_input_type=args.io_type,
            inference_output_type=args.io_type,
            allow_float=args.allow_float,
        )
    except ConversionError as error:
        print(f"keras-recu convert: {error}", file=sys.stderr)
        return 1
    ops = ", ".join(f"{name} x{count}" for name, count in sorted(census(flatbuffer).items()))
    print(f"Wrote {output} ({len(flatbuffer) / 1024:.1f} KiB). Operators: {ops}")
    if args.verify:
        if args.inputs is not None:
            inputs = np.load(args.inputs)
        else:
            shape = (args.samples, *model.inputs[0].shape[1:])
            inputs = np.random.default_rng(args.seed).normal(size=shape).astype("float32")
            print(f"Verifying on {args.samples} random normal inputs of shape {shape[1:]}.")
        print(verify(model, flatbuffer, inputs))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="keras-recu", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="short ReCU training on synthetic data")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    demo.add_argument("--epochs", type=int, default=8)
    demo.add_argument("--samples", type=int, default=4000)
    demo.add_argument("--seed", type=int, default=0)
    convert = commands.add_parser("convert", help="convert a .keras model to an LCE flatbuffer")
    convert.add_argument("model", type=Path, help="a Keras 3 model file (.keras)")
    convert.add_argument("-o", "--output", type=Path, help="flatbuffer path (default: MODEL.tflite)")
    convert.add_argument("--verify", action="store_true", help="compare the flatbuffer with the model")
    convert.add_argument("--inputs", type=Path, help="a .npy batch to verify on (default: random normal)")
    convert.add_argument("--samples", type=int, default=32, help="random inputs to verify on")
    convert.add_argument("--seed", type=int, default=0)
    convert.add_argument("--io-type", choices=["float32", "int8"], default="float32")
    convert.add_argument("--allow-float", action="store_true", help="accept binary layers LCE leaves in float")
    args = parser.parse_args(argv)

    if args.command == "convert":
        return run_convert(args)
    if args.command == "demo":
        if args.epochs < 1 or args.samples < 100:
            parser.error("--epochs must be >= 1 and --samples >= 100")
        print("keras-recu demo: a small budget (synthetic 16x16 data, CPU), not a benchmark.")
        metrics = run_demo(args.out, args.epochs, args.samples, args.seed)
        print(json.dumps(metrics, indent=2))
        print(f"Model and metrics written to {args.out.resolve()}")
        return 0 if metrics["reloaded_model_identical"] else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
