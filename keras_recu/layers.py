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

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import keras
from keras import ops

from keras_recu import ops as recu_ops
from keras_recu import quantizers
from keras_recu.tau import HasTau

__all__ = ["LearnableBias", "QuantConv2D", "QuantDense", "QuantDepthwiseConv2D", "ReCUConv2D"]


def _quantize(quantizer, x):
    return x if quantizer is None else quantizer(x)


def _latent_kernel(layer):
    # Inside `call`, Keras reads variables in the layer's compute dtype
    # (float16 under mixed_float16), except that on TensorFlow
    # `ops.convert_to_tensor` hands on the variable itself, which a quantizer
    # (autocast=False) would read in float32. One explicit cast makes every
    # backend compute alike; the quantizers run ReCU's statistics in float32
    # and return this dtype.
    return ops.cast(layer.kernel, layer.compute_dtype)


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
        self.pad_values = float(pad_values)
        if self.pad_values != 0.0 and self.padding != "same":
            raise ValueError(
                f"`pad_values={pad_values}` only applies with padding='same', "
                f"got padding={self.padding!r}."
            )
        self.torch_padding = recu_ops.validate_bool(torch_padding, "torch_padding")
        if not self.torch_padding:
            return
        if self.padding != "same":
            raise ValueError(
                "`torch_padding=True` reproduces PyTorch's padding=kernel_size // 2, whose output "
                f"size is that of padding='same'; pass padding='same', got padding={self.padding!r}."
            )
        if any(kernel % 2 == 0 for kernel in self.kernel_size) or any(
            dilation != 1 for dilation in self.dilation_rate
        ):
            raise ValueError(
                "`torch_padding=True` needs an odd kernel size and dilation 1 (PyTorch's "
                f"padding=kernel_size // 2 is not 'same' otherwise); got kernel_size="
                f"{self.kernel_size}, dilation_rate={self.dilation_rate}."
            )

    def _spatial_axes(self) -> Tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def _torch_flip_axes(self, inputs) -> Tuple[int, ...]:
        """The spatial axes to reverse so that "same" pads as PyTorch (see the class doc)."""
        if not self.torch_padding:
            return ()
        axes = self._spatial_axes()
        flips = []
        for axis, kernel, stride in zip(axes, self.kernel_size, self.strides):
            size = inputs.shape[axis]
            if size is None:
                raise ValueError(
                    f"{type(self).__name__} with torch_padding=True needs static spatial input "
                    f"dimensions, got {tuple(inputs.shape)}."
                )
            torch_pad = kernel // 2
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            if total // 2 == torch_pad:  # "same" already pads like PyTorch
                continue
            if total - total // 2 == torch_pad:  # mirrored, it does
                flips.append(axis)
                continue
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: PyTorch's padding {torch_pad} with kernel "
                f"{kernel} and stride {stride} on size {size} skips input pixels that "
                "padding='same' uses, so torch_padding=True cannot reproduce it. Use a size "
                "that the stride divides, or torch_padding=False."
            )
        return tuple(flips)

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
        pads = []
        for size, kernel, stride, dilation in zip(
            spatial, self.kernel_size, self.strides, self.dilation_rate
        ):
            effective_kernel = (kernel - 1) * dilation + 1
            out_size = math.ceil(size / stride)
            total = max((out_size - 1) * stride + effective_kernel - size, 0)
            pads.append((total // 2, total - total // 2))
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
        kernel = _quantize(self.kernel_quantizer, _latent_kernel(self))
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
        kernel = _quantize(self.kernel_quantizer, _latent_kernel(self))
        outputs = ops.matmul(inputs, kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


# PyTorch's default Conv2d initialization, kaiming_uniform(a=sqrt(5)), is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the reference trains from it.
_TORCH_CONV_INIT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}


#: tau of the kernel quantizer that ReCUConv2D builds when given none.
DEFAULT_TAU = 0.85


def _kernel_quantizer_with_tau(kernel_quantizer, tau: Optional[float]):
    """ReCUConv2D's kernel quantizer, reconciled with its `tau` argument."""
    if tau is not None:
        tau = recu_ops.validate_tau(tau)
    if kernel_quantizer is None:
        return quantizers.ReCUSign(tau=DEFAULT_TAU if tau is None else tau)
    quantizer = quantizers.get(kernel_quantizer)
    if tau is None:
        return quantizer
    if not isinstance(quantizer, HasTau):
        raise ValueError(
            f"ReCUConv2D got `tau={tau}`, but its kernel quantizer "
            f"{type(quantizer).__name__} has no tau and would ignore it. Drop "
            "`tau`, or use a ReCU kernel quantizer such as ReCUSign."
        )
    if isinstance(kernel_quantizer, str):
        # A name builds the quantizer with its defaults; `tau` says which one.
        quantizer.tau = tau
    elif not recu_ops.same_tau(tau, quantizer.tau):
        raise ValueError(
            f"ReCUConv2D got `tau={tau}` and a kernel quantizer with "
            f"tau={quantizer.tau:.6g}: two different values. Pass tau once, "
            "as `tau=` or inside `kernel_quantizer`."
        )
    return quantizer


@keras.saving.register_keras_serializable(package="keras_recu")
class ReCUConv2D(QuantConv2D):
    """The paper's binary convolution: ReCU kernel, binary input, learned channel scale.

    `y = conv(sign(x), ReCUSign_tau(W)) * alpha`: the input goes through
    `ReCUInputSign`, the kernel through `ReCUSign(tau)`, there is no bias, and
    the output is scaled by a learnable per-output-channel `alpha` initialized
    uniform in [0, 1), as in the authors' `BinarizeConv2d`. The trainable
    weights are `kernel` and `alpha`. The latent kernel starts from PyTorch's
    default Conv2d initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Args:
        filters, kernel_size, strides, padding: as in `keras.layers.Conv2D`.
        tau: initial clamp quantile of the kernel quantizer, in (0.5, 1):
            0.85 by default. With a `kernel_quantizer` given, leave it None
            (the quantizer's own tau counts) or give the same value; with a
            quantizer given by name (`"recu_sign"`), it sets that
            quantizer's tau. A tau for a quantizer without one (`"ste_sign"`)
            is refused, as it would be ignored.
        alpha_initializer, alpha_regularizer, alpha_constraint: for `alpha`.
        input_quantizer, kernel_quantizer: override the ReCU quantizers.
        pad_values, torch_padding: as in `QuantConv2D` (`torch_padding=True`
            runs weights trained with PyTorch's `padding=1` exactly).
        **kwargs: other arguments of `keras.layers.Conv2D` (`use_bias`
            defaults to False).

    Example:

    >>> import numpy as np
    >>> layer = ReCUConv2D(8, 3, padding="same", tau=0.85)
    >>> tuple(layer(np.zeros((1, 8, 8, 4), "float32")).shape)
    (1, 8, 8, 8)
    >>> [w.name for w in layer.trainable_weights]
    ['kernel', 'alpha']
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        tau: Optional[float] = None,
        alpha_initializer="random_uniform_0_1",
        alpha_regularizer=None,
        alpha_constraint=None,
        input_quantizer="recu_input_sign",
        kernel_quantizer=None,
        use_bias: bool = False,
        kernel_initializer=_TORCH_CONV_INIT,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", quantizers.default_name("recu_conv2d"))
        kernel_quantizer = _kernel_quantizer_with_tau(kernel_quantizer, tau)
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            input_quantizer=input_quantizer,
            kernel_quantizer=kernel_quantizer,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            **kwargs,
        )
        if alpha_initializer == "random_uniform_0_1":
            alpha_initializer = keras.initializers.RandomUniform(0.0, 1.0)
        self.alpha_initializer = keras.initializers.get(alpha_initializer)
        self.alpha_regularizer = keras.regularizers.get(alpha_regularizer)
        self.alpha_constraint = keras.constraints.get(alpha_constraint)

    def build(self, input_shape):
        super().build(input_shape)
        self.alpha = self.add_weight(
            name="alpha",
            shape=(self.filters,),
            initializer=self.alpha_initializer,
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
            trainable=True,
        )

    def _scale_outputs(self, outputs):
        return outputs * self._channel_vector(self.alpha)

    # Keras' conv layers save only kernel and bias by position; alpha follows.
    def _alpha_slot(self) -> str:
        return str(2 if self.use_bias else 1)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self.built:
            store[self._alpha_slot()] = self.alpha

    def load_own_variables(self, store):
        super().load_own_variables(store)
        if self.built:
            self.alpha.assign(store[self._alpha_slot()])

    @property
    def tau(self) -> float:
        """tau of the kernel quantizer."""
        return self.kernel_quantizer.tau

    @tau.setter
    def tau(self, value: float) -> None:
        self.kernel_quantizer.tau = value

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            tau=None,  # held by the serialized kernel_quantizer
            alpha_initializer=keras.initializers.serialize(self.alpha_initializer),
            alpha_regularizer=keras.regularizers.serialize(self.alpha_regularizer),
            alpha_constraint=keras.constraints.serialize(self.alpha_constraint),
        )
        return config


@keras.saving.register_keras_serializable(package="keras_recu")
class LearnableBias(keras.layers.Layer):
    """`x + b` with a learnable bias `b` per channel (channels last), zero at the start.

    ReActNet's "move" layers: placed before a binary convolution it learns
    where each channel's sign threshold lies, and around PReLU it shifts the
    nonlinearity. The two-stage ReCU model (`imagenet_resnet18_two_stage`)
    has three per block, as the authors' `LearnableBias`.

    Args:
        bias_initializer: initializer of `b` ("zeros", as the authors').
        **kwargs: those of `keras.layers.Layer`.

    Example:

    >>> import keras, numpy as np
    >>> layer = LearnableBias()
    >>> keras.ops.convert_to_numpy(layer(np.ones((1, 2, 2, 3), "float32")))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    >>> [w.name for w in layer.trainable_weights]
    ['bias']
    """

    def __init__(self, bias_initializer="zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                f"LearnableBias needs a known channel count (the last axis), got input shape {input_shape}: "
                "give the model's Input a channel dimension."
            )
        self.bias = self.add_weight(
            name="bias", shape=(input_shape[-1],), initializer=self.bias_initializer, trainable=True
        )

    def call(self, inputs):
        return ops.add(inputs, ops.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
