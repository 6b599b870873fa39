"""What `convert` changes in a Keras 3 model for its export only, so that LCE 0.16 converts it right.

Each rewrite is a context manager: the model is changed on entry and restored
on exit, and it computes the same function either way.
`unread_padding_removed` trims explicit zero padding that LCE would fold into
a "same" conv padding elsewhere; `binary_kernels_as_weights` exports binary
kernels already binarized, so that LCE sees constants it can bit-pack.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, List, Optional, Tuple

import keras

from keras_recu import inspection
from keras_recu.inspection import binary_layers


def _zero_padding(layer: Any) -> Optional[Tuple[Tuple[int, int], Tuple[int, int]]]:
    """((top, bottom), (left, right)) of a channels-last zero-padding layer; None for any other layer."""
    if isinstance(layer, keras.layers.ZeroPadding2D):
        if layer.data_format != "channels_last":
            return None
    elif not (type(layer).__name__ == "ConstantPadding2D" and getattr(layer, "value", None) == 0.0):
        return None
    (top, bottom), (left, right) = layer.padding
    return (int(top), int(bottom)), (int(left), int(right))


def _read_padding(size: int, before: int, after: int, kernel: int, stride: int, dilation: int) -> int:
    """How much of `after` a "valid" conv over the padded axis reads."""
    extent = (kernel - 1) * dilation + 1
    padded = size + before + after
    outputs = (padded - extent) // stride + 1
    unread = padded - ((outputs - 1) * stride + extent)
    return max(after - unread, 0)


def _consumers(model: Any, layer: Any) -> List[Any]:
    """The layers of `model` whose input is `layer`'s output."""
    try:
        output = layer.output
    except (AttributeError, ValueError):  # unbuilt or used more than once: leave it alone
        return []
    found = []
    for other in inspection.layers(model):
        try:
            inputs = other.input
        except (AttributeError, ValueError):
            continue
        if inputs is output:
            found.append(other)
    return found


@contextlib.contextmanager
def unread_padding_removed(model: Any) -> Iterator[None]:
    """Export explicit zero padding without the rows and columns that the next conv never reads.

    LCE 0.16's fuse-padding pass folds `PAD(before, after) -> CONV_2D(VALID)`
    into one `CONV_2D(SAME)` whenever before and after are split as "same"
    would split them and the output size is "same"'s, without checking that
    their sum is "same"'s. PyTorch's symmetric padding passes that test where
    "same" pads differently: a 3x3 stride-2 conv with padding (1, 1) on an
    even size (where "same" pads (0, 1)), or the 7x7 stride-2 ImageNet stem
    with (3, 3) (where "same" pads (2, 3)). The flatbuffer is then silently
    wrong (measured: no PAD op left, errors of the order of the outputs).
    A strided "valid" conv ignores the last rows of such a padding; without
    them the padding is either exactly "same"'s or not "same"-like at all, so
    LCE converts it right. The model computes the same function either way.
    """
    changed = []
    try:
        for layer in inspection.layers(model):
            padding = _zero_padding(layer)
            if padding is None:
                continue
            consumers = _consumers(model, layer)
            if len(consumers) != 1:
                continue
            conv = consumers[0]
            if not isinstance(conv, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
                continue
            if conv.padding != "valid" or conv.data_format != "channels_last":
                continue
            input_shape = layer.input.shape
            if any(size is None for size in input_shape[1:3]):
                continue
            trimmed = tuple(
                (before, _read_padding(size, before, after, kernel, stride, dilation))
                for size, (before, after), kernel, stride, dilation in zip(
                    input_shape[1:3], padding, conv.kernel_size, conv.strides, conv.dilation_rate
                )
            )
            if trimmed != padding:
                changed.append((layer, layer.padding))
                layer.padding = trimmed
        yield
    finally:
        for layer, padding in changed:
            layer.padding = padding


@contextlib.contextmanager
def binary_kernels_as_weights(model: Any) -> Iterator[None]:
    """Export binary convs with their kernels already binarized.

    The converter folds the kernel quantizer's ops into a constant only for
    kernels up to 1 MiB of float32; a larger kernel (3x3x128x256 and up: the
    late stages of ResNet-18/34, VGG-small) would stay an expression and LCE
    would leave the conv in float. So, for the export only, each binary
    conv's kernel variable holds the quantizer's output and the quantizer is
    set aside; both are restored afterwards.
    """
    swapped = []
    try:
        for binary in binary_layers(model):
            if not (binary.kind == "conv" and binary.fully_binary):
                continue
            layer = binary.layer
            quantizer = layer.kernel_quantizer
            latent = keras.ops.convert_to_numpy(layer.kernel)
            binary_kernel = keras.ops.convert_to_numpy(quantizer(layer.kernel))
            swapped.append((layer, quantizer, latent))
            layer.kernel.assign(binary_kernel)
            layer.kernel_quantizer = None
        yield
    finally:
        for layer, quantizer, latent in swapped:
            layer.kernel_quantizer = quantizer
            layer.kernel.assign(latent)
