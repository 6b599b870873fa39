"""The two decoders of the streamed sets: PIL, and TensorFlow's tf.data.

Both give the same crops, flips and lighting (the random numbers come from
`transform.EpochDraws`, drawn in numpy) and pixels within a level or two of
each other (the resamplers differ in rounding):

* "pil": `pil_train_image` and `pil_eval_image` transform one file each;
  `stream.StreamBatches` runs them in a thread pool (PIL releases the GIL
  while it decodes and resamples), for machines without TensorFlow.
* "tf": `tf_transform_functions`, the same transforms as TensorFlow functions
  of an encoded image, which `StreamBatches` maps over a tf.data pipeline.
  On the JAX and torch backends `import_tensorflow` hides TensorFlow's GPUs.

`resolve_decoder` turns the user's choice (`DECODERS`; "auto") into one of
the two.
"""

from __future__ import annotations

import os
import types
from typing import Callable

import numpy as np

from keras_recu.app.data.base import CorruptDataError, DataUnavailableError, TFDS_EXTRAS_HELP
from keras_recu.app.data.imagenet.transform import (
    ImageNetTransform,
    apply_lighting,
    crop_box,
    eval_geometry,
)
from keras_recu.app.messages import first_line

__all__ = [
    "DECODERS",
    "PIL_DECODE_ERRORS",
    "corrupt_file",
    "import_pil",
    "import_tensorflow",
    "pil_eval_image",
    "pil_train_image",
    "resolve_decoder",
    "tensorflow_available",
    "tf_decoded",
    "tf_math",
    "tf_transform_functions",
    "vanished_file",
]

DECODERS = ("auto", "tf", "pil")


# --------------------------------------------------------------------------- PIL


def import_pil() -> types.ModuleType:
    """PIL's `Image` module; a `DataUnavailableError` that says how to install it where it is missing."""
    try:
        from PIL import Image
    except ImportError as error:  # pragma: no cover - Pillow comes with Keras' image utilities
        raise DataUnavailableError(
            f"Decoding images without TensorFlow needs Pillow, which is not installed ({error}): "
            "pip install pillow"
        ) from error
    return Image


# What PIL raises for a file it cannot decode: OSError ("image file is
# truncated", "Truncated File Read", UnidentifiedImageError), SyntaxError (a
# broken header of some formats), ValueError, and a decompression bomb.
PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def corrupt_file(path, reason: str) -> CorruptDataError:
    """The one-line error for an image file that cannot be decoded, naming it and what to do."""
    return CorruptDataError(
        f"{os.fsdecode(path)} cannot be decoded ({reason}): the file is damaged, cut short or not an image. "
        "Replace it with a good copy or delete it, then run the command again."
    )


def vanished_file(path) -> DataUnavailableError:
    """The one-line error for an image file listed when the data loaded and gone since."""
    return DataUnavailableError(
        f"{os.fsdecode(path)} is gone: the image folder changed after it was listed. Restore the file, or "
        "start a new run on the folder as it is now."
    )


def _open_rgb(path):
    """torchvision's `pil_loader`: the file as an RGB PIL image (decoded: damage shows here)."""
    Image = import_pil()
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            return image.convert("RGB")
    except FileNotFoundError:
        raise vanished_file(path) from None
    except PIL_DECODE_ERRORS + (Image.DecompressionBombError,) as error:
        raise corrupt_file(path, f"PIL: {type(error).__name__}: {first_line(error, 200)}") from None


def pil_train_image(path, draws: dict, transform: ImageNetTransform) -> np.ndarray:
    """The authors' train transform of one image file, up to the uint8 (S, S, 3) array.

    `draws`: one image's row of `EpochDraws.rows` (scalars / 1-D arrays).
    """
    Image = import_pil()
    image = _open_rgb(path)
    width, height = image.size
    top, left, h, w = (
        int(v)
        for v in crop_box(height, width, draws["scale_u"], draws["ratio_u"], draws["top_u"], draws["left_u"], transform)
    )
    size = transform.image_size
    image = image.crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(image)
    if transform.lighting_std > 0:
        pixels = apply_lighting(pixels, draws["increment"])
    if draws["flip"]:
        pixels = pixels[:, ::-1]
    return pixels


def pil_eval_image(path, transform: ImageNetTransform) -> np.ndarray:
    """The authors' eval transform of one image file: resize the shorter side, center crop; uint8."""
    Image = import_pil()
    image = _open_rgb(path)
    width, height = image.size
    new_h, new_w, top, left = (int(v) for v in eval_geometry(height, width, transform))
    size = transform.image_size
    image = image.resize((new_w, new_h), Image.BILINEAR)
    return np.asarray(image.crop((left, top, left + size, top + size)))


# --------------------------------------------------------------------------- TensorFlow


def import_tensorflow(for_what: str = "the tf decoder") -> types.ModuleType:
    """TensorFlow for a tf.data pipeline; on JAX or torch, with its GPUs hidden from it."""
    try:
        import tensorflow as tf
    except ImportError as error:
        raise DataUnavailableError(
            f"{for_what} needs TensorFlow, which cannot be imported ({error}). Install it with "
            f"{TFDS_EXTRAS_HELP}, or use decoder='pil' (--decoder pil) for an image folder."
        ) from error
    import keras

    if keras.backend.backend() != "tensorflow":
        try:
            # The data pipeline runs on the CPU; TensorFlow would otherwise
            # reserve the GPU memory that JAX or torch trains with.
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # TensorFlow is initialized already; its devices are as they are.
    return tf


def tensorflow_available() -> bool:
    """Whether TensorFlow can be imported here (the "auto" decoder's choice)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def tf_math(tf: types.ModuleType) -> types.SimpleNamespace:
    """The operations of `crop_box` and `eval_geometry` in TensorFlow, for their `xp` argument."""
    return types.SimpleNamespace(
        sqrt=tf.sqrt, exp=tf.exp, round=tf.round, floor=tf.floor, where=tf.where,
        minimum=tf.minimum, cumsum=lambda x, axis: tf.cumsum(x, axis=axis),
        any=lambda x, axis: tf.reduce_any(x, axis=axis), sum=lambda x, axis: tf.reduce_sum(x, axis=axis),
        to_float=lambda x: tf.cast(x, tf.float64),
    )


def tf_decoded(tf: types.ModuleType, encoded):
    """An encoded image (a string tensor) as uint8 (H, W, 3), as the tf decoder decodes it."""
    # INTEGER_ACCURATE is libjpeg's islow IDCT, PIL's; TensorFlow's default is the fast one.
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


def tf_transform_functions(tf: types.ModuleType, transform: ImageNetTransform) -> tuple[Callable, Callable]:
    """The train and eval transforms as TensorFlow functions of an encoded image."""
    xp = tf_math(tf)
    size = transform.image_size
    mean = tf.constant(transform.mean, tf.float32)
    std = tf.constant(transform.std, tf.float32)

    def to_uint8(x):
        # PIL's resamplers round to the nearest level and saturate.
        return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)

    def decoded(encoded):
        return tf_decoded(tf, encoded)

    def normalize(pixels):
        return (tf.cast(pixels, tf.float32) / 255.0 - mean) / std

    def train(encoded, draws):
        def box(shape):
            top, left, h, w = crop_box(
                shape[0], shape[1], draws["scale_u"], draws["ratio_u"], draws["top_u"], draws["left_u"],
                transform, xp,
            )
            return tf.cast(tf.stack([top, left, h, w]), tf.int32)

        # The whole image is decoded, then cropped, as PIL does: libjpeg's
        # partial decode (decode_and_crop_jpeg) shifts the chroma at the crop's
        # edges by up to 16 levels and measured no faster (BENCHMARKS.md).
        image = decoded(encoded)
        top, left, h, w = tf.unstack(box(tf.shape(image)))
        crop = image[top : top + h, left : left + w]
        pixels = to_uint8(tf.image.resize(crop, [size, size], method="bilinear", antialias=True))
        if transform.lighting_std > 0:
            # apply_lighting, in float64 and truncated like the authors' astype.
            lit = tf.clip_by_value(tf.cast(pixels, tf.float64) + draws["increment"], 0.0, 255.0)
            pixels = tf.cast(lit, tf.uint8)
        pixels = tf.cond(draws["flip"], lambda: tf.reverse(pixels, axis=[1]), lambda: pixels)
        return normalize(pixels)

    def evaluate(encoded):
        image = decoded(encoded)
        shape = tf.shape(image)
        new_h, new_w, top, left = (tf.cast(v, tf.int32) for v in eval_geometry(shape[0], shape[1], transform, xp))
        resized = to_uint8(tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True))
        return normalize(resized[top : top + size, left : left + size])

    # Plain TensorFlow operations and Python conditions on fixed settings:
    # nothing for autograph to convert.
    return tf.autograph.experimental.do_not_convert(train), tf.autograph.experimental.do_not_convert(evaluate)


# --------------------------------------------------------------------------- the choice


def resolve_decoder(decoder: str) -> str:
    """"tf" or "pil" for `decoder` ("auto" picks tf where TensorFlow can be imported)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "auto":
        return "tf" if tensorflow_available() else "pil"
    if decoder == "tf":
        import_tensorflow()
    return decoder
