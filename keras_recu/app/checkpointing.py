"""The callback that checkpoints each finished epoch, and stops a run that diverged before it is checkpointed."""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np

from keras_recu.app.rundir import RunFiles

__all__ = ["all_finite", "checkpoint_callback"]


def all_finite(model) -> bool:
    """Whether every weight of `model` is finite."""
    import keras

    return all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


def checkpoint_callback(files: RunFiles, history: List[dict]):
    """Checkpoints each finished epoch; stops, and checkpoints nothing, once the loss or a weight is not finite.

    Each finished epoch appends its logs to `history`. After `fit`, the
    callback's `diverged` says what went wrong (None when nothing did).

    Keras' BackupAndRestore does not fit: it rewrites its files in place (a
    kill mid-write loses the run), keeps no history, restores only inside a
    `fit` of the same model object and deletes its backup when `fit` ends,
    whereas a run here resumes across processes, sessions and --stop-after.
    TerminateOnNaN would stop in time, but the epoch's end would still be
    checkpointed; here a non-finite epoch never replaces the last good one.
    """
    import keras

    class Session(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.diverged: Optional[str] = None

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.diverged = f"the training loss became {float(loss)} in epoch {self._epoch + 1}, batch {batch + 1}"
                self.model.stop_training = True

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if self.diverged is None and not math.isfinite(float((logs or {}).get("loss", 0.0))):
                self.diverged = f"the training loss of epoch {epoch + 1} is {logs['loss']}"
            if self.diverged is None and not all_finite(self.model):
                self.diverged = f"a weight became NaN or infinite in epoch {epoch + 1}"
            if self.diverged is not None:
                self.model.stop_training = True
                return
            history.append({"epoch": int(epoch), **{key: float(value) for key, value in (logs or {}).items()}})
            files.save(self.model, epoch + 1, history)

    return Session()
