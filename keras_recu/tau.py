"""tau as training state: the variable that holds it and the objects that hold one.

tau, ReCU's clamp quantile, must be a variable read inside the compiled train
step. A Python float would be captured when `fit` traces the step, and every
later change would be silently ignored. Both fronts (Keras 3 and tf-keras /
larq) share this: a quantizer or constraint that clamps at tau mixes in
`HasTau`, and a scheduler sets `holder.tau` between epochs.

This module sits at the bottom of the core, right above `keras_recu.ops`:
the quantizers, the constraint, the layers and `keras_recu.inspection` (which
finds the holders of a model) import it. The schedule itself lives in
`keras_recu.callbacks`.

Example:

>>> holder = HasTau()
>>> holder._tau = make_tau_variable(0.9)  # what a subclass's __init__ does
>>> holder.tau = 0.95
>>> round(holder.tau, 4), holder.tau_variable.trainable
(0.95, False)
"""

from __future__ import annotations

import keras
import numpy as np

from keras_recu.ops import validate_tau

__all__ = ["HasTau", "make_tau_variable"]


def make_tau_variable(tau: float) -> keras.Variable:
    """A float32, non-trainable scalar variable holding a validated tau."""
    return keras.Variable(
        validate_tau(tau),
        dtype="float32",
        trainable=False,
        name="tau",
        # Set from a callback, never by a replica: every replica reads the
        # value written on the first.
        aggregation="only_first_replica",
    )


class HasTau:
    """Mixin for objects whose ReCU clamp quantile `tau` a scheduler may set.

    Subclasses store their variable in `self._tau` (see `make_tau_variable`;
    the tf-keras front makes its own tf-keras variable). The attribute keeps
    that name: TensorFlow checkpoints store the variable under it
    (`.../_tau/.ATTRIBUTES/VARIABLE_VALUE`).
    """

    @property
    def tau(self) -> float:
        """The current clamp quantile, a float in (0.5, 1)."""
        return float(np.asarray(keras.ops.convert_to_numpy(self._tau)))

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau.assign(validate_tau(value))

    @property
    def tau_variable(self):
        """The variable that holds tau (read inside the compiled step)."""
        return self._tau
