"""`keras-recu import-torch`: the authors' PyTorch checkpoint as a run directory.

    keras-recu import-torch CHECKPOINT --model NAME --out RUN [--input-shape H,W[,C]] [--tau T]

reads CHECKPOINT (the authors' `.pth` / `.pth.tar`: a state_dict, or their
`{"state_dict": ..., "epoch": ...}`, "module." prefixes or not) into the
`keras_recu.models` builder NAME with PyTorch's padding
(`keras_recu.torch_import`) and writes into RUN:

    model.keras   the Keras model with the checkpoint's weights
    import.json   where it came from: the checkpoint's path and SHA-256, its
                  epoch and other scalar entries, the model, input shape,
                  number of classes, padding and the binary convs' tau

`keras-recu evaluate RUN --dataset NAME` and `keras-recu convert RUN` take the
directory as they take a trained run's. `keras-recu train` refuses it as an
--out (it holds a model). Exit status 0 done, 2 the import cannot run as given
(missing file, unknown model, a checkpoint of another model), with one line on
stderr.

The CLI registers the command with `add_parser(subparsers)`, which sets the
handler `run` as the parser's default `handler`.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from keras_recu.app import rundir
from keras_recu.app.messages import command_line, first_line

__all__ = ["COMMAND", "ImportRunError", "add_parser", "import_run", "run"]

COMMAND = "import-torch"
INFO = "import.json"
MODEL = rundir.MODEL


class ImportRunError(Exception):
    """The import cannot run as given; the message says why and what to do."""


def input_shape(text: str) -> tuple:
    """argparse type of --input-shape: "H,W" or "H,W,C", positive integers."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) not in (2, 3) or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected H,W or H,W,C (positive integers), got {text!r}")
    return values


def tau_value(text: str) -> float:
    """argparse type of --tau: a number in the open interval (0.5, 1), ReCU's range."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.5 < value < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number in the open interval (0.5, 1), e.g. 0.85, got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the `import-torch` command to `subparsers` (of `keras-recu`); its handler is `run`."""
    parser = subparsers.add_parser(
        COMMAND,
        help="import the authors' PyTorch checkpoint into a run directory",
        description="Load a PyTorch checkpoint of the authors' models (github z-hXu/ReCU) into the matching "
        "Keras model and write RUN/model.keras, which `keras-recu evaluate` and `convert` take.",
    )
    parser.add_argument("checkpoint", type=Path, help="the .pth / .pth.tar file")
    parser.add_argument(
        "--model", required=True,
        help="the model it was trained as: resnet20_1w1a, resnet18_1w1a, vgg_small_1w1a (CIFAR), "
        "imagenet_resnet18_1w1a, imagenet_resnet34_1w1a, imagenet_resnet18_two_stage (ImageNet)",
    )
    parser.add_argument("--out", required=True, type=Path, help="run directory to write (new or empty)")
    parser.add_argument(
        "--input-shape", type=input_shape, default=None,
        help="H,W or H,W,C of the Keras model (default: 32,32 for CIFAR models, 224,224 for ImageNet "
        "ones; channels from the checkpoint)",
    )
    parser.add_argument(
        "--tau", type=tau_value, default=None,
        help="tau of every binary conv, instead of the checkpoint's (needed only for an untrained one, "
        "whose tau is 1)",
    )
    parser.set_defaults(handler=run)
    return parser


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ImportRunError(f"--out {out} is a file; pass a directory to write the run into.")
    if (out / MODEL).exists():
        raise ImportRunError(f"{out} already holds {MODEL}; choose another --out.")


def import_run(
    checkpoint: Path,
    model_name: str,
    out: Path,
    *,
    input_shape: Optional[Sequence[int]] = None,
    tau: Optional[float] = None,
) -> Dict[str, Any]:
    """Import `checkpoint` as `model_name` into the run directory `out`; return what import.json holds.

    Raises:
        ImportRunError: unknown model, or `out` already holds a model.
        keras_recu.torch_import.TorchImportError: the checkpoint does not fit the model.
        OSError: the checkpoint cannot be read, or `out` cannot be written.
    """
    from keras_recu import models
    from keras_recu.app.rundir import atomic_write, write_json
    from keras_recu.inspection import tau_holders
    from keras_recu.torch_import import TorchImportError, keras_model_for, read_torch_checkpoint

    if model_name not in models.MODELS:
        raise ImportRunError(f"unknown --model {model_name!r}; choose one of: {', '.join(sorted(models.MODELS))}.")
    if tau is not None and not (isinstance(tau, (int, float)) and 0.5 < tau < 1.0):
        raise ImportRunError(f"--tau must be a number in the open interval (0.5, 1), e.g. 0.85, got {tau!r}.")
    checkpoint, out = Path(checkpoint), Path(out)
    _check_out(out)
    if not checkpoint.is_file():
        raise ImportRunError(f"no such checkpoint file: {checkpoint}")
    state_dict, entries = read_torch_checkpoint(checkpoint)
    try:
        model = keras_model_for(state_dict, model_name, input_shape=input_shape, tau=tau)
    except TorchImportError:
        raise
    except ValueError as error:  # the builder refuses the input shape, say
        first = first_line(error) or type(error).__name__
        raise ImportRunError(
            f"cannot build {model_name} at input shape {input_shape}: {first}. The authors' models run at "
            "sizes every stride divides; use the size the checkpoint was trained at (32,32 for CIFAR, "
            "224,224 for ImageNet)."
        ) from None
    taus = sorted({round(holder.tau, 6) for holder in tau_holders(model)})
    info = {
        "checkpoint": str(checkpoint.resolve()),
        "sha256": _sha256(checkpoint),
        "checkpoint_entries": entries,
        "model": model_name,
        "input_shape": list(model.inputs[0].shape[1:]),
        "num_classes": int(model.outputs[0].shape[-1]),
        "padding": "torch",
        "tau": taus,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / MODEL, lambda temporary: model.save(temporary))
    write_json(out / INFO, info)
    return info


def run(args) -> int:
    """Handler of `keras-recu import-torch`: 0 done, 2 with one line on stderr when the import cannot run."""
    from keras_recu.torch_import import TorchImportError, UntrainedTauError

    try:
        info = import_run(args.checkpoint, args.model, args.out, input_shape=args.input_shape, tau=args.tau)
    except UntrainedTauError as error:
        print(
            f"keras-recu {COMMAND}: {args.checkpoint} is an untrained model's: its {len(error.keys)} tau buffers "
            f"({error.keys[0]} first) hold 1, outside ReCU's (0.5, 1). Pass --tau 0.85 to import it anyway "
            "(tau only matters for training on).",
            file=sys.stderr,
        )
        return 2
    except (ImportRunError, TorchImportError, OSError) as error:
        print(f"keras-recu {COMMAND}: {error}", file=sys.stderr)
        return 2
    shape = "x".join(str(n) for n in info["input_shape"])
    epoch = info["checkpoint_entries"].get("epoch")
    print(
        f"Imported {args.checkpoint}{'' if epoch is None else f' (epoch {epoch})'} as {info['model']} "
        f"({shape} input, {info['num_classes']} classes) into {args.out / MODEL}.\n"
        f"Evaluate: {command_line('keras-recu', 'evaluate', args.out)} --dataset NAME\n"
        f"Convert:  {command_line('keras-recu', 'convert', args.out, '--verify')}"
    )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m keras_recu.app.import_torch ...`: the command on its own."""
    parser = argparse.ArgumentParser(prog="keras-recu")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser(commands)
    args = parser.parse_args([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
