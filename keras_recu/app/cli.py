"""The `keras-recu` command line.

    keras-recu train --model resnet20_1w1a --dataset fashion_mnist --epochs N --out RUN_DIR
        Train with the paper's recipe, checkpoint every epoch (--resume continues),
        evaluate, convert to LCE, verify, and write the report into RUN_DIR.
    keras-recu evaluate RUN_DIR|MODEL.keras [--dataset NAME]
        Test loss and accuracy.
    keras-recu convert RUN_DIR|MODEL.keras [-o MODEL.tflite] [--verify]
        Print the summary table, convert to an LCE flatbuffer (refusing a model
        that LCE would leave partly in float), print the operator census and,
        with --verify, the verification report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _model_path(path: Path) -> Path:
    return path / "model.keras" if path.is_dir() else path


def run_convert(args) -> int:
    import keras
    import numpy as np

    import keras_recu.layers  # noqa: F401  (registers the classes for loading)
    import keras_recu.models  # noqa: F401
    from keras_recu.deploy import ConversionError, census, convert, verify
    from keras_recu.profile import summary

    model_path = _model_path(args.model)
    if not model_path.exists():
        print(f"keras-recu convert: no such file: {model_path}", file=sys.stderr)
        return 2
    model = keras.models.load_model(model_path)
    summary(model)
    output = args.output or model_path.with_suffix(".tflite")
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


def _train_parser(commands) -> None:
    from keras_recu.app.train import STRATEGIES, TrainConfig

    defaults = TrainConfig()
    train = commands.add_parser("train", help="train, convert, verify and report (the main job)")
    train.add_argument("--out", default=defaults.out, help="run directory")
    train.add_argument("--model", default=defaults.model, help="resnet20_1w1a, resnet18_1w1a, resnet34_1w1a, vgg_small_1w1a")
    train.add_argument("--dataset", default=defaults.dataset, help="fashion_mnist (offline default), cifar10, cifar100, mnist, ...")
    train.add_argument("--data-dir", default=None, help="local data (IDX files or a tensorflow_datasets directory)")
    train.add_argument("--no-download", dest="download", action="store_false", help="never download data (offline)")
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--stop-after", type=int, default=None, help="end this session after epoch N (resume later)")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    train.add_argument("--momentum", type=float, default=defaults.momentum)
    train.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="PyTorch-style (coupled) L2")
    train.add_argument("--warmup-epochs", type=int, default=defaults.warmup_epochs)
    train.add_argument("--tau-min", type=float, default=defaults.tau_min)
    train.add_argument("--tau-max", type=float, default=defaults.tau_max)
    train.add_argument("--no-augment", dest="augment", action="store_false")
    train.add_argument("--limit-train", type=int, default=None, help="train on the first N examples")
    train.add_argument("--limit-test", type=int, default=None, help="test on the first N examples")
    train.add_argument("--verify-samples", type=int, default=defaults.verify_samples)
    train.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy)
    train.add_argument("--jit-compile", action="store_true")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--verbose", default=defaults.verbose, help="Keras fit verbosity: auto, 0, 1, 2")
    train.add_argument("--diagnostics", action="store_true",
                       help="record dead share, quantization error, entropy and flip ratio per epoch")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")


def run_train(args) -> int:
    from keras_recu.app.train import TrainConfig, run

    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    values = {key: value for key, value in vars(args).items() if key in fields}
    if values["verbose"] not in ("auto",):
        values["verbose"] = int(values["verbose"])
    config = TrainConfig(**values)
    try:
        metrics = run(config, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as error:
        print(f"keras-recu train: {error}", file=sys.stderr)
        return 2
    out = Path(config.out).resolve()
    deployment = metrics["deployment"]
    print(
        f"\nTest accuracy {metrics['test_accuracy']:.2%}; LCE flatbuffer {deployment['flatbuffer_kib']} KiB, "
        f"argmax agreement with Keras {deployment['argmax_agreement']:.2%} on {deployment['verify_samples']} test images."
    )
    print(f"Report: {out / 'report.md'} (plots and metrics.json beside it)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="keras-recu", description="ReCU binary neural networks: train, convert, verify.")
    commands = parser.add_subparsers(dest="command", required=True)
    _train_parser(commands)

    evaluate = commands.add_parser("evaluate", help="test loss and accuracy of a run or a .keras file")
    evaluate.add_argument("model", type=Path, help="a run directory or a .keras file")
    evaluate.add_argument("--dataset", default=None, help="defaults to the run's data set")
    evaluate.add_argument("--data-dir", default=None)

    convert = commands.add_parser("convert", help="convert a run or a .keras model to an LCE flatbuffer")
    convert.add_argument("model", type=Path, help="a run directory or a Keras 3 model file (.keras)")
    convert.add_argument("-o", "--output", type=Path, help="flatbuffer path (default: MODEL.tflite)")
    convert.add_argument("--verify", action="store_true", help="compare the flatbuffer with the model")
    convert.add_argument("--inputs", type=Path, help="a .npy batch to verify on (default: random normal)")
    convert.add_argument("--samples", type=int, default=32, help="random inputs to verify on")
    convert.add_argument("--seed", type=int, default=0)
    convert.add_argument("--io-type", choices=["float32", "int8"], default="float32")
    convert.add_argument("--allow-float", action="store_true", help="accept binary layers LCE leaves in float")
    args = parser.parse_args(argv)

    if args.command == "train":
        return run_train(args)
    if args.command == "convert":
        return run_convert(args)
    if args.command == "evaluate":
        from keras_recu.app.train import evaluate as evaluate_model

        if not _model_path(args.model).exists():
            print(f"keras-recu evaluate: no such file: {_model_path(args.model)}", file=sys.stderr)
            return 2
        try:
            print(json.dumps(evaluate_model(str(args.model), args.dataset, args.data_dir), indent=2))
        except (ValueError, RuntimeError) as error:
            print(f"keras-recu evaluate: {error}", file=sys.stderr)
            return 2
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
