"""The paper's binary convolution in one layer: ReCUConv2D.

A `QuantConv2D` with ReCU's quantizers (binary input, ReCU-binarized kernel
with its clamp quantile tau), no bias and a learned per-channel scale alpha.
"""

from __future__ import annotations

from typing import Any, Optional

import keras

from keras_recu import ops as recu_ops
from keras_recu import quantizers
from keras_recu.tau import HasTau
from keras_recu.layers.quantized import QuantConv2D

__all__ = ["DEFAULT_TAU", "TORCH_CONV_INIT", "ReCUConv2D"]


#: PyTorch's default Conv2d initialization, kaiming_uniform(a=sqrt(5)), that is
#: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as a Keras config: ReCUConv2D's default
#: kernel initializer (a config, so that each layer builds its own instance).
TORCH_CONV_INIT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"},
}


#: tau of the kernel quantizer that ReCUConv2D builds when given none. Kept
#: importable; the value is `keras_recu.ops.TAU_MIN`, the start of the
#: reference's tau schedule, which the code reads.
DEFAULT_TAU = recu_ops.TAU_MIN


def _kernel_quantizer_with_tau(kernel_quantizer, tau: Optional[float]):
    """ReCUConv2D's kernel quantizer, reconciled with its `tau` argument."""
    if tau is not None:
        tau = recu_ops.validate_tau(tau)
    if kernel_quantizer is None:
        return quantizers.ReCUSign(tau=recu_ops.TAU_MIN if tau is None else tau)
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
            `keras_recu.ops.TAU_MIN` by default. With a `kernel_quantizer`
            given, leave it None (the quantizer's own tau counts) or give
            the same value; with a quantizer given by name (`"recu_sign"`), it sets that
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
        kernel_initializer=TORCH_CONV_INIT,
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
