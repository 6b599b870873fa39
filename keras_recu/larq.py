"""ReCU for larq's layers, under tf-keras: `keras_recu.larq`.

larq is written for Keras 2 and runs on TensorFlow 2.21 only when `tf.keras`
is tf-keras, which TensorFlow decides when it is first imported (from the
variable `TF_USE_LEGACY_KERAS`). Importing this module arranges that: if
TensorFlow is not imported yet it sets `TF_USE_LEGACY_KERAS=1`; if it already
is, with Keras 3 as `tf.keras`, it raises an ImportError that says what to do.
Keras 3 (`import keras`) stays usable in the same process.

The quantizers, constraint and scheduler here are tf-keras objects that call
the same functions of `keras_recu.ops` as the Keras 3 front, with the same
arguments and defaults:

>>> from keras_recu.larq import ReCUInputSign, ReCUSign, TauScheduler
>>> import larq
>>> conv = larq.layers.QuantConv2D(
...     32, 3, padding="same", use_bias=False,
...     input_quantizer=ReCUInputSign(), kernel_quantizer=ReCUSign(tau=0.85))

`larq.models.summary` reports such layers as 1-bit input and 1-bit weights;
tau is state, not a parameter, and adds nothing to the table (as larq's own
quantizers keep their state out of `non_trainable_weights`). Models save and
load as h5 and SavedModel through larq's deserialization, which looks the
quantizers up by their plain class names.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

_HOW_TO_FIX = (
    "Import keras_recu.larq (or larq) before anything imports tensorflow or "
    "keras, or start Python with the environment variable "
    "TF_USE_LEGACY_KERAS=1 (for example `TF_USE_LEGACY_KERAS=1 python train.py`)."
)


def _arrange_tf_keras() -> None:
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    import tensorflow as tf

    layer_module = tf.keras.layers.Layer.__module__
    if not layer_module.startswith("tf_keras."):
        raise ImportError(
            "keras_recu.larq needs tf.keras to be tf-keras (Keras 2), the Keras "
            "that larq is written for, but TensorFlow was already imported with "
            f"Keras {getattr(tf.keras, '__version__', '3')} as tf.keras. {_HOW_TO_FIX}"
        )


_arrange_tf_keras()

import larq  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_recu import ops as recu_ops  # noqa: E402
from keras_recu._tau import HasTau, TauScheduleLogic  # noqa: E402

__all__ = ["ReCUSign", "ReCUInputSign", "ReCUClamp", "TauScheduler"]


class _StatefulQuantizer(larq.quantizers.Quantizer):
    """A larq quantizer whose variables are state, not parameters.

    larq's summary counts every variable in `layer.weights` as a parameter
    (and, for a conv, as MACs); larq's own quantizers therefore report no
    `non_trainable_weights`. tau stays a tracked variable, so SavedModel and
    checkpoints keep it; h5 files keep it through the config.
    """

    @property
    def non_trainable_weights(self):
        return []


@larq.utils.register_keras_custom_object
class ReCUSign(HasTau, _StatefulQuantizer):
    """ReCU kernel quantizer for larq layers; see `keras_recu.quantizers.ReCUSign`.

    Same arguments, defaults and math: per-output-channel standardization
    with the unbiased variance, a detached per-layer Laplace threshold,
    clamp, sign(0) = +1 with a straight-through gradient.
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
        super().__init__(**kwargs)
        self.options = recu_ops.ClampOptions(
            bool(standardize), float(laplace_scale), bool(per_channel_threshold), float(epsilon)
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

    def call(self, inputs):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        recu_ops.validate_kernel_shape(inputs.shape, type(self).__name__, self.options.standardize)
        return recu_ops.binarize_kernel(inputs, self._tau, self.options, self.output_scale)

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
    """

    precision = 1

    def __init__(self, epsilon: float = recu_ops.EPSILON, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive, got {epsilon}.")
        self.epsilon = float(epsilon)

    def call(self, inputs, training=None):
        recu_ops.validate_float_input(inputs, type(self).__name__)
        # tf-keras may pass the learning phase as a tensor; only a Python
        # False means inference for certain, and gradients are a training matter.
        normalize = True if tf.is_tensor(training) else bool(training)
        return recu_ops.input_sign(inputs, normalize_gradient=normalize, epsilon=self.epsilon)

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


@larq.utils.register_keras_custom_object
class ReCUClamp(HasTau, tf.keras.constraints.Constraint):
    """The ReCU range constraint for tf-keras; see `keras_recu.constraints.ReCUClamp`."""

    def __init__(
        self,
        tau: float = 0.85,
        standardize: bool = True,
        laplace_scale: float = recu_ops.LAPLACE_SCALE,
        per_channel_threshold: bool = False,
        epsilon: float = recu_ops.EPSILON,
    ) -> None:
        self.options = recu_ops.ClampOptions(
            bool(standardize), float(laplace_scale), bool(per_channel_threshold), float(epsilon)
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
        return {"tau": self.tau, **self.options.to_config()}


class TauScheduler(TauScheduleLogic, tf.keras.callbacks.Callback):
    """ReCU's tau schedule for tf-keras `fit`; see `keras_recu.callbacks.TauScheduler`.

    Sets tau on every `ReCUSign` and `ReCUClamp` of this module in the model
    at the start of each epoch, logs it as `"tau"`, honours `initial_epoch`.
    """

    def __init__(
        self,
        tau_min: float = recu_ops.TAU_MIN,
        tau_max: float = recu_ops.TAU_MAX,
        epochs: Optional[int] = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self._init_schedule(tau_min, tau_max, epochs, verbose)
