"""keras-recu: ReCU binary neural networks for Keras 3, deployable with larq-compute-engine.

Modules, one per concept:

* `keras_recu.ops`: the ReCU math (standardize, Laplace threshold, clamp,
  sign, activation gradient, tau schedule), used by everything else;
* `keras_recu.quantizers`: `ReCUSign`, `ReCUInputSign`, `SteSign`;
* `keras_recu.constraints`: `ReCUClamp`;
* `keras_recu.callbacks`: `TauScheduler`;
* `keras_recu.layers`: `QuantConv2D`, `QuantDense`, `QuantDepthwiseConv2D`,
  `ReCUConv2D`.
"""

from keras_recu import callbacks, constraints, layers, ops, quantizers

__version__ = "0.1.0"

__all__ = ["callbacks", "constraints", "layers", "ops", "quantizers", "__version__"]
