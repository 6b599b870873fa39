"""tau as training state: the variable, its holders, and the schedule both fronts share.

tau must be a variable read inside the compiled train step. A Python float
would be captured when `fit` traces the step, and every later change would
be silently ignored. Both fronts (Keras 3 and tf-keras / larq) share this.
"""

from __future__ import annotations

from typing import List, Optional

import keras
import numpy as np

from keras_recu import ops as recu_ops
from keras_recu.ops import validate_tau


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

    Subclasses store their variable in `self._tau` (see `make_tau_variable`).
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


def find_tau_holders(model) -> List[HasTau]:
    """Every ReCU object of `model` whose tau can be scheduled, each once.

    The same as `keras_recu.inspection.tau_holders`, kept under this name.
    """
    # inspection imports HasTau from here, so it is imported on use.
    from keras_recu.inspection import tau_holders

    return tau_holders(model)


class TauScheduleLogic:
    """The body of TauScheduler, shared by the Keras 3 and the tf-keras callback.

    Mixed into each front's `Callback` class, which supplies `self.model` and
    `self.params` (with fit's `epochs`) as both Keras versions do.
    """

    def _init_schedule(self, tau_min: float, tau_max: float, epochs: Optional[int], verbose: int) -> None:
        recu_ops.validate_schedule(tau_min, tau_max, epochs)
        self.tau_min = float(tau_min)
        self.tau_max = float(tau_max)
        self.epochs = None if epochs is None else int(epochs)
        self.verbose = verbose
        self.current_tau: Optional[float] = None
        self._holders: List[HasTau] = []

    def tau_at(self, epoch: int) -> float:
        """The scheduled tau for 0-based `epoch`."""
        epochs = self.epochs or (self.params or {}).get("epochs")
        if not epochs:
            raise ValueError(
                "TauScheduler needs the schedule length: pass `epochs=` or use "
                "it inside `fit`, which supplies its own."
            )
        return recu_ops.exponential_tau(epoch, epochs, self.tau_min, self.tau_max)

    def on_train_begin(self, logs=None):
        self._holders = find_tau_holders(self.model)
        if not self._holders:
            raise ValueError(
                "TauScheduler found no ReCU quantizer or constraint in model "
                f"{self.model.name!r}: use ReCUConv2D, a ReCUSign kernel "
                "quantizer or a ReCUClamp constraint, or drop the callback."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.current_tau = self.tau_at(epoch)
        for holder in self._holders:
            holder.tau = self.current_tau
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: TauScheduler set tau to {self.current_tau:.5f}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.current_tau is not None:
            logs["tau"] = self.current_tau
