"""The registry of the model builders (`MODELS`, `get`) and `float_twin`, the float baseline."""

from __future__ import annotations

from typing import Callable, Dict

import keras

from keras_recu.layers import QuantConv2D, ReCUConv2D
from keras_recu.models.cifar import resnet18_1w1a, resnet20_1w1a, resnet34_1w1a, vgg_small_1w1a
from keras_recu.models.imagenet import (
    imagenet_resnet18_1w1a,
    imagenet_resnet18_two_stage,
    imagenet_resnet34_1w1a,
)

__all__ = ["MODELS", "float_twin", "get"]

#: The builders by name: what `get` (and the command line's `--model`) looks up.
MODELS: Dict[str, Callable[..., keras.Model]] = {
    "resnet20_1w1a": resnet20_1w1a,
    "resnet18_1w1a": resnet18_1w1a,
    "resnet34_1w1a": resnet34_1w1a,
    "vgg_small_1w1a": vgg_small_1w1a,
    "imagenet_resnet18_1w1a": imagenet_resnet18_1w1a,
    "imagenet_resnet34_1w1a": imagenet_resnet34_1w1a,
    "imagenet_resnet18_two_stage": imagenet_resnet18_two_stage,
}


def get(name: str) -> Callable[..., keras.Model]:
    """The builder called `name` (a key of `MODELS`).

    Raises:
        ValueError: `name` is not one of `MODELS`; the message lists them.

    >>> get("resnet20_1w1a") is resnet20_1w1a
    True
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}."
        ) from None


def float_twin(model: keras.Model) -> keras.Model:
    """The same network with every `ReCUConv2D` replaced by a float `Conv2D`.

    Same graph, shapes, names and initializers; no quantizers and no alpha
    (a float conv needs no output scale). A conv with `torch_padding=True`
    becomes a `QuantConv2D` without quantizers, a float conv that keeps
    PyTorch's padding. The full-precision baseline of an
    ablation, and the float32 reference of a size comparison. Weights are
    freshly initialized, not copied.

    >>> twin = float_twin(resnet20_1w1a(input_shape=(28, 28, 1)))
    >>> sum(isinstance(layer, ReCUConv2D) for layer in twin.layers)
    0
    """

    def clone(layer):
        if isinstance(layer, ReCUConv2D):
            # The layer's own initializer: under one seed the twin starts from
            # the binary model's latent weights (the ablation compares them).
            initializer = layer.kernel_initializer
            if layer.torch_padding:
                # A QuantConv2D without quantizers is a float conv; it keeps PyTorch's padding.
                return QuantConv2D(
                    layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                    use_bias=False, kernel_initializer=initializer, name=layer.name, torch_padding=True,
                )
            return keras.layers.Conv2D(
                layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                use_bias=False, kernel_initializer=initializer, name=layer.name,
            )
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)
