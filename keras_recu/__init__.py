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
* `keras_recu.larq`: the same method for larq's layers under tf-keras;
* `keras_recu.models`: the paper's ResNet-20/18/34 and VGG-small 1w1a;
* `keras_recu.data`: tf.data pipelines, offline Fashion-MNIST, tensorflow-datasets;
* `keras_recu.optimizers`: `L2SGD`, SGD with PyTorch's coupled weight decay;
* `keras_recu.train`, `keras_recu.report`: the main job and its report.

Submodules load on first use: `import keras_recu.larq` must be able to
arrange tf-keras before anything imports TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "callbacks", "cli", "constraints", "data", "deploy", "larq", "layers", "models",
    "ops", "optimizers", "profile", "quantizers", "report", "train",
)

__all__ = [*_SUBMODULES, "summary", "__version__"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_recu.{name}")
    if name == "summary":
        from keras_recu.profile import summary

        return summary
    raise AttributeError(f"module 'keras_recu' has no attribute {name!r}")
