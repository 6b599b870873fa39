"""`convert`: a Keras 3 or tf-keras model to a larq-compute-engine flatbuffer, refused where it would not be binary or exact."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional, Sequence, Union

from keras_recu.deploy.checks import (
    ConversionError,
    check_backend,
    check_input_sizes,
    explain_float_layer,
    float32_graph,
    inference_type,
    is_keras3,
)
from keras_recu.deploy.operators import float_binary_layers
from keras_recu.deploy.rewrites import binary_kernels_as_weights, unread_padding_removed


def convert(
    model: Any,
    path: Optional[Union[str, os.PathLike]] = None,
    *,
    target: str = "arm",
    inference_input_type: Union[str, Any] = "float32",
    inference_output_type: Union[str, Any] = "float32",
    default_int8_range: Optional[Sequence[float]] = None,
    allow_float: bool = False,
) -> bytes:
    """Convert `model` to an LCE flatbuffer; write it to `path` when given.

    Works for Keras 3 models (exported to a SavedModel, then
    `larq_compute_engine.convert_saved_model`) and tf-keras / larq models
    (`larq_compute_engine.convert_keras_model`).

    Args:
        model: a built Keras 3 or tf-keras model. A Keras 3 model under a
            mixed policy (`mixed_bfloat16`, `mixed_float16`) is converted
            as its float32 twin: the same weights, every layer in float32
            (`keras_recu.precision.as_float32`).
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
    stem's 3 on a 224 input; see `keras_recu.deploy.rewrites`): same function,
    and LCE no longer folds it into a "same" conv that pads elsewhere. A
    zero-padded binary conv on a map smaller than its kernel is refused.
    Binary convs with `torch_padding=True` (flips around a "same" conv)
    become `LceBconv2d` with REVERSE_V2 ops around them.

    Raises:
        ConversionError: a Keras 3 model on a backend other than TensorFlow
            (save it and use `convert_saved`), a tf-keras model under a
            reduced-precision policy, a
            zero-padded binary conv on a map smaller than its kernel, or a
            binary layer that would run in float (unless `allow_float`);
            the message names the layers and the fix.
    """
    check_backend(model)
    import larq_compute_engine as lce

    model = float32_graph(model)
    check_input_sizes(model)
    options = dict(
        inference_input_type=inference_type(inference_input_type),
        inference_output_type=inference_type(inference_output_type),
        target=target,
        experimental_default_int8_range=None if default_int8_range is None else tuple(default_int8_range),
    )
    flatbuffer = _lce_flatbuffer(model, lce, options)
    left = float_binary_layers(model, flatbuffer)
    if left and not allow_float:
        details = "\n  ".join(explain_float_layer(layer) for layer in left)
        raise ConversionError(
            f"LCE would run {len(left)} binary layer(s) in float, so the model would "
            f"not be a binary model:\n  {details}"
        )
    if path is not None:
        with open(path, "wb") as file:
            file.write(flatbuffer)
    return flatbuffer


def _lce_flatbuffer(model: Any, lce: Any, options: Dict[str, Any]) -> bytes:
    """LCE's conversion of `model`: a SavedModel export for Keras 3, its Keras converter for tf-keras."""
    try:
        if not is_keras3(model):
            return lce.convert_keras_model(model, **options)
        with tempfile.TemporaryDirectory() as export_dir:
            with binary_kernels_as_weights(model), unread_padding_removed(model):
                model.export(export_dir, format="tf_saved_model", verbose=False)
            return lce.convert_saved_model(export_dir, **options)
    except ValueError as error:
        if "not integer quantized" not in str(error):
            raise
        raise ConversionError(
            "int8 inference input/output needs a model with quantize/dequantize ops "
            "at its ends (quantization-aware training), which this model does not "
            "have. Use float32 input/output, or pass default_int8_range=(min, max) "
            "to assume a range for every float tensor."
        ) from error
