"""TauScheduler: ReCU's exponential tau schedule during `fit`."""

from __future__ import annotations

from typing import Optional

import keras

from keras_recu import ops as recu_ops
from keras_recu._tau import TauScheduleLogic

__all__ = ["TauScheduler"]


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

    def __init__(
        self,
        tau_min: float = recu_ops.TAU_MIN,
        tau_max: float = recu_ops.TAU_MAX,
        epochs: Optional[int] = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self._init_schedule(tau_min, tau_max, epochs, verbose)
