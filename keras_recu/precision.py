"""Mixed precision: which dtype each part of a ReCU model computes in, and its float32 twin for deployment.

Under a Keras mixed policy (`mixed_bfloat16`, `mixed_float16`) the parts of
a binary model live in these dtypes:

* variables (latent kernels, `alpha`, BatchNorm, tau): float32, as Keras
  keeps every variable under a mixed policy;
* ReCU's statistics (the standardization, the tau quantile, the clamp, the
  backward of the activation quantizer): float32. A binary layer reads its
  latent kernel without the layer's autocast (`keras_recu.layers`), and
  `keras_recu.ops` computes in float32 whatever it is given;
* the binarized kernel, its scale `alpha`, the activations and the layer
  outputs: the policy's compute dtype. +-1 is exact in every float format,
  so only the sums of the convolutions round.

A model trained under a mixed policy holds float32 weights, and LCE
converts float32 graphs, so deployment converts its float32 twin:
`as_float32` rebuilds the model from its config with every layer's policy
float32 and copies the weights; `keras_recu.deploy.convert` and `verify` do
this themselves.

Example:

>>> import keras, numpy as np
>>> from keras_recu import precision
>>> from keras_recu.layers import ReCUConv2D
>>> with precision.policy_scope("mixed_bfloat16"):
...     model = keras.Sequential([keras.Input((8, 8, 3)), ReCUConv2D(4, 3)])
>>> precision.compute_dtypes(model), precision.mixed_policy(model)
(['bfloat16'], 'mixed_bfloat16')
>>> twin = precision.as_float32(model)
>>> precision.compute_dtypes(twin), precision.as_float32(twin) is twin
(['float32'], True)
>>> all(np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights()))
True
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, List, Optional

import keras

from keras_recu import inspection
from keras_recu.vocabulary import DTYPE_POLICIES

__all__ = ["DTYPE_POLICIES", "as_float32", "compute_dtypes", "is_mixed", "mixed_policy", "policy_scope"]


@contextlib.contextmanager
def policy_scope(name: str) -> Iterator[None]:
    """Build layers under the Keras dtype policy `name` (one of `DTYPE_POLICIES`), then restore the global one.

    Keras reads its global policy when a layer is created; the layer keeps
    it for good (and saves it in its config), so the scope only needs to
    cover the construction.
    """
    if name not in DTYPE_POLICIES:
        raise ValueError(f"Unknown dtype policy {name!r}. Known: {', '.join(DTYPE_POLICIES)}.")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compute_dtypes(model: Any) -> List[str]:
    """The compute dtypes of `model`'s layers (itself included), sorted."""
    return sorted({_compute_dtype(layer) for layer in inspection.layers(model, include_self=True)})


def is_mixed(model: Any) -> bool:
    """Whether any layer of `model` computes in a dtype other than float32."""
    return compute_dtypes(model) != ["float32"]


def mixed_policy(model: Any) -> Optional[str]:
    """The reduced-precision policy `model`'s layers compute under ("mixed_bfloat16"; several joined by ", "), or None."""
    names = {
        str(getattr(layer.dtype_policy, "name", layer.dtype_policy))
        for layer in inspection.layers(model, include_self=True)
        if _compute_dtype(layer) != "float32"
    }
    return ", ".join(sorted(names)) or None


def as_float32(model: keras.Model) -> keras.Model:
    """`model` itself when it computes in float32, else its float32 twin: the same layers and weights.

    The twin is rebuilt from the model's config with every layer's dtype
    policy replaced by float32, then given the model's weights (float32
    under any mixed policy, so copied exactly). Keras 3 models only: a
    tf-keras model raises TypeError. A model that its config cannot rebuild
    (a `Lambda` whose function reads globals, a custom layer without
    `get_config`) raises ValueError, naming the fix.
    """
    if not is_mixed(model):
        return model
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"as_float32 rebuilds Keras 3 models; {type(model).__module__}.{type(model).__name__} is not one. "
            "Rebuild it under a float32 policy and copy its weights (set_weights(get_weights()))."
        )
    config = _float32_config(keras.saving.serialize_keras_object(model))
    # safe_mode=False: the config comes from the model in memory, not from a
    # file, so a Lambda layer's function is the user's own code.
    try:
        with policy_scope("float32"):
            twin = keras.saving.deserialize_keras_object(config, safe_mode=False)
        twin.set_weights(model.get_weights())
    except Exception as error:  # whatever a custom layer's from_config raises: one message with the fix
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"cannot rebuild {model.name!r} in float32 from its config ({type(error).__name__}: {first[:200]}). "
            "Build the model again under keras.config.set_dtype_policy('float32') and copy the trained weights "
            "into it: float_model.set_weights(model.get_weights())."
        ) from error
    return twin


def _compute_dtype(layer: Any) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return str(getattr(policy, "compute_dtype", None) or "float32")


def _float32_config(config: Any) -> Any:
    """`config` with every layer's dtype policy (a serialized `DTypePolicy` or a policy name) made float32."""
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    rebuilt = {key: _float32_config(value) for key, value in config.items()}
    if _is_policy(config.get("dtype")):
        rebuilt["dtype"] = "float32"
    return rebuilt


def _is_policy(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith("mixed_")
    return isinstance(value, dict) and "DTypePolicy" in str(value.get("class_name", ""))
