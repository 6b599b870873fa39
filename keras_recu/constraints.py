"""ReCUClamp: ReCU as a weight constraint that clamps the latent weights themselves."""

from __future__ import annotations


import keras

from keras_recu import ops as recu_ops
from keras_recu.tau import HasTau, make_tau_variable

__all__ = ["ReCUClamp"]


@keras.saving.register_keras_serializable(package="keras_recu")
class ReCUClamp(HasTau, keras.constraints.Constraint):
    """Clamp the latent weights to the ReCU range after every optimizer step.

    `ReCUSign` clamps only the copy of the weights that the forward pass
    binarizes: a dead weight stays dead in the latent kernel and only weight
    decay pulls it back. This constraint moves it: after each update the
    optimizer replaces the kernel `w` by

        ReCUClamp(w)_c = clip(w_c, mean_c - Q * scale_c, mean_c + Q * scale_c)

    for every output channel c (last axis), where `mean_c` and
    `scale_c = sqrt(var_c + epsilon) / (laplace_scale * sqrt(2))` are the
    channel's mean and unbiased-variance scale (the standardization of
    `ReCUSign`), and `Q = -mean(|(w - mean) / scale|) * ln(2 - 2 * tau)` is
    the layer's threshold on the standardized kernel. In words: a latent
    weight is moved to the boundary exactly when `ReCUSign` with the same
    arguments would clamp it. Without standardization the range is `[-Q, Q]`
    with `Q = -mean(|w|) * ln(2 - 2 * tau)`. All statistics are taken from
    the kernel before clamping.

    The constraint is not idempotent: clamping lowers the kernel's spread
    and its mean |w|, so the range recomputed at the next step is narrower
    and clamps again (a second application to a Laplace kernel at tau 0.85
    moves about 40% of the weights). Applied after every step, it keeps
    pulling the latent tails towards the centre, where a small update flips
    a sign; the binarized kernel itself is unchanged by a clamp whenever the
    channel mean is closer to zero than the range's bounds.

    Args:
        tau, standardize, laplace_scale, per_channel_threshold, epsilon: as in
            `keras_recu.quantizers.ReCUSign`.

    Example:

    >>> from keras_recu.layers import QuantConv2D
    >>> conv = QuantConv2D(16, 3, kernel_quantizer="ste_sign",
    ...                    kernel_constraint=ReCUClamp(tau=0.9))
    """

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
        self._tau = make_tau_variable(tau)

    def __call__(self, w):
        recu_ops.validate_kernel_shape(w.shape, type(self).__name__, self.options.standardize)
        return recu_ops.clamp_latent(w, self._tau, self.options)

    def get_config(self) -> dict:
        # A constraint always clamps: `clamp` is not one of its arguments.
        return {"tau": self.tau, **self.options.to_config(include_clamp=False)}
