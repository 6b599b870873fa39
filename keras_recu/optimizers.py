"""Optimizers with PyTorch's (coupled) weight decay, as the ReCU recipes train.

PyTorch's `SGD` and `Adam` add `weight_decay * w` to the gradient before the
update (the decay then goes through the momentum, and for Adam through the
adaptive scaling too). Keras' own `weight_decay` is decoupled
(`w -= lr * wd * w` beside the update), a different dynamic; ReCU depends on
the coupled one, since latent weights beyond the clamp get no task gradient,
only decay.

Which variables are decayed: all trainable ones by default, as PyTorch does
for one parameter group; or, with `l2_paths`, only those whose
`variable.path` contains one of the given substrings. The authors' ImageNet
recipes decay only the parameters whose PyTorch name contains "conv" or "fc";
the ImageNet builders name their layers after those modules, so
`l2_paths=("conv", "fc")` is the same rule.

`EpochWarmupCosine` is the authors' learning-rate schedule, held for each
epoch as their training loop sets it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple

import keras
from keras import ops

__all__ = ["EpochWarmupCosine", "L2Adam", "L2SGD"]


class _CoupledL2:
    """The coupled decay shared by L2SGD and L2Adam: `gradient + l2 * w` on the chosen variables."""

    @classmethod
    def _l2_settings(cls, l2: float, l2_paths: Optional[Sequence[str]], kwargs: dict) -> Tuple[float, Any]:
        if kwargs.get("weight_decay"):
            raise ValueError(
                f"{cls.__name__} applies PyTorch-style weight decay through `l2`; Keras' "
                "decoupled `weight_decay` would decay twice. Pass l2=... instead."
            )
        kwargs.pop("weight_decay", None)
        _check_range(l2, "l2", 0.0, math.inf, ">= 0 and finite")
        return float(l2), _check_paths(l2_paths)

    def decays(self, variable) -> bool:
        """Whether `variable` gets the L2 term: `l2 > 0` and its path matches `l2_paths` (if given)."""
        if not self.l2:
            return False
        if self.l2_paths is None:
            return True
        path = _variable_path(variable)
        return any(pattern in path for pattern in self.l2_paths)

    def update_step(self, gradient, variable, learning_rate):
        # Before the Keras optimizer's own step, as torch adds it before momentum or moments.
        if self.decays(variable):
            gradient = ops.add(gradient, ops.multiply(ops.cast(self.l2, variable.dtype), variable))
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "l2": self.l2,
            "l2_paths": None if self.l2_paths is None else list(self.l2_paths),
        }


@keras.saving.register_keras_serializable(package="keras_recu")
class L2SGD(_CoupledL2, keras.optimizers.SGD):
    """SGD with momentum whose weight decay is added to the gradient, as PyTorch's SGD does.

    PyTorch's `SGD(weight_decay=wd)` updates `buf = momentum * buf + (g + wd * w)`,
    `w -= lr * buf`: the decay goes through the momentum.

    Args:
        learning_rate: a float or a schedule.
        momentum: as in `keras.optimizers.SGD`.
        l2: the weight decay factor wd (5e-4 on CIFAR in the paper, 1e-4 on ImageNet).
        l2_paths: decay only variables whose `path` contains one of these
            substrings (None: every trainable variable).
        nesterov, **kwargs: as in `keras.optimizers.SGD` (`weight_decay` is
            refused: use `l2`).

    A learning rate given as a number, the momentum and `l2` must be finite
    (a NaN learning rate would silently turn every weight NaN).

    Example:

    >>> optimizer = L2SGD(learning_rate=0.1, momentum=0.9, l2=1e-4, l2_paths=("conv", "fc"))
    >>> optimizer.decays(keras.Variable(1.0, name="kernel")), optimizer.l2_paths
    (False, ('conv', 'fc'))
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.0,
        l2: float = 0.0,
        nesterov: bool = False,
        name: str = "l2_sgd",
        l2_paths: Optional[Sequence[str]] = None,
        **kwargs: Any,
    ) -> None:
        l2, l2_paths = self._l2_settings(l2, l2_paths, kwargs)
        _check_range(momentum, "momentum", 0.0, 1.0, "a number in [0, 1]")
        _check_learning_rate(learning_rate)
        super().__init__(learning_rate=learning_rate, momentum=float(momentum), nesterov=nesterov, name=name, **kwargs)
        self.l2, self.l2_paths = l2, l2_paths


@keras.saving.register_keras_serializable(package="keras_recu")
class L2Adam(_CoupledL2, keras.optimizers.Adam):
    """Adam whose weight decay is added to the gradient, as PyTorch's `Adam(weight_decay=wd)` does.

    The L2 term `wd * w` enters the first and second moments like the task
    gradient (it is not AdamW's decoupled decay). The authors' two-stage
    ImageNet recipe trains with Adam, lr 1e-3 and wd 0.

    The defaults are PyTorch's (betas 0.9, 0.999, epsilon 1e-8). One
    difference stays: Keras adds epsilon to sqrt(v) before the bias
    correction, PyTorch after it, so Keras' effective epsilon is
    `epsilon * sqrt(1 - beta_2 ** t)`, at most `epsilon`. It matters only where
    |gradient| is of the order of epsilon itself (the test against
    `torch.optim.Adam` agrees to 1e-6 on ordinary gradients).

    Args:
        learning_rate: a float or a schedule.
        l2: the weight decay factor wd.
        l2_paths: decay only variables whose `path` contains one of these
            substrings (None: every trainable variable).
        beta_1, beta_2, epsilon, **kwargs: as in `keras.optimizers.Adam`
            (`weight_decay` is refused: use `l2`; `amsgrad` as in Keras).

    Example:

    >>> optimizer = L2Adam(learning_rate=1e-3, l2=0.0)
    >>> optimizer.decays(keras.Variable(1.0, name="conv1_kernel"))
    False
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        l2: float = 0.0,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        name: str = "l2_adam",
        l2_paths: Optional[Sequence[str]] = None,
        **kwargs: Any,
    ) -> None:
        l2, l2_paths = self._l2_settings(l2, l2_paths, kwargs)
        _check_range(beta_1, "beta_1", 0.0, 1.0, "a number in [0, 1)")
        _check_range(beta_2, "beta_2", 0.0, 1.0, "a number in [0, 1)")
        _check_range(epsilon, "epsilon", 0.0, math.inf, "a finite number >= 0")
        if beta_1 >= 1 or beta_2 >= 1:
            raise ValueError(f"`beta_1` and `beta_2` must be in [0, 1), got {beta_1} and {beta_2}.")
        _check_learning_rate(learning_rate)
        super().__init__(
            learning_rate=learning_rate, beta_1=float(beta_1), beta_2=float(beta_2), epsilon=float(epsilon),
            name=name, **kwargs,
        )
        self.l2, self.l2_paths = l2, l2_paths


@keras.saving.register_keras_serializable(package="keras_recu")
class EpochWarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """The authors' learning rate: constant within an epoch, a linear warm-up, then cosine.

    Their `main.py` (CIFAR and ImageNet alike) sets the rate once per epoch:
    `lr * (e + 1) / 5` for the epochs e < 5 of the warm-up, then
    `CosineAnnealingLR(T_max=epochs - 4)` stepped after each epoch from the
    fifth on, so that epoch e >= 4 trains at
    `lr * (1 + cos(pi * (e - 4) / (epochs - 4))) / 2`: it never reaches 0.
    With `warmup_epochs` W this is `lr * (e + 1) / W` for e < W and the
    cosine over `epochs - W + 1` epochs from epoch W - 1; without warm-up,
    `lr * (1 + cos(pi * e / epochs)) / 2`.

    Args:
        learning_rate: the peak rate.
        epochs: the length of the run.
        steps_per_epoch: optimizer steps in one epoch.
        warmup_epochs: W, 5 in the authors' code.

    Example:

    >>> schedule = EpochWarmupCosine(0.1, epochs=10, steps_per_epoch=3)
    >>> [round(float(schedule(step)), 4) for step in (0, 2, 3, 12, 29)]
    [0.02, 0.02, 0.04, 0.1, 0.0067]
    """

    def __init__(self, learning_rate: float, epochs: int, steps_per_epoch: int, warmup_epochs: int = 5) -> None:
        _check_range(learning_rate, "learning_rate", 0.0, math.inf, "a finite number >= 0")
        for name, value, low in (("epochs", epochs, 1), ("steps_per_epoch", steps_per_epoch, 1),
                                 ("warmup_epochs", warmup_epochs, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        if warmup_epochs >= epochs:
            raise ValueError(f"`warmup_epochs` must be < epochs={epochs}, got {warmup_epochs}.")
        self.learning_rate = float(learning_rate)
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = int(warmup_epochs)

    def __call__(self, step):
        epoch = ops.floor(ops.divide(ops.cast(step, "float32"), float(self.steps_per_epoch)))
        peak = self.learning_rate
        # (1 + cos(x)) / 2 written as cos(x / 2)^2: no cancellation in float32 near the end.
        if not self.warmup_epochs:
            return peak * ops.square(ops.cos(math.pi / 2 * epoch / self.epochs))
        warmup = self.warmup_epochs
        cosine_epochs = self.epochs - warmup + 1
        cosine = peak * ops.square(ops.cos(math.pi / 2 * (epoch - (warmup - 1)) / cosine_epochs))
        return ops.where(epoch < warmup, peak * (epoch + 1.0) / warmup, cosine)

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "warmup_epochs": self.warmup_epochs,
        }


def _variable_path(variable) -> str:
    """The Keras path of a variable the optimizer updates.

    The TensorFlow backend hands `update_step` the tf.Variable behind the
    Keras variable (a replica's component under tf.distribute), whose name is
    the Keras path plus ":0" (and "/replica_N" on the other devices).
    """
    path = getattr(variable, "path", None)
    return path if path is not None else variable.name.rsplit(":", 1)[0]


def _check_paths(paths: Optional[Sequence[str]]) -> Optional[Tuple[str, ...]]:
    if paths is None:
        return None
    if isinstance(paths, str) or not all(isinstance(p, str) and p for p in paths):
        raise TypeError(
            f"`l2_paths` must be None (decay every trainable variable) or a list of non-empty substrings of "
            f"variable paths, e.g. ('conv', 'fc'); got {paths!r}."
        )
    return tuple(paths)


def _check_learning_rate(learning_rate) -> None:
    if isinstance(learning_rate, numbers.Real):
        _check_range(learning_rate, "learning_rate", 0.0, math.inf, "a finite number >= 0, or a schedule")


def _check_range(value, name: str, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be {allowed}, got {value!r} of type {type(value).__name__}.")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"`{name}` must be {allowed}, got {value}.")
