"""Model profile: larq's summary table of parameters, memory and MACs, for Keras 3 models.

`larq.models.summary` profiles tf-keras models only. `summary` gives Keras 3
users the same two tables: one row per top-level layer with its input
precision, output shape, parameters per bitwidth, memory and
multiply-accumulate operations (MACs) per precision, then the model's
totals (parameters, model size, its float-32 equivalent, the compression
ratio and the share of binarized MACs). The numbers stay accessible on the
returned `ModelProfile`.

The rules are larq's:

* the kernel of a layer whose kernel quantizer (`depthwise_quantizer` for
  depthwise convolutions) has a `precision` counts as parameters of that
  bitwidth; every other weight counts as 32 bits;
* a BatchNormalization layer counts two weights per channel: `beta` and
  `gamma` fold into the moving mean and variance at inference;
* the MACs of a convolution or dense layer are, per weight other than the
  bias, its size times the number of output pixels, at precision
  `max(input precision or 32, weight bitwidth)`. ReCUConv2D's per-channel
  `alpha` is a scale applied after the convolution, not a MAC weight (it
  still counts as 32-bit parameters). A layer called several times in the
  graph counts its MACs once per call; where the output shape is unknown,
  the MACs read "?";
* only the top-level layers get a row; a nested model is one row that counts
  everything inside it;
* a layer that performs no MACs reads 0, any other layer whose MACs are not
  counted reads "?". Keras' shape-only layers (`ZERO_MAC_LAYERS`) and
  quantizers are known; a layer of your own declares it with the class
  attribute `performs_macs = False` (see `performs_no_macs`).

ReCU's `tau` is training state, not a parameter: its variables (held by the
quantizers, which are layers, and by `ReCUClamp` constraints) add neither
parameters nor memory.

The package's modules, from the bottom up: `tables` (the text: larq's table
layout and readable numbers), `counting` (the rules above, applied to one
layer) and `profiles` (`LayerProfile`, `ModelProfile`, `summary`).

Example:

>>> import keras
>>> from keras_recu.layers import QuantConv2D
>>> from keras_recu.profile import summary
>>> model = keras.Sequential([
...     keras.Input((8, 8, 3)),
...     QuantConv2D(4, 3, padding="same", input_quantizer="recu_input_sign",
...                 kernel_quantizer="recu_sign", use_bias=False),
...     keras.layers.BatchNormalization(),
... ])
>>> profile = summary(model, print_fn=lambda text: None)
>>> profile.weight_count(bitwidth=1), profile.weight_count(bitwidth=32)
(108, 8)
>>> profile.op_count(precision=1)  # 3 * 3 * 3 * 4 weights at 8 * 8 pixels
6912
>>> profile.memory  # bits: 108 binary weights, 8 float ones
364
>>> round(profile.compression_ratio, 4)  # 364 / (116 * 32)
0.0981
"""

from keras_recu.profile.counting import (
    MAC_LAYERS,
    ZERO_MAC_LAYERS,
    OperationProfile,
    Shape,
    WeightProfile,
    performs_no_macs,
)
from keras_recu.profile.profiles import LayerProfile, ModelProfile, summary

__all__ = ["WeightProfile", "OperationProfile", "LayerProfile", "ModelProfile", "summary"]
