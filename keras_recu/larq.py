"""ReCU for larq's layers, under tf-keras: `keras_recu.larq`.

larq is written for Keras 2 and runs on TensorFlow 2.21 only when `tf.keras`
is tf-keras, which TensorFlow decides when it is first imported (from the
variable `TF_USE_LEGACY_KERAS`). Importing this module arranges that
(`keras_recu.legacy_keras.require_tf_keras`): if TensorFlow is not imported
yet it sets `TF_USE_LEGACY_KERAS=1`; if it already is, with Keras 3 as
`tf.keras`, it raises an ImportError that says what to do.
Keras 3 (`import keras`) stays usable in the same process.

The quantizers, constraint and scheduler here are tf-keras objects that call
the same functions of `keras_recu.ops` as the Keras 3 front, with the same
arguments and defaults:

>>> from keras_recu.larq import ReCUInputSign, ReCUSign, TauScheduler
>>> import larq
>>> conv = larq.layers.QuantConv2D(
...     32, 3, padding="same", use_bias=False,
...     input_quantizer=ReCUInputSign(), kernel_quantizer=ReCUSign(tau=0.85))

The quantizers take what larq's own take, `metrics=["flip_ratio"]` included
(the share of binary values that changed since the previous step, logged
during `fit` as `flip_ratio/<quantizer name>`), and, like the Keras 3 front,
make a NaN or infinite value NaN instead of a sign when `training` is True.

`larq.models.summary` reports such layers as 1-bit input and 1-bit weights;
tau is state, not a parameter, and adds nothing to the table (as larq's own
quantizers keep their state out of `non_trainable_weights`). Models save and
load as h5 and SavedModel through larq's deserialization, which looks the
quantizers up by their plain class names.
"""

from __future__ import annotations

from typing import Any, Optional

from keras_recu._compat import legacy_keras

# Before TensorFlow loads: larq needs tf.keras to be tf-keras.
legacy_keras.require_tf_keras()

import larq  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_recu import ops as recu_ops  # noqa: E402
from keras_recu.callbacks import TauScheduleLogic  # noqa: E402
from keras_recu.tau import HasTau  # noqa: E402

__all__ = ["ReCUSign", "ReCUInputSign", "ReCUClamp", "TauScheduler"]


#: The training metrics that larq's quantizers offer.
TRAINING_METRICS = ("flip_ratio",)


def _validate_metrics(metrics) -> Optional[tuple]:
    if metrics is None:
        return None
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(
            f"`metrics` must be None or a list of metric names, got {metrics!r}; "
            "for example metrics=['flip_ratio']."
        )
    unknown = [m for m in metrics if m not in TRAINING_METRICS]
    if unknown:
        raise ValueError(
            f"Unknown quantizer metric(s) {unknown}; larq's quantizers offer {list(TRAINING_METRICS)}."
        )
    return tuple(metrics)


def _is_training(training) -> bool:
    # Only a Python True says training for certain; a symbolic learning phase
    # must not put the NaN propagation into a graph that may be exported.
    return not tf.is_tensor(training) and bool(training)


class _StatefulQuantizer(larq.quantizers.Quantizer):
    """A larq quantizer whose variables are state, not parameters, with larq's metrics.

    larq's summary counts every variable in `layer.weights` as a parameter
    (and, for a conv, as MACs); larq's own quantizers therefore report no
    `non_trainable_weights`. tau stays a tracked variable, so SavedModel and
    checkpoints keep it; h5 files keep it through the config.

    `metrics=["flip_ratio"]` records, as larq's quantizers do, the share of
    output values that changed since the previous call.
    """

    def __init__(self, metrics=None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_metrics = _validate_metrics(metrics)

    def build(self, input_shape):
        if self.training_metrics and "flip_ratio" in self.training_metrics:
            self.flip_ratio = larq.metrics.FlipRatio(name=f"flip_ratio/{self.name}")
            self.flip_ratio.build(input_shape)
        super().build(input_shape)

    def _record_metrics(self, outputs):
        if hasattr(self, "flip_ratio"):
            self.add_metric(self.flip_ratio(outputs))
        return outputs

    @property
    def non_trainable_weights(self):
        return []

    def get_config(self) -> dict:
        metrics = None if self.training_metrics is None else list(self.training_metrics)
        return {**super().get_config(), "metrics": metrics}


@larq.utils.register_keras_custom_object
class ReCUSign(HasTau, _StatefulQuantizer):
    """ReCU kernel quantizer for larq layers; see `keras_recu.quantizers.ReCUSign`.

    Same arguments, defaults and math: per-output-channel standardization
    with the unbiased variance, a detached per-layer Laplace threshold,
    clamp (none with `clamp=False`), sign(0) = +1 with a straight-through
    gradient. Also takes larq's `metrics` (`["flip_ratio"]`).
    """

    precision = 1

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
        super().__init__(**kwargs)
        self.options = recu_ops.ClampOptions(
            standardize=standardize,
            laplace_scale=laplace_scale,
            per_channel_threshold=per_channel_threshold,
            epsilon=epsilon,
            clamp=clamp,
        )
        self.output_scale = recu_ops.validate_output_scale(output_scale)
        self._tau = self.add_weight(
            name="tau",
            shape=(),
            dtype="float32",
            trainable=False,
            initializer=tf.keras.initializers.Constant(recu_ops.validate_tau(tau)),
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def call(self, inputs, training=None):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        recu_ops.validate_kernel_shape(inputs.shape, type(self).__name__, self.options.standardize)
        outputs = recu_ops.binarize_kernel(
            inputs, self._tau, self.options, self.output_scale,
            propagate_nonfinite=_is_training(training),
        )
        return self._record_metrics(outputs)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "tau": self.tau,
            **self.options.to_config(),
            "output_scale": self.output_scale,
        }


@larq.utils.register_keras_custom_object
class ReCUInputSign(_StatefulQuantizer):
    """ReCU activation quantizer for larq layers; see `keras_recu.quantizers.ReCUInputSign`.

    Sign forward (an LCE binarization pattern); backward the reference's
    `max(0, 2 - 2|a0|)` chained through `a0 = a / std(a)` in training.
    Also takes larq's `metrics` (`["flip_ratio"]`).
    """

    precision = 1

    def __init__(self, epsilon: float = recu_ops.EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = recu_ops.validate_positive(epsilon, "epsilon", "It is added to the per-sample variance.")

    def call(self, inputs, training=None):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        recu_ops.validate_activation_shape(inputs.shape, type(self).__name__)
        # tf-keras may pass the learning phase as a tensor; only a Python
        # False means inference for certain, and gradients are a training matter.
        normalize = True if tf.is_tensor(training) else bool(training)
        outputs = recu_ops.input_sign(
            inputs, normalize_gradient=normalize, epsilon=self.epsilon,
            propagate_nonfinite=_is_training(training),
        )
        return self._record_metrics(outputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@larq.utils.register_keras_custom_object
class ReCUClamp(HasTau, tf.keras.constraints.Constraint):
    """The ReCU range constraint for tf-keras; see `keras_recu.constraints.ReCUClamp`."""

    def __init__(
        self,
        tau: float = recu_ops.TAU_MIN,
        standardize: bool = True,
        laplace_scale: float = recu_ops.LAPLACE_SCALE,
        per_channel_threshold: bool = False,
        epsilon: float = recu_ops.EPSILON,
    ) -> None:
        self.options = recu_ops.ClampOptions(
            standardize=standardize,
            laplace_scale=laplace_scale,
            per_channel_threshold=per_channel_threshold,
            epsilon=epsilon,
        )
        self._tau = tf.Variable(
            recu_ops.validate_tau(tau),
            dtype="float32",
            trainable=False,
            name="tau",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def __call__(self, w):
        recu_ops.validate_kernel_shape(w.shape, type(self).__name__, self.options.standardize)
        return recu_ops.clamp_latent(w, self._tau, self.options)

    def get_config(self) -> dict:
        # A constraint always clamps: `clamp` is not one of its arguments.
        return {"tau": self.tau, **self.options.to_config(include_clamp=False)}


class TauScheduler(TauScheduleLogic, tf.keras.callbacks.Callback):
    """ReCU's tau schedule for tf-keras `fit`; see `keras_recu.callbacks.TauScheduler`.

    Sets tau on every `ReCUSign` and `ReCUClamp` of this module in the model
    at the start of each epoch, logs it as `"tau"`, honours `initial_epoch`.
    The same arguments and defaults; the same logic, `TauScheduleLogic`.
    """
