"""Binary layers for Keras 3, with larq's argument names, and the paper's ReCUConv2D.

`QuantConv2D`, `QuantDense` and `QuantDepthwiseConv2D` are the Keras layers
of the same name with two (or one) quantizers applied in `call`: the input
quantizer to the layer's input, the kernel (depthwise) quantizer to the
latent kernel. They take any quantizer object, a registered name
(`"recu_sign"`, `"recu_input_sign"`, `"ste_sign"`) or any callable; every
other argument is Keras'. `ReCUConv2D` is the paper's binary convolution in
one layer.

Under a mixed-precision policy (`mixed_float16`, `mixed_bfloat16`) the
layers compute in the policy's compute dtype, as Keras layers do: their
output has that dtype, while the quantizers keep ReCU's statistics in float32
and hand back operands that are exactly +-1, which every float format holds.

The package, one concept a module:

* `keras_recu.layers.quantized`: `QuantizerSlots`, `QuantConv2D`,
  `QuantDepthwiseConv2D`, `QuantDense`.
* `keras_recu.layers.recu_conv`: `ReCUConv2D`.
* `keras_recu.layers.padding`: the builders' padding vocabulary
  (`PADDINGS`, `check_padding`, `pads_like_torch`, `keras_padding`), PyTorch's padding
  arithmetic, and the padding layers `ChannelZeroPad`, `ConstantPadding2D`.
* `keras_recu.layers.bias`: `LearnableBias`.

Example:

>>> import keras
>>> from keras_recu.layers import QuantConv2D, ReCUConv2D
>>> model = keras.Sequential([
...     keras.Input((32, 32, 3)),
...     keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
...     keras.layers.BatchNormalization(),
...     ReCUConv2D(16, 3, padding="same", tau=0.85),
...     keras.layers.BatchNormalization(),
...     QuantConv2D(16, 3, padding="same", input_quantizer="recu_input_sign",
...                 kernel_quantizer="recu_sign", use_bias=False),
... ])
"""

from keras_recu.layers.bias import LearnableBias
from keras_recu.layers.padding import (
    PADDINGS,
    ChannelZeroPad,
    ConstantPadding2D,
    check_conv_padding,
    check_padding,
    keras_padding,
    pads_like_torch,
    same_padding,
    torch_flip_axes,
    torch_read_padding,
)
from keras_recu.layers.quantized import QuantConv2D, QuantDense, QuantDepthwiseConv2D, QuantizerSlots
from keras_recu.layers.recu_conv import DEFAULT_TAU, TORCH_CONV_INIT, ReCUConv2D

__all__ = [
    "DEFAULT_TAU",
    "PADDINGS",
    "ChannelZeroPad",
    "ConstantPadding2D",
    "LearnableBias",
    "QuantConv2D",
    "QuantDense",
    "QuantDepthwiseConv2D",
    "QuantizerSlots",
    "ReCUConv2D",
    "TORCH_CONV_INIT",
    "check_conv_padding",
    "check_padding",
    "keras_padding",
    "pads_like_torch",
    "same_padding",
    "torch_flip_axes",
    "torch_read_padding",
]
