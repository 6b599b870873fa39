"""Quantizers: ReCU's kernel binarization and activation binarization.

Quantizers are Keras layers (as in larq): they hold ReCU's tau as a variable
that is saved with the model and tracked by the layer that uses them, and they
can be used on their own in a functional model. Each has `precision = 1`.

Dtypes: a quantizer returns its input's dtype and never casts its input (it
is built with `autocast=False`), so under a `mixed_float16` policy the layer
around it computes in float16 on exact +-1 operands, while ReCU's statistics
run in float32 inside (`keras_recu.ops`).

Non-finite values: in training (`training=True`, which Keras passes down
from `fit` to the quantizers inside a layer), a NaN or infinite value that
reaches a binarization gives NaN instead of a sign, so the loss turns NaN
and `keras.callbacks.TerminateOnNaN` can stop the run. In inference the
output is the pure sign select that larq-compute-engine rewrites.

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

from keras_recu import ops as recu_ops
from keras_recu.tau import HasTau, make_tau_variable

__all__ = ["NoOp", "ReCUSign", "ReCUInputSign", "SteSign", "get", "serialize", "deserialize"]


def default_name(prefix: str) -> str:
    """Keras-style unique layer name; Keras would spell "ReCUSign" "re_cu_sign"."""
    uid = keras.backend.get_uid(prefix)
    return prefix if uid == 1 else f"{prefix}_{uid - 1}"


class _Quantizer(keras.layers.Layer):
    """What every quantizer shares: 1-bit, dtype-preserving, built on creation."""

    precision = 1

    def __init__(self, **kwargs: Any) -> None:
        # The input keeps its dtype: a float32 latent kernel is not rounded to
        # float16 before its statistics, and the output follows the input.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.built = True

    def compute_output_spec(self, inputs, *args, **kwargs):
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_recu")
class ReCUSign(HasTau, _Quantizer):
    """ReCU kernel quantizer: standardize, clamp at the tau-quantile, binarize.

    For a kernel with the output channels on its last axis (Dense `(in, out)`,
    Conv2D `(kh, kw, in, out)`), the default reproduces the authors' code:

    1. per output channel, centre and scale to standard deviation
       `laplace_scale * sqrt(2)` (= 2 * sqrt(2)) with the unbiased variance;
    2. one threshold per layer, `Q = -mean(|w|) * ln(2 - 2 * tau)`, detached;
    3. clamp to `[-Q, Q]` (the gradient is zero outside);
    4. `sign`, with sign(0) = +1 and a plain straight-through gradient that
       flows on through the clamp and the standardization.

    The output is exactly +-1 (or +-alpha_c with `output_scale="mean_abs"`),
    in the kernel's dtype. In training a NaN or infinite latent weight makes
    the output NaN (see the module docstring).

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
        clamp: `False` standardizes without clamping: tau is then unused (a
            `TauScheduler` may still set it) and no weight is dead. This is
            the "standardization only" ablation of ReCU.

    Example:

    >>> from keras_recu.layers import QuantConv2D
    >>> conv = QuantConv2D(16, 3, kernel_quantizer=ReCUSign(tau=0.85))
    >>> standardize_only = ReCUSign(clamp=False)
    """

    def __init__(
        self,
        tau: float = recu_ops.TAU_MIN,
        standardize: bool = True,
        laplace_scale: float = recu_ops.LAPLACE_SCALE,
        per_channel_threshold: bool = False,
        output_scale: Optional[str] = None,
        epsilon: float = recu_ops.EPSILON,
        clamp: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", default_name("recu_sign"))
        super().__init__(**kwargs)
        self.options = recu_ops.ClampOptions(
            standardize=standardize,
            laplace_scale=laplace_scale,
            per_channel_threshold=per_channel_threshold,
            epsilon=epsilon,
            clamp=clamp,
        )
        self.output_scale = recu_ops.validate_output_scale(output_scale)
        self._tau = make_tau_variable(tau)

    def call(self, kernel, training=None):
        recu_ops.validate_float_input(kernel, type(self).__name__)
        recu_ops.validate_kernel_shape(kernel.shape, type(self).__name__, self.options.standardize)
        return recu_ops.binarize_kernel(
            kernel, self._tau, self.options, self.output_scale, propagate_nonfinite=bool(training)
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "tau": self.tau,
            **self.options.to_config(),
            "output_scale": self.output_scale,
        }


@keras.saving.register_keras_serializable(package="keras_recu")
class ReCUInputSign(_Quantizer):
    """ReCU activation quantizer: sign forward, the reference's gradient backward.

    Forward: `+1` where `x >= 0`, else `-1`, in the pattern that
    larq-compute-engine converts to `LceQuantize`. Backward, in training
    (`training=True`, as under `fit`): `max(0, 2 - 2|a0|)` with
    `a0 = x / sqrt(var(x) + eps)` per sample (unbiased variance over every
    non-batch axis), chained through that normalization as in the authors'
    code. In inference the gradient is `max(0, 2 - 2|x|)`. The normalization
    never changes the sign, so it costs nothing in the forward pass.

    The input needs a batch axis and at least 2 elements per sample (the
    unbiased variance of one element is 0 / 0); a smaller one is refused.

    Args:
        epsilon: added to the per-sample variance.

    Example:

    >>> import keras, numpy as np
    >>> binary = ReCUInputSign()(np.array([[-0.5, 0.0, 2.0]], "float32"))
    >>> keras.ops.convert_to_numpy(binary).tolist()
    [[-1.0, 1.0, 1.0]]
    """

    def __init__(self, epsilon: float = recu_ops.EPSILON, **kwargs: Any) -> None:
        kwargs.setdefault("name", default_name("recu_input_sign"))
        super().__init__(**kwargs)
        self.epsilon = recu_ops.validate_positive(epsilon, "epsilon", "It is added to the per-sample variance.")

    def call(self, inputs, training=None):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        recu_ops.validate_activation_shape(inputs.shape, type(self).__name__)
        training = bool(training)
        return recu_ops.input_sign(
            inputs, normalize_gradient=training, epsilon=self.epsilon, propagate_nonfinite=training
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="keras_recu")
class SteSign(_Quantizer):
    """Plain binarization: sign forward, straight-through gradient backward.

    The gradient is passed where `|x| <= clip_value` and zeroed elsewhere
    (larq's `ste_sign`); `clip_value=None` passes it everywhere. Use it as the
    no-ReCU baseline or for layers that ReCU does not apply to.

    Args:
        clip_value: a finite number > 0, or None.

    Example:

    >>> import keras, numpy as np
    >>> binary = SteSign()(np.array([[-0.5, 0.0, 2.0]], "float32"))
    >>> keras.ops.convert_to_numpy(binary).tolist()
    [[-1.0, 1.0, 1.0]]
    """

    def __init__(self, clip_value: Optional[float] = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clip_value = None if clip_value is None else recu_ops.validate_positive(
            clip_value, "clip_value", "Pass None to pass the gradient everywhere."
        )

    def call(self, inputs, training=None):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        if self.clip_value is None:
            binary = recu_ops.sign(inputs)
        else:
            # Straight through inside the clip range: the clip's own gradient.
            binary = recu_ops.sign(recu_ops.pass_gradient_within(inputs, -self.clip_value, self.clip_value))
        return recu_ops.with_nonfinite(binary, inputs) if training else binary

    def get_config(self) -> dict:
        return {**super().get_config(), "clip_value": self.clip_value}


@keras.saving.register_keras_serializable(package="keras_recu")
class NoOp(_Quantizer):
    """A quantizer that passes its input through: the layer keeps that operand in float.

    It says what precision the operand has (`precision`, 32 by default) for
    `keras_recu.inspection`, the summaries and `deploy.convert`, which
    refuses a layer it would leave in float. The two-stage recipe's stage 1
    (`imagenet_resnet18_two_stage(binary_weights=False)`) uses it for the
    kernels: binary activations, float weights.

    Args:
        precision: the bitwidth to report, an int >= 1.

    Example:

    >>> import keras, numpy as np
    >>> keras.ops.convert_to_numpy(NoOp()(np.array([0.25, -2.0], "float32"))).tolist()
    [0.25, -2.0]
    """

    def __init__(self, precision: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(precision, bool) or not isinstance(precision, int) or precision < 1:
            raise ValueError(
                f"`precision` must be an int >= 1 (the bitwidth to report; 32 for float), got {precision!r}."
            )
        self.precision = precision

    def call(self, inputs, training=None):
        return inputs

    def get_config(self) -> dict:
        return {**super().get_config(), "precision": self.precision}


_BY_NAME = {
    "recu_sign": ReCUSign,
    "recu_input_sign": ReCUInputSign,
    "ste_sign": SteSign,
    "noop": NoOp,
}
for _cls in (ReCUSign, ReCUInputSign, SteSign, NoOp):
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

    Names: `"recu_sign"`, `"recu_input_sign"`, `"ste_sign"`, `"noop"` or the class
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
        quantizer = deserialize(identifier)
        if not callable(quantizer):
            # Keras hands back the bare name of a function it cannot find: fail here, not at the layer's first call.
            raise ValueError(
                f"Cannot rebuild the quantizer {identifier.get('config')!r} from its config: Keras knows no "
                "serializable object of that name. Register it with @keras.saving.register_keras_serializable() "
                "(or pass it in custom_objects) before loading."
            )
        return quantizer
    if callable(identifier):
        return identifier
    raise TypeError(
        f"A quantizer must be None, a name, a config dict or a callable; got "
        f"{identifier!r} of type {type(identifier).__name__}."
    )
