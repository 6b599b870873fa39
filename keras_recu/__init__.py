"""keras-recu: ReCU binary neural networks for Keras 3, deployable with larq-compute-engine.

Modules, one per concept:

* `keras_recu.ops`: the ReCU math (standardize, Laplace threshold, clamp,
  sign, activation gradient, tau schedule), used by everything else;
* `keras_recu.quantizers`: `ReCUSign`, `ReCUInputSign`, `SteSign`;
* `keras_recu.constraints`: `ReCUClamp`;
* `keras_recu.callbacks`: `TauScheduler`;
* `keras_recu.layers`: `QuantConv2D`, `QuantDense`, `QuantDepthwiseConv2D`,
  `ReCUConv2D`;
* `keras_recu.profile`: `summary`, larq's summary table for Keras 3 models
  (also as `keras_recu.summary`);
* `keras_recu.deploy`: `convert` and `verify` with larq-compute-engine;
* `keras_recu.larq`: the same method for larq's layers under tf-keras.

Submodules load on first use: `import keras_recu.larq` must be able to
arrange tf-keras before anything imports TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("callbacks", "constraints", "deploy", "larq", "layers", "ops", "profile", "quantizers")

__all__ = [*_SUBMODULES, "summary", "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_recu.{name}")
    if name == "summary":
        from keras_recu.profile import summary

        return summary
    raise AttributeError(f"module 'keras_recu' has no attribute {name!r}")
