"""Losses: the distribution loss of knowledge distillation, as the ReCU two-stage recipe trains.

The authors' two-stage ImageNet recipe (after ReActNet) trains the binary
student on the teacher's softmax alone: the cross-entropy of the student's
log-softmax against the teacher's softmax, averaged over the batch. Its
gradient is that of the KL divergence KL(teacher || student), which differs
from it only by the teacher's entropy, a constant for the student.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["DistributionLoss"]


@keras.saving.register_keras_serializable(package="keras_recu")
class DistributionLoss(keras.losses.Loss):
    """`-sum(softmax(teacher_logits) * log_softmax(student_logits))` per example, averaged over the batch.

    Called as `loss(teacher_logits, student_logits)` (Keras' `y_true, y_pred`
    order): both are logits of shape (batch, classes). The teacher's side
    gets no gradient (`stop_gradient`), as in the authors' code, where the
    teacher runs under `torch.no_grad()`.

    Args:
        temperature: divides both sets of logits before the softmax (1, the
            authors' value, leaves them as they are).
        reduction, name, dtype: as in `keras.losses.Loss` (the default,
            "sum_over_batch_size", is the authors' batch mean).

    Example:

    >>> import numpy as np
    >>> teacher = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> loss = DistributionLoss()
    >>> round(float(keras.ops.convert_to_numpy(loss(teacher, teacher))), 4)  # the teacher's entropy
    0.5243
    """

    def __init__(
        self,
        temperature: float = 1.0,
        reduction: str = "sum_over_batch_size",
        name: str = "distribution_loss",
        dtype: Any = None,
    ) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"`temperature` must be a number > 0, got {temperature!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        teacher = ops.stop_gradient(ops.convert_to_tensor(y_true, dtype=self.dtype))
        student = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        if self.temperature != 1.0:
            teacher, student = teacher / self.temperature, student / self.temperature
        return -ops.sum(ops.softmax(teacher, axis=-1) * ops.log_softmax(student, axis=-1), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}
