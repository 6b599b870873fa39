"""keras-recu: ReCU binary neural networks for Keras 3, deployable with larq-compute-engine.

The layout follows the architecture; each layer imports only from below it.

The backend-neutral core (Keras 3 on TensorFlow, JAX or PyTorch), one module
per concept:

* `keras_recu.ops`: the ReCU math (standardize, Laplace threshold, clamp,
  sign, activation gradient, tau schedule), used by everything else;
* `keras_recu.tau`: tau as training state (`HasTau`, `make_tau_variable`),
  what a scheduler sets;
* `keras_recu.quantizers`: `ReCUSign`, `ReCUInputSign`, `SteSign`, `NoOp`;
* `keras_recu.constraints`: `ReCUClamp`;
* `keras_recu.callbacks`: `TauScheduler` and the schedule logic that the
  larq front's `TauScheduler` shares;
* `keras_recu.layers`: `QuantConv2D`, `QuantDense`, `QuantDepthwiseConv2D`,
  `ReCUConv2D`, `LearnableBias`;
* `keras_recu.models`: the paper's CIFAR ResNet-20/18/34 and VGG-small 1w1a,
  its ImageNet ResNet-18/34 1w1a and the two-stage ResNet-18;
* `keras_recu.optimizers`: `L2SGD`, `L2Adam`, with PyTorch's coupled weight decay;
* `keras_recu.losses`: `DistributionLoss`, the two-stage recipe's distillation loss;
* `keras_recu.diagnostics`: what ReCU does to the weights;
* `keras_recu.profile`: `summary`, larq's summary table for Keras 3 models
  (also as `keras_recu.summary`);
* `keras_recu.inspection`: finds the binary layers, quantizers and tau
  holders of a model (`keras_recu._compat` holds the few private Keras
  attributes that needs).

Above it, each needing TensorFlow (or torch, for reading checkpoints):

* `keras_recu.deploy`: `convert`, `verify` and `convert_saved` with
  larq-compute-engine;
* `keras_recu.larq`: the same method for larq's layers under tf-keras;
* `keras_recu.torch_import`: the authors' PyTorch checkpoints into the Keras
  models (torch only to read the files);
* `keras_recu.app`: data pipelines, the training job, its report, the CLI.

Importing any `keras_recu` module registers every serializable object of the
core with Keras (`keras_recu.registration`), so a saved model loads in a fresh
process after any `import keras_recu...`. The TensorFlow-bound modules load on
first use. Before that, where the larq extra is installed, the package makes
TensorFlow's `tf.keras` tf-keras (`keras_recu._compat.legacy_keras`, the one
owner of `TF_USE_LEGACY_KERAS`).

The `keras-recu` command (its console script, or `python -m
keras_recu.app.cli`) defers the registration: its `--help` and its flag
errors load neither Keras nor TensorFlow, and each command loads them itself
with TensorFlow's start-up log kept off the terminal
(`keras_recu.app.quiet_imports`), then registers the core.
"""

import importlib
import os
import sys

from keras_recu import registration
from keras_recu._compat import legacy_keras

__version__ = "0.1.0"

_CORE = ("ops", "tau", "quantizers", "constraints", "callbacks", "layers", "models",
         "optimizers", "losses", "diagnostics", "profile", "inspection")
_SUBMODULES = (*_CORE, "app", "deploy", "larq", "torch_import")

__all__ = [*_SUBMODULES, "summary", "__version__"]

#: How the `keras-recu` command is started: its console script, or this module run with -m.
_COMMAND = "keras-recu"
_COMMAND_MODULE = "keras_recu.app.cli"


def _started_as_the_command() -> bool:
    """Whether this process is the `keras-recu` command, which registers the core itself, after parsing its flags."""
    if os.path.splitext(os.path.basename((getattr(sys, "argv", None) or [""])[0]))[0] == _COMMAND:
        return True
    # `python -m keras_recu.app.cli`: while Python imports this package to find
    # the module, sys.argv[0] is "-m"; the original command line says which.
    argv = list(getattr(sys, "orig_argv", ()))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] == _COMMAND_MODULE


# Registering the core below imports Keras 3, which on the TensorFlow backend
# imports TensorFlow: first, where the larq extra is installed, make its
# tf.keras tf-keras, or `import keras_recu.larq` could never work.
legacy_keras.prefer_tf_keras()
if not _started_as_the_command():
    registration.register_core()


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_recu.{name}")
    if name == "summary":
        from keras_recu.profile import summary

        return summary
    raise AttributeError(f"module 'keras_recu' has no attribute {name!r}")
