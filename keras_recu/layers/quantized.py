"""The quantized Keras layers: QuantConv2D, QuantDepthwiseConv2D, QuantDense.

They are the Keras layers of the same name, with larq's argument names, and
two (or one) quantizers applied in `call`: the input quantizer to the
layer's input, the kernel (depthwise) quantizer to the latent kernel. They
take any quantizer object, a registered name (`"recu_sign"`,
`"recu_input_sign"`, `"ste_sign"`) or any callable; every other argument is
Keras'. The convolutions also pad with a constant (`pad_values`) or as
PyTorch does (`torch_padding`; the arithmetic is `keras_recu.layers.padding`'s).
"""

from __future__ import annotations

from typing import Any, Tuple

import keras
from keras import ops

from keras_recu import quantizers
from keras_recu.layers.padding import check_conv_padding, same_padding, torch_flip_axes

__all__ = ["QuantConv2D", "QuantDense", "QuantDepthwiseConv2D", "QuantizerSlots"]


def _quantize(quantizer, x):
    return x if quantizer is None else quantizer(x)


def _latent_kernel(layer):
    # Created without autocast (`QuantizerSlots.add_weight`), the latent
    # kernel reads as float32 inside `call` under any policy, on every
    # backend: the quantizer computes ReCU's statistics on the stored values.
    return layer.kernel


def _in_compute_dtype(layer, kernel):
    # After the quantizer: the binarized kernel (and its scale) in the
    # layer's compute dtype, which holds +-1 exactly.
    return ops.cast(kernel, layer.compute_dtype)


class QuantizerSlots:
    """How a quantized layer holds its quantizers: one attribute per argument.

    A layer lists its quantizer arguments in `quantizer_names`, takes them in
    `__init__` and hands them to `_set_quantizers`, which resolves each with
    `keras_recu.quantizers.get` (None, a name, a config dict or a callable).
    `get_config` serializes every one of them, so the layer round-trips
    through `from_config` and `.keras` files with its quantizers.
    """

    #: The names of the layer's quantizer arguments and attributes.
    quantizer_names: Tuple[str, ...] = ()

    #: The variables a quantizer reads, created without Keras' autocast: under
    #: a mixed policy Keras would read every variable in the compute dtype
    #: inside `call`, and ReCU's standardization and tau quantile would see
    #: bfloat16-rounded weights. (Keras keeps its own float32-only variables
    #: the same way.)
    latent_kernel_names: Tuple[str, ...] = ("kernel",)

    def add_weight(self, *args: Any, **kwargs: Any):
        if kwargs.get("name") in self.latent_kernel_names:
            kwargs["autocast"] = False
        return super().add_weight(*args, **kwargs)

    def _set_quantizers(self, **given: Any) -> None:
        for name in self.quantizer_names:
            setattr(self, name, quantizers.get(given[name]))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            **{name: quantizers.serialize(getattr(self, name)) for name in self.quantizer_names},
        }


class _QuantConvBase:
    """What the quantized convolutions share: padding, bias and activation.

    Binary activations are +-1, so zero padding is a third value; LCE can
    execute padding with +1 natively. With `pad_values != 0` and
    `padding="same"`, the input is padded explicitly and convolved "valid".

    `torch_padding=True` pads as PyTorch's `padding=kernel_size // 2` does:
    the same amount on both sides. Keras' "same" gives the same output size
    but, where the total padding is odd (a 3x3 stride-2 conv on an even
    size), puts the extra pixel at the bottom/right, where PyTorch's only
    used pad is at the top/left: a one-pixel shift of the sampling grid.
    The layer then computes `flip(conv_same(flip(x), flip(kernel)))`, with
    the flips along the axes whose padding differs. Reversing an axis
    moves "same"'s bottom/right pad to the top/left, so the result is
    PyTorch's exactly, zeros in the binarized input included, and the conv
    stays one "same" conv: LCE still lowers it to `LceBconv2d` (zero padding
    corrected inside the kernel), with the flips as REVERSE_V2 ops around it.

    Why a switch and not `padding="torch"` as the model builders take it:
    `padding` is Keras' argument, checked by Keras' conv base class against
    its own fixed vocabulary ("valid", "same") and read as such by saved
    configs and by the LCE converter; PyTorch's padding is "same" with the
    odd pixel moved, so it is a switch on top of padding="same".
    """

    def _channel_vector(self, vector):
        # Channels-last vectors broadcast as they are: LCE fuses a 1-D
        # multiplier or bias into LceBconv2d, but rejects a (1, 1, 1, C) one.
        if self.data_format == "channels_last":
            return vector
        return ops.reshape(vector, (1, -1, 1, 1))

    def _bias_and_activation(self, outputs):
        if self.use_bias:
            outputs = ops.add(outputs, self._channel_vector(self.bias))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self) -> dict:
        return {**super().get_config(), "pad_values": self.pad_values, "torch_padding": self.torch_padding}

    def _init_padding(self, pad_values: float, torch_padding: bool) -> None:
        self.pad_values, self.torch_padding = check_conv_padding(
            self.padding, pad_values, torch_padding, self.kernel_size, self.dilation_rate
        )

    def _spatial_axes(self) -> Tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _torch_flip_axes(self, inputs) -> Tuple[int, ...]:
        """The spatial axes to reverse so that "same" pads as PyTorch (see the class doc)."""
        if not self.torch_padding:
            return ()
        return torch_flip_axes(self, inputs.shape, self._spatial_axes())

    def _explicit_padding(self, inputs):
        if self.pad_values == 0.0 or self.padding != "same":
            return inputs, self.padding
        channels_last = self.data_format == "channels_last"
        spatial = inputs.shape[1:-1] if channels_last else inputs.shape[2:]
        if any(size is None for size in spatial):
            raise ValueError(
                f"{type(self).__name__} with pad_values={self.pad_values} needs "
                f"static spatial input dimensions, got {tuple(inputs.shape)}."
            )
        windows = zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
        pads = [same_padding(size, kernel, stride, dilation) for size, kernel, stride, dilation in windows]
        pad_width = [(0, 0)] + pads + [(0, 0)] if channels_last else [(0, 0), (0, 0)] + pads
        return ops.pad(inputs, pad_width, constant_values=self.pad_values), "valid"


@keras.saving.register_keras_serializable(package="keras_recu")
class QuantConv2D(QuantizerSlots, _QuantConvBase, keras.layers.Conv2D):
    """`keras.layers.Conv2D` with quantized input and kernel.

    Args:
        input_quantizer: applied to the input (e.g. `ReCUInputSign()`).
        kernel_quantizer: applied to the latent kernel (e.g. `ReCUSign()`).
        pad_values: constant for padding="same" (0 or, for LCE's one-padding, 1).
        torch_padding: pad as PyTorch's `padding=kernel_size // 2` (both
            sides alike) instead of Keras' "same"; needs padding="same".
            For weights trained in PyTorch (see `_QuantConvBase`).
        *args, **kwargs: those of `keras.layers.Conv2D`.
    """

    quantizer_names = ("input_quantizer", "kernel_quantizer")

    def __init__(
        self,
        *args: Any,
        input_quantizer=None,
        kernel_quantizer=None,
        pad_values: float = 0.0,
        torch_padding: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._set_quantizers(input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer)
        self._init_padding(pad_values, torch_padding)

    def call(self, inputs):
        # Flipped before the input quantizer, so that LCE sees its usual
        # quantizer -> conv pattern; kernel axes (kh, kw) follow the input's.
        flips = self._torch_flip_axes(inputs)
        if flips:
            inputs = ops.flip(inputs, axis=flips)
        inputs = _quantize(self.input_quantizer, inputs)
        kernel = _in_compute_dtype(self, _quantize(self.kernel_quantizer, _latent_kernel(self)))
        if flips:
            kernel = ops.flip(kernel, axis=tuple(self._spatial_axes().index(a) for a in flips))
        inputs, padding = self._explicit_padding(inputs)
        outputs = ops.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
        outputs = self._scale_outputs(outputs)
        if flips:
            outputs = ops.flip(outputs, axis=flips)
        return self._bias_and_activation(outputs)

    def _scale_outputs(self, outputs):
        return outputs


@keras.saving.register_keras_serializable(package="keras_recu")
class QuantDepthwiseConv2D(QuantizerSlots, _QuantConvBase, keras.layers.DepthwiseConv2D):
    """`keras.layers.DepthwiseConv2D` with quantized input and depthwise kernel.

    The depthwise kernel `(kh, kw, in, multiplier)` has `in * multiplier`
    output channels, one per (input channel, multiplier) pair; the quantizer
    sees it reshaped to `(kh, kw, 1, in * multiplier)` so that ReCU's
    per-output-channel statistics are taken over each filter's kh * kw weights.

    Args:
        input_quantizer: applied to the input.
        depthwise_quantizer: applied to the latent depthwise kernel.
        pad_values: constant for padding="same".
        torch_padding: pad as PyTorch's `padding=kernel_size // 2`, as in
            `QuantConv2D`.
        *args, **kwargs: those of `keras.layers.DepthwiseConv2D`.
    """

    quantizer_names = ("input_quantizer", "depthwise_quantizer")

    def __init__(
        self,
        *args: Any,
        input_quantizer=None,
        depthwise_quantizer=None,
        pad_values: float = 0.0,
        torch_padding: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._set_quantizers(input_quantizer=input_quantizer, depthwise_quantizer=depthwise_quantizer)
        self._init_padding(pad_values, torch_padding)

    def call(self, inputs):
        flips = self._torch_flip_axes(inputs)
        if flips:
            inputs = ops.flip(inputs, axis=flips)
        inputs = _quantize(self.input_quantizer, inputs)
        kernel = _latent_kernel(self)
        if self.depthwise_quantizer is not None:
            kh, kw, cin, mult = kernel.shape
            filters = ops.reshape(kernel, (kh, kw, 1, cin * mult))
            kernel = ops.reshape(self.depthwise_quantizer(filters), (kh, kw, cin, mult))
        kernel = _in_compute_dtype(self, kernel)
        if flips:
            kernel = ops.flip(kernel, axis=tuple(self._spatial_axes().index(a) for a in flips))
        inputs, padding = self._explicit_padding(inputs)
        outputs = ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
        if flips:
            outputs = ops.flip(outputs, axis=flips)
        return self._bias_and_activation(outputs)


@keras.saving.register_keras_serializable(package="keras_recu")
class QuantDense(QuantizerSlots, keras.layers.Dense):
    """`keras.layers.Dense` with quantized input and kernel.

    Args:
        input_quantizer: applied to the input.
        kernel_quantizer: applied to the latent kernel `(in, units)`.
        *args, **kwargs: those of `keras.layers.Dense`.
    """

    quantizer_names = ("input_quantizer", "kernel_quantizer")

    def __init__(
        self, *args: Any, input_quantizer=None, kernel_quantizer=None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._set_quantizers(input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer)

    def call(self, inputs):
        inputs = _quantize(self.input_quantizer, inputs)
        kernel = _in_compute_dtype(self, _quantize(self.kernel_quantizer, _latent_kernel(self)))
        outputs = ops.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
