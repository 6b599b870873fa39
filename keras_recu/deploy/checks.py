"""What `convert` refuses before and after converting, each refusal naming the layers and the fix.

Before: a Keras 3 model on a backend other than TensorFlow, a tf-keras model
under a reduced-precision dtype policy (a Keras 3 one is converted as its
float32 twin, `float32_graph`), an inference type other than float32 or int8, and a zero-padded
binary conv on a map smaller than its kernel (which LCE 0.16 would convert to
wrong outputs). After: the reason each binary layer that LCE left in float
could not become a binary op.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import keras

from keras_recu import inspection, precision
from keras_recu.inspection import BinaryLayer, binary_layers

# What LCE 0.16 cannot execute in binary, whatever the graph looks like.
NO_BINARY_KERNEL: Dict[str, str] = {
    "dense": "LCE has no binary fully-connected op: keep this layer in float "
    "(no quantizers) or, to accept the float fallback, pass allow_float=True",
    "depthwise": "LCE has no binary depthwise convolution: use float quantizers for "
    "it or pass allow_float=True",
}


class ConversionError(ValueError):
    """The model cannot be deployed as asked (see the message for the fix)."""


def is_keras3(model: Any) -> bool:
    """Whether `model` is a Keras 3 model (exported to a SavedModel), not a tf-keras one."""
    return isinstance(model, keras.Model)


def check_backend(model: Any) -> None:
    """Refuse a Keras 3 model on a backend other than TensorFlow: LCE converts TensorFlow graphs."""
    backend = keras.backend.backend()
    if is_keras3(model) and backend != "tensorflow":
        raise ConversionError(
            f"convert() needs Keras' TensorFlow backend, but this process runs Keras on "
            f"{backend!r}. LCE converts TensorFlow graphs; a model exported from {backend} "
            "holds XLA calls (XlaCallModule) that LCE cannot translate. Save the model "
            "(model.save('model.keras')) and convert the file in a TensorFlow-backend "
            "process: `keras-recu convert model.keras`, or "
            "keras_recu.deploy.convert_saved('model.keras'), which starts one for you."
        )


def float32_graph(model: Any) -> Any:
    """What LCE converts for `model`: itself, or its float32 twin when a Keras 3 model computes under a mixed policy.

    A mixed-precision model holds float32 weights; LCE converts float32
    graphs only, so the twin (`keras_recu.precision.as_float32`: the same
    layers and weights, every policy float32) is what gets converted and
    verified. A tf-keras model under a mixed policy is refused, with the fix.
    """
    if is_keras3(model):
        try:
            return precision.as_float32(model)
        except ValueError as error:
            raise ConversionError(f"convert() converts a mixed-precision model as its float32 twin, but {error}") from None
    check_float32(model)
    return model


def check_float32(model: Any) -> None:
    """Refuse a model with layers computing in reduced precision (tf-keras: `float32_graph` rebuilds Keras 3 ones)."""
    reduced = sorted(
        {
            f"{layer.name} ({layer.dtype_policy.name})"
            for layer in inspection.layers(model, include_self=True)
            if getattr(getattr(layer, "dtype_policy", None), "compute_dtype", "float32") != "float32"
        }
    )
    if reduced:
        raise ConversionError(
            "convert() needs a float32 model, but these layers compute in reduced "
            f"precision: {', '.join(reduced)}. LCE converts float32 graphs only. "
            "Rebuild the model under a float32 policy and copy the trained weights into it "
            "(float_model.set_weights(model.get_weights()))."
        )


def inference_type(value: Union[str, Any]) -> Any:
    """The TensorFlow dtype of an inference input/output type; float32 and int8 only."""
    import tensorflow as tf

    dtype = tf.as_dtype(value)
    if dtype not in (tf.float32, tf.int8):
        raise ConversionError(
            f"inference input/output types must be float32 or int8, got {dtype.name}."
        )
    return dtype


def check_input_sizes(model: Any) -> None:
    """Refuse binary convs that LCE 0.16 would convert to wrong outputs (see `input_smaller_than_kernel`)."""
    wrong = [
        reason
        for binary in binary_layers(model)
        if binary.kind == "conv" and binary.fully_binary
        for reason in [input_smaller_than_kernel(binary.layer)]
        if reason is not None
    ]
    if wrong:
        raise ConversionError(
            # The first line stands alone: the CLI and the run report show only it.
            f"LCE would convert {len(wrong)} binary conv(s) to wrong outputs, the first being "
            + wrong[0] + ("; all of them:\n  " + "\n  ".join(wrong) if len(wrong) > 1 else "")
        )


def unsupported_option(layer: Any) -> Optional[str]:
    """Why LceBconv2d cannot run this binary conv, whatever its sign pattern; None if no option stands in the way."""
    groups = getattr(layer, "groups", 1)
    kernel = getattr(layer, "kernel", None)
    # A Keras conv kernel is (kh, kw, input channels / groups, filters).
    per_group = None if kernel is None else kernel.shape[-2]
    if groups != 1 and per_group is not None and per_group % 32:
        return (
            f"it has groups={groups} with {per_group} input channels per group, and LCE "
            "converts a grouped binary convolution to LceBconv2d only when every group has "
            "a multiple of 32 input channels: use groups=1, or make input channels / groups "
            "a multiple of 32"
        )
    data_format = getattr(layer, "data_format", "channels_last")
    if data_format != "channels_last":
        return (
            f"it has data_format={data_format!r}, and LCE recognizes binary convolutions "
            "in channels-last (NHWC) graphs only: build the model with data_format='channels_last' (the "
            "default; or keras.config.set_image_data_format('channels_last') before "
            "building) and feed it NHWC images"
        )
    pad_values = getattr(layer, "pad_values", 0.0)
    if pad_values not in (0.0, 1.0):
        return (
            f"it has pad_values={pad_values}, and LceBconv2d pads with 0 or 1 only: use "
            "pad_values=0 or 1"
        )
    return None


def input_smaller_than_kernel(layer: Any) -> Optional[str]:
    """Why LCE 0.16 would convert this binary conv to a wrong LceBconv2d; None if it would not.

    LCE's zero-padding correction of a "same" LceBconv2d is wrong wherever the
    kernel overhangs both edges of an axis (measured: a 3x3 conv on 2x2 or 1x1
    maps, a 5x5 one on 4x4; errors of the order of the outputs). One-padding
    (`pad_values=1`) and larger maps convert exactly.
    """
    if getattr(layer, "padding", None) != "same" or getattr(layer, "pad_values", 0.0) != 0.0:
        return None
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):  # not called, or called more than once
        return None
    kernel_size = getattr(layer, "kernel_size", None)
    if kernel_size is None or len(shape) != 4:
        return None
    sizes = shape[1:3] if getattr(layer, "data_format", "channels_last") == "channels_last" else shape[2:]
    small = [
        (size, kernel)
        for size, kernel in zip(sizes, kernel_size)
        if size is not None and size < kernel and kernel > 1
    ]
    if not small:
        return None
    return (
        f"{layer.name}: its {'x'.join(str(s) for s in sizes)} input is smaller than its "
        f"{'x'.join(str(k) for k in kernel_size)} kernel, where LCE 0.16's zero padding of "
        "LceBconv2d computes wrong outputs (a silently wrong flatbuffer). Use an input large "
        "enough that every binary conv sees a map at least as large as its kernel (e.g. 96x96 "
        "or more for the ImageNet ResNets, whose last stage is 1/32 of the input), pad_values=1, "
        "or padding='valid'"
    )


def explain_float_layer(layer: BinaryLayer) -> str:
    """One line: the binary layer LCE left in float and why (what stands in the way, or the fix)."""
    if layer.kind in NO_BINARY_KERNEL:
        return f"{layer.name}: {NO_BINARY_KERNEL[layer.kind]}"
    if not layer.fully_binary:
        side = "kernel" if layer.binary_input else "input"
        return (
            f"{layer.name}: only its {'input' if layer.binary_input else 'kernel'} is binary; "
            f"LceBconv2d needs a 1-bit {side} quantizer too"
        )
    reason = unsupported_option(layer.layer)
    if reason is not None:
        return f"{layer.name}: {reason}"
    return (
        f"{layer.name}: its binarization did not match an LCE sign pattern (write sign as "
        "a select between the constants 1 and -1, as keras_recu.ops.sign does)"
    )
