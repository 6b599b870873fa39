"""tau as training state: the variable, and how a scheduler finds its holders.

tau must be a variable read inside the compiled train step. A Python float
would be captured when `fit` traces the step, and every later change would
be silently ignored. Both fronts (Keras 3 and tf-keras / larq) share this.
"""

from __future__ import annotations

from typing import Iterator, List

import keras
import numpy as np

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


def _layers_of(model) -> Iterator:
    # `_flatten_layers` exists with the same meaning on Keras 3 and tf-keras
    # layers: self and every nested layer, depth first, each once.
    yield from model._flatten_layers(include_self=True, recursive=True)


def find_tau_holders(model) -> List[HasTau]:
    """Every ReCU object of `model` whose tau can be scheduled, each once.

    Looks at every nested layer (quantizers are layers), at the layers'
    `*_constraint` attributes and at the constraints of the model's variables,
    so that nested models and constraints on variables built later count too.
    """
    found = {}

    def add(obj):
        if isinstance(obj, HasTau):
            found.setdefault(id(obj), obj)

    for layer in _layers_of(model):
        add(layer)
        for name, value in vars(layer).items():
            if name.endswith("constraint"):
                add(value)
    for variable in model.variables:
        add(getattr(variable, "constraint", None))
    return list(found.values())
