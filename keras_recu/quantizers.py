"""Quantizers: ReCU's kernel binarization and activation binarization.

Quantizers are Keras layers (as in larq): they hold ReCU's tau as a variable
that is saved with the model and tracked by the layer that uses them, and they
can be used on their own in a functional model. Each has `precision = 1`.

Example:

>>> import keras, numpy as np
>>> from keras_recu.quantizers import ReCUSign
>>> kernel = np.random.default_rng(0).normal(size=(3, 3, 8, 16)).astype("float32")
>>> binary = ReCUSign(tau=0.9)(kernel)
>>> sorted(np.unique(keras.ops.convert_to_numpy(binary)).tolist())
[-1.0, 1.0]
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import keras
from keras import ops

from keras_recu import ops as recu_ops
from keras_recu._tau import HasTau, make_tau_variable

__all__ = ["ReCUSign", "ReCUInputSign", "SteSign", "get", "serialize", "deserialize"]

def default_name(prefix: str) -> str:
    """Keras-style unique layer name; Keras would spell "ReCUSign" "re_cu_sign"."""
    uid = keras.backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


@keras.saving.register_keras_serializable(package="keras_recu")
class ReCUSign(HasTau, keras.layers.Layer):
    """ReCU kernel quantizer: standardize, clamp at the tau-quantile, binarize.

    For a kernel with the output channels on its last axis (Dense `(in, out)`,
    Conv2D `(kh, kw, in, out)`), the default reproduces the authors' code:

    1. per output channel, centre and scale to standard deviation
       `laplace_scale * sqrt(2)` (= 2 * sqrt(2)) with the unbiased variance;
    2. one threshold per layer, `Q = -mean(|w|) * ln(2 - 2 * tau)`, detached;
    3. clamp to `[-Q, Q]` (the gradient is zero outside);
    4. `sign`, with sign(0) = +1 and a plain straight-through gradient that
       flows on through the clamp and the standardization.

    The output is exactly +-1 (or +-alpha_c with `output_scale="mean_abs"`).

    Args:
        tau: clamp quantile in (0.5, 1); a `TauScheduler` changes it during
            `fit`.
        standardize: standardize per output channel first (the paper's
            default). With `False`, the threshold is computed on the raw
            latent weights.
        laplace_scale: Laplace scale b of the standardized weights (their
            standard deviation is `b * sqrt(2)`); the reference uses 2.
        per_channel_threshold: one threshold per output channel from that
            channel's `mean(|w|)`, instead of one per layer.
        output_scale: `None` for +-1, or `"mean_abs"` to multiply each output
            channel by the mean absolute value of its clamped weights
            (XNOR-Net's scaling factor; gradients flow through it).
        epsilon: added to the variance before the square root.

    Example:

    >>> from keras_recu.layers import QuantConv2D
    >>> conv = QuantConv2D(16, 3, kernel_quantizer=ReCUSign(tau=0.85))
    """

    precision = 1

    def __init__(
        self,
        tau: float = 0.85,
        standardize: bool = True,
        laplace_scale: float = recu_ops.LAPLACE_SCALE,
        per_channel_threshold: bool = False,
        output_scale: Optional[str] = None,
        epsilon: float = recu_ops.EPSILON,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", default_name("recu_sign"))
        super().__init__(**kwargs)
        self.options = recu_ops.ClampOptions(
            bool(standardize), float(laplace_scale), bool(per_channel_threshold), float(epsilon)
        )
        self.output_scale = recu_ops.validate_output_scale(output_scale)
        self._tau = make_tau_variable(tau)
        self.built = True

    def call(self, kernel):
        recu_ops.validate_float_input(kernel, type(self).__name__)
        recu_ops.validate_kernel_shape(kernel.shape, type(self).__name__, self.options.standardize)
        return recu_ops.binarize_kernel(kernel, self._tau, self.options, self.output_scale)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "tau": self.tau,
            **self.options.to_config(),
            "output_scale": self.output_scale,
        }


@keras.saving.register_keras_serializable(package="keras_recu")
class ReCUInputSign(keras.layers.Layer):
    """ReCU activation quantizer: sign forward, the reference's gradient backward.

    Forward: `+1` where `x >= 0`, else `-1`, in the pattern that
    larq-compute-engine converts to `LceQuantize`. Backward, in training
    (`training=True`, as under `fit`): `max(0, 2 - 2|a0|)` with
    `a0 = x / sqrt(var(x) + eps)` per sample (unbiased variance over every
    non-batch axis), chained through that normalization as in the authors'
    code. In inference the gradient is `max(0, 2 - 2|x|)`. The normalization
    never changes the sign, so it costs nothing in the forward pass.

    Args:
        epsilon: added to the per-sample variance.

    Example:

    >>> import numpy as np
    >>> ReCUInputSign()(np.array([[-0.5, 0.0, 2.0]], "float32")).numpy().tolist()
    [[-1.0, 1.0, 1.0]]
    """

    precision = 1

    def __init__(self, epsilon: float = recu_ops.EPSILON, **kwargs: Any) -> None:
        kwargs.setdefault("name", default_name("recu_input_sign"))
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive, got {epsilon}.")
        self.epsilon = float(epsilon)
        self.built = True

    def call(self, inputs, training=None):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        if len(inputs.shape) < 2:
            raise ValueError(
                f"{type(self).__name__} normalizes per sample and needs a batch "
                f"axis plus at least one feature axis; got shape {inputs.shape}."
            )
        return recu_ops.input_sign(
            inputs, normalize_gradient=bool(training), epsilon=self.epsilon
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_recu")
class SteSign(keras.layers.Layer):
    """Plain binarization: sign forward, straight-through gradient backward.

    The gradient is passed where `|x| <= clip_value` and zeroed elsewhere
    (larq's `ste_sign`); `clip_value=None` passes it everywhere. Use it as the
    no-ReCU baseline or for layers that ReCU does not apply to.

    Example:

    >>> import numpy as np
    >>> SteSign()(np.array([[-0.5, 0.0, 2.0]], "float32")).numpy().tolist()
    [[-1.0, 1.0, 1.0]]
    """

    precision = 1

    def __init__(self, clip_value: Optional[float] = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if clip_value is not None and not clip_value > 0:
            raise ValueError(f"`clip_value` must be positive or None, got {clip_value}.")
        self.clip_value = None if clip_value is None else float(clip_value)
        self.built = True

    def call(self, inputs):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        if self.clip_value is None:
            return recu_ops.sign(inputs)
        # Straight through inside the clip range: the clip's own gradient.
        return recu_ops.sign(ops.clip(inputs, -self.clip_value, self.clip_value))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "clip_value": self.clip_value}


_BY_NAME = {
    "recu_sign": ReCUSign,
    "recu_input_sign": ReCUInputSign,
    "ste_sign": SteSign,
}
for _cls in (ReCUSign, ReCUInputSign, SteSign):
    _BY_NAME[_cls.__name__] = _cls


def serialize(quantizer) -> Optional[dict]:
    """The config dict of a quantizer (None for None)."""
    if quantizer is None:
        return None
    return keras.saving.serialize_keras_object(quantizer)


def deserialize(config, custom_objects: Optional[dict] = None):
    """A quantizer from its config dict."""
    return keras.saving.deserialize_keras_object(
        config, module_objects=_BY_NAME, custom_objects=custom_objects
    )


def get(identifier: Union[None, str, dict, Callable]) -> Optional[Callable]:
    """Resolve a quantizer given as None, a registered name, a config dict or an object.

    Names: `"recu_sign"`, `"recu_input_sign"`, `"ste_sign"` or the class
    names; a name builds the quantizer with its defaults.
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        try:
            return _BY_NAME[identifier]()
        except KeyError:
            raise ValueError(
                f"Unknown quantizer {identifier!r}. Known names: "
                f"{sorted(_BY_NAME)}; or pass a quantizer object or any callable."
            ) from None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(
        f"A quantizer must be None, a name, a config dict or a callable; got "
        f"{identifier!r} of type {type(identifier).__name__}."
    )
