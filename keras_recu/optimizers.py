"""Optimizers: SGD with PyTorch's (coupled) weight decay, as the ReCU recipe trains."""

from __future__ import annotations

import math
import numbers
from typing import Any

import keras
from keras import ops

__all__ = ["L2SGD"]


@keras.saving.register_keras_serializable(package="keras_recu")
class L2SGD(keras.optimizers.SGD):
    """SGD with momentum whose weight decay is added to the gradient, as PyTorch's SGD does.

    PyTorch's `SGD(weight_decay=wd)`, which the ReCU reference trains with,
    updates `buf = momentum * buf + (g + wd * w)`, `w -= lr * buf`: the decay
    goes through the momentum. Keras' own `weight_decay` is decoupled
    (`w -= lr * wd * w` beside the momentum update), a different dynamic.
    ReCU depends on it: latent weights beyond the clamp get no task gradient,
    only decay. Like PyTorch's, the decay applies to every trainable variable.

    Args:
        learning_rate: a float or a schedule.
        momentum: as in `keras.optimizers.SGD`.
        l2: the weight decay factor wd (5e-4 on CIFAR in the paper).
        nesterov, **kwargs: as in `keras.optimizers.SGD` (`weight_decay` is
            refused: use `l2`).

    A learning rate given as a number, the momentum and `l2` must be finite
    (a NaN learning rate would silently turn every weight NaN).

    Example:

    >>> optimizer = L2SGD(learning_rate=0.1, momentum=0.9, l2=5e-4)
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        l2: float = 0.0,
        nesterov: bool = False,
        name: str = "l2_sgd",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("weight_decay"):
            raise ValueError(
                "L2SGD applies PyTorch-style weight decay through `l2`; Keras' "
                "decoupled `weight_decay` would decay twice. Pass l2=... instead."
            )
        kwargs.pop("weight_decay", None)
        _check_range(l2, "l2", 0.0, math.inf, ">= 0 and finite")
        _check_range(momentum, "momentum", 0.0, 1.0, "a number in [0, 1]")
        if isinstance(learning_rate, numbers.Real):
            _check_range(learning_rate, "learning_rate", 0.0, math.inf, "a finite number >= 0, or a schedule")
        super().__init__(learning_rate=learning_rate, momentum=float(momentum), nesterov=nesterov, name=name, **kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = ops.add(gradient, ops.multiply(ops.cast(self.l2, variable.dtype), variable))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "l2": self.l2}


def _check_range(value, name: str, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {allowed}, got {value!r} of type {type(value).__name__}.")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"`{name}` must be {allowed}, got {value}.")
