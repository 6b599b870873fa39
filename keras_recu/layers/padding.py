"""Padding: the builders' vocabulary, PyTorch's padding arithmetic, and two padding layers.

The one owner of how keras-recu pads. Two spellings meet here, each where
its caller's conventions put it:

* A model builder (and the command line's `--padding`) takes
  `padding="same"` (Keras') or `padding="torch"` (PyTorch's symmetric
  `padding=kernel_size // 2`, for weights trained there): `PADDINGS`, checked
  by `check_padding`; `pads_like_torch` says whether its convs get
  `torch_padding=True`, and `keras_padding` is the Keras `padding` argument
  a builder gives its pooling and stem layers.
* A quantized convolution takes Keras' own `padding` ("valid" or "same")
  plus the switch `torch_padding=True`, checked by `check_conv_padding`:
  Keras' conv base class validates `padding` against its fixed vocabulary
  (`standardize_padding`), and saved configs and the LCE converter read it,
  so PyTorch's variant is a switch on top of "same", not a third value.

`ChannelZeroPad` and `ConstantPadding2D` are the models' explicit paddings
(the ResNets' option-A shortcut, PyTorch's -inf max-pool padding).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import keras
from keras import ops

from keras_recu import ops as recu_ops
from keras_recu import vocabulary

__all__ = [
    "PADDINGS",
    "ChannelZeroPad",
    "ConstantPadding2D",
    "check_conv_padding",
    "check_padding",
    "keras_padding",
    "pads_like_torch",
    "same_padding",
    "torch_flip_axes",
    "torch_read_padding",
]

# The builders' `padding` values: PyTorch's symmetric padding (the authors'
# models), or Keras' "same"; defined in keras_recu.vocabulary, which the
# command line's `--padding` reads without Keras.
PADDINGS = vocabulary.PADDINGS


def check_padding(padding) -> str:
    """Return a builder's `padding` if it is one of `PADDINGS`, else raise a ValueError.

    The one check of the word, for the builders and the command line alike.

    >>> check_padding("torch")
    'torch'
    >>> check_padding("valid")
    Traceback (most recent call last):
    ...
    ValueError: `padding` must be 'torch' or 'same' ("torch": ...), got 'valid'.
    """
    if padding not in PADDINGS:
        raise ValueError(
            f"`padding` must be {' or '.join(map(repr, PADDINGS))} (\"torch\": PyTorch's symmetric "
            f"padding, for weights trained there), got {padding!r}."
        )
    return padding


def pads_like_torch(padding: str) -> bool:
    """Whether a builder's `padding` is PyTorch's: its convs get `torch_padding=True`.

    >>> pads_like_torch("torch"), pads_like_torch("same")
    (True, False)
    """
    return check_padding(padding) == "torch"


def keras_padding(padding: str) -> str:
    """The Keras `padding` of a layer that a builder pads PyTorch's way under `padding`.

    Under "torch" the layer pads nothing itself ("valid"): an explicit padding
    layer before it pads as PyTorch does, or PyTorch does not pad it at all
    (its pooling floors odd sizes). Under "same" it is Keras' "same".

    >>> keras_padding("torch"), keras_padding("same")
    ('valid', 'same')
    """
    return "valid" if pads_like_torch(padding) else "same"


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """Keras' "same" padding `(before, after)` of one spatial axis: the odd pixel after.

    >>> same_padding(8, 3, 2)
    (0, 1)
    """
    effective_kernel = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective_kernel - size, 0)
    return total // 2, total - total // 2


def torch_read_padding(
    shape: Sequence[int], kernel: int, stride: int, pad: int
) -> Tuple[Tuple[int, int], ...]:
    """PyTorch's symmetric `pad`, trimmed to the rows and columns that the window reads.

    On an even size at stride 2 PyTorch's last pad row is never read. The
    trimmed pad gives the same result in Keras, and it keeps LCE's converter
    from folding a symmetric pad into a "same" conv whose padding is not
    symmetric there (measured: LCE 0.16 turns ZeroPadding2D(3) -> 7x7/2
    "valid" conv on 224x224 into a wrongly padded conv, silently).

    >>> torch_read_padding((224, 224), 7, 2, 3)
    ((3, 2), (3, 2))
    """
    amounts = []
    for size in shape:
        out = (size + 2 * pad - kernel) // stride + 1
        amounts.append((pad, max((out - 1) * stride + kernel - size - pad, 0)))
    return tuple(amounts)


def check_conv_padding(
    padding: str,
    pad_values: float,
    torch_padding: bool,
    kernel_size: Sequence[int],
    dilation_rate: Sequence[int],
) -> Tuple[float, bool]:
    """A quantized conv's `(pad_values, torch_padding)`, checked against its Keras `padding`.

    Both only apply with padding="same"; `torch_padding=True` needs an odd
    kernel and dilation 1, where PyTorch's `padding=kernel_size // 2` has
    the output size of "same".
    """
    pad_value = float(pad_values)
    if pad_value != 0.0 and padding != "same":
        raise ValueError(
            f"`pad_values={pad_values}` only applies with padding='same', "
            f"got padding={padding!r}."
        )
    torch_padding = recu_ops.validate_bool(torch_padding, "torch_padding")
    if not torch_padding:
        return pad_value, False
    if padding != "same":
        raise ValueError(
            "`torch_padding=True` reproduces PyTorch's padding=kernel_size // 2, whose output "
            f"size is that of padding='same'; pass padding='same', got padding={padding!r}."
        )
    if any(kernel % 2 == 0 for kernel in kernel_size) or any(dilation != 1 for dilation in dilation_rate):
        raise ValueError(
            "`torch_padding=True` needs an odd kernel size and dilation 1 (PyTorch's "
            f"padding=kernel_size // 2 is not 'same' otherwise); got kernel_size="
            f"{tuple(kernel_size)}, dilation_rate={tuple(dilation_rate)}."
        )
    return pad_value, True


def torch_flip_axes(
    conv: keras.layers.Layer, input_shape: Sequence[Optional[int]], spatial_axes: Sequence[int]
) -> Tuple[int, ...]:
    """The input axes to reverse so that `conv`'s "same" padding is PyTorch's `kernel // 2`.

    "same" puts an odd pixel of padding after (bottom/right), PyTorch's only
    read pad row lies before (top/left): reversing that axis of the input,
    the kernel and the output moves it there. `conv` is a 2-D conv layer
    (its `kernel_size`, `strides` and name are read), `spatial_axes` the
    input's height and width axes.

    >>> conv = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")
    >>> torch_flip_axes(conv, (1, 8, 8, 3), (1, 2)), torch_flip_axes(conv, (1, 7, 7, 3), (1, 2))
    ((1, 2), ())
    """
    flips = []
    for axis, kernel, stride in zip(spatial_axes, conv.kernel_size, conv.strides):
        size = input_shape[axis]
        if size is None:
            raise ValueError(
                f"{type(conv).__name__} with torch_padding=True needs static spatial input "
                f"dimensions, got {tuple(input_shape)}."
            )
        torch_pad = kernel // 2
        before, after = same_padding(size, kernel, stride)
        if before == torch_pad:  # "same" already pads like PyTorch
            continue
        if after == torch_pad:  # mirrored, it does
            flips.append(axis)
            continue
        raise ValueError(
            f"{type(conv).__name__} {conv.name!r}: PyTorch's padding {torch_pad} with kernel "
            f"{kernel} and stride {stride} on size {size} skips input pixels that "
            "padding='same' uses, so torch_padding=True cannot reproduce it. Use a size "
            "that the stride divides, or torch_padding=False."
        )
    return tuple(flips)


@keras.saving.register_keras_serializable(package="keras_recu")
class ChannelZeroPad(keras.layers.Layer):
    """Add zero channels before and after the channels of a channels-last tensor.

    The channel half of the ResNets' option-A shortcut. Lowers to one PAD
    op in TFLite / larq-compute-engine; saves and loads with the model
    (unlike a `Lambda`).

    Args:
        padding: `(before, after)` numbers of zero channels, or one int for both.

    Example:

    >>> import numpy as np
    >>> y = ChannelZeroPad((1, 2))(np.ones((1, 1, 1, 2), "float32"))
    >>> keras.ops.convert_to_numpy(y)[0, 0, 0].tolist()
    [0.0, 1.0, 1.0, 0.0, 0.0]
    """

    # For `keras_recu.profile.summary`: padding multiplies nothing.
    performs_macs = False

    def __init__(self, padding=(0, 0), **kwargs) -> None:
        super().__init__(**kwargs)
        pair = (padding, padding) if isinstance(padding, int) else padding
        pair = tuple(pair) if isinstance(pair, (tuple, list)) else ()
        if len(pair) != 2 or not all(isinstance(p, int) and p >= 0 for p in pair):
            raise ValueError(
                f"`padding` must be a non-negative int or a pair (before, after) of "
                f"them, got {padding!r}."
            )
        self.padding = pair

    def call(self, inputs):
        pad_width = [(0, 0)] * (len(inputs.shape) - 1) + [self.padding]
        return ops.pad(inputs, pad_width)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (*input_shape[:-1], None if channels is None else channels + sum(self.padding))

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": list(self.padding)}


@keras.saving.register_keras_serializable(package="keras_recu")
class ConstantPadding2D(keras.layers.Layer):
    """Pad the rows and columns of a channels-last tensor with a constant (-inf allowed).

    `keras.layers.ZeroPadding2D` pads with zeros only; PyTorch's max pooling
    pads with -inf, so that the padding never wins the max. The ImageNet
    models' stem max pool (3x3, stride 2, padding 1) is this layer with
    `value=float("-inf")` followed by a "valid" `MaxPooling2D`. It lowers
    to TFLite's PADV2.

    Args:
        padding: ((top, bottom), (left, right)), or one int for all four.
        value: the constant, any float including -inf.

    Example:

    >>> import keras, numpy as np
    >>> padded = ConstantPadding2D(1, value=float("-inf"))(np.ones((1, 1, 1, 1), "float32"))
    >>> keras.ops.convert_to_numpy(padded)[0, :, :, 0].tolist()[0]
    [-inf, -inf, -inf]
    """

    def __init__(self, padding=1, value: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(padding, int):
            padding = ((padding, padding), (padding, padding))
        try:
            rows, cols = (tuple(int(p) for p in pair) for pair in padding)
            if len(rows) != 2 or len(cols) != 2 or min(rows + cols) < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(
                f"`padding` must be an int >= 0 or ((top, bottom), (left, right)), got {padding!r}."
            ) from None
        self.padding = (rows, cols)
        self.value = float(value)
        if math.isnan(self.value):
            raise ValueError("`value` must be a number (-inf included), got NaN: pass 0.0 or float('-inf').")

    def call(self, inputs):
        rows, cols = self.padding
        return ops.pad(inputs, [(0, 0), rows, cols, (0, 0)], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        height, width = input_shape[1], input_shape[2]
        return (
            input_shape[0],
            None if height is None else height + top + bottom,
            None if width is None else width + left + right,
            input_shape[3],
        )

    def get_config(self) -> dict:
        # Strict JSON has no infinity: a string keeps .keras configs portable.
        value = str(self.value) if math.isinf(self.value) else self.value
        return {**super().get_config(), "padding": self.padding, "value": value}
