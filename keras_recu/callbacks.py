"""ReCU's exponential tau schedule during `fit`: `TauScheduler`.

The schedule is one piece of logic, `TauScheduleLogic`, mixed into each
front's callback class: `TauScheduler` here for Keras 3, and
`keras_recu.larq.TauScheduler` for tf-keras, which imports the logic from
this module. It lives here, with the Keras 3 callback, rather than in a
module of its own: it is the body of that callback, it needs nothing but
`keras_recu.ops` (the formula) and `keras_recu.inspection` (the tau holders
of a model), both below this module, and the larq front sits above the whole
core, so both fronts reach it without an import circle.
"""

from __future__ import annotations

from typing import List, Optional

import keras

from keras_recu import inspection
from keras_recu import ops as recu_ops
from keras_recu.tau import HasTau

__all__ = ["TauScheduleLogic", "TauScheduler"]


class TauScheduleLogic:
    """The body of `TauScheduler`, shared by the Keras 3 and the tf-keras callback.

    Mixed in before each front's `Callback` class, which supplies
    `self.model` and `self.params` (with fit's `epochs`) as both Keras
    versions do. The arguments are those of `TauScheduler`.
    """

    def __init__(
        self,
        tau_min: float = recu_ops.TAU_MIN,
        tau_max: float = recu_ops.TAU_MAX,
        epochs: Optional[int] = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
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
        self._holders = inspection.tau_holders(self.model)
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


class TauScheduler(TauScheduleLogic, keras.callbacks.Callback):
    """Set tau on every ReCU object of the model at the start of each epoch.

    At 0-based epoch i of E, `tau_i = A * e^(i / E) + B` with
    `A = (tau_max - tau_min) / (e - 1)` and `B = tau_min - A` (the reference's
    schedule): tau_min at the first epoch, rising exponentially towards tau_max.

    Every `ReCUSign`, `ReCUConv2D` kernel quantizer and `ReCUClamp` constraint
    in the model is set, in nested models too. tau lives in variables that the
    compiled train step reads, so the schedule reaches `fit` with or without
    `jit_compile`. Epoch indices are absolute, so `fit(initial_epoch=k)`
    continues the schedule of an interrupted run. The value used is added to
    the epoch logs as `"tau"` (and so to `History`).

    Args:
        tau_min: tau of the first epoch, in (0.5, 1).
        tau_max: the value the schedule approaches, in [tau_min, 1).
        epochs: length E of the schedule; defaults to the `epochs` of `fit`.
        verbose: 1 prints tau at the start of each epoch.

    Example:

    >>> import keras, numpy as np
    >>> from keras_recu.layers import ReCUConv2D
    >>> model = keras.Sequential([keras.Input((8, 8, 2)), ReCUConv2D(4, 3),
    ...                           keras.layers.GlobalAveragePooling2D()])
    >>> model.compile("sgd", "mse")
    >>> x, y = np.ones((4, 8, 8, 2)), np.zeros((4, 4))
    >>> history = model.fit(x, y, epochs=3, verbose=0,
    ...                     callbacks=[TauScheduler(0.85, 0.99)])
    >>> [round(tau, 4) for tau in history.history["tau"]]
    [0.85, 0.8822, 0.9272]
    """
