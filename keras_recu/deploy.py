"""Deployment: convert to a larq-compute-engine flatbuffer and prove it is binary and faithful.

`convert` turns a Keras 3 model (exported to a SavedModel first) or a tf-keras
/ larq model (LCE's Keras converter) into a TFLite flatbuffer for LCE's ARM
runtime, and refuses, naming the layers, when LCE would leave a binary layer
in float. `verify` runs the flatbuffer in LCE's interpreter next to the Keras
model and reports the operator census, the binary layers that did not become
`LceBconv2d`, the output errors, argmax agreement and the sizes.

LCE converts TensorFlow graphs, so `convert` runs where Keras runs on
TensorFlow. A model trained on JAX or PyTorch is saved as `.keras` and
converted by `convert_saved`, which loads it in a TensorFlow-backend
subprocess, converts and verifies it there (or, by hand:
`keras-recu convert MODEL.keras` on a machine with TensorFlow).
`conversion_available()` says whether this environment can convert at all.

LCE's Python interpreter runs on x86-64 with reference kernels: correct but
not fast. Its optimized kernels are for 64-bit ARM.

Example:

>>> import keras, numpy as np
>>> from keras_recu.layers import ReCUConv2D
>>> from keras_recu.deploy import convert, verify
>>> model = keras.Sequential([keras.Input((8, 8, 4)), ReCUConv2D(8, 3, padding="same")])
>>> flatbuffer = convert(model)
>>> report = verify(model, flatbuffer, np.random.default_rng(0).normal(size=(4, 8, 8, 4)))
>>> report.census["LceBconv2d"], report.float_binary_layers, report.max_abs_error < 1e-4
(1, [], True)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from keras_recu import inspection
from keras_recu.inspection import BinaryLayer, binary_layers

__all__ = [
    "BinaryLayer",
    "ConversionError",
    "SavedModelConversion",
    "VerificationReport",
    "binary_layers",
    "census",
    "conversion_available",
    "convert",
    "convert_saved",
    "verify",
]

_LCE_BINARY_OPS = ("LceBconv2d",)
# What LCE 0.16 cannot execute in binary, whatever the graph looks like.
_NO_BINARY_KERNEL = {
    "dense": "LCE has no binary fully-connected op: keep this layer in float "
    "(no quantizers) or, to accept the float fallback, pass allow_float=True",
    "depthwise": "LCE has no binary depthwise convolution: use float quantizers for "
    "it or pass allow_float=True",
}


class ConversionError(ValueError):
    """The model cannot be deployed as asked (see the message for the fix)."""


def _is_keras3(model) -> bool:
    return isinstance(model, keras.Model)


def _check_backend(model) -> None:
    backend = keras.backend.backend()
    if _is_keras3(model) and backend != "tensorflow":
        raise ConversionError(
            f"convert() needs Keras' TensorFlow backend, but this process runs Keras on "
            f"{backend!r}. LCE converts TensorFlow graphs; a model exported from {backend} "
            "holds XLA calls (XlaCallModule) that LCE cannot translate. Save the model "
            "(model.save('model.keras')) and convert the file in a TensorFlow-backend "
            "process: `keras-recu convert model.keras`, or "
            "keras_recu.deploy.convert_saved('model.keras'), which starts one for you."
        )


def _check_float32(model) -> None:
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
            "Rebuild the model under keras.config.set_dtype_policy('float32') and "
            "copy the trained weights into it (float_model.set_weights(model.get_weights()))."
        )


def _dtype(value: Union[str, Any]):
    import tensorflow as tf

    dtype = tf.as_dtype(value)
    if dtype not in (tf.float32, tf.int8):
        raise ConversionError(
            f"inference input/output types must be float32 or int8, got {dtype.name}."
        )
    return dtype


def census(flatbuffer: bytes) -> Dict[str, int]:
    """Operator counts of a TFLite flatbuffer (a Counter: absent ops count 0).

    LCE's custom ops appear by their names (`LceBconv2d`, `LceQuantize`, ...),
    builtin ops by TFLite's (`CONV_2D`, ...).
    """
    return collections.Counter(op for op, _ in _operators(flatbuffer))


def _operators(flatbuffer: bytes):
    """(op name, tensor names it reads and writes) for each op of the main subgraph."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode:
            name = code.customCode.decode()
        else:
            name = builtin_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
        tensors = [graph.tensors[i].name.decode() for i in [*op.inputs, *op.outputs] if i >= 0]
        ops.append((name, tensors))
    return ops


def _layer_pattern(name: str) -> re.Pattern:
    # Exported graphs scope ops by layer name; Keras 3 export adds "_<n>".
    return re.compile(rf"(^|/){re.escape(name)}(_\d+)?(/|;|$)")


def float_binary_layers(model, flatbuffer: bytes) -> List[BinaryLayer]:
    """Binary layers of `model` that the flatbuffer does not execute as a binary op."""
    ops = _operators(flatbuffer)
    left = []
    layers = binary_layers(model)
    for layer in layers:
        pattern = _layer_pattern(layer.name)
        binary_ops = [op for op, tensors in ops if op in _LCE_BINARY_OPS and any(pattern.search(t) for t in tensors)]
        if not (layer.kind == "conv" and layer.fully_binary and binary_ops):
            left.append(layer)
    # Names are a heuristic; the count is not: trust it when they disagree.
    expected = sum(1 for layer in layers if layer.kind == "conv" and layer.fully_binary)
    converted = sum(1 for op, _ in ops if op in _LCE_BINARY_OPS)
    convs_left = [layer for layer in left if layer.kind == "conv" and layer.fully_binary]
    if converted >= expected and convs_left:
        left = [layer for layer in left if layer not in convs_left]
    return left


def _unsupported_option(layer: Any) -> Optional[str]:
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


def _input_smaller_than_kernel(layer: Any) -> Optional[str]:
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


def _explain(layer: BinaryLayer) -> str:
    if layer.kind in _NO_BINARY_KERNEL:
        return f"{layer.name}: {_NO_BINARY_KERNEL[layer.kind]}"
    if not layer.fully_binary:
        side = "kernel" if layer.binary_input else "input"
        return (
            f"{layer.name}: only its {'input' if layer.binary_input else 'kernel'} is binary; "
            f"LceBconv2d needs a 1-bit {side} quantizer too"
        )
    reason = _unsupported_option(layer.layer)
    if reason is not None:
        return f"{layer.name}: {reason}"
    return (
        f"{layer.name}: its binarization did not match an LCE sign pattern (write sign as "
        "a select between the constants 1 and -1, as keras_recu.ops.sign does)"
    )


def _zero_padding(layer) -> Optional[Tuple[Tuple[int, int], Tuple[int, int]]]:
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


def _consumers(model, layer) -> list:
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
def _unread_padding_removed(model):
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
def _binary_kernels_as_weights(model):
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


def convert(
    model,
    path: Optional[Union[str, os.PathLike]] = None,
    *,
    target: str = "arm",
    inference_input_type="float32",
    inference_output_type="float32",
    default_int8_range: Optional[Sequence[float]] = None,
    allow_float: bool = False,
) -> bytes:
    """Convert `model` to an LCE flatbuffer; write it to `path` when given.

    Works for Keras 3 models (exported to a SavedModel, then
    `larq_compute_engine.convert_saved_model`) and tf-keras / larq models
    (`larq_compute_engine.convert_keras_model`).

    Args:
        model: a built float32 Keras 3 or tf-keras model.
        path: where to write the flatbuffer (optional).
        target: LCE's target, "arm" (default) or "xcore".
        inference_input_type, inference_output_type: "float32" or "int8".
            int8 needs a model with quantize/dequantize ops at its ends (from
            quantization-aware training) or `default_int8_range`.
        default_int8_range: (min, max) assumed for every float tensor without
            a recorded range (LCE's `experimental_default_int8_range`); for
            trying int8 without quantization-aware training, at a loss of
            accuracy.
        allow_float: accept binary layers that LCE leaves in float instead of
            raising.

    Two LCE 0.16 conversions that would be silently wrong are avoided.
    An explicit zero padding (`ZeroPadding2D`) in front of a strided
    "valid" conv is exported without the bottom/right rows and columns that
    the conv never reads (PyTorch's symmetric padding, e.g. the ImageNet
    stem's 3 on a 224 input; see `_unread_padding_removed`): same function,
    and LCE no longer folds it into a "same" conv that pads elsewhere. A
    zero-padded binary conv on a map smaller than its kernel is refused.
    Binary convs with `torch_padding=True` (flips around a "same" conv)
    become `LceBconv2d` with REVERSE_V2 ops around them.

    Raises:
        ConversionError: a Keras 3 model on a backend other than TensorFlow
            (save it and use `convert_saved`), a reduced-precision policy, a
            zero-padded binary conv on a map smaller than its kernel, or a
            binary layer that would run in float (unless `allow_float`);
            the message names the layers and the fix.
    """
    _check_backend(model)
    import larq_compute_engine as lce

    _check_float32(model)
    wrong = [
        reason
        for binary in binary_layers(model)
        if binary.kind == "conv" and binary.fully_binary
        for reason in [_input_smaller_than_kernel(binary.layer)]
        if reason is not None
    ]
    if wrong:
        raise ConversionError(
            # The first line stands alone: the CLI and the run report show only it.
            f"LCE would convert {len(wrong)} binary conv(s) to wrong outputs, the first being "
            + wrong[0] + ("; all of them:\n  " + "\n  ".join(wrong) if len(wrong) > 1 else "")
        )
    options = dict(
        inference_input_type=_dtype(inference_input_type),
        inference_output_type=_dtype(inference_output_type),
        target=target,
        experimental_default_int8_range=None if default_int8_range is None else tuple(default_int8_range),
    )
    try:
        if _is_keras3(model):
            with tempfile.TemporaryDirectory() as export_dir:
                with _binary_kernels_as_weights(model), _unread_padding_removed(model):
                    model.export(export_dir, format="tf_saved_model", verbose=False)
                flatbuffer = lce.convert_saved_model(export_dir, **options)
        else:
            flatbuffer = lce.convert_keras_model(model, **options)
    except ValueError as error:
        if "not integer quantized" not in str(error):
            raise
        raise ConversionError(
            "int8 inference input/output needs a model with quantize/dequantize ops "
            "at its ends (quantization-aware training), which this model does not "
            "have. Use float32 input/output, or pass default_int8_range=(min, max) "
            "to assume a range for every float tensor."
        ) from error
    left = float_binary_layers(model, flatbuffer)
    if left and not allow_float:
        details = "\n  ".join(_explain(layer) for layer in left)
        raise ConversionError(
            f"LCE would run {len(left)} binary layer(s) in float, so the model would "
            f"not be a binary model:\n  {details}"
        )
    if path is not None:
        with open(path, "wb") as file:
            file.write(flatbuffer)
    return flatbuffer


@dataclasses.dataclass
class VerificationReport:
    """What `verify` measured; `str(report)` is a readable summary."""

    census: Dict[str, int]
    binary_layers: List[str]
    float_binary_layers: List[str]
    samples: int
    max_abs_error: float
    max_rel_error: float
    matching_samples: float  # share of samples whose outputs all agree within 1e-3 relative
    argmax_agreement: Optional[float]
    flatbuffer_bytes: int
    float32_bytes: int

    @property
    def size_ratio(self) -> float:
        """float32 parameter bytes / flatbuffer bytes (the compression)."""
        return self.float32_bytes / self.flatbuffer_bytes

    @property
    def is_binary(self) -> bool:
        return bool(self.binary_layers) and not self.float_binary_layers

    def as_dict(self) -> Dict[str, Any]:
        """The fields as plain, JSON-ready values; `VerificationReport(**d)` rebuilds it."""
        return {**dataclasses.asdict(self), "census": dict(self.census)}

    def __str__(self) -> str:
        ops = ", ".join(f"{name} x{count}" for name, count in sorted(self.census.items()))
        agreement = "n/a" if self.argmax_agreement is None else f"{self.argmax_agreement:.2%}"
        left = ", ".join(self.float_binary_layers) or "none"
        return "\n".join(
            [
                f"operators: {ops}",
                f"binary layers: {len(self.binary_layers)}; left in float by LCE: {left}",
                f"samples: {self.samples}; max |error| {self.max_abs_error:.3g}; "
                f"max relative error {self.max_rel_error:.3g}; samples matching within 1e-3: "
                f"{self.matching_samples:.2%}; argmax agreement {agreement}",
                f"flatbuffer {self.flatbuffer_bytes / 1024:.1f} KiB vs float32 parameters "
                f"{self.float32_bytes / 1024:.1f} KiB ({self.size_ratio:.1f}x smaller)",
            ]
        )


def _float32_parameter_bytes(model) -> int:
    state = {id(variable) for variable in inspection.tau_variables(model)}
    return 4 * sum(int(np.prod(w.shape)) for w in model.weights if id(w) not in state)


def _quantize(x, scale, zero_point, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def verify(model, flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1) -> VerificationReport:
    """Run `flatbuffer` in LCE's interpreter and `model` on the same inputs; compare.

    Errors are measured on the model's (single) output: the maximum absolute
    difference and that maximum over the largest |Keras output|. For outputs
    of shape (batch, classes) the argmax agreement is reported too. int8
    flatbuffer inputs and outputs are (de)quantized with their own scales.

    A note on ties: a binary network's next sign amplifies any difference in
    a value that is (nearly) zero. An untrained model whose BatchNormalization
    still has its initial statistics maps some integer bconv outputs to
    exactly 0, where LCE's fused sign may break the tie the other way; in any
    model, a value within float rounding of 0 can flip. Such flips are rare
    and show as a few samples outside 1e-3 (`matching_samples` < 1) with the
    argmax unchanged; a conversion error shows in every sample.
    """
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    inputs = np.asarray(inputs, dtype="float32")
    expected = np.asarray(model.predict(inputs, verbose=0), dtype="float32")
    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    feed = inputs
    if interpreter.input_types[0] == np.int8:
        feed = _quantize(inputs, interpreter.input_scales[0], interpreter.input_zero_points[0], np.int8)
    got = np.asarray(interpreter.predict(feed), dtype="float32")
    if interpreter.output_types[0] == np.int8:
        got = (got - interpreter.output_zero_points[0]) * interpreter.output_scales[0]
    got = got.reshape(expected.shape)

    errors = np.abs(got - expected)
    abs_error = float(errors.max())
    scale = float(np.abs(expected).max()) or 1.0
    matching = float(np.mean(errors.reshape(len(errors), -1).max(axis=1) <= 1e-3 * scale))
    agreement = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1)))
    return VerificationReport(
        census=census(flatbuffer),
        binary_layers=[layer.name for layer in binary_layers(model)],
        float_binary_layers=[layer.name for layer in float_binary_layers(model, flatbuffer)],
        samples=len(inputs),
        max_abs_error=abs_error,
        max_rel_error=abs_error / scale,
        matching_samples=matching,
        argmax_agreement=agreement,
        flatbuffer_bytes=len(flatbuffer),
        float32_bytes=_float32_parameter_bytes(model),
    )


# --------------------------------------------------------------------------
# Converting a saved model in a TensorFlow-backend process


def conversion_available() -> bool:
    """Whether TensorFlow and larq-compute-engine are installed, so that a model can be converted here."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "larq_compute_engine"))


class SavedModelConversion(NamedTuple):
    """What `convert_saved` returns: the flatbuffer and, given inputs, the verification."""

    flatbuffer: bytes
    report: Optional[VerificationReport]


def convert_saved(
    model_path: Union[str, os.PathLike],
    path: Optional[Union[str, os.PathLike]] = None,
    *,
    inputs: Optional[np.ndarray] = None,
    target: str = "arm",
    inference_input_type: str = "float32",
    inference_output_type: str = "float32",
    default_int8_range: Optional[Sequence[float]] = None,
    allow_float: bool = False,
    timeout: Optional[float] = None,
) -> SavedModelConversion:
    """Convert a `.keras` file in a fresh TensorFlow-backend Python process, from any backend.

    LCE converts TensorFlow graphs only, so a model trained with Keras on JAX
    or PyTorch is saved, then loaded and converted by Keras on TensorFlow: a
    subprocess of this Python (`python -m keras_recu.deploy`) with
    `KERAS_BACKEND=tensorflow`, running `convert` and, when `inputs` are
    given, `verify` on the reloaded model. A `.keras` file holds no backend
    code, so the reloaded model computes what the trained one does. The file
    must load after `import keras_recu` (every layer, quantizer and
    constraint of keras_recu does; custom objects of your own do not: convert
    those in your own TensorFlow-backend process with `convert`).

    Args:
        model_path: the `.keras` file.
        path: where to write the flatbuffer (optional).
        inputs: samples to verify the flatbuffer on (see `verify`); None
            to skip verification.
        target, inference_input_type, inference_output_type,
        default_int8_range, allow_float: as for `convert`.
        timeout: seconds to wait for the subprocess (None: no limit).

    Returns:
        `(flatbuffer, report)`: the flatbuffer's bytes and the
        `VerificationReport`, None without `inputs`.

    Raises:
        FileNotFoundError: there is no file at `model_path`.
        ImportError: TensorFlow or larq-compute-engine is not installed; the
            message says where to convert instead.
        ValueError: the file does not load as a Keras model there.
        ConversionError: `convert` refused the model (the message is its).
        RuntimeError: the subprocess failed otherwise; the message holds the
            end of its error output.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"convert_saved: no such file: {model_path}")
    if not conversion_available():
        raise ImportError(
            "Converting needs TensorFlow and larq-compute-engine, which this Python "
            "environment lacks: install them (pip install 'keras-recu[deploy]'), or copy "
            f"{model_path.name} to a machine that has them and run "
            f"`keras-recu convert {model_path.name}` there."
        )
    options = dict(
        target=target,
        inference_input_type=str(inference_input_type),
        inference_output_type=str(inference_output_type),
        default_int8_range=None if default_int8_range is None else [float(v) for v in default_int8_range],
        allow_float=bool(allow_float),
    )
    with tempfile.TemporaryDirectory(prefix="keras_recu_convert_") as work:
        work = Path(work)
        job = {
            "model": str(model_path.resolve()),
            "flatbuffer": str(work / "model.tflite"),
            "report": str(work / "report.json"),
            "inputs": None,
            "options": options,
        }
        if inputs is not None:
            job["inputs"] = str(work / "inputs.npy")
            np.save(job["inputs"], np.asarray(keras.ops.convert_to_numpy(inputs), dtype="float32"))
        (work / "job.json").write_text(json.dumps(job))
        completed = subprocess.run(
            [sys.executable, "-m", "keras_recu.deploy", str(work / "job.json")],
            env=_tensorflow_environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        outcome = json.loads(Path(job["report"]).read_text()) if Path(job["report"]).exists() else {}
        if "conversion_error" in outcome:
            raise ConversionError(outcome["conversion_error"])
        if "load_error" in outcome:
            raise ValueError(
                f"{model_path} does not load as a Keras model in a TensorFlow-backend "
                f"process: {outcome['load_error']}. Pass a `.keras` file saved by "
                "model.save() whose layers are keras_recu's or Keras' own."
            )
        if completed.returncode != 0 or "flatbuffer_bytes" not in outcome:
            tail = "\n".join(completed.stderr.strip().splitlines()[-20:])
            raise RuntimeError(
                f"Converting {model_path} in a TensorFlow-backend process failed "
                f"(exit status {completed.returncode}):\n{tail}"
            )
        flatbuffer = Path(job["flatbuffer"]).read_bytes()
    if path is not None:
        Path(path).write_bytes(flatbuffer)
    report = outcome.get("report")
    if report is not None:
        report = VerificationReport(**{**report, "census": collections.Counter(report["census"])})
    return SavedModelConversion(flatbuffer, report)


def _tensorflow_environment() -> Dict[str, str]:
    """This process' environment, with Keras on TensorFlow and keras_recu importable."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # keras_recu may be imported from a source tree rather than installed.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _convert_job(job_path: str) -> int:
    """The subprocess of `convert_saved`: convert (and verify) as the job file says."""
    job = json.loads(Path(job_path).read_text())
    report_path = Path(job["report"])
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"the conversion process runs Keras on {keras.backend.backend()!r}, not tensorflow")
    try:
        model = keras.saving.load_model(job["model"], compile=False)
    except Exception as error:  # whatever makes the file unloadable, said in one line
        report_path.write_text(json.dumps({"load_error": f"{type(error).__name__}: {error}"}))
        return 4
    try:
        flatbuffer = convert(model, job["flatbuffer"], **job["options"])
    except ConversionError as error:
        report_path.write_text(json.dumps({"conversion_error": str(error)}))
        return 3
    outcome: Dict[str, Any] = {"flatbuffer_bytes": len(flatbuffer), "report": None}
    if job["inputs"] is not None:
        report = verify(model, flatbuffer, np.load(job["inputs"]))
        outcome["report"] = report.as_dict()
    report_path.write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    # Run through the package's module, so that its classes are the ones registered.
    from keras_recu.deploy import _convert_job as _job

    sys.exit(_job(sys.argv[1]))
