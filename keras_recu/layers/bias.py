"""ReActNet's "move" layer: LearnableBias, a learned per-channel shift."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["LearnableBias"]


@keras.saving.register_keras_serializable(package="keras_recu")
class LearnableBias(keras.layers.Layer):
    """`x + b` with a learnable bias `b` per channel (channels last), zero at the start.

    ReActNet's "move" layers: placed before a binary convolution it learns
    where each channel's sign threshold lies, and around PReLU it shifts the
    nonlinearity. The two-stage ReCU model (`imagenet_resnet18_two_stage`)
    has three per block, as the authors' `LearnableBias`.

    Args:
        bias_initializer: initializer of `b` ("zeros", as the authors').
        **kwargs: those of `keras.layers.Layer`.

    Example:

    >>> import keras, numpy as np
    >>> layer = LearnableBias()
    >>> keras.ops.convert_to_numpy(layer(np.ones((1, 2, 2, 3), "float32")))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    >>> [w.name for w in layer.trainable_weights]
    ['bias']
    """

    def __init__(self, bias_initializer="zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(
                f"LearnableBias needs a known channel count (the last axis), got input shape {input_shape}: "
                "give the model's Input a channel dimension."
            )
        self.bias = self.add_weight(
            name="bias", shape=(input_shape[-1],), initializer=self.bias_initializer, trainable=True
        )

    def call(self, inputs):
        return ops.add(inputs, ops.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
