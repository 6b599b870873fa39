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
from keras_recu._tau import HasTau

__all__ = ["QuantConv2D", "QuantDense", "QuantDepthwiseConv2D", "ReCUConv2D"]


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
    """What the quantized convolutions share: larq's `pad_values`, bias and activation.

    Binary activations are +-1, so zero padding is a third value; LCE can
    execute padding with +1 natively. With `pad_values != 0` and
    `padding="same"`, the input is padded explicitly and convolved "valid".
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
        return {**super().get_config(), "pad_values": self.pad_values}

    def _init_padding(self, pad_values: float) -> None:
        self.pad_values = float(pad_values)
        if self.pad_values != 0.0 and self.padding != "same":
            raise ValueError(
                f"`pad_values={pad_values}` only applies with padding='same', "
                f"got padding={self.padding!r}."
            )

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
        *args, **kwargs: those of `keras.layers.Conv2D`.
    """

    quantizer_names = ("input_quantizer", "kernel_quantizer")

    def __init__(
        self,
        *args: Any,
        input_quantizer=None,
        kernel_quantizer=None,
        pad_values: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._set_quantizers(input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer)
        self._init_padding(pad_values)

    def call(self, inputs):
        inputs = _quantize(self.input_quantizer, inputs)
        kernel = _quantize(self.kernel_quantizer, _latent_kernel(self))
        inputs, padding = self._explicit_padding(inputs)
        outputs = ops.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
        return self._bias_and_activation(self._scale_outputs(outputs))

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
        *args, **kwargs: those of `keras.layers.DepthwiseConv2D`.
    """

    quantizer_names = ("input_quantizer", "depthwise_quantizer")

    def __init__(
        self,
        *args: Any,
        input_quantizer=None,
        depthwise_quantizer=None,
        pad_values: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._set_quantizers(input_quantizer=input_quantizer, depthwise_quantizer=depthwise_quantizer)
        self._init_padding(pad_values)

    def call(self, inputs):
        inputs = _quantize(self.input_quantizer, inputs)
        kernel = _latent_kernel(self)
        if self.depthwise_quantizer is not None:
            kh, kw, cin, mult = kernel.shape
            filters = ops.reshape(kernel, (kh, kw, 1, cin * mult))
            kernel = ops.reshape(self.depthwise_quantizer(filters), (kh, kw, cin, mult))
        inputs, padding = self._explicit_padding(inputs)
        outputs = ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )
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
